package events

import (
	"errors"
	"fmt"
)

// ErrInvalid is matched (with errors.Is) by every error that refuses an event
// or a name because of what it contains, as opposed to a transport failure.
var ErrInvalid = errors.New("invalid")

// ValidationError says which part of an event or name is wrong and why.
// Field is a CloudEvents attribute name ("id", "source", "type", an
// extension name), "data" or a path inside the data ("data.user_id"),
// "subject" or "size".
type ValidationError struct {
	Field  string
	Reason string
}

// Error returns "invalid event: <field>: <reason>".
func (e *ValidationError) Error() string {
	return fmt.Sprintf("invalid event: %s: %s", e.Field, e.Reason)
}

// Is makes errors.Is(err, ErrInvalid) true for every ValidationError.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, format string, args ...any) *ValidationError {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}
