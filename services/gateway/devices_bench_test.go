package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/dispatcher"
	"github.com/hookbus/hookbus/services/gateway"
)

// benchDevices is how many idle devices BenchmarkDeviceSessions holds:
// HOOKBUS_BENCH_DEVICES, else 10000 cut to what the open file limit
// allows (the gateway holds one descriptor a device, the client process
// another).
func benchDevices(b *testing.B) int {
	if s := os.Getenv("HOOKBUS_BENCH_DEVICES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("HOOKBUS_BENCH_DEVICES=%q: want a positive count", s)
		}
		return n
	}
	n := 10000
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil && lim.Cur < uint64(n)+1000 {
		n = int(lim.Cur) - 1000
	}
	return n
}

// benchDeviceGateway starts a server with the topology and a gateway
// serving devices (the tests' secret and salt) by Run on a free loopback
// port, and returns the server and its device URL.
func benchDeviceGateway(b *testing.B) (*server.Server, string) {
	b.Helper()
	srv, _ := natstest.RunTopology(b)
	sealer, err := gateway.NewDeviceSealer(testSecret, testSalt)
	if err != nil {
		b.Fatal(err)
	}
	cfg := gateway.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.Rate = 1 << 30
	cfg.DeviceTokens = sealer
	cfg.DeviceRate = 1 << 20
	svc, err := gateway.New(cfg, natstest.Connect(b, srv), nil)
	if err != nil {
		b.Fatal(err)
	}
	natstest.RunService(b, svc)
	return srv, "ws://" + svc.Addr() + "/devices/websocket"
}

// deviceToken seals a token of an hour for device id with the tests'
// secret.
func deviceToken(id string) (string, error) {
	sealer, err := gateway.NewDeviceSealer(testSecret, testSalt)
	if err != nil {
		return "", err
	}
	return sealer.Seal(gateway.DeviceToken{DeviceID: id, IssuedAt: time.Now(), Expires: time.Now().Add(time.Hour)})
}

// dialDevice connects device id to url with a token and reads its first
// token frame.
func dialDevice(ctx context.Context, url, id string) (*websocket.Conn, error) {
	tok, err := deviceToken(id)
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	h.Set(gateway.HeaderDeviceAuth, authHeader(map[string]any{"device_id": id, "token": tok}))
	conn, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("device %s: upgrade answered %d: %w", id, resp.StatusCode, err)
		}
		return nil, fmt.Errorf("device %s: %w", id, err)
	}
	if _, _, err := conn.Read(ctx); err != nil {
		_ = conn.CloseNow()
		return nil, fmt.Errorf("device %s: token frame: %w", id, err)
	}
	return conn, nil
}

// TestDeviceClientsProcess is not a test: it is the client process of
// BenchmarkDeviceSessions (run when HOOKBUS_BENCH_DEVICE_URL is set). It
// connects HOOKBUS_BENCH_DEVICES devices, prints "ready", keeps them
// open (reading, so pings are answered) until its stdin closes.
func TestDeviceClientsProcess(t *testing.T) {
	url := os.Getenv("HOOKBUS_BENCH_DEVICE_URL")
	if url == "" {
		t.Skip("the client process of BenchmarkDeviceSessions")
	}
	n, _ := strconv.Atoi(os.Getenv("HOOKBUS_BENCH_DEVICES"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	conns := make([]*websocket.Conn, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
			defer dcancel()
			conn, err := dialDevice(dctx, url, "b"+strconv.Itoa(i))
			if err != nil {
				errs <- err
				return
			}
			conns[i] = conn
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		fmt.Println("error:", err)
		return
	default:
	}
	for _, c := range conns {
		go func() {
			for {
				if _, _, err := c.Read(ctx); err != nil {
					return
				}
			}
		}()
	}
	fmt.Println("ready")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	for _, c := range conns {
		_ = c.CloseNow()
	}
}

// BenchmarkDeviceSessions measures a gateway (served by Run, as hookbus
// serve runs it) holding N idle device sessions (benchDevices: 10000
// unless the file limit is lower), connected from a child process so
// that the gateway's process holds only the gateway and NATS: heap
// bytes, goroutine stack bytes and goroutines a session (heap-B/device,
// stack-B/device, goroutines/device, after a GC, beside the same process
// before the devices connected; sys-B/device is all the memory the
// process took from the OS for them) and the
// connect time of a device (ns/op over the N connections, 32 at a time).
func BenchmarkDeviceSessions(b *testing.B) {
	n := benchDevices(b)
	_, url := benchDeviceGateway(b)
	for range b.N {
		b.StopTimer()
		var before runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		goroutines := runtime.NumGoroutine()
		cmd := exec.Command(os.Args[0], "-test.run=^TestDeviceClientsProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), "HOOKBUS_BENCH_DEVICE_URL="+url, "HOOKBUS_BENCH_DEVICES="+strconv.Itoa(n))
		stdin, err := cmd.StdinPipe()
		if err != nil {
			b.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		b.StartTimer()
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		line, err := bufio.NewReader(stdout).ReadString('\n')
		took := time.Since(start)
		b.StopTimer()
		if err != nil || line != "ready\n" {
			_ = stdin.Close()
			_ = cmd.Wait()
			b.Fatalf("client process: %q, %v", line, err)
		}
		var after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "heap-B/device")
		b.ReportMetric(float64(after.StackInuse-before.StackInuse)/float64(n), "stack-B/device")
		b.ReportMetric(float64(after.Sys-before.Sys)/float64(n), "sys-B/device")
		b.ReportMetric(float64(runtime.NumGoroutine()-goroutines)/float64(n), "goroutines/device")
		b.ReportMetric(float64(n), "devices")
		b.ReportMetric(float64(took.Nanoseconds())/float64(n), "connect-ns/device")
		if f := os.Getenv("HOOKBUS_BENCH_DEVICE_HEAPPROFILE"); f != "" {
			writeHeapProfile(b, f)
		}
		_ = stdin.Close()
		_ = cmd.Wait()
		// The sessions end once the gateway reads the closed sockets.
		natstest.Eventually(b, time.Minute, func() error {
			if g := runtime.NumGoroutine(); g > goroutines+10 {
				return fmt.Errorf("%d goroutines, %d before the devices", g, goroutines)
			}
			return nil
		})
		b.StartTimer()
	}
}

// BenchmarkDeviceMessage measures a device's round trip: a message frame
// sent, stored on hookbus.device.<id>.in, its ack frame read (p50-ms,
// p99-ms); and a push: published on hookbus.device.<id>.out by a NATS
// client, read by the device (push-p50-ms, push-p99-ms).
func BenchmarkDeviceMessage(b *testing.B) {
	srv, url := benchDeviceGateway(b)
	ctx := b.Context()
	conn, err := dialDevice(ctx, url, "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer conn.CloseNow()
	b.Run("message", func(b *testing.B) {
		frame := []byte(`{"type":"message","data":` + string(benchData) + `}`)
		var lat []time.Duration
		for b.Loop() {
			start := time.Now()
			if err := conn.Write(ctx, websocket.MessageText, frame); err != nil {
				b.Fatal(err)
			}
			_, ack, err := conn.Read(ctx)
			if err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
			var f struct{ Type string }
			if json.Unmarshal(ack, &f) != nil || f.Type != "ack" {
				b.Fatalf("frame %q, want an ack", ack)
			}
		}
		reportLatenciesMs(b, lat, "")
	})
	b.Run("push", func(b *testing.B) {
		nc := natstest.Connect(b, srv)
		var lat []time.Duration
		for b.Loop() {
			start := time.Now()
			if err := nc.Publish("hookbus.device.bench.out", benchData); err != nil {
				b.Fatal(err)
			}
			if _, _, err := conn.Read(ctx); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		reportLatenciesMs(b, lat, "push-")
	})
}

// BenchmarkDeviceCall measures a device's call answered by a plugin: a
// call frame sent, the chain of hookbus.device.call run by the
// dispatcher with one Go plugin (pkg/client) answering a reply, the
// reply frame read (p50-ms, p99-ms).
func BenchmarkDeviceCall(b *testing.B) {
	srv, url := benchDeviceGateway(b)
	dcfg := dispatcher.DefaultConfig()
	dcfg.ConsumerCheck = 200 * time.Millisecond
	runChainServices(b, srv, dcfg)
	c, err := client.New(natstest.Connect(b, srv))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- c.Serve(ctx, client.Plugin{Spec: events.PluginSpec{Name: "bench-reply", Event: events.EventTypeDeviceCall, Priority: 10},
			Chain: func(_ context.Context, s *client.Step) (client.StepResult, error) {
				return client.Continue(map[string]json.RawMessage{"reply": s.Event.Data()}), nil
			}})
	}()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			b.Errorf("serve: %v", err)
		}
	}()
	conn, err := dialDevice(b.Context(), url, "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer conn.CloseNow()
	frame := []byte(`{"type":"call","ref":"r","data":` + string(benchData) + `}`)
	call := func() (string, error) {
		if err := conn.Write(b.Context(), websocket.MessageText, frame); err != nil {
			return "", err
		}
		_, reply, err := conn.Read(b.Context())
		return string(reply), err
	}
	// The plugin is in the chain once a call is answered with a reply.
	deadline := time.Now().Add(30 * time.Second)
	for {
		reply, err := call()
		if err != nil {
			b.Fatal(err)
		}
		if strings.Contains(reply, `"data"`) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("no plugin in the chain after 30s: %s", reply)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var lat []time.Duration
	for b.Loop() {
		start := time.Now()
		reply, err := call()
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
		if !strings.Contains(reply, `"data"`) {
			b.Fatalf("reply %s, want the plugin's", reply)
		}
	}
	reportLatenciesMs(b, lat, "")
}

// reportLatenciesMs reports p50 and p99 of d in milliseconds as
// <prefix>p50-ms and <prefix>p99-ms.
func reportLatenciesMs(b *testing.B, d []time.Duration, prefix string) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Microseconds())/1e3, prefix+"p50-ms")
	b.ReportMetric(float64(d[len(d)*99/100].Microseconds())/1e3, prefix+"p99-ms")
}

// writeHeapProfile writes the heap profile to file f.
func writeHeapProfile(b *testing.B, f string) {
	out, err := os.Create(f)
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	if err := pprof.Lookup("heap").WriteTo(out, 0); err != nil {
		b.Fatal(err)
	}
}
