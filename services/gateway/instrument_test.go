package gateway

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// The middleware allocates nothing per request once a route's labels are
// known.
func TestInstrumentDoesNotAllocate(t *testing.T) {
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Pattern = "POST /events" // as the mux sets it
		w.WriteHeader(http.StatusAccepted)
	})
	h := newMetrics().instrument(inner, "POST /events")
	req := httptest.NewRequest(http.MethodPost, "/events", nil)
	w := discardWriter{}
	if n := testing.AllocsPerRun(100, func() { h.ServeHTTP(w, req) }); n != 0 {
		t.Errorf("%v allocations per request", n)
	}
}

type discardWriter struct{}

func (discardWriter) Header() http.Header         { return nil }
func (discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (discardWriter) WriteHeader(int)             {}
