package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

// Media types of the CloudEvents HTTP binding.
const (
	contentTypeStructured = event.ApplicationCloudEventsJSON      // application/cloudevents+json
	contentTypeBatch      = event.ApplicationCloudEventsBatchJSON // application/cloudevents-batch+json
	contentTypeProblem    = "application/problem+json"
)

// mode is a content mode of the CloudEvents HTTP binding.
type mode int

const (
	binaryMode mode = iota
	structuredMode
)

// Stored is the answer to an event JetStream stored: 202 and this JSON.
type Stored struct {
	Stream    string `json:"stream"`
	Sequence  uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate"`
}

// postEvents is POST /events: one CloudEvent in binary or structured mode,
// answered once JetStream stored it.
func (s *Service) postEvents(w http.ResponseWriter, r *http.Request) {
	m, perr := requestMode(r.Header)
	if perr != nil {
		writeProblem(w, perr)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.bodyLimit(m)))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeProblem(w, &problem{Status: http.StatusRequestEntityTooLarge, Code: codeTooLarge,
				Detail: fmt.Sprintf("body is over %d bytes, more than an event within the limit of %d bytes can take", tooLarge.Limit, s.cfg.MaxEventSize)})
			return
		}
		writeProblem(w, &problem{Status: http.StatusBadRequest, Code: events.CodeInvalid, Detail: fmt.Sprintf("reading the body: %v", err)})
		return
	}
	e, err := s.codec.Decode(cloudEventsHeader(r.Header, m), body)
	if err != nil {
		writeProblem(w, refusal(err))
		return
	}
	ack, err := s.publish(r, e)
	if err != nil {
		if r.Context().Err() != nil {
			// The client left; the event may still be stored, and a
			// retry with the same source and id is stored once.
			s.log.Debug("client gone before the acknowledgement", "event_id", e.ID(), "event_type", e.Type(), "err", err)
			return
		}
		s.log.Warn("event not stored", "event_id", e.ID(), "event_type", e.Type(), "err", err)
		writeProblem(w, refusal(err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(Stored{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate})
}

// publish hands e to the publisher (waiting for room in the window) and
// waits for JetStream's acknowledgement, both within the request.
func (s *Service) publish(r *http.Request, e *event.Event) (client.PublishAck, error) {
	pending, err := s.pub.Publish(r.Context(), *e)
	if err != nil {
		return client.PublishAck{}, err
	}
	return pending.Wait(r.Context())
}

// requestMode tells the content mode from the headers, as the HTTP binding
// does: structured when Content-Type is application/cloudevents+json,
// binary when ce-specversion is present. Anything else, the batch and
// other event formats included, is refused with 415.
func requestMode(h http.Header) (mode, *problem) {
	ct := h.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err == nil && strings.HasPrefix(mt, "application/cloudevents") {
		if mt == contentTypeStructured {
			return structuredMode, nil
		}
		return 0, &problem{Status: http.StatusUnsupportedMediaType, Code: codeUnsupportedMediaType,
			Detail: fmt.Sprintf("Content-Type %q is not supported: send one event, as %s (structured mode) or with ce-* headers (binary mode)", ct, contentTypeStructured)}
	}
	if h.Get("Ce-Specversion") != "" {
		return binaryMode, nil
	}
	return 0, &problem{Status: http.StatusUnsupportedMediaType, Code: codeUnsupportedMediaType,
		Detail: fmt.Sprintf("not a CloudEvent: Content-Type is %q and there is no ce-specversion header: send %s (structured mode) or ce-* headers (binary mode)", ct, contentTypeStructured)}
}

// bodyLimit is the largest body that can hold an event within the size
// limit: in binary mode the data, which is at most the limit; in
// structured mode the JSON event, where data_base64 takes 4/3 of the data,
// with room for the attributes and JSON escapes. An event that gets past
// it is still held to the limit once encoded (413 then too).
func (s *Service) bodyLimit(m mode) int64 {
	n := int64(s.cfg.MaxEventSize)
	if m == structuredMode {
		return n + n/3 + 64<<10
	}
	return n
}

// cloudEventsHeader returns the headers of r that make the event, as NATS
// headers for events.Codec.Decode, whose binary mode is the HTTP binding's
// (ce-* headers, percent-encoded values, datacontenttype in Content-Type):
// Content-Type, and in binary mode the ce-* headers. The others (Host,
// User-Agent, ...) are not part of the event.
func cloudEventsHeader(h http.Header, m mode) nats.Header {
	out := make(nats.Header, 8)
	for k, vs := range h {
		if strings.EqualFold(k, "Content-Type") ||
			m == binaryMode && len(k) > len(events.HeaderPrefix) && strings.EqualFold(k[:len(events.HeaderPrefix)], events.HeaderPrefix) {
			out[k] = vs
		}
	}
	return out
}
