package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

// MaxBatchEvents is the most events a batch may hold.
const MaxBatchEvents = 1000

// BatchResult is the outcome of one event of a batch: Status 202 and where
// it is stored, or the status and Problem that refused it.
type BatchResult struct {
	Status int `json:"status"`
	*Stored
	Error *Problem `json:"error,omitempty"`
}

// BatchAnswer is the answer to a batch: one result per event, in the
// order of the batch.
type BatchAnswer struct {
	Results []BatchResult `json:"results"`
}

// structuredHeader is the header events.Codec.Decode reads one event of a
// batch with: each is in the JSON event format.
var structuredHeader = nats.Header{events.HeaderContentType: {contentTypeStructured}}

// postBatch publishes the events of a batch (application/cloudevents-batch+json,
// a JSON array of events in the JSON event format) each on its own: an
// invalid event is refused and the others are stored all the same. The
// answer is 202 when every event was stored, 207 when one or more were
// not, with a result per event; a body that is not a JSON array of at most
// MaxBatchEvents events is refused as a whole (400, 413), nothing stored.
func (s *Service) postBatch(w http.ResponseWriter, r *http.Request, body []byte) {
	var raws []json.RawMessage
	err := json.Unmarshal(body, &raws)
	if err == nil && raws == nil { // null
		err = errors.New("null is not an array")
	}
	if err != nil {
		writeProblem(w, &Problem{Status: http.StatusBadRequest, Code: events.CodeInvalid, Field: "body",
			Reason: fmt.Sprintf("a batch is a JSON array of events: %v", err), Detail: "invalid batch: body: not a JSON array of events"})
		return
	}
	if len(raws) > MaxBatchEvents {
		writeProblem(w, &Problem{Status: http.StatusRequestEntityTooLarge, Code: codeTooLarge,
			Detail: fmt.Sprintf("batch of %d events, at most %d", len(raws), MaxBatchEvents)})
		return
	}
	results := make([]BatchResult, len(raws))
	pending := make([]*client.PendingAck, len(raws))
	decoded := make([]*event.Event, len(raws))
	// Every event goes into the window before any acknowledgement is
	// waited for, so the batch shares round trips.
	for i, raw := range raws {
		e, err := s.codec.Decode(structuredHeader, raw)
		if err != nil {
			s.met.refused.Inc()
			p := refusal(err).fill()
			results[i] = BatchResult{Status: p.Status, Error: p}
			continue
		}
		if p := s.permitPublish(r, e); p != nil {
			results[i] = BatchResult{Status: p.Status, Error: p.fill()}
			continue
		}
		decoded[i] = e
		if pending[i], err = s.pub.Publish(r.Context(), *e); err != nil {
			p := refusal(err).fill()
			results[i] = BatchResult{Status: p.Status, Error: p}
		}
	}
	stored := 0
	for i, a := range pending {
		if a == nil {
			continue
		}
		ack, err := a.Wait(r.Context())
		if err != nil {
			if r.Context().Err() != nil {
				s.log.Debug("client gone before the acknowledgements of its batch", "err", err)
				return
			}
			s.met.refused.Inc()
			s.log.Warn("event not stored", "event_id", decoded[i].ID(), "event_type", decoded[i].Type(), "token", principalFrom(r.Context()).Name, "err", err)
			p := refusal(err).fill()
			results[i] = BatchResult{Status: p.Status, Error: p}
			continue
		}
		stored++
		s.met.countStored(ack)
		results[i] = BatchResult{Status: http.StatusAccepted, Stored: &Stored{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}}
	}
	status := http.StatusAccepted
	if stored < len(raws) {
		status = http.StatusMultiStatus
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(BatchAnswer{Results: results})
}
