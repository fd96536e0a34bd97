// Command raw is a conformance adapter with no Hookbus library: a plugin
// worker written from docs/protocol.md with nats.go alone, one handler at a
// time, without progress reports (see e2e/adapters/ADAPTER.md). It shows
// that the suite holds any implementation to the protocol, and, broken on
// purpose with -break, that the suite catches what it guards:
//
//	-break ack-before-dlq   acknowledges an event before its dead letter is stored
//	-break wrong-nak-delay  naks with the wanted delay, without the backoff correction
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var brk = flag.String("break", "", "break the worker on purpose: ack-before-dlq or wrong-nak-delay")

type spec struct {
	Name     string `json:"name"`
	Event    string `json:"event"`
	Mode     string `json:"mode"`
	Settings struct {
		MaxDeliver int   `json:"max_deliver"`
		BackoffMS  []int `json:"backoff_ms"`
	} `json:"settings"`
}

type behaviour struct {
	Act       string         `json:"act"`
	Set       map[string]any `json:"set"`
	Msg       string         `json:"msg"`
	FailUntil int            `json:"fail_until"`
	Fail      string         `json:"fail"`
	SleepMS   int            `json:"sleep_ms"`
	HangAt    int            `json:"hang_at"`
}

var (
	outMu sync.Mutex
	out   = json.NewEncoder(os.Stdout)
)

func report(v map[string]any) {
	outMu.Lock()
	defer outMu.Unlock()
	_ = out.Encode(v)
}

func main() {
	flag.Parse()
	log.SetPrefix("raw-adapter: ")
	nc, err := nats.Connect(os.Getenv("HOOKBUS_NATS_URL"), nats.MaxReconnects(-1))
	if err != nil {
		log.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	w := &worker{nc: nc, js: js}
	ctx, cancel := context.WithCancel(context.Background())
	var done sync.WaitGroup
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var cmd struct {
			Cmd    string          `json:"cmd"`
			Plugin json.RawMessage `json:"plugin"`
		}
		if err := json.Unmarshal(in.Bytes(), &cmd); err != nil {
			log.Fatalf("command %q: %v", in.Text(), err)
		}
		switch cmd.Cmd {
		case "hello":
			report(map[string]any{"report": "hello", "sdk": "raw", "features": map[string]bool{
				"chain": true, "notify": true, "progress": false, "concurrency": false, "drain": true,
			}})
		case "serve":
			if err := json.Unmarshal(cmd.Plugin, &w.spec); err != nil {
				log.Fatal(err)
			}
			w.raw = cmd.Plugin
			done.Go(func() {
				if err := w.serve(ctx); err != nil {
					log.Print(err)
				}
			})
		case "stop":
			cancel()
			done.Wait()
			report(map[string]any{"report": "stopped", "error": ""})
			nc.Close()
			return
		}
	}
}

type worker struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	spec spec
	raw  json.RawMessage
}

func (w *worker) serve(ctx context.Context) error {
	if w.spec.Mode == "chain" {
		sub, err := w.nc.QueueSubscribe("hookbus.plugin."+w.spec.Name+".call", w.spec.Name, w.step)
		if err != nil {
			return err
		}
		defer func() { _ = sub.Drain() }()
	}
	st, err := w.command(ctx, "register", "hookbus.cmd.plugin.register."+w.spec.Name+"."+w.spec.Event, map[string]any{"plugin": w.raw})
	if err != nil {
		return err
	}
	if st.Status == "registered" {
		if st, err = w.command(ctx, "start", "hookbus.cmd.plugin.start."+w.spec.Name, map[string]any{"name": w.spec.Name}); err != nil {
			return err
		}
	}
	w.spec.Settings.MaxDeliver, w.spec.Settings.BackoffMS = st.Settings.MaxDeliver, st.Settings.BackoffMS
	if w.spec.Mode == "chain" {
		<-ctx.Done()
		return nil
	}
	return w.pull(ctx)
}

// command publishes a plugin command as a CloudEvent and waits for the
// registry's answer on its Hookbus-Reply-To subject.
func (w *worker) command(ctx context.Context, op, subject string, data any) (state, error) {
	id := token()
	answer := "hookbus.answer.plugin." + w.spec.Name + "." + id
	sub, err := w.nc.SubscribeSync(answer)
	if err != nil {
		return state{}, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	body, _ := json.Marshal(data)
	m := nats.NewMsg(subject)
	m.Header.Set("ce-specversion", "1.0")
	m.Header.Set("ce-id", id)
	m.Header.Set("ce-source", "/e2e/raw-adapter")
	m.Header.Set("ce-type", "hookbus.cmd.plugin."+op)
	m.Header.Set("content-type", "application/json")
	m.Header.Set("Hookbus-Reply-To", answer)
	m.Data = body
	if _, err := w.js.PublishMsg(ctx, m); err != nil {
		return state{}, fmt.Errorf("%s: %w", op, err)
	}
	reply, err := sub.NextMsg(30 * time.Second)
	if err != nil {
		return state{}, fmt.Errorf("%s: no answer: %w", op, err)
	}
	var r struct {
		Plugins []state                         `json:"plugins"`
		Error   *struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal(reply.Data, &r); err != nil || r.Error != nil || len(r.Plugins) != 1 {
		return state{}, fmt.Errorf("%s: answer %s", op, reply.Data)
	}
	return r.Plugins[0], nil
}

// state is the part of a plugin's state the worker reads.
type state struct {
	spec
	Status string `json:"status"`
}

func token() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (w *worker) step(m *nats.Msg) {
	if !strings.HasPrefix(m.Reply, "_INBOX.") {
		return
	}
	id := m.Header.Get("ce-id")
	attempt, _ := strconv.Atoi(m.Header.Get("Hookbus-Chain-Attempt"))
	step, _ := strconv.Atoi(m.Header.Get("Hookbus-Chain-Step"))
	report(map[string]any{"report": "start", "plugin": w.spec.Name, "id": id, "attempt": attempt, "step": step, "t_ms": time.Now().UnixMilli()})
	var state map[string]any
	_ = json.Unmarshal(m.Data, &state)
	if state == nil {
		state = map[string]any{}
	}
	var b behaviour
	if raw, err := json.Marshal(state["b"]); err == nil {
		_ = json.Unmarshal(raw, &b)
	}
	time.Sleep(time.Duration(b.SleepMS) * time.Millisecond)
	for k, v := range b.Set {
		state[k] = v
	}
	answer := map[string]any{"action": "continue", "state": state}
	outcome := "ok"
	switch b.Act {
	case "halt":
		answer["action"] = "halt"
	case "error":
		answer, outcome = map[string]any{"error": b.Msg}, "fail"
	}
	report(map[string]any{"report": "end", "plugin": w.spec.Name, "id": id, "attempt": attempt, "outcome": outcome, "t_ms": time.Now().UnixMilli()})
	body, _ := json.Marshal(answer)
	_ = m.Respond(body)
}

func (w *worker) pull(ctx context.Context) error {
	var cons jetstream.Consumer
	for {
		var err error
		if cons, err = w.js.Consumer(ctx, "HOOKBUS_EVENTS", "notify-"+w.spec.Name); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
	cfg := cons.CachedInfo().Config
	for ctx.Err() == nil {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			continue
		}
		for m := range batch.Messages() {
			if ctx.Err() != nil {
				_ = m.Nak()
				continue
			}
			w.deliver(m, cfg)
		}
	}
	return nil
}

func (w *worker) deliver(m jetstream.Msg, cfg jetstream.ConsumerConfig) {
	meta, err := m.Metadata()
	if err != nil {
		return
	}
	attempt := int(meta.NumDelivered)
	h := m.Headers()
	typ := h.Get("ce-type")
	if h.Get("ce-specversion") != "1.0" || h.Get("ce-id") == "" || h.Get("ce-source") == "" || typ == "" || m.Subject() != "hookbus.event."+typ {
		w.deadLetter(m, meta, cfg, "invalid event: not a CloudEvent of this subject")
		return
	}
	max := w.spec.Settings.MaxDeliver
	if attempt > max {
		w.deadLetter(m, meta, cfg, fmt.Sprintf("no worker of %s answered in %d deliveries", w.spec.Name, attempt-1))
		return
	}
	id := h.Get("ce-id")
	var data struct {
		B behaviour `json:"b"`
	}
	_ = json.Unmarshal(m.Data(), &data)
	b := data.B
	report(map[string]any{"report": "start", "plugin": w.spec.Name, "id": id, "attempt": attempt, "step": 0, "t_ms": time.Now().UnixMilli()})
	var failed error
	permanent := false
	switch {
	case b.Fail == "always":
		failed = fmt.Errorf("fail %d", attempt)
	case b.Fail == "permanent":
		failed, permanent = fmt.Errorf("permanent failure at %d", attempt), true
	case attempt < b.FailUntil:
		failed = fmt.Errorf("fail %d", attempt)
	default:
		if b.HangAt == attempt {
			time.Sleep(10 * time.Minute)
		}
		time.Sleep(time.Duration(b.SleepMS) * time.Millisecond)
	}
	outcome := "ok"
	if failed != nil {
		outcome = "fail"
	}
	report(map[string]any{"report": "end", "plugin": w.spec.Name, "id": id, "attempt": attempt, "outcome": outcome, "t_ms": time.Now().UnixMilli()})
	switch {
	case failed == nil:
		_ = m.Ack()
	case permanent || attempt >= max:
		w.deadLetter(m, meta, cfg, failed.Error())
	default:
		_ = m.NakWithDelay(w.nakDelay(cfg, attempt))
	}
}

// nakDelay: to be delivered again backoff_ms[attempt-1] later, nats-server
// 2.15 needs delay + backoff[attempt-1] - ack_wait = want.
func (w *worker) nakDelay(cfg jetstream.ConsumerConfig, attempt int) time.Duration {
	bo := w.spec.Settings.BackoffMS
	want := time.Duration(bo[min(attempt-1, len(bo)-1)]) * time.Millisecond
	if *brk == "wrong-nak-delay" || len(cfg.BackOff) == 0 {
		return want
	}
	cur := cfg.BackOff[min(attempt-1, len(cfg.BackOff)-1)]
	return max(want-cur+cfg.AckWait, time.Millisecond)
}

// deadLetter stores the dead letter, then acks; if it is not stored, naks.
func (w *worker) deadLetter(m jetstream.Msg, meta *jetstream.MsgMetadata, cfg jetstream.ConsumerConfig, reason string) {
	if *brk == "ack-before-dlq" {
		_ = m.Ack()
	}
	dl := nats.NewMsg("hookbus.dlq." + w.spec.Name)
	for k, vs := range m.Headers() {
		if !strings.HasPrefix(strings.ToLower(k), "nats-") {
			dl.Header[k] = vs
		}
	}
	dl.Header.Set("Hookbus-Dlq-Reason", reason)
	dl.Header.Set("Hookbus-Dlq-Subscriber", w.spec.Name)
	dl.Header.Set("Hookbus-Dlq-Subject", m.Subject())
	dl.Header.Set("Hookbus-Dlq-Stream-Seq", strconv.FormatUint(meta.Sequence.Stream, 10))
	dl.Header.Set("Hookbus-Dlq-Deliveries", strconv.FormatUint(meta.NumDelivered, 10))
	dl.Header.Set("Nats-Msg-Id", fmt.Sprintf("dlq-%s-%d", w.spec.Name, meta.Sequence.Stream))
	dl.Data = m.Data()
	pause := 100 * time.Millisecond
	var err error
	for attempt := 1; attempt <= 4; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = w.js.PublishMsg(ctx, dl, jetstream.WithExpectStream("HOOKBUS_DLQ"), jetstream.WithRetryAttempts(0))
		cancel()
		var api *jetstream.APIError
		if err == nil || errors.As(err, &api) {
			break
		}
		time.Sleep(pause)
		pause *= 2
	}
	if err != nil {
		log.Printf("dead letter not stored: %v", err)
		if *brk != "ack-before-dlq" {
			_ = m.NakWithDelay(w.nakDelay(cfg, int(meta.NumDelivered)))
		}
		return
	}
	if *brk != "ack-before-dlq" {
		_ = m.Ack()
	}
}
