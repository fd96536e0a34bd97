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

// requestError is a request that failed for a reason the caller must
// know by its code (not found, conflict, invalid).
type requestError struct {
	code events.ErrorCode
	msg  string
}

func (e *requestError) Error() string { return e.msg }

func failure(code events.ErrorCode, format string, args ...any) error {
	return &requestError{code: code, msg: fmt.Sprintf(format, args...)}
}

// codeOf is the one place that decides which error code a failed request
// answers with.
func codeOf(err error) events.ErrorCode {
	var re *requestError
	switch {
	case errors.As(err, &re):
		return re.code
	case errors.Is(err, events.ErrInvalid):
		return events.CodeInvalid
	case errors.Is(err, errDecrypt):
		return events.CodeDecrypt
	default:
		return events.CodeInternal
	}
}
