package events_test

import (
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/hookbus/hookbus/pkg/events"
)

func benchEvent() *event.Event {
	e := event.New()
	e.SetID("b7e3c0de-0000-4000-8000-000000000001")
	e.SetSource("/bench")
	e.SetType("com.example.bench")
	e.SetTime(time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC))
	_ = e.SetData(event.ApplicationJSON, map[string]any{"user": "ada", "amount": 42, "note": "a typical small event"})
	return &e
}

// benchEventExtensions is benchEvent with a subject and two extensions,
// one of which needs percent-encoding.
func benchEventExtensions() *event.Event {
	e := benchEvent()
	e.SetSubject("users/ada")
	e.SetExtension("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	e.SetExtension("tenant", "acme corp")
	return e
}

// BenchmarkCodec measures the per-event cost the codec adds on each side of
// the wire: Encode (validate + binary mode), Decode of binary and of
// structured messages (validate included), for a small event with a time
// and for the same event with a subject and two extensions. allocs/op is
// the codec's own: no server runs here.
func BenchmarkCodec(b *testing.B) {
	const subject = "hookbus.event.com.example.bench"
	for _, c := range []struct {
		name string
		e    *event.Event
	}{
		{"", benchEvent()},
		{"-extensions", benchEventExtensions()},
	} {
		bin, err := events.Encode(subject, c.e)
		if err != nil {
			b.Fatal(err)
		}
		str, err := events.Codec{}.EncodeStructured(subject, c.e)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("encode-binary"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := events.Encode(subject, c.e); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("decode-binary"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := events.Decode(bin.Header, bin.Data); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("decode-structured"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := events.Decode(str.Header, str.Data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
