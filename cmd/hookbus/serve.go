package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/hookbus/hookbus/internal/durable"
	"github.com/hookbus/hookbus/internal/natsconn"
	"github.com/hookbus/hookbus/internal/natsembed"
	"github.com/hookbus/hookbus/internal/ops"
	"github.com/hookbus/hookbus/internal/topology"
)

// service is the shape of every services/* package: Run until ctx ends,
// Ready once it can do its work.
type service interface {
	Run(ctx context.Context) error
	Ready(ctx context.Context) error
}

// deps is what a service gets from `hookbus serve`.
type deps struct {
	cfg Config
	nc  *nats.Conn
	js  jetstream.JetStream
	log *slog.Logger
	reg prometheus.Registerer
}

// serviceFactories maps a service name to its constructor. Services are
// added here as they land; `hookbus serve` with no names runs them all.
var serviceFactories = map[string]func(deps) (service, error){
	"dispatcher":  newDispatcherService,
	"gateway":     newGatewayService,
	"registry":    newRegistryService,
	"persistence": newPersistenceService,
}

func newServeCmd() *cobra.Command {
	cfg, envErr := loadConfig()
	cmd := &cobra.Command{
		Use:   "serve [service...]",
		Short: "Run Hookbus: an embedded NATS server (unless --nats-url is set), the topology and the services",
		Long: `Run Hookbus.

Without --nats-url (HOOKBUS_NATS_URL) it starts an embedded NATS server with
JetStream on --nats-listen (127.0.0.1:4222), storing its files in --data-dir
(./data), so other processes and languages can connect to it. With
--nats-url it runs against that server instead.

The embedded server requires no authentication while its listeners are on
loopback. Off loopback (--nats-listen or --nats-websocket on 0.0.0.0, ::,
a LAN address or a host name) it requires a user: HOOKBUS_NATS_USER and
HOOKBUS_NATS_PASSWORD when set (set, they are required on loopback too),
otherwise user hookbus with a password generated into
<data-dir>/nats.password on first start (other hookbus commands on this
machine read it there). That one user may do everything. The WebSocket
listener refuses browsers from origins other than its own and those in
--nats-websocket-origins.

It then ensures every stream and bucket (--topology ensure), only creates
the missing ones (--topology create: the registry in Kubernetes, whose NATS
user may not update them) or only checks them (--topology check), serves /livez, /readyz and /metrics on --ops-addr
(127.0.0.1:8090), and runs the named services, or all of them. The gateway
takes CloudEvents over HTTP (POST /events) and runs chains (POST
/calls/<type>) on --gateway-addr (127.0.0.1:8080), each request with a
bearer token of "hookbus gateway token create"; on a loopback address it
also takes requests without one (--gateway-anonymous false refuses them),
and says so in its log.
Available services: ` + availableServices() + `.

SIGINT or SIGTERM stops it cleanly: services stop, the NATS connection
drains, then the embedded server shuts down.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if envErr != nil {
				return usageError{envErr}
			}
			if err := cfg.Validate(); err != nil {
				return usageError{err}
			}
			for _, name := range args {
				if _, ok := serviceFactories[name]; !ok {
					return usageError{fmt.Errorf("unknown service %q (available: %s)", name, availableServices())}
				}
			}
			if len(args) == 0 {
				args = slices.Sorted(maps.Keys(serviceFactories))
			}
			return serve(cmd.Context(), cfg, args)
		},
	}
	cfg.bindFlags(cmd.Flags(), "nats-url", "nats-creds", "nats-user", "data-dir", "nats-listen", "nats-websocket", "nats-websocket-origins",
		"nats-monitor", "nats-sync-always", "ops-addr", "gateway-addr", "gateway-anonymous", "gateway-rate", "gateway-max-headers", "gateway-max-inflight-bytes", "gateway-cors-origins", "gateway-call-timeout", "gateway-tls-cert", "gateway-tls-key", "log-level", "log-format", "topology", "stream-replicas",
		"events-max-age", "events-max-bytes", "dlq-max-age", "duplicate-window", "max-event-size", "webhook-allow", "hook-disable-after",
		"hook-exec-dir", "hook-exec-max")
	return cmd
}

func availableServices() string {
	if len(serviceFactories) == 0 {
		return "none yet in this version"
	}
	return strings.Join(slices.Sorted(maps.Keys(serviceFactories)), ", ")
}

// serve runs until ctx ends (a signal) or a part fails, then shuts down in
// order: services, ops endpoint, NATS connection (drained), embedded server.
func serve(ctx context.Context, cfg Config, names []string) (err error) {
	base := cfg.logger() // services add their own "service" key
	log := base.With("service", "serve")
	log.Debug("configuration", "config", cfg.String())

	ncCfg := cfg.natsConn("hookbus-serve")
	if cfg.NATSURL == "" {
		srv, err := natsembed.New(cfg.embedded(), log)
		if err != nil {
			return err
		}
		if err := srv.Start(ctx); err != nil {
			return err
		}
		defer func() {
			srv.Shutdown()
			log.Info("embedded nats stopped")
		}()
		// This process's services use the server's one identity (none
		// when it requires none), at the port it really listens on.
		ncCfg.URL = srv.ClientURL()
		ncCfg.User, ncCfg.Password = srv.Credentials()
		cfg.NATSUser, cfg.NATSPassword = ncCfg.User, ncCfg.Password
	}

	nc, err := natsconn.Connect(ctx, ncCfg, log)
	if err != nil {
		return err
	}
	defer drain(nc, log)
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}

	reg := prometheus.NewRegistry()
	if err := reg.Register(natsconn.Collector(nc)); err != nil {
		return err
	}
	opsSrv, err := ops.New(cfg.ops(), reg, log)
	if err != nil {
		return err
	}
	opsSrv.AddCheck("nats", natsconn.ReadyCheck(nc, js))
	var topologyReady atomic.Bool
	opsSrv.AddCheck("topology", func(context.Context) error {
		if !topologyReady.Load() {
			return errors.New("streams and buckets not in place yet")
		}
		return nil
	})

	d := deps{cfg: cfg, nc: nc, js: js, log: base, reg: reg}
	svcs := make(map[string]service, len(names))
	for _, name := range names {
		svc, err := serviceFactories[name](d)
		if err != nil {
			return fmt.Errorf("service %s: %w", name, err)
		}
		svcs[name] = svc
		opsSrv.AddCheck(name, svc.Ready)
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return opsSrv.Run(gctx) })
	g.Go(func() error {
		// A NATS node restarting, or JetStream electing a leader, is
		// waited out (not ready meanwhile), not a reason to exit.
		err := durable.Start(gctx, log, "topology", func(ctx context.Context) error { return prepareTopology(ctx, js, cfg, log) })
		if err != nil {
			return err
		}
		topologyReady.Store(true)
		for name, svc := range svcs {
			g.Go(func() error {
				if err := svc.Run(gctx); err != nil && !errors.Is(err, context.Canceled) {
					return fmt.Errorf("service %s: %w", name, err)
				}
				return nil
			})
		}
		log.Info("hookbus serving", "nats_url", nc.ConnectedUrlRedacted(), "ops_addr", cfg.OpsAddr, "services", strings.Join(names, ","))
		return nil
	})
	err = g.Wait()
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		err = nil
	}
	log.Info("hookbus stopping", "err", err)
	return err
}

func prepareTopology(ctx context.Context, js jetstream.JetStream, cfg Config, log *slog.Logger) error {
	results, err := applyTopology(ctx, js, cfg)
	for _, r := range results {
		switch r.Action {
		case topology.Created:
			log.Info("topology created", "resource", r.Resource)
		case topology.Updated:
			log.Info("topology updated", "resource", r.Resource, "changes", fmt.Sprint(r.Changed))
		}
	}
	return err
}

// applyTopology does what cfg.Topology says: check, create (the missing
// streams and buckets) or ensure (create and update). Ensure and Create
// validate the settings themselves.
func applyTopology(ctx context.Context, js jetstream.JetStream, cfg Config) ([]topology.Result, error) {
	if cfg.Topology == "check" {
		if err := topology.Check(ctx, js, cfg.topology()); err != nil {
			return nil, fmt.Errorf("topology check: %w", err)
		}
		return nil, nil
	}
	apply := topology.Ensure
	if cfg.Topology == "create" {
		apply = topology.Create
	}
	results, err := apply(ctx, js, cfg.topology())
	if errors.Is(err, topology.ErrDrift) && cfg.Topology == "create" {
		return results, fmt.Errorf("topology: %w (this service may create streams and buckets, not change them: an operator runs `hookbus topology ensure` with the admin user)", err)
	}
	if err != nil {
		return results, fmt.Errorf("topology: %w", err)
	}
	return results, nil
}

// drain lets in-flight messages finish, then closes nc.
func drain(nc *nats.Conn, log *slog.Logger) {
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		log.Warn("nats drain", "err", err)
		nc.Close()
		return
	}
	<-closed
}
