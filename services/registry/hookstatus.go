package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/hookbus/hookbus/pkg/events"
)

// setHookStatus applies a disable or an enable: the hook's stored status
// changes with compare-and-swap, then the change is announced
// (hookbus.hook.disabled with the reason, or hookbus.hook.enabled). A hook
// already in the wanted status is answered as it is.
func (s *Service) setHookStatus(ctx context.Context, kv jetstream.KeyValue, op events.HookOp, cmd events.HookCommand, seq uint64) (events.HookReply, error) {
	cur, err := getHook(ctx, kv, cmd.ID)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return events.HookReply{Error: &events.Error{Code: events.CodeNotFound, Message: fmt.Sprintf("hook %s does not exist", cmd.ID)}}, nil
	case err != nil:
		return events.HookReply{}, err
	}
	want, what := events.HookActive, events.HookLifecycleEnabled
	if op == events.HookDisable {
		want, what = events.HookDisabled, events.HookLifecycleDisabled
	}
	if cur.Status == want {
		if cur.CommandSeq == seq {
			// A redelivery after a crash that may have come before the
			// announcement; the event id makes JetStream store it once.
			if err := s.publishHookLifecycle(ctx, what, cur, seq, statusReason(cur)); err != nil {
				return events.HookReply{}, err
			}
		}
		return events.HookReply{Hooks: []events.Hook{listed(cur)}}, nil
	}
	h := cur
	h.Status, h.CommandSeq, h.Revision = want, seq, 0
	now := s.now().UTC()
	if op == events.HookDisable {
		h.Disabled, h.DisabledReason = now, cmd.Reason
		if h.DisabledReason == "" {
			h.DisabledReason = "disabled by an operator"
		}
	} else {
		h.Disabled, h.DisabledReason, h.Enabled = time.Time{}, "", now
	}
	b, err := json.Marshal(h)
	if err != nil {
		return events.HookReply{}, fmt.Errorf("encode hook %s: %w", h.ID, err)
	}
	h.Revision, err = kv.Update(ctx, h.ID, b, cur.Revision)
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return events.HookReply{}, fmt.Errorf("hook %s: %w", h.ID, errConflict)
	}
	if err != nil {
		return events.HookReply{}, fmt.Errorf("write hook %s: %w", h.ID, err)
	}
	if err := s.publishHookLifecycle(ctx, what, h, seq, statusReason(h)); err != nil {
		return events.HookReply{}, err
	}
	return events.HookReply{Hooks: []events.Hook{listed(h)}}, nil
}

// getHookState reads the delivery state of hook id; a hook with no
// attempts yet has an empty one.
func getHookState(ctx context.Context, state jetstream.KeyValue, id string) (events.HookState, error) {
	st := events.HookState{ID: id, Attempts: []events.HookAttempt{}}
	entry, err := state.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read the state of hook %s: %w", id, err)
	}
	if err := json.Unmarshal(entry.Value(), &st); err != nil {
		return events.HookState{ID: id, Attempts: []events.HookAttempt{}}, fmt.Errorf("state of hook %s unreadable: %w", id, err)
	}
	if st.Attempts == nil {
		st.Attempts = []events.HookAttempt{}
	}
	return st, nil
}

// withListing adds to h what a list shows besides the stored hook: the
// stream its events come from, its status as its deliveries go, how many
// events wait for it, its last delivery and error. What cannot be read is
// left out (pending absent), logged, and the hook listed all the same.
func (s *Service) withListing(ctx context.Context, state jetstream.KeyValue, h events.Hook) events.Hook {
	h.Service = events.StreamEvents
	st, err := getHookState(ctx, state, h.ID)
	if err != nil {
		s.log.Warn("list hooks: delivery state", "hook", h.ID, "err", err)
	}
	h.Status = events.HookStatusOf(h, st)
	h.LastDelivery, h.LastError = st.LastDelivery, st.LastError
	cons, err := s.js.Consumer(ctx, events.StreamEvents, events.HookConsumer(h.ID))
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		// Not created by a dispatcher yet: nothing is read for it.
	case err != nil:
		s.log.Warn("list hooks: consumer info", "hook", h.ID, "err", err)
	default:
		info := cons.CachedInfo()
		pending := info.NumPending + uint64(info.NumAckPending)
		h.Pending = &pending
	}
	return h
}

// serveHookAttempts answers a HookAttemptsRequest with the hook's delivery
// state (its latest attempts newest first); not_found for an unknown hook.
func (s *Service) serveHookAttempts(hooks, state jetstream.KeyValue, r micro.Request) {
	var req events.HookAttemptsRequest
	if err := json.Unmarshal(r.Data(), &req); err != nil {
		respondError(r, &events.Error{Code: events.CodeInvalid, Message: "attempts request: " + err.Error()})
		return
	}
	if err := events.ValidateHookID(req.ID); err != nil {
		respondError(r, &events.Error{Code: events.CodeInvalid, Message: err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.AckWait)
	defer cancel()
	if _, err := getHook(ctx, hooks, req.ID); errors.Is(err, jetstream.ErrKeyNotFound) {
		respondError(r, &events.Error{Code: events.CodeNotFound, Message: fmt.Sprintf("hook %s does not exist", req.ID)})
		return
	} else if err != nil {
		respondError(r, &events.Error{Code: events.CodeInternal, Message: err.Error()})
		return
	}
	st, err := getHookState(ctx, state, req.ID)
	if err != nil {
		respondError(r, &events.Error{Code: events.CodeInternal, Message: err.Error()})
		return
	}
	_ = r.RespondJSON(st)
}

// statusReason is the reason extension of a status change's lifecycle
// event: why a disabled hook was disabled; none for an enable.
func statusReason(h events.Hook) string {
	if h.Status == events.HookDisabled {
		return h.DisabledReason
	}
	return ""
}
