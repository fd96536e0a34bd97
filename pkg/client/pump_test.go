package client

import (
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// fakeMsg is an event for the pump's own tests: only its name and the
// progress reports matter.
type fakeMsg struct {
	jetstream.Msg // nil: the pump calls nothing else
	name          string
}

func (m *fakeMsg) InProgress() error { return nil }

// fakeIter hands out what is sent on src; once drained, what src still
// holds, then ErrMsgIteratorClosed.
type fakeIter struct {
	src     chan jetstream.Msg
	mu      sync.Mutex
	drained chan struct{}
}

func (it *fakeIter) Next(...jetstream.NextOpt) (jetstream.Msg, error) {
	it.mu.Lock()
	drained := it.drained
	it.mu.Unlock()
	select {
	case m := <-it.src:
		return m, nil
	case <-drained:
		select {
		case m := <-it.src:
			return m, nil
		default:
			return nil, jetstream.ErrMsgIteratorClosed
		}
	}
}

func (it *fakeIter) Stop()  { it.Drain() }
func (it *fakeIter) Drain() { it.mu.Lock(); close(it.drained); it.mu.Unlock() }

// The leader that takes a held event (one the monitor took out of the
// iterator while every slot was busy) counts as busy: when that handler
// hangs, another goroutine takes over pulling.
func TestPumpLeaderOnHeldEventHandsOverPulling(t *testing.T) {
	src := make(chan jetstream.Msg, 16)
	release := make(chan struct{})
	var mu sync.Mutex
	var handled []string
	var wg sync.WaitGroup
	p := newPump(make(chan struct{}, 2), 200*time.Millisecond,
		func() (jetstream.MessagesContext, error) {
			return &fakeIter{src: src, drained: make(chan struct{})}, nil
		},
		func(m jetstream.Msg) {
			switch name := m.(*fakeMsg).name; name {
			case "s1":
				time.Sleep(150 * time.Millisecond) // ends after s2
			case "s2":
				time.Sleep(100 * time.Millisecond) // the leader's: it then takes "hang"
			case "hang":
				<-release
			default:
				mu.Lock()
				handled = append(handled, name)
				mu.Unlock()
			}
		},
		func(jetstream.Msg) {}, func(f func()) { wg.Go(f) }, nil)
	p.start()
	defer func() {
		close(release)
		p.stop()
		<-p.done
		wg.Wait()
	}()
	src <- &fakeMsg{name: "s1"}
	time.Sleep(20 * time.Millisecond) // s1's handler stalls, another goroutine takes s2
	src <- &fakeMsg{name: "s2"}
	src <- &fakeMsg{name: "hang"} // both taken out into held after 50 ms of saturation
	src <- &fakeMsg{name: "e1"}
	time.Sleep(300 * time.Millisecond)
	src <- &fakeMsg{name: "e2"}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(handled)
		mu.Unlock()
		if n == 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("handled %v while one handler hangs, want e1 and e2", handled)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
