package gateway

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

// Codes of the gateway's refusals that no NATS service answers with; the
// others are events' (invalid, unavailable, internal).
const (
	codeTooLarge             events.ErrorCode = "too_large"
	codeUnsupportedMediaType events.ErrorCode = "unsupported_media_type"
)

// problemTypeBase prefixes every problem type: the code of the refusal,
// which the gateway's section of the protocol documents.
const problemTypeBase = "https://github.com/hookbus/hookbus/blob/main/docs/protocol.md#http-gateway-"

// problem is an RFC 9457 problem details object. Code is the refusal's
// code in the wire contract's error shape ({"code", "message"}), Field and
// Reason those of an events.ValidationError.
type problem struct {
	Type   string           `json:"type"`
	Title  string           `json:"title"`
	Status int              `json:"status"`
	Detail string           `json:"detail,omitempty"`
	Code   events.ErrorCode `json:"code"`
	Field  string           `json:"field,omitempty"`
	Reason string           `json:"reason,omitempty"`
}

// refusal is the problem that answers err, an error of decoding or
// publishing an event: 400 for an invalid event, 413 for one over the size
// limit, 503 when JetStream did not store it (try again, with the same
// source and id), 500 otherwise.
func refusal(err error) *problem {
	var ve *events.ValidationError
	switch {
	case errors.As(err, &ve) && ve.Field == "size":
		return &problem{Status: http.StatusRequestEntityTooLarge, Code: codeTooLarge, Detail: ve.Error(), Field: ve.Field, Reason: ve.Reason}
	case errors.As(err, &ve):
		return &problem{Status: http.StatusBadRequest, Code: events.CodeInvalid, Detail: ve.Error(), Field: ve.Field, Reason: ve.Reason}
	case errors.Is(err, client.ErrNotStored), errors.Is(err, client.ErrPublisherClosed):
		return &problem{Status: http.StatusServiceUnavailable, Code: events.CodeUnavailable, Detail: err.Error()}
	default:
		return &problem{Status: http.StatusInternalServerError, Code: events.CodeInternal, Detail: err.Error()}
	}
}

// writeProblem answers p, filling in its type and title.
func writeProblem(w http.ResponseWriter, p *problem) {
	p.Type = problemTypeBase + string(p.Code)
	p.Title = http.StatusText(p.Status)
	h := w.Header()
	h.Set("Content-Type", contentTypeProblem)
	if p.Status == http.StatusServiceUnavailable {
		h.Set("Retry-After", strconv.Itoa(1))
	}
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}
