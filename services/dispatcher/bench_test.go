package dispatcher_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/pkg/events"
)

// BenchmarkCall measures a synchronous call through the dispatcher with 1
// and 3 chain plugins, beside the raw NATS request/reply round trips the
// same work needs (one for the call, one per plugin), each carrying the
// message Hookbus sends for it (the event's binary-mode headers and data),
// on one embedded server. Read p50/p99 of hookbus against raw of the same
// size.
func BenchmarkCall(b *testing.B) {
	for _, n := range []int{1, 3} {
		e := newEnv(b)
		e.runDispatcher()
		for i := range n {
			name := fmt.Sprintf("p%d", i)
			e.worker(name, appender(name))
			e.put(plugin(name, i))
		}
		e.waitChain("ev", n)
		ev := newEvent("ev", "bench", map[string]any{"user": "ada", "amount": 42})
		msg, err := events.Encode("hookbus.call.ev", &ev)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("plugins=%d/hookbus", n), func(b *testing.B) {
			latencies(b, func() error {
				answer, err := e.nc.RequestMsg(msg, 5*time.Second)
				if err != nil {
					return err
				}
				var res events.ChainResult
				if err := json.Unmarshal(answer.Data, &res); err != nil {
					return err
				}
				if len(res.Trace) != n || res.Error != nil {
					return fmt.Errorf("result %+v", res)
				}
				return nil
			})
		})
		b.Run(fmt.Sprintf("plugins=%d/raw", n), func(b *testing.B) {
			// The same round trips by hand, with the same messages: one to
			// a responder standing in for the dispatcher, one to each
			// plugin's worker.
			sub, err := e.nc.Subscribe("raw.call", func(m *nats.Msg) { _ = m.Respond(m.Data) })
			if err != nil {
				b.Fatal(err)
			}
			defer sub.Unsubscribe()
			latencies(b, func() error {
				if _, err := e.nc.RequestMsg(&nats.Msg{Subject: "raw.call", Header: msg.Header, Data: msg.Data}, 5*time.Second); err != nil {
					return err
				}
				for i := range n {
					if _, err := e.nc.RequestMsg(&nats.Msg{Subject: fmt.Sprintf("hookbus.plugin.p%d.call", i), Header: msg.Header, Data: msg.Data}, 5*time.Second); err != nil {
						return err
					}
				}
				return nil
			})
		})
	}
}

// latencies runs f b.N times and reports p50 and p99 in microseconds.
func latencies(b *testing.B, f func() error) {
	b.Helper()
	d := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		if err := f(); err != nil {
			b.Fatal(err)
		}
		d = append(d, time.Since(start))
	}
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(d[len(d)*99/100].Microseconds()), "p99-µs")
}
