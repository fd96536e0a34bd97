package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
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

	// d1 has a generation; d2 is connected (its key written as a
	// gateway does).
	pkv, err := js.KeyValue(t.Context(), events.BucketDevicePresence)
	if err != nil {
		t.Fatal(err)
	}
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	p, _ := json.Marshal(events.DevicePresence{Session: "s1", Replica: "gw-0", Remote: "192.0.2.7:4000", ConnectedSince: since, LastSeen: since.Add(time.Minute)})
	if _, err := pkv.Put(t.Context(), "d2", p); err != nil {
		t.Fatal(err)
	}
	out, err := cli("device", "list")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := [][]string{
		{"DEVICE", "CONNECTED", "REPLICA", "SINCE", "LAST-SEEN", "GENERATION"},
		{"d1", "false", "-", "-", "-", "2"},
		{"d2", "true", "gw-0", "2026-01-02T03:04:05Z", "2026-01-02T03:05:05Z", "0"},
	}
	if len(lines) != len(want) {
		t.Fatalf("device list:\n%s\nwant %d lines", out, len(want))
	}
	for i, w := range want {
		if got := strings.Fields(lines[i]); !slices.Equal(got, w) {
			t.Errorf("device list line %d: %q, want %q", i, got, w)
		}
	}
	out, err = cli("device", "list", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var listed []gateway.DeviceListing
	if err := json.Unmarshal([]byte(out), &listed); err != nil {
		t.Fatalf("device list -o json: %q: %v", out, err)
	}
	if len(listed) != 2 || listed[0].Device != "d1" || listed[0].Connected || listed[0].Generation != 2 ||
		listed[1].Device != "d2" || !listed[1].Connected || listed[1].Session != "s1" || listed[1].Remote != "192.0.2.7:4000" ||
		!listed[1].ConnectedSince.Equal(since) || !listed[1].LastSeen.Equal(since.Add(time.Minute)) {
		t.Errorf("device list -o json: %+v", listed)
	}

	for _, args := range [][]string{
		{"device", "list", "-o", "yaml"},
		{"device", "list", "d1"},
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
