package events_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/hookbus/hookbus/pkg/events"
)

// checkReason checks that err is a *ValidationError for field with the
// given reason (the part after "invalid event: <field>: ").
func checkReason(t *testing.T, err error, field, reason string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s: %s", field, reason)
	}
	if !errors.Is(err, events.ErrInvalid) {
		t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
	}
	var ve *events.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("%v (%T) is not a *ValidationError", err, err)
	}
	if ve.Field != field || ve.Reason != reason {
		t.Errorf("got %s: %s\nwant %s: %s", ve.Field, ve.Reason, field, reason)
	}
}

func TestValidateType(t *testing.T) {
	valid := []struct{ name, typ string }{
		{"one token", "on_user_authorisation"},
		{"dotted", "com.example.order.created"},
		{"every token character", "AZaz09_-.x"},
		{"single character", "x"},
		{"only - and _", "-._"},
		{"at the length limit", strings.Repeat("a", events.MaxTypeLen)},
	}
	for _, tt := range valid {
		t.Run(tt.name, func(t *testing.T) {
			if err := events.ValidateType(tt.typ); err != nil {
				t.Errorf("ValidateType(%q) = %v", tt.typ, err)
			}
		})
	}
	invalid := []struct{ name, typ, msg string }{
		{"empty", "", "invalid event: type: required"},
		{"over the length limit", strings.Repeat("a", events.MaxTypeLen+1), "invalid event: type: 201 bytes long, the limit is 200"},
		{"space", "order created", `invalid event: type: "order created" contains ' ': only letters, digits, '_' and '-' are allowed in a token`},
		{"tab", "a\tb", `invalid event: type: "a\tb" contains '\t': only letters, digits, '_' and '-' are allowed in a token`},
		{"star token", "com.*", `invalid event: type: "com.*" contains '*': only letters, digits, '_' and '-' are allowed in a token`},
		{"star inside a token", "a*b", `invalid event: type: "a*b" contains '*': only letters, digits, '_' and '-' are allowed in a token`},
		{"greater-than", "com.>", `invalid event: type: "com.>" contains '>': only letters, digits, '_' and '-' are allowed in a token`},
		{"empty token", "a..b", `invalid event: type: "a..b" has an empty token (at token 2): tokens are joined by single dots`},
		{"leading dot", ".a", `invalid event: type: ".a" has an empty token (at token 1): tokens are joined by single dots`},
		{"trailing dot", "a.", `invalid event: type: "a." has an empty token (at token 2): tokens are joined by single dots`},
		{"only a dot", ".", `invalid event: type: "." has an empty token (at token 1): tokens are joined by single dots`},
		{"slash", "a/b", `invalid event: type: "a/b" contains '/': only letters, digits, '_' and '-' are allowed in a token`},
	}
	for _, tt := range invalid {
		t.Run(tt.name, func(t *testing.T) {
			err := events.ValidateType(tt.typ)
			checkInvalid(t, err, "type", tt.msg)
		})
	}
}

func TestValidateName(t *testing.T) {
	valid := []string{"a", "my-plugin_2", "UPPER", strings.Repeat("n", events.MaxNameLen)}
	for _, name := range valid {
		if err := events.ValidateName("plugin", name); err != nil {
			t.Errorf("ValidateName(plugin, %q) = %v", name, err)
		}
	}
	// The reason is pinned, not the full message: see checkReason.
	invalid := []struct{ name, field, value, reason string }{
		{"empty", "plugin", "", "required"},
		{"too long", "hook", strings.Repeat("n", events.MaxNameLen+1), "65 bytes long, the limit is 64"},
		{"dot", "plugin", "a.b", `"a.b" contains '.': only letters, digits, '_' and '-' are allowed`},
		{"space", "subscriber", "a b", `"a b" contains ' ': only letters, digits, '_' and '-' are allowed`},
		{"star", "plugin", "*", `"*" contains '*': only letters, digits, '_' and '-' are allowed`},
		{"greater-than", "plugin", ">", `">" contains '>': only letters, digits, '_' and '-' are allowed`},
	}
	for _, tt := range invalid {
		t.Run(tt.name, func(t *testing.T) {
			checkReason(t, events.ValidateName(tt.field, tt.value), tt.field, tt.reason)
		})
	}
}

// TestValidateNamesTheOffendingCharacter: the error must quote the
// character that is refused, not the first byte of its UTF-8 encoding.
func TestValidateNamesTheOffendingCharacter(t *testing.T) {
	checkReason(t, events.ValidateType("café"), "type",
		`"café" contains 'é': only letters, digits, '_' and '-' are allowed in a token`)
	checkReason(t, events.ValidateName("plugin", "naïve"), "plugin",
		`"naïve" contains 'ï': only letters, digits, '_' and '-' are allowed`)
}

func TestValidatePublishSubject(t *testing.T) {
	valid := []string{"a", "hookbus.event.com.example.x", "hookbus.event.café", "a-b_c.d~e"}
	for _, s := range valid {
		if err := events.ValidatePublishSubject(s); err != nil {
			t.Errorf("ValidatePublishSubject(%q) = %v", s, err)
		}
	}
	invalid := []struct{ name, subject, reason string }{
		{"empty", "", "required"},
		{"empty token", "a..b", `"a..b" has an empty token (at token 2)`},
		{"leading dot", ".a", `".a" has an empty token (at token 1)`},
		{"trailing dot", "a.", `"a." has an empty token (at token 2)`},
		{"star token", "a.*", `"a.*" contains the wildcard "*": publish needs a literal subject`},
		{"greater-than token", "a.>", `"a.>" contains the wildcard ">": publish needs a literal subject`},
		{"star inside a token", "a.b*c", `"a.b*c" contains the wildcard character '*'`},
		{"greater-than inside a token", "a>", `"a>" contains the wildcard character '>'`},
		{"space", "a b", `"a b" contains a space`},
		{"tab", "a\tb", `"a\tb" contains the control character U+0009`},
		{"newline", "a\nb", `"a\nb" contains the control character U+000A`},
		{"DEL", "a\x7fb", `"a\x7fb" contains the control character U+007F`},
	}
	for _, tt := range invalid {
		t.Run(tt.name, func(t *testing.T) {
			checkReason(t, events.ValidatePublishSubject(tt.subject), "subject", tt.reason)
		})
	}
}

func TestSubjectBuilders(t *testing.T) {
	tests := []struct {
		name  string
		build func() (string, error)
		want  string
		field string // the ValidationError field when the input is refused
	}{
		{"EventSubject", func() (string, error) { return events.EventSubject("com.example.order.created") }, "hookbus.event.com.example.order.created", ""},
		{"EventSubject catalog type", func() (string, error) { return events.EventSubject(events.TypeOnUserAuthorisation) }, "hookbus.event.on_user_authorisation", ""},
		{"EventSubject wildcard", func() (string, error) { return events.EventSubject("a.>") }, "", "type"},
		{"EventSubject empty", func() (string, error) { return events.EventSubject("") }, "", "type"},
		{"CallSubject", func() (string, error) { return events.CallSubject("on_router") }, "hookbus.call.on_router", ""},
		{"CallSubject empty token", func() (string, error) { return events.CallSubject("a..b") }, "", "type"},
		{"ResultSubject", func() (string, error) { return events.ResultSubject("com.example.x") }, "hookbus.result.com.example.x", ""},
		{"ResultSubject star", func() (string, error) { return events.ResultSubject("*") }, "", "type"},
		{"PluginCallSubject", func() (string, error) { return events.PluginCallSubject("audit-log_1") }, "hookbus.plugin.audit-log_1.call", ""},
		{"PluginCallSubject dotted", func() (string, error) { return events.PluginCallSubject("a.b") }, "", "plugin"},
		{"CommandSubject", func() (string, error) { return events.CommandSubject("plugin", "register", "acl") }, "hookbus.cmd.plugin.register.acl", ""},
		{"CommandSubject bulk", func() (string, error) { return events.CommandSubject("plugin", "stop", "") }, "hookbus.cmd.plugin.stop", ""},
		{"CommandSubject bad kind", func() (string, error) { return events.CommandSubject("plug in", "register", "acl") }, "", "command kind"},
		{"CommandSubject bad op", func() (string, error) { return events.CommandSubject("plugin", ">", "acl") }, "", "command op"},
		{"CommandSubject bad name", func() (string, error) { return events.CommandSubject("plugin", "stop", "a.b") }, "", "plugin"},
		{"AnswerSubject", func() (string, error) { return events.AnswerSubject("plugin", "acl", "x1") }, "hookbus.answer.plugin.acl.x1", ""},
		{"AnswerSubject bulk", func() (string, error) { return events.AnswerSubject("plugin", "", "x1") }, "hookbus.answer.plugin.x1", ""},
		{"AnswerSubject bad id", func() (string, error) { return events.AnswerSubject("plugin", "acl", "x.>") }, "", "answer id"},
		{"LifecycleSubject", func() (string, error) { return events.LifecycleSubject("audit") }, "hookbus.lifecycle.audit", ""},
		{"LifecycleSubject empty", func() (string, error) { return events.LifecycleSubject("") }, "", "name"},
		{"DLQSubject", func() (string, error) { return events.DLQSubject("mailer") }, "hookbus.dlq.mailer", ""},
		{"DLQSubject wildcard", func() (string, error) { return events.DLQSubject("*") }, "", "subscriber"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.build()
			if tt.field != "" {
				checkInvalid(t, err, tt.field, "")
				if got != "" {
					t.Errorf("subject %q returned with the error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if err := events.ValidatePublishSubject(got); err != nil {
				t.Errorf("built subject is not publishable: %v", err)
			}
		})
	}
}

func TestTypeFromEventSubject(t *testing.T) {
	tests := []struct {
		subject string
		want    string
		ok      bool
	}{
		{"hookbus.event.com.example.order.created", "com.example.order.created", true},
		{"hookbus.event.on_router", "on_router", true},
		{"hookbus.event.", "", false},
		{"hookbus.event", "", false},
		{"hookbus.event.a..b", "", false},
		{"hookbus.event.a.*", "", false},
		{"hookbus.event.>", "", false},
		{"hookbus.call.on_router", "", false},
		{"hookbus.eventx.on_router", "", false},
		{"Hookbus.event.on_router", "", false},
		{"other.hookbus.event.on_router", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.subject, func(t *testing.T) {
			got, ok := typeFromEventSubject(tt.subject)
			if got != tt.want || ok != tt.ok {
				t.Errorf("typeFromEventSubject(%q) = %q, %v; want %q, %v", tt.subject, got, ok, tt.want, tt.ok)
			}
		})
	}
}

// TestSubjectConstants pins the names other languages and NATS permissions
// are written against.
func TestSubjectConstants(t *testing.T) {
	got := []string{
		events.EventSubjects, events.ResultSubjects, events.CommandSubjects, events.LifecycleSubjects, events.DLQSubjects,
		events.StreamEvents, events.StreamResults, events.StreamCommands, events.StreamLifecycle, events.StreamDLQ,
		events.BucketPlugins, events.BucketHooks, events.BucketHookState, events.BucketAuth, events.BucketDevices, events.BucketGatewayTokens,
	}
	want := []string{
		"hookbus.event.>", "hookbus.result.>", "hookbus.cmd.>", "hookbus.lifecycle.>", "hookbus.dlq.>",
		"HOOKBUS_EVENTS", "HOOKBUS_RESULTS", "HOOKBUS_COMMANDS", "HOOKBUS_LIFECYCLE", "HOOKBUS_DLQ",
		"hookbus_plugins", "hookbus_hooks", "hookbus_hook_state", "hookbus_auth", "hookbus_devices", "hookbus_gateway_tokens",
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("constant %d = %q, want %q", i, got[i], want[i])
		}
	}
}

func TestCheckAnswerSubject(t *testing.T) {
	for _, tt := range []struct {
		name, replyTo string
		ok            bool
	}{
		{"acl", "hookbus.answer.plugin.acl.x1", true},
		{"", "hookbus.answer.plugin.x1", true},
		{"acl", "hookbus.answer.plugin.other.x1", false},
		{"acl", "hookbus.answer.plugin.acl.x1.more", false},
		{"acl", "hookbus.answer.plugin.acl.", false},
		{"acl", "$KV.hookbus_plugins.other", false},
		{"acl", "hookbus.lifecycle.other", false},
		{"acl", "_INBOX.admin.x", false},
		{"", "hookbus.answer.plugin.acl.x1", false},
	} {
		err := events.CheckAnswerSubject("plugin", tt.name, tt.replyTo)
		if (err == nil) != tt.ok {
			t.Errorf("CheckAnswerSubject(%q, %q) = %v, want ok %v", tt.name, tt.replyTo, err, tt.ok)
		}
	}
}

func TestCheckRequestReply(t *testing.T) {
	for reply, ok := range map[string]bool{
		"_INBOX.abc":                         true,
		"_INBOX.plugin-acl.abc.1":            true,
		"":                                   false,
		"$JS.ACK.HOOKBUS_EVENTS.c.1.2.3.4.0": false,
		"_INBOXx.abc":                        false,
		"hookbus.answer.plugin.acl.x1":       false,
	} {
		if err := events.CheckRequestReply(reply); (err == nil) != ok {
			t.Errorf("CheckRequestReply(%q) = %v, want ok %v", reply, err, ok)
		}
	}
}

// typeFromEventSubject returns the event type of a hookbus.event.<type>
// subject, or false if subject is not one.
func typeFromEventSubject(subject string) (string, bool) {
	typ, ok := strings.CutPrefix(subject, events.SubjectRoot+".event.")
	if !ok || events.ValidateType(typ) != nil {
		return "", false
	}
	return typ, true
}

// A plugin may not take the dead-letter subscriber name of the dispatcher
// or of a hook: its worker could forge their dead letters.
func TestValidatePluginNameReserved(t *testing.T) {
	for name, ok := range map[string]bool{
		"audit":                                 true,
		"hooks-audit":                           true,
		"my-hook-1":                             true,
		"hookbus-dispatcher":                    false,
		"hookbus-x":                             false,
		"hook-0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f": false,
		"hook-":                                 false,
		"bad name":                              false,
	} {
		err := events.ValidatePluginName(name)
		if (err == nil) != ok {
			t.Errorf("ValidatePluginName(%q) = %v, want ok %v", name, err, ok)
		}
		spec := events.PluginSpec{Name: name, Event: "com.example.x", Mode: events.ModeNotify}
		if err := spec.Validate(); !ok && err == nil {
			t.Errorf("PluginSpec{Name: %q}.Validate() accepted a reserved name", name)
		}
	}
}

func TestDeviceLifecycleSubject(t *testing.T) {
	for id, want := range map[string]string{
		"thermostat-42": "hookbus.lifecycle.device.thermostat-42",
		"":              "hookbus.lifecycle.device._unknown",
		"_x":            "hookbus.lifecycle.device._unknown",
		"a.b":           "hookbus.lifecycle.device._unknown",
		"a*":            "hookbus.lifecycle.device._unknown",
	} {
		if got := events.DeviceLifecycleSubject(id); got != want {
			t.Errorf("DeviceLifecycleSubject(%q) = %q, want %q", id, got, want)
		}
	}
	if events.BucketDevicePresence != "hookbus_device_presence" {
		t.Errorf("BucketDevicePresence = %q", events.BucketDevicePresence)
	}
}
