package topology

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Action is what Ensure did to one stream or bucket.
type Action string

// Actions Ensure reports.
const (
	Created   Action = "created"
	Updated   Action = "updated"
	Unchanged Action = "unchanged"
)

// Result is Ensure's report for one stream or bucket.
type Result struct {
	Resource string // "stream HOOKBUS_EVENTS", "bucket hookbus_auth"
	Action   Action
	Changed  []Drift // what an update changed
	Drifted  []Drift // what differs and was left as it is (Create)
}

// Ensure creates every missing stream and bucket and updates those whose
// settings differ from cfg. A second call with the same cfg changes nothing
// and reports every resource Unchanged. A difference the server cannot
// update in place (storage type, retention) is returned as an error naming
// the resource and the field; nothing is deleted.
func Ensure(ctx context.Context, js jetstream.JetStream, cfg Config) ([]Result, error) {
	return ensure(ctx, js, cfg, true)
}

// Create creates every missing stream and bucket and changes nothing that
// exists: a resource whose settings differ from cfg is reported in a
// *DriftError after the missing ones are created. It is what a service
// whose NATS user may create but not update (the registry: docs/security.md)
// runs; updating is an operator's `hookbus topology ensure`.
func Create(ctx context.Context, js jetstream.JetStream, cfg Config) ([]Result, error) {
	return ensure(ctx, js, cfg, false)
}

func ensure(ctx context.Context, js jetstream.JetStream, cfg Config, update bool) ([]Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("topology: %w", err)
	}
	var (
		results []Result
		drifts  []Drift
	)
	for _, r := range cfg.resources(js) {
		res, err := r.ensure(ctx, js, update)
		if err != nil {
			return results, err
		}
		drifts = append(drifts, res.Drifted...)
		results = append(results, res)
	}
	if len(drifts) > 0 {
		return results, &DriftError{Drifts: drifts}
	}
	return results, nil
}

// Check compares the server with cfg without changing anything. It returns
// nil when every stream and bucket exists with the declared settings, a
// *DriftError (errors.Is ErrDrift) listing every difference otherwise, or
// the error that kept it from looking.
func Check(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	var drifts []Drift
	for _, r := range cfg.resources(js) {
		d, err := r.check(ctx, js)
		if err != nil {
			return err
		}
		drifts = append(drifts, d...)
	}
	if len(drifts) > 0 {
		return &DriftError{Drifts: drifts}
	}
	return nil
}

// resource is one stream or bucket: how to compare it with its backing
// stream on the server, and how to create or update it.
type resource struct {
	name   string // "stream HOOKBUS_EVENTS", "bucket hookbus_auth"
	stream string // the backing stream
	diff   func(got jetstream.StreamConfig) []Drift
	create func(ctx context.Context) error
	update func(ctx context.Context) error
}

// resources lists every stream, then every bucket, in a fixed order.
func (c Config) resources(js jetstream.JetStream) []resource {
	var out []resource
	for _, want := range c.Streams() {
		name := "stream " + want.Name
		out = append(out, resource{
			name: name, stream: want.Name,
			diff:   func(got jetstream.StreamConfig) []Drift { return diffStream(name, want, got) },
			create: func(ctx context.Context) error { _, err := js.CreateStream(ctx, want); return err },
			update: func(ctx context.Context) error { _, err := js.UpdateStream(ctx, want); return err },
		})
	}
	for _, want := range c.Buckets() {
		out = append(out, bucketResource(js, want))
	}
	return out
}

func bucketResource(js jetstream.JetStream, want jetstream.KeyValueConfig) resource {
	name := "bucket " + want.Bucket
	return resource{
		name: name, stream: kvStream(want.Bucket),
		diff:   func(got jetstream.StreamConfig) []Drift { return diffBucket(name, want, got) },
		create: func(ctx context.Context) error { _, err := js.CreateKeyValue(ctx, want); return err },
		update: func(ctx context.Context) error { _, err := js.UpdateKeyValue(ctx, want); return err },
	}
}

// ensure creates r if missing and, if update, updates it if it drifted.
func (r resource) ensure(ctx context.Context, js jetstream.JetStream, update bool) (Result, error) {
	res := Result{Resource: r.name}
	s, err := js.Stream(ctx, r.stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if err := r.create(ctx); err != nil {
			return res, fmt.Errorf("create %s: %w", r.name, err)
		}
		res.Action = Created
		return res, nil
	}
	if err != nil {
		return res, fmt.Errorf("look up %s: %w", r.name, err)
	}
	res.Changed = r.diff(s.CachedInfo().Config)
	if len(res.Changed) == 0 || !update {
		res.Action = Unchanged
		res.Changed, res.Drifted = nil, res.Changed
		return res, nil
	}
	if err := r.update(ctx); err != nil {
		return res, fmt.Errorf("update %s (%s): %w", r.name, describe(res.Changed), err)
	}
	res.Action = Updated
	return res, nil
}

// check returns how r differs from the server ("missing" if absent).
func (r resource) check(ctx context.Context, js jetstream.JetStream) ([]Drift, error) {
	s, err := js.Stream(ctx, r.stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return []Drift{{Resource: r.name, Field: "missing"}}, nil
	case err != nil:
		return nil, fmt.Errorf("look up %s: %w", r.name, err)
	}
	return r.diff(s.CachedInfo().Config), nil
}

func kvStream(bucket string) string { return "KV_" + bucket }

// diffStream compares the fields Hookbus declares; fields the server fills
// in on its own (metadata, consumer limits) are not Hookbus's to check.
func diffStream(resource string, want, got jetstream.StreamConfig) []Drift {
	d := differ{resource: resource}
	d.cmp("subjects", strings.Join(want.Subjects, ","), strings.Join(got.Subjects, ","))
	d.cmp("retention", want.Retention.String(), got.Retention.String())
	d.cmp("storage", want.Storage.String(), got.Storage.String())
	d.cmp("replicas", strconv.Itoa(want.Replicas), strconv.Itoa(max(got.Replicas, 1)))
	d.cmp("discard", want.Discard.String(), got.Discard.String())
	d.cmp("max age", want.MaxAge.String(), got.MaxAge.String())
	d.cmp("max bytes", limit(want.MaxBytes), limit(got.MaxBytes))
	d.cmp("max msgs", limit(want.MaxMsgs), limit(got.MaxMsgs))
	d.cmp("max msgs per subject", limit(want.MaxMsgsPerSubject), limit(got.MaxMsgsPerSubject))
	d.cmp("max msg size", limit(int64(want.MaxMsgSize)), limit(int64(got.MaxMsgSize)))
	d.cmp("duplicate window", want.Duplicates.String(), got.Duplicates.String())
	d.cmp("deny delete", strconv.FormatBool(want.DenyDelete), strconv.FormatBool(got.DenyDelete))
	d.cmp("deny purge", strconv.FormatBool(want.DenyPurge), strconv.FormatBool(got.DenyPurge))
	d.cmp("discard new per subject", strconv.FormatBool(want.DiscardNewPerSubject), strconv.FormatBool(got.DiscardNewPerSubject))
	d.cmp("allow atomic publish", strconv.FormatBool(want.AllowAtomicPublish), strconv.FormatBool(got.AllowAtomicPublish))
	d.cmp("republish", republish(want.RePublish), republish(got.RePublish))
	d.cmp("allow direct", strconv.FormatBool(want.AllowDirect), strconv.FormatBool(got.AllowDirect))
	return d.drifts
}

// diffBucket compares a bucket's declared settings with its backing stream.
func diffBucket(resource string, want jetstream.KeyValueConfig, got jetstream.StreamConfig) []Drift {
	d := differ{resource: resource}
	d.cmp("storage", want.Storage.String(), got.Storage.String())
	d.cmp("replicas", strconv.Itoa(want.Replicas), strconv.Itoa(max(got.Replicas, 1)))
	d.cmp("history", strconv.Itoa(int(want.History)), strconv.FormatInt(got.MaxMsgsPerSubject, 10))
	d.cmp("ttl", want.TTL.String(), got.MaxAge.String())
	d.cmp("max bytes", limit(want.MaxBytes), limit(got.MaxBytes))
	d.cmp("max value size", limit(int64(want.MaxValueSize)), limit(int64(got.MaxMsgSize)))
	return d.drifts
}

type differ struct {
	resource string
	drifts   []Drift
}

func (d *differ) cmp(field, want, got string) {
	if want != got {
		d.drifts = append(d.drifts, Drift{Resource: d.resource, Field: field, Want: want, Got: got})
	}
}

func republish(r *jetstream.RePublish) string {
	if r == nil {
		return "none"
	}
	return fmt.Sprintf("%s -> %s (headers only %v)", r.Source, r.Destination, r.HeadersOnly)
}

// limit prints a JetStream limit, where 0 and -1 both mean none.
func limit(v int64) string {
	if v <= 0 {
		return "unlimited"
	}
	return strconv.FormatInt(v, 10)
}

func describe(ds []Drift) string {
	parts := make([]string, 0, len(ds))
	for _, d := range ds {
		parts = append(parts, fmt.Sprintf("%s %s -> %s", d.Field, d.Got, d.Want))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}
