// Package natstest starts real NATS servers in the test process: one node
// with JetStream (RunServer) or a three-node JetStream cluster (RunCluster),
// each on free loopback ports with its own temporary store.
package natstest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/hookbus/hookbus/internal/topology"
)

// RunServer starts a single JetStream server on a free port with its store
// in t.TempDir, and shuts it down when the test ends.
func RunServer(t testing.TB) *server.Server {
	t.Helper()
	return RunServerWithStore(t, t.TempDir())
}

// RunServerWithStore is RunServer with a chosen store directory, so a test
// can stop a server and start another on the same files.
func RunServerWithStore(t testing.TB, storeDir string) *server.Server {
	t.Helper()
	return start(t, &server.Options{
		ServerName: "test",
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   storeDir,
		NoSigs:     true,
		NoLog:      true,
		MaxPayload: 2 << 20,
	})
}

// RunCluster starts n JetStream servers routed into one cluster and waits
// until JetStream has a meta leader. Servers shut down when the test ends.
// The cluster ports are picked free and then bound by the servers, so
// another process may take one in between: a cluster that does not come up
// is started again on other ports, up to three times.
func RunCluster(t testing.TB, n int) []*server.Server {
	t.Helper()
	var servers []*server.Server
	for attempt := 1; ; attempt++ {
		var err error
		if servers, err = startCluster(t, n); err == nil {
			break
		}
		if attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("cluster attempt %d: %v; trying other ports", attempt, err)
	}
	nc := Connect(t, servers[0])
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	Eventually(t, 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err
	})
	return servers
}

func startCluster(t testing.TB, n int) ([]*server.Server, error) {
	ports := make([]int, n)
	routes := make([]*url.URL, n)
	for i := range ports {
		ports[i] = freePort(t)
		routes[i] = &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", ports[i])}
	}
	servers := make([]*server.Server, 0, n)
	for i := range n {
		opts := &server.Options{
			ServerName: fmt.Sprintf("node-%d", i),
			Host:       "127.0.0.1",
			Port:       server.RANDOM_PORT,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoSigs:     true,
			NoLog:      true,
			MaxPayload: 2 << 20,
			Routes:     routes,
		}
		opts.Cluster.Name = "test-cluster"
		opts.Cluster.Host = "127.0.0.1"
		opts.Cluster.Port = ports[i]
		s, err := tryStart(t, opts)
		if err != nil {
			for _, s := range servers {
				s.Shutdown()
				s.WaitForShutdown()
			}
			return nil, err
		}
		servers = append(servers, s)
	}
	return servers, nil
}

func start(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	s, err := tryStart(t, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tryStart starts a server and shuts it down when the test ends.
func tryStart(t testing.TB, opts *server.Options) (*server.Server, error) {
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(20 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("nats server %s not ready", opts.ServerName)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s, nil
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Connect opens a client connection to s, closed when the test ends.
func Connect(t testing.TB, s *server.Server, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL(), opts...)
	if err != nil {
		t.Fatalf("connect %s: %v", s.ClientURL(), err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// JetStream returns a JetStream context on a new connection to s.
func JetStream(t testing.TB, s *server.Server) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// Eventually polls f every 20 ms until it returns nil, failing the test with
// f's last error once timeout has passed.
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true after %s: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// RunTopology starts a single JetStream server with every Hookbus stream
// and bucket (topology.DefaultConfig) and returns it with a JetStream
// context on a new connection.
func RunTopology(t testing.TB) (*server.Server, jetstream.JetStream) {
	t.Helper()
	s := RunServer(t)
	js := JetStream(t, s)
	if _, err := topology.Ensure(t.Context(), js, topology.DefaultConfig()); err != nil {
		t.Fatalf("topology: %v", err)
	}
	return s, js
}

// Service is the shape of a Hookbus service.
type Service interface {
	Run(ctx context.Context) error
	Ready(ctx context.Context) error
}

// RunService runs svc until the test ends, waits until it is ready, and
// returns a function that stops it early and waits for Run to return
// (failing the test if Run returned an error).
func RunService(t testing.TB, svc Service) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	Eventually(t, 10*time.Second, func() error {
		select {
		case err := <-done:
			done <- err
			return fmt.Errorf("service exited before it was ready: %v", err)
		default:
		}
		return svc.Ready(ctx)
	})
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("service Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// StartTopology is RunTopology for code without a testing.TB (runnable
// examples): it starts a server with every Hookbus stream and bucket in a
// temporary directory and returns its URL and a function that stops it and
// removes the directory.
func StartTopology() (url string, stop func(), err error) {
	dir, err := os.MkdirTemp("", "hookbus-natstest")
	if err != nil {
		return "", nil, err
	}
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true, MaxPayload: 2 << 20,
	})
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	go srv.Start()
	stop = func() {
		srv.Shutdown()
		srv.WaitForShutdown()
		os.RemoveAll(dir)
	}
	if !srv.ReadyForConnections(10 * time.Second) {
		stop()
		return "", nil, errors.New("nats server not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		stop()
		return "", nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err == nil {
		_, err = topology.Ensure(context.Background(), js, topology.DefaultConfig())
	}
	if err != nil {
		stop()
		return "", nil, err
	}
	return srv.ClientURL(), stop, nil
}

// EndpointErrors returns how many errors micro's stats count for endpoint
// of service (the first instance answering $SRV.STATS.<service>).
func EndpointErrors(t testing.TB, nc *nats.Conn, service, endpoint string) int {
	t.Helper()
	m, err := nc.Request("$SRV.STATS."+service, nil, 5*time.Second)
	if err != nil {
		t.Fatalf("stats of %s: %v", service, err)
	}
	var stats micro.Stats
	if err := json.Unmarshal(m.Data, &stats); err != nil {
		t.Fatalf("stats of %s: %v", service, err)
	}
	for _, ep := range stats.Endpoints {
		if ep.Name == endpoint {
			return ep.NumErrors
		}
	}
	t.Fatalf("stats of %s: no endpoint %s in %s", service, endpoint, m.Data)
	return 0
}
