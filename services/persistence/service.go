// Package persistence is the persistence service: BaileysEx's auth
// credentials and keys, per context (tenant), in KV bucket hookbus_auth,
// every value encrypted by the service with AES-256-GCM. It answers the
// persistence API (docs/protocol.md, subjects hookbus.auth.>) as the NATS
// micro service hookbus-persistence; replicas share the requests through
// the micro queue group.
package persistence

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookbus/hookbus/internal/durable"
	"github.com/hookbus/hookbus/internal/microerr"
	"github.com/hookbus/hookbus/internal/topology"
	"github.com/hookbus/hookbus/pkg/events"
)

// Service is the persistence service. Several may run at once on the same
// NATS, with the same keys.
type Service struct {
	cfg      Config
	nc       *nats.Conn
	js       jetstream.JetStream
	log      *slog.Logger
	ring     *keyring
	requests *prometheus.CounterVec

	kv    jetstream.KeyValue // set by Run before the endpoints are added
	ready atomic.Bool

	mu       sync.Mutex // guards closing and the Add side of inflight
	closing  bool
	inflight sync.WaitGroup
	rotating sync.Mutex // one rotation at a time per instance
}

// New builds the service on nc; Run starts it. A nil logger discards logs;
// a nil registerer keeps the metrics unregistered.
func New(cfg Config, nc *nats.Conn, log *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if nc == nil {
		return nil, errors.New("persistence: nil nats connection")
	}
	ring, err := newKeyring(cfg.Keys)
	if err != nil {
		return nil, fmt.Errorf("persistence keys: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{
		cfg:  cfg,
		nc:   nc,
		js:   js,
		log:  log,
		ring: ring,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookbus_persistence_requests_total",
			Help: "Persistence requests answered, by endpoint and outcome (ok or the error code).",
		}, []string{"endpoint", "code"}),
	}
	if reg != nil {
		if err := reg.Register(s.requests); err != nil {
			return nil, fmt.Errorf("persistence metrics: %w", err)
		}
	}
	return s, nil
}

// errNotReady is what Ready returns while Run is not serving.
var errNotReady = errors.New("persistence not serving")

// Ready returns nil while the service answers requests: after Run has
// checked the bucket and the keys, until it stops.
func (s *Service) Ready(context.Context) error {
	if !s.ready.Load() {
		return errNotReady
	}
	return nil
}

// Run checks bucket hookbus_auth against the topology and the configured
// keys against the bucket's key-check records, then answers requests until
// ctx ends, and returns nil. A bucket that differs from its definition, or
// keys that cannot read what is stored (an error matching ErrKeyCheck),
// make it return an error at once, before answering anything. Requests
// being worked on when ctx ends are finished first, except a rotation,
// which stops where it is (it is safe to run again).
func (s *Service) Run(ctx context.Context) error {
	err := durable.Start(ctx, s.log, "start", func(ctx context.Context) error {
		if err := topology.CheckBucket(ctx, s.js, s.cfg.Topology, events.BucketAuth); err != nil {
			return err
		}
		kv, err := s.js.KeyValue(ctx, events.BucketAuth)
		if err != nil {
			return fmt.Errorf("bucket %s: %w", events.BucketAuth, err)
		}
		s.kv = kv
		return s.checkKeys(ctx)
	})
	if err != nil {
		return err
	}

	stopped := make(chan struct{})
	var once sync.Once
	svc, err := micro.AddService(s.nc, micro.Config{
		Name:        events.AuthServiceName,
		Version:     s.cfg.Version,
		Description: "Hookbus persistence: auth credentials and keys per context, encrypted at rest.",
		Metadata:    map[string]string{"bucket": events.BucketAuth, "key_id": s.ring.current()},
		QueueGroup:  events.AuthServiceName,
		DoneHandler: func(micro.Service) { once.Do(func() { close(stopped) }) },
		ErrorHandler: func(_ micro.Service, e *micro.NATSError) {
			s.log.Error("persistence subscription", "subject", e.Subject, "err", e.Description)
		},
	})
	if err != nil {
		return fmt.Errorf("micro service: %w", err)
	}
	for _, ep := range s.endpoints() {
		base := context.WithoutCancel(ctx) // a request finishes after ctx ends
		if ep.interruptible {
			base = ctx
		}
		name := strings.ReplaceAll(strings.TrimPrefix(ep.subject, "hookbus.auth."), ".", "-")
		if err := svc.AddEndpoint(name, s.handler(base, name, ep), micro.WithEndpointSubject(ep.subject)); err != nil {
			_ = svc.Stop()
			return fmt.Errorf("endpoint %s: %w", ep.subject, err)
		}
	}
	// Ready means reachable: the server has the subscriptions (or,
	// disconnected, will have them on reconnecting).
	if err := s.nc.FlushTimeout(10 * time.Second); err != nil {
		s.log.Warn("subscriptions not confirmed by the server yet", "err", err)
	}
	s.ready.Store(true)
	s.log.Info("persistence serving", "subject", events.AuthSubjects, "bucket", events.BucketAuth,
		"key_id", s.ring.current(), "keys", len(s.cfg.Keys))

	select {
	case <-ctx.Done():
	case <-stopped:
	}
	s.ready.Store(false)
	stopErr := svc.Stop()
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.inflight.Wait()
	if ctx.Err() == nil {
		return errors.New("micro service stopped: nats connection closed")
	}
	if stopErr != nil && !errors.Is(stopErr, nats.ErrConnectionClosed) {
		return fmt.Errorf("stop: %w", stopErr)
	}
	s.log.Info("persistence stopped")
	return nil
}

// endpoint is one operation of the API.
type endpoint struct {
	subject string
	timeout time.Duration
	serve   func(ctx context.Context, body []byte) (any, error)
	// interruptible requests end with Run's ctx instead of holding up the
	// shutdown until they are done.
	interruptible bool
}

func (s *Service) endpoints() []endpoint {
	t := s.cfg.RequestTimeout
	return []endpoint{
		{subject: events.AuthCredsGetSubject, timeout: t, serve: s.credsGet},
		{subject: events.AuthCredsSaveSubject, timeout: t, serve: s.credsSave},
		{subject: events.AuthKeysGetSubject, timeout: t, serve: s.keysGet},
		{subject: events.AuthKeysSetSubject, timeout: t, serve: s.keysSet},
		{subject: events.AuthKeysDeleteSubject, timeout: t, serve: s.keysDelete},
		{subject: events.AuthKeysListSubject, timeout: t, serve: s.keysList},
		{subject: events.AuthContextClearSubject, timeout: t, serve: s.contextClear},
		{subject: events.AuthRotateSubject, timeout: s.cfg.RotateTimeout, serve: s.rotate, interruptible: true},
	}
}

// handler answers each request on the endpoint's subscription, one at a
// time per endpoint (micro's model: its statistics read the outcome when
// the handler returns); the endpoints run side by side, each request runs
// its KV operations in parallel, and replicas share the load. Run waits for
// the requests in progress when it stops; those NATS still delivers while
// the subscriptions drain are answered too.
func (s *Service) handler(base context.Context, name string, ep endpoint) micro.Handler {
	return micro.HandlerFunc(func(req micro.Request) {
		if err := events.CheckRequestReply(req.Reply()); err != nil {
			// A JetStream push consumer's delivery ($JS.ACK. reply), or a
			// publish nobody waits for: never acted on (docs/security.md).
			s.requests.WithLabelValues(name, "refused").Inc()
			s.log.Warn("request refused: not from an inbox", "endpoint", name, "err", err)
			return
		}
		s.mu.Lock()
		tracked := !s.closing
		if tracked {
			s.inflight.Add(1)
		}
		s.mu.Unlock()
		if tracked {
			defer s.inflight.Done()
		}
		s.answer(base, name, ep, req)
	})
}

// answer runs one request and replies. This is the one place that turns
// errors into error replies and logs the ones an operator must see.
func (s *Service) answer(base context.Context, name string, ep endpoint, req micro.Request) {
	ctx, cancel := context.WithTimeout(base, ep.timeout)
	defer cancel()
	result, err := ep.serve(ctx, req.Data())
	if err == nil {
		err = req.RespondJSON(result)
		if err == nil {
			s.requests.WithLabelValues(name, "ok").Inc()
			return
		}
		err = fmt.Errorf("reply: %w", err)
	}
	answer := answerOf(err)
	s.requests.WithLabelValues(name, string(answer.Code)).Inc()
	switch answer.Code {
	case events.CodeDecrypt:
		s.log.Error("stored value cannot be read", "subject", ep.subject, "err", err)
	case events.CodeInternal:
		s.log.Error("persistence request failed", "subject", ep.subject, "err", err)
	}
	if err := microerr.Respond(req, answer); err != nil {
		s.log.Warn("persistence error reply", "subject", ep.subject, "err", err)
	}
}

// decode reads a JSON request body into v, refusing unknown fields and
// trailing data; an empty body is an empty object.
func decode(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return failure(events.CodeInvalid, "request body: %v", err)
	}
	if dec.More() {
		return failure(events.CodeInvalid, "request body: data after the JSON object")
	}
	return nil
}

// contextName checks a request's context and resolves "" to the default.
// decodeRequest decodes body into req and returns the context its field
// context names (the default context when empty).
func decodeRequest(body []byte, req any, context *string) (string, error) {
	if err := decode(body, req); err != nil {
		return "", err
	}
	return contextName(*context)
}

func contextName(name string) (string, error) {
	if err := events.ValidateAuthContext(name); err != nil {
		return "", err
	}
	if name == "" {
		return events.AuthDefaultContext, nil
	}
	return name, nil
}

// open decrypts a value read from kvKey; a value that decrypts to nothing
// is an empty value, never a missing one.
func (s *Service) open(kvKey string, envelope []byte) ([]byte, error) {
	v, err := s.ring.open(kvKey, envelope)
	if err != nil {
		return nil, err
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// checkValue refuses a value the bucket could not take once encrypted.
func (s *Service) checkValue(what string, v []byte) error {
	if limit := s.cfg.maxValueSize(); len(v) > limit {
		return failure(events.CodeInvalid, "%s is %d bytes, the limit is %d", what, len(v), limit)
	}
	return nil
}
