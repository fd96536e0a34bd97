package registry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/events"
)

// checkSession refuses a temporary hook whose owner's session key is not
// in bucket hookbus_hook_sessions: the hook would be removed at the next
// sweep anyway. The error is a passing failure (storage).
func (s *Service) checkSession(ctx context.Context, session string) (*events.Error, error) {
	_, err := s.hookSessions.Get(ctx, session)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return &events.Error{Code: events.CodeInvalid, Message: fmt.Sprintf(
			"invalid hook: session %s is not alive: no key in %s (write it, and again every %s, before creating temporary hooks in it)",
			session, events.BucketHookSessions, events.HookSessionHeartbeat)}, nil
	case err != nil:
		return nil, fmt.Errorf("read session %s: %w", session, err)
	}
	return nil, nil
}

// temporaryHooks is the sweep's view of the temporary hooks in
// hookbus_hooks, by session, as its watch last saw them.
type temporaryHooks struct {
	bySession map[string]map[string]events.Hook // session -> hook id -> hook
	session   map[string]string                 // hook id -> its session
}

func newTemporaryHooks() *temporaryHooks {
	return &temporaryHooks{bySession: map[string]map[string]events.Hook{}, session: map[string]string{}}
}

// apply takes one entry of the watch: a temporary hook stored or changed,
// or any hook deleted.
func (t *temporaryHooks) apply(entry jetstream.KeyValueEntry) error {
	id := entry.Key()
	if session, ok := t.session[id]; ok {
		delete(t.session, id)
		delete(t.bySession[session], id)
		if len(t.bySession[session]) == 0 {
			delete(t.bySession, session)
		}
	}
	if entry.Operation() != jetstream.KeyValuePut {
		return nil
	}
	h, err := decodeHook(entry)
	if err != nil {
		return err
	}
	if h.Persistent {
		return nil
	}
	if t.bySession[h.Session] == nil {
		t.bySession[h.Session] = map[string]events.Hook{}
	}
	t.bySession[h.Session][id] = listed(h)
	t.session[id] = h.Session
	return nil
}

// sweepSessions removes, every HookSessionSweep, the temporary hooks whose
// session key has expired or was deleted, until ctx ends. It watches
// hookbus_hooks for the temporary hooks, and starts the watch again when it
// fails.
func (s *Service) sweepSessions(ctx context.Context, hooks jetstream.KeyValue) error {
	for {
		err := s.sweepWatched(ctx, hooks)
		if ctx.Err() != nil {
			return nil
		}
		s.log.Warn("hook session sweep stopped, will start again", "err", err, "delay", s.cfg.RetryDelay)
		if !sleep(ctx, s.cfg.RetryDelay) {
			return nil
		}
	}
}

func (s *Service) sweepWatched(ctx context.Context, hooks jetstream.KeyValue) error {
	w, err := hooks.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch %s: %w", events.BucketHooks, err)
	}
	defer func() { _ = w.Stop() }()
	view := newTemporaryHooks()
	var unannounced []events.Hook // removed, not yet announced
	tick := time.NewTicker(s.cfg.HookSessionSweep)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case entry, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("watch %s: stopped", events.BucketHooks)
			}
			if entry == nil {
				continue // every stored hook seen
			}
			if err := view.apply(entry); err != nil {
				s.log.Error("temporary hooks sweep: hook skipped", "err", err)
			}
		case <-tick.C:
			unannounced = s.sweep(ctx, hooks, view, unannounced)
		}
	}
}

// sweep collects the hooks of the sessions that are gone, then deletes
// each with compare-and-swap on the revision the watch saw: a hook
// changed or deleted since (by a command, or by another registry's sweep)
// is left to the next sweep. Each deleted hook is announced
// hookbus.hook.deleted with reason "owner gone"; announcements that fail
// are returned, to be tried again.
func (s *Service) sweep(ctx context.Context, hooks jetstream.KeyValue, view *temporaryHooks, unannounced []events.Hook) []events.Hook {
	var gone []events.Hook
	for session, hs := range view.bySession {
		_, err := s.hookSessions.Get(ctx, session)
		if err == nil {
			continue
		}
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			s.log.Warn("temporary hooks sweep: read session", "session", session, "err", err)
			continue
		}
		for _, h := range hs {
			gone = append(gone, h)
		}
	}
	for _, h := range gone {
		err := hooks.Delete(ctx, h.ID, jetstream.LastRevision(h.Revision))
		switch {
		case errors.Is(err, jetstream.ErrKeyRevisionMismatch), errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyNotFound):
			continue
		case err != nil:
			s.log.Warn("temporary hooks sweep: delete hook", "hook", h.ID, "err", err)
			continue
		}
		s.log.Info("temporary hook removed: its owner is gone", "hook", h.ID, "session", h.Session)
		unannounced = append(unannounced, h)
	}
	var left []events.Hook
	for _, h := range unannounced {
		// The revision deleted makes the event's id: a retry is stored once.
		if err := s.publishHookLifecycle(ctx, events.HookDeleted, h, h.Revision, events.HookReasonOwnerGone); err != nil {
			s.log.Warn("temporary hooks sweep: announce removal, will retry", "hook", h.ID, "err", err)
			left = append(left, h)
		}
	}
	return left
}
