//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

// Every fenced block of docs/protocol.md is a snippet, marked on the line
// before it with <!-- snippet: NAME -->, and NAME has a check here that
// runs it (JavaScript with node, shell with sh, requests against the
// server) or holds it to what the code does (JSON decoded into the Go
// types with unknown fields refused, wire examples compared with what the
// services send). A block without a marker, or with a name that has no
// check, fails the test: a new snippet comes with its check.

// snippet is one fenced block of the page.
type snippet struct {
	name, lang, body string
	line             int
}

var snippetMarker = regexp.MustCompile(`^<!-- snippet: ([a-z0-9-]+) -->$`)

func readSnippets(path string) ([]snippet, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(string(b), "\n")
	var out []snippet
	for i := 0; i < len(lines); i++ {
		if !strings.HasPrefix(lines[i], "```") {
			continue
		}
		s := snippet{lang: strings.TrimPrefix(lines[i], "```"), line: i + 1}
		if i > 0 {
			if m := snippetMarker.FindStringSubmatch(lines[i-1]); m != nil {
				s.name = m[1]
			}
		}
		j := i + 1
		for ; j < len(lines) && !strings.HasPrefix(lines[j], "```"); j++ {
		}
		if j == len(lines) {
			return nil, fmt.Errorf("line %d: fenced block not closed", i+1)
		}
		s.body = strings.Join(lines[i+1:j], "\n")
		out = append(out, s)
		i = j
	}
	return out, nil
}

// snippetEnv is what the checks run against: one hookbus serve.
type snippetEnv struct {
	t   *testing.T
	srv *server
	nc  *nats.Conn
	js  jetstream.JetStream
	cl  *client.Client
	all map[string]snippet
}

// node runs a script (in e2e/node, so that it imports the npm nats
// package), the page's NATS URL replaced by the server's, with stdin.
func (e *snippetEnv) node(script, stdin string) (string, error) {
	script = strings.ReplaceAll(script, "nats://127.0.0.1:4222", e.srv.NATSURL)
	path, err := nodeScript(script)
	if err != nil {
		return "", err
	}
	defer os.Remove(path)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", path)
	cmd.Dir = nodeDir
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("node: %w\n%s", err, errOut.String())
	}
	return out.String(), nil
}

// nodeScript writes script into e2e/node (where the npm nats package is
// installed) and returns its path; the caller removes it.
func nodeScript(script string) (string, error) {
	f, err := os.CreateTemp(nodeDir, ".snippet-*.mjs")
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := f.WriteString(script); err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// stripComments drops the // comments the page's JSON examples carry.
func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if i := strings.Index(l, " // "); i >= 0 && !strings.Contains(l[:i], "://") {
			l = l[:i]
		}
		b.WriteString(l + "\n")
	}
	return b.String()
}

// decodeStrict decodes JSON into v, refusing fields v does not have.
func decodeStrict(s string, v any) error {
	d := json.NewDecoder(strings.NewReader(s))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("more than one JSON value")
	}
	return nil
}

// jsonEqual compares two JSON documents, with keys dropped from both.
func jsonEqual(a, b string, drop ...string) error {
	var x, y any
	if err := json.Unmarshal([]byte(a), &x); err != nil {
		return fmt.Errorf("%w: %s", err, a)
	}
	if err := json.Unmarshal([]byte(b), &y); err != nil {
		return fmt.Errorf("%w: %s", err, b)
	}
	for _, v := range []any{x, y} {
		dropKeys(v, drop)
	}
	if !reflect.DeepEqual(x, y) {
		return fmt.Errorf("got %s\nwant %s", a, b)
	}
	return nil
}

func dropKeys(v any, keys []string) {
	switch v := v.(type) {
	case map[string]any:
		for _, k := range keys {
			delete(v, k)
		}
		for _, w := range v {
			dropKeys(w, keys)
		}
	case []any:
		for _, w := range v {
			dropKeys(w, keys)
		}
	}
}

// wireMsg reads a wire example: a first line, header lines, a blank line,
// the body.
func wireMsg(body string) (first string, h http.Header, data string) {
	head, data, _ := strings.Cut(body, "\n\n")
	lines := strings.Split(head, "\n")
	h = http.Header{}
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, ": ")
		h[k] = append(h[k], v)
	}
	return lines[0], h, data
}

// sameHeaders checks that got has exactly the headers of want (names
// without regard to case), with the same values; a value the page elides
// ("abc...") must start with what it shows.
func sameHeaders(want http.Header, got map[string][]string) error {
	if len(want) != len(got) {
		return fmt.Errorf("headers %v, the page shows %v", got, want)
	}
	for k, vs := range want {
		var gv []string
		for gk, g := range got {
			if strings.EqualFold(gk, k) {
				gv = g
			}
		}
		if len(gv) != 1 {
			return fmt.Errorf("header %s: got %v", k, gv)
		}
		if prefix, _, elided := strings.Cut(vs[0], "..."); elided {
			if !strings.HasPrefix(gv[0], prefix) {
				return fmt.Errorf("header %s: %q does not start with %q", k, gv[0], prefix)
			}
		} else if gv[0] != vs[0] {
			return fmt.Errorf("header %s: %q, the page shows %q", k, gv[0], vs[0])
		}
	}
	return nil
}

func (e *snippetEnv) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

// servePlugin runs a Go worker for spec until the returned stop is called.
func (e *snippetEnv) servePlugin(p client.Plugin) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	p.Spec.Settings = p.Spec.Settings.WithDefaults()
	go func() { done <- e.cl.Serve(ctx, p, client.WithExitAction(client.ExitUnregister)) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		c, cc := e.ctx()
		st, err := e.cl.Get(c, p.Spec.Name)
		cc()
		if err == nil && st.Status.Running() {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return func() {
		cancel()
		<-done
	}
}

// snippetChecks: one per snippet name, returning what is wrong.
var snippetChecks = map[string]func(e *snippetEnv, s snippet) error{
	"wire-binary-event": func(e *snippetEnv, s snippet) error {
		first, h, data := wireMsg(s.body)
		ev := event.New()
		ev.SetID("order-42")
		ev.SetSource("/shop")
		ev.SetType("com.example.order.created")
		_ = ev.SetData(event.ApplicationJSON, json.RawMessage(`{"total":12.5}`))
		msg, err := events.Encode("hookbus.event.com.example.order.created", &ev)
		if err != nil {
			return err
		}
		if want := "HPUB " + msg.Subject + " ..."; first != want {
			return fmt.Errorf("first line %q, want %q", first, want)
		}
		if err := sameHeaders(h, msg.Header); err != nil {
			return err
		}
		if string(msg.Data) != data {
			return fmt.Errorf("body %s, the page shows %s", msg.Data, data)
		}
		return nil
	},
	"msgid-formula": func(e *snippetEnv, s snippet) error {
		const want = `Nats-Msg-Id = lowercase hex( SHA-256( "<byte length of source>:" + source + id ) )`
		if s.body != want {
			return fmt.Errorf("formula %q, want %q", s.body, want)
		}
		sum := sha256.Sum256([]byte("5:/shoporder-42"))
		if got := events.MsgID("/shop", "order-42"); got != hex.EncodeToString(sum[:]) {
			return fmt.Errorf("MsgID(/shop, order-42) = %s, the formula gives %x", got, sum)
		}
		return nil
	},
	"js-msgid": func(e *snippetEnv, s snippet) error {
		out, err := e.node("const source = \"/e2e/nöde\", id = \"order 42\";\n"+s.body+"\nconsole.log(msgId);\n", "")
		if err != nil {
			return err
		}
		if want := events.MsgID("/e2e/nöde", "order 42"); strings.TrimSpace(out) != want {
			return fmt.Errorf("the snippet computes %s, Hookbus %s", strings.TrimSpace(out), want)
		}
		return nil
	},
	"js-publish-structured": func(e *snippetEnv, s snippet) error {
		const id, source = "snippet-publish-1", "/e2e/snippets"
		script := fmt.Sprintf("const id = %q, source = %q;\n%s\n%s\nawait nc.close();\n", id, source, e.all["js-msgid"].body, s.body)
		out, err := e.node(script, "")
		if err != nil {
			return err
		}
		var stream string
		var seq uint64
		var dup bool
		if _, err := fmt.Sscanf(strings.TrimSpace(out), "%s %d %t", &stream, &seq, &dup); err != nil || stream != events.StreamEvents || dup {
			return fmt.Errorf("printed %q, want HOOKBUS_EVENTS <seq> false (%v)", out, err)
		}
		c, cancel := e.ctx()
		defer cancel()
		st, err := e.js.Stream(c, events.StreamEvents)
		if err != nil {
			return err
		}
		m, err := st.GetMsg(c, seq)
		if err != nil {
			return err
		}
		got, err := events.Decode(m.Header, m.Data)
		if err != nil || got.ID() != id || got.Source() != source || m.Header.Get(events.HeaderMsgID) != events.MsgID(source, id) {
			return fmt.Errorf("stored %v (%v) with Nats-Msg-Id %s", got, err, m.Header.Get(events.HeaderMsgID))
		}
		return nil
	},
	"http-publish-answer": func(e *snippetEnv, s snippet) error {
		first, h, body := wireMsg(s.body)
		req, _ := http.NewRequest(http.MethodPost, e.srv.GatewayURL+"/events", strings.NewReader(`{"total":12.5}`))
		for k, v := range map[string]string{"ce-specversion": "1.0", "ce-id": "snippet-http-1", "ce-source": "/shop", "ce-type": "com.example.order.created", "Content-Type": "application/json"} {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		got, _ := io.ReadAll(resp.Body)
		if want := "HTTP/1.1 " + resp.Status; first != want {
			return fmt.Errorf("status %q, the page shows %q", want, first)
		}
		if ct := resp.Header.Get("Content-Type"); ct != h.Get("Content-Type") {
			return fmt.Errorf("Content-Type %q, the page shows %q", ct, h.Get("Content-Type"))
		}
		return jsonEqual(string(got), body, "seq")
	},
	"http-problem": func(e *snippetEnv, s snippet) error {
		req, _ := http.NewRequest(http.MethodPost, e.srv.GatewayURL+"/events", strings.NewReader(`{}`))
		for k, v := range map[string]string{"ce-specversion": "1.0", "ce-source": "/shop", "ce-type": "com.example.order.created", "Content-Type": "application/json"} {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		got, _ := io.ReadAll(resp.Body)
		return jsonEqual(string(got), s.body)
	},
	"sh-http-call": func(e *snippetEnv, s snippet) error {
		// A chain plugin "tax" adds the tax and tries to change the
		// private user_id; the answer is the next snippet.
		stop := e.servePlugin(client.Plugin{Spec: events.PluginSpec{Name: "tax", Event: "com.example.order.created", Priority: 10},
			Chain: func(ctx context.Context, st *client.Step) (client.StepResult, error) {
				var state map[string]any
				if err := st.Event.DataAs(&state); err != nil {
					return client.StepResult{}, err
				}
				state["tax"], state["user_id"] = 0.2, "changed"
				return client.Continue(state), nil
			}})
		defer stop()
		cmdline := strings.ReplaceAll(strings.ReplaceAll(s.body, "\\\n", " "), "localhost:8080", strings.TrimPrefix(e.srv.GatewayURL, "http://"))
		cmdline = strings.Replace(cmdline, "curl -s", "curl -s -i", 1)
		out, err := exec.Command("sh", "-c", cmdline).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		first, h, body := wireMsg(strings.ReplaceAll(e.all["http-call-answer"].body, "\n ", ""))
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		defer resp.Body.Close()
		got, _ := io.ReadAll(resp.Body)
		if want := "HTTP/1.1 " + resp.Status; first != want {
			return fmt.Errorf("status %q, the page shows %q", want, first)
		}
		for k := range h {
			if resp.Header.Get(k) != h.Get(k) {
				return fmt.Errorf("header %s: %q, the page shows %q", k, resp.Header.Get(k), h.Get(k))
			}
		}
		return jsonEqual(string(got), body, "duration_ms")
	},
	"http-call-answer": func(e *snippetEnv, s snippet) error {
		return nil // checked by sh-http-call, whose answer it is
	},
	"json-plugin-state": func(e *snippetEnv, s snippet) error {
		var p events.Plugin
		if err := decodeStrict(stripComments(s.body), &p); err != nil {
			return err
		}
		return p.PluginSpec.Validate()
	},
	"json-command-answers": func(e *snippetEnv, s snippet) error {
		// "{plugin state}, ..." stands for the states of the snippet above.
		state := strings.TrimSpace(stripComments(e.all["json-plugin-state"].body))
		state = strings.Join(strings.Fields(state), " ")
		body := strings.ReplaceAll(stripComments(s.body), "{plugin state}, ...", state)
		for _, l := range strings.Split(body, "\n") {
			if strings.TrimSpace(l) == "" {
				continue
			}
			var r events.CommandReply
			if err := decodeStrict(l, &r); err != nil {
				return fmt.Errorf("%s: %w", l, err)
			}
		}
		return nil
	},
	"json-hook-record": func(e *snippetEnv, s snippet) error {
		var h events.Hook
		return decodeStrict(s.body, &h)
	},
	"json-hook-state": func(e *snippetEnv, s snippet) error {
		var h events.HookState
		return decodeStrict(s.body, &h)
	},
	"wire-auth-exchange": func(e *snippetEnv, s snippet) error {
		// "> subject body" requests, each answered by "< body" or
		// "< Nats-Service-Error-Code: code" and the body on the next line.
		lines := strings.Split(s.body, "\n")
		for i := 0; i < len(lines); i++ {
			subject, body, ok := strings.Cut(strings.TrimPrefix(lines[i], "> "), " ")
			if !strings.HasPrefix(lines[i], "> ") || !ok {
				return fmt.Errorf("line %q: want a request", lines[i])
			}
			m, err := e.nc.Request(subject, []byte(body), 10*time.Second)
			if err != nil {
				return fmt.Errorf("%s: %w", subject, err)
			}
			i++
			answer, code := strings.TrimPrefix(lines[i], "< "), ""
			if c, isCode := strings.CutPrefix(answer, "Nats-Service-Error-Code: "); isCode {
				code, i = c, i+1
				answer = strings.TrimSpace(lines[i])
			}
			if got := m.Header.Get("Nats-Service-Error-Code"); got != code {
				return fmt.Errorf("%s %s: error code %q, the page shows %q", subject, body, got, code)
			}
			if err := jsonEqual(string(m.Data), answer); err != nil {
				return fmt.Errorf("%s %s: %w", subject, body, err)
			}
		}
		return nil
	},
	"js-auth-store": func(e *snippetEnv, s snippet) error {
		out, err := e.node(s.body+"\nconsole.log(JSON.stringify([...preKey1]), JSON.stringify(keys));\nawait nc.close();\n", "")
		if err != nil {
			return err
		}
		if want := `[1,2,3] {"1":"AQID"}`; strings.TrimSpace(out) != want {
			return fmt.Errorf("printed %q, want %q", out, want)
		}
		return nil
	},
	"wire-chain-step": func(e *snippetEnv, s snippet) error {
		first, h, body := wireMsg(s.body)
		fields := strings.Fields(first)
		sub, err := e.nc.QueueSubscribeSync(fields[1], "acl")
		if err != nil {
			return err
		}
		defer sub.Unsubscribe()
		c, cancel := e.ctx()
		defer cancel()
		if _, err := e.cl.Register(c, events.PluginSpec{Name: "acl", Event: "on_user_authorisation", Priority: 10}); err != nil {
			return err
		}
		if _, err := e.cl.Start(c, "acl"); err != nil {
			return err
		}
		defer e.cl.Unregister(c, "acl")
		ev := event.New()
		ev.SetID("2f6c-snippet")
		ev.SetSource("/auth")
		ev.SetType("on_user_authorisation")
		_ = ev.SetData(event.ApplicationJSON, json.RawMessage(body))
		calls := make(chan error, 1)
		go func() {
			_, err := e.cl.Call(c, ev)
			calls <- err
		}()
		m, err := sub.NextMsg(20 * time.Second)
		if err != nil {
			return err
		}
		_ = m.Respond([]byte(`{"action":"continue"}`))
		if err := <-calls; err != nil {
			return err
		}
		if !strings.HasPrefix(m.Reply, "_INBOX.") || !strings.HasPrefix(fields[2], "_INBOX.") {
			return fmt.Errorf("reply %q: the page shows %q", m.Reply, fields[2])
		}
		want := http.Header{}
		for k, v := range h {
			if k != "ce-id" { // the page shows an example id
				want[k] = v
			}
		}
		got := map[string][]string{}
		for k, v := range m.Header {
			if !strings.EqualFold(k, "ce-id") {
				got[k] = v
			}
		}
		if err := sameHeaders(want, got); err != nil {
			return err
		}
		return jsonEqual(string(m.Data), body)
	},
	"js-chain-step": func(e *snippetEnv, s snippet) error {
		const name, typ = "snippet-step", "com.example.snippet.step"
		script := fmt.Sprintf("import { connect } from \"nats\";\nconst nc = await connect({ servers: %q });\nconst name = %q;\n%s\nawait nc.flush();\nconsole.log(\"ready\");\nprocess.stdin.resume();\nprocess.stdin.on(\"end\", () => nc.close());\n", e.srv.NATSURL, name, s.body)
		path, err := nodeScript(script)
		if err != nil {
			return err
		}
		defer os.Remove(path)
		cmd := exec.Command("node", path)
		cmd.Dir = nodeDir
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || strings.TrimSpace(line) != "ready" {
			return fmt.Errorf("the snippet did not start: %q %v %s", line, err, stderr.String())
		}
		c, cancel := e.ctx()
		defer cancel()
		if _, err := e.cl.Register(c, events.PluginSpec{Name: name, Event: typ, Priority: 10, Settings: events.Settings{OnError: events.OnErrorFail}}); err != nil {
			return err
		}
		if _, err := e.cl.Start(c, name); err != nil {
			return err
		}
		defer e.cl.Unregister(c, name)
		for _, tc := range []struct {
			data any
			want string
		}{{map[string]any{"a": 1}, `{"a":1,"seen":true}`}, {nil, `{"seen":true}`}} {
			ev := event.New()
			ev.SetID(fmt.Sprintf("step-%v", tc.data != nil))
			ev.SetSource("/e2e/snippets")
			ev.SetType(typ)
			if tc.data != nil {
				_ = ev.SetData(event.ApplicationJSON, tc.data)
			}
			res, err := e.cl.Call(c, ev)
			if err != nil {
				return fmt.Errorf("call with data %v: %w (the snippet's stderr: %s)", tc.data, err, stderr.String())
			}
			if err := jsonEqual(string(res.State), tc.want); err != nil {
				return err
			}
		}
		_ = stdin.Close()
		return nil
	},
	"js-notify-pull": func(e *snippetEnv, s snippet) error {
		const name, typ = "snippet-notify", "com.example.snippet.notify"
		c, cancel := e.ctx()
		defer cancel()
		if _, err := e.cl.Register(c, events.PluginSpec{Name: name, Event: typ, Mode: events.ModeNotify, Settings: events.Settings{MaxDeliver: 3, BackoffMS: []int{5000}}}); err != nil {
			return err
		}
		if _, err := e.cl.Start(c, name); err != nil {
			return err
		}
		defer e.cl.Unregister(c, name)
		var cons jetstream.Consumer
		for {
			var err error
			if cons, err = e.js.Consumer(c, events.StreamEvents, events.NotifyConsumer(name)); err == nil {
				break
			}
			if c.Err() != nil {
				return err
			}
			time.Sleep(50 * time.Millisecond)
		}
		var seqs []uint64
		for i := range 3 {
			ev := event.New()
			ev.SetID(fmt.Sprintf("notify-%d", i))
			ev.SetSource("/e2e/snippets")
			ev.SetType(typ)
			ack, err := e.cl.Publish(c, ev)
			if err != nil {
				return err
			}
			seqs = append(seqs, ack.Sequence)
		}
		script := fmt.Sprintf("import { connect } from \"nats\";\nconst nc = await connect({ servers: %q });\nconst js = nc.jetstream();\nconst name = %q, free = 8, handled = [];\n%s\nconsole.log(JSON.stringify(handled));\nawait nc.close();\n", e.srv.NATSURL, name, s.body)
		out, err := e.node(script, "")
		if err != nil {
			return err
		}
		var handled []struct{ Seq, Attempt uint64 }
		if err := json.Unmarshal([]byte(out), &handled); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		var got []uint64
		for _, h := range handled {
			got = append(got, h.Seq)
		}
		if !slices.Equal(got, seqs) {
			return fmt.Errorf("the snippet handled %v, want %v", got, seqs)
		}
		info, err := cons.Info(c)
		if err != nil {
			return err
		}
		if info.NumAckPending != 0 || info.AckFloor.Stream < seqs[2] {
			return fmt.Errorf("after the snippet: %d pending, ack floor %d, want the 3 events acknowledged", info.NumAckPending, info.AckFloor.Stream)
		}
		return nil
	},
	"json-chain-result": func(e *snippetEnv, s snippet) error {
		var r events.ChainResult
		if err := decodeStrict(stripComments(s.body), &r); err != nil {
			return err
		}
		for _, st := range r.Trace {
			if !slices.Contains([]events.Outcome{events.OutcomeContinued, events.OutcomeHalted, events.OutcomeSkipped, events.OutcomeHaltedErr, events.OutcomeFailed}, st.Outcome) {
				return fmt.Errorf("outcome %q is not one Hookbus reports", st.Outcome)
			}
		}
		return nil
	},
}

// TestProtocolSnippets runs every snippet of docs/protocol.md, in the
// page's order, against one hookbus serve.
func TestProtocolSnippets(t *testing.T) {
	requireNode(t)
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	snippets, err := readSnippets(filepath.Join(root, "docs", "protocol.md"))
	if err != nil {
		t.Fatal(err)
	}
	all := map[string]snippet{}
	for _, s := range snippets {
		switch {
		case s.name == "":
			t.Errorf("docs/protocol.md:%d: a %q block without a <!-- snippet: NAME --> marker: give it one and a check in e2e/snippets_test.go", s.line, s.lang)
		case snippetChecks[s.name] == nil:
			t.Errorf("docs/protocol.md:%d: snippet %s has no check in e2e/snippets_test.go", s.line, s.name)
		case all[s.name].name != "":
			t.Errorf("docs/protocol.md:%d: snippet %s given twice", s.line, s.name)
		}
		all[s.name] = s
	}
	for name := range snippetChecks {
		if _, ok := all[name]; !ok {
			t.Errorf("check %s has no snippet on the page", name)
		}
	}
	if t.Failed() {
		return
	}
	srv := startServer(t, t.TempDir())
	defer srv.stop(t)
	nc, js, cl := connectClient(t, srv, "hookbus-e2e-snippets")
	env := &snippetEnv{t: t, srv: srv, nc: nc, js: js, cl: cl, all: all}
	for _, s := range snippets {
		t.Run(s.name, func(t *testing.T) {
			if err := snippetChecks[s.name](env, s); err != nil {
				t.Errorf("docs/protocol.md:%d: snippet %s: %v", s.line, s.name, err)
			}
		})
	}
	// The checks fail a wrong snippet: the chain step that crashed a
	// newcomer's worker on a null state, a wire example with a header
	// the codec does not send.
	t.Run("wrong snippets fail their checks", func(t *testing.T) {
		step := all["js-chain-step"]
		step.body = strings.Replace(step.body, " ?? {}", "", 1)
		if step.body == all["js-chain-step"].body {
			t.Fatal("the chain step snippet no longer has its null guard")
		}
		if err := snippetChecks["js-chain-step"](env, step); err == nil {
			t.Error("the chain step snippet without its null guard passed its check")
		}
		wire := all["wire-binary-event"]
		wire.body = strings.Replace(wire.body, "ce-source: /shop", "ce-source: /shop\nce-time: 2026-11-21T10:00:00Z", 1)
		if err := snippetChecks["wire-binary-event"](env, wire); err == nil {
			t.Error("a wire example with a header the codec does not send passed its check")
		}
	})
}
