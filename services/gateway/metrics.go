package gateway

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookbus/hookbus/pkg/client"
)

// metrics are the gateway's Prometheus metrics. Labels are bounded: route
// is a pattern of the mux (never the raw path), status an HTTP status,
// token a token's name.
type metrics struct {
	requests  *prometheus.CounterVec   // route, status, token
	durations *prometheus.HistogramVec // route
	events    *prometheus.CounterVec   // result
	// lifecycleDropped: device lifecycle events not stored, by reason.
	lifecycleDropped *prometheus.CounterVec

	stored, duplicate, refused prometheus.Counter // events, curried

	mu     sync.Mutex
	routes map[string]*routeMetrics // by pattern
}

// routeMetrics are the metrics of one route, curried once.
type routeMetrics struct {
	requests *prometheus.CounterVec // status, token
	duration prometheus.Observer
}

// routeUnmatched is the route label of requests no pattern matched (404,
// 405).
const routeUnmatched = "unmatched"

// statusClientGone is the status label of a request whose client left
// before it was answered.
const statusClientGone = 499

func newMetrics() *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookbus_gateway_requests_total",
			Help: "HTTP requests the gateway answered, by route (the pattern; unmatched when no route took the request: 404, 405), status (499: the client left first) and token name (anonymous without one).",
		}, []string{"route", "status", "token"}),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hookbus_gateway_request_duration_seconds",
			Help:    "Time from a request's headers to the end of its answer, by route.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookbus_gateway_events_total",
			Help: "Events posted to the gateway, by result: stored, duplicate (stored already: same source and id), refused (invalid or not stored).",
		}, []string{"result"}),
		lifecycleDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookbus_gateway_device_lifecycle_dropped_total",
			Help: "Device lifecycle events the gateway did not store, by reason: rate (a socket_error beyond 50 a second), full (64 events in flight already), failed (JetStream did not acknowledge it).",
		}, []string{"reason"}),
		routes: map[string]*routeMetrics{},
	}
	m.stored = m.events.WithLabelValues("stored")
	m.duplicate = m.events.WithLabelValues("duplicate")
	m.refused = m.events.WithLabelValues("refused")
	return m
}

// Describe and Collect make metrics a prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.requests.Describe(ch)
	m.durations.Describe(ch)
	m.events.Describe(ch)
	m.lifecycleDropped.Describe(ch)
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.requests.Collect(ch)
	m.durations.Collect(ch)
	m.events.Collect(ch)
	m.lifecycleDropped.Collect(ch)
}

// countStored counts an event JetStream stored, or found stored already.
func (m *metrics) countStored(ack client.PublishAck) {
	if ack.Duplicate {
		m.duplicate.Inc()
	} else {
		m.stored.Inc()
	}
}

// route returns the metrics of route, creating them on first use.
func (m *metrics) route(route string) *routeMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	if rm, ok := m.routes[route]; ok {
		return rm
	}
	rm := &routeMetrics{
		requests: m.requests.MustCurryWith(prometheus.Labels{"route": route}),
		duration: m.durations.WithLabelValues(route),
	}
	m.routes[route] = rm
	return rm
}

// instrument counts and times every request next serves, labelled with
// the route and token that routed saw, so whatever runs between them
// (auth putting the principal in a derived request) does not matter. A
// request no route's handler took (404, 405, refused before routing) is
// labelled unmatched, with the token its own context names.
func (m *metrics) instrument(next http.Handler) http.Handler {
	unmatched := m.route(routeUnmatched)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := recorders.Get().(*recorder)
		*rec = recorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		status, rm, token := rec.status, rec.route, rec.token
		*rec = recorder{}
		recorders.Put(rec)
		if status == 0 {
			status = http.StatusOK // what net/http answers for a handler that wrote nothing
			if r.Context().Err() != nil {
				status = statusClientGone
			}
		}
		if rm == nil {
			rm = unmatched
		}
		if token == "" {
			token = principalFrom(r.Context()).Name
		}
		rm.duration.Observe(time.Since(start).Seconds())
		rm.requests.WithLabelValues(statusLabel(status), token).Inc()
	})
}

// routed returns h, which serves the mux pattern route, telling instrument
// the route and the token of each request it serves.
func (m *metrics) routed(route string, h http.HandlerFunc) http.HandlerFunc {
	rm := m.route(route)
	return func(w http.ResponseWriter, r *http.Request) {
		if rec := recorderOf(w); rec != nil {
			rec.route, rec.token = rm, principalFrom(r.Context()).Name
		}
		h(w, r)
	}
}

// labelToken sets the token label of the request w answers: the
// authentication middleware, which runs inside routed, knows the name.
func labelToken(w http.ResponseWriter, name string) {
	if rec := recorderOf(w); rec != nil {
		rec.token = name
	}
}

// recorderOf finds instrument's recorder under w, nil without one.
func recorderOf(w http.ResponseWriter) *recorder {
	for rw := w; rw != nil; {
		if rec, ok := rw.(*recorder); ok {
			return rec
		}
		u, ok := rw.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return nil
		}
		rw = u.Unwrap()
	}
	return nil
}

// recorder remembers the status a handler answered, and the route and
// token routed saw.
type recorder struct {
	http.ResponseWriter
	status int
	route  *routeMetrics
	token  string
}

var recorders = sync.Pool{New: func() any { return new(recorder) }}

func (rec *recorder) WriteHeader(status int) {
	if rec.status == 0 && status >= 200 {
		rec.status = status
	}
	rec.ResponseWriter.WriteHeader(status)
}

func (rec *recorder) Write(b []byte) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return rec.ResponseWriter.Write(b)
}

// Unwrap gives http.ResponseController the connection's writer.
func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

// statusLabels holds the label of every status, so that none is
// formatted per request.
var statusLabels = func() (l [600]string) {
	for i := 100; i < len(l); i++ {
		l[i] = strconv.Itoa(i)
	}
	return l
}()

func statusLabel(status int) string {
	if status >= 0 && status < len(statusLabels) && statusLabels[status] != "" {
		return statusLabels[status]
	}
	return strconv.Itoa(status)
}
