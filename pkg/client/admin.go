package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/pkg/events"
)

// ErrNotApplied is matched by admin errors where the command was stored
// but no registry answered before ctx ended. The command is not lost: a
// registry applies it when one runs again.
var ErrNotApplied = errors.New("command stored, not yet applied")

// commandSource is the CloudEvents source of commands the SDK sends.
const commandSource = "/hookbus/client"

// Register stores spec as a plugin (an upsert by name: declared fields
// replaced, status kept) and returns its state: registered, or held when a
// hard dependency is not running. Errors: events.ErrInvalid, ErrCycle,
// ErrNotApplied, ErrNotStored.
func (c *Client) Register(ctx context.Context, spec events.PluginSpec) (events.Plugin, error) {
	return one(c.command(ctx, events.OpRegister, events.PluginCommand{Plugin: &spec}))
}

// Start runs a registered or held plugin. Errors: ErrNotFound, ErrStopped,
// ErrDependencyNotRunning, ErrNotApplied, ErrNotStored.
func (c *Client) Start(ctx context.Context, name string) (events.Plugin, error) {
	return one(c.command(ctx, events.OpStart, events.PluginCommand{Name: name}))
}

// Restart is Start, leaving the plugin in status restarted.
func (c *Client) Restart(ctx context.Context, name string) (events.Plugin, error) {
	return one(c.command(ctx, events.OpRestart, events.PluginCommand{Name: name}))
}

// Stop switches a plugin off until Enable, from any status; its hard
// dependents are held. Errors: ErrNotFound, ErrNotApplied, ErrNotStored.
func (c *Client) Stop(ctx context.Context, name string) (events.Plugin, error) {
	return one(c.command(ctx, events.OpStop, events.PluginCommand{Name: name}))
}

// Enable takes a stopped plugin out of stopped (started, or held if a hard
// dependency is not running); on any other plugin it changes nothing.
func (c *Client) Enable(ctx context.Context, name string) (events.Plugin, error) {
	return one(c.command(ctx, events.OpEnable, events.PluginCommand{Name: name}))
}

// Delete takes the plugin out of running, back to registered (Start
// brings it back), and holds its hard dependents; it stays registered.
func (c *Client) Delete(ctx context.Context, name string) (events.Plugin, error) {
	return one(c.command(ctx, events.OpDelete, events.PluginCommand{Name: name}))
}

// Unregister removes a plugin and holds its hard dependents. It returns the
// plugin's last state.
func (c *Client) Unregister(ctx context.Context, name string) (events.Plugin, error) {
	return one(c.command(ctx, events.OpUnregister, events.PluginCommand{Name: name}))
}

// Apply performs op on every plugin of event (a bulk operation), all or
// nothing, in dependency order, and returns their states. Register is not
// a bulk operation.
func (c *Client) Apply(ctx context.Context, op events.PluginOp, event string) ([]events.Plugin, error) {
	return c.command(ctx, op, events.PluginCommand{Event: event})
}

// Get returns one plugin's stored state. Errors: ErrNotFound.
func (c *Client) Get(ctx context.Context, name string) (events.Plugin, error) {
	if err := events.ValidateName("plugin", name); err != nil {
		return events.Plugin{}, err
	}
	return one(c.query(ctx, events.RegistryGetSubject, map[string]string{"name": name}))
}

// List returns the plugins matching f, sorted by event, priority and name.
func (c *Client) List(ctx context.Context, f events.PluginFilter) ([]events.Plugin, error) {
	return c.query(ctx, events.RegistryListSubject, f)
}

func one(ps []events.Plugin, err error) (events.Plugin, error) {
	if err != nil {
		return events.Plugin{}, err
	}
	if len(ps) != 1 {
		return events.Plugin{}, fmt.Errorf("registry answered %d plugins, want 1", len(ps))
	}
	return ps[0], nil
}

// command stores a command in HOOKBUS_COMMANDS (retrying like Publish) and
// waits for the registry's answer on a private inbox until ctx ends.
func (c *Client) command(ctx context.Context, op events.PluginOp, cmd events.PluginCommand) ([]events.Plugin, error) {
	if err := cmd.Validate(op); err != nil {
		return nil, err
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	target := cmd.Target()
	subject, err := events.CommandSubject("plugin", string(op), target)
	if op == events.OpRegister {
		subject, err = events.RegisterSubject(target, cmd.Plugin.Event)
	}
	if err != nil {
		return nil, err
	}
	answerTo, err := events.AnswerSubject("plugin", target, newID())
	if err != nil {
		return nil, err
	}
	answer, err := c.sendCommand(ctx, subject, events.CommandTypePrefix+string(op), answerTo, cmd)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return decodeReply(op, answer)
}

// sendCommand stores the command CloudEvent of type typ with data on
// subject in HOOKBUS_COMMANDS (retrying like Publish) and waits for the
// registry's answer on answerTo until ctx ends.
func (c *Client) sendCommand(ctx context.Context, subject, typ, answerTo string, data any) (*nats.Msg, error) {
	e := event.New()
	e.SetID(newID())
	e.SetSource(commandSource)
	e.SetType(typ)
	e.SetTime(time.Now())
	if err := e.SetData(event.ApplicationJSON, data); err != nil {
		return nil, err
	}
	msg, err := c.codec.Encode(subject, &e)
	if err != nil {
		return nil, err
	}
	sub, err := c.nc.SubscribeSync(answerTo)
	if err != nil {
		return nil, fmt.Errorf("subscribe for the answer: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	msg.Header.Set(events.HeaderReplyTo, answerTo)

	ack, err := c.publish(ctx, msg, events.StreamCommands)
	if err != nil {
		return nil, err
	}
	answer, err := sub.NextMsgWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w (command seq %d; a registry applies it when one runs): %w", ErrNotApplied, ack.Sequence, err)
	}
	return answer, nil
}

func (c *Client) query(ctx context.Context, subject string, req any) ([]events.Plugin, error) {
	answer, err := c.queryMsg(ctx, subject, req)
	if err != nil {
		return nil, err
	}
	return decodeReply("query", answer)
}

// queryMsg sends req as JSON to a registry query endpoint and returns its
// answer, or the error it answered.
func (c *Client) queryMsg(ctx context.Context, subject string, req any) (*nats.Msg, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	answer, err := c.nc.RequestWithContext(ctx, subject, b)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, fmt.Errorf("query %s: no registry is running: %w", subject, err)
	}
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", subject, err)
	}
	if err := serviceError(answer); err != nil {
		return nil, fmt.Errorf("query %s: %w", subject, err)
	}
	return answer, nil
}

func decodeReply(what any, m *nats.Msg) ([]events.Plugin, error) {
	if err := serviceError(m); err != nil {
		return nil, err
	}
	var reply events.CommandReply
	if err := json.Unmarshal(m.Data, &reply); err != nil {
		return nil, fmt.Errorf("%s: unreadable answer: %w", what, err)
	}
	return reply.Plugins, nil
}

// newID returns a random 128-bit hex id for a command.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
