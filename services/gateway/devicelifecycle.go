package gateway

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/hookbus/hookbus/pkg/events"
)

// Bounds of the device lifecycle events a gateway publishes.
const (
	// lifecycleInFlight is how many lifecycle events a gateway has in
	// flight to JetStream at most; beyond, an event is dropped and
	// counted.
	lifecycleInFlight = 64
	// socketErrorRate is the socket_error events per second (and burst)
	// a gateway publishes at most, so that a flood of bad upgrades cannot
	// flood HOOKBUS_LIFECYCLE; beyond, they are dropped and counted.
	socketErrorRate = 50
)

// deviceLifecycle bounds the publishing of device lifecycle events and
// counts what Run waits for when it stops: the device sessions (their
// presence deleted, their disconnected event sent) and the events in
// flight.
type deviceLifecycle struct {
	slots        chan struct{}
	socketErrors *rate.Limiter

	mu   sync.Mutex
	busy int           // sessions and events in flight
	idle chan struct{} // closed when busy drops to 0; nil while 0
}

func newDeviceLifecycle() *deviceLifecycle {
	return &deviceLifecycle{
		slots:        make(chan struct{}, lifecycleInFlight),
		socketErrors: rate.NewLimiter(socketErrorRate, socketErrorRate),
	}
}

// add counts a session or an event in flight; done uncounts it.
func (l *deviceLifecycle) add() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.busy == 0 {
		l.idle = make(chan struct{})
	}
	l.busy++
}

func (l *deviceLifecycle) done() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.busy--; l.busy == 0 {
		close(l.idle)
		l.idle = nil
	}
}

// waitDevices waits until every device session ended and every lifecycle
// event was sent, or ctx ends (an error then).
func (s *Service) waitDevices(ctx context.Context) error {
	s.life.mu.Lock()
	idle, busy := s.life.idle, s.life.busy
	s.life.mu.Unlock()
	if idle == nil {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%d device sessions or lifecycle events still in flight: %w", busy, ctx.Err())
	}
}

// publishLifecycle publishes the lifecycle event typ about device id
// with data on hookbus.lifecycle.device.<id>, source /gateway/<replica>,
// from a goroutine (never blocking the caller), with a JetStream
// acknowledgement, after the channel after is closed (nil: at once); a
// failure is logged, an event beyond lifecycleInFlight dropped and
// counted. The channel it returns is closed once the event is stored,
// dropped or failed.
func (s *Service) publishLifecycle(id, typ string, data map[string]any, after <-chan struct{}) <-chan struct{} {
	done := make(chan struct{})
	e := event.New()
	e.SetID(newDeviceEventID())
	e.SetSource("/gateway/" + s.cfg.Replica)
	e.SetType(typ)
	e.SetTime(time.Now())
	if err := e.SetData(event.ApplicationJSON, data); err != nil {
		s.log.Warn("device lifecycle event not published", "device", id, "type", typ, "err", err)
		close(done)
		return done
	}
	msg, err := s.codec.Encode(events.DeviceLifecycleSubject(id), &e)
	if err != nil {
		s.log.Warn("device lifecycle event not published", "device", id, "type", typ, "err", err)
		close(done)
		return done
	}
	select {
	case s.life.slots <- struct{}{}:
	default:
		s.met.lifecycleDropped.WithLabelValues("full").Inc()
		close(done)
		return done
	}
	s.life.add()
	go func() {
		defer s.life.done()
		defer func() { <-s.life.slots }()
		defer close(done)
		if after != nil {
			<-after // bounded: the earlier event's publish ends within AckTimeout
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.AckTimeout)
		defer cancel()
		if _, err := s.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(events.StreamLifecycle)); err != nil {
			s.met.lifecycleDropped.WithLabelValues("failed").Inc()
			s.log.Warn("device lifecycle event not stored", "device", id, "type", typ, "event_id", e.ID(), "err", err)
		}
	}()
	return done
}

// refuseDevice answers a device's upgrade with problem p and publishes
// hookbus.device.socket_error about device id ("" or invalid:
// _unknown), at most socketErrorRate a second.
func (s *Service) refuseDevice(w http.ResponseWriter, r *http.Request, id string, p *Problem) {
	writeProblem(w, p)
	switch p.Code {
	case codeInvalidAuthHeader, codeAuthenticationFailed, codeInvalidToken, codeTokenExpired, codeTokenRevoked:
	default:
		return // the gateway's own trouble (devices off, NATS), not the device's
	}
	if !s.life.socketErrors.Allow() {
		s.met.lifecycleDropped.WithLabelValues("rate").Inc()
		return
	}
	s.publishLifecycle(id, events.EventTypeDeviceSocketError, map[string]any{
		"reason": string(p.Code), "remote": r.RemoteAddr, "detail": p.Detail,
	}, nil)
}
