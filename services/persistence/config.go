package persistence

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hookbus/hookbus/internal/topology"
	"github.com/hookbus/hookbus/pkg/events"
)

// Config configures the persistence service.
type Config struct {
	// Keys encrypt and decrypt the stored values, newest first: the first
	// encrypts every write, each of them decrypts what it wrote. At least
	// one is required.
	Keys []Key
	// Topology is what the service expects of bucket hookbus_auth; it
	// checks the bucket at start.
	Topology topology.Config
	// RequestTimeout bounds the work of one request against the bucket.
	RequestTimeout time.Duration
	// RotateTimeout bounds one rotation, which reads and may rewrite every
	// stored value.
	RotateTimeout time.Duration
	// Version is reported by the micro service (semantic version).
	Version string
}

// DefaultConfig returns the defaults, without keys: 10 s per request,
// 10 min per rotation.
func DefaultConfig() Config {
	return Config{
		Topology:       topology.DefaultConfig(),
		RequestTimeout: 10 * time.Second,
		RotateTimeout:  10 * time.Minute,
		Version:        "0.1.0",
	}
}

// Validate reports the first unusable setting.
func (c Config) Validate() error {
	if len(c.Keys) == 0 {
		return errors.New("persistence: no encryption key configured")
	}
	if _, err := newKeyring(c.Keys); err != nil {
		return fmt.Errorf("persistence keys: %w", err)
	}
	if _, ok := c.Topology.Bucket(events.BucketAuth); !ok {
		return fmt.Errorf("persistence: the topology defines no bucket %s", events.BucketAuth)
	}
	switch {
	case c.RequestTimeout <= 0:
		return fmt.Errorf("persistence request timeout %s: must be positive", c.RequestTimeout)
	case c.RotateTimeout <= 0:
		return fmt.Errorf("persistence rotate timeout %s: must be positive", c.RotateTimeout)
	case c.Version == "":
		return errors.New("persistence version: required")
	}
	return c.Topology.Validate()
}

// String shows the key ids, never the keys, so a logged Config leaks no
// secret.
func (c Config) String() string {
	ids := make([]string, len(c.Keys))
	for i, k := range c.Keys {
		ids[i] = k.ID()
	}
	return fmt.Sprintf("{Keys:[%s] RequestTimeout:%s RotateTimeout:%s Version:%s}",
		strings.Join(ids, " "), c.RequestTimeout, c.RotateTimeout, c.Version)
}

// maxValueSize is the largest value the bucket takes, less the envelope.
func (c Config) maxValueSize() int {
	b, _ := c.Topology.Bucket(events.BucketAuth)
	return int(b.MaxValueSize) - EnvelopeOverhead
}
