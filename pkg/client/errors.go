package client

import (
	"encoding/json"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/hookbus/hookbus/pkg/events"
)

// Error is a failure a Hookbus service reported, with its stable code
// (docs/protocol.md lists them): events.Error. Match it with errors.Is
// against the sentinels below, or errors.As to read the code and message.
type Error = events.Error

// Sentinels for the codes services answer with (the same values as
// events'): errors.Is matches any Error of their code.
var (
	ErrNotFound             = events.ErrNotFound             // the plugin (or key) does not exist
	ErrCycle                = events.ErrCycle                // the declaration would close a dependency cycle
	ErrDependencyNotRunning = events.ErrDependencyNotRunning // a hard dependency is not running
	ErrStopped              = events.ErrStopped              // the plugin is stopped; only Enable leaves it
	ErrInternal             = events.ErrInternal             // the service failed for a passing reason
	ErrPluginFailed         = events.ErrPluginFailed         // a chain plugin with policy fail failed (Call)
	ErrConflict             = events.ErrConflict             // a conditional save lost to another writer
	ErrDecrypt              = events.ErrDecrypt              // a stored value cannot be decrypted
	ErrUnavailable          = events.ErrUnavailable          // the service did not carry it out; send again
)

// serviceError is the error of a micro service's answer m (the registry's
// queries, the persistence service), or nil when m is no error: the code
// and message of its Nats-Service-Error headers, or of its body
// {"error": {...}} when it has one (the message there is not cut to one
// header line).
func serviceError(m *nats.Msg) error {
	code := m.Header.Get(micro.ErrorCodeHeader)
	if code == "" {
		return nil
	}
	e := &Error{Code: events.ErrorCode(code), Message: m.Header.Get(micro.ErrorHeader)}
	var body events.ErrorReply
	if json.Unmarshal(m.Data, &body) == nil && body.Error != nil {
		e = body.Error
	}
	return e
}
