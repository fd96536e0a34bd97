package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/events"
)

// Pushes to a device (docs/protocol.md, "Device sessions"): stored in
// HOOKBUS_DEVICE_PUSHES, which publishes each again on
// hookbus.device.<id>.push. A session subscribes to that subject first,
// then sends what is stored after the device's cursor (key cursor.<id>
// in hookbus_devices: the last stream sequence it acknowledged), then the
// live copies; a copy whose Nats-Last-Sequence is not the last sequence
// sent, or one dropped from the session's buffer, makes it read the
// stream again from there.
const (
	// devicePushBuffer is how many live pushes a session holds while its
	// writer is busy; a push beyond is dropped and read again from the
	// stream.
	devicePushBuffer = 256
	// devicePushTimeout is how long a device has to take a push before
	// its socket is closed.
	devicePushTimeout = 10 * time.Second
	// maxUnackedPushes bounds what a session remembers of the pushes the
	// device has not acknowledged yet (their stream sequences): a device
	// further behind gets its cursor moved only once it acknowledges one
	// of the last maxUnackedPushes.
	maxUnackedPushes = 10_000
	// cursorWriteEvery spaces a session's writes of its device's cursor.
	cursorWriteEvery = time.Second
	// pushRecheckAfter is when a session reads the stream once more after
	// its catch-up: in a cluster, a push stored on another server before
	// the session's subscription reached it is published again to nobody.
	pushRecheckAfter = 5 * time.Second
)

// deviceCursorKey is the key of a device's push cursor in hookbus_devices.
func deviceCursorKey(id string) string { return "cursor." + id }

// pushFault, set by tests only, sees each live push before the session
// buffers it: drop loses it as core NATS may; overflow drops it as a full
// buffer does.
var pushFault atomic.Pointer[func(seq uint64) (drop, overflow bool)]

// devicePusher sends the pushes of one device session, in stream order,
// from one goroutine, and keeps the device's cursor.
type devicePusher struct {
	s    *Service
	conn *websocket.Conn
	id   string

	sub    *nats.Subscription
	live   chan *nats.Msg
	gap    chan struct{}      // a live push was dropped
	begin  chan struct{}      // closed by start
	dirty  chan struct{}      // the device acknowledged pushes
	cancel context.CancelFunc // ends run and keepCursor
	wg     sync.WaitGroup
	once   sync.Once

	mu     sync.Mutex
	sent   uint64   // pushes sent in this session (K of push_ack)
	ackedK uint64   // the device's last push_ack
	seqs   []uint64 // stream sequences of the last pushes sent, not acknowledged
	acked  uint64   // the highest stream sequence acknowledged

	// The cursor goroutine's, then stop's (after it ended).
	kv    jetstream.KeyValue
	saved uint64 // the cursor as last written or read
	rev   uint64 // its revision, 0 for none
}

// startDevicePushes subscribes to the pushes of device id for the session
// on conn (the subscription is flushed by the session's caller); they are
// sent once start is called: after the session's first token frame.
func (s *Service) startDevicePushes(ctx context.Context, conn *websocket.Conn, id string) (*devicePusher, error) {
	ctx, cancel := context.WithCancel(ctx)
	p := &devicePusher{
		s: s, conn: conn, id: id,
		live:   make(chan *nats.Msg, devicePushBuffer),
		gap:    make(chan struct{}, 1),
		begin:  make(chan struct{}),
		dirty:  make(chan struct{}, 1),
		cancel: cancel,
	}
	sub, err := s.nc.Subscribe(events.DevicePushSubject(id), p.receive)
	if err != nil {
		cancel()
		return nil, err
	}
	p.sub = sub
	p.wg.Add(1)
	go p.run(ctx)
	return p, nil
}

// receive buffers a live push; it never blocks the NATS connection.
func (p *devicePusher) receive(m *nats.Msg) {
	if f := pushFault.Load(); f != nil {
		seq, _ := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		switch drop, overflow := (*f)(seq); {
		case drop:
			return
		case overflow:
			p.signalGap()
			return
		}
	}
	select {
	case p.live <- m:
	default:
		p.signalGap()
	}
}

func (p *devicePusher) signalGap() {
	select {
	case p.gap <- struct{}{}:
	default:
	}
}

// start lets the session's pushes go to the device.
func (p *devicePusher) start() { p.once.Do(func() { close(p.begin) }) }

// stop ends the session's pushes and writes the device's cursor a last
// time.
func (p *devicePusher) stop() {
	_ = p.sub.Unsubscribe()
	p.cancel()
	p.wg.Wait()
	if p.kv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.s.cfg.AckTimeout)
	defer cancel()
	p.saveCursor(ctx)
}

// run sends what is stored after the cursor, then the live pushes.
func (p *devicePusher) run(ctx context.Context) {
	defer p.wg.Done()
	select {
	case <-ctx.Done():
		return
	case <-p.begin:
	}
	stream, err := p.s.js.Stream(ctx, events.StreamDevicePushes)
	var kv jetstream.KeyValue
	if err == nil {
		kv, err = p.s.devicesKV.get(ctx, p.s.js)
	}
	var cursor, rev uint64
	if err == nil {
		cursor, rev, err = readCursor(ctx, kv, p.id)
	}
	if err != nil {
		p.fail(ctx, err)
		return
	}
	if last := stream.CachedInfo().State.LastSeq; cursor > last {
		// The stream was made again since (its sequences start at 1):
		// the cursor belongs to the old one.
		p.s.log.Warn("device pushes: cursor beyond the stream, read from its start", "device", p.id, "cursor", cursor, "last", last)
		cursor = 0
	}
	p.kv, p.saved, p.rev = kv, cursor, rev
	p.mu.Lock()
	p.acked = cursor
	p.mu.Unlock()
	p.wg.Add(1)
	go p.keepCursor(ctx)

	last := cursor // the stream sequence last sent
	subject := events.DeviceOutSubject(p.id)
	catchUp := func() error {
		for {
			m, err := stream.GetMsg(ctx, last+1, jetstream.WithGetMsgSubject(subject))
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			if err := p.send(ctx, m.Sequence, m.Data); err != nil {
				return err
			}
			last = m.Sequence
		}
	}
	recheck := time.NewTimer(pushRecheckAfter)
	defer recheck.Stop()
	err = catchUp()
	for err == nil {
		select {
		case <-ctx.Done():
			return
		case <-p.gap:
			err = catchUp()
		case <-recheck.C:
			err = catchUp()
		case m := <-p.live:
			seq, _ := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
			if seq <= last {
				continue // sent by a catch-up
			}
			if m.Header.Get("Nats-Last-Sequence") != strconv.FormatUint(last, 10) {
				// A push between the last one sent and this one did not
				// arrive live: read them from the stream (this one
				// included, unless it is gone from there already).
				if err = catchUp(); err != nil || seq <= last {
					continue
				}
			}
			if err = p.send(ctx, seq, m.Data); err == nil {
				last = seq
			}
		}
	}
	p.fail(ctx, err)
}

// fail closes the socket after a push could not be read or sent.
func (p *devicePusher) fail(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return // the session ended
	}
	var ws websocket.CloseError
	if errors.As(err, &ws) || errors.Is(err, errPushNotTaken) {
		return // the socket is closed already
	}
	p.s.log.Warn("device pushes: cannot read the stream", "device", p.id, "err", err)
	_ = p.conn.Close(websocket.StatusTryAgainLater, "gateway cannot read the pushes: connect again")
}

// errPushNotTaken is a push the device did not take in time.
var errPushNotTaken = errors.New("push not taken")

// send writes one push, counted before it is written (a device may
// acknowledge it as soon as it arrives). A push the device does not take
// within devicePushTimeout closes the socket.
func (p *devicePusher) send(ctx context.Context, seq uint64, data []byte) error {
	p.mu.Lock()
	p.sent++
	if len(p.seqs) == maxUnackedPushes {
		p.seqs = p.seqs[1:]
	}
	p.seqs = append(p.seqs, seq)
	p.mu.Unlock()
	typ, frame := pushMessage(seq, data)
	wctx, cancel := context.WithTimeout(ctx, devicePushTimeout)
	defer cancel()
	if err := p.conn.Write(wctx, typ, frame); err != nil {
		_ = p.conn.CloseNow()
		return fmt.Errorf("%w: %w", errPushNotTaken, err)
	}
	return nil
}

// pushFrame carries a JSON push to the device, with its stream sequence:
// a device that cares drops a push it has seen (at least once: a push
// not acknowledged is sent again at the next connection).
type pushFrame struct {
	Type string          `json:"type"` // "push"
	Seq  uint64          `json:"seq"`
	Data json.RawMessage `json:"data"`
}

// pushMessage is the frame of push seq: a push text frame when data is
// JSON, else a binary frame of its bytes (which carries no sequence).
func pushMessage(seq uint64, data []byte) (websocket.MessageType, []byte) {
	if !json.Valid(data) {
		return websocket.MessageBinary, data
	}
	frame, _ := json.Marshal(pushFrame{Type: "push", Seq: seq, Data: data})
	return websocket.MessageText, frame
}

// ack takes a push_ack frame: the device received the first K pushes of
// the session. An ack beyond what was sent, or below the last one, is an
// error (the session closes with 1008).
func (p *devicePusher) ack(b []byte) error {
	var f struct {
		Seq *uint64 `json:"seq"`
	}
	if json.Unmarshal(b, &f) != nil || f.Seq == nil {
		return errors.New("push_ack: seq must be the count of pushes received")
	}
	k := *f.Seq
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case k > p.sent:
		return fmt.Errorf("push_ack %d: only %d pushes were sent", k, p.sent)
	case k < p.ackedK:
		return fmt.Errorf("push_ack %d after %d: acknowledgements only go forward", k, p.ackedK)
	}
	// seqs[0] is push number first; an ack below it (a device more than
	// maxUnackedPushes behind) moves nothing.
	if first := p.sent - uint64(len(p.seqs)) + 1; k >= first {
		i := k - first
		p.acked = max(p.acked, p.seqs[i])
		p.seqs = p.seqs[i+1:]
	}
	p.ackedK = k
	select {
	case p.dirty <- struct{}{}:
	default:
	}
	return nil
}

// keepCursor writes the device's cursor after acknowledgements, at most
// once every cursorWriteEvery (stop writes the last).
func (p *devicePusher) keepCursor(ctx context.Context) {
	defer p.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.dirty:
		}
		p.saveCursor(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(cursorWriteEvery):
		}
	}
}

// saveCursor writes the acknowledged sequence as the device's cursor by
// compare-and-swap, never below what is there: another session of the
// device may have moved it further.
func (p *devicePusher) saveCursor(ctx context.Context) {
	p.mu.Lock()
	target := p.acked
	p.mu.Unlock()
	key := deviceCursorKey(p.id)
	for attempt := 0; target > p.saved && attempt < 5; attempt++ {
		value := []byte(strconv.FormatUint(target, 10))
		var rev uint64
		var err error
		if p.rev == 0 {
			rev, err = p.kv.Create(ctx, key, value)
		} else {
			rev, err = p.kv.Update(ctx, key, value, p.rev)
		}
		if err == nil {
			p.saved, p.rev = target, rev
			return
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !isWrongSequence(err) {
			p.s.log.Warn("device pushes: cursor not written", "device", p.id, "err", err)
			return
		}
		// Written by another session since: read it, and go on only if
		// it is still below.
		if p.saved, p.rev, err = readCursor(ctx, p.kv, p.id); err != nil {
			p.s.log.Warn("device pushes: cursor not read", "device", p.id, "err", err)
			return
		}
	}
}

// readCursor returns the cursor of device id and its revision (0, 0 when
// there is none).
func readCursor(ctx context.Context, kv jetstream.KeyValue, id string) (seq, rev uint64, err error) {
	e, err := kv.Get(ctx, deviceCursorKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	seq, err = strconv.ParseUint(string(e.Value()), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("device %s cursor %q: %w", id, e.Value(), err)
	}
	return seq, e.Revision(), nil
}
