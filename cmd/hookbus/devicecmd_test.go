package main

import (
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
	pushes, err := nc.SubscribeSync("hookbus.device.d1.out")
	if err != nil {
		t.Fatal(err)
	}
	revokes, err := nc.SubscribeSync("hookbus.device.d1.revoked")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	if out, err := cli("device", "push", "d1", "--data", `{"led":"on"}`); err != nil || !strings.Contains(out, "pushed") {
		t.Fatalf("push: %q, %v", out, err)
	}
	if m, err := pushes.NextMsg(5 * time.Second); err != nil || string(m.Data) != `{"led":"on"}` {
		t.Fatalf("pushed %v, %v", m, err)
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

	for _, args := range [][]string{
		{"device", "push", "d1", "--data", "not json"},
		{"device", "push", "a.b", "--data", "{}"},
		{"device", "revoke", "a.b"},
	} {
		if out, err := cli(args...); err == nil {
			t.Errorf("%v: accepted (%q), want a refusal", args, out)
		}
	}
}
