package client

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/pkg/events"
)

// NewHookID returns a fresh hook id (32 lowercase hex characters) for
// CreateHook.
func NewHookID() string { return newID() }

// CreateHook stores a hook (spec.Type events.HookWebhook, HookSubject or
// HookExec) and returns it with its webhook secret, which is shown this
// once. An empty spec.ID is filled with NewHookID; sending the
// same spec again answers the stored hook without its secret. Errors:
// events.ErrInvalid, ErrNotApplied, ErrNotStored.
func (c *Client) CreateHook(ctx context.Context, spec events.HookSpec) (events.Hook, error) {
	if spec.ID == "" {
		spec.ID = NewHookID()
	}
	return c.oneHook(ctx, events.HookCreate, events.HookCommand{Hook: &spec})
}

// DeleteHook removes the hook id and returns it. Errors: ErrNotFound,
// ErrNotApplied, ErrNotStored.
func (c *Client) DeleteHook(ctx context.Context, id string) (events.Hook, error) {
	return c.oneHook(ctx, events.HookDelete, events.HookCommand{ID: id})
}

// DeleteHooks removes every hook matching f (f.Node required; empty type
// and arg match every hook on the node) and returns those it removed,
// possibly none.
func (c *Client) DeleteHooks(ctx context.Context, f events.HookFilter) ([]events.Hook, error) {
	return c.hookCommand(ctx, events.HookDelete, events.HookCommand{Match: &f})
}

// RotateHookSecret gives webhook id a new secret and returns the hook with
// it, shown this once; the previous secret keeps signing for overlap
// (whole seconds, 0 to events.MaxSecretOverlap; 0 ends it at once).
// Errors: ErrNotFound, events.ErrInvalid (not a webhook, overlap out of
// range), ErrNotApplied, ErrNotStored.
func (c *Client) RotateHookSecret(ctx context.Context, id string, overlap time.Duration) (events.Hook, error) {
	secs := int64(overlap / time.Second)
	return c.oneHook(ctx, events.HookRotate, events.HookCommand{ID: id, OverlapSeconds: &secs})
}

// DisableHook stops the deliveries of hook id, its events waiting in its
// consumer until EnableHook, and returns it; reason is announced with the
// hookbus.hook.disabled lifecycle event. A disabled hook is answered as it
// is. Errors: ErrNotFound, ErrNotApplied, ErrNotStored.
func (c *Client) DisableHook(ctx context.Context, id, reason string) (events.Hook, error) {
	return c.oneHook(ctx, events.HookDisable, events.HookCommand{ID: id, Reason: reason})
}

// EnableHook resumes the deliveries of hook id, the events that waited
// first, and returns it; its failing state is reset. An active hook is
// answered as it is. Errors: ErrNotFound, ErrNotApplied, ErrNotStored.
func (c *Client) EnableHook(ctx context.Context, id string) (events.Hook, error) {
	return c.oneHook(ctx, events.HookEnable, events.HookCommand{ID: id})
}

// HookAttempts returns the delivery state of hook id: its latest attempts,
// newest first, its last delivery and how long it has been failing.
// Errors: ErrNotFound.
func (c *Client) HookAttempts(ctx context.Context, id string) (events.HookState, error) {
	if err := events.ValidateHookID(id); err != nil {
		return events.HookState{}, err
	}
	answer, err := c.queryMsg(ctx, events.HookAttemptsSubject, events.HookAttemptsRequest{ID: id})
	if err != nil {
		return events.HookState{}, err
	}
	if err := serviceError(answer); err != nil {
		return events.HookState{}, err
	}
	var st events.HookState
	if err := json.Unmarshal(answer.Data, &st); err != nil {
		return events.HookState{}, fmt.Errorf("hook attempts: unreadable answer: %w", err)
	}
	return st, nil
}

// oneHook sends a command about one hook and returns the hook answered.
func (c *Client) oneHook(ctx context.Context, op events.HookOp, cmd events.HookCommand) (events.Hook, error) {
	hooks, err := c.hookCommand(ctx, op, cmd)
	if err != nil {
		return events.Hook{}, err
	}
	if len(hooks) != 1 {
		return events.Hook{}, fmt.Errorf("registry answered %d hooks, want 1", len(hooks))
	}
	return hooks[0], nil
}

// ListHooks returns the hooks matching f, sorted by node and creation
// time, without their secrets, each with its listing: status as its
// deliveries go, pending events, last delivery and last error.
func (c *Client) ListHooks(ctx context.Context, f events.HookFilter) ([]events.Hook, error) {
	answer, err := c.queryMsg(ctx, events.HookListSubject, f)
	if err != nil {
		return nil, err
	}
	return decodeHookReply("list hooks", answer)
}

// hookCommand sends a hook command through HOOKBUS_COMMANDS and waits for
// the registry's answer.
func (c *Client) hookCommand(ctx context.Context, op events.HookOp, cmd events.HookCommand) ([]events.Hook, error) {
	if err := cmd.Validate(op); err != nil {
		return nil, err
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	target := cmd.Target()
	subject, err := events.HookCommandSubject(op, target)
	if err != nil {
		return nil, err
	}
	answerTo, err := events.AnswerSubject("hook", target, newID())
	if err != nil {
		return nil, err
	}
	what := "hook " + string(op)
	answer, err := c.sendCommand(ctx, subject, events.HookCommandTypePrefix+string(op), answerTo, cmd)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return decodeHookReply(what, answer)
}

func decodeHookReply(what string, m *nats.Msg) ([]events.Hook, error) {
	if err := serviceError(m); err != nil {
		return nil, err
	}
	var reply events.HookReply
	if err := json.Unmarshal(m.Data, &reply); err != nil {
		return nil, fmt.Errorf("%s: unreadable answer: %w", what, err)
	}
	return reply.Hooks, nil
}
