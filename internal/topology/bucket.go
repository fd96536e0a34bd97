package topology

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Bucket returns the definition of the named bucket, or false if cfg
// defines none by that name.
func (c Config) Bucket(name string) (jetstream.KeyValueConfig, bool) {
	for _, b := range c.Buckets() {
		if b.Bucket == name {
			return b, true
		}
	}
	return jetstream.KeyValueConfig{}, false
}

// CheckBucket is Check for one bucket: a service that uses only that bucket
// checks only it. It returns nil when the bucket exists with the declared
// settings, a *DriftError (errors.Is ErrDrift) otherwise, or the error that
// kept it from looking.
func CheckBucket(ctx context.Context, js jetstream.JetStream, cfg Config, name string) error {
	want, ok := cfg.Bucket(name)
	if !ok {
		return fmt.Errorf("bucket %s: not defined in the topology", name)
	}
	resource := "bucket " + name
	s, err := js.Stream(ctx, kvStream(name))
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return &DriftError{Drifts: []Drift{{Resource: resource, Field: "missing"}}}
	case err != nil:
		return fmt.Errorf("look up %s: %w", resource, err)
	}
	if drifts := diffBucket(resource, want, s.CachedInfo().Config); len(drifts) > 0 {
		return &DriftError{Drifts: drifts}
	}
	return nil
}
