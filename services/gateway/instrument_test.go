package gateway

import (
	"context"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// The middleware allocates nothing per request once a route's labels are
// known.
func TestInstrumentDoesNotAllocate(t *testing.T) {
	m := newMetrics()
	h := m.instrument(m.routed("POST /events", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusAccepted)
	}))
	req := httptest.NewRequest(http.MethodPost, "/events", nil)
	w := discardWriter{}
	if n := testing.AllocsPerRun(100, func() { h.ServeHTTP(w, req) }); n != 0 {
		t.Errorf("%v allocations per request", n)
	}
}

type discardWriter struct{ header http.Header }

func (w discardWriter) Header() http.Header       { return w.header }
func (discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (discardWriter) WriteHeader(int)             {}

// A middleware between instrument and the routes (auth, deriving the
// request and wrapping the writer) changes nothing in the labels.
func TestInstrumentLabelsWithTheRouteBehindMiddleware(t *testing.T) {
	m := newMetrics()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /calls/{type}", m.routed("POST /calls/{type}", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	}))
	type key struct{}
	between := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(wrapped{w}, r.WithContext(context.WithValue(r.Context(), key{}, "x")))
	})
	h := m.instrument(between)
	h.ServeHTTP(discardWriter{http.Header{}}, httptest.NewRequest(http.MethodPost, "/calls/com.example.a", nil))
	h.ServeHTTP(discardWriter{http.Header{}}, httptest.NewRequest(http.MethodPost, "/nowhere", nil))

	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "hookbus_gateway_requests_total" {
			continue
		}
		for _, c := range mf.GetMetric() {
			var labels []string
			for _, l := range c.GetLabel() {
				labels = append(labels, l.GetValue())
			}
			got[strings.Join(labels, " ")] = c.GetCounter().GetValue()
		}
	}
	want := map[string]float64{"POST /calls/{type} 418 anonymous": 1, "unmatched 404 anonymous": 1}
	if !maps.Equal(got, want) {
		t.Errorf("requests %v, want %v", got, want)
	}
}

// wrapped is a middleware's writer.
type wrapped struct{ http.ResponseWriter }

func (w wrapped) Unwrap() http.ResponseWriter { return w.ResponseWriter }
