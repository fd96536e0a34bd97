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

// BenchmarkCodec measures the per-event cost the codec adds on each side of
// the wire: Encode (validate + binary mode), Decode of binary and of
// structured messages (validate included).
func BenchmarkCodec(b *testing.B) {
	e := benchEvent()
	bin, err := events.Encode("hookbus.event.com.example.bench", e)
	if err != nil {
		b.Fatal(err)
	}
	str, err := events.Codec{}.EncodeStructured("hookbus.event.com.example.bench", e)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("encode-binary", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := events.Encode("hookbus.event.com.example.bench", e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode-binary", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := events.Decode(bin.Header, bin.Data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode-structured", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := events.Decode(str.Header, str.Data); err != nil {
				b.Fatal(err)
			}
		}
	})
}
