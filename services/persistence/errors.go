package persistence

import (
	"errors"
	"fmt"

	"github.com/hookbus/hookbus/pkg/events"
)

// ErrKeyCheck is matched by the error Run returns when the configured keys
// cannot read what the bucket holds: a key-check record of a key that is
// not configured (the wrong key, or an old one dropped before a rotation),
// or one that does not decrypt. The service refuses to start rather than
// serve values it cannot read.
var ErrKeyCheck = errors.New("key check failed")

// failure is a request that failed for a reason the caller must know by
// its code (not found, conflict, invalid): the error the service answers.
func failure(code events.ErrorCode, format string, args ...any) error {
	return &events.Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// codeOf is the one place that decides which error code a failed request
// answers with.
func codeOf(err error) events.ErrorCode {
	var e *events.Error
	switch {
	case errors.As(err, &e):
		return e.Code
	case errors.Is(err, events.ErrInvalid):
		return events.CodeInvalid
	case errors.Is(err, errDecrypt):
		return events.CodeDecrypt
	default:
		return events.CodeInternal
	}
}

// answerOf is the error a failed request is answered with: a failure as it
// is, anything else with its code and its whole text.
func answerOf(err error) *events.Error {
	if e, ok := err.(*events.Error); ok {
		return e
	}
	return &events.Error{Code: codeOf(err), Message: err.Error()}
}
