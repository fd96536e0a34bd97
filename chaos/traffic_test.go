//go:build chaos

package chaos

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/hookbus/hookbus/pkg/client"
)

// Timings of the traffic.
const (
	publishInterval = 20 * time.Millisecond // per publisher: 50 events/s
	callInterval    = 50 * time.Millisecond
	attemptTimeout  = 5 * time.Second  // one publish or call attempt
	callGiveUp      = 30 * time.Second // a call unanswered this long after its first attempt is unanswered
	publishGiveUp   = 60 * time.Second // a publisher stops retrying an event this long after traffic stopped
	eventSource     = "/chaos"
)

// traffic publishes events and makes calls through the Go SDK, recording
// what it sent and what was acknowledged or answered.
type traffic struct {
	mu          sync.Mutex
	sent        map[string]time.Time // event id -> first publish attempt
	typeOf      map[string]string    // event id -> type
	acked       map[string]bool
	ackedAt     map[string]time.Time // event id -> when its publish was acknowledged
	publishErrs map[string]int       // errors that stopped a publish for good, by text
	ackTimes    []time.Time          // when publishes were acknowledged
	calls       int
	answered    int
	errAnswers  map[string]int // answers with an error, by code
	unanswered  []string       // call ids never answered
	answerTimes []time.Time
	// Through the gateway (http_test.go):
	overHTTP     map[string]bool // event ids published over HTTP
	httpOutcomes map[string]int  // HTTP requests by outcome: status, refused, no answer
}

func newTraffic() *traffic {
	return &traffic{sent: map[string]time.Time{}, typeOf: map[string]string{}, acked: map[string]bool{},
		ackedAt: map[string]time.Time{}, publishErrs: map[string]int{}, errAnswers: map[string]int{},
		overHTTP: map[string]bool{}, httpOutcomes: map[string]int{}}
}

// ack records that the event id was acknowledged (NATS) or answered 202
// (HTTP).
func (tr *traffic) ack(id string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	now := time.Now()
	tr.acked[id], tr.ackedAt[id] = true, now
	tr.ackTimes = append(tr.ackTimes, now)
}

// newEvent is a valid event of type typ with JSON data.
func newEvent(id, typ string, n int) event.Event {
	e := event.New()
	e.SetID(id)
	e.SetSource(eventSource)
	e.SetType(typ)
	_ = e.SetData(event.ApplicationJSON, map[string]any{"n": n})
	return e
}

// publishLoop publishes one event every publishInterval through c,
// alternately of the chain and the notify type, until stop ends; each event
// is retried with its id until acknowledged or until giveUp ends.
func (tr *traffic) publishLoop(stop, giveUp context.Context, c *client.Client, prefix string) {
	eventLoop(stop, publishInterval, prefix, func(e event.Event) { tr.publish(giveUp, c, e) })
}

// eventLoop sends one new event every interval (ids prefix-NNNNNN),
// alternately of the chain and the notify type, until stop ends.
func eventLoop(stop context.Context, interval time.Duration, prefix string, send func(event.Event)) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-stop.Done():
			return
		case <-tick.C:
		}
		typ := chainType
		if n%2 == 1 {
			typ = notifyType
		}
		send(newEvent(fmt.Sprintf("%s-%06d", prefix, n), typ, n))
	}
}

// publish sends e until it is acknowledged, as a real publisher would: the
// same id every time, so a retry is stored once.
func (tr *traffic) publish(giveUp context.Context, c *client.Client, e event.Event) {
	tr.mu.Lock()
	tr.sent[e.ID()], tr.typeOf[e.ID()] = time.Now(), e.Type()
	tr.mu.Unlock()
	for giveUp.Err() == nil {
		ctx, cancel := context.WithTimeout(giveUp, attemptTimeout)
		_, err := c.Publish(ctx, e)
		cancel()
		if err == nil {
			tr.ack(e.ID())
			return
		}
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, client.ErrNotStored) {
			tr.mu.Lock()
			tr.publishErrs[err.Error()]++
			tr.mu.Unlock()
			return
		}
	}
}

// callLoop runs a call on the chain type through c every callInterval
// until stop ends.
func (tr *traffic) callLoop(stop context.Context, c *client.Client, prefix string) {
	tick := time.NewTicker(callInterval)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-stop.Done():
			return
		case <-tick.C:
		}
		tr.call(c, newEvent(fmt.Sprintf("%s-%06d", prefix, n), chainType, n))
	}
}

// call runs e's chain until some answer comes back, any answer including
// an error: attempts of attemptTimeout each, for up to callGiveUp.
func (tr *traffic) call(c *client.Client, e event.Event) {
	first := time.Now()
	tr.mu.Lock()
	tr.calls++
	tr.mu.Unlock()
	for {
		attempt := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), attemptTimeout)
		_, err := c.Call(ctx, e)
		cancel()
		code, answered := answerCode(err)
		if !answered {
			if time.Since(first) < callGiveUp {
				// No responders comes back at once: pace the attempts.
				time.Sleep(100*time.Millisecond - time.Since(attempt))
				continue
			}
			tr.mu.Lock()
			tr.unanswered = append(tr.unanswered, e.ID())
			tr.mu.Unlock()
			return
		}
		tr.mu.Lock()
		if code != "" {
			tr.errAnswers[code]++
		}
		tr.answered++
		tr.answerTimes = append(tr.answerTimes, time.Now())
		tr.mu.Unlock()
		return
	}
}

// answerCode tells a Call error that is an answer (a *client.Error: its
// code; an unreadable answer) from one that is not (a timeout, no
// responders).
func answerCode(err error) (code string, answered bool) {
	var answer *client.Error
	switch {
	case err == nil:
		return "", true
	case errors.As(err, &answer):
		return string(answer.Code), true
	case strings.Contains(err.Error(), "unreadable answer"):
		return "unreadable", true
	default:
		return "", false
	}
}

// firstAfter returns the first time in ts at or after t, and whether
// there is one.
func firstAfter(ts []time.Time, t time.Time) (time.Time, bool) {
	for _, x := range ts {
		if !x.Before(t) {
			return x, true
		}
	}
	return time.Time{}, false
}
