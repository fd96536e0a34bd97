package events

import (
	"strconv"
	"time"
)

// BucketHookState holds the delivery state of each hook (HookState, one
// key per hook id), written by the dispatcher, read by the registry.
const BucketHookState = "hookbus_hook_state"

// HookAttemptsSubject answers a HookAttemptsRequest with the hook's
// HookState (micro service hookbus-registry); not_found for an unknown
// hook.
const HookAttemptsSubject = "hookbus.registry.hook.attempts"

// MinHookRate is the lowest per-hook rate limit but 0 (unlimited): one
// delivery every 1000 s. A lower one would hold an event in progress for
// longer than anyone waits for it.
const MinHookRate = 0.001

// MaxHookRate is the highest per-hook rate limit, in deliveries per
// second.
const MaxHookRate = 10_000

// HookAttemptsKept is how many of its latest attempts a hook's state
// keeps.
const HookAttemptsKept = 20

// maxAttemptErrorLen bounds the error text kept per attempt.
const maxAttemptErrorLen = 300

// HookAttempt is one delivery attempt of a hook.
type HookAttempt struct {
	Time time.Time `json:"time"`
	// Status is the target's HTTP status code ("503"), or a short word
	// when there was none: timeout, refused (by the address guard or the
	// target's host), error.
	Status string `json:"status"`
	// OK is whether the attempt delivered the event.
	OK         bool    `json:"ok"`
	DurationMS float64 `json:"duration_ms"`
	Error      string  `json:"error,omitempty"`
}

// HookState is the delivery state of a hook, as stored in
// hookbus_hook_state and answered on HookAttemptsSubject.
type HookState struct {
	ID string `json:"id"`
	// LastDelivery is the time of the last successful attempt.
	LastDelivery time.Time `json:"last_delivery,omitzero"`
	// LastError is the error of the last failed attempt, kept after a
	// success.
	LastError string `json:"last_error,omitempty"`
	// FailingSince is the first failed attempt with no success after it;
	// zero when the last attempt succeeded or the hook was enabled since.
	FailingSince time.Time `json:"failing_since,omitzero"`
	// Attempts are the latest attempts (at most HookAttemptsKept), newest
	// first; the first is the last attempt.
	Attempts []HookAttempt `json:"attempts"`
}

// Record adds attempt a, newest, to the state.
func (st *HookState) Record(a HookAttempt) {
	if len(a.Error) > maxAttemptErrorLen {
		a.Error = a.Error[:maxAttemptErrorLen] + "…"
	}
	st.Attempts = append([]HookAttempt{a}, st.Attempts...)
	if len(st.Attempts) > HookAttemptsKept {
		st.Attempts = st.Attempts[:HookAttemptsKept]
	}
	if a.OK {
		st.LastDelivery = a.Time
		st.FailingSince = time.Time{}
		return
	}
	st.LastError = a.Error
	if st.FailingSince.IsZero() {
		st.FailingSince = a.Time
	}
}

// HookStatusOf is the status a hook shows: disabled as stored, failing
// when its state has failed since the hook was created or last enabled,
// active otherwise.
func HookStatusOf(h Hook, st HookState) HookStatus {
	if h.Status == HookDisabled {
		return HookDisabled
	}
	if !st.FailingSince.IsZero() && st.FailingSince.After(h.Enabled) {
		return HookFailing
	}
	return h.Status
}

// HookAttemptsRequest asks for the delivery state of one hook.
type HookAttemptsRequest struct {
	ID string `json:"id"`
}

// HookListing is what a list adds to each stored hook: where its events
// come from, how many wait, how its deliveries go. Never stored.
type HookListing struct {
	// Service is the stream the hook's events come from (HOOKBUS_EVENTS).
	Service string `json:"service,omitempty"`
	// Pending is how many events wait for the hook (its consumer's
	// pending and unacknowledged counts); absent when it could not be
	// read.
	Pending *uint64 `json:"pending,omitempty"`
	// LastDelivery and LastError are those of the hook's HookState.
	LastDelivery time.Time `json:"last_delivery,omitzero"`
	LastError    string    `json:"last_error,omitempty"`
}

// HTTPAttemptStatus is the Status of an attempt the target answered with
// an HTTP status code.
func HTTPAttemptStatus(code int) string { return strconv.Itoa(code) }
