package gateway

import (
	"fmt"
	"net/http"

	"golang.org/x/sync/semaphore"

	"github.com/hookbus/hookbus/pkg/events"
)

// bounded holds a request's body bytes against Config.MaxInflightBytes
// from before its body is read until it is answered (the body, and the
// events decoded from it, stay in memory until JetStream acknowledged
// them): its Content-Length, or for a body of unknown length the most any
// route reads. A request that does not fit now is refused at once with
// 503 and Retry-After, rather than queued: many large concurrent batches
// cannot take the gateway's memory.
func (s *Service) bounded(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n := r.ContentLength
		if limit := s.bodyLimit(structuredMode); n < 0 || n > limit {
			n = limit // a longer body is refused with 413 when read
		}
		if !s.inflight.TryAcquire(n) {
			writeProblem(w, &Problem{Status: http.StatusServiceUnavailable, Code: events.CodeUnavailable,
				Detail: fmt.Sprintf("the gateway holds %d bytes of requests at most and is full: send again shortly", s.cfg.MaxInflightBytes)})
			return
		}
		defer s.inflight.Release(n)
		next(w, r)
	}
}

// newInflight is the semaphore of Config.MaxInflightBytes.
func newInflight(c Config) *semaphore.Weighted { return semaphore.NewWeighted(c.MaxInflightBytes) }
