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

// serviceError is the error of a service's answer m (every answer: a
// query's, a command's, a call's, the persistence service's), or nil when
// m is no error: its body's "error" member when it has one (the whole
// message), else the code and message of its Nats-Service-Error headers.
// Every error answer has both (docs/protocol.md, "Errors"); the body alone
// is enough so that an answer of a service older than the headers is not
// taken for a success.
func serviceError(m *nats.Msg) error {
	var body events.ErrorReply
	if json.Unmarshal(m.Data, &body) == nil && body.Error != nil {
		return body.Error
	}
	if code := m.Header.Get(micro.ErrorCodeHeader); code != "" {
		return &Error{Code: events.ErrorCode(code), Message: m.Header.Get(micro.ErrorHeader)}
	}
	return nil
}
