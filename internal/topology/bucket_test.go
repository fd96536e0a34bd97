package topology_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/internal/topology"
	"github.com/hookbus/hookbus/pkg/events"
)

func TestCheckBucket(t *testing.T) {
	authBucket, _ := topology.DefaultConfig().Bucket(events.BucketAuth)
	tests := []struct {
		name  string
		setup func(t *testing.T, js jetstream.JetStream)
		want  string // "" for no error
	}{
		{
			name:  "as defined",
			setup: ensure,
		},
		{
			name:  "missing",
			setup: func(*testing.T, jetstream.JetStream) {},
			want:  "bucket hookbus_auth: missing",
		},
		{
			name: "only this bucket is looked at",
			setup: func(t *testing.T, js jetstream.JetStream) {
				if _, err := js.CreateKeyValue(t.Context(), authBucket); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "history kept",
			setup: func(t *testing.T, js jetstream.JetStream) {
				b := authBucket
				b.History = 3
				if _, err := js.CreateKeyValue(t.Context(), b); err != nil {
					t.Fatal(err)
				}
			},
			want: "bucket hookbus_auth: history is 3, want 1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			js := natstest.JetStream(t, natstest.RunServer(t))
			tt.setup(t, js)
			err := topology.CheckBucket(t.Context(), js, topology.DefaultConfig(), events.BucketAuth)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("CheckBucket = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, topology.ErrDrift) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("CheckBucket = %v, want a drift error saying %q", err, tt.want)
			}
		})
	}
}

func TestCheckBucketUnknownName(t *testing.T) {
	js := natstest.JetStream(t, natstest.RunServer(t))
	err := topology.CheckBucket(t.Context(), js, topology.DefaultConfig(), "no_such_bucket")
	if err == nil || errors.Is(err, topology.ErrDrift) || !strings.Contains(err.Error(), "not defined") {
		t.Fatalf("CheckBucket(no_such_bucket) = %v, want a not-defined error", err)
	}
}
