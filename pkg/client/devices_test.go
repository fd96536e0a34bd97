package client_test

import (
	"errors"
	"testing"
	"time"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

func TestPushDeviceStoresThePush(t *testing.T) {
	b := newBus(t, true)
	for i, data := range []string{`{"led":"on"}`, "\x00raw"} {
		ack, err := b.client.PushDevice(t.Context(), "d1", []byte(data))
		if err != nil {
			t.Fatalf("push %q: %v", data, err)
		}
		if ack.Stream != events.StreamDevicePushes || ack.Sequence != uint64(i+1) {
			t.Fatalf("push %q: ack %+v, want sequence %d of %s", data, ack, i+1, events.StreamDevicePushes)
		}
		s, err := b.js.Stream(t.Context(), events.StreamDevicePushes)
		if err != nil {
			t.Fatal(err)
		}
		m, err := s.GetMsg(t.Context(), ack.Sequence)
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject != "hookbus.device.d1.out" || string(m.Data) != data {
			t.Fatalf("stored %s %q, want hookbus.device.d1.out %q", m.Subject, m.Data, data)
		}
	}
	for _, id := range []string{"", "a.b", "_d1", "-d1", "d*"} {
		if _, err := b.client.PushDevice(t.Context(), id, []byte(`1`)); !errors.Is(err, events.ErrInvalid) {
			t.Errorf("push to %q: %v, want an invalid id", id, err)
		}
	}
}

func TestPushDeviceWithoutTopology(t *testing.T) {
	b := newBus(t, false, client.WithTimeout(300*time.Millisecond))
	if _, err := b.client.PushDevice(t.Context(), "d1", []byte(`1`)); !errors.Is(err, client.ErrNotStored) {
		t.Fatalf("push without the stream: %v, want ErrNotStored", err)
	}
}
