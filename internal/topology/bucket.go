package topology

import (
	"context"
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
	drifts, err := bucketResource(js, want).check(ctx, js)
	if err != nil {
		return err
	}
	if len(drifts) > 0 {
		return &DriftError{Drifts: drifts}
	}
	return nil
}
