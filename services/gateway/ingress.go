package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
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
	batchMode
)

// Stored is the answer to an event JetStream stored: 202 and this JSON.
type Stored struct {
	Stream    string `json:"stream"`
	Sequence  uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate"`
}

// postEvents is POST /events: one CloudEvent in binary or structured mode,
// or a batch of them, answered once JetStream stored them.
func (s *Service) postEvents(w http.ResponseWriter, r *http.Request) {
	m, p := requestMode(r.Header)
	if p != nil {
		writeProblem(w, p)
		return
	}
	body, p := s.readBody(w, r, m)
	if p != nil {
		writeProblem(w, p)
		return
	}
	if m == batchMode {
		s.postBatch(w, r, body)
		return
	}
	e, err := s.codec.Decode(cloudEventsHeader(r.Header, m), body)
	if err != nil {
		s.met.refused.Inc()
		writeProblem(w, refusal(err))
		return
	}
	if p := s.permitPublish(r, e); p != nil {
		writeProblem(w, p)
		return
	}
	s.accept(w, r, e)
}

// accept publishes e and answers 202 once JetStream stored it.
func (s *Service) accept(w http.ResponseWriter, r *http.Request, e *event.Event) {
	ack, err := s.publish(r, e)
	if err != nil {
		if r.Context().Err() == nil {
			writeProblem(w, refusal(err))
		}
		return
	}
	w.Header()["Content-Type"] = contentTypeJSON
	w.WriteHeader(http.StatusAccepted)
	var buf [128]byte
	_, _ = w.Write(appendStored(buf[:0], Stored{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}))
}

// contentTypeJSON is the Content-Type header of a JSON answer, shared by
// every answer: net/http only reads it, and Header.Set replaces the slice
// rather than writing into it.
var contentTypeJSON = []string{"application/json"}

// appendStored appends st as json.Encoder writes it (the JSON object and a
// newline) to dst, without the encoder's allocations for the usual stream
// name, which needs no escaping.
func appendStored(dst []byte, st Stored) []byte {
	if !plainJSONString(st.Stream) {
		b, _ := json.Marshal(st) // a Stored always encodes
		return append(append(dst, b...), '\n')
	}
	dst = append(dst, `{"stream":"`...)
	dst = append(dst, st.Stream...)
	dst = append(dst, `","seq":`...)
	dst = strconv.AppendUint(dst, st.Sequence, 10)
	dst = append(dst, `,"duplicate":`...)
	dst = strconv.AppendBool(dst, st.Duplicate)
	return append(dst, "}\n"...)
}

// plainJSONString reports whether encoding/json writes s as it is between
// quotes: printable ASCII without '"', '\\' and the characters it escapes
// for HTML ('<', '>', '&').
func plainJSONString(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c >= 0x7f, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// pathEvent reads the one CloudEvent, in binary or structured mode, of a
// request to a route that names its type (POST /events/{type}, POST
// /calls/{type}): a batch is refused with 415 and batchDetail, an event
// of another type than typ with 400.
func (s *Service) pathEvent(w http.ResponseWriter, r *http.Request, typ, batchDetail string) (*event.Event, *Problem) {
	m, p := requestMode(r.Header)
	if p == nil && m == batchMode {
		p = &Problem{Status: http.StatusUnsupportedMediaType, Code: codeUnsupportedMediaType, Detail: batchDetail}
	}
	if p != nil {
		return nil, p
	}
	body, p := s.readBody(w, r, m)
	if p != nil {
		return nil, p
	}
	e, err := s.codec.Decode(cloudEventsHeader(r.Header, m), body)
	if err != nil {
		return nil, refusal(err)
	}
	if e.Type() != typ {
		return nil, refusal(&events.ValidationError{Field: "type", Reason: fmt.Sprintf("%q is not the type of the path, %q", e.Type(), typ)})
	}
	return e, nil
}

// readBody reads the body up to the limit of mode m: a longer one is
// refused with 413, a body with a Content-Encoding with 415.
func (s *Service) readBody(w http.ResponseWriter, r *http.Request, m mode) ([]byte, *Problem) {
	// The body is the event or its data as it is: a coded one (gzip)
	// would be stored coded.
	if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return nil, &Problem{Status: http.StatusUnsupportedMediaType, Code: codeUnsupportedMediaType,
			Detail: fmt.Sprintf("Content-Encoding %q is not supported: send the body as it is", ce)}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.bodyLimit(m)))
	if err == nil {
		return body, nil
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, &Problem{Status: http.StatusRequestEntityTooLarge, Code: codeTooLarge,
			Detail: fmt.Sprintf("body is over %d bytes, more than an event within the limit of %d bytes can take", tooLarge.Limit, s.cfg.MaxEventSize)}
	}
	return nil, &Problem{Status: http.StatusBadRequest, Code: events.CodeInvalid, Detail: fmt.Sprintf("reading the body: %v", err)}
}

// publish hands e to the publisher (waiting for room in the window) and
// waits for JetStream's acknowledgement, both within the request.
// An error is logged here: when the client left (r's context ended) there
// is nobody to answer, and the event may still be stored (a retry with the
// same source and id is stored once).
func (s *Service) publish(r *http.Request, e *event.Event) (client.PublishAck, error) {
	pending, err := s.pub.Publish(r.Context(), *e)
	if err == nil {
		var ack client.PublishAck
		if ack, err = pending.Wait(r.Context()); err == nil {
			s.met.countStored(ack)
			return ack, nil
		}
	}
	s.met.refused.Inc()
	token := principalFrom(r.Context()).Name
	if r.Context().Err() != nil {
		s.log.Debug("client gone before the acknowledgement", "event_id", e.ID(), "event_type", e.Type(), "token", token, "err", err)
	} else {
		s.log.Warn("event not stored", "event_id", e.ID(), "event_type", e.Type(), "token", token, "err", err)
	}
	return client.PublishAck{}, err
}

// requestMode tells the content mode from the headers, as the HTTP binding
// does: structured when Content-Type is application/cloudevents+json,
// batch when it is application/cloudevents-batch+json, binary when
// ce-specversion is present. Anything else, other event formats included,
// is refused with 415.
func requestMode(h http.Header) (mode, *Problem) {
	ct := h.Get("Content-Type")
	// ParseMediaType (and its allocations) only for what can be one of
	// the binding's types: the media type it returns is ct's, lowercased.
	if containsFold(ct, "cloudevents") {
		if mt, _, err := mime.ParseMediaType(ct); err == nil && strings.HasPrefix(mt, "application/cloudevents") {
			switch mt {
			case contentTypeStructured:
				return structuredMode, nil
			case contentTypeBatch:
				return batchMode, nil
			}
			return 0, &Problem{Status: http.StatusUnsupportedMediaType, Code: codeUnsupportedMediaType,
				Detail: fmt.Sprintf("Content-Type %q is not supported: send %s (structured mode), %s (batch) or ce-* headers (binary mode)", ct, contentTypeStructured, contentTypeBatch)}
		}
	}
	if h.Get("Ce-Specversion") != "" {
		return binaryMode, nil
	}
	return 0, &Problem{Status: http.StatusUnsupportedMediaType, Code: codeUnsupportedMediaType,
		Detail: fmt.Sprintf("not a CloudEvent: Content-Type is %q and there is no ce-specversion header: send %s (structured mode) or ce-* headers (binary mode)", ct, contentTypeStructured)}
}

// bodyLimit is the largest body that can hold an event within the size
// limit: in binary mode the data, which is at most the limit; in
// structured mode the JSON event, where data_base64 takes 4/3 of the data,
// with room for the attributes and JSON escapes; a batch has the same
// limit as one structured event. An event that gets past it is still held
// to the limit once encoded (413 then too).
func (s *Service) bodyLimit(m mode) int64 {
	if m != binaryMode {
		return maxBodyLimit(s.cfg.MaxEventSize)
	}
	return int64(s.cfg.MaxEventSize)
}

// maxBodyLimit is the body limit of structured and batch mode, the
// largest of any route, for events of at most maxEventSize bytes.
func maxBodyLimit(maxEventSize int) int64 {
	n := int64(maxEventSize)
	return n + n/3 + 64<<10
}

// cloudEventsHeader returns the headers of r that make the event, as NATS
// headers for events.Codec.Decode, whose binary mode is the HTTP binding's
// (ce-* headers, percent-encoded values, datacontenttype in Content-Type):
// Content-Type, and in binary mode the ce-* headers. The others (Host,
// User-Agent, ...) are not part of the event. Names are lowercased here,
// the attributes' from constants, so that Decode need not lowercase them
// again; names that meet once lowercased keep all their values, so Decode
// still refuses a header given twice.
func cloudEventsHeader(h http.Header, m mode) nats.Header {
	out := make(nats.Header, 8)
	for k, vs := range h {
		if strings.EqualFold(k, "Content-Type") ||
			m == binaryMode && len(k) > len(events.HeaderPrefix) && strings.EqualFold(k[:len(events.HeaderPrefix)], events.HeaderPrefix) {
			name := lowerName(k)
			if prev, ok := out[name]; ok {
				vs = append(slices.Clip(prev), vs...)
			}
			out[name] = vs
		}
	}
	return out
}

// lowerName is the lowercase of header name k: a constant for the names
// of the binding's attributes as net/http canonicalizes them.
func lowerName(k string) string {
	switch k {
	case "Content-Type":
		return events.HeaderContentType
	case "Ce-Specversion":
		return "ce-specversion"
	case "Ce-Id":
		return "ce-id"
	case "Ce-Source":
		return "ce-source"
	case "Ce-Type":
		return "ce-type"
	case "Ce-Subject":
		return "ce-subject"
	case "Ce-Time":
		return "ce-time"
	case "Ce-Dataschema":
		return "ce-dataschema"
	}
	return strings.ToLower(k)
}

// containsFold reports whether s contains the lowercase ASCII substr,
// comparing without regard to case.
func containsFold(s, substr string) bool {
	for i := 0; i+len(substr) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(substr)], substr) {
			return true
		}
	}
	return false
}
