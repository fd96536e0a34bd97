package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/dispatcher"
	"github.com/hookbus/hookbus/services/gateway"
)

// benchType is the event type of every benchmark event.
const benchType = "com.example.bench"

// benchData is the data of every benchmark event: 128 bytes of JSON.
var benchData = func() []byte {
	const head, tail = `{"user":"ada","amount":42,"note":"`, `"}`
	return []byte(head + string(bytes.Repeat([]byte{'x'}, 128-len(head)-len(tail))) + tail)
}()

// benchGateway starts a server with the topology and a gateway served by
// Run on a free loopback port, as hookbus serve runs it, and returns the
// server and the gateway's base URL.
func benchGateway(b *testing.B) (*server.Server, string) {
	b.Helper()
	srv, _ := natstest.RunTopology(b)
	cfg := gateway.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	// The benchmarks' requests are anonymous, from loopback: any limit on
	// such requests (a rate) must be set above the benchmarks' own rates
	// here, or they measure the limit.
	cfg.Rate = 1 << 30
	svc, err := gateway.New(cfg, natstest.Connect(b, srv), nil)
	if err != nil {
		b.Fatal(err)
	}
	natstest.RunService(b, svc)
	return srv, "http://" + svc.Addr()
}

// keepAliveClient is an HTTP client that keeps a connection open for
// each of n concurrent requests.
func keepAliveClient(b *testing.B, n int) *http.Client {
	tr := &http.Transport{MaxIdleConns: n, MaxIdleConnsPerHost: n, IdleConnTimeout: time.Minute, DisableCompression: true}
	b.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// postBinary POSTs a binary-mode event with id to url (the gateway's
// /events or /calls/<type>) and returns the answer's status and body.
func postBinary(ctx context.Context, hc *http.Client, url, id string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(benchData))
	if err != nil {
		return 0, nil, err
	}
	h := req.Header
	h["Content-Type"] = []string{event.ApplicationJSON}
	h["Ce-Specversion"] = []string{event.CloudEventsVersionV1}
	h["Ce-Id"] = []string{id}
	h["Ce-Source"] = []string{"/bench"}
	h["Ce-Type"] = []string{benchType}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// BenchmarkPublish measures POST /events through a gateway served by Run
// (binary mode, 128 bytes of JSON data, each request answered 202 once
// JetStream stored its event) from 1 and from 64 keep-alive clients, and
// from 8 clients sending batches of 100 such events (structured, in
// application/cloudevents-batch+json), and
// in the same run, on the same server and stream, raw nats.go
// PublishMsgAsync of the same events (the same binary-mode message, a new
// ce-id and Nats-Msg-Id each) with the gateway's window of 256, waiting
// for every acknowledgement. Each round publishes b.N events both ways;
// only the HTTP side is on the benchmark's clock (ns/op). events/s is
// HTTP, raw-events/s raw, x_raw their ratio; cpu-µs/event and
// raw-cpu-µs/event are the CPU time the whole process (server, gateway,
// clients) spent per event on each side, which other work on the machine
// moves less than the rates.
func BenchmarkPublish(b *testing.B) {
	srv, base := benchGateway(b)
	rawNC := natstest.Connect(b, srv)
	tmpl := event.New()
	tmpl.SetID("tmpl")
	tmpl.SetSource("/bench")
	tmpl.SetType(benchType)
	if err := tmpl.SetData(event.ApplicationJSON, benchData); err != nil {
		b.Fatal(err)
	}
	subject, err := events.EventSubject(benchType)
	if err != nil {
		b.Fatal(err)
	}
	enc, err := events.Encode(subject, &tmpl)
	if err != nil {
		b.Fatal(err)
	}
	var round atomic.Int64
	for _, load := range []struct {
		clients, batch int
		netHTTP        bool // Go's net/http client rather than wireClient
	}{{1, 1, false}, {64, 1, false}, {64, 1, true}, {8, 100, true}} {
		name := fmt.Sprintf("clients=%d", load.clients)
		if load.batch > 1 {
			name += fmt.Sprintf(",batch=%d", load.batch)
		}
		if load.netHTTP {
			name = "net-http-" + name
		}
		clients := load.clients
		b.Run(name, func(b *testing.B) {
			prefix := fmt.Sprintf("r%d-", round.Add(1))
			hc := keepAliveClient(b, clients)
			newPoster := func() poster {
				if !load.netHTTP {
					wc := dialWire(b, base)
					return func(first, _ int) (int, []byte, error) { return wc.postBinary("/events", prefix+strconv.Itoa(first)) }
				}
				return func(first, last int) (int, []byte, error) {
					if load.batch == 1 {
						return postBinary(context.Background(), hc, base+"/events", prefix+strconv.Itoa(first))
					}
					return postBenchBatch(context.Background(), hc, base+"/events", prefix, first, last)
				}
			}

			cpu := processCPU()
			err := drive(b.N, clients, load.batch, newPoster)
			b.StopTimer()
			cpu = processCPU() - cpu
			if err != nil {
				b.Fatal(err)
			}
			httpRate := float64(b.N) / b.Elapsed().Seconds()
			rawCPU := processCPU()
			rawRate := rawAsyncPublish(b, rawNC, enc, "raw-"+prefix, b.N)
			rawCPU = processCPU() - rawCPU
			b.ReportMetric(httpRate, "events/s")
			b.ReportMetric(rawRate, "raw-events/s")
			b.ReportMetric(httpRate/rawRate, "x_raw")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/event")
			b.ReportMetric(float64(rawCPU.Microseconds())/float64(b.N), "raw-cpu-µs/event")
		})
	}
}

// poster sends the events numbered first to last (from 1) and returns
// the answer's status and body, which must be 202.
type poster func(first, last int) (int, []byte, error)

// drive sends n events from clients goroutines, each with a poster of its
// own from newPoster, batch events a request. It returns the first
// failure.
func drive(n, clients, batch int, newPoster func() poster) error {
	var (
		next   atomic.Int64
		failed atomic.Pointer[error]
		wg     sync.WaitGroup
	)
	for range clients {
		post := newPoster()
		wg.Go(func() {
			for failed.Load() == nil {
				last := int(next.Add(int64(batch)))
				first := last - batch + 1
				if first > n {
					return
				}
				status, body, err := post(first, min(last, n))
				if err == nil && status != http.StatusAccepted {
					err = fmt.Errorf("status %d: %s", status, body)
				}
				if err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		return *err
	}
	return nil
}

// BenchmarkHTTPFloor is BenchmarkPublish's HTTP side without the gateway:
// the same clients and requests to an http.Server with the gateway's
// default settings whose handler reads the body and answers 202 with an
// answer of the same size, storing nothing. It is the most any HTTP
// publish can reach on the machine with its clients in the process; read
// events/s beside BenchmarkPublish's.
func BenchmarkHTTPFloor(b *testing.B) {
	cfg := gateway.DefaultConfig()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	answer := []byte(`{"stream":"HOOKBUS_EVENTS","seq":123456,"duplicate":false}` + "\n")
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := io.Copy(io.Discard, r.Body); err != nil {
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write(answer)
		}),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
	}
	go func() { _ = srv.Serve(l) }()
	b.Cleanup(func() { _ = srv.Close() })
	url := "http://" + l.Addr().String() + "/events"
	for _, load := range []struct {
		clients int
		netHTTP bool
	}{{1, false}, {64, false}, {64, true}} {
		clients, netHTTP := load.clients, load.netHTTP
		name := fmt.Sprintf("clients=%d", clients)
		if netHTTP {
			name = "net-http-" + name
		}
		b.Run(name, func(b *testing.B) {
			hc := keepAliveClient(b, clients)
			newPoster := func() poster {
				return func(first, _ int) (int, []byte, error) {
					return postBinary(context.Background(), hc, url, strconv.Itoa(first))
				}
			}
			if !netHTTP {
				newPoster = func() poster {
					wc := dialWire(b, "http://"+l.Addr().String())
					return func(first, _ int) (int, []byte, error) { return wc.postBinary("/events", strconv.Itoa(first)) }
				}
			}
			b.ResetTimer()
			cpu := processCPU()
			err := drive(b.N, clients, 1, newPoster)
			b.StopTimer()
			cpu = processCPU() - cpu
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/event")
		})
	}
}

// postBenchBatch POSTs the events numbered first to last (ids prefix and the
// number) as one batch (application/cloudevents-batch+json) to url and
// returns the answer's status and body.
func postBenchBatch(ctx context.Context, hc *http.Client, url, prefix string, first, last int) (int, []byte, error) {
	var body []byte
	body = append(body, '[')
	for i := first; i <= last; i++ {
		if i > first {
			body = append(body, ',')
		}
		body = append(body, `{"specversion":"1.0","id":"`...)
		body = append(body, prefix...)
		body = strconv.AppendInt(body, int64(i), 10)
		body = append(body, `","source":"/bench","type":"`+benchType+`","datacontenttype":"application/json","data":`...)
		body = append(body, benchData...)
		body = append(body, '}')
	}
	body = append(body, ']')
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header["Content-Type"] = []string{event.ApplicationCloudEventsBatchJSON}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	return resp.StatusCode, answer, err
}

// rawAsyncPublish publishes n copies of enc, each with a ce-id of its own
// (prefix and a number) and its Nats-Msg-Id, with nats.go's
// PublishMsgAsync and at most 256 acknowledgements pending, waits for
// every acknowledgement and returns the events per second.
func rawAsyncPublish(b *testing.B, nc *nats.Conn, enc *nats.Msg, prefix string, n int) float64 {
	b.Helper()
	var failed atomic.Int64
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(256),
		jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { failed.Add(1) }))
	if err != nil {
		b.Fatal(err)
	}
	defer js.CleanupPublisher() // its reply subscription
	start := time.Now()
	for i := range n {
		id := prefix + strconv.Itoa(i)
		msg := nats.NewMsg(enc.Subject)
		for k, v := range enc.Header {
			msg.Header[k] = v
		}
		msg.Header.Set("ce-id", id)
		msg.Header.Set(events.HeaderMsgID, events.MsgID("/bench", id))
		msg.Header.Set(jetstream.ExpectedStreamHeader, events.StreamEvents)
		msg.Data = enc.Data
		if _, err := js.PublishMsgAsync(msg); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatalf("raw: %d acknowledgements missing after a minute", js.PublishAsyncPending())
	}
	elapsed := time.Since(start)
	if f := failed.Load(); f > 0 {
		b.Fatalf("raw: %d publishes failed", f)
	}
	return float64(n) / elapsed.Seconds()
}

// BenchmarkCall measures the latency of a call with one pass-through
// chain plugin (registry and dispatcher running on the same server):
// client.Call over NATS (hookbus.call) and POST /calls/<type> with the
// same event in binary mode (from a wireClient), the two taking turns in
// one loop so that both see the same load. It reports p50 and
// p99 of each in microseconds and x_nats, the HTTP p50 over the NATS p50.
func BenchmarkCall(b *testing.B) {
	srv, base := benchGateway(b)
	runChainServices(b, srv, dispatcher.DefaultConfig())
	c, err := client.New(natstest.Connect(b, srv))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- c.Serve(ctx, client.Plugin{
			Spec:  events.PluginSpec{Name: "pass", Event: benchType},
			Chain: func(context.Context, *client.Step) (client.StepResult, error) { return client.StepResult{}, nil },
		})
	}()
	b.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			b.Error(err)
		}
	})
	e := event.New()
	e.SetID("call")
	e.SetSource("/bench")
	e.SetType(benchType)
	if err := e.SetData(event.ApplicationJSON, benchData); err != nil {
		b.Fatal(err)
	}
	natsCall := func() error {
		res, err := c.Call(context.Background(), e)
		if err == nil && len(res.Trace) != 1 {
			err = fmt.Errorf("trace of %d steps, want 1", len(res.Trace))
		}
		return err
	}
	// The chain runs once the dispatcher has seen the plugin start.
	natstest.Eventually(b, 10*time.Second, natsCall)

	wc := dialWire(b, base)
	httpCall := func() error { return checkCallAnswer(wc.postBinary("/calls/"+benchType, "call")) }
	var httpLat, natsLat []time.Duration
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		if err := httpCall(); err != nil {
			b.Fatal(err)
		}
		httpLat = append(httpLat, time.Since(start))
		start = time.Now()
		if err := natsCall(); err != nil {
			b.Fatal(err)
		}
		natsLat = append(natsLat, time.Since(start))
	}
	b.StopTimer()
	natsP50 := reportLatencies(b, natsLat, "nats")
	httpP50 := reportLatencies(b, httpLat, "http")
	b.ReportMetric(httpP50/natsP50, "x_nats")
}

// checkCallAnswer checks the answer to one POST /calls/<type> of the
// benchmark event: 200 with the chain's result (the hookbus.call answer)
// after one step.
func checkCallAnswer(status int, body []byte, err error) error {
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("POST /calls: status %d: %s", status, body)
	}
	var res events.ChainResult
	if err := json.Unmarshal(body, &res); err != nil {
		return fmt.Errorf("POST /calls: answer %s: %w", body, err)
	}
	if len(res.Trace) != 1 {
		return errors.New("POST /calls: trace of " + strconv.Itoa(len(res.Trace)) + " steps, want 1")
	}
	return nil
}

// reportLatencies reports p50 and p99 of d as <name>-p50-µs and
// <name>-p99-µs and returns p50 in microseconds.
func reportLatencies(b *testing.B, d []time.Duration, name string) float64 {
	slices.Sort(d)
	p50 := float64(d[len(d)/2].Nanoseconds()) / 1e3
	b.ReportMetric(p50, name+"-p50-µs")
	b.ReportMetric(float64(d[len(d)*99/100].Nanoseconds())/1e3, name+"-p99-µs")
	return p50
}
