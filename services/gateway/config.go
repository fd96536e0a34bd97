package gateway

import (
	"fmt"
	"net"
	"os"
	"time"

	"github.com/hookbus/hookbus/internal/natsembed"
	"github.com/hookbus/hookbus/pkg/events"
)

// Config configures the gateway.
type Config struct {
	// Addr is the host:port the HTTP server listens on; port 0 picks a
	// free one.
	Addr string
	// MaxEventSize is the event size limit of the wire contract
	// (events.Codec.MaxSize): an event larger than this, encoded for
	// NATS, is refused with 413, as is a body that cannot hold an event
	// within it.
	MaxEventSize int
	// Window is how many events the gateway has in flight to JetStream at
	// most, all requests together; a request waits for room.
	Window int
	// AckTimeout is how long the gateway waits for JetStream's
	// acknowledgement of one send before sending the event again (with
	// the same Nats-Msg-Id).
	AckTimeout time.Duration
	// ReadHeaderTimeout bounds the reading of a request's headers (slow
	// clients); ReadTimeout the whole request, body included.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	// IdleTimeout closes keep-alive connections idle that long.
	IdleTimeout time.Duration
	// MaxHeaderBytes limits the size of a request's headers.
	MaxHeaderBytes int
	// CallTimeout is how long a call waits for its chain when the request
	// names no wait (Prefer: wait=N or ?timeout=); MaxCallTimeout caps
	// what a request may name.
	CallTimeout    time.Duration
	MaxCallTimeout time.Duration
	// TLSCertFile and TLSKeyFile are PEM files of the certificate (chain
	// first) and its key: set both to serve HTTPS (TLS 1.2 at least),
	// neither to serve plain HTTP. New loads them.
	TLSCertFile, TLSKeyFile string
	// ShutdownTimeout bounds the graceful shutdown: requests in flight
	// are answered within it, or Run returns an error.
	ShutdownTimeout time.Duration
	// Anonymous allows requests without a bearer token, each allowed
	// everything; nil allows them when Addr is a loopback address. True
	// with an Addr off loopback is refused.
	Anonymous *bool
	// Rate is the requests per second (and burst) of a token whose own
	// rate is 0, and of all anonymous requests together.
	Rate int
	// MaxHeaders is the most header fields a request may have (431
	// above).
	MaxHeaders int
	// MaxInflightBytes bounds the bytes of the requests the gateway holds
	// at once (their Content-Length; the largest body a route reads when
	// unknown): a request that does not fit is refused with 503. At least
	// one largest request must fit.
	MaxInflightBytes int64
	// CORSOrigins are the origins (scheme://host[:port]) browsers may
	// call the gateway from; none: CORS is off.
	CORSOrigins []string
	// DeviceTokens seals and opens device tokens; nil turns device
	// sessions (GET /devices/websocket) off.
	DeviceTokens *DeviceSealer
	// TokenRefresh is how often a connected device gets a fresh token;
	// TokenExpiry how long a token is good for.
	TokenRefresh, TokenExpiry time.Duration
	// DeviceIdleTimeout closes a device socket that has not answered a
	// ping within it; the gateway pings every third of it.
	DeviceIdleTimeout time.Duration
	// DeviceRate is the data frames per second (and burst) a device's
	// session reads; faster, the gateway reads its frames later (TCP
	// backpressure), never drops one.
	DeviceRate int
	// DeviceCallTimeout is how long a device's call frame waits for the
	// chain of hookbus.device.call.
	DeviceCallTimeout time.Duration
	// Replica names this gateway in device presence and in the source
	// of device lifecycle events (/gateway/<replica>): HOOKBUS_REPLICA,
	// by default the host name.
	Replica string
}

// DefaultConfig returns the defaults: 127.0.0.1:8080, the default event
// size limit, a window of 256 events, 5 s per ack, 5 s for headers, 30 s
// per request, 64 KiB and 100 fields of headers, calls waiting 30 s (at
// most 5 min), 10 s to shut down, 1000 requests per second per token,
// 256 MiB of requests held at once, anonymous requests on loopback only,
// CORS off, device tokens refreshed every 3 h and good for 4 weeks, device
// sockets closed after 60 s without a pong, 100 frames per second per
// device, device calls waiting 5 s (device sessions stay off until
// DeviceTokens is set).
func DefaultConfig() Config {
	return Config{
		Addr:              "127.0.0.1:8080",
		MaxEventSize:      events.DefaultMaxSize,
		Window:            256,
		AckTimeout:        5 * time.Second,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		CallTimeout:       30 * time.Second,
		MaxCallTimeout:    5 * time.Minute,
		ShutdownTimeout:   10 * time.Second,
		Rate:              1000,
		MaxHeaders:        100,
		MaxInflightBytes:  256 << 20,
		TokenRefresh:      DefaultTokenRefresh,
		TokenExpiry:       DefaultTokenExpiry,
		DeviceIdleTimeout: 60 * time.Second,
		DeviceRate:        100,
		DeviceCallTimeout: 5 * time.Second,
		Replica:           DefaultReplica(),
	}
}

// Validate reports the first unusable setting.
func (c Config) Validate() error {
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return fmt.Errorf("gateway addr %q: %w", c.Addr, err)
	}
	if c.Anonymous != nil && *c.Anonymous && !loopback(host) {
		// Anyone who reaches the address could publish any event type.
		return fmt.Errorf("gateway anonymous use: allowed on a loopback address only, and addr %q is not one", c.Addr)
	}
	for _, o := range c.CORSOrigins {
		if err := natsembed.ValidateOrigin(o); err != nil {
			return fmt.Errorf("gateway CORS origin %q: %w", o, err)
		}
	}
	switch {
	case c.Replica == "":
		return fmt.Errorf("gateway replica name: empty")
	case c.MaxEventSize <= 0:
		return fmt.Errorf("gateway max event size %d: must be positive", c.MaxEventSize)
	case c.Window <= 0:
		return fmt.Errorf("gateway window %d: must be positive", c.Window)
	case c.MaxHeaderBytes <= 0:
		return fmt.Errorf("gateway max header bytes %d: must be positive", c.MaxHeaderBytes)
	case c.MaxHeaders <= 0:
		return fmt.Errorf("gateway max headers %d: must be positive", c.MaxHeaders)
	case c.MaxInflightBytes < maxBodyLimit(c.MaxEventSize):
		return fmt.Errorf("gateway max in-flight bytes %d: less than one largest request (%d bytes, from the event size limit)", c.MaxInflightBytes, maxBodyLimit(c.MaxEventSize))
	case c.Rate <= 0:
		return fmt.Errorf("gateway rate %d: must be positive", c.Rate)
	case c.AckTimeout <= 0, c.ReadHeaderTimeout <= 0, c.ReadTimeout <= 0, c.IdleTimeout <= 0, c.ShutdownTimeout <= 0:
		return fmt.Errorf("gateway timeouts (ack %s, read header %s, read %s, idle %s, shutdown %s): must be positive",
			c.AckTimeout, c.ReadHeaderTimeout, c.ReadTimeout, c.IdleTimeout, c.ShutdownTimeout)
	case (c.TLSCertFile == "") != (c.TLSKeyFile == ""):
		return fmt.Errorf("gateway TLS: cert file %q and key file %q: set both or neither", c.TLSCertFile, c.TLSKeyFile)
	case c.DeviceTokens != nil && (c.DeviceIdleTimeout <= 0 || c.DeviceRate <= 0 || c.DeviceCallTimeout <= 0):
		return fmt.Errorf("gateway device idle timeout %s, rate %d, call timeout %s: must be positive", c.DeviceIdleTimeout, c.DeviceRate, c.DeviceCallTimeout)
	case c.DeviceTokens != nil && (c.TokenRefresh <= 0 || c.TokenExpiry <= c.TokenRefresh):
		return fmt.Errorf("gateway device tokens: refresh %s, expiry %s: want a positive refresh shorter than the expiry", c.TokenRefresh, c.TokenExpiry)
	case c.CallTimeout <= 0, c.MaxCallTimeout < time.Second, c.CallTimeout > c.MaxCallTimeout:
		return fmt.Errorf("gateway call timeout %s, at most %s: want a positive timeout within a maximum of at least 1s", c.CallTimeout, c.MaxCallTimeout)
	}
	return nil
}

// anonymous reports whether requests without a token are allowed.
func (c Config) anonymous() bool {
	if c.Anonymous != nil {
		return *c.Anonymous
	}
	host, _, _ := net.SplitHostPort(c.Addr)
	return loopback(host)
}

// loopback reports whether host names only this machine: localhost or a
// loopback IP (an empty host listens on every interface).
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// DefaultReplica is the host name, or "gateway" when it is unknown.
func DefaultReplica() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "gateway"
}
