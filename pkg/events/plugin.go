package events

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"time"
)

// Mode says how a plugin takes part in an event.
type Mode string

// Plugin modes.
const (
	// ModeChain plugins run in order for each call and may change or halt
	// the event (MishkaInstaller's call(state)).
	ModeChain Mode = "chain"
	// ModeNotify plugins each get every event at least once, through their
	// own durable queue, and cannot change it.
	ModeNotify Mode = "notify"
)

// Status is where a plugin is in its lifecycle (DESIGN §1.1).
type Status string

// Plugin statuses.
const (
	// StatusRegistered: stored, not running, not sticky; start runs it.
	StatusRegistered Status = "registered"
	// StatusStarted and StatusRestarted both mean running.
	StatusStarted   Status = "started"
	StatusRestarted Status = "restarted"
	// StatusStopped: switched off by an operator; survives restarts and
	// dependency changes; only enable leaves it.
	StatusStopped Status = "stopped"
	// StatusHeld: a hard dependency is not running; released (restarted)
	// automatically when every hard dependency runs again.
	StatusHeld Status = "held"
)

// Running reports whether plugins in status s take part in events.
func (s Status) Running() bool { return s == StatusStarted || s == StatusRestarted }

// OnError is a plugin's policy for a chain step that fails or times out.
type OnError string

// Error policies.
const (
	// OnErrorSkip goes on with the state before the failed step (default).
	OnErrorSkip OnError = "skip"
	// OnErrorHalt stops the chain and returns the state so far.
	OnErrorHalt OnError = "halt"
	// OnErrorFail fails the whole call with the plugin's error.
	OnErrorFail OnError = "fail"
)

// Dependency is one plugin another depends on. A hard dependency must be
// running for the dependent to run; a soft one only orders the chain.
type Dependency struct {
	Name string `json:"name"`
	Soft bool   `json:"soft,omitempty"`
}

// Settings are the per-plugin knobs the dispatcher applies. Zero values
// mean the defaults (WithDefaults).
type Settings struct {
	// StepTimeoutMS bounds one chain step, in milliseconds.
	StepTimeoutMS int `json:"step_timeout_ms,omitempty"`
	// OnError is the chain step error policy.
	OnError OnError `json:"on_error,omitempty"`
	// MaxDeliver is how many times a notify delivery is tried before it is
	// dead-lettered.
	MaxDeliver int `json:"max_deliver,omitempty"`
	// BackoffMS are the waits between notify redeliveries, in
	// milliseconds; the last one repeats.
	BackoffMS []int `json:"backoff_ms,omitempty"`
}

// defaultSettings are the settings of a plugin that declares none.
func defaultSettings() Settings {
	return Settings{StepTimeoutMS: 2000, OnError: OnErrorSkip, MaxDeliver: 5, BackoffMS: []int{1000, 5000, 30000}}
}

// WithDefaults returns s with every zero field set to its default: a 2 s
// step timeout, skip on error, 5 deliveries backing off 1 s, 5 s, 30 s.
// Settings the registry stored are complete already and come back as they
// are, without allocating: the dispatcher and workers call this per step
// and per delivery.
func (s Settings) WithDefaults() Settings {
	if s.StepTimeoutMS != 0 && s.OnError != "" && s.MaxDeliver != 0 && len(s.BackoffMS) != 0 {
		return s
	}
	d := defaultSettings()
	if s.StepTimeoutMS == 0 {
		s.StepTimeoutMS = d.StepTimeoutMS
	}
	if s.OnError == "" {
		s.OnError = d.OnError
	}
	if s.MaxDeliver == 0 {
		s.MaxDeliver = d.MaxDeliver
	}
	if len(s.BackoffMS) == 0 {
		s.BackoffMS = d.BackoffMS
	}
	return s
}

// Backoff is BackoffMS as durations (the consumer's BackOff list).
func (s Settings) Backoff() []time.Duration {
	out := make([]time.Duration, len(s.BackoffMS))
	for i, ms := range s.BackoffMS {
		out[i] = time.Duration(ms) * time.Millisecond
	}
	return out
}

// BackoffAfter is the wait before the delivery that follows delivery
// attempt (1-based): the attempt-th value, the last one repeating; zero
// without a list.
func (s Settings) BackoffAfter(attempt int) time.Duration {
	if len(s.BackoffMS) == 0 {
		return 0
	}
	return time.Duration(s.BackoffMS[min(max(attempt-1, 0), len(s.BackoffMS)-1)]) * time.Millisecond
}

// StepTimeout is StepTimeoutMS as a duration.
func (s Settings) StepTimeout() time.Duration {
	return time.Duration(s.StepTimeoutMS) * time.Millisecond
}

// Limits on plugin definitions.
const (
	minPriority    = 0
	maxPriority    = 100
	maxDepends     = 32
	maxExtraBytes  = 16 << 10
	maxDeliverCap  = 100
	maxStepTimeout = 5 * time.Minute
)

// PluginSpec is what a plugin declares when it registers: the fields
// register replaces on every upsert.
type PluginSpec struct {
	Name     string          `json:"name"`
	Event    string          `json:"event"`
	Mode     Mode            `json:"mode,omitempty"`
	Priority int             `json:"priority"`
	Depends  []Dependency    `json:"depends,omitempty"`
	Extra    json.RawMessage `json:"extra,omitempty"`
	Owner    string          `json:"owner,omitempty"`
	Version  string          `json:"version,omitempty"`
	Settings Settings        `json:"settings,omitzero"`
}

// Plugin is a plugin's stored state: its declaration plus the runtime
// fields the registry owns. It is the value of key <name> in bucket
// hookbus_plugins, as JSON.
type Plugin struct {
	PluginSpec
	Status    Status    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Revision is the KV revision the state was read at; it is not stored
	// in the value.
	Revision uint64 `json:"revision,omitempty"`
	// CommandSeq is the HOOKBUS_COMMANDS sequence of the last command
	// applied to this plugin, so a redelivered command is not applied
	// twice.
	CommandSeq uint64 `json:"command_seq,omitempty"`
}

// HardDepends lists the names of the plugin's hard dependencies.
func (p PluginSpec) HardDepends() []string {
	var out []string
	for _, d := range p.Depends {
		if !d.Soft {
			out = append(out, d.Name)
		}
	}
	return out
}

// Normalize fills defaults (mode chain, settings) and sorts nothing: the
// order of depends is kept as declared.
func (p PluginSpec) Normalize() PluginSpec {
	if p.Mode == "" {
		p.Mode = ModeChain
	}
	p.Settings = p.Settings.WithDefaults()
	if len(bytes.TrimSpace(p.Extra)) == 0 {
		p.Extra = nil
	}
	return p
}

// Validate checks a declaration; the error is a *ValidationError naming the
// field ("plugin", "event", "priority", "depends", "extra", "settings.*").
func (p PluginSpec) Validate() error {
	if err := ValidatePluginName(p.Name); err != nil {
		return err
	}
	if err := ValidateType(p.Event); err != nil {
		return &ValidationError{Of: "plugin", Field: "event", Reason: err.(*ValidationError).Reason}
	}
	switch p.Mode {
	case ModeChain, ModeNotify, "":
	default:
		return invalidIn("plugin", "mode", "%q: want chain or notify", p.Mode)
	}
	if p.Priority < minPriority || p.Priority > maxPriority {
		return invalidIn("plugin", "priority", "%d: want %d to %d (lower runs first)", p.Priority, minPriority, maxPriority)
	}
	if len(p.Depends) > maxDepends {
		return invalidIn("plugin", "depends", "%d dependencies, the limit is %d", len(p.Depends), maxDepends)
	}
	seen := map[string]bool{}
	for _, d := range p.Depends {
		if err := ValidateName("depends", d.Name); err != nil {
			return err
		}
		if d.Name == p.Name {
			return invalidIn("plugin", "depends", "%s depends on itself", p.Name)
		}
		if seen[d.Name] {
			return invalidIn("plugin", "depends", "%s is listed twice", d.Name)
		}
		seen[d.Name] = true
	}
	if len(p.Extra) > 0 {
		if len(p.Extra) > maxExtraBytes {
			return invalidIn("plugin", "extra", "%d bytes, the limit is %d", len(p.Extra), maxExtraBytes)
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(p.Extra, &obj); err != nil || obj == nil {
			return invalidIn("plugin", "extra", "must be a JSON object")
		}
	}
	if len(p.Owner) > 256 || len(p.Version) > 64 || strings.ContainsFunc(p.Owner+p.Version, isControl) {
		return invalidIn("plugin", "owner", "owner (256 bytes) and version (64 bytes) must be short printable text")
	}
	return p.Settings.validate()
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

func (s Settings) validate() error {
	if s.StepTimeoutMS < 0 || time.Duration(s.StepTimeoutMS)*time.Millisecond > maxStepTimeout {
		return invalidIn("plugin", "settings.step_timeout_ms", "%d: want 1 to %d", s.StepTimeoutMS, maxStepTimeout.Milliseconds())
	}
	switch s.OnError {
	case OnErrorSkip, OnErrorHalt, OnErrorFail, "":
	default:
		return invalidIn("plugin", "settings.on_error", "%q: want skip, halt or fail", s.OnError)
	}
	if s.MaxDeliver < 0 || s.MaxDeliver > maxDeliverCap {
		return invalidIn("plugin", "settings.max_deliver", "%d: want 1 to %d", s.MaxDeliver, maxDeliverCap)
	}
	if len(s.BackoffMS) > s.MaxDeliver && s.MaxDeliver > 0 {
		return invalidIn("plugin", "settings.backoff_ms", "%d waits for %d deliveries: at most one per delivery", len(s.BackoffMS), s.MaxDeliver)
	}
	if slices.ContainsFunc(s.BackoffMS, func(ms int) bool { return ms <= 0 }) {
		return invalidIn("plugin", "settings.backoff_ms", "waits must be positive milliseconds")
	}
	return nil
}
