package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/hookbus/hookbus/pkg/events"
)

// MaxBatch is the most events one PublishBatch stores: JetStream's limit on
// an atomic batch (the server's max_batch_size, 1 000 by default).
const MaxBatch = 1000

// Headers of JetStream's atomic batch publish.
const (
	headerBatchID     = "Nats-Batch-Id"
	headerBatchSeq    = "Nats-Batch-Sequence"
	headerBatchCommit = "Nats-Batch-Commit"
)

// JetStream error codes an atomic batch can end with.
const (
	errCodeBatchDuplicate = 10201 // an event of the batch is already stored
)

// ErrBatchDuplicate: a batch was refused, whole, because one of its events
// (same source and id) is already stored. After a first attempt that got
// no answer, the batch itself may be what is stored: the error says so.
var ErrBatchDuplicate = errors.New("an event of the batch is already stored")

// BatchAck is JetStream's acknowledgement of an atomic batch: the events
// are stored, in order, at sequences Last-Count+1 to Last.
type BatchAck struct {
	Stream string
	Last   uint64
	Count  int
}

// PublishBatch stores 1 to MaxBatch events all or nothing, in order
// (JetStream's atomic batch). An invalid event matches events.ErrInvalid
// and nothing is sent; an event already stored refuses the whole batch
// (ErrBatchDuplicate); unanswered batches are sent again until ctx ends (or
// the client's timeout); other failures match ErrNotStored.
func (c *Client) PublishBatch(ctx context.Context, evs []event.Event, opts ...Option) (BatchAck, error) {
	if len(evs) == 0 || len(evs) > MaxBatch {
		return BatchAck{}, &events.ValidationError{Field: "batch", Reason: fmt.Sprintf("%d events: a batch holds 1 to %d", len(evs), MaxBatch)}
	}
	msgs := make([]*nats.Msg, len(evs))
	for i := range evs {
		msg, err := c.encode(&evs[i], opts)
		if err != nil {
			return BatchAck{}, fmt.Errorf("batch event %d (%s): %w", i, evs[i].ID(), err)
		}
		expectStream(msg, events.StreamEvents)
		msgs[i] = msg
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	b := newBackoff(50*time.Millisecond, c.retry)
	unanswered := false
	for attempt := 1; ; attempt++ {
		ack, err := c.publishBatchOnce(ctx, msgs)
		if err == nil {
			return ack, nil
		}
		var apiErr *jetstream.APIError
		switch {
		case errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeBatchDuplicate && unanswered:
			return BatchAck{}, fmt.Errorf("%w: an earlier attempt got no answer and may have stored the whole batch (%v)", ErrBatchDuplicate, err)
		case errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeBatchDuplicate:
			return BatchAck{}, fmt.Errorf("%w: nothing of the batch was stored (%v)", ErrBatchDuplicate, err)
		case !retryable(err):
			return BatchAck{}, fmt.Errorf("%w: batch of %d: %w", ErrNotStored, len(msgs), err)
		}
		unanswered = unanswered || !errors.Is(err, nats.ErrNoResponders)
		if !b.wait(ctx, time.Time{}) {
			return BatchAck{}, fmt.Errorf("%w: batch of %d, after %d attempt(s): %w (is Hookbus running and the topology in place?)", ErrNotStored, len(msgs), attempt, err)
		}
	}
}

// publishBatchOnce sends msgs as one atomic batch under a new id: all but
// the last without a reply subject (the server answers only the commit,
// and a batch with a refused message is not committed), the last as a
// request that commits the batch.
func (c *Client) publishBatchOnce(ctx context.Context, msgs []*nats.Msg) (BatchAck, error) {
	id := nuid.Next()
	for i, m := range msgs {
		m.Header[headerBatchID] = []string{id}
		m.Header[headerBatchSeq] = []string{strconv.Itoa(i + 1)}
		delete(m.Header, headerBatchCommit)
	}
	last := msgs[len(msgs)-1]
	last.Header[headerBatchCommit] = []string{"1"}
	for _, m := range msgs[:len(msgs)-1] {
		if err := c.nc.PublishMsg(m); err != nil {
			return BatchAck{}, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	reply, err := c.nc.RequestMsgWithContext(ctx, last)
	if err != nil {
		return BatchAck{}, err
	}
	var resp struct {
		Stream string              `json:"stream"`
		Seq    uint64              `json:"seq"`
		Count  int                 `json:"count"`
		Error  *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(reply.Data, &resp); err != nil {
		return BatchAck{}, fmt.Errorf("batch acknowledgement %q: %w", reply.Data, err)
	}
	if resp.Error != nil {
		return BatchAck{}, resp.Error
	}
	if resp.Count != len(msgs) {
		return BatchAck{}, fmt.Errorf("batch acknowledged with %d events, sent %d", resp.Count, len(msgs))
	}
	return BatchAck{Stream: resp.Stream, Last: resp.Seq, Count: resp.Count}, nil
}
