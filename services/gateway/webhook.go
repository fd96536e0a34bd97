package gateway

import (
	"encoding/json"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"

	"github.com/hookbus/hookbus/pkg/events"
)

// Headers a webhook sender names its delivery with; the first one set is
// the event's id, so a redelivery is stored once.
var webhookIDHeaders = []string{"Idempotency-Key", "Webhook-Id"}

// webhookSourcePrefix starts the source of an event made from a webhook;
// the principal's name follows.
const webhookSourcePrefix = "/gateway/"

// postWebhook is POST /events/{type}: a plain JSON body becomes the data
// of a CloudEvent of that type (id from Idempotency-Key or webhook-id,
// else generated; source /gateway/<token name>); a request that is a
// CloudEvent already (binary or structured mode) is taken as it is, its
// type the path's. Answered as POST /events.
func (s *Service) postWebhook(w http.ResponseWriter, r *http.Request) {
	typ := r.PathValue("type")
	if p := s.permit(r, ActionPublish, typ); p != nil {
		writeProblem(w, p)
		return
	}
	var e *event.Event
	if isCloudEvent(r.Header) {
		var p *Problem
		if e, p = s.pathEvent(w, r, typ, "a batch goes to POST /events: POST /events/{type} takes one event"); p != nil {
			writeProblem(w, p)
			return
		}
		if p := permitSource(r, e.Source()); p != nil {
			writeProblem(w, p)
			return
		}
	} else {
		body, p := s.readBody(w, r, binaryMode)
		if p != nil {
			writeProblem(w, p)
			return
		}
		if e, p = s.webhookEvent(r, typ, body); p != nil {
			writeProblem(w, p)
			return
		}
	}
	s.accept(w, r, e)
}

// webhookEvent makes the CloudEvent of a webhook's JSON body, validated as
// any event.
func (s *Service) webhookEvent(r *http.Request, typ string, body []byte) (*event.Event, *Problem) {
	if !json.Valid(body) {
		return nil, refusal(&events.ValidationError{Field: "data", Reason: "the body of a webhook must be JSON (or send a CloudEvent)"})
	}
	e := event.New(event.CloudEventsVersionV1)
	e.SetType(typ)
	e.SetSource(webhookSourcePrefix + principalFrom(r.Context()).Name)
	e.SetID(webhookID(r.Header))
	e.SetTime(time.Now().UTC())
	if err := e.SetData(event.ApplicationJSON, body); err != nil {
		return nil, refusal(err)
	}
	if err := s.codec.Validate(&e); err != nil {
		return nil, refusal(err)
	}
	return &e, nil
}

// webhookID is the id of a webhook's event: its Idempotency-Key or
// webhook-id, else a new UUID (a retry is then another event).
func webhookID(h http.Header) string {
	for _, k := range webhookIDHeaders {
		if id := h.Get(k); id != "" {
			return id
		}
	}
	return uuid.NewString()
}

// isCloudEvent reports whether a request is a CloudEvent of the HTTP
// binding: a ce-specversion header or a CloudEvents media type.
func isCloudEvent(h http.Header) bool {
	if h.Get("Ce-Specversion") != "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	return err == nil && strings.HasPrefix(mt, "application/cloudevents")
}
