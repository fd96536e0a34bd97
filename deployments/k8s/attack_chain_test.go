package k8s

import (
	"testing"
	"time"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

// TestAttackEscalation11JoinAnotherChain: found by a review after the
// first seven. plugin-example may command its own plugin, but it must not
// register it on another team's event: first in that chain, it could halt
// every call with a forged state and read the steps' private fields. Its
// user may register only on com.example.> (hookbus.cmd.plugin.register.
// <name>.<event>); the registry refuses a declaration on another event than
// its subject names, and a register without the event in its subject.
func TestAttackEscalation11JoinAnotherChain(t *testing.T) {
	escalation(t, 11)
	st := startStack(t)
	ctx := attackContext(t)

	const paymentType = "com.other.payment.authorise"
	shape := st.commandShape(t, func() {
		st.registerAndStart(t, ctx, events.PluginSpec{Name: otherPlugin, Event: paymentType, Priority: 10})
	})
	hijack := events.PluginCommand{Plugin: &events.PluginSpec{Name: pluginName, Event: paymentType, Priority: 0}}
	for _, subject := range []string{
		"hookbus.cmd.plugin.register." + pluginName + "." + paymentType,            // refused by NATS
		"hookbus.cmd.plugin.register." + pluginName + ".com.example.order.created", // allowed subject, other event in the body
		"hookbus.cmd.plugin.register." + pluginName,                                // no event in the subject
	} {
		res := st.request(pluginUser, shape.command(subject, hijack, ""), 5*time.Second)
		t.Logf("%s: %s declaring %s on %s: %s", pluginUser, subject, pluginName, paymentType, res)
	}
	// A command of admin's after them: applied after theirs (one at a time,
	// in stream order).
	if _, err := st.ac.Get(ctx, otherPlugin); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ac.Restart(ctx, otherPlugin); err != nil {
		t.Fatal(err)
	}
	chain, err := st.ac.List(ctx, events.PluginFilter{Event: paymentType})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range chain {
		if p.Name != otherPlugin {
			t.Errorf("plugin %s joined the chain of %s (priority %d, %s)", p.Name, paymentType, p.Priority, p.Status)
		}
	}
	if p, err := st.ac.Get(ctx, pluginName); err == nil && p.Event == paymentType {
		t.Errorf("plugin %s is registered on %s", pluginName, paymentType)
	}

	// The same user registers its plugin on an event it was given.
	wc, err := client.New(st.mustConnect(t, pluginUser))
	if err != nil {
		t.Fatal(err)
	}
	if p, err := wc.Register(ctx, events.PluginSpec{Name: pluginName, Event: "com.example.order.created", Priority: 10}); err != nil || p.Event != "com.example.order.created" {
		t.Errorf("%s could not register its own plugin on its own event: %+v %v", pluginUser, p, err)
	}
}

// TestAttackEscalation12ForgedLifecycleAcks: found by a review. A worker
// that read the registry's lifecycle events as the registry stored them
// saw its publish acknowledgement inbox as their reply subject, and, with
// allow_responses, answered it first with an error: every command was
// retried a second later. Workers now follow what HOOKBUS_LIFECYCLE
// publishes again (hookbus.notice.lifecycle.<name>), with no reply
// subject, and may not read the originals.
func TestAttackEscalation12ForgedLifecycleAcks(t *testing.T) {
	escalation(t, 12)
	st := startStack(t)
	ctx := attackContext(t)

	if refused, err := st.trySub(pluginUser, "hookbus.lifecycle.*", ""); err != nil || !refused {
		t.Errorf("%s may read the stored lifecycle events (refused %v, %v)", pluginUser, refused, err)
	}
	nc := st.mustConnect(t, pluginUser)
	notices, err := nc.SubscribeSync("hookbus.notice.lifecycle." + otherPlugin)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	st.registerAndStart(t, ctx, events.PluginSpec{Name: otherPlugin, Event: "com.example.other.called", Priority: 10})
	got := 0
	for got < 2 { // registered, started
		m, err := notices.NextMsgWithContext(ctx)
		if err != nil {
			t.Fatalf("lifecycle notices of %s: %v (got %d)", otherPlugin, err, got)
		}
		got++
		if m.Reply != "" {
			t.Errorf("lifecycle notice %s carries reply subject %s: a worker could answer it", m.Subject, m.Reply)
		}
		if _, err := events.Decode(m.Header, m.Data); err != nil {
			t.Errorf("lifecycle notice %s: %v", m.Subject, err)
		}
	}
}
