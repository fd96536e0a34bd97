package registry

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/events"
)

// TestRedeliveredCommandsChangeNothing plays the crash between a command's
// writes and its acknowledgement: the same command (same stream sequence)
// applied again, as a redelivery, changes nothing and is answered as a
// success, unregister included; its lifecycle events are stored once.
func TestRedeliveredCommandsChangeNothing(t *testing.T) {
	srv, js := natstest.RunTopology(t)
	svc, err := New(DefaultConfig(), natstest.Connect(t, srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	natstest.RunService(t, svc)
	kv, err := js.KeyValue(t.Context(), events.BucketPlugins)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		seq uint64
		op  events.PluginOp
		cmd events.PluginCommand
	}{
		{1001, events.OpRegister, events.PluginCommand{Plugin: &events.PluginSpec{Name: "a", Event: "e"}}},
		{1002, events.OpRegister, events.PluginCommand{Plugin: &events.PluginSpec{Name: "b", Event: "e", Depends: []events.Dependency{{Name: "a"}}}}},
		{1003, events.OpStart, events.PluginCommand{Name: "a"}},
		{1004, events.OpStop, events.PluginCommand{Name: "a"}},
		{1005, events.OpUnregister, events.PluginCommand{Name: "a"}},
	}
	for _, st := range steps {
		first, err := svc.execute(t.Context(), kv, st.op, st.cmd, st.seq, false)
		if err != nil || first.Error != nil {
			t.Fatalf("%s seq %d: %v %v", st.op, st.seq, err, first.Error)
		}
		before := revision(t, kv)
		again, err := svc.execute(t.Context(), kv, st.op, st.cmd, st.seq, true)
		if err != nil || again.Error != nil {
			t.Fatalf("%s seq %d redelivered: %v %v, want success", st.op, st.seq, err, again.Error)
		}
		if after := revision(t, kv); after != before {
			t.Errorf("%s seq %d redelivered wrote to the bucket (revision %d -> %d)", st.op, st.seq, before, after)
		}
	}
	// Every lifecycle event id (<seq>-<name>) is stored once.
	stream, err := js.Stream(t.Context(), events.StreamLifecycle)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// register a, register b (held), start a (+ b released), stop a (+ b
	// held), unregister a: 7 changes.
	if info.State.Msgs != 7 {
		t.Errorf("%d lifecycle events stored, want 7 (each once)", info.State.Msgs)
	}
}

func revision(t *testing.T, kv jetstream.KeyValue) uint64 {
	t.Helper()
	st, err := kv.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return st.(*jetstream.KeyValueBucketStatus).StreamInfo().State.LastSeq
}
