package device_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/device"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/dispatcher"
	"github.com/hookbus/hookbus/services/gateway"
	"github.com/hookbus/hookbus/services/registry"
)

// wait is the deadline of every poll of these tests.
const wait = 15 * time.Second

// bus is a NATS server with the topology, a registry, a dispatcher, a
// login plugin (password "sesame") and a gateway serving devices.
type bus struct {
	srv    *server.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	c      *client.Client
	sealer *gateway.DeviceSealer
	hs     *httptest.Server
	url    string // http://host:port of the gateway
	logins atomic.Int32
}

func newBus(t *testing.T, set func(*gateway.Config)) *bus {
	t.Helper()
	srv, js := natstest.RunTopology(t)
	reg, err := registry.New(registry.DefaultConfig(), natstest.Connect(t, srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	natstest.RunService(t, reg)
	dcfg := dispatcher.DefaultConfig()
	dcfg.ConsumerCheck = 200 * time.Millisecond
	disp, err := dispatcher.New(dcfg, natstest.Connect(t, srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	natstest.RunService(t, disp)
	c, err := client.New(natstest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := gateway.NewDeviceSealer([]byte("0123456789abcdef0123456789abcdef"), []byte("salt"))
	if err != nil {
		t.Fatal(err)
	}
	b := &bus{srv: srv, nc: natstest.Connect(t, srv), js: js, c: c, sealer: sealer}
	b.plugin(t, "login", gateway.EventTypeDeviceAuthenticate, func(state map[string]any) (client.StepResult, error) {
		b.logins.Add(1)
		state["allow"] = state["password"] == "sesame"
		return client.Continue(state), nil
	})
	cfg := gateway.DefaultConfig()
	cfg.DeviceTokens = sealer
	if set != nil {
		set(&cfg)
	}
	svc, err := gateway.New(cfg, natstest.Connect(t, srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	b.hs = httptest.NewServer(svc.Handler())
	t.Cleanup(b.hs.Close)
	b.url = b.hs.URL
	return b
}

// plugin serves a chain plugin on typ until the test ends and waits until
// the dispatcher runs it; a probe ({"probe":true}) passes through.
func (b *bus) plugin(t *testing.T, name, typ string, step func(map[string]any) (client.StepResult, error)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- b.c.Serve(ctx, client.Plugin{Spec: events.PluginSpec{Name: name, Event: typ, Priority: 10},
			Chain: func(_ context.Context, s *client.Step) (client.StepResult, error) {
				var state map[string]any
				if err := s.Event.DataAs(&state); err != nil {
					return client.StepResult{}, err
				}
				if state["probe"] == true {
					return client.Continue(state), nil
				}
				return step(state)
			}})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve %s: %v", name, err)
		}
	})
	natstest.Eventually(t, 20*time.Second, func() error {
		e := event.New()
		e.SetID("probe")
		e.SetSource("/probe")
		e.SetType(typ)
		_ = e.SetData(event.ApplicationJSON, map[string]any{"probe": true})
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		res, err := b.c.Call(ctx, e)
		if err != nil {
			return err
		}
		for _, s := range res.Trace {
			if s.Plugin == name {
				return nil
			}
		}
		return fmt.Errorf("plugin %s not in the chain of %s yet", name, typ)
	})
}

// watch records a client's statuses and pushes.
type watch struct {
	mu       sync.Mutex
	statuses []device.Status
	pushes   []device.Push
}

func (w *watch) status(s device.Status, _ error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.statuses = append(w.statuses, s)
}

func (w *watch) push(p device.Push) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pushes = append(w.pushes, p)
}

// count is how many times w saw s.
func (w *watch) count(s device.Status) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, x := range w.statuses {
		if x == s {
			n++
		}
	}
	return n
}

func (w *watch) got() []device.Push {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]device.Push(nil), w.pushes...)
}

// start starts a client of device id with cfg's other fields, closed when
// the test ends, and returns it with its watch.
func (b *bus) start(t *testing.T, cfg device.Config) (*device.Client, *watch) {
	t.Helper()
	w := &watch{}
	if cfg.URL == "" {
		cfg.URL = b.url
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff, cfg.MaxBackoff = 10*time.Millisecond, 200*time.Millisecond
	}
	cfg.OnStatus, cfg.OnPush = w.status, w.push
	c, err := device.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, w
}

// waitConnected polls until c is connected with a token in store.
func waitConnected(t *testing.T, c *device.Client, store device.TokenStore) device.Token {
	t.Helper()
	var tok device.Token
	natstest.Eventually(t, wait, func() error {
		if s := c.Status(); s != device.StatusConnected {
			return fmt.Errorf("status %s (err %v), want connected", s, c.Err())
		}
		var err error
		if tok, err = store.Load(); err != nil || tok.Token == "" {
			return fmt.Errorf("no token stored (%v)", err)
		}
		return nil
	})
	return tok
}

// waitDone waits until c stopped and returns its error.
func waitDone(t *testing.T, c *device.Client) error {
	t.Helper()
	select {
	case <-c.Done():
		return c.Err()
	case <-time.After(wait):
		t.Fatalf("client still running after %s: status %s", wait, c.Status())
		return nil
	}
}

// stored reads the events stored for device id, in order.
func (b *bus) stored(t *testing.T, id string, n int) []event.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	cons, err := b.js.OrderedConsumer(ctx, events.StreamDevices, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.DeviceInSubject(id)}})
	if err != nil {
		t.Fatal(err)
	}
	var out []event.Event
	for len(out) < n {
		m, err := cons.Next(jetstream.FetchContext(ctx))
		if err != nil {
			t.Fatalf("%d of %d events of %s read: %v", len(out), n, id, err)
		}
		e, err := events.Decode(m.Headers(), m.Data())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, *e)
	}
	return out
}

// jsonEq reports whether a and b are the same JSON value.
func jsonEq(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return string(ja) == string(jb)
}
