package gateway

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"unicode/utf8"

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

// Problem is an RFC 9457 problem details object, the body of every
// refusal (Content-Type application/problem+json). Code is the refusal's
// code as in the wire contract's error shape (invalid, too_large,
// unsupported_media_type, unauthorized, forbidden, rate_limited,
// too_many_headers, unavailable, internal); Field and Reason are
// those of the events.ValidationError that refused an event.
type Problem struct {
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
func refusal(err error) *Problem {
	var ve *events.ValidationError
	switch {
	case errors.As(err, &ve) && ve.Field == "size":
		return &Problem{Status: http.StatusRequestEntityTooLarge, Code: codeTooLarge, Detail: ve.Error(), Field: ve.Field, Reason: ve.Reason}
	case errors.As(err, &ve):
		return &Problem{Status: http.StatusBadRequest, Code: events.CodeInvalid, Detail: ve.Error(), Field: ve.Field, Reason: ve.Reason}
	case errors.Is(err, client.ErrNotStored), errors.Is(err, client.ErrPublisherClosed):
		return &Problem{Status: http.StatusServiceUnavailable, Code: events.CodeUnavailable, Detail: err.Error()}
	default:
		return &Problem{Status: http.StatusInternalServerError, Code: events.CodeInternal, Detail: err.Error()}
	}
}

// maxProblemText is the most bytes of a problem's detail and reason: they
// may quote what the request sent, which must not come back at any length.
const maxProblemText = 256

// clip cuts s to maxProblemText bytes (at a character's start), marking the
// cut with an ellipsis.
func clip(s string) string {
	if len(s) <= maxProblemText {
		return s
	}
	cut := maxProblemText
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// fill sets p's type and title from its code and status, and bounds its
// detail and reason.
func (p *Problem) fill() *Problem {
	p.Type = problemTypeBase + string(p.Code)
	p.Title = http.StatusText(p.Status)
	p.Detail, p.Reason = clip(p.Detail), clip(p.Reason)
	return p
}

// writeProblem answers p.
func writeProblem(w http.ResponseWriter, p *Problem) {
	p.fill()
	h := w.Header()
	h.Set("Content-Type", contentTypeProblem)
	if p.Status == http.StatusServiceUnavailable {
		h.Set("Retry-After", strconv.Itoa(1))
	}
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}
