package events

import (
	"errors"
	"fmt"
)

// ErrInvalid is matched (with errors.Is) by every error that refuses an event
// or a name because of what it contains, as opposed to a transport failure.
var ErrInvalid = errors.New("invalid")

// ValidationError says which part of what is wrong and why. Of is what
// was refused: "" for an event, else "plugin", "command", "request",
// "auth request" or the kind of a name ("plugin", "subscriber"). Field is,
// for an event, a CloudEvents attribute name ("id", "source", "type", an
// extension name), "data" or a path inside the data ("data.user_id"),
// "subject" or "size".
type ValidationError struct {
	Of     string
	Field  string
	Reason string
}

// Error returns "invalid <of>: <field>: <reason>", <of> "event" when Of is
// empty.
func (e *ValidationError) Error() string {
	of := e.Of
	if of == "" {
		of = "event"
	}
	return fmt.Sprintf("invalid %s: %s: %s", of, e.Field, e.Reason)
}

// Is makes errors.Is(err, ErrInvalid) true for every ValidationError.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, format string, args ...any) *ValidationError {
	return invalidIn("", field, format, args...)
}

func invalidIn(of, field, format string, args ...any) *ValidationError {
	return &ValidationError{Of: of, Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Error is a failure a Hookbus service answers with, the same on the wire
// ({"code", "message"}; docs/protocol.md, "Errors") and in Go. errors.Is
// matches it against the sentinels below by its code, and against
// ErrInvalid for code invalid.
type Error struct {
	Code    ErrorCode `json:"code"`
	Message string    `json:"message"`
}

// Error returns "<code>: <message>".
func (e *Error) Error() string {
	if e.Message == "" {
		return string(e.Code)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Is reports whether target is ErrInvalid and e's code invalid, or a
// sentinel (an Error without a message) of e's code.
func (e *Error) Is(target error) bool {
	if target == ErrInvalid {
		return e.Code == CodeInvalid
	}
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Code == e.Code
}

// ErrorReply is the body of an error answer of a micro service (the
// registry's queries, the persistence service), which also carries the
// headers Nats-Service-Error-Code (the code) and Nats-Service-Error (the
// message). A successful answer never has a top-level "error" member.
type ErrorReply struct {
	Error *Error `json:"error"`
}

// Sentinels for errors.Is, one per code.
var (
	// ErrNotFound: the plugin (or key) does not exist.
	ErrNotFound = &Error{Code: CodeNotFound}
	// ErrCycle: the declaration would close a dependency cycle.
	ErrCycle = &Error{Code: CodeCycle}
	// ErrDependencyNotRunning: start or restart while a hard dependency is
	// not running.
	ErrDependencyNotRunning = &Error{Code: CodeDependencyNotRunning}
	// ErrStopped: the plugin is stopped; only enable leaves that status.
	ErrStopped = &Error{Code: CodeStopped}
	// ErrInternal: the service could not do it for a passing reason.
	ErrInternal = &Error{Code: CodeInternal}
	// ErrPluginFailed: a chain plugin with error policy fail failed.
	ErrPluginFailed = &Error{Code: CodePluginFailed}
	// ErrConflict: a conditional save carried a revision that is no longer
	// the stored one; nothing was written.
	ErrConflict = &Error{Code: CodeRevisionConflict}
	// ErrDecrypt: a stored value cannot be decrypted or decoded with the
	// service's keys; it is left as it is.
	ErrDecrypt = &Error{Code: CodeDecrypt}
	// ErrUnavailable: the service was stopping or not ready and did not
	// carry the request out; sending it again is safe.
	ErrUnavailable = &Error{Code: CodeUnavailable}
)
