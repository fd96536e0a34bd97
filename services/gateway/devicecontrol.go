package gateway

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

// Close statuses of a device socket beyond WebSocket's own
// (docs/protocol.md, "Device sessions").
const (
	// StatusTokenRevoked: the device was revoked: log in again with
	// credentials.
	StatusTokenRevoked websocket.StatusCode = 4001
	// StatusReplaced: a newer connection of the same device replaced this
	// one: do not reconnect.
	StatusReplaced websocket.StatusCode = 4002
	// StatusStopped: a plugin stopped the device (the close reason says
	// why): do not reconnect.
	StatusStopped websocket.StatusCode = 4003
)

// sessionFault, set by tests only, is called by a session of device id
// right after it took its session id, before it announces it.
var sessionFault atomic.Pointer[func(id string)]

// newSessionID is a device session's id: 16 hex digits of its start time
// (nanoseconds) then 16 random ones, so that ids sort by start.
func newSessionID() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixNano()))
	_, _ = rand.Read(b[8:])
	return hex.EncodeToString(b[:])
}

// deviceControl handles a control notice (hookbus.device.<id>.ctl.*) for
// the session sess of device id, connected with a token of generation
// gen. It never blocks the subscription: closing a socket waits for the
// device's close frame.
func (s *Service) deviceControl(ctx context.Context, closer *deviceCloser, id, sess string, gen uint64, m *nats.Msg) {
	switch strings.TrimPrefix(m.Subject, events.DeviceCtlSubject(id, "")) {
	case events.DeviceCtlRevoked:
		// Only a hint: whoever may publish it can only make the gateway
		// read the generation again.
		go s.closeIfRevoked(ctx, closer, id, gen)
	case events.DeviceCtlSession:
		// One connection per device: a newer session (a greater id) of
		// the device, on any replica, replaces this one. An older one
		// announcing itself was slow to subscribe, and may not have heard
		// this one's announcement: announce again, so that it goes.
		switch other := string(m.Data); {
		case other > sess:
			go closer.close(StatusReplaced, "replaced by a newer connection of this device")
		case other < sess:
			go func() {
				if err := s.announceSession(id, sess); err != nil {
					s.log.Warn("device session: announcement not sent again", "device", id, "err", err)
				}
			}()
		}
	case events.DeviceCtlStop:
		reason := "stopped by a plugin"
		if len(m.Data) > 0 && utf8.Valid(m.Data) {
			reason = closeReason(string(m.Data))
		}
		go closer.close(StatusStopped, reason)
	}
}

// announceSession tells the other sessions of device id that session
// sess started (they close with StatusReplaced).
func (s *Service) announceSession(id, sess string) error {
	if err := s.nc.Publish(events.DeviceCtlSubject(id, events.DeviceCtlSession), []byte(sess)); err != nil {
		return err
	}
	return s.nc.FlushTimeout(s.cfg.AckTimeout)
}

// Errors of a device's call, in its reply frame.
const (
	codeNoHandler   events.ErrorCode = "no_handler"
	codeCallFailed  events.ErrorCode = "call_failed"
	codeCallTimeout events.ErrorCode = "call_timeout"
)

// callFrame is a device's call: {"type":"call","ref":R,"data":<JSON>}.
type callFrame struct {
	Ref  string          `json:"ref"`
	Data json.RawMessage `json:"data"`
}

// replyFrame answers a call: data, or error.
type replyFrame struct {
	Type  string          `json:"type"` // "reply"
	Ref   string          `json:"ref"`
	Data  json.RawMessage `json:"data,omitempty"`
	Error *replyError     `json:"error,omitempty"`
}

// replyError is why a call has no reply: code and detail, as a problem.
type replyError struct {
	Code   events.ErrorCode `json:"code"`
	Detail string           `json:"detail"`
}

// maxCallRef is the longest ref of a call frame.
const maxCallRef = 64

// parseCall reads a call frame; the error is the reason to close the
// socket (1003).
func parseCall(b []byte) (callFrame, error) {
	var f callFrame
	if err := json.Unmarshal(b, &f); err != nil {
		return f, errors.New("a call frame is {\"type\":\"call\",\"ref\":R,\"data\":<JSON>}")
	}
	if f.Ref == "" || len(f.Ref) > maxCallRef {
		return f, errors.New("a call frame's ref is a string of 1 to 64 bytes")
	}
	if len(f.Data) == 0 {
		return f, errors.New("a call frame carries its JSON in data")
	}
	return f, nil
}

// deviceCall runs the chain of hookbus.device.call on call f of device
// id (source /devices/<id>, which plugins cannot change) and returns what
// to answer (a plugin that halts the chain answers with its state): the reply frame, or, when the chain's final state says
// "stop", the reason to close the socket with StatusStopped.
func (s *Service) deviceCall(ctx context.Context, id string, f callFrame) (reply []byte, stop string) {
	answer := func(data json.RawMessage, code events.ErrorCode, detail string) []byte {
		r := replyFrame{Type: "reply", Ref: f.Ref, Data: data}
		if code != "" {
			r.Data, r.Error = nil, &replyError{Code: code, Detail: detail}
		}
		b, _ := json.Marshal(r)
		return b
	}
	e := event.New()
	e.SetID(newDeviceEventID())
	e.SetSource("/devices/" + id)
	e.SetType(events.EventTypeDeviceCall)
	e.SetTime(time.Now())
	if err := e.SetData(event.ApplicationJSON, []byte(f.Data)); err != nil {
		return answer(nil, codeCallFailed, err.Error()), ""
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DeviceCallTimeout)
	defer cancel()
	res, err := s.bus.Call(ctx, e)
	var failed *client.Error
	switch {
	case errors.As(err, &failed):
		return answer(nil, codeCallFailed, "the chain of "+events.EventTypeDeviceCall+" failed: "+failed.Error()), ""
	case errors.Is(err, client.ErrNoDispatcher):
		return answer(nil, events.CodeUnavailable, "no dispatcher runs the chain of "+events.EventTypeDeviceCall), ""
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		return answer(nil, codeCallTimeout, "the chain of "+events.EventTypeDeviceCall+" did not answer within "+s.cfg.DeviceCallTimeout.String()), ""
	case err != nil:
		return answer(nil, events.CodeUnavailable, "the chain of "+events.EventTypeDeviceCall+" did not answer"), ""
	case len(res.Trace) == 0:
		return answer(nil, codeNoHandler, "no plugin runs the chain of "+events.EventTypeDeviceCall), ""
	}
	var state struct {
		Reply json.RawMessage `json:"reply"`
		Stop  *string         `json:"stop"`
	}
	if json.Unmarshal(res.State, &state) != nil {
		return answer(nil, codeCallFailed, "the chain's final state is not a JSON object"), ""
	}
	if state.Stop != nil {
		reason := *state.Stop
		if reason == "" {
			reason = "stopped by a plugin"
		}
		return nil, closeReason(reason)
	}
	if len(state.Reply) == 0 {
		return answer(nil, codeCallFailed, "the chain's final state has no reply"), ""
	}
	return answer(state.Reply, "", ""), ""
}
