package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/gateway"
)

func TestDeviceCommands(t *testing.T) {
	srv, js := natstest.RunTopology(t)
	url := []string{"--nats-url", srv.ClientURL()}
	cli := func(args ...string) (string, error) {
		t.Helper()
		return runCLI(t, append(args, url...)...)
	}
	nc := natstest.Connect(t, srv)
	// The stored pushes, as the stream publishes them again.
	pushes, err := nc.SubscribeSync("hookbus.device.d1.push")
	if err != nil {
		t.Fatal(err)
	}
	revokes, err := nc.SubscribeSync("hookbus.device.d1.ctl.revoked")
	if err != nil {
		t.Fatal(err)
	}
	stops, err := nc.SubscribeSync("hookbus.device.d1.ctl.stop")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	raw := filepath.Join(t.TempDir(), "chunk.bin")
	if err := os.WriteFile(raw, []byte{0, 1, 0xff}, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct{ flag, value, stored string }{
		{"--data", `{"led":"on"}`, `{"led":"on"}`},
		{"--file", raw, "\x00\x01\xff"},
	} {
		out, err := cli("device", "push", "d1", p.flag, p.value)
		if err != nil || !strings.Contains(out, "stored; delivered when the device is connected") {
			t.Fatalf("push %s: %q, %v", p.flag, out, err)
		}
		if m, err := pushes.NextMsg(5 * time.Second); err != nil || string(m.Data) != p.stored {
			t.Fatalf("pushed %v, %v; want %q stored", m, err, p.stored)
		}
	}
	s, err := js.Stream(t.Context(), events.StreamDevicePushes)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 2 {
		t.Fatalf("%d pushes stored, want 2", n)
	}

	for range 2 {
		if out, err := cli("device", "revoke", "d1"); err != nil || !strings.Contains(out, "revoked device") {
			t.Fatalf("revoke: %q, %v", out, err)
		}
		if _, err := revokes.NextMsg(5 * time.Second); err != nil {
			t.Fatalf("no revoke notice: %v", err)
		}
	}
	kv, err := js.KeyValue(t.Context(), events.BucketDevices)
	if err != nil {
		t.Fatal(err)
	}
	if g, err := gateway.DeviceGeneration(t.Context(), kv, "d1"); err != nil || g != 2 {
		t.Fatalf("generation after two revokes: %d, %v; want 2", g, err)
	}

	if out, err := cli("device", "stop", "d1", "--reason", "firmware too old"); err != nil || !strings.Contains(out, "stop sent") {
		t.Fatalf("stop: %q, %v", out, err)
	}
	if m, err := stops.NextMsg(5 * time.Second); err != nil || string(m.Data) != "firmware too old" {
		t.Fatalf("stop notice %v, %v; want the reason", m, err)
	}

	for _, args := range [][]string{
		{"device", "stop", "-d1"},
		{"device", "push", "d1", "--data", "not json"},
		{"device", "push", "d1"},
		{"device", "push", "d1", "--data", "{}", "--file", raw},
		{"device", "push", "_d1", "--data", "{}"},
		{"device", "push", "a.b", "--data", "{}"},
		{"device", "revoke", "a.b"},
	} {
		if out, err := cli(args...); err == nil {
			t.Errorf("%v: accepted (%q), want a refusal", args, out)
		}
	}
}
