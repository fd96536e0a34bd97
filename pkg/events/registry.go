package events

import (
	"slices"
)

// PluginOp is a lifecycle operation on plugins, sent as a command
// CloudEvent on hookbus.cmd.plugin.<op>.<name> (hookbus.cmd.plugin.<op> for
// a bulk operation on every plugin of an event).
type PluginOp string

// Plugin operations (DESIGN §1.1).
const (
	OpRegister   PluginOp = "register"
	OpStart      PluginOp = "start"
	OpStop       PluginOp = "stop"
	OpRestart    PluginOp = "restart"
	OpEnable     PluginOp = "enable"
	OpDelete     PluginOp = "delete"
	OpUnregister PluginOp = "unregister"
)

// pluginOps lists every operation, in documentation order.
var pluginOps = []PluginOp{OpRegister, OpStart, OpStop, OpRestart, OpEnable, OpDelete, OpUnregister}

// Valid reports whether op is one of pluginOps.
func (op PluginOp) Valid() bool { return slices.Contains(pluginOps, op) }

// CommandTypePrefix starts the CloudEvents type of every plugin command:
// hookbus.cmd.plugin.<op>, its subject without the plugin name.
const CommandTypePrefix = "hookbus.cmd.plugin."

// HeaderReplyTo names the subject a command's answer is sent to
// (AnswerSubject). A command travels through a JetStream stream, whose own
// acknowledgement takes the NATS reply subject, so the answer's subject
// goes in this header.
const HeaderReplyTo = "Hookbus-Reply-To"

// Target is the plugin the command is about: the declaration's name for
// register, Name otherwise; "" for a bulk command by Event.
func (c PluginCommand) Target() string {
	if c.Plugin != nil {
		return c.Plugin.Name
	}
	return c.Name
}

// PluginCommand is the data of a plugin command. Register carries Plugin;
// every other operation names its target by Name or, for a bulk operation
// on every plugin of an event, by Event (exactly one of the two).
type PluginCommand struct {
	Plugin *PluginSpec `json:"plugin,omitempty"`
	Name   string      `json:"name,omitempty"`
	Event  string      `json:"event,omitempty"`
}

// Validate checks that the command fits op; the error is a
// *ValidationError.
func (c PluginCommand) Validate(op PluginOp) error {
	if !op.Valid() {
		return invalidIn("command", "op", "%q: want one of %v", op, pluginOps)
	}
	if op == OpRegister {
		if c.Plugin == nil {
			return invalidIn("command", "plugin", "register needs the plugin's declaration")
		}
		if c.Name != "" || c.Event != "" {
			return invalidIn("command", "plugin", "register takes only the declaration, not name or event")
		}
		return c.Plugin.Validate()
	}
	if c.Plugin != nil {
		return invalidIn("command", "plugin", "%s takes a name or an event, not a declaration", op)
	}
	switch {
	case c.Name != "" && c.Event != "":
		return invalidIn("command", "name", "give a name or an event, not both")
	case c.Name != "":
		return ValidateName("plugin", c.Name)
	case c.Event != "":
		return ValidateType(c.Event)
	default:
		return invalidIn("command", "name", "%s needs a plugin name or an event", op)
	}
}

// ErrorCode is a stable, machine-readable reason a command or query failed.
type ErrorCode string

// Error codes of the registry.
const (
	// CodeInvalid: the command is malformed (the message says which field).
	CodeInvalid ErrorCode = "invalid"
	// CodeNotFound: no plugin has that name.
	CodeNotFound ErrorCode = "not_found"
	// CodeCycle: the declaration would close a dependency cycle.
	CodeCycle ErrorCode = "cycle"
	// CodeDependencyNotRunning: start or restart while a hard dependency is
	// not running.
	CodeDependencyNotRunning ErrorCode = "dependency_not_running"
	// CodeStopped: the plugin is stopped; only enable leaves that status.
	CodeStopped ErrorCode = "stopped"
	// CodeInternal: the registry could not apply the command (storage
	// unavailable); the command is retried and answered later.
	CodeInternal ErrorCode = "internal"
	// CodeUnavailable: the service is stopping or not ready; the request
	// was not carried out and may be sent again.
	CodeUnavailable ErrorCode = "unavailable"
)

// CommandReply is the registry's answer to a command or a query: the
// resulting state of every plugin it touched (one for a single-plugin
// operation, all of them for a bulk one or a list), or an error.
type CommandReply struct {
	Plugins []Plugin `json:"plugins"`
	Error   *Error   `json:"error,omitempty"`
}

// LifecycleTypePrefix starts the CloudEvents type of lifecycle events:
// hookbus.plugin.<status or "unregistered">.
const LifecycleTypePrefix = "hookbus.plugin."

// LifecycleUnregistered is the lifecycle type suffix of an unregister.
const LifecycleUnregistered = "unregistered"

// LifecycleType returns the CloudEvents type of a lifecycle event about a
// plugin that reached status, e.g. hookbus.plugin.started.
func LifecycleType(status Status) string { return LifecycleTypePrefix + string(status) }

// Registry query subjects, served by the hookbus-registry micro service.
const (
	// RegistryGetSubject answers one plugin: request {"name": "..."}.
	RegistryGetSubject = "hookbus.registry.plugin.get"
	// RegistryListSubject answers plugins matching a filter: request
	// PluginFilter.
	RegistryListSubject = "hookbus.registry.plugin.list"
)

// PluginFilter selects plugins in a list query; empty fields match all.
type PluginFilter struct {
	Event  string `json:"event,omitempty"`
	Status Status `json:"status,omitempty"`
	Mode   Mode   `json:"mode,omitempty"`
}

// Match reports whether p passes the filter.
func (f PluginFilter) Match(p Plugin) bool {
	return (f.Event == "" || f.Event == p.Event) &&
		(f.Status == "" || f.Status == p.Status) &&
		(f.Mode == "" || f.Mode == p.Mode)
}
