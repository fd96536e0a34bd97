package client

import (
	"errors"
	"fmt"

	"github.com/hookbus/hookbus/pkg/events"
)

// Error is a failure a Hookbus service reported, with its stable code
// (docs/protocol.md lists them). Match it with errors.Is against the
// sentinels below, or errors.As to read the code and message.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Is makes errors.Is(err, ErrNotFound) and the like true for the matching
// code, and errors.Is(err, events.ErrInvalid) true for code "invalid".
func (e *Error) Is(target error) bool {
	if target == events.ErrInvalid {
		return e.Code == string(events.CodeInvalid)
	}
	s, ok := codeSentinels[e.Code]
	return ok && s == target
}

// Sentinels for the codes services answer with.
var (
	// ErrNotFound: the plugin (or key) does not exist.
	ErrNotFound = errors.New("not found")
	// ErrCycle: the declaration would close a dependency cycle.
	ErrCycle = errors.New("dependency cycle")
	// ErrDependencyNotRunning: start or restart while a hard dependency is
	// not running.
	ErrDependencyNotRunning = errors.New("dependency not running")
	// ErrStopped: the plugin is stopped; only Enable leaves that status.
	ErrStopped = errors.New("plugin stopped")
	// ErrInternal: the service could not do it for a passing reason.
	ErrInternal = errors.New("internal error")
	// ErrPluginFailed: a chain plugin with error policy fail failed, so
	// the call failed (Call).
	ErrPluginFailed = errors.New("plugin failed")
	// ErrConflict: a conditional save carried a revision that is no longer
	// the stored one (another writer saved first); nothing was written.
	ErrConflict = errors.New("revision conflict")
	// ErrDecrypt: a stored value could not be decrypted or decoded with the
	// service's keys (wrong or missing key, tampered or corrupted data).
	// The value is left as it is for an operator to look at.
	ErrDecrypt = errors.New("stored value cannot be decrypted")
	// ErrUnavailable: the service was stopping or not ready and did not
	// carry the request out; sending it again is safe.
	ErrUnavailable = errors.New("service unavailable")
)

var codeSentinels = map[string]error{
	string(events.CodeNotFound):             ErrNotFound,
	string(events.CodeCycle):                ErrCycle,
	string(events.CodeDependencyNotRunning): ErrDependencyNotRunning,
	string(events.CodeStopped):              ErrStopped,
	string(events.CodeInternal):             ErrInternal,
	string(events.CodePluginFailed):         ErrPluginFailed,
	string(events.CodeRevisionConflict):     ErrConflict,
	string(events.CodeDecrypt):              ErrDecrypt,
	string(events.CodeUnavailable):          ErrUnavailable,
}

func fromCommandError(e *events.CommandError) error {
	return &Error{Code: string(e.Code), Message: e.Message}
}
