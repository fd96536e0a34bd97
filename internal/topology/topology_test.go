package topology_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/internal/topology"
	"github.com/hookbus/hookbus/pkg/events"
)

func TestEnsureCreatesThenIsANoOp(t *testing.T) {
	js := natstest.JetStream(t, natstest.RunServer(t))
	cfg := topology.DefaultConfig()

	first, err := topology.Ensure(t.Context(), js, cfg)
	if err != nil {
		t.Fatalf("first Ensure: %v", err)
	}
	if want := len(cfg.Streams()) + len(cfg.Buckets()); len(first) != want {
		t.Fatalf("first Ensure reported %d resources, want %d", len(first), want)
	}
	for _, r := range first {
		if r.Action != topology.Created {
			t.Errorf("first Ensure: %s %s, want created", r.Resource, r.Action)
		}
	}
	before := streamInfo(t, js, events.StreamEvents)

	second, err := topology.Ensure(t.Context(), js, cfg)
	if err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	for _, r := range second {
		if r.Action != topology.Unchanged || len(r.Changed) != 0 {
			t.Errorf("second Ensure: %s %s %v, want unchanged", r.Resource, r.Action, r.Changed)
		}
	}
	after := streamInfo(t, js, events.StreamEvents)
	if !after.Created.Equal(before.Created) || after.Config.Description != before.Config.Description {
		t.Errorf("stream re-created or changed: created %v -> %v", before.Created, after.Created)
	}
	if err := topology.Check(t.Context(), js, cfg); err != nil {
		t.Errorf("Check after Ensure: %v", err)
	}
}

func TestEnsureUpdatesChangedLimits(t *testing.T) {
	js := natstest.JetStream(t, natstest.RunServer(t))
	cfg := topology.DefaultConfig()
	if _, err := topology.Ensure(t.Context(), js, cfg); err != nil {
		t.Fatal(err)
	}
	cfg.EventsMaxAge = 48 * time.Hour
	results, err := topology.Ensure(t.Context(), js, cfg)
	if err != nil {
		t.Fatalf("Ensure with a new max age: %v", err)
	}
	for _, r := range results {
		want := topology.Unchanged
		if r.Resource == "stream "+events.StreamEvents {
			want = topology.Updated
		}
		if r.Action != want {
			t.Errorf("%s: %s, want %s", r.Resource, r.Action, want)
		}
	}
	if got := streamInfo(t, js, events.StreamEvents).Config.MaxAge; got != 48*time.Hour {
		t.Errorf("max age on the server = %s, want 48h", got)
	}
}

func TestCheckReportsDrift(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, js jetstream.JetStream)
		want  []string
	}{
		{
			name:  "nothing created",
			setup: func(*testing.T, jetstream.JetStream) {},
			want:  []string{"stream HOOKBUS_EVENTS: missing", "bucket hookbus_auth: missing"},
		},
		{
			name: "events stream in memory",
			setup: func(t *testing.T, js jetstream.JetStream) {
				ensure(t, js)
				if err := js.DeleteStream(t.Context(), events.StreamEvents); err != nil {
					t.Fatal(err)
				}
				want := topology.DefaultConfig().Streams()[0]
				want.Storage = jetstream.MemoryStorage
				if _, err := js.CreateStream(t.Context(), want); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"stream HOOKBUS_EVENTS: storage is Memory, want File"},
		},
		{
			name: "auth bucket keeps history",
			setup: func(t *testing.T, js jetstream.JetStream) {
				ensure(t, js)
				b, _ := topology.DefaultConfig().Bucket(events.BucketAuth)
				b.History = 5
				if _, err := js.UpdateKeyValue(t.Context(), b); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"bucket hookbus_auth: history is 5, want 1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			js := natstest.JetStream(t, natstest.RunServer(t))
			tt.setup(t, js)
			err := topology.Check(t.Context(), js, topology.DefaultConfig())
			if !errors.Is(err, topology.ErrDrift) {
				t.Fatalf("Check = %v, want a drift error", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Check error does not say %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestEnsureRefusesStorageChange(t *testing.T) {
	js := natstest.JetStream(t, natstest.RunServer(t))
	want := topology.DefaultConfig().Streams()[0]
	want.Storage = jetstream.MemoryStorage
	if _, err := js.CreateStream(t.Context(), want); err != nil {
		t.Fatal(err)
	}
	_, err := topology.Ensure(t.Context(), js, topology.DefaultConfig())
	if err == nil || !strings.Contains(err.Error(), "stream HOOKBUS_EVENTS") || !strings.Contains(err.Error(), "storage Memory -> File") {
		t.Fatalf("Ensure over a memory stream = %v, want an error naming the stream and the storage change", err)
	}
	if got := streamInfo(t, js, events.StreamEvents).Config.Storage; got != jetstream.MemoryStorage {
		t.Errorf("stream storage = %v: Ensure must not delete and re-create", got)
	}
}

func TestReplicasDriftInCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	servers := natstest.RunCluster(t, 3)
	js := natstest.JetStream(t, servers[0])
	one := topology.DefaultConfig()
	ensure(t, js)

	three := one
	three.Replicas = 3
	err := topology.Check(t.Context(), js, three)
	if !errors.Is(err, topology.ErrDrift) || !strings.Contains(err.Error(), "stream HOOKBUS_EVENTS: replicas is 1, want 3") {
		t.Fatalf("Check with replicas 3 = %v, want replicas drift", err)
	}
	if _, err := topology.Ensure(t.Context(), js, three); err != nil {
		t.Fatalf("Ensure to 3 replicas: %v", err)
	}
	natstest.Eventually(t, 10*time.Second, func() error { return topology.Check(t.Context(), js, three) })
	if got := streamInfo(t, js, events.StreamEvents).Config.Replicas; got != 3 {
		t.Errorf("replicas = %d, want 3", got)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*topology.Config)
		want   string
	}{
		{"zero replicas", func(c *topology.Config) { c.Replicas = 0 }, "replicas 0"},
		{"negative age", func(c *topology.Config) { c.EventsMaxAge = -time.Second }, "events max age"},
		{"zero bytes", func(c *topology.Config) { c.EventsMaxBytes = 0 }, "events max bytes 0"},
		{"window past age", func(c *topology.Config) { c.DuplicateWindow = 30 * 24 * time.Hour }, "duplicate window"},
		{"small messages", func(c *topology.Config) { c.MaxMsgSize = 1024 }, "max msg size 1024"},
	}
	if err := topology.DefaultConfig().Validate(); err != nil {
		t.Fatalf("DefaultConfig invalid: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := topology.DefaultConfig()
			tt.mutate(&cfg)
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func ensure(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	if _, err := topology.Ensure(t.Context(), js, topology.DefaultConfig()); err != nil {
		t.Fatal(err)
	}
}

func streamInfo(t *testing.T, js jetstream.JetStream, name string) *jetstream.StreamInfo {
	t.Helper()
	s, err := js.Stream(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// The pushes stream publishes each stored push again on the device's
// .push subject, with the sequences the gateway detects gaps with.
func TestDevicePushesArePublishedAgain(t *testing.T) {
	srv := natstest.RunServer(t)
	js := natstest.JetStream(t, srv)
	ensure(t, js)
	nc := natstest.Connect(t, srv)
	sub, err := nc.SubscribeSync(events.DevicePushSubject("d1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, subject := range []string{events.DeviceOutSubject("d1"), events.DeviceOutSubject("d2"), events.DeviceOutSubject("d1")} {
		if _, err := js.Publish(t.Context(), subject, []byte(`{}`)); err != nil {
			t.Fatalf("publish on %s: %v", subject, err)
		}
	}
	for _, want := range [][2]string{{"1", "0"}, {"3", "1"}} {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject != "hookbus.device.d1.push" || m.Header.Get(jetstream.SequenceHeader) != want[0] || m.Header.Get("Nats-Last-Sequence") != want[1] {
			t.Fatalf("published again on %s, sequence %q, last %q; want hookbus.device.d1.push, %s, %s",
				m.Subject, m.Header.Get(jetstream.SequenceHeader), m.Header.Get("Nats-Last-Sequence"), want[0], want[1])
		}
	}
	s := streamInfo(t, js, events.StreamDevicePushes)
	if !s.Config.AllowDirect || s.Config.MaxMsgsPerSubject != 1000 || s.Config.Discard != jetstream.DiscardOld {
		t.Fatalf("pushes stream %+v", s.Config)
	}
}
