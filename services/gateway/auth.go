package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/hookbus/hookbus/internal/durable"
	"github.com/hookbus/hookbus/pkg/events"
)

// Codes of the gateway's authentication and limits.
const (
	codeUnauthorized   events.ErrorCode = "unauthorized"
	codeForbidden      events.ErrorCode = "forbidden"
	codeRateLimited    events.ErrorCode = "rate_limited"
	codeTooManyHeaders events.ErrorCode = "too_many_headers"
)

// anonymousName is the principal of a request without a token.
const anonymousName = "anonymous"

// unauthenticatedLabel is the token label of the metrics of a request
// refused before it had a principal (no token, a bad one, too many
// headers).
const unauthenticatedLabel = "-"

// principal is who sent a request: a token's name, or anonymous.
type principal struct {
	Name string
	// all allows every action on every type (anonymous use).
	all   bool
	allow []Permission
}

type principalKey struct{}

// principalFrom returns the principal the authentication middleware put in
// ctx; without one, a principal named anonymous that is allowed nothing.
func principalFrom(ctx context.Context) principal {
	if p, ok := ctx.Value(principalKey{}).(principal); ok {
		return p
	}
	return principal{Name: anonymousName}
}

// permit returns nil when r's principal may do action ("publish" or
// "call") on eventType, else the 403 problem that refuses it.
func (s *Service) permit(r *http.Request, action, eventType string) *Problem {
	p := principalFrom(r.Context())
	if p.all {
		return nil
	}
	for _, a := range p.allow {
		if a.Action == action && a.Matches(eventType) {
			return nil
		}
	}
	return &Problem{Status: http.StatusForbidden, Code: codeForbidden,
		Detail: fmt.Sprintf("token %s may not %s events of type %q", p.Name, action, eventType)}
}

// permitPublish returns nil when r's principal may publish e: its type
// (permit) and its source (permitSource).
func (s *Service) permitPublish(r *http.Request, e *event.Event) *Problem {
	if p := s.permit(r, ActionPublish, e.Type()); p != nil {
		return p
	}
	return permitSource(r, e.Source())
}

// permitSource returns nil when r's principal may publish an event with
// source: a source under /gateway/ is the webhooks' of one token
// (webhookSourcePrefix and its name), and only that token may send it, or
// another token could take a coming delivery's source and id first and
// have that delivery found a duplicate, never stored.
func permitSource(r *http.Request, source string) *Problem {
	rest, ok := strings.CutPrefix(source, webhookSourcePrefix)
	if !ok {
		return nil
	}
	if p := principalFrom(r.Context()); rest != p.Name {
		return &Problem{Status: http.StatusForbidden, Code: codeForbidden,
			Detail: fmt.Sprintf("token %s may not send events of source %q: %s<name> is the source of the webhooks of token <name>", p.Name, source, webhookSourcePrefix)}
	}
	return nil
}

// storedToken is a token of the bucket, as the gateway checks it.
type storedToken struct {
	Token
	sum     []byte // the SHA-256, decoded
	limiter *rate.Limiter
}

// tokenStore is the in-memory copy of bucket hookbus_gateway_tokens that
// every request is checked against.
type tokenStore struct {
	mu     sync.RWMutex
	tokens map[string]*storedToken // by name
	loaded atomic.Bool             // the watch delivered the initial values
}

func (ts *tokenStore) get(name string) *storedToken {
	ts.mu.RLock()
	defer ts.mu.RUnlock()
	return ts.tokens[name]
}

// size returns how many tokens the copy holds.
func (ts *tokenStore) size() int {
	ts.mu.RLock()
	defer ts.mu.RUnlock()
	return len(ts.tokens)
}

// apply takes one entry of the watch into the copy: a put replaces the
// token (and its limiter), a delete or purge drops both.
func (ts *tokenStore) apply(e jetstream.KeyValueEntry, defaultRate int, log *slog.Logger) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		delete(ts.tokens, e.Key())
		return
	}
	var t Token
	err := json.Unmarshal(e.Value(), &t)
	if err == nil {
		err = t.Validate()
	}
	if err == nil && t.Name != e.Key() {
		err = fmt.Errorf("record of token %q stored under %q", t.Name, e.Key())
	}
	if err != nil {
		// Not written by hookbus gateway token create: it lets nobody in.
		log.Error("unusable gateway token record ignored", "token", e.Key(), "err", err)
		delete(ts.tokens, e.Key())
		return
	}
	sum, _ := hex.DecodeString(t.SHA256) // checked by Validate
	r := t.Rate
	if r == 0 {
		r = defaultRate
	}
	ts.tokens[e.Key()] = &storedToken{Token: t, sum: sum, limiter: rate.NewLimiter(rate.Limit(r), r)}
}

// watchTokens keeps s.tokens a copy of the bucket until ctx ends. NATS not
// answering, or the bucket not there yet, is waited out (not ready
// meanwhile).
func (s *Service) watchTokens(ctx context.Context) error {
	var kw jetstream.KeyWatcher
	err := durable.Start(ctx, s.log, "watch "+events.BucketGatewayTokens, func(ctx context.Context) error {
		kv, err := s.js.KeyValue(ctx, events.BucketGatewayTokens)
		if err != nil {
			return fmt.Errorf("bucket %s: %w", events.BucketGatewayTokens, err)
		}
		kw, err = kv.WatchAll(ctx)
		return err
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("watch %s: %w", events.BucketGatewayTokens, err)
	}
	defer func() { _ = kw.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-kw.Updates():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("watch %s: watcher closed", events.BucketGatewayTokens)
			}
			if e == nil { // the end of the initial values
				s.tokens.loaded.Store(true)
				s.log.Info("gateway tokens loaded", "tokens", s.tokens.size())
				continue
			}
			s.tokens.apply(e, s.cfg.Rate, s.log)
		}
	}
}

// errBadToken is the one answer to every token that is not a valid one:
// malformed, unknown, wrong secret or revoked look alike, so the answer
// tells nobody which names exist.
const errBadToken = "invalid bearer token"

// unauthorized is the 401 problem with detail.
func unauthorized(detail string) *Problem {
	return &Problem{Status: http.StatusUnauthorized, Code: codeUnauthorized, Detail: detail}
}

// authenticate finds r's principal and its rate limiter: a valid bearer
// token's, or, when allowed, anonymous.
func (s *Service) authenticate(r *http.Request) (principal, *rate.Limiter, *Problem) {
	values := r.Header.Values("Authorization")
	if len(values) == 0 {
		// A browser sends Origin: anonymous use is for this machine's
		// programs, not for every web page its user visits (a
		// cross-origin POST without custom headers needs no preflight).
		if origin := r.Header.Get("Origin"); origin != "" && s.cfg.anonymous() && !slices.Contains(s.cfg.CORSOrigins, origin) {
			return principal{}, nil, unauthorized(fmt.Sprintf("a bearer token is required from origin %q: anonymous use is not for web pages", origin))
		}
		if s.cfg.anonymous() {
			return principal{Name: anonymousName, all: true}, s.anonLimiter, nil
		}
		return principal{}, nil, unauthorized("a bearer token is required: Authorization: Bearer hbgw.<name>.<secret>")
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	if len(values) > 1 || !ok || !strings.EqualFold(scheme, "Bearer") {
		return principal{}, nil, unauthorized(errBadToken)
	}
	token = strings.TrimSpace(token)
	if !s.tokens.loaded.Load() {
		return principal{}, nil, &Problem{Status: http.StatusServiceUnavailable, Code: events.CodeUnavailable,
			Detail: "the gateway has not loaded its tokens yet"}
	}
	name, ok := tokenName(token)
	if !ok {
		return principal{}, nil, unauthorized(errBadToken)
	}
	sum := sha256.Sum256([]byte(token))
	t := s.tokens.get(name)
	want := make([]byte, sha256.Size) // an unknown name costs a comparison too
	if t != nil {
		want = t.sum
	}
	if subtle.ConstantTimeCompare(sum[:], want) != 1 || t == nil {
		return principal{}, nil, unauthorized(errBadToken)
	}
	return principal{Name: t.Name, allow: t.Allow}, t.limiter, nil
}

// guard is the middleware in front of every route: at most
// Config.MaxHeaders header fields (431), a principal (401), within its
// rate (429). The handler finds the principal with principalFrom and
// checks each event type with permit.
func (s *Service) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := 0
		for _, vs := range r.Header {
			n += len(vs)
		}
		if n > s.cfg.MaxHeaders {
			labelToken(w, unauthenticatedLabel)
			writeProblem(w, &Problem{Status: http.StatusRequestHeaderFieldsTooLarge, Code: codeTooManyHeaders,
				Detail: fmt.Sprintf("%d header fields, at most %d", n, s.cfg.MaxHeaders)})
			return
		}
		p, limiter, prob := s.authenticate(r)
		if prob != nil {
			labelToken(w, unauthenticatedLabel)
			if prob.Status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="hookbus"`)
			}
			s.log.Debug("request refused", "status", prob.Status, "detail", prob.Detail, "remote", r.RemoteAddr)
			writeProblem(w, prob)
			return
		}
		labelToken(w, p.Name)
		if res := limiter.Reserve(); !res.OK() || res.Delay() > 0 {
			wait := res.Delay()
			res.Cancel()
			w.Header().Set("Retry-After", strconv.Itoa(retryAfter(wait)))
			writeProblem(w, &Problem{Status: http.StatusTooManyRequests, Code: codeRateLimited,
				Detail: fmt.Sprintf("%s is over its rate of %g requests per second", p.Name, float64(limiter.Limit()))})
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// retryAfter is d in whole seconds, rounded up, at least 1.
func retryAfter(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
