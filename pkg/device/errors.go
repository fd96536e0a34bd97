package device

import (
	"errors"
	"fmt"
)

// Errors of the client. Send, SendRaw and Call return the client's final
// error once it has stopped (Err).
var (
	// ErrClosed: Close was called.
	ErrClosed = errors.New("device: client closed")
	// ErrReplaced: the gateway closed the socket with 4002, a newer
	// connection of this device replaced it. The client does not
	// reconnect (the other connection would be replaced in turn).
	ErrReplaced = errors.New("device: replaced by a newer connection of this device (4002)")
	// ErrNeedsLogin: the token is dead (expired, revoked or refused) and
	// the client has no credentials to log in again.
	ErrNeedsLogin = errors.New("device: no valid token and no credentials: log in needed")
	// ErrDisconnected: a call was written but the connection ended before
	// its reply (a call is not sent again: it is not stored).
	ErrDisconnected = errors.New("device: disconnected before the reply")

	// Sentinels of a RefusedError's code (errors.Is).
	ErrAuthenticationFailed = errors.New("authentication_failed")
	ErrInvalidAuthHeader    = errors.New("invalid_auth_header")
	ErrDevicesOff           = errors.New("devices_off")

	// Sentinels of a CallError's code (errors.Is).
	ErrNoHandler   = errors.New("no_handler")
	ErrCallFailed  = errors.New("call_failed")
	ErrCallTimeout = errors.New("call_timeout")
	ErrUnavailable = errors.New("unavailable")
)

var codeSentinels = map[string]error{
	"authentication_failed": ErrAuthenticationFailed,
	"invalid_auth_header":   ErrInvalidAuthHeader,
	"devices_off":           ErrDevicesOff,
	"no_handler":            ErrNoHandler,
	"call_failed":           ErrCallFailed,
	"call_timeout":          ErrCallTimeout,
	"unavailable":           ErrUnavailable,
}

// RefusedError is the gateway's refusal of the WebSocket upgrade: its
// HTTP status and the problem's code and detail. A 400, 403
// authentication_failed or 404 stops the client (retrying would be
// refused the same way); a 401 or 403 invalid_token drops the token and
// logs in again with credentials; a 5xx is retried with backoff.
type RefusedError struct {
	Status int
	Code   string
	Detail string
}

func (e *RefusedError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("device: upgrade refused: HTTP %d", e.Status)
	}
	return fmt.Sprintf("device: upgrade refused: HTTP %d %s: %s", e.Status, e.Code, e.Detail)
}

// Is matches the sentinel of e's code.
func (e *RefusedError) Is(target error) bool { return target != nil && codeSentinels[e.Code] == target }

// CallError is the error answer of a call: code no_handler, call_failed,
// call_timeout or unavailable (errors.Is ErrNoHandler and so on).
type CallError struct {
	Code   string `json:"code"`
	Detail string `json:"detail"`
}

func (e *CallError) Error() string { return "device: call: " + e.Code + ": " + e.Detail }

// Is matches the sentinel of e's code.
func (e *CallError) Is(target error) bool { return target != nil && codeSentinels[e.Code] == target }

// StoppedError: a plugin stopped the device's session (close 4003). The
// client does not reconnect.
type StoppedError struct {
	Reason string
}

func (e *StoppedError) Error() string { return "device: stopped by a plugin (4003): " + e.Reason }

// FrameError: the gateway closed the socket because of a frame the
// client sent (1009 too big, 1003 unsupported). The frame is dropped (it
// would be refused again) and its Send or Call returns this error.
type FrameError struct {
	Code   int
	Reason string
}

func (e *FrameError) Error() string {
	return fmt.Sprintf("device: frame refused by the gateway (close %d): %s", e.Code, e.Reason)
}
