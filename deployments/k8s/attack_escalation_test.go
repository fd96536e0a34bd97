package k8s

// Escalations: multi-step attacks by a client holding one identity's
// credentials, against the dev overlay running as its manifests say
// (startStack: a fresh stack per test), then a look, as admin, at whether
// the damage happened. Each test checks the outcome, not which defence
// (NATS' permissions or a service's own check) stopped the attack.
// Escalation 7 attacks the all-in-one `hookbus serve` instead.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

const (
	otherPlugin  = "other" // another team's plugin: plugin-example may not touch it
	authContext  = "acme"  // the auth context whose credentials admin saves
	clearSubject = "hookbus.auth.context.clear"
	otherSteps   = "hookbus.plugin.other.call"
	streamEvents = "HOOKBUS_EVENTS"
)

var acmeCreds = []byte("acme-credentials-v1")

// attackTimeout bounds one escalation test.
const attackTimeout = 60 * time.Second

func attackContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), attackTimeout)
	t.Cleanup(cancel)
	return ctx
}

// TestAttackEscalation1SharedInbox: plugin-example and registry listen on
// every inbox (_INBOX.>) and on admin's and persistence's while admin
// saves and reads credentials through the persistence service; they must
// see none of the replies, because NATS refuses those subscriptions.
func TestAttackEscalation1SharedInbox(t *testing.T) {
	escalation(t, 1)
	st := startStack(t)
	ctx := attackContext(t)

	var sniffers []*sniffer
	for _, user := range []string{pluginUser, "registry"} {
		for _, subject := range []string{"_INBOX.>", "_INBOX.admin.>", "_INBOX.persistence.>"} {
			sniffers = append(sniffers, st.sniff(t, user, subject))
		}
	}
	st.saveCreds(t, ctx, authContext, acmeCreds)
	if !st.credsHeld(t, ctx, authContext, acmeCreds, "admin reading what it saved") {
		return
	}
	// admin has its answers: anything the server sent a sniffer meanwhile
	// was queued before (seen flushes first).
	for _, s := range sniffers {
		seen := s.seen(t)
		if !s.refused {
			t.Errorf("%s: sub %s: not refused by NATS", s.user, s.subject)
		}
		if len(seen) > 0 {
			t.Errorf("%s: sub %s: read %d messages meant for others: %s", s.user, s.subject, len(seen), describe(seen))
		}
	}
}

// TestAttackEscalation2SettlingOthersDeliveries: while other's worker
// holds a delivery of notify-other, plugin-example tries to read it (every
// inbox, admin's inbox, a pull of its own on notify-other) and to settle
// it with +TERM (on the reply of a delivery it read, and on the ack
// subject guessed from the stream sequence). The event must come back to
// notify-other when the worker gives it back.
func TestAttackEscalation2SettlingOthersDeliveries(t *testing.T) {
	escalation(t, 2)
	st := startStack(t)
	ctx := attackContext(t)

	const typ = "com.example.other.happened"
	// A long first backoff (the ack wait): the delivery stays with the
	// worker until it gives it back.
	st.registerAndStart(t, ctx, events.PluginSpec{Name: otherPlugin, Event: typ, Mode: events.ModeNotify, Priority: 10,
		Settings: events.Settings{MaxDeliver: 5, BackoffMS: []int{30000}}})
	queue := "notify-" + otherPlugin
	var cons jetstream.Consumer
	eventually(t, ctx, "the dispatcher creates "+queue, nil, func() error {
		var err error
		cons, err = st.ajs.Consumer(ctx, streamEvents, queue)
		return err
	})
	sniffers := []*sniffer{st.sniff(t, pluginUser, "_INBOX.>"), st.sniff(t, pluginUser, "_INBOX.admin.>")}

	ack, err := st.ac.Publish(ctx, attackEvent(t, typ, "escalation-2", map[string]any{"secret": "for other only"}))
	if err != nil {
		t.Fatal(err)
	}
	// other's worker (admin: no other user may read notify-other) takes it.
	delivery := fetchOne(t, cons, ack.Sequence, 1)
	if delivery == nil {
		t.Fatalf("%s did not deliver event %d", queue, ack.Sequence)
	}

	// The attacker reads what reached its subscriptions and settles it.
	for _, s := range sniffers {
		seen := s.seen(t)
		if len(seen) > 0 {
			t.Errorf("%s: sub %s (refused by NATS: %v): read %d messages meant for others: %s", s.user, s.subject, s.refused, len(seen), describe(seen))
		}
		for _, m := range seen {
			if !strings.HasPrefix(m.Reply, "$JS.ACK.") {
				continue
			}
			// allow_responses would let it answer a message it received.
			if err := s.nc.Publish(m.Reply, []byte("+TERM")); err != nil {
				t.Fatal(err)
			}
			refused, err := refusal(s.nc, m.Reply)
			t.Logf("%s: +TERM on the reply it read, %s: refused by NATS %v %v", s.user, m.Reply, refused, errOrEmpty(err))
		}
	}
	pull := st.request(pluginUser, &nats.Msg{Subject: "$JS.API.CONSUMER.MSG.NEXT." + streamEvents + "." + queue,
		Data: []byte(`{"batch":1,"no_wait":true}`)}, 2*time.Second)
	t.Logf("%s: pull from %s: %s", pluginUser, queue, pull)
	if pull.Reply != nil && len(pull.Reply.Data) > 0 && pull.Reply.Header.Get("Status") == "" {
		t.Errorf("%s pulled a delivery of %s: %s", pluginUser, queue, pull.Reply.Data)
	}
	guess := fmt.Sprintf("$JS.ACK.%s.%s.1.%d.1.%d.0", streamEvents, queue, ack.Sequence, time.Now().UnixNano())
	refused, err := st.tryPub(pluginUser, guess, []byte("+TERM"))
	t.Logf("%s: +TERM on the guessed ack subject %s: refused by NATS %v %v", pluginUser, guess, refused, errOrEmpty(err))

	// The worker gives it back: it must be delivered again.
	if err := delivery.Nak(); err != nil {
		t.Fatal(err)
	}
	if again := fetchOne(t, cons, ack.Sequence, 2); again == nil {
		t.Errorf("event %d was not delivered to %s again after the worker gave it back: %s settled it", ack.Sequence, queue, pluginUser)
	} else if err := again.Ack(); err != nil {
		t.Error(err)
	}
}

// fetchOne pulls one message from cons and wants delivery number
// delivered of stream sequence seq; nil when none came.
func fetchOne(t *testing.T, cons jetstream.Consumer, seq, delivered uint64) jetstream.Msg {
	t.Helper()
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got jetstream.Msg
	for m := range batch.Messages() {
		got = m
	}
	if got == nil {
		return nil
	}
	meta, err := got.Metadata()
	if err != nil || meta.Sequence.Stream != seq || meta.NumDelivered != delivered {
		t.Fatalf("pulled %+v (%v), want delivery %d of stream sequence %d", meta, err, delivered, seq)
	}
	return got
}

// TestAttackEscalation3PushConsumerDeliverSubjects: users create push
// consumers whose deliver subject is a service's request subject or
// another plugin's step queue, so that the server publishes stream
// messages there in their stead: registry on bucket hookbus_plugins (it
// writes a value that is a valid clear request), dispatcher on
// HOOKBUS_EVENTS (an event whose data is a clear request), plugin-example
// on HOOKBUS_LIFECYCLE and HOOKBUS_EVENTS, to other's steps and to the
// clear request. The credentials of context acme must survive and no step
// may reach other's workers, whether NATS refused the consumers or the
// services refused requests that do not come from an inbox.
func TestAttackEscalation3PushConsumerDeliverSubjects(t *testing.T) {
	escalation(t, 3)
	st := startStack(t)
	ctx := attackContext(t)

	st.saveCreds(t, ctx, authContext, acmeCreds)
	st.registerAndStart(t, ctx, events.PluginSpec{Name: otherPlugin, Event: "com.example.other.called", Priority: 10})
	steps, err := st.admin.QueueSubscribeSync(otherSteps, otherPlugin) // other's worker
	if err != nil {
		t.Fatal(err)
	}
	if err := st.admin.Flush(); err != nil {
		t.Fatal(err)
	}

	for _, a := range []struct {
		user, stream, filter, deliver, group string
	}{
		{"registry", "KV_hookbus_plugins", "$KV.hookbus_plugins.>", clearSubject, events.AuthServiceName},
		{"dispatcher", streamEvents, "", clearSubject, events.AuthServiceName},
		{pluginUser, "HOOKBUS_LIFECYCLE", "hookbus.lifecycle.>", otherSteps, otherPlugin},
		{pluginUser, streamEvents, "", otherSteps, otherPlugin},
		{pluginUser, "HOOKBUS_LIFECYCLE", "hookbus.lifecycle.>", clearSubject, events.AuthServiceName},
		{pluginUser, streamEvents, "", clearSubject, events.AuthServiceName},
	} {
		name := "attack-" + token()
		cfg := jetstream.ConsumerConfig{Name: name, FilterSubject: a.filter, DeliverSubject: a.deliver, DeliverGroup: a.group,
			AckPolicy: jetstream.AckNonePolicy, DeliverPolicy: jetstream.DeliverAllPolicy}
		subject := "$JS.API.CONSUMER.CREATE." + a.stream + "." + name
		if a.filter != "" {
			subject += "." + a.filter
		}
		body, _ := json.Marshal(map[string]any{"stream_name": a.stream, "config": cfg})
		res := st.request(a.user, &nats.Msg{Subject: subject, Data: body}, 5*time.Second)
		outcome := res.String()
		if res.Reply != nil {
			if e := jsAPIError(res.Reply); e != nil {
				outcome = "not refused by NATS; JetStream error " + e.Error()
			} else {
				outcome = "created"
			}
		}
		t.Logf("%s: push consumer on %s delivering to %s (group %s): %s", a.user, a.stream, a.deliver, a.group, outcome)
	}

	// What the consumers would deliver: an event whose data is a clear
	// request, a plugin state change, and (by registry, which may write
	// its bucket) a value that is a clear request.
	clearReq := map[string]any{"context": authContext}
	if _, err := st.ac.Publish(ctx, attackEvent(t, "com.example.clear", "escalation-3", clearReq)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ac.Stop(ctx, otherPlugin); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(clearReq)
	put := st.request("registry", &nats.Msg{Subject: "$KV.hookbus_plugins.zz-attack", Data: b}, 5*time.Second)
	t.Logf("registry: writes %s to $KV.hookbus_plugins.zz-attack: %s", b, put)

	// Every consumer delivering to those subjects has delivered all it
	// had; then the services had a second to act on it.
	st.waitPushDelivered(t, ctx, map[string]bool{clearSubject: true, otherSteps: true},
		"KV_hookbus_plugins", streamEvents, "HOOKBUS_LIFECYCLE")
	for end := time.Now().Add(time.Second); ; {
		if !st.credsHeld(t, ctx, authContext, acmeCreds, "after the push consumers delivered") || time.Now().After(end) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := st.admin.Flush(); err != nil {
		t.Fatal(err)
	}
	var got []*nats.Msg
	for {
		m, err := steps.NextMsg(0)
		if err != nil {
			break
		}
		got = append(got, m)
	}
	if len(got) > 0 {
		t.Errorf("other's worker got %d steps it was never sent by the dispatcher: %s", len(got), describe(got))
	}
}

// waitPushDelivered waits until every push consumer of the streams whose
// deliver subject is in subjects has nothing left to deliver.
func (st *attackStack) waitPushDelivered(t *testing.T, ctx context.Context, subjects map[string]bool, streams ...string) {
	t.Helper()
	for _, name := range streams {
		s, err := st.ajs.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		var consumers []string
		list := s.ListConsumers(ctx)
		for info := range list.Info() {
			if subjects[info.Config.DeliverSubject] {
				consumers = append(consumers, info.Name)
			}
		}
		if err := list.Err(); err != nil {
			t.Fatal(err)
		}
		for _, c := range consumers {
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			for {
				info, err := s.PushConsumer(wctx, c)
				var ci *jetstream.ConsumerInfo
				if err == nil {
					ci, err = info.Info(wctx)
				}
				if err == nil && ci.NumPending == 0 {
					t.Logf("consumer %s on %s delivered up to stream sequence %d to %s", c, name, ci.Delivered.Stream, ci.Config.DeliverSubject)
					break
				}
				if wctx.Err() != nil {
					t.Logf("consumer %s on %s still has messages to deliver after 5 s (%v)", c, name, err)
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			cancel()
		}
	}
}

// TestAttackEscalation4StreamUpdates: every user but admin tries to give
// KV_hookbus_auth a max age of 1 s, to add hookbus.auth.keys.set to
// KV_hookbus_plugins' subjects, and to purge and delete KV_hookbus_auth.
// The definitions must be unchanged and the credentials still there
// after the 1 s max age would have expired them.
func TestAttackEscalation4StreamUpdates(t *testing.T) {
	escalation(t, 4)
	st := startStack(t)
	ctx := attackContext(t)

	st.saveCreds(t, ctx, authContext, acmeCreds)
	authBefore := st.streamConfig(t, ctx, "KV_hookbus_auth")
	pluginsBefore := st.streamConfig(t, ctx, "KV_hookbus_plugins")
	shortAuth := authBefore
	shortAuth.MaxAge, shortAuth.Duplicates = time.Second, time.Second
	widePlugins := pluginsBefore
	widePlugins.Subjects = append(append([]string(nil), pluginsBefore.Subjects...), events.AuthKeysSetSubject)
	shortJSON, _ := json.Marshal(shortAuth)
	wideJSON, _ := json.Marshal(widePlugins)

	var last time.Time
	for _, user := range []string{"registry", "dispatcher", "persistence", pluginUser} {
		for _, a := range []struct {
			what, subject string
			body          []byte
		}{
			{"max_age 1s on KV_hookbus_auth", "$JS.API.STREAM.UPDATE.KV_hookbus_auth", shortJSON},
			{"hookbus.auth.keys.set added to KV_hookbus_plugins", "$JS.API.STREAM.UPDATE.KV_hookbus_plugins", wideJSON},
			{"purge KV_hookbus_auth", "$JS.API.STREAM.PURGE.KV_hookbus_auth", []byte("{}")},
			{"delete KV_hookbus_auth", "$JS.API.STREAM.DELETE.KV_hookbus_auth", nil},
		} {
			res := st.request(user, &nats.Msg{Subject: a.subject, Data: a.body}, 5*time.Second)
			last = time.Now()
			outcome := res.String()
			if res.Reply != nil {
				if e := jsAPIError(res.Reply); e != nil {
					outcome = "not refused by NATS; JetStream error " + e.Error()
				} else {
					outcome = "done"
				}
			}
			t.Logf("%s: %s: %s", user, a.what, outcome)
		}
	}

	for name, before := range map[string]jetstream.StreamConfig{"KV_hookbus_auth": authBefore, "KV_hookbus_plugins": pluginsBefore} {
		s, err := st.ajs.Stream(ctx, name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got, want := definition(s.CachedInfo().Config), definition(before); got != want {
			t.Errorf("%s's definition changed:\n got %s\nwant %s", name, got, want)
		}
	}
	// Past the 1 s max age of the attempts, the credentials are there.
	for {
		if !st.credsHeld(t, ctx, authContext, acmeCreds, "after the update attempts") || time.Since(last) > 2*time.Second {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (st *attackStack) streamConfig(t *testing.T, ctx context.Context, name string) jetstream.StreamConfig {
	t.Helper()
	s, err := st.ajs.Stream(ctx, name)
	if err != nil {
		t.Fatalf("admin: stream %s: %v", name, err)
	}
	return s.CachedInfo().Config
}

// definition is a stream definition as JSON, without the metadata the
// server keeps in it.
func definition(c jetstream.StreamConfig) string {
	c.Metadata = nil
	b, _ := json.Marshal(c)
	return string(b)
}

// TestAttackEscalation5ConfusedDeputy: plugin-example sends commands the
// registry may accept, naming as the answer's subject other's entry in
// bucket hookbus_plugins, other's lifecycle subject and admin's inbox:
// places the registry may publish to and the worker may not. Also in the
// old subject form hookbus.cmd.plugin.<op>, which NATS must refuse the
// worker. Nothing may change there.
func TestAttackEscalation5ConfusedDeputy(t *testing.T) {
	escalation(t, 5)
	st := startStack(t)
	ctx := attackContext(t)

	other := events.PluginSpec{Name: otherPlugin, Event: "com.example.other.called", Priority: 10}
	example := events.PluginSpec{Name: pluginName, Event: "com.example.order.created", Priority: 10}
	shape := st.commandShape(t, func() { st.registerAndStart(t, ctx, other) })
	st.registerAndStart(t, ctx, example)
	kv, err := st.ajs.KeyValue(ctx, "hookbus_plugins")
	if err != nil {
		t.Fatal(err)
	}
	before, err := kv.Get(ctx, otherPlugin)
	if err != nil {
		t.Fatal(err)
	}
	lifecycle, err := st.ajs.Stream(ctx, "HOOKBUS_LIFECYCLE")
	if err != nil {
		t.Fatal(err)
	}
	lifeBefore, err := lifecycle.GetLastMsgForSubject(ctx, "hookbus.lifecycle."+otherPlugin)
	if err != nil {
		t.Fatal(err)
	}
	watch := map[string]*nats.Subscription{}
	for _, subject := range []string{"_INBOX.admin.x", "hookbus.lifecycle." + otherPlugin} {
		if watch[subject], err = st.admin.SubscribeSync(subject); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.admin.Flush(); err != nil {
		t.Fatal(err)
	}

	body := events.PluginCommand{Plugin: &example}
	for _, subject := range []string{"hookbus.cmd.plugin.register." + pluginName, "hookbus.cmd.plugin.register"} {
		for _, replyTo := range []string{"$KV.hookbus_plugins." + otherPlugin, "hookbus.lifecycle." + otherPlugin, "_INBOX.admin.x"} {
			res := st.request(pluginUser, shape.command(subject, body, replyTo), 5*time.Second)
			t.Logf("%s: %s with %s %s: %s", pluginUser, subject, events.HeaderReplyTo, replyTo, res)
			if subject == "hookbus.cmd.plugin.register" && !res.Refused {
				t.Errorf("%s: %s (the old subject form, any plugin): not refused by NATS", pluginUser, subject)
			}
		}
	}

	// A command admin sends now is handled after those (one at a time, in
	// stream order): once its plugin is stored, they have been handled.
	sentinel := events.PluginSpec{Name: "sentinel", Event: "com.example.sentinel", Priority: 10}
	if _, err := st.ac.Register(ctx, sentinel); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "plugin "+sentinel.Name+" stored and announced", nil, func() error {
		if _, err := kv.Get(ctx, sentinel.Name); err != nil {
			return err
		}
		_, err := lifecycle.GetLastMsgForSubject(ctx, "hookbus.lifecycle."+sentinel.Name)
		return err
	})

	if after, err := kv.Get(ctx, otherPlugin); err != nil {
		t.Errorf("admin: plugin %s: %v", otherPlugin, err)
	} else if after.Revision() != before.Revision() || string(after.Value()) != string(before.Value()) {
		t.Errorf("plugin %s's entry changed: revision %d -> %d, value now %s", otherPlugin, before.Revision(), after.Revision(), after.Value())
	}
	if last, err := lifecycle.GetLastMsgForSubject(ctx, "hookbus.lifecycle."+otherPlugin); err != nil || last.Sequence != lifeBefore.Sequence {
		t.Errorf("hookbus.lifecycle.%s got a message: last sequence %d -> %v (%v)", otherPlugin, lifeBefore.Sequence, seqOf(last), err)
	}
	if err := st.admin.Flush(); err != nil {
		t.Fatal(err)
	}
	for subject, sub := range watch {
		var got []*nats.Msg
		for {
			m, err := sub.NextMsg(0)
			if err != nil {
				break
			}
			got = append(got, m)
		}
		if len(got) > 0 {
			t.Errorf("%s got %d messages from the registry: %s", subject, len(got), describe(got))
		}
	}
}

func seqOf(m *jetstream.RawStreamMsg) any {
	if m == nil {
		return "none"
	}
	return m.Sequence
}

// TestAttackEscalation6AnyWorkerAdministersAnyPlugin: plugin-example
// stops and unregisters plugin other, on other's command subjects, on its
// own subject with other named in the body, and on the old subject form.
// other must be unchanged; plugin-example can still stop and enable its
// own plugin.
func TestAttackEscalation6AnyWorkerAdministersAnyPlugin(t *testing.T) {
	escalation(t, 6)
	st := startStack(t)
	ctx := attackContext(t)

	shape := st.commandShape(t, func() {
		st.registerAndStart(t, ctx, events.PluginSpec{Name: otherPlugin, Event: "com.example.other.called", Priority: 10})
	})
	st.registerAndStart(t, ctx, events.PluginSpec{Name: pluginName, Event: "com.example.order.created", Priority: 10})
	kv, err := st.ajs.KeyValue(ctx, "hookbus_plugins")
	if err != nil {
		t.Fatal(err)
	}
	before, err := kv.Get(ctx, otherPlugin)
	if err != nil {
		t.Fatal(err)
	}

	other := events.PluginCommand{Name: otherPlugin}
	for _, subject := range []string{
		"hookbus.cmd.plugin.stop." + otherPlugin,
		"hookbus.cmd.plugin.unregister." + otherPlugin,
		"hookbus.cmd.plugin.stop." + pluginName, // its own subject, other in the body
		"hookbus.cmd.plugin.stop",               // the old form
		"hookbus.cmd.plugin.unregister",
	} {
		res := st.request(pluginUser, shape.command(subject, other, ""), 5*time.Second)
		t.Logf("%s: %s naming %s: %s", pluginUser, subject, otherPlugin, res)
	}

	// Its own plugin, through the SDK: handled after the attacks (one at a
	// time, in stream order).
	wc, err := client.New(st.mustConnect(t, pluginUser))
	if err != nil {
		t.Fatal(err)
	}
	if p, err := wc.Stop(ctx, pluginName); err != nil || p.Status != events.StatusStopped {
		t.Errorf("%s could not stop its own plugin: %+v %v", pluginUser, p.Status, err)
	}
	if p, err := wc.Enable(ctx, pluginName); err != nil || !p.Status.Running() {
		t.Errorf("%s could not enable its own plugin: %+v %v", pluginUser, p.Status, err)
	}

	if after, err := kv.Get(ctx, otherPlugin); err != nil {
		t.Errorf("admin: plugin %s: %v", otherPlugin, err)
	} else if after.Revision() != before.Revision() {
		var p events.Plugin
		_ = json.Unmarshal(after.Value(), &p)
		t.Errorf("plugin %s changed: revision %d -> %d, status %s", otherPlugin, before.Revision(), after.Revision(), p.Status)
	}
	if p, err := st.ac.Get(ctx, otherPlugin); err != nil || !p.Status.Running() {
		t.Errorf("plugin %s is no longer running: %+v %v", otherPlugin, p.Status, err)
	}
}

// TestAttackEscalation7AllInOne: `hookbus serve` listening for NATS and
// WebSocket clients on every interface. A client without credentials is
// refused, one with the generated password (<data dir>/nats.password)
// connects; a WebSocket upgrade from a foreign page (Origin) is refused,
// one from the listener's own origin accepted; the CLI finds the
// credentials in the data directory.
func TestAttackEscalation7AllInOne(t *testing.T) {
	escalation(t, 7)
	ctx := attackContext(t)
	dir := t.TempDir()
	natsPort, wsPort := port(t, freeAddr(t)), port(t, freeAddr(t))
	opsAddr := freeAddr(t)
	out := &natstest.SyncBuffer{}
	cmd := exec.Command(hookbusBin, "serve")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"),
		"HOOKBUS_NATS_LISTEN=0.0.0.0:" + natsPort, "HOOKBUS_NATS_WEBSOCKET=0.0.0.0:" + wsPort,
		envOpsAddr + "=" + opsAddr, "HOOKBUS_DATA_DIR=" + dir}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("hookbus serve (last lines):\n%s", tail(out.String(), 25))
		}
	})
	eventually(t, ctx, "hookbus serve ready", nil, func() error {
		select {
		case err := <-exited:
			t.Fatalf("hookbus serve exited: %v\n%s", err, out)
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+opsAddr+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %s", resp.Status)
		}
		return nil
	})

	url := "nats://127.0.0.1:" + natsPort
	quiet := nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})
	if nc, err := nats.Connect(url, nats.NoReconnect(), nats.Timeout(5*time.Second), quiet); err == nil {
		nc.Close()
		t.Errorf("a client without credentials connected to the NATS listener on 0.0.0.0:%s", natsPort)
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("a client without credentials: %v, want %v", err, nats.ErrAuthorization)
	}
	if pw, err := os.ReadFile(filepath.Join(dir, "nats.password")); err != nil {
		t.Errorf("the generated password: %v", err)
	} else if nc, err := nats.Connect(url, nats.UserInfo("hookbus", strings.TrimSpace(string(pw))),
		nats.CustomInboxPrefix(inboxOf("hookbus")), nats.NoReconnect(), nats.Timeout(5*time.Second), quiet); err != nil {
		t.Errorf("user hookbus with the password of %s: %v", filepath.Join(dir, "nats.password"), err)
	} else {
		nc.Close()
	}

	wsAddr := "127.0.0.1:" + wsPort
	if status, err := wsUpgrade(wsAddr, "https://evil.example"); err != nil {
		t.Errorf("WebSocket upgrade from Origin https://evil.example: %v", err)
	} else if status == http.StatusSwitchingProtocols {
		t.Errorf("WebSocket upgrade from Origin https://evil.example: accepted (101)")
	}
	if status, err := wsUpgrade(wsAddr, "http://"+wsAddr); err != nil || status != http.StatusSwitchingProtocols {
		t.Errorf("WebSocket upgrade from the listener's own Origin http://%s: status %d %v, want 101", wsAddr, status, errOrEmpty(err))
	}

	// The CLI beside it: no HOOKBUS_NATS_URL (it connects to the local
	// listener, HOOKBUS_NATS_LISTEN, here on loopback) and no credentials.
	cli := exec.CommandContext(ctx, hookbusBin, "plugin", "list")
	cli.Env = []string{"PATH=" + os.Getenv("PATH"), "HOOKBUS_DATA_DIR=" + dir, "HOOKBUS_NATS_LISTEN=127.0.0.1:" + natsPort}
	if b, err := cli.CombinedOutput(); err != nil {
		t.Errorf("hookbus plugin list with HOOKBUS_DATA_DIR, HOOKBUS_NATS_LISTEN=127.0.0.1:%s and no credentials: %v\n%s", natsPort, err, b)
	}
}

func port(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// wsUpgrade sends a WebSocket upgrade request with origin to addr and
// returns the response's status.
func wsUpgrade(addr, origin string) (int, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	req := "GET / HTTP/1.1\r\nHost: " + addr + "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(key) + "\r\n" +
		"Origin: " + origin + "\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// Setup steps as admin, through the Go SDK (it follows the command and
// answer subjects of pkg/events).

func (st *attackStack) registerAndStart(t *testing.T, ctx context.Context, spec events.PluginSpec) {
	t.Helper()
	if _, err := st.ac.Register(ctx, spec); err != nil {
		t.Fatalf("admin: register %s: %v", spec.Name, err)
	}
	if p, err := st.ac.Start(ctx, spec.Name); err != nil || !p.Status.Running() {
		t.Fatalf("admin: start %s: %s %v", spec.Name, p.Status, err)
	}
}

// cmdShape is how the Go SDK sends a command, learned from one it sent:
// its headers, and its CloudEvents type: the subject, or its first
// typeTokens tokens (the subject without the plugin name).
type cmdShape struct {
	header        nats.Header
	typeIsSubject bool
	typeTokens    int
}

// commandShape runs send (which must send a command through the SDK as
// admin) and learns the command's shape from it, so the attacker's raw
// commands differ from the SDK's only where the attack needs.
func (st *attackStack) commandShape(t *testing.T, send func()) cmdShape {
	t.Helper()
	sub, err := st.admin.SubscribeSync("hookbus.cmd.>")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := st.admin.Flush(); err != nil {
		t.Fatal(err)
	}
	send()
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("admin saw no command of the SDK on hookbus.cmd.>: %v", err)
	}
	typ := events.HeaderValue(m.Header, "ce-type")
	if typ == "" || (typ != m.Subject && !strings.HasPrefix(m.Subject, typ+".")) {
		t.Fatalf("the SDK sent a command of type %q on %s: neither the subject nor a prefix of it", typ, m.Subject)
	}
	return cmdShape{header: m.Header, typeIsSubject: typ == m.Subject, typeTokens: strings.Count(typ, ".") + 1}
}

// command is a command on subject with data body and the answer subject
// replyTo (none when empty), shaped as the SDK's.
func (s cmdShape) command(subject string, body any, replyTo string) *nats.Msg {
	h := nats.Header{}
	for k, v := range s.header {
		switch strings.ToLower(k) {
		case "ce-id", "ce-type", "ce-time", "nats-msg-id", strings.ToLower(events.HeaderReplyTo):
			continue
		}
		h[k] = v
	}
	typ := subject
	if tokens := strings.Split(subject, "."); !s.typeIsSubject {
		typ = strings.Join(tokens[:min(s.typeTokens, len(tokens))], ".")
	}
	h.Set("ce-id", token())
	h.Set("ce-type", typ)
	h.Set("ce-time", time.Now().UTC().Format(time.RFC3339))
	if replyTo != "" {
		h.Set(events.HeaderReplyTo, replyTo)
	}
	data, _ := json.Marshal(body)
	return &nats.Msg{Subject: subject, Header: h, Data: data}
}

func attackEvent(t *testing.T, typ, id string, data any) event.Event {
	t.Helper()
	e := event.New()
	e.SetID(id)
	e.SetSource("/attack-suite")
	e.SetType(typ)
	if err := e.SetData(event.ApplicationJSON, data); err != nil {
		t.Fatal(err)
	}
	return e
}

// describe lists messages briefly: subject, reply, the start of the data.
func describe(ms []*nats.Msg) string {
	var b strings.Builder
	for i, m := range ms {
		if i == 5 {
			fmt.Fprintf(&b, "\n  ... %d more", len(ms)-i)
			break
		}
		data := string(m.Data)
		if len(data) > 120 {
			data = data[:120] + "..."
		}
		fmt.Fprintf(&b, "\n  %s (reply %q): %s", m.Subject, m.Reply, data)
	}
	return b.String()
}

func errOrEmpty(err error) string {
	if err == nil {
		return ""
	}
	return "(" + err.Error() + ")"
}
