package main

import (
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/spf13/pflag"

	"github.com/hookbus/hookbus/internal/execdir"
	"github.com/hookbus/hookbus/internal/natsconn"
	"github.com/hookbus/hookbus/internal/natsembed"
	"github.com/hookbus/hookbus/internal/ops"
	"github.com/hookbus/hookbus/internal/topology"
)

// envPrefix is the prefix of every environment variable Hookbus reads.
const envPrefix = "HOOKBUS"

// Config is everything the binary reads from the environment
// (HOOKBUS_<name>), each also settable by the flag in its `flag` tag. This
// is the only place that reads the environment. The README's table says
// what `hookbus config` prints, word for word (TestReadmeTableIsConfig).
type Config struct {
	NATSURL      string `envconfig:"NATS_URL" flag:"nats-url" desc:"NATS server URL(s), comma-separated. serve: empty runs an embedded server; other commands: where to connect (nats://127.0.0.1:4222 when empty)"`
	NATSCreds    string `envconfig:"NATS_CREDS" flag:"nats-creds" desc:"NATS credentials file (user JWT and seed)"`
	NATSUser     string `envconfig:"NATS_USER" flag:"nats-user" desc:"NATS user name (with HOOKBUS_NATS_PASSWORD; set both or neither). serve without HOOKBUS_NATS_URL: the one user the embedded server requires, loopback included"`
	NATSPassword string `envconfig:"NATS_PASSWORD" flag:"-" desc:"NATS password; environment only, masked in logs"`
	NATSCA       string `envconfig:"NATS_CA" flag:"nats-ca" desc:"PEM file of the CA(s) that signed the NATS server's certificate: connect over TLS only and verify the server against them (use tls:// URLs)"`

	DataDir              string `envconfig:"DATA_DIR" default:"./data" flag:"data-dir" desc:"embedded server: JetStream store directory, and its generated nats.password (the other commands, without HOOKBUS_NATS_URL, read it there)"`
	NATSListen           string `envconfig:"NATS_LISTEN" default:"127.0.0.1:4222" flag:"nats-listen" desc:"embedded server: client listener host:port; off loopback, NATS auth is on (HOOKBUS_NATS_USER, or user hookbus with a password generated into <data-dir>/nats.password)"`
	NATSWebsocket        string `envconfig:"NATS_WEBSOCKET" flag:"nats-websocket" desc:"embedded server: WebSocket listener host:port (off when empty; no TLS); refuses browsers from other origins; off loopback, NATS auth is on"`
	NATSWebsocketOrigins string `envconfig:"NATS_WEBSOCKET_ORIGINS" flag:"nats-websocket-origins" desc:"embedded server: more origins allowed to open the WebSocket listener besides its own, comma-separated scheme://host[:port] (e.g. https://app.example.com)"`
	NATSMonitor          string `envconfig:"NATS_MONITOR" flag:"nats-monitor" desc:"embedded server: NATS monitoring host:port (off when empty)"`
	NATSSyncAlways       bool   `envconfig:"NATS_SYNC_ALWAYS" default:"true" flag:"nats-sync-always" desc:"embedded server: fsync every JetStream write before acknowledging it"`

	GatewayAddr           string        `envconfig:"GATEWAY_ADDR" default:"127.0.0.1:8080" flag:"gateway-addr" desc:"serve: host:port of the HTTP gateway (POST /events); requests carry a bearer token (hookbus gateway token create)"`
	GatewayAnonymous      string        `envconfig:"GATEWAY_ANONYMOUS" flag:"gateway-anonymous" desc:"serve: true lets requests without a token publish and call every event type (loopback addresses only), false refuses them; empty: allowed when HOOKBUS_GATEWAY_ADDR is loopback"`
	GatewayRate           int           `envconfig:"GATEWAY_RATE" default:"1000" flag:"gateway-rate" desc:"serve: requests per second (and burst) of each gateway token without a rate of its own, and of all anonymous requests together; over it: 429"`
	GatewayMaxHeaders     int           `envconfig:"GATEWAY_MAX_HEADERS" default:"100" flag:"gateway-max-headers" desc:"serve: most header fields of a gateway request; more: 431"`
	GatewayMaxInflight    int64         `envconfig:"GATEWAY_MAX_INFLIGHT_BYTES" default:"268435456" flag:"gateway-max-inflight-bytes" desc:"serve: bytes of requests the gateway holds at once (each its Content-Length); a request that does not fit: 503, send again"`
	GatewayCORSOrigins    string        `envconfig:"GATEWAY_CORS_ORIGINS" flag:"gateway-cors-origins" desc:"serve: origins browsers may call the gateway from, comma-separated scheme://host[:port]; empty: CORS off"`
	GatewayCallTimeout    time.Duration `envconfig:"GATEWAY_CALL_TIMEOUT" default:"30s" flag:"gateway-call-timeout" desc:"serve: how long POST /calls/<type> waits for the chain when the request names no wait (Prefer: wait=N or ?timeout=, at most 5m)"`
	GatewayTLSCert        string        `envconfig:"GATEWAY_TLS_CERT" flag:"gateway-tls-cert" desc:"serve: PEM certificate file (chain first) of the HTTP gateway, with HOOKBUS_GATEWAY_TLS_KEY (set both or neither): it then serves HTTPS only, TLS 1.2 at least; read at start"`
	GatewayTLSKey         string        `envconfig:"GATEWAY_TLS_KEY" flag:"gateway-tls-key" desc:"serve: PEM private key file of the HTTP gateway's certificate"`
	DeviceTokenSecret     secret        `envconfig:"DEVICE_TOKEN_SECRET" flag:"-" desc:"serve: secret (at least 32 bytes) the device token key is derived from, with HOOKBUS_DEVICE_TOKEN_SALT; unset: device sessions (/devices/websocket) are off; environment only, masked in logs"`
	DeviceTokenSecretFile string        `envconfig:"DEVICE_TOKEN_SECRET_FILE" flag:"-" desc:"serve: file holding the device token secret (for a mounted secret), instead of HOOKBUS_DEVICE_TOKEN_SECRET"`
	DeviceTokenSalt       secret        `envconfig:"DEVICE_TOKEN_SALT" flag:"-" desc:"serve: salt of the device token key; environment only, masked in logs"`
	DeviceTokenSaltFile   string        `envconfig:"DEVICE_TOKEN_SALT_FILE" flag:"-" desc:"serve: file holding the device token salt, instead of HOOKBUS_DEVICE_TOKEN_SALT"`
	DeviceTokenRefresh    time.Duration `envconfig:"DEVICE_TOKEN_REFRESH" default:"3h" flag:"device-token-refresh" desc:"serve: how often a connected device gets a fresh token"`
	DeviceTokenExpiry     time.Duration `envconfig:"DEVICE_TOKEN_EXPIRY" default:"672h" flag:"device-token-expiry" desc:"serve: how long a device token is good for; past it the device logs in again with credentials"`
	DeviceCallTimeout     time.Duration `envconfig:"DEVICE_CALL_TIMEOUT" default:"5s" flag:"device-call-timeout" desc:"serve: how long a device's call frame waits for the chain of hookbus.device.call before its reply says call_timeout"`
	Replica               string        `envconfig:"REPLICA" flag:"replica" desc:"serve: this gateway's name in device presence and in the source of device lifecycle events (/gateway/<replica>); empty: the host name"`

	OpsAddr   string `envconfig:"OPS_ADDR" default:"127.0.0.1:8090" flag:"ops-addr" desc:"host:port of /livez, /readyz and /metrics"`
	LogLevel  string `envconfig:"LOG_LEVEL" default:"info" flag:"log-level" desc:"debug, info, warn or error"`
	LogFormat string `envconfig:"LOG_FORMAT" default:"text" flag:"log-format" desc:"text or json"`

	Topology        string        `envconfig:"TOPOLOGY" default:"ensure" flag:"topology" desc:"serve: ensure (create or update streams and buckets), create (create the missing ones, never update: the registry in Kubernetes, whose NATS user may not update) or check (only verify)"`
	StreamReplicas  int           `envconfig:"STREAM_REPLICAS" default:"1" flag:"stream-replicas" desc:"replicas of every stream and bucket (3 in production)"`
	EventsMaxAge    time.Duration `envconfig:"EVENTS_MAX_AGE" default:"168h" flag:"events-max-age" desc:"how long published events are kept"`
	EventsMaxBytes  int64         `envconfig:"EVENTS_MAX_BYTES" default:"-1" flag:"events-max-bytes" desc:"size cap of HOOKBUS_EVENTS; -1 leaves it to the server; when full, publishes are refused"`
	DLQMaxAge       time.Duration `envconfig:"DLQ_MAX_AGE" default:"720h" flag:"dlq-max-age" desc:"how long dead letters are kept"`
	DuplicateWindow time.Duration `envconfig:"DUPLICATE_WINDOW" default:"10m" flag:"duplicate-window" desc:"how long a re-published event (same source and id) is stored once"`
	MaxEventSize    int           `envconfig:"MAX_EVENT_SIZE" default:"1048576" flag:"max-event-size" desc:"largest encoded event in bytes (data plus headers)"`

	WebhookAllow     string        `envconfig:"WEBHOOK_ALLOW" flag:"webhook-allow" desc:"dispatcher: networks webhooks may reach although internal (loopback, private, link-local, metadata: refused by default), comma-separated CIDRs such as 10.20.0.0/16"`
	HookDisableAfter time.Duration `envconfig:"HOOK_DISABLE_AFTER" default:"24h" flag:"hook-disable-after" desc:"dispatcher: how long a hook may fail with no success before it is disabled (hookbus hook enable resumes it; at least 1s)"`
	HookExecDir      string        `envconfig:"HOOK_EXEC_DIR" flag:"hook-exec-dir" desc:"dispatcher and registry: absolute directory whose programs exec hooks may run (no shell, an environment of their own); empty: exec hooks off, refused at create"`
	HookExecMax      int           `envconfig:"HOOK_EXEC_MAX" default:"4" flag:"hook-exec-max" desc:"dispatcher: exec hook programs running at once in one dispatcher"`

	PersistenceKey     secret `envconfig:"PERSISTENCE_KEY" flag:"-" desc:"persistence: encryption keys, base64 of 32 bytes each, newest first, comma-separated; environment only, masked in logs"`
	PersistenceKeyFile string `envconfig:"PERSISTENCE_KEY_FILE" flag:"-" desc:"persistence: file with the keys, one per line, newest first (for a mounted secret). Neither set: the all-in-one generates <data-dir>/persistence.key; with HOOKBUS_NATS_URL, serve refuses to start"`
}

// loadConfig reads the environment; flags bound by bindFlags override it.
func loadConfig() (Config, error) {
	var c Config
	if err := envconfig.Process(envPrefix, &c); err != nil {
		return c, fmt.Errorf("environment: %w", err)
	}
	return c, nil
}

// String masks secrets, so a logged Config leaks none.
func (c Config) String() string {
	masked := c
	if masked.NATSPassword != "" {
		masked.NATSPassword = "***"
	}
	type plain Config // drops this String method, avoiding recursion
	return fmt.Sprintf("%+v", plain(masked))
}

// Validate checks what flags and environment cannot check by type.
func (c Config) Validate() error {
	if _, err := parseLevel(c.LogLevel); err != nil {
		return err
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("log format %q: want text or json", c.LogFormat)
	}
	switch c.Topology {
	case "ensure", "create", "check":
	default:
		return fmt.Errorf("topology %q: want ensure, create or check", c.Topology)
	}
	if c.MaxEventSize <= 0 {
		return fmt.Errorf("max event size %d: must be positive", c.MaxEventSize)
	}
	if err := c.validateEmbeddedAuth(); err != nil {
		return err
	}
	if _, err := c.webhookAllow(); err != nil {
		return err
	}
	if err := execdir.ValidateDir(c.HookExecDir); err != nil {
		return fmt.Errorf("HOOKBUS_HOOK_EXEC_DIR: %w", err)
	}
	if c.HookExecMax < 1 {
		return fmt.Errorf("HOOKBUS_HOOK_EXEC_MAX %d: at least 1", c.HookExecMax)
	}
	g, err := c.gateway()
	if err != nil {
		return err
	}
	if err := g.Validate(); err != nil {
		return err
	}
	return c.topology().Validate()
}

func (c Config) natsConn(name string) natsconn.Config {
	nc := natsconn.DefaultConfig()
	nc.URL, nc.Name, nc.CredsFile, nc.User, nc.Password = c.NATSURL, name, c.NATSCreds, c.NATSUser, c.NATSPassword
	nc.CAFile = c.NATSCA
	if nc.URL == "" {
		nc.URL = "nats://" + c.NATSListen
		// The all-in-one's generated password, only for the local default:
		// never sent to a server HOOKBUS_NATS_URL names.
		if nc.User == "" && nc.CredsFile == "" {
			if pw, err := natsembed.ReadPasswordFile(c.natsPasswordFile()); err == nil {
				nc.User, nc.Password = natsembed.GeneratedUser, pw
			}
		}
	}
	return nc
}

func (c Config) embedded() natsembed.Config {
	e := natsembed.DefaultConfig()
	e.Addr, e.StoreDir, e.WebsocketAddr, e.MonitorAddr, e.SyncAlways = c.NATSListen, c.DataDir, c.NATSWebsocket, c.NATSMonitor, c.NATSSyncAlways
	e.User, e.Password, e.PasswordFile, e.WebsocketOrigins = c.NATSUser, c.NATSPassword, c.natsPasswordFile(), c.websocketOrigins()
	// Room for the largest event plus its headers.
	e.MaxPayload = max(e.MaxPayload, int32(c.MaxEventSize)+64<<10)
	return e
}

func (c Config) topology() topology.Config {
	t := topology.DefaultConfig()
	t.Replicas, t.EventsMaxAge, t.EventsMaxBytes, t.DLQMaxAge, t.DuplicateWindow = c.StreamReplicas, c.EventsMaxAge, c.EventsMaxBytes, c.DLQMaxAge, c.DuplicateWindow
	t.MaxEventSize = int32(c.MaxEventSize)
	t.MaxMsgSize = max(t.MaxMsgSize, int32(c.MaxEventSize)+64<<10)
	return t
}

func (c Config) ops() ops.Config {
	o := ops.DefaultConfig()
	o.Addr = c.OpsAddr
	return o
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("log level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

func (c Config) logger() *slog.Logger {
	level, _ := parseLevel(c.LogLevel)
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// configField describes one Config field: its variable, flag, default and
// meaning, read from the struct tags.
type configField struct {
	Env, Flag, Default, Desc string
	index                    int
}

// configFields lists every Config field in declaration order.
func configFields() []configField {
	t := reflect.TypeFor[Config]()
	out := make([]configField, 0, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		out = append(out, configField{
			Env:     envPrefix + "_" + f.Tag.Get("envconfig"),
			Flag:    f.Tag.Get("flag"),
			Default: f.Tag.Get("default"),
			Desc:    f.Tag.Get("desc"),
			index:   i,
		})
	}
	return out
}

// bindFlags registers on fs the flags of the named Config fields (by their
// `flag` tag), with the current values (defaults overridden by the
// environment) as defaults, so a flag on the command line wins over the
// environment, which wins over the built-in default. A command that takes
// --nats-url also takes --nats-ca: the CA belongs with the URL it verifies.
func (c *Config) bindFlags(fs *pflag.FlagSet, flags ...string) {
	if slices.Contains(flags, "nats-url") && !slices.Contains(flags, "nats-ca") {
		flags = append(slices.Clone(flags), "nats-ca")
	}
	// ... and --data-dir, where the all-in-one's generated NATS password is
	// read from when --nats-url is empty (natsConn).
	if slices.Contains(flags, "nats-url") && !slices.Contains(flags, "data-dir") {
		flags = append(slices.Clone(flags), "data-dir")
	}
	byFlag := map[string]configField{}
	for _, f := range configFields() {
		byFlag[f.Flag] = f
	}
	v := reflect.ValueOf(c).Elem()
	for _, name := range flags {
		f, ok := byFlag[name]
		if !ok || name == "-" {
			panic("no config field has flag " + name)
		}
		usage := f.Desc + " (env " + f.Env + ")"
		switch p := v.Field(f.index).Addr().Interface().(type) {
		case *string:
			fs.StringVar(p, name, *p, usage)
		case *bool:
			fs.BoolVar(p, name, *p, usage)
		case *int:
			fs.IntVar(p, name, *p, usage)
		case *int64:
			fs.Int64Var(p, name, *p, usage)
		case *time.Duration:
			fs.DurationVar(p, name, *p, usage)
		default:
			panic(fmt.Sprintf("config field %s: unsupported type %T", f.Env, p))
		}
	}
}
