package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/gateway"
)

func TestNotStoredIsNotAccepted(t *testing.T) {
	b := newBus(t)
	if err := b.js.DeleteStream(t.Context(), events.StreamEvents); err != nil {
		t.Fatal(err)
	}
	status, h, body := post(t, b.url+"/events", map[string]string{"Content-Type": "application/cloudevents+json"},
		`{"specversion":"1.0","id":"lost-1","source":"/shop","type":"com.example.order.created"}`)
	if status != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503; body %s", status, body)
	}
	var p problemBody
	if err := json.Unmarshal(body, &p); err != nil || p.Code != "unavailable" || h.Get("Retry-After") == "" {
		t.Errorf("answer %s (Retry-After %q): want code unavailable and a Retry-After", body, h.Get("Retry-After"))
	}
}

func TestShutdownAnswersRequestsInFlight(t *testing.T) {
	s, js := natstest.RunTopology(t)
	cfg := gateway.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	svc, err := gateway.New(cfg, natstest.Connect(t, s), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- svc.Run(ctx) }()
	natstest.Eventually(t, 5*time.Second, func() error { return svc.Ready(ctx) })
	addr := svc.Addr()

	// A request whose handler is reading its body (the server asked for
	// it with 100 Continue) when the shutdown begins.
	pr, pw := io.Pipe()
	reading := make(chan struct{})
	trace := &httptrace.ClientTrace{Got100Continue: func() { close(reading) }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), http.MethodPost, "http://"+addr+"/events", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/cloudevents+json")
	req.Header.Set("Expect", "100-continue")
	type answer struct {
		status int
		body   []byte
		err    error
	}
	answered := make(chan answer, 1)
	go func() {
		tr := &http.Transport{ExpectContinueTimeout: 10 * time.Second}
		defer tr.CloseIdleConnections()
		resp, err := tr.RoundTrip(req)
		if err != nil {
			answered <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		answered <- answer{resp.StatusCode, b, err}
	}()
	go func() { _, _ = pw.Write([]byte(`{"specversion":"1.0",`)) }()
	select {
	case <-reading:
	case <-time.After(5 * time.Second):
		t.Fatal("the gateway did not start reading the body")
	}

	cancel()
	// The shutdown has begun once the listener is closed.
	natstest.Eventually(t, 5*time.Second, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return nil
		}
		c.Close()
		return fmt.Errorf("%s still accepts connections", addr)
	})
	if svc.Ready(t.Context()) == nil {
		t.Error("ready while shutting down")
	}
	if _, err := pw.Write([]byte(`"id":"inflight-1","source":"/shop","type":"com.example.order.created"}`)); err != nil {
		t.Fatal(err)
	}
	pw.Close()

	a := <-answered
	if a.err != nil || a.status != http.StatusAccepted {
		t.Fatalf("request in flight at shutdown: status %d, %v, body %s; want 202", a.status, a.err, a.body)
	}
	if err := <-runErr; err != nil {
		t.Errorf("Run: %v", err)
	}
	if n := storedEvents(t, js); n != 1 {
		t.Errorf("stream holds %d events, want the one answered 202", n)
	}
}

// TestSlowClientsAreCutOff: a client that sends its headers too slowly is
// disconnected after ReadHeaderTimeout, one that sends its body too slowly
// after ReadTimeout, each without holding the gateway longer, and nothing
// is stored.
func TestSlowClientsAreCutOff(t *testing.T) {
	b := newAuthBus(t, func(c *gateway.Config) {
		c.ReadHeaderTimeout = 300 * time.Millisecond
		c.ReadTimeout = 2 * time.Second
	}, nil)
	addr := b.url[len("http://"):]
	for _, tt := range []struct {
		name, sent    string
		after, before time.Duration
	}{
		{"headers", "POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents+json\r\n", 300 * time.Millisecond, 1500 * time.Millisecond},
		{"body", "POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents+json\r\nContent-Length: 200\r\n\r\n{\"specversion\":", 2 * time.Second, 6 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			if _, err := io.WriteString(conn, tt.sent); err != nil {
				t.Fatal(err)
			}
			// The client then stalls: the gateway must close the
			// connection (after an answer or not), well before this
			// test's own bound.
			if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
				t.Fatal(err)
			}
			answer, err := io.ReadAll(conn)
			took := time.Since(start)
			if err != nil {
				t.Fatalf("connection not closed by the gateway after %s: %v (read %q)", took, err, answer)
			}
			if took < tt.after || took > tt.before {
				t.Errorf("closed after %s, want between %s and %s", took, tt.after, tt.before)
			}
			if len(answer) > 0 && !strings.HasPrefix(string(answer), "HTTP/1.1 4") {
				t.Errorf("answer %q, want none or a 4xx", answer)
			}
		})
	}
	if n := b.stored(t); n != 0 {
		t.Errorf("stream holds %d events after slow clients", n)
	}
}

// TestInflightBytesAreBounded: while requests hold Config.MaxInflightBytes
// (here one request whose body is still coming), another is refused at
// once with 503 and a Retry-After, nothing stored; once the first is gone,
// the same request is stored.
func TestInflightBytesAreBounded(t *testing.T) {
	// The least the config takes: one largest request (structured mode).
	budget := testMaxEventSize + testMaxEventSize/3 + 64<<10
	b := newAuthBus(t, func(c *gateway.Config) { c.MaxInflightBytes = int64(budget) }, nil)
	conn, err := net.Dial("tcp", b.url[len("http://"):])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A binary-mode request of the whole budget, its body only begun.
	if _, err := fmt.Fprintf(conn, "POST /events HTTP/1.1\r\nHost: x\r\nce-specversion: 1.0\r\nce-id: big\r\nce-source: /shop\r\nce-type: com.example.order.created\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\nxx", budget); err != nil {
		t.Fatal(err)
	}
	// A probe can reach the gateway before the big request's headers do:
	// it is then stored, and counted, before the budget is held. Each
	// probe has its own id, so none is a duplicate of another.
	early, probes := 0, 0
	natstest.Eventually(t, 5*time.Second, func() error {
		probes++
		h, body := structured(fmt.Sprintf("small-%d", probes), "com.example.order.created")
		status, header, answer := post(t, b.url+"/events", h, body)
		if status == http.StatusAccepted {
			early++
			return fmt.Errorf("probe %d stored: the budget is not held yet", probes)
		}
		if status != http.StatusServiceUnavailable {
			return fmt.Errorf("status %d, want 503 while the budget is held; body %s", status, answer)
		}
		var p problemBody
		if err := json.Unmarshal(answer, &p); err != nil || p.Code != "unavailable" || header.Get("Retry-After") == "" {
			t.Fatalf("answer %s (Retry-After %q): want code unavailable and a Retry-After", answer, header.Get("Retry-After"))
		}
		return nil
	})
	if n := b.stored(t); n != uint64(early) {
		t.Fatalf("stream holds %d events after a refusal, want the %d probes stored before the budget was held", n, early)
	}
	conn.Close() // the first request ends: its bytes are released
	h, body := structured("after", "com.example.order.created")
	natstest.Eventually(t, 5*time.Second, func() error {
		if status, _, answer := post(t, b.url+"/events", h, body); status != http.StatusAccepted {
			return fmt.Errorf("status %d after the budget was released; body %s", status, answer)
		}
		return nil
	})
}
