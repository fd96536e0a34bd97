// Package natsconn opens the NATS connection of a Hookbus process: retrying
// until the server answers, reconnecting for ever, logging connection
// changes, and exposing them as metrics and a readiness check.
package natsconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookbus/hookbus/pkg/events"
)

// Config says where and how to connect.
type Config struct {
	// URL is one or more comma-separated nats:// or tls:// URLs.
	URL string
	// Name identifies the connection in the server's monitoring.
	Name string
	// CredsFile is a NATS credentials file (user JWT and seed); optional.
	CredsFile string
	// User and Password authenticate without a credentials file; optional.
	User     string
	Password string
	// CAFile is a PEM file of the CA(s) that signed the server's
	// certificate; optional. When set, the connection requires TLS and
	// verifies the server against these CAs only (not the system's). The
	// file is read again on every (re)connection, so a renewed CA in a
	// mounted Secret is picked up without a restart.
	CAFile string
	// DrainTimeout bounds Drain on shutdown.
	DrainTimeout time.Duration
}

// DefaultConfig connects to a local server.
func DefaultConfig() Config {
	return Config{URL: nats.DefaultURL, Name: "hookbus", DrainTimeout: 10 * time.Second}
}

// Validate reports an unusable configuration.
func (c Config) Validate() error {
	if c.URL == "" {
		return errors.New("nats url: required")
	}
	if c.CredsFile != "" && c.User != "" {
		return errors.New("nats auth: set a credentials file or a user, not both")
	}
	return nil
}

// String masks the password, so a logged Config leaks no secret.
func (c Config) String() string {
	pw := ""
	if c.Password != "" {
		pw = "***"
	}
	return fmt.Sprintf("{URL:%s Name:%s CredsFile:%s User:%s Password:%s CAFile:%s}", c.URL, c.Name, c.CredsFile, c.User, pw, c.CAFile)
}

// Connect connects, retrying every second until the server answers or ctx
// ends. The connection reconnects for ever afterwards; every change of
// state is logged. A CA file that cannot be read or holds no certificate
// fails at once; a server that does not offer TLS, or whose certificate
// the CA did not sign, is retried like an unreachable one (the CA file in
// a mounted Secret may be renewed meanwhile).
func Connect(ctx context.Context, cfg Config, log *slog.Logger) (*nats.Conn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DrainTimeout(cfg.DrainTimeout),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Error("nats async error", "subject", subject, "err", err)
		}),
	}
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.User != "" {
		// Each user's replies arrive under its own prefix, the only part
		// of _INBOX its permissions let it read (docs/security.md).
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password), nats.CustomInboxPrefix(events.InboxPrefix(cfg.User)))
	}
	if cfg.CAFile != "" {
		// TLS required (nats.RootCAs sets Secure), the server verified
		// against these CAs, TLS 1.2 at least.
		ca := nats.RootCAs(cfg.CAFile)
		if err := ca(&nats.Options{}); err != nil {
			return nil, fmt.Errorf("nats ca: %w", err)
		}
		opts = append(opts, ca)
	}
	for {
		nc, err := nats.Connect(cfg.URL, opts...)
		if err == nil {
			log.Info("nats connected", "url", nc.ConnectedUrlRedacted())
			return nc, nil
		}
		// Authorization failures will not fix themselves: say so now.
		if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) {
			return nil, fmt.Errorf("connect %s: %w", cfg.URL, err)
		}
		log.Warn("nats not reachable, retrying", "url", cfg.URL, "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect %s: %w (last error: %v)", cfg.URL, ctx.Err(), err)
		case <-time.After(time.Second):
		}
	}
}

// ReadyCheck passes while nc is connected and JetStream answers.
func ReadyCheck(nc *nats.Conn, js jetstream.JetStream) func(context.Context) error {
	return func(ctx context.Context) error {
		if st := nc.Status(); st != nats.CONNECTED {
			return fmt.Errorf("nats connection is %s", st)
		}
		if _, err := js.AccountInfo(ctx); err != nil {
			return fmt.Errorf("jetstream: %w", err)
		}
		return nil
	}
}

// Collector exports the connection's state and traffic counters.
func Collector(nc *nats.Conn) prometheus.Collector { return collector{nc} }

type collector struct{ nc *nats.Conn }

var (
	connectedDesc  = prometheus.NewDesc("hookbus_nats_connected", "1 while the NATS connection is connected.", nil, nil)
	reconnectsDesc = prometheus.NewDesc("hookbus_nats_reconnects_total", "Reconnections of the NATS connection.", nil, nil)
	msgsDesc       = prometheus.NewDesc("hookbus_nats_messages_total", "Messages through the NATS connection.", []string{"direction"}, nil)
	bytesDesc      = prometheus.NewDesc("hookbus_nats_bytes_total", "Payload bytes through the NATS connection.", []string{"direction"}, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- connectedDesc
	ch <- reconnectsDesc
	ch <- msgsDesc
	ch <- bytesDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	connected := 0.0
	if c.nc.IsConnected() {
		connected = 1
	}
	st := c.nc.Stats()
	ch <- prometheus.MustNewConstMetric(connectedDesc, prometheus.GaugeValue, connected)
	ch <- prometheus.MustNewConstMetric(reconnectsDesc, prometheus.CounterValue, float64(st.Reconnects))
	ch <- prometheus.MustNewConstMetric(msgsDesc, prometheus.CounterValue, float64(st.InMsgs), "in")
	ch <- prometheus.MustNewConstMetric(msgsDesc, prometheus.CounterValue, float64(st.OutMsgs), "out")
	ch <- prometheus.MustNewConstMetric(bytesDesc, prometheus.CounterValue, float64(st.InBytes), "in")
	ch <- prometheus.MustNewConstMetric(bytesDesc, prometheus.CounterValue, float64(st.OutBytes), "out")
}
