package device

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// HeaderAuth is the upgrade request's header carrying the device's login
// (the gateway's gateway.HeaderDeviceAuth).
const HeaderAuth = "X-Hookbus-Auth"

// maxAuthHeader is the length from which the gateway refuses the header.
const maxAuthHeader = 1024

// Close codes of the gateway that the client acts on.
const (
	closeTokenRevoked = 4001 // log in again with credentials
	closeReplaced     = 4002 // a newer connection of the device: stop
	closeStopped      = 4003 // a plugin stopped the device: stop
)

// idPattern is what a device id may be (docs/protocol.md).
var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// Status is where the client is, as Fedecks' client reports it.
type Status string

const (
	// StatusConnecting: dialling the gateway (with the token, or with
	// credentials when there is no good token).
	StatusConnecting Status = "connecting"
	// StatusConnected: the socket is up; frames flow.
	StatusConnected Status = "connected"
	// StatusDisconnected: the connection was lost or refused for a
	// while; the client waits (backoff) and connects again.
	StatusDisconnected Status = "disconnected"
	// StatusUnregistered: the token is dead and there are no
	// credentials to log in with. Final (ErrNeedsLogin).
	StatusUnregistered Status = "unregistered"
	// StatusFailed: the gateway refused the login for good (403
	// authentication_failed, 400, 404). Final (a *RefusedError).
	StatusFailed Status = "failed"
	// StatusReplaced: a newer connection of this device replaced this
	// one (close 4002). Final (ErrReplaced).
	StatusReplaced Status = "replaced"
	// StatusStopped: a plugin stopped the device (close 4003). Final (a
	// *StoppedError).
	StatusStopped Status = "stopped"
	// StatusClosed: Close was called. Final (ErrClosed).
	StatusClosed Status = "closed"
)

// Config configures a Client.
type Config struct {
	// URL is the gateway: ws://, wss://, http:// or https://; without a
	// path, /devices/websocket is used.
	URL string
	// DeviceID is the device's id: 1 to 64 of [A-Za-z0-9_-], not
	// starting with _ or -.
	DeviceID string
	// Credentials are what a login sends to the gateway's
	// hookbus.device.authenticate chain (device_id is added). nil: the
	// client can only connect with a stored token.
	Credentials map[string]any
	// Tokens keeps the token between connections; nil keeps it in memory.
	Tokens TokenStore
	// MinBackoff and MaxBackoff bound the wait before a reconnection:
	// a random duration (full jitter) up to MinBackoff doubled at each
	// failed attempt, at most MaxBackoff; back to MinBackoff after a
	// session that lasted 10 s. Defaults 500 ms and 30 s.
	MinBackoff, MaxBackoff time.Duration
	// OnStatus is called at each change of status, with the error that
	// caused it (nil for connecting and connected).
	OnStatus func(Status, error)
	// OnPush is called with each push the gateway sends, once per push
	// within the process. The client acknowledges a push (push_ack) once
	// OnPush has returned.
	OnPush func(Push)
	// MaxFrameSize is the largest frame the client reads (default 4 MiB):
	// a push over it is skipped (logged, acknowledged, not delivered), a
	// reply over it fails its Call.
	MaxFrameSize int64
	// PingInterval is how often the client pings the gateway; a ping not
	// answered within it ends the connection (default 30 s).
	PingInterval time.Duration
	// WriteTimeout bounds each frame's write (default 10 s).
	WriteTimeout time.Duration
	// HTTPClient dials the gateway (TLS settings, proxies); nil is
	// http.DefaultClient.
	HTTPClient *http.Client
	// Logger logs reconnections and token store failures; nil logs
	// nothing.
	Logger *slog.Logger
}

// Push is a push the gateway sent: a JSON value (a push text frame's
// data), or raw bytes (a binary frame).
type Push struct {
	Data   []byte
	Binary bool
	// Seq is the push's stream sequence when the gateway sent it (0
	// otherwise); the client drops a push whose Seq it has already
	// delivered in this process.
	Seq uint64
}

// Client is a device's connection to the Hookbus gateway, kept up until
// Close or a final status. It is safe for concurrent use.
//
// Callbacks (OnStatus, OnPush) are called one at a time, in order, from
// one goroutine of the client; they may call Send, SendRaw and Call, but
// not Close.
type Client struct {
	cfg    Config
	url    string
	log    *slog.Logger
	tokens TokenStore

	ctx    context.Context
	cancel context.CancelFunc
	wake   chan struct{}   // cap 1: the writer has something to write
	events chan func()     // callbacks, in order
	done   chan struct{}   // closed when run has returned and the callbacks have run
	seen   map[uint64]bool // push sequences delivered
	order  []uint64        // seen, oldest first (bounded)

	mu       sync.Mutex
	status   Status
	err      error    // final error, set before done is closed
	out      []*frame // data frames not acknowledged and calls not written, in order
	nWritten int      // out[:nWritten] are written in the current session
	sess     *session
	waiters  []chan Token // RefreshToken calls waiting for a token frame
}

// frame is a data frame or a call waiting for its answer.
type frame struct {
	typ  websocket.MessageType
	b    []byte
	ref  string      // a call's ref; "" for a data frame
	done chan result // cap 1
}

type result struct {
	data json.RawMessage
	err  error
}

// session is the state of one connection.
type session struct {
	unanswered  []*frame // written, waiting for their ack or reply, in order
	calls       map[string]*frame
	acked       uint64 // the last ack's seq
	pushes      uint64 // pushes received
	pushAckWant uint64 // pushes delivered to OnPush
	pushAckSent uint64
	tokenPlease int  // token_please frames to write
	gotToken    bool // the gateway sent a token: the login worked
}

// New checks cfg and starts the client: it connects in the background,
// and again after every loss, until Close or a final status.
func New(cfg Config) (*Client, error) {
	u, err := gatewayURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	if !idPattern.MatchString(cfg.DeviceID) {
		return nil, fmt.Errorf("device: id %q: must be 1 to 64 of [A-Za-z0-9_-], not starting with _ or -", cfg.DeviceID)
	}
	if cfg.Credentials != nil {
		if _, ok := cfg.Credentials["token"]; ok {
			return nil, errors.New("device: credentials: the key token is the gateway's token, not a credential")
		}
		if id, ok := cfg.Credentials["device_id"]; ok && id != cfg.DeviceID {
			return nil, fmt.Errorf("device: credentials: device_id %v is not the device id %q", id, cfg.DeviceID)
		}
		if h, err := authHeader(cfg.DeviceID, "", cfg.Credentials); err != nil {
			return nil, fmt.Errorf("device: credentials: %w", err)
		} else if len(h) >= maxAuthHeader {
			return nil, fmt.Errorf("device: credentials: the header would be %d bytes, the gateway refuses %d or more", len(h), maxAuthHeader)
		}
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.MinBackoff < 0 || cfg.MaxBackoff < cfg.MinBackoff {
		return nil, fmt.Errorf("device: backoff %s to %s: want 0 < min <= max", cfg.MinBackoff, cfg.MaxBackoff)
	}
	if cfg.MaxFrameSize == 0 {
		cfg.MaxFrameSize = 4 << 20
	}
	if cfg.PingInterval == 0 {
		cfg.PingInterval = 30 * time.Second
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.MaxFrameSize < 0 || cfg.PingInterval < 0 || cfg.WriteTimeout < 0 {
		return nil, errors.New("device: max frame size, ping interval and write timeout must be positive")
	}
	c := &Client{
		cfg:    cfg,
		url:    u,
		log:    cfg.Logger,
		tokens: cfg.Tokens,
		wake:   make(chan struct{}, 1),
		events: make(chan func(), 256),
		done:   make(chan struct{}),
		seen:   map[uint64]bool{},
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.tokens == nil {
		c.tokens = &MemoryTokenStore{}
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	go c.callbacks()
	go c.run()
	return c, nil
}

// gatewayURL is raw with /devices/websocket as path when it has none.
func gatewayURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("device: gateway URL: %w", err)
	}
	switch u.Scheme {
	case "ws", "wss", "http", "https":
	default:
		return "", fmt.Errorf("device: gateway URL %q: want ws, wss, http or https", raw)
	}
	if u.Host == "" {
		return "", fmt.Errorf("device: gateway URL %q: no host", raw)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/devices/websocket"
	}
	return u.String(), nil
}

// authHeader is the device header: a login with creds, or the token.
func authHeader(id, token string, creds map[string]any) (string, error) {
	obj := map[string]any{"device_id": id}
	if token != "" {
		obj["token"] = token
	} else {
		for k, v := range creds {
			obj[k] = v
		}
		obj["device_id"] = id
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// Status returns the client's status now.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

// Done is closed once the client has stopped for good (Close or a final
// status) and every callback has run, the final status's included; Err
// then says why.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is the reason the client stopped (nil while it runs): ErrClosed,
// ErrReplaced, ErrNeedsLogin, a *StoppedError or a *RefusedError.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close stops the client: the socket is closed, waiting Sends and Calls
// return ErrClosed, and Close returns once every goroutine of the client
// has ended (callbacks already queued have run). Frames sent but not
// acknowledged are not sent again.
func (c *Client) Close() error {
	c.cancel()
	<-c.done
	return nil
}

// Send sends a JSON message (a message frame) and returns once the
// gateway acknowledged it: it is stored. A frame written but not
// acknowledged when the connection is lost is sent again, in order, on
// the next connection (at least once). A Send whose ctx ends before its
// frame was written is not sent; one already written may still be
// stored.
func (c *Client) Send(ctx context.Context, data json.RawMessage) error {
	if !json.Valid(data) {
		return errors.New("device: send: data is not JSON")
	}
	b, err := json.Marshal(struct {
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	}{"message", data})
	if err != nil {
		return err
	}
	_, err = c.enqueue(ctx, &frame{typ: websocket.MessageText, b: b})
	return err
}

// SendRaw sends bytes as a binary frame, like Send.
func (c *Client) SendRaw(ctx context.Context, data []byte) error {
	_, err := c.enqueue(ctx, &frame{typ: websocket.MessageBinary, b: slices.Clone(data)})
	return err
}

// Call sends data to the gateway's hookbus.device.call chain and returns
// the plugin's reply. A chain that did not answer is a *CallError
// (errors.Is ErrNoHandler, ErrCallFailed, ErrCallTimeout, ErrUnavailable);
// a connection lost before the reply is ErrDisconnected (the call is not
// sent again); a plugin's stop is a *StoppedError.
func (c *Client) Call(ctx context.Context, data json.RawMessage) (json.RawMessage, error) {
	if !json.Valid(data) {
		return nil, errors.New("device: call: data is not JSON")
	}
	var r [16]byte
	_, _ = rand.Read(r[:])
	ref := hex.EncodeToString(r[:])
	b, err := json.Marshal(struct {
		Type string          `json:"type"`
		Ref  string          `json:"ref"`
		Data json.RawMessage `json:"data"`
	}{"call", ref, data})
	if err != nil {
		return nil, err
	}
	return c.enqueue(ctx, &frame{typ: websocket.MessageText, b: b, ref: ref})
}

// RefreshToken asks the gateway for a fresh token (token_please) and
// returns it once it arrived and was stored.
func (c *Client) RefreshToken(ctx context.Context) (Token, error) {
	ch := make(chan Token, 1)
	c.mu.Lock()
	if c.err != nil {
		defer c.mu.Unlock()
		return Token{}, c.err
	}
	c.waiters = append(c.waiters, ch)
	if c.sess != nil {
		c.sess.tokenPlease++
	}
	c.mu.Unlock()
	c.poke()
	select {
	case t := <-ch:
		return t, nil
	case <-ctx.Done():
		return Token{}, ctx.Err()
	case <-c.done:
		return Token{}, c.Err()
	}
}

// enqueue queues f and waits for its answer.
func (c *Client) enqueue(ctx context.Context, f *frame) (json.RawMessage, error) {
	f.done = make(chan result, 1)
	c.mu.Lock()
	if c.err != nil {
		defer c.mu.Unlock()
		return nil, c.err
	}
	c.out = append(c.out, f)
	c.mu.Unlock()
	c.poke()
	select {
	case r := <-f.done:
		return r.data, r.err
	case <-ctx.Done():
		c.mu.Lock()
		if i := slices.Index(c.out, f); i >= c.nWritten {
			c.out = slices.Delete(c.out, i, i+1) // not written: never sent
		}
		c.mu.Unlock()
		return nil, ctx.Err()
	}
}

// poke wakes the writer.
func (c *Client) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// callbacks runs the callbacks queued on events until it is closed.
func (c *Client) callbacks() {
	for f := range c.events {
		f()
	}
	close(c.done)
}

// setStatus records st and queues its callback.
func (c *Client) setStatus(st Status, err error) {
	c.mu.Lock()
	c.status = st
	c.mu.Unlock()
	if c.cfg.OnStatus != nil {
		c.events <- func() { c.cfg.OnStatus(st, err) }
	}
}

// run connects, serves, and connects again until the end.
func (c *Client) run() {
	var final error
	var finalStatus Status
	defer func() {
		c.mu.Lock()
		c.err = final
		out := c.out
		c.out, c.nWritten = nil, 0
		c.waiters = nil // RefreshToken sees done
		c.mu.Unlock()
		for _, f := range out {
			f.done <- result{err: final}
		}
		c.setStatus(finalStatus, final)
		close(c.events) // callbacks closes done once they have run

	}()
	attempt := 0
	credentials := false // log in with credentials even with a stored token
	for {
		if c.ctx.Err() != nil {
			final, finalStatus = ErrClosed, StatusClosed
			return
		}
		c.setStatus(StatusConnecting, nil)
		conn, withToken, err := c.dial(credentials)
		credentials = false
		var refused *RefusedError
		switch {
		case c.ctx.Err() != nil:
			final, finalStatus = ErrClosed, StatusClosed
			return
		case errors.Is(err, ErrNeedsLogin):
			final, finalStatus = err, StatusUnregistered
			return
		case errors.As(err, &refused):
			// A stored token the gateway cannot read (400: too long,
			// say) is as dead as an expired one.
			dead := refused.Status == http.StatusUnauthorized || refused.Status == http.StatusBadRequest ||
				(refused.Status == http.StatusForbidden && refused.Code == "invalid_token")
			if withToken && dead {
				// A dead token is never tried again: log in.
				c.log.Info("device: token refused, logging in again", "device", c.cfg.DeviceID, "code", refused.Code)
				c.forgetToken()
				if c.cfg.Credentials == nil {
					final, finalStatus = ErrNeedsLogin, StatusUnregistered
					return
				}
				credentials = true
				continue
			}
			if refused.Status < 500 && refused.Status != http.StatusTooManyRequests && refused.Status != http.StatusRequestTimeout {
				final, finalStatus = refused, StatusFailed
				return
			}
		}
		if err == nil {
			var s *session
			began := time.Now()
			s, err = c.serve(conn)
			if s.gotToken && time.Since(began) >= stableSession {
				// Only a session that held: one the gateway ends right
				// after the token (1013 while JetStream is in trouble)
				// keeps the backoff growing.
				attempt = 0
			}
			var ce websocket.CloseError
			if errors.As(err, &ce) {
				switch ce.Code {
				case closeTokenRevoked:
					c.forgetToken()
					if c.cfg.Credentials == nil {
						final, finalStatus = ErrNeedsLogin, StatusUnregistered
						return
					}
					c.setStatus(StatusDisconnected, err)
					credentials = true
					continue
				case closeReplaced:
					final, finalStatus = ErrReplaced, StatusReplaced
					return
				case closeStopped:
					final, finalStatus = &StoppedError{Reason: ce.Reason}, StatusStopped
					return
				}
			}
		}
		if c.ctx.Err() != nil {
			final, finalStatus = ErrClosed, StatusClosed
			return
		}
		c.setStatus(StatusDisconnected, err)
		wait := c.backoff(attempt)
		attempt++
		c.log.Info("device: disconnected, connecting again", "device", c.cfg.DeviceID, "in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-c.ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}

// stableSession is how long a session must last for the backoff to
// start again from MinBackoff.
const stableSession = 10 * time.Second

// backoff is a random wait (full jitter) up to MinBackoff·2^attempt,
// at most MaxBackoff.
func (c *Client) backoff(attempt int) time.Duration {
	ceil := c.cfg.MaxBackoff
	if attempt < 30 {
		if d := c.cfg.MinBackoff << attempt; d > 0 && d < ceil {
			ceil = d
		}
	}
	if ceil <= 0 {
		return 0
	}
	return mrand.N(ceil + 1)
}

// forgetToken deletes the stored token (it is dead).
func (c *Client) forgetToken() {
	if err := c.tokens.Delete(); err != nil {
		c.log.Warn("device: token store: delete", "device", c.cfg.DeviceID, "err", err)
	}
}

// dial opens the socket: with the stored token when it is good and
// credentials is false, else with the credentials.
func (c *Client) dial(credentials bool) (conn *websocket.Conn, withToken bool, err error) {
	tok := ""
	if !credentials {
		t, err := c.tokens.Load()
		if err != nil {
			c.log.Warn("device: token store: load", "device", c.cfg.DeviceID, "err", err)
		} else if t.Token != "" && time.Now().Before(t.Expires) {
			tok = t.Token
		}
	}
	if tok == "" && c.cfg.Credentials == nil {
		return nil, false, ErrNeedsLogin
	}
	h, err := authHeader(c.cfg.DeviceID, tok, c.cfg.Credentials)
	if err != nil {
		return nil, false, err
	}
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	opts := &websocket.DialOptions{HTTPClient: c.cfg.HTTPClient, HTTPHeader: http.Header{}}
	opts.HTTPHeader.Set(HeaderAuth, h)
	conn, resp, err := websocket.Dial(ctx, c.url, opts)
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, tok != "", refusal(resp)
		}
		return nil, tok != "", err
	}
	// The reader applies MaxFrameSize itself: a frame over it is
	// skipped, not a reason to drop the connection.
	conn.SetReadLimit(-1)
	return conn, tok != "", nil
}

// refusal reads the problem of a refused upgrade.
func refusal(resp *http.Response) *RefusedError {
	e := &RefusedError{Status: resp.StatusCode}
	if resp.Body != nil {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		var p struct {
			Code   string `json:"code"`
			Detail string `json:"detail"`
		}
		if json.Unmarshal(b, &p) == nil {
			e.Code, e.Detail = p.Code, p.Detail
		}
	}
	return e
}

// serve runs one connection until it ends and returns why (the reader's
// error: a websocket.CloseError when the gateway closed it).
func (c *Client) serve(conn *websocket.Conn) (*session, error) {
	ctx, cancel := context.WithCancel(c.ctx)
	s := &session{calls: map[string]*frame{}}
	c.mu.Lock()
	c.sess, c.nWritten = s, 0
	c.mu.Unlock()
	c.setStatus(StatusConnected, nil)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := c.writer(ctx, conn, s); err != nil && ctx.Err() == nil {
			c.log.Debug("device: write", "device", c.cfg.DeviceID, "err", err)
			_ = conn.CloseNow() // the reader returns
		}
	})
	wg.Go(func() { c.pinger(ctx, conn) })
	err := c.reader(ctx, conn, s)
	cancel()
	if c.ctx.Err() != nil {
		_ = conn.Close(websocket.StatusNormalClosure, "client closed")
	}
	_ = conn.CloseNow()
	wg.Wait()

	c.mu.Lock()
	c.sess, c.nWritten = nil, 0
	var ce websocket.CloseError
	if errors.As(err, &ce) && (ce.Code == websocket.StatusMessageTooBig || ce.Code == websocket.StatusUnsupportedData) && len(s.unanswered) > 0 {
		// The gateway reads in order: the first frame not answered is
		// the one it refused. Sent again, it would be refused again.
		f := s.unanswered[0]
		if i := slices.Index(c.out, f); i >= 0 {
			c.out = slices.Delete(c.out, i, i+1)
		}
		delete(s.calls, f.ref)
		f.done <- result{err: &FrameError{Code: int(ce.Code), Reason: ce.Reason}}
	}
	callErr := ErrDisconnected
	if errors.As(err, &ce) {
		switch ce.Code {
		case closeReplaced:
			callErr = ErrReplaced
		case closeStopped:
			callErr = &StoppedError{Reason: ce.Reason}
		}
	}
	for _, f := range s.calls {
		f.done <- result{err: callErr}
	}
	c.mu.Unlock()
	return s, err
}

// pinger pings every PingInterval and drops a connection whose pong does
// not come within it.
func (c *Client) pinger(ctx context.Context, conn *websocket.Conn) {
	t := time.NewTicker(c.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, c.cfg.PingInterval)
		err := conn.Ping(pctx)
		cancel()
		if err != nil {
			_ = conn.CloseNow()
			return
		}
	}
}

// writer writes, in this order of priority, token_please, push_ack, then
// the queued frames in order.
func (c *Client) writer(ctx context.Context, conn *websocket.Conn, s *session) error {
	for {
		c.mu.Lock()
		var typ websocket.MessageType = websocket.MessageText
		var b []byte
		switch {
		case s.tokenPlease > 0:
			s.tokenPlease--
			b = []byte(`{"type":"token_please"}`)
		case s.pushAckWant > s.pushAckSent:
			s.pushAckSent = s.pushAckWant
			b = fmt.Appendf(nil, `{"type":"push_ack","seq":%d}`, s.pushAckWant)
		case c.nWritten < len(c.out):
			f := c.out[c.nWritten]
			if f.ref != "" {
				// A call leaves the queue: it is answered by its
				// reply, or fails with the connection.
				c.out = slices.Delete(c.out, c.nWritten, c.nWritten+1)
				s.calls[f.ref] = f
			} else {
				c.nWritten++
			}
			s.unanswered = append(s.unanswered, f)
			typ, b = f.typ, f.b
		}
		c.mu.Unlock()
		if b == nil {
			select {
			case <-ctx.Done():
				return nil
			case <-c.wake:
				continue
			}
		}
		wctx, cancel := context.WithTimeout(ctx, c.cfg.WriteTimeout)
		err := conn.Write(wctx, typ, b)
		cancel()
		if err != nil {
			return err
		}
	}
}

// inFrame is any text frame of the gateway.
type inFrame struct {
	Type    string          `json:"type"`
	Token   string          `json:"token"`
	Expires time.Time       `json:"expires"`
	Seq     uint64          `json:"seq"`
	Ref     string          `json:"ref"`
	Data    json.RawMessage `json:"data"`
	Error   *CallError      `json:"error"`
}

// reader reads the gateway's frames until the connection ends.
func (c *Client) reader(ctx context.Context, conn *websocket.Conn, s *session) error {
	for {
		typ, b, tooBig, err := c.readFrame(ctx, conn)
		if err != nil {
			return err
		}
		if tooBig {
			if err := c.skip(ctx, s, typ, b); err != nil {
				return err
			}
			continue
		}
		if typ == websocket.MessageBinary {
			if err := c.push(ctx, s, Push{Data: b, Binary: true}); err != nil {
				return err
			}
			continue
		}
		var f inFrame
		if err := json.Unmarshal(b, &f); err != nil {
			c.log.Warn("device: frame not understood", "device", c.cfg.DeviceID, "err", err)
			continue
		}
		switch f.Type {
		case "token":
			c.token(s, Token{Token: f.Token, Expires: f.Expires})
		case "ack":
			c.ack(s, f.Seq)
		case "push":
			if err := c.push(ctx, s, Push{Data: f.Data, Seq: f.Seq}); err != nil {
				return err
			}
		case "reply":
			c.reply(s, f)
		default:
			// A frame of a newer gateway: ignored.
		}
	}
}

// readFrame reads the next frame, whole when it is at most MaxFrameSize;
// a bigger one is read to its end and only its first bytes are returned,
// with tooBig set.
func (c *Client) readFrame(ctx context.Context, conn *websocket.Conn) (typ websocket.MessageType, b []byte, tooBig bool, err error) {
	typ, r, err := conn.Reader(ctx)
	if err != nil {
		return 0, nil, false, err
	}
	// At least 256 bytes: enough of a too big frame to tell what it is.
	b, err = io.ReadAll(io.LimitReader(r, max(c.cfg.MaxFrameSize, 256)+1))
	if err != nil {
		return 0, nil, false, err
	}
	if int64(len(b)) <= c.cfg.MaxFrameSize {
		return typ, b, false, nil
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return 0, nil, false, err
	}
	return typ, b[:min(len(b), 256)], true, nil
}

// bigFrame is the start of a push or reply frame of the gateway, which
// writes type first, then seq or ref.
var bigFrame = regexp.MustCompile(`^\{"type":"(push|reply)","(?:seq|ref)":"?([^",]*)"?,`)

// skip handles a frame over MaxFrameSize, of which head is the start: a
// push is counted and acknowledged but not delivered (else the gateway
// would send it again at every connection), a reply fails its call;
// anything else is ignored.
func (c *Client) skip(ctx context.Context, s *session, typ websocket.MessageType, head []byte) error {
	m := bigFrame.FindSubmatch(head)
	switch {
	case typ == websocket.MessageBinary || (m != nil && string(m[1]) == "push"):
		c.log.Warn("device: push over MaxFrameSize skipped", "device", c.cfg.DeviceID, "max", c.cfg.MaxFrameSize)
		return c.deliver(ctx, s, Push{}, false)
	case m != nil:
		c.mu.Lock()
		defer c.mu.Unlock()
		call, ok := s.calls[string(m[2])]
		if !ok {
			return nil
		}
		delete(s.calls, string(m[2]))
		if i := slices.Index(s.unanswered, call); i >= 0 {
			s.unanswered = slices.Delete(s.unanswered, i, i+1)
		}
		call.done <- result{err: fmt.Errorf("device: call: the reply is over MaxFrameSize (%d bytes)", c.cfg.MaxFrameSize)}
	default:
		c.log.Warn("device: frame over MaxFrameSize ignored", "device", c.cfg.DeviceID, "max", c.cfg.MaxFrameSize)
	}
	return nil
}

// token stores a token frame's token and hands it to RefreshToken.
func (c *Client) token(s *session, t Token) {
	if t.Token == "" {
		return
	}
	if err := c.tokens.Save(t); err != nil {
		c.log.Warn("device: token store: save", "device", c.cfg.DeviceID, "err", err)
	}
	c.mu.Lock()
	s.gotToken = true
	waiters := c.waiters
	c.waiters = nil
	c.mu.Unlock()
	for _, w := range waiters {
		w <- t
	}
}

// ack completes the data frames up to the session's seq-th.
func (c *Client) ack(s *session, seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for s.acked < seq && c.nWritten > 0 {
		s.acked++
		f := c.out[0]
		c.out = c.out[1:]
		c.nWritten--
		if i := slices.Index(s.unanswered, f); i >= 0 {
			s.unanswered = slices.Delete(s.unanswered, i, i+1)
		}
		f.done <- result{}
	}
}

// reply completes the call of ref.
func (c *Client) reply(s *session, f inFrame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	call, ok := s.calls[f.Ref]
	if !ok {
		return
	}
	delete(s.calls, f.Ref)
	if i := slices.Index(s.unanswered, call); i >= 0 {
		s.unanswered = slices.Delete(s.unanswered, i, i+1)
	}
	if f.Error != nil {
		call.done <- result{err: f.Error}
		return
	}
	call.done <- result{data: f.Data}
}

// maxSeen is how many push sequences the client remembers.
const maxSeen = 4096

// push queues p for OnPush (unless its sequence was delivered already)
// and its push_ack after it.
func (c *Client) push(ctx context.Context, s *session, p Push) error {
	return c.deliver(ctx, s, p, true)
}

// deliver counts push p of session s, hands it to OnPush when give is
// set (and p was not delivered before), then queues its push_ack.
func (c *Client) deliver(ctx context.Context, s *session, p Push, give bool) error {
	c.mu.Lock()
	s.pushes++
	n := s.pushes
	dup := p.Seq != 0 && c.seen[p.Seq]
	if p.Seq != 0 && !dup {
		c.seen[p.Seq] = true
		c.order = append(c.order, p.Seq)
		if len(c.order) > maxSeen {
			delete(c.seen, c.order[0])
			c.order = c.order[1:]
		}
	}
	c.mu.Unlock()
	deliver := func() {
		if give && !dup && c.cfg.OnPush != nil {
			c.cfg.OnPush(p)
		}
		c.mu.Lock()
		if c.sess == s && n > s.pushAckWant {
			s.pushAckWant = n
		}
		c.mu.Unlock()
		c.poke()
	}
	select {
	case c.events <- deliver:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
