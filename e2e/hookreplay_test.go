//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/events"
)

// A webhook hook whose receiver answers 404 through `hookbus serve`: the
// event is dead-lettered for hook-<id> at once, `hookbus dlq list
// --subscriber hook-<id>` shows it, and once the receiver is fixed `hookbus
// dlq replay SEQ` delivers it to the receiver once, with the webhook-id of
// the failed attempt. After the hook is deleted, its dead letters are not
// replayed.
func TestHookDeadLetterReplay(t *testing.T) {
	var (
		status atomic.Int32
		mu     sync.Mutex
		tried  []string // webhook-id of each request
		got    []string // ce-id of each request answered 2xx
	)
	status.Store(http.StatusNotFound)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		code := int(status.Load())
		mu.Lock()
		tried = append(tried, r.Header.Get("webhook-id"))
		if code < 300 {
			got = append(got, r.Header.Get("Ce-Id"))
		}
		mu.Unlock()
		w.WriteHeader(code)
	}))
	defer receiver.Close()
	requests := func() ([]string, []string) {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), tried...), append([]string(nil), got...)
	}

	srv := startServer(t, t.TempDir(), "--webhook-allow", "127.0.0.0/8")
	cli := func(t *testing.T, args ...string) string {
		t.Helper()
		stdout, stderr, code := run(t, append(args, "--nats-url", srv.NATSURL)...)
		if code != 0 {
			t.Fatalf("hookbus %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, stdout, stderr)
		}
		return stdout
	}
	var h events.Hook
	decodeJSON(t, "hook create", cli(t, "hook", "create", "-n", "e2e.replay.*", "-P", receiver.URL, "-o", "json"), &h)
	sub := events.HookConsumer(h.ID)
	cli(t, "publish", "--type", "e2e.replay.order", "--source", "/e2e", "--id", "r1", "--data", `{"n":1}`)

	type deadLetter struct {
		Seq        uint64 `json:"seq"`
		Subscriber string `json:"subscriber"`
		Reason     string `json:"reason"`
	}
	list := func(want int) []deadLetter {
		t.Helper()
		var dls []deadLetter
		natstest.Eventually(t, 30*time.Second, func() error {
			if err := json.Unmarshal([]byte(cli(t, "dlq", "list", "--subscriber", sub, "-o", "json")), &dls); err != nil {
				return err
			}
			if len(dls) != want {
				return fmt.Errorf("%d dead letters of %s, want %d", len(dls), sub, want)
			}
			return nil
		})
		return dls
	}
	dls := list(1)
	if dl := dls[0]; dl.Subscriber != sub || !strings.Contains(dl.Reason, "404") {
		t.Errorf("dead letter = %+v, want %s's with the 404", dl, sub)
	}
	if table := cli(t, "dlq", "list", "--subscriber", sub); !strings.Contains(table, sub) {
		t.Errorf("dlq list --subscriber %s:\n%s", sub, table)
	}

	status.Store(http.StatusOK) // the receiver is fixed
	cli(t, "dlq", "replay", fmt.Sprint(dls[0].Seq))
	natstest.Eventually(t, 30*time.Second, func() error {
		if _, got := requests(); len(got) != 1 {
			return fmt.Errorf("receiver got %v", got)
		}
		return nil
	})
	time.Sleep(time.Second) // a second delivery would show
	if tried, got := requests(); len(got) != 1 || got[0] != "r1" || len(tried) != 2 || tried[0] != tried[1] {
		t.Errorf("requests with webhook-id %v, delivered %v; want r1 delivered once, with the failed attempt's webhook-id", tried, got)
	}
	list(0)

	// A deleted hook's dead letter stays: nobody would take its replay.
	status.Store(http.StatusNotFound)
	cli(t, "publish", "--type", "e2e.replay.order", "--source", "/e2e", "--id", "r2", "--data", `{"n":2}`)
	dls = list(1)
	cli(t, "hook", "delete", h.ID)
	_, stderr, code := run(t, "dlq", "replay", fmt.Sprint(dls[0].Seq), "--nats-url", srv.NATSURL)
	if code != 1 || !strings.Contains(stderr, "no longer exists") {
		t.Errorf("dlq replay for a deleted hook: exit %d, stderr %q; want 1, no longer exists", code, stderr)
	}
	list(1)
	srv.stop(t)
}
