package deadletter

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/events"
)

var dlqStream = jetstream.StreamConfig{Name: events.StreamDLQ, Subjects: []string{events.DLQSubjects}}

// TestWriterRule: every writer's dead letter goes to HOOKBUS_DLQ only, is
// published again while the stream does not answer, and not endlessly.
func TestWriterRule(t *testing.T) {
	tests := []struct {
		name string
		// before sets the server up; onRetry runs after each failed attempt.
		before      func(t *testing.T, js jetstream.JetStream)
		onRetry     func(t *testing.T, js jetstream.JetStream, attempt int)
		wantStored  bool
		wantRetries int
	}{
		{
			name: "stored once the stream answers",
			onRetry: func(t *testing.T, js jetstream.JetStream, attempt int) {
				if attempt == 1 {
					if _, err := js.CreateStream(t.Context(), dlqStream); err != nil {
						t.Error(err)
					}
				}
			},
			wantStored:  true,
			wantRetries: 1,
		},
		{
			name:        "given up after its attempts",
			wantRetries: attempts - 1,
		},
		{
			name: "never in another stream",
			before: func(t *testing.T, js jetstream.JetStream) {
				if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "OTHER", Subjects: []string{events.DLQSubjects}}); err != nil {
					t.Fatal(err)
				}
			},
			wantRetries: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			js := natstest.JetStream(t, natstest.RunServer(t))
			if tt.before != nil {
				tt.before(t, js)
			}
			retries := 0
			w := Writer{JS: js, Read: true, retried: func(attempt int, _ error) {
				retries++
				if tt.onRetry != nil {
					tt.onRetry(t, js, attempt)
				}
			}}
			// Bounded: an endless retry fails the test instead of hanging it.
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			err := w.Write(ctx, "p", Original{Subject: "hookbus.event.ev", Data: []byte("{}"), Seq: 7, Deliveries: 3}, "boom")
			if stored := err == nil; stored != tt.wantStored {
				t.Fatalf("Write: %v, want stored %v", err, tt.wantStored)
			}
			if err != nil && !errors.Is(err, ErrNotStored) {
				t.Errorf("Write: %v, want ErrNotStored", err)
			}
			if retries != tt.wantRetries {
				t.Errorf("%d retries, want %d", retries, tt.wantRetries)
			}
			for _, name := range []string{"OTHER", events.StreamDLQ} {
				stream, err := js.Stream(t.Context(), name)
				if err != nil {
					continue
				}
				info, err := stream.Info(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				want := uint64(0)
				if tt.wantStored && name == events.StreamDLQ {
					want = 1
				}
				if info.State.Msgs != want {
					t.Errorf("%s holds %d messages, want %d", name, info.State.Msgs, want)
				}
			}
		})
	}
}

// TestSettleAcksOnlyStored: Settle acknowledges the original only once its
// dead letter is stored.
func TestSettleAcksOnlyStored(t *testing.T) {
	js := natstest.JetStream(t, natstest.RunServer(t))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: events.StreamEvents, Subjects: []string{"hookbus.event.>"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "hookbus.event.ev", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	cons, err := stream.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "p", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	meta, err := m.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	pending := func(want int) func() error {
		return func() error {
			info, err := cons.Info(ctx)
			if err != nil {
				return err
			}
			if info.NumAckPending != want {
				return fmt.Errorf("%d unacknowledged, want %d", info.NumAckPending, want)
			}
			return nil
		}
	}
	w := Writer{JS: js, Read: true}

	// No HOOKBUS_DLQ: not stored, so not acknowledged.
	if err := w.Settle(ctx, "p", m, meta, "boom"); !errors.Is(err, ErrNotStored) {
		t.Fatalf("Settle without HOOKBUS_DLQ: %v, want ErrNotStored", err)
	}
	// A flush, so that an acknowledgement sent by Settle has arrived.
	if err := w.JS.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	if err := pending(1)(); err != nil {
		t.Fatalf("after a dead letter not stored: %v", err)
	}

	if _, err := js.CreateStream(ctx, dlqStream); err != nil {
		t.Fatal(err)
	}
	if err := w.Settle(ctx, "p", m, meta, "boom"); err != nil {
		t.Fatalf("Settle: %v", err)
	}
	natstest.Eventually(t, 5*time.Second, pending(0))
}
