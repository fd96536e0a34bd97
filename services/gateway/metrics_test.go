package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/services/gateway"
)

// gathered is a registry's metrics: value by name and labels
// ("name{k=v,...}", labels sorted by name as Gather sorts them); for a
// histogram, its count.
func gathered(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			key := mf.GetName() + "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				out[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

func TestMetricsCountRequestsByRouteStatusAndToken(t *testing.T) {
	s, _ := natstest.RunTopology(t)
	svc, err := gateway.New(gateway.DefaultConfig(), natstest.Connect(t, s), nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(svc.Collector()); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(svc.Handler())
	t.Cleanup(hs.Close)

	structured := map[string]string{"Content-Type": "application/cloudevents+json"}
	event := `{"specversion":"1.0","id":"m-1","source":"/shop","type":"com.example.order.created"}`
	for _, rq := range []struct {
		path, body string
		header     map[string]string
		status     int
	}{
		{"/events", event, structured, 202},
		{"/events", event, structured, 202}, // a duplicate
		{"/events", `{"specversion":"1.0","source":"/shop","type":"t"}`, structured, 400},
		{"/calls/com.example.order.created", event, structured, 503}, // no dispatcher
		{"/calls/com.example.order.paid", event, structured, 400},
		{"/nowhere", "", nil, 404},
	} {
		if status, _, body := post(t, hs.URL+rq.path, rq.header, rq.body); status != rq.status {
			t.Fatalf("POST %s: status %d, want %d; body %s", rq.path, status, rq.status, body)
		}
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, hs.URL+"/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	got := gathered(t, reg)
	want := map[string]float64{
		`hookbus_gateway_requests_total{route=POST /events,status=202,token=anonymous}`:       2,
		`hookbus_gateway_requests_total{route=POST /events,status=400,token=anonymous}`:       1,
		`hookbus_gateway_requests_total{route=POST /calls/{type},status=503,token=anonymous}`: 1,
		`hookbus_gateway_requests_total{route=POST /calls/{type},status=400,token=anonymous}`: 1,
		`hookbus_gateway_requests_total{route=unmatched,status=404,token=anonymous}`:          1,
		`hookbus_gateway_requests_total{route=unmatched,status=405,token=anonymous}`:          1,
		`hookbus_gateway_request_duration_seconds{route=POST /events}`:                        3,
		`hookbus_gateway_request_duration_seconds{route=POST /calls/{type}}`:                  2,
		`hookbus_gateway_request_duration_seconds{route=unmatched}`:                           2,
		`hookbus_gateway_events_total{result=stored}`:                                         1,
		`hookbus_gateway_events_total{result=duplicate}`:                                      1,
		`hookbus_gateway_events_total{result=refused}`:                                        1,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok && v != 0 {
			t.Errorf("unexpected %s = %v", k, v)
		}
	}
}
