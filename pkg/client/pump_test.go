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

// A goroutine that takes a held event (one the ticker took out of the
// iterator while every goroutine was busy) and hangs in its handler holds
// up nothing but itself: the other goroutine opens a new iterator.
func TestPumpHeldEventHangingDoesNotStopPulling(t *testing.T) {
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
	time.Sleep(20 * time.Millisecond) // s1's handler runs, the other goroutine takes s2
	src <- &fakeMsg{name: "s2"}
	src <- &fakeMsg{name: "hang"} // both taken out into held after 50-75 ms with no goroutine free
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

// trackedMsg records when the pump first reported it in progress.
type trackedMsg struct {
	jetstream.Msg
	name     string
	mu       sync.Mutex
	reported time.Time
}

func (m *trackedMsg) InProgress() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.reported.IsZero() {
		m.reported = time.Now()
	}
	return nil
}

// With a backlog flowing through busy goroutines (one of them takes an
// event every 50 ms, so some goroutine is always about to pull), the
// events further back in the iterator still do not wait there
// unreported until JetStream would deliver them again: the ticker takes
// them out once the iterator has not been seen empty for a quarter of the
// ack wait.
func TestPumpBacklogIsKeptInProgress(t *testing.T) {
	const ackWait = time.Second
	const n = 24
	src := make(chan jetstream.Msg, n)
	msgs := make([]*trackedMsg, n)
	for i := range msgs {
		msgs[i] = &trackedMsg{name: string(rune('a' + i))}
	}
	var mu sync.Mutex
	began := map[*trackedMsg]time.Time{}
	var handled sync.WaitGroup
	handled.Add(n)
	var wg sync.WaitGroup
	p := newPump(make(chan struct{}, 2), ackWait,
		func() (jetstream.MessagesContext, error) {
			return &fakeIter{src: src, drained: make(chan struct{})}, nil
		},
		func(m jetstream.Msg) {
			mu.Lock()
			began[m.(*trackedMsg)] = time.Now()
			mu.Unlock()
			time.Sleep(100 * time.Millisecond) // 2 goroutines: one takes an event every 50 ms
			handled.Done()
		},
		func(jetstream.Msg) {}, func(f func()) { wg.Go(f) }, nil)
	start := time.Now()
	for _, m := range msgs {
		src <- m
	}
	p.start()
	handled.Wait()
	p.stop()
	<-p.done
	wg.Wait()
	// The last of them waits about 1.2 s for a goroutine, beyond the ack
	// wait.
	for _, m := range msgs {
		first := began[m]
		if !m.reported.IsZero() && m.reported.Before(first) {
			first = m.reported
		}
		if waited := first.Sub(start); waited >= ackWait*3/4 {
			t.Errorf("event %s waited %s unreported in the iterator, want less than %s", m.name, waited.Round(time.Millisecond), ackWait*3/4)
		}
	}
}
