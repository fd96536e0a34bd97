package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookbus/hookbus/internal/natsconn"
	"github.com/hookbus/hookbus/internal/natsembed"
	"github.com/hookbus/hookbus/internal/topology"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/dispatcher"
	"github.com/hookbus/hookbus/services/persistence"
	"github.com/hookbus/hookbus/services/registry"
)

// env is the one server every side runs on, with Hookbus's topology and
// services running as `hookbus serve` runs them.
type env struct {
	srv      *natsembed.Server
	storeDir string
	tmpfs    bool
	url      string
	topo     topology.Config
	svcConn  *nats.Conn // the services' one connection, as in serve
	js       jetstream.JetStream
	stopSvcs context.CancelFunc
	svcDone  chan error
}

// storeDir picks the JetStream store directory: a new directory under
// /dev/shm (tmpfs: fsync costs no disk time, so the figures measure the
// software) or, without /dev/shm, under os.TempDir.
func storeDir(flagDir string) (dir string, tmpfs bool, err error) {
	parent := flagDir
	if parent == "" {
		parent = os.TempDir()
		if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
			parent, tmpfs = "/dev/shm", true
		}
	}
	dir, err = os.MkdirTemp(parent, "hookbus-peers-")
	return dir, tmpfs, err
}

// startEnv starts the embedded server configured as `hookbus serve`
// configures it (natsembed.DefaultConfig: JetStream file store, fsync on
// every write), on a free loopback port, ensures the topology, and runs
// the registry, the dispatcher and persistence on one connection.
func startEnv(ctx context.Context, flagDir string) (*env, error) {
	dir, tmpfs, err := storeDir(flagDir)
	if err != nil {
		return nil, err
	}
	e := &env{storeDir: dir, tmpfs: tmpfs, topo: topology.DefaultConfig()}
	cfg := natsembed.DefaultConfig()
	cfg.Addr = "127.0.0.1:-1"
	cfg.StoreDir = dir
	cfg.SyncAlways = true
	e.srv, err = natsembed.New(cfg, nil)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := e.srv.Start(ctx); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	e.url = e.srv.ClientURL()
	ok := false
	defer func() {
		if !ok {
			e.close()
		}
	}()

	ncCfg := natsconn.DefaultConfig()
	ncCfg.URL, ncCfg.Name = e.url, "hookbus-serve"
	if e.svcConn, err = natsconn.Connect(ctx, ncCfg, nil); err != nil {
		return nil, err
	}
	if e.js, err = jetstream.New(e.svcConn); err != nil {
		return nil, err
	}
	if _, err := topology.Ensure(ctx, e.js, e.topo); err != nil {
		return nil, fmt.Errorf("topology: %w", err)
	}
	svcs, err := e.services()
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	e.stopSvcs = cancel
	e.svcDone = make(chan error, len(svcs))
	for name, svc := range svcs {
		go func() {
			err := svc.Run(sctx)
			if err != nil && !errors.Is(err, context.Canceled) {
				err = fmt.Errorf("service %s: %w", name, err)
			} else {
				err = nil
			}
			e.svcDone <- err
		}()
	}
	for name, svc := range svcs {
		if err := eventually(ctx, 30*time.Second, func() error { return svc.Ready(ctx) }); err != nil {
			return nil, fmt.Errorf("service %s not ready: %w", name, err)
		}
	}
	ok = true
	return e, nil
}

// service is the shape of every services/* package.
type service interface {
	Run(ctx context.Context) error
	Ready(ctx context.Context) error
}

// services builds the services `hookbus serve` runs by default, with the
// constructors and settings of cmd/hookbus (default configuration: the
// topology's defaults, a 1 MiB event limit, a generated persistence key).
func (e *env) services() (map[string]service, error) {
	reg := prometheus.NewRegistry()

	rcfg := registry.DefaultConfig()
	rcfg.Topology = e.topo
	reg1, err := registry.New(rcfg, e.svcConn, nil)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}

	dcfg := dispatcher.DefaultConfig()
	dcfg.Topology = e.topo
	dcfg.MaxEventSize = events.DefaultMaxSize
	disp, err := dispatcher.New(dcfg, e.svcConn, nil)
	if err != nil {
		return nil, fmt.Errorf("dispatcher: %w", err)
	}
	if err := reg.Register(disp.Collector()); err != nil {
		return nil, err
	}

	pcfg := persistence.DefaultConfig()
	pcfg.Keys = []persistence.Key{persistence.NewKey()}
	pcfg.Topology = e.topo
	pers, err := persistence.New(pcfg, e.svcConn, nil, reg)
	if err != nil {
		return nil, fmt.Errorf("persistence: %w", err)
	}
	return map[string]service{"registry": reg1, "dispatcher": disp, "persistence": pers}, nil
}

// connect opens a plain client connection to the server.
func (e *env) connect(name string) (*nats.Conn, error) {
	return nats.Connect(e.url, nats.Name(name), nats.MaxReconnects(-1))
}

// close stops the services, the server, and removes the store.
func (e *env) close() {
	if e.stopSvcs != nil {
		e.stopSvcs()
		for range cap(e.svcDone) {
			if err := <-e.svcDone; err != nil {
				fmt.Fprintln(os.Stderr, "peers:", err)
			}
		}
	}
	if e.svcConn != nil {
		e.svcConn.Close()
	}
	if e.srv != nil {
		e.srv.Shutdown()
	}
	if strings.Contains(filepath.Base(e.storeDir), "hookbus-peers-") {
		os.RemoveAll(e.storeDir)
	}
}

// dispatcherIdle waits until the dispatcher has taken every event it
// reads from HOOKBUS_EVENTS, so that what it still has to read does not
// share the cores with the next measurement. The dispatcher reads events
// through its chain consumers (chain-<type>, only for types with running
// chain plugins: none here) and, in versions before them, through one
// consumer of every event (hookbus-dispatcher); both are waited for.
func (e *env) dispatcherIdle(ctx context.Context) error {
	return eventually(ctx, 5*time.Minute, func() error {
		s, err := e.js.Stream(ctx, events.StreamEvents)
		if err != nil {
			return err
		}
		lister := s.ListConsumers(ctx)
		var busy []string
		for info := range lister.Info() {
			if info.Name != events.DispatcherConsumer && !strings.HasPrefix(info.Name, events.ChainConsumerPrefix) {
				continue
			}
			if left := info.NumPending + uint64(info.NumAckPending); left > 0 {
				busy = append(busy, fmt.Sprintf("%s has %d events to go", info.Name, left))
			}
		}
		if err := lister.Err(); err != nil {
			return err
		}
		if len(busy) > 0 {
			return errors.New(strings.Join(busy, "; "))
		}
		return nil
	})
}

// eventsStreamConfig is HOOKBUS_EVENTS's definition under another name and
// subjects: the raw and Watermill sides store their events in streams with
// the same settings (file storage, limits retention, duplicate window,
// size limit, discard new).
func (e *env) eventsStreamConfig(name string, subjects ...string) jetstream.StreamConfig {
	for _, s := range e.topo.Streams() {
		if s.Name == events.StreamEvents {
			s.Name, s.Subjects, s.Description = name, subjects, ""
			return s
		}
	}
	panic("topology defines no " + events.StreamEvents)
}

// consumerConfig is the configuration of a Hookbus notify queue
// (topology.NotifyConsumerConfig: explicit ack, max ack pending, ack wait,
// backoff, max deliver) for a durable consumer of subject, used by the
// raw and Watermill sides.
func consumerConfig(durable, subject string) jetstream.ConsumerConfig {
	cfg, err := topology.NotifyConsumerConfig(events.Plugin{PluginSpec: events.PluginSpec{Name: "peers", Event: "peers.template", Mode: events.ModeNotify}})
	if err != nil {
		panic(err)
	}
	cfg.Durable, cfg.Description = durable, ""
	cfg.FilterSubjects, cfg.FilterSubject = nil, subject
	return cfg
}

// eventually polls f every 20 ms until it returns nil, ctx ends or
// timeout passes.
func eventually(ctx context.Context, timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not true after %s: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
