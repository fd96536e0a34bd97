package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

// HeaderDeviceAuth is the upgrade request's header of a device: base64
// (standard, padded) of a JSON object with device_id and either token or
// the credentials of a first login.
const HeaderDeviceAuth = "X-Hookbus-Auth"

// MaxDeviceAuthHeader is the length from which the device header is
// refused.
const MaxDeviceAuthHeader = 1024

// EventTypeDeviceAuthenticate is the chain that decides a first login.
const EventTypeDeviceAuthenticate = "hookbus.device.authenticate"

// Codes of the device upgrade's refusals.
const (
	codeInvalidAuthHeader    events.ErrorCode = "invalid_auth_header"
	codeAuthenticationFailed events.ErrorCode = "authentication_failed"
	codeInvalidToken         events.ErrorCode = "invalid_token"
	codeTokenExpired         events.ErrorCode = "token_expired"
	codeTokenRevoked         events.ErrorCode = "token_revoked"
	codeDevicesOff           events.ErrorCode = "devices_off"
)

// deviceAuth is the decoded device header.
type deviceAuth struct {
	DeviceID    string
	Token       string         // "" for a login with credentials
	Credentials map[string]any // the whole object, device_id included
}

// parseDeviceAuth decodes the device header, refusing it at
// MaxDeviceAuthHeader bytes or more, or when it is not base64 of a JSON
// object with a device_id string (a valid device id).
func parseDeviceAuth(h string) (deviceAuth, error) {
	switch {
	case h == "":
		return deviceAuth{}, fmt.Errorf("header %s: missing", HeaderDeviceAuth)
	case len(h) >= MaxDeviceAuthHeader:
		return deviceAuth{}, fmt.Errorf("header %s: %d bytes, want fewer than %d", HeaderDeviceAuth, len(h), MaxDeviceAuthHeader)
	}
	raw, err := base64.StdEncoding.DecodeString(h)
	if err != nil {
		return deviceAuth{}, fmt.Errorf("header %s: not base64 (standard alphabet, padded)", HeaderDeviceAuth)
	}
	var v any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&v); err != nil || d.More() {
		return deviceAuth{}, fmt.Errorf("header %s: not JSON", HeaderDeviceAuth)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return deviceAuth{}, fmt.Errorf("header %s: not a JSON object", HeaderDeviceAuth)
	}
	id, ok := obj["device_id"].(string)
	if !ok {
		return deviceAuth{}, fmt.Errorf("header %s: no device_id string", HeaderDeviceAuth)
	}
	if events.ValidateDeviceID(id) != nil {
		return deviceAuth{}, fmt.Errorf("header %s: device_id must be 1 to 64 of [A-Za-z0-9_-], starting with a letter or a digit", HeaderDeviceAuth)
	}
	a := deviceAuth{DeviceID: id, Credentials: obj}
	if tok, set := obj["token"]; set {
		s, ok := tok.(string)
		if !ok {
			return deviceAuth{}, fmt.Errorf("header %s: token must be a string", HeaderDeviceAuth)
		}
		a.Token = s
	}
	return a, nil
}

// deviceGenerationKey is the key of a device's token generation in
// hookbus_devices.
func deviceGenerationKey(id string) string { return "generation." + id }

// DeviceGeneration returns the token generation of device id in kv (0
// when never revoked).
func DeviceGeneration(ctx context.Context, kv jetstream.KeyValue, id string) (uint64, error) {
	e, err := kv.Get(ctx, deviceGenerationKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	g, err := strconv.ParseUint(string(e.Value()), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("device %s generation %q: %w", id, e.Value(), err)
	}
	return g, nil
}

// RevokeDevice bumps the token generation of device id in kv, so that
// every token issued before fails, and returns the new generation.
func RevokeDevice(ctx context.Context, kv jetstream.KeyValue, id string) (uint64, error) {
	if err := events.ValidateDeviceID(id); err != nil {
		return 0, err
	}
	for {
		e, err := kv.Get(ctx, deviceGenerationKey(id))
		var g, rev uint64
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return 0, err
		default:
			if g, err = strconv.ParseUint(string(e.Value()), 10, 64); err != nil {
				return 0, fmt.Errorf("device %s generation %q: %w", id, e.Value(), err)
			}
			rev = e.Revision()
		}
		next := []byte(strconv.FormatUint(g+1, 10))
		if rev == 0 {
			_, err = kv.Create(ctx, deviceGenerationKey(id), next)
		} else {
			_, err = kv.Update(ctx, deviceGenerationKey(id), next, rev)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || isWrongSequence(err) {
			continue // another revoke won the race: bump again on top of it
		}
		if err != nil {
			return 0, err
		}
		return g + 1, nil
	}
}

// isWrongSequence reports a compare-and-swap that lost.
func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// deviceRefusal answers the upgrade of a device with a problem: 400 for
// its header, 403 for a failed authentication or a token that is not
// this device's, 401 (log in again) for an expired or revoked token.
func deviceRefusal(status int, code events.ErrorCode, detail string) *Problem {
	return &Problem{Status: status, Code: code, Detail: detail}
}

// tokenFrame is the control frame carrying a token to the device.
type tokenFrame struct {
	Type    string    `json:"type"` // "token"
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
}

// deviceSocket is GET /devices/websocket: a device's session. The
// upgrade is refused (with a problem, before any WebSocket) unless the
// device header carries a valid token of the device or credentials that
// the chain of hookbus.device.authenticate allows.
func (s *Service) deviceSocket(w http.ResponseWriter, r *http.Request) {
	if s.cfg.DeviceTokens == nil {
		writeProblem(w, deviceRefusal(http.StatusNotFound, codeDevicesOff, "device sessions are off on this gateway: it has no device token secret"))
		return
	}
	a, err := parseDeviceAuth(r.Header.Get(HeaderDeviceAuth))
	if err != nil {
		s.refuseDevice(w, r, "", deviceRefusal(http.StatusBadRequest, codeInvalidAuthHeader, err.Error()))
		return
	}
	// A token not sealed for the device, or expired, is refused on the
	// token alone: such an upgrade, which anyone can send, reads nothing
	// from NATS (its socket_error event is rate limited). Its generation
	// is checked once the device's is read.
	var tok DeviceToken
	if a.Token != "" {
		var err error
		if tok, err = s.cfg.DeviceTokens.Open(a.Token, a.DeviceID, time.Now(), 0); err != nil {
			s.refuseDevice(w, r, a.DeviceID, tokenRefusal(err))
			return
		}
	}
	kv, err := s.devicesKV.get(r.Context(), s.js)
	if err != nil {
		writeProblem(w, &Problem{Status: http.StatusServiceUnavailable, Code: events.CodeUnavailable, Detail: "bucket " + events.BucketDevices + ": " + err.Error()})
		return
	}
	gen, err := DeviceGeneration(r.Context(), kv, a.DeviceID)
	if err != nil {
		writeProblem(w, &Problem{Status: http.StatusServiceUnavailable, Code: events.CodeUnavailable, Detail: err.Error()})
		return
	}
	login := "token"
	if a.Token == "" {
		login = "credentials"
	}
	if a.Token != "" {
		if tok.Generation < gen {
			s.refuseDevice(w, r, a.DeviceID, tokenRefusal(ErrTokenRevoked))
			return
		}
	} else if p := s.authenticateDevice(r.Context(), a); p != nil {
		s.refuseDevice(w, r, a.DeviceID, p)
		return
	}
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept answered the client
	}
	s.deviceSession(r.Context(), conn, a.DeviceID, gen, r.RemoteAddr, login)
}

// tokenRefusal is the answer to a token that DeviceSealer.Open refused
// with err.
func tokenRefusal(err error) *Problem {
	switch {
	case errors.Is(err, ErrTokenExpired):
		return deviceRefusal(http.StatusUnauthorized, codeTokenExpired, "the token expired: log in again with credentials")
	case errors.Is(err, ErrTokenRevoked):
		return deviceRefusal(http.StatusUnauthorized, codeTokenRevoked, "the token was revoked: log in again with credentials")
	default:
		return deviceRefusal(http.StatusForbidden, codeInvalidToken, "the token is not one of this gateway for this device")
	}
}

// authenticateDevice runs the chain of hookbus.device.authenticate with
// the credentials of a, device_id private: only a final state with
// "allow": true lets the device in. The credentials are in the call only,
// never stored nor logged.
func (s *Service) authenticateDevice(ctx context.Context, a deviceAuth) *Problem {
	e := event.New()
	e.SetID(newDeviceEventID())
	e.SetSource("/devices/" + a.DeviceID)
	e.SetType(EventTypeDeviceAuthenticate)
	if err := e.SetData(event.ApplicationJSON, a.Credentials); err != nil {
		return &Problem{Status: http.StatusInternalServerError, Code: events.CodeInternal, Detail: err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	defer context.AfterFunc(s.calls, cancel)()
	res, err := s.bus.Call(ctx, e, client.Private("device_id"))
	var failed *client.Error
	switch {
	case errors.As(err, &failed):
		return deviceRefusal(http.StatusForbidden, codeAuthenticationFailed, "authentication failed: the chain of "+EventTypeDeviceAuthenticate+" failed")
	case errors.Is(err, client.ErrNoDispatcher):
		return &Problem{Status: http.StatusServiceUnavailable, Code: events.CodeUnavailable, Detail: "no dispatcher runs the chain of " + EventTypeDeviceAuthenticate}
	case err != nil:
		return &Problem{Status: http.StatusServiceUnavailable, Code: events.CodeUnavailable, Detail: "the chain of " + EventTypeDeviceAuthenticate + " did not answer"}
	}
	var state struct {
		Allow *bool `json:"allow"`
	}
	// No plugin in the chain leaves the credentials as they were, without
	// "allow": a refusal.
	if len(res.Trace) == 0 || json.Unmarshal(res.State, &state) != nil || state.Allow == nil || !*state.Allow {
		return deviceRefusal(http.StatusForbidden, codeAuthenticationFailed, "authentication failed")
	}
	return nil
}

// newDeviceEventID is a random event id.
func newDeviceEventID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// maxDeviceCalls is how many call frames of one session are answered at
// once; the read loop waits for a slot beyond.
const maxDeviceCalls = 8

// deviceSession serves an accepted device until it goes, the gateway
// stops, or a frame breaks the protocol. It sends a fresh token at once,
// then every TokenRefresh and on each token_please.
func (s *Service) deviceSession(ctx context.Context, conn *websocket.Conn, id string, gen uint64, remote, login string) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.calls, func() { _ = conn.Close(websocket.StatusGoingAway, "gateway shutting down") })()
	conn.SetReadLimit(int64(s.cfg.MaxEventSize))
	sendToken := func() error {
		now := time.Now()
		t := DeviceToken{DeviceID: id, IssuedAt: now.UTC(), Expires: now.Add(s.cfg.TokenExpiry).UTC(), Generation: gen}
		tok, err := s.cfg.DeviceTokens.Seal(t)
		if err != nil {
			return err
		}
		b, _ := json.Marshal(tokenFrame{Type: "token", Token: tok, Expires: t.Expires})
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		return conn.Write(wctx, websocket.MessageText, b)
	}
	// Pushes: subscribed first (flushed below), sent after the first
	// token frame.
	pushes, err := s.startDevicePushes(ctx, conn, id)
	if err == nil {
		defer pushes.stop()
	}
	sess := newSessionID()
	closer := &deviceCloser{conn: conn}
	if err == nil {
		// Revocations, replacement by a newer session, stops.
		var ctl *nats.Subscription
		ctl, err = s.nc.Subscribe(events.DeviceControlSubject(id), func(m *nats.Msg) {
			s.deviceControl(ctx, closer, id, sess, gen, m)
		})
		if err == nil {
			defer func() { _ = ctl.Unsubscribe() }()
			if f := sessionFault.Load(); f != nil {
				(*f)(id)
			}
			// Flushed: every notice published from now on reaches it.
			err = s.announceSession(id, sess)
		}
	}
	if err != nil {
		s.log.Warn("device session: no subscription", "device", id, "err", err)
		_ = conn.Close(websocket.StatusTryAgainLater, "gateway cannot subscribe for the device: connect again")
		return
	}
	// Notices and live pushes published while the gateway's NATS
	// connection was down are lost to it: once it is back, read the
	// generation and the stored pushes again (in the loop below).
	back := s.nc.StatusChanged(nats.CONNECTED)
	defer s.nc.RemoveStatusListener(back)
	// A revoke between the token check and the subscription.
	s.closeIfRevoked(ctx, closer, id, gen)
	pres := s.devicePresent(ctx, id, sess, remote, login, closer)
	var readErr error // what ended the read loop
	defer func() { pres.end(readErr) }()
	if err := sendToken(); err != nil {
		_ = conn.CloseNow()
		return
	}
	pushes.start()
	go s.keepAlive(ctx, conn, closer, pres)
	go func() {
		tick := time.NewTicker(s.cfg.TokenRefresh)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if err := sendToken(); err != nil {
					_ = conn.CloseNow()
					return
				}
			case _, ok := <-back:
				if !ok {
					back = nil // the connection is closed for good
					continue
				}
				pushes.signalGap()
				s.closeIfRevoked(ctx, closer, id, gen)
			}
		}
	}()
	var calls sync.WaitGroup
	callSlots := make(chan struct{}, maxDeviceCalls)
	defer func() {
		cancel() // the calls in flight end with the session
		calls.Wait()
	}()
	var seq uint64 // data frames of the session
	limit := rate.NewLimiter(rate.Limit(s.cfg.DeviceRate), s.cfg.DeviceRate)
	for {
		typ, b, err := conn.Read(ctx)
		if err != nil {
			readErr = err
			return
		}
		pres.touch()
		var ctl struct {
			Type string `json:"type"`
		}
		if typ == websocket.MessageText && json.Unmarshal(b, &ctl) == nil && ctl.Type == "token_please" {
			// Each one seals a token and writes it: held to the device
			// rate like data frames and calls.
			if err := limit.Wait(ctx); err != nil {
				return
			}
			if err := sendToken(); err != nil {
				_ = conn.CloseNow()
				return
			}
			continue
		}
		switch ctl.Type { // set for text frames only
		case "push_ack":
			if err := pushes.ack(b); err != nil {
				closer.close(websocket.StatusPolicyViolation, closeReason(err.Error()))
				return
			}
			continue
		case "call":
			f, err := parseCall(b)
			if err != nil {
				closer.close(websocket.StatusUnsupportedData, err.Error())
				return
			}
			if err := limit.Wait(ctx); err != nil {
				return
			}
			// Answered beside the read loop, which goes on reading (pongs
			// included): at most maxDeviceCalls at once, replies in the
			// order the chains answer (matched by ref).
			select {
			case callSlots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			calls.Go(func() {
				defer func() { <-callSlots }()
				reply, stop := s.deviceCall(ctx, id, f)
				if stop != "" {
					closer.close(StatusStopped, stop)
					return
				}
				wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
				defer wcancel()
				if err := conn.Write(wctx, websocket.MessageText, reply); err != nil {
					_ = conn.CloseNow()
				}
			})
			continue
		}
		if err := limit.Wait(ctx); err != nil {
			return
		}
		e, reason := deviceMessage(id, typ, b, ctl.Type)
		if e == nil {
			closer.close(websocket.StatusUnsupportedData, reason)
			return
		}
		seq++
		err = s.storeDeviceMessage(ctx, id, e)
		var ve *events.ValidationError
		if errors.As(err, &ve) {
			closer.close(websocket.StatusMessageTooBig, closeReason(ve.Error()))
			return
		}
		if err != nil {
			// Not stored, not acknowledged: the device sends it again.
			s.log.Warn("device message not stored", "device", id, "event_id", e.ID(), "err", err)
			closer.close(websocket.StatusTryAgainLater, "message not stored: send it again")
			return
		}
		ack, _ := json.Marshal(ackFrame{Type: "ack", Seq: seq})
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		err = conn.Write(wctx, websocket.MessageText, ack)
		wcancel()
		if err != nil {
			return
		}
	}
}

// ackFrame tells the device its seq-th data frame of the session is
// stored.
type ackFrame struct {
	Type string `json:"type"` // "ack"
	Seq  uint64 `json:"seq"`
}

// deviceMessage makes the CloudEvent of a data frame of device id: a
// binary frame's bytes, or a text frame {"type":"message","data":<JSON>}'s
// data. Another frame gives nil and the reason to close the socket.
func deviceMessage(id string, typ websocket.MessageType, b []byte, ctlType string) (*event.Event, string) {
	e := event.New()
	e.SetID(newDeviceEventID())
	e.SetSource("/devices/" + id)
	e.SetType(events.EventTypeDeviceMessage)
	e.SetTime(time.Now())
	if typ == websocket.MessageBinary {
		_ = e.SetData("application/octet-stream", b)
		return &e, ""
	}
	var f struct {
		Data json.RawMessage `json:"data"`
	}
	if ctlType != "message" {
		return nil, "a text frame is a JSON object whose type is message, call, push_ack or token_please"
	}
	if json.Unmarshal(b, &f) != nil || len(f.Data) == 0 {
		return nil, "a message frame carries its JSON in data"
	}
	if err := e.SetData(event.ApplicationJSON, f.Data); err != nil {
		return nil, "a message frame carries its JSON in data"
	}
	return &e, ""
}

// storeDeviceMessage stores e on hookbus.device.<id>.in, sent again (same
// Nats-Msg-Id) until JetStream acknowledges it or AckTimeout passed four
// times.
func (s *Service) storeDeviceMessage(ctx context.Context, id string, e *event.Event) error {
	msg, err := s.codec.Encode(events.DeviceInSubject(id), e)
	if err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, s.cfg.AckTimeout)
		_, err = s.js.PublishMsg(actx, msg)
		cancel()
		if err == nil || attempt == 4 || ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
	}
}

// closeReason cuts s to what a close frame holds (123 bytes), valid UTF-8.
func closeReason(s string) string {
	if len(s) > 120 {
		s = strings.ToValidUTF8(s[:120], "")
	}
	return s
}

// closeIfRevoked closes the socket of device id, connected with a token
// of generation gen, when its generation in hookbus_devices is now above
// gen.
func (s *Service) closeIfRevoked(ctx context.Context, closer *deviceCloser, id string, gen uint64) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.AckTimeout)
	defer cancel()
	kv, err := s.devicesKV.get(ctx, s.js)
	if err != nil {
		return
	}
	now, err := DeviceGeneration(ctx, kv, id)
	if err != nil || now <= gen {
		return
	}
	closer.close(StatusTokenRevoked, "token revoked: log in again")
}

// Revoke revokes device id: its generation in hookbus_devices goes up
// (RevokeDevice), so every older token is refused, and a notice on
// hookbus.device.<id>.revoked makes every gateway replica close its
// socket.
func Revoke(ctx context.Context, nc *nats.Conn, id string) (uint64, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	kv, err := js.KeyValue(ctx, events.BucketDevices)
	if err != nil {
		return 0, fmt.Errorf("bucket %s: %w", events.BucketDevices, err)
	}
	gen, err := RevokeDevice(ctx, kv, id)
	if err != nil {
		return 0, err
	}
	if err := nc.Publish(events.DeviceRevokedSubject(id), []byte(strconv.FormatUint(gen, 10))); err != nil {
		return gen, err
	}
	if _, ok := ctx.Deadline(); !ok {
		return gen, nc.FlushTimeout(5 * time.Second)
	}
	return gen, nc.FlushWithContext(ctx)
}

// keepAlive pings the device every third of DeviceIdleTimeout and closes
// the socket when a pong does not come within DeviceIdleTimeout. Pongs
// are read by the session's read loop.
func (s *Service) keepAlive(ctx context.Context, conn *websocket.Conn, closer *deviceCloser, pres *devicePresence) {
	tick := time.NewTicker(s.cfg.DeviceIdleTimeout / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		pctx, cancel := context.WithTimeout(ctx, s.cfg.DeviceIdleTimeout)
		err := conn.Ping(pctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				closer.close(websocket.StatusPolicyViolation, "idle timeout: no pong")
			}
			return
		}
		pres.seen(ctx)
	}
}
