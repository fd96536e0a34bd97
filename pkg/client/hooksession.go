package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/events"
)

// ErrSessionLost is what HookSession.Err returns once the session's key
// expired or was removed: the registry removes its hooks, and the session
// creates no more.
var ErrSessionLost = errors.New("hook session lost: its key expired or was removed")

// ErrSessionClosed is what HookSession.CreateHook returns after Close.
var ErrSessionClosed = errors.New("hook session closed")

// HookSession owns temporary hooks: it keeps its key in bucket
// hookbus_hook_sessions alive with a heartbeat every
// events.HookSessionHeartbeat; when the heartbeat stops (the process dies)
// the key expires after events.HookSessionTTL and the registry removes the
// session's hooks. Its methods are safe for concurrent use.
type HookSession struct {
	c      *Client
	id     string
	kv     jetstream.KeyValue
	cancel context.CancelFunc
	done   chan struct{} // closed when the heartbeat stops
	beat   sync.WaitGroup

	mu     sync.Mutex
	rev    uint64          // the key's revision last written
	hooks  map[string]bool // ids of the hooks created in the session
	err    error           // the last heartbeat's failure, nil after a success
	closed bool
}

// HookSession starts a session: it writes the session's key and keeps it
// alive in a goroutine until Close, or until the key is lost (Err says
// ErrSessionLost and Done is closed).
func (c *Client) HookSession(ctx context.Context) (*HookSession, error) {
	kv, err := c.js.KeyValue(ctx, events.BucketHookSessions)
	if err != nil {
		return nil, fmt.Errorf("hook session: bucket %s: %w", events.BucketHookSessions, err)
	}
	s := &HookSession{c: c, id: newID(), kv: kv, done: make(chan struct{}), hooks: map[string]bool{}}
	rev, err := kv.Create(ctx, s.id, s.value())
	if err != nil {
		return nil, fmt.Errorf("hook session: write key %s: %w", s.id, err)
	}
	s.rev = rev
	bctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.beat.Go(func() { s.heartbeat(bctx) })
	return s, nil
}

// ID is the session's id, the Session of its hooks.
func (s *HookSession) ID() string { return s.id }

// Done is closed when the session stops: Close was called, or the session
// was lost (Err).
func (s *HookSession) Done() <-chan struct{} { return s.done }

// Err returns ErrSessionLost once the session is lost, else the last
// heartbeat's failure (a heartbeat is tried every
// events.HookSessionHeartbeat), or nil when the last one succeeded.
func (s *HookSession) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// CreateHook creates a temporary hook in the session: spec's Persistent
// and Session are set by it. It returns the hook with its webhook secret,
// shown this once. Errors: as Client.CreateHook, ErrSessionLost,
// ErrSessionClosed.
func (s *HookSession) CreateHook(ctx context.Context, spec events.HookSpec) (events.Hook, error) {
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return events.Hook{}, ErrSessionClosed
	case errors.Is(s.err, ErrSessionLost):
		s.mu.Unlock()
		return events.Hook{}, ErrSessionLost
	}
	if spec.ID == "" {
		spec.ID = NewHookID()
	}
	// Recorded before it is sent, so Close deletes it even when the
	// answer is lost.
	s.hooks[spec.ID] = true
	s.mu.Unlock()
	spec.Persistent, spec.Session = false, s.id
	return s.c.CreateHook(ctx, spec)
}

// Close stops the heartbeat, deletes the session's hooks and then its key.
// Hooks it could not delete are removed by the registry once the key is
// gone; if the key cannot be deleted either, they go when it expires.
func (s *HookSession) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	ids := make([]string, 0, len(s.hooks))
	for id := range s.hooks {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	s.cancel()
	s.beat.Wait()
	var errs []error
	for _, id := range ids {
		if _, err := s.c.DeleteHook(ctx, id); err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, err)
		}
	}
	if err := s.kv.Delete(ctx, s.id); err != nil {
		errs = append(errs, fmt.Errorf("hook session: delete key %s: %w", s.id, err))
	}
	return errors.Join(errs...)
}

// heartbeat writes the key every events.HookSessionHeartbeat until ctx
// ends or the key is lost.
func (s *HookSession) heartbeat(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(events.HookSessionHeartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := s.beatOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		if errors.Is(err, ErrSessionLost) {
			return
		}
	}
}

// beatOnce writes the key on the revision last written: a key that
// expired or was deleted is not written again (its hooks are being
// removed) but reported lost.
func (s *HookSession) beatOnce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, events.HookSessionHeartbeat)
	defer cancel()
	rev, err := s.kv.Update(ctx, s.id, s.value(), s.rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		// Either lost, or an earlier write succeeded unanswered.
		entry, gerr := s.kv.Get(ctx, s.id)
		switch {
		case errors.Is(gerr, jetstream.ErrKeyNotFound):
			return ErrSessionLost
		case gerr != nil:
			return fmt.Errorf("hook session heartbeat: %w", gerr)
		}
		rev, err = s.kv.Update(ctx, s.id, s.value(), entry.Revision())
	}
	if err != nil {
		return fmt.Errorf("hook session heartbeat: %w", err)
	}
	s.rev = rev
	return nil
}

// value is what the key holds: the time of the heartbeat, for operators.
func (s *HookSession) value() []byte { return []byte(time.Now().UTC().Format(time.RFC3339Nano)) }
