package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/events"
)

// devicePresence is a device session's key in bucket
// hookbus_device_presence and its lifecycle events (connected at the
// start, disconnected at the end). The key is written at accept,
// rewritten on every pong with compare-and-swap on the revision the
// session last wrote, and deleted at the end while still the session's:
// a lost compare-and-swap means a newer session owns the key, and this
// one stops writing it.
type devicePresence struct {
	s        *Service
	kv       jetstream.KeyValue // nil: the bucket could not be opened
	id       string
	session  string // the session's id (newSessionID)
	remote   string
	since    time.Time
	lastSeen atomic.Int64 // UnixNano of the last frame read or pong

	goneOnce  sync.Once
	connected <-chan struct{} // closed once the connected event is sent: disconnected follows it

	// writeMu orders the key's writes (seen, gone) and guards rev and
	// lost.
	writeMu sync.Mutex
	rev     uint64 // the revision the session last wrote; 0: none
	lost    bool   // a newer session of the device owns the key

	closer *deviceCloser // why the gateway closed the socket, if it did
}

// deviceCloser closes a device session's socket, remembering the first
// code and reason the gateway gave for the session's disconnected event.
type deviceCloser struct {
	conn   *websocket.Conn
	mu     sync.Mutex
	code   websocket.StatusCode
	reason string
}

// close closes the socket with code and reason (the first one is
// remembered). It waits for the device's close frame (at most 5 s):
// call it from a goroutine that may wait.
func (c *deviceCloser) close(code websocket.StatusCode, reason string) {
	c.mu.Lock()
	if c.reason == "" {
		c.code, c.reason = code, reason
	}
	c.mu.Unlock()
	_ = c.conn.Close(code, reason)
}

// why is the first code and reason the gateway closed with ("" for
// none).
func (c *deviceCloser) why() (websocket.StatusCode, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.code, c.reason
}

// devicePresent starts the presence of session sess of device id, remote
// its address and login "token" or "credentials": it writes the key and
// publishes hookbus.device.connected. A key not written is logged; the
// session goes on. closer's reason is the disconnected event's.
func (s *Service) devicePresent(ctx context.Context, id, sess, remote, login string, closer *deviceCloser) *devicePresence {
	now := time.Now().UTC()
	p := &devicePresence{s: s, id: id, session: sess, remote: remote, since: now, closer: closer}
	p.lastSeen.Store(now.UnixNano())
	s.life.add() // until gone
	ctx, cancel := context.WithTimeout(ctx, s.cfg.AckTimeout)
	defer cancel()
	kv, err := s.presenceKV.get(ctx, s.js)
	if err == nil {
		p.kv = kv
		p.writeMu.Lock()
		err = p.claim(ctx)
		p.writeMu.Unlock()
	}
	if err != nil {
		s.log.Warn("device presence not written", "device", id, "session", p.session, "err", err)
	}
	p.connected = s.publishLifecycle(id, events.EventTypeDeviceConnected, map[string]any{
		"session": p.session, "replica": s.cfg.Replica, "remote": remote, "login": login,
	}, nil)
	return p
}

// value is the key's JSON.
func (p *devicePresence) value() []byte {
	b, _ := json.Marshal(events.DevicePresence{
		Session: p.session, Replica: p.s.cfg.Replica, Remote: p.remote,
		ConnectedSince: p.since, LastSeen: time.Unix(0, p.lastSeen.Load()).UTC(),
	})
	return b
}

// touch notes a frame read from the device.
func (p *devicePresence) touch() { p.lastSeen.Store(time.Now().UnixNano()) }

// seen notes a pong and rewrites the key, if still the session's.
func (p *devicePresence) seen(ctx context.Context) {
	p.touch()
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	if p.lost || p.kv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, p.s.cfg.AckTimeout)
	defer cancel()
	var err error
	if p.rev != 0 {
		var rev uint64
		if rev, err = p.kv.Update(ctx, p.id, p.value(), p.rev); err == nil {
			p.rev = rev
			return
		}
	}
	if p.rev == 0 || isWrongSequence(err) || errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyNotFound) {
		err = p.claim(ctx)
	}
	if err != nil && (ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded)) {
		p.s.log.Warn("device presence not refreshed", "device", p.id, "session", p.session, "err", err)
	}
}

// claim writes the key when it is not a newer session's: absent (never
// written, expired, deleted by an older session that ended after this
// one wrote it), or an older session's. A newer session's key makes this
// session stop writing (lost). The caller holds writeMu.
func (p *devicePresence) claim(ctx context.Context) error {
	p.rev = 0
	e, err := p.kv.Get(ctx, p.id)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		rev, err := p.kv.Create(ctx, p.id, p.value())
		if err == nil {
			p.rev = rev
		}
		return err
	case err != nil:
		return err
	}
	var held events.DevicePresence
	if json.Unmarshal(e.Value(), &held) == nil && held.Session > p.session {
		p.lost = true // a newer session of the device owns it
		return nil
	}
	rev, err := p.kv.Update(ctx, p.id, p.value(), e.Revision())
	if err == nil {
		p.rev = rev
	}
	return err
}

// end ends the session: readErr is what ended its read loop (nil when
// the gateway ended it). It deletes the key if still the session's and
// publishes hookbus.device.disconnected.
func (p *devicePresence) end(readErr error) {
	code, reason := p.closer.why()
	if reason == "" {
		code, reason = endReason(readErr, p.s.calls.Err() != nil)
	}
	p.gone(reason, code)
}

// endReason says why a session the gateway did not close ended.
func endReason(readErr error, stopping bool) (websocket.StatusCode, string) {
	switch st := websocket.CloseStatus(readErr); {
	case stopping:
		return websocket.StatusGoingAway, "gateway shutting down"
	case st != -1:
		return st, "closed by the device"
	default:
		return websocket.StatusAbnormalClosure, "connection lost"
	}
}

// gone deletes the key if still the session's (compare-and-swap) and
// publishes hookbus.device.disconnected with reason and code; only its
// first call does.
func (p *devicePresence) gone(reason string, code websocket.StatusCode) {
	p.goneOnce.Do(func() { p.goneNow(reason, code) })
}

func (p *devicePresence) goneNow(reason string, code websocket.StatusCode) {
	defer p.s.life.done()
	p.writeMu.Lock()
	rev := p.rev
	p.rev, p.lost = 0, true // written no more
	p.writeMu.Unlock()
	if rev != 0 && p.kv != nil {
		// The session's context is over: a context of its own.
		ctx, cancel := context.WithTimeout(context.Background(), p.s.cfg.AckTimeout)
		err := p.kv.Delete(ctx, p.id, jetstream.LastRevision(rev))
		cancel()
		if err != nil && !isWrongSequence(err) {
			p.s.log.Warn("device presence not deleted (it expires)", "device", p.id, "session", p.session, "err", err)
		}
	}
	p.s.publishLifecycle(p.id, events.EventTypeDeviceDisconnected, map[string]any{
		"session": p.session, "replica": p.s.cfg.Replica, "reason": reason, "code": int(code),
		"duration_ms": time.Since(p.since).Milliseconds(),
	}, p.connected)
}

// DeviceListing is a device as `hookbus device list` shows it: its
// presence (when connected) and its token generation.
type DeviceListing struct {
	Device         string     `json:"device"`
	Connected      bool       `json:"connected"`
	Session        string     `json:"session,omitempty"`
	Replica        string     `json:"replica,omitempty"`
	Remote         string     `json:"remote,omitempty"`
	ConnectedSince *time.Time `json:"connected_since,omitempty"`
	LastSeen       *time.Time `json:"last_seen,omitempty"`
	Generation     uint64     `json:"generation"`
}

// ListDevices lists the devices with a key in hookbus_device_presence
// (connected) or a token generation in hookbus_devices (revoked at least
// once), by id.
func ListDevices(ctx context.Context, js jetstream.JetStream) ([]DeviceListing, error) {
	byID := map[string]*DeviceListing{}
	get := func(id string) *DeviceListing {
		d := byID[id]
		if d == nil {
			d = &DeviceListing{Device: id}
			byID[id] = d
		}
		return d
	}
	pkv, err := js.KeyValue(ctx, events.BucketDevicePresence)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", events.BucketDevicePresence, err)
	}
	ids, err := listKeys(ctx, pkv, ">")
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", events.BucketDevicePresence, err)
	}
	for _, id := range ids {
		e, err := pkv.Get(ctx, id)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // gone since listed
		}
		if err != nil {
			return nil, fmt.Errorf("bucket %s: %w", events.BucketDevicePresence, err)
		}
		var p events.DevicePresence
		if err := json.Unmarshal(e.Value(), &p); err != nil {
			return nil, fmt.Errorf("presence of device %s: %w", id, err)
		}
		d := get(id)
		d.Connected, d.Session, d.Replica, d.Remote = true, p.Session, p.Replica, p.Remote
		d.ConnectedSince, d.LastSeen = &p.ConnectedSince, &p.LastSeen
	}
	dkv, err := js.KeyValue(ctx, events.BucketDevices)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", events.BucketDevices, err)
	}
	keys, err := listKeys(ctx, dkv, deviceGenerationKey("*"))
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", events.BucketDevices, err)
	}
	for _, k := range keys {
		id := strings.TrimPrefix(k, deviceGenerationKey(""))
		g, err := DeviceGeneration(ctx, dkv, id)
		if err != nil {
			return nil, err
		}
		get(id).Generation = g
	}
	out := make([]DeviceListing, 0, len(byID))
	for _, d := range byID {
		out = append(out, *d)
	}
	slices.SortFunc(out, func(a, b DeviceListing) int { return strings.Compare(a.Device, b.Device) })
	return out, nil
}

// listKeys lists the keys of kv matching filter.
func listKeys(ctx context.Context, kv jetstream.KeyValue, filter string) ([]string, error) {
	l, err := kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil, err
	}
	defer func() { _ = l.Stop() }()
	var keys []string
	for k := range l.Keys() {
		keys = append(keys, k)
	}
	return keys, ctx.Err()
}
