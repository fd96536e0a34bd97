package k8s

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

// runPlugins has the dev overlay's dispatcher work with real plugin
// workers (pkg/client's Serve, in the test process) connected as NATS user
// plugin-example, and reads what the dispatcher wrote as admin:
//
//   - a chain worker: calls (pkg/client's Call and `hookbus call`) and a
//     published event's result run through it; an invalid published event
//     is dead-lettered by the dispatcher;
//   - a notify worker: the dispatcher creates its queue, an event is
//     delivered, another fails, comes back after the backoff, fails again
//     and is dead-lettered by the worker;
//   - an event no worker answers (pulled without acknowledging until its
//     deliveries run out, then pulled for again) is dead-lettered by the
//     dispatcher on JetStream's MAX_DELIVERIES advisory;
//   - stopping, enabling and unregistering the plugin pauses, resumes and
//     deletes its queue.
//
// Every step needs the NATS permissions of both users (dispatcher and
// plugin-example); TestDevOverlayRuns fails on any violation the server
// logs.
func runPlugins(t *testing.T, url string, users map[string]string, cli func(user string, args ...string) (string, error)) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	worker := connect(t, url, pluginUser, users[pluginUser])
	admin := connect(t, url, "admin", users["admin"])
	wc, err := client.New(worker)
	if err != nil {
		t.Fatal(err)
	}
	ac, err := client.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	wjs, err := jetstream.New(worker)
	if err != nil {
		t.Fatal(err)
	}
	ajs, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}

	// Chain: the worker answers steps; calls and published events run it.
	const chainType = "com.example.order.created"
	chain := serve(t, ctx, wc, client.Plugin{
		Spec: events.PluginSpec{Name: pluginName, Event: chainType, Priority: 10},
		Chain: func(_ context.Context, s *client.Step) (client.StepResult, error) {
			var state map[string]any
			if err := s.Event.DataAs(&state); err != nil {
				return client.StepResult{}, err
			}
			state["checked_by"] = pluginName
			return client.Continue(state), nil
		},
	})
	eventually(t, ctx, "a call through plugin "+pluginName, chain, func() error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		res, err := wc.Call(cctx, newEvent(t, chainType, "k8s-call-1"))
		if err != nil {
			return err
		}
		return checkResult(res, "k8s-call-1")
	})
	if out, err := cli(pluginUser, "call", "--type", chainType, "--data", `{"total":2}`); err != nil ||
		!strings.Contains(out, `"checked_by":"example"`) || !strings.Contains(out, "continued") {
		t.Errorf("%s: hookbus call: %v\n%s", pluginUser, err, out)
	}
	if _, err := wc.Publish(ctx, newEvent(t, chainType, "k8s-published-1")); err != nil {
		t.Fatal(err)
	}
	results, err := ajs.Stream(ctx, events.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "the result of a published event", chain, func() error {
		subject, _ := events.ResultSubject(chainType)
		raw, err := results.GetLastMsgForSubject(ctx, subject)
		if err != nil {
			return err
		}
		e, err := events.Decode(raw.Header, raw.Data)
		if err != nil {
			return err
		}
		var res events.ChainResult
		if err := json.Unmarshal(e.Data(), &res); err != nil {
			return err
		}
		return checkResult(res, "k8s-published-1")
	})
	invalid, err := wjs.PublishMsg(ctx, &nats.Msg{Subject: "hookbus.event." + chainType, Data: []byte("not a CloudEvent")})
	if err != nil {
		t.Fatal(err)
	}
	waitDeadLetter(t, ctx, ac, events.DispatcherConsumer, invalid.Sequence, "", chain)
	chain.stop(t)

	// Notify: the same plugin becomes a notify plugin with two deliveries,
	// 200 ms apart.
	const notifyType = "com.example.order.shipped"
	delivered := make(chan string, 16)
	notify := serve(t, ctx, wc, client.Plugin{
		Spec: events.PluginSpec{Name: pluginName, Event: notifyType, Priority: 10,
			Settings: events.Settings{MaxDeliver: 2, BackoffMS: []int{200}}},
		Notify: func(_ context.Context, d *client.Delivery) error {
			if d.Event.ID() == "k8s-notify-fails" {
				return fmt.Errorf("refused on attempt %d", d.Attempt)
			}
			// Longer than half the ack wait: the worker reports progress
			// before it acknowledges, two answers to one delivery, which
			// allow_responses alone would not let through.
			time.Sleep(300 * time.Millisecond)
			delivered <- d.Event.ID()
			return nil
		},
	})
	queue := events.NotifyConsumer(pluginName)
	eventually(t, ctx, "the dispatcher creates "+queue, notify, func() error {
		_, err := ajs.Consumer(ctx, events.StreamEvents, queue)
		return err
	})
	if _, err := wc.Publish(ctx, newEvent(t, notifyType, "k8s-notify-ok")); err != nil {
		t.Fatal(err)
	}
	fails, err := wc.Publish(ctx, newEvent(t, notifyType, "k8s-notify-fails"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-delivered:
		if id != "k8s-notify-ok" {
			t.Errorf("notify worker got %s, want k8s-notify-ok", id)
		}
	case <-notify.finished:
		t.Fatalf("notify worker ended: %v", notify.err)
	case <-ctx.Done():
		t.Fatal("notify worker got no event")
	}
	waitDeadLetter(t, ctx, ac, pluginName, fails.Sequence, "refused on attempt 2", notify)
	notify.stop(t)

	// No worker answers: the deliveries run out (max_deliver 2, plus the
	// spare), JetStream advises, the dispatcher dead-letters the event.
	orphan, err := wc.Publish(ctx, newEvent(t, notifyType, "k8s-notify-orphan"))
	if err != nil {
		t.Fatal(err)
	}
	cons, err := wjs.Consumer(ctx, events.StreamEvents, queue)
	if err != nil {
		t.Fatal(err)
	}
	for attempt := uint64(1); attempt <= 3; attempt++ {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		m, ok := <-batch.Messages()
		if !ok {
			t.Fatalf("delivery %d of the unanswered event did not come: %v", attempt, batch.Error())
		}
		if meta, err := m.Metadata(); err != nil || meta.Sequence.Stream != orphan.Sequence || meta.NumDelivered != attempt {
			t.Fatalf("pulled %+v (%v), want delivery %d of stream sequence %d", meta, err, attempt, orphan.Sequence)
		}
	}
	// A worker pulls again: the event is not delivered a fourth time, and
	// JetStream advises (nats-server 2.15.2 sends the advisory of a pull
	// consumer only when a pull request is waiting, not when the last ack
	// wait expires).
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		meta, _ := m.Metadata()
		t.Errorf("pulled %+v after the deliveries ran out", meta)
	}
	waitDeadLetter(t, ctx, ac, pluginName, orphan.Sequence, "no worker of example answered in 3 deliveries", nil)

	// The queue follows the plugin: paused while stopped, resumed when
	// enabled, deleted when unregistered.
	for _, step := range []struct {
		op   string
		want string // paused, running or deleted
	}{{"stop", "paused"}, {"enable", "running"}, {"unregister", "deleted"}} {
		if out, err := cli(pluginUser, "plugin", step.op, pluginName); err != nil {
			t.Fatalf("%s: hookbus plugin %s %s: %v\n%s", pluginUser, step.op, pluginName, err, out)
		}
		eventually(t, ctx, queue+" "+step.want, nil, func() error {
			info, err := ajs.Consumer(ctx, events.StreamEvents, queue)
			switch {
			case step.want == "deleted" && errors.Is(err, jetstream.ErrConsumerNotFound):
				return nil
			case err != nil:
				return err
			case step.want == "deleted":
				return errors.New("still there")
			case info.CachedInfo().Paused != (step.want == "paused"):
				return fmt.Errorf("paused %v", info.CachedInfo().Paused)
			}
			return nil
		})
	}
}

const (
	pluginName = "example"
	pluginUser = "plugin-example"
)

// connect connects as user, with the user's own inbox prefix (the only
// part of _INBOX its permissions let it read: docs/security.md).
func connect(t *testing.T, url, user, password string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.UserInfo(user, password), nats.Name("deployments/k8s test as "+user),
		nats.CustomInboxPrefix(events.InboxPrefix(user)))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func newEvent(t *testing.T, typ, id string) event.Event {
	t.Helper()
	e := event.New()
	e.SetID(id)
	e.SetSource("/k8s-test")
	e.SetType(typ)
	if err := e.SetData(event.ApplicationJSON, map[string]any{"total": 1}); err != nil {
		t.Fatal(err)
	}
	return e
}

// checkResult wants the result of event id, run through the chain worker.
func checkResult(res events.ChainResult, id string) error {
	var state map[string]any
	_ = json.Unmarshal(res.State, &state)
	want := []events.TraceStep{{Plugin: pluginName, Outcome: events.OutcomeContinued}}
	got := slices.Clone(res.Trace)
	for i := range got {
		got[i].DurationMS = 0
	}
	if res.EventID != id || res.Error != nil || !slices.Equal(got, want) || state["checked_by"] != pluginName {
		b, _ := json.Marshal(res)
		return fmt.Errorf("result %s, want event %s run by plugin %s", b, id, pluginName)
	}
	return nil
}

// deadLetters reads every dead letter of subscriber.
func deadLetters(ctx context.Context, c *client.Client, subscriber string) ([]client.DeadLetter, error) {
	var dls []client.DeadLetter
	for dl, err := range c.DeadLetters(ctx, subscriber) {
		if err != nil {
			return nil, err
		}
		dls = append(dls, dl)
	}
	return dls, nil
}

// waitDeadLetter waits for the dead letter of subscriber for stream
// sequence seq, whose reason contains reason.
func waitDeadLetter(t *testing.T, ctx context.Context, c *client.Client, subscriber string, seq uint64, reason string, w *served) {
	t.Helper()
	eventually(t, ctx, fmt.Sprintf("a dead letter of %s for event %d", subscriber, seq), w, func() error {
		dls, err := deadLetters(ctx, c, subscriber)
		if err != nil {
			return err
		}
		var seen []string
		for _, dl := range dls {
			if dl.StreamSeq == seq && strings.Contains(dl.Reason, reason) {
				return nil
			}
			seen = append(seen, fmt.Sprintf("%d: %s", dl.StreamSeq, dl.Reason))
		}
		return fmt.Errorf("dead letters: %v", seen)
	})
}

// served is a Serve running in the test process.
type served struct {
	finished chan struct{} // closed when Serve has returned err
	err      error
	cancel   context.CancelFunc
	once     sync.Once
}

func serve(t *testing.T, ctx context.Context, c *client.Client, p client.Plugin) *served {
	t.Helper()
	sctx, cancel := context.WithCancel(ctx)
	s := &served{finished: make(chan struct{}), cancel: cancel}
	go func() {
		s.err = c.Serve(sctx, p, client.WithDrainTimeout(5*time.Second))
		close(s.finished)
	}()
	t.Cleanup(func() { s.stop(t) })
	return s
}

// stop ends Serve and wants it to return nil.
func (s *served) stop(t *testing.T) {
	t.Helper()
	s.once.Do(func() {
		s.cancel()
		select {
		case <-s.finished:
			if s.err != nil {
				t.Errorf("Serve: %v", s.err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Serve still running 30 s after its context ended")
		}
	})
}

// eventually retries f every 50 ms until it succeeds, failing the test when
// ctx ends first or when w's Serve returns meanwhile.
func eventually(t *testing.T, ctx context.Context, what string, w *served, f func() error) {
	t.Helper()
	var finished chan struct{}
	if w != nil {
		finished = w.finished
	}
	for {
		err := f()
		if err == nil {
			return
		}
		select {
		case <-finished:
			t.Fatalf("%s: Serve returned %v (last: %v)", what, w.err, err)
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
