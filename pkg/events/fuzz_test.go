package events_test

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/binding/spec"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/pkg/events"
)

// FuzzEventSubject: whatever a payload puts in a type, EventSubject either
// refuses it or returns a literal subject under hookbus.event. that maps back
// to the same type.
func FuzzEventSubject(f *testing.F) {
	for _, s := range []string{
		"on_user_authorisation", "com.example.order.created", "x", "A-b_9",
		"", ".", "a..b", ".a", "a.", "*", ">", "a.*", "a.>", "a b", "a\tb", "a\x00b",
		"café", "a/b", "hookbus.event.x", strings.Repeat("a", events.MaxTypeLen),
		strings.Repeat("a", events.MaxTypeLen+1), "a\u00a0b", "a\u2028b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, typ string) {
		subject, err := events.EventSubject(typ)
		if err != nil {
			var ve *events.ValidationError
			if !errors.As(err, &ve) || ve.Field != "type" || !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("EventSubject(%q): %v (%T), want a *ValidationError for type", typ, err, err)
			}
			if subject != "" {
				t.Fatalf("EventSubject(%q) returned %q with its error", typ, subject)
			}
			if got, ok := typeFromEventSubject("hookbus.event." + typ); ok {
				t.Fatalf("EventSubject refuses %q but typeFromEventSubject accepts it as %q", typ, got)
			}
			return
		}
		if !strings.HasPrefix(subject, "hookbus.event.") {
			t.Fatalf("EventSubject(%q) = %q, not under hookbus.event.", typ, subject)
		}
		for _, r := range subject {
			if r == '*' || r == '>' || unicode.IsSpace(r) || unicode.IsControl(r) || r > unicode.MaxASCII {
				t.Fatalf("EventSubject(%q) = %q contains %q", typ, subject, r)
			}
		}
		for i, tok := range strings.Split(subject, ".") {
			if tok == "" {
				t.Fatalf("EventSubject(%q) = %q has an empty token %d", typ, subject, i+1)
			}
		}
		if err := events.ValidatePublishSubject(subject); err != nil {
			t.Fatalf("EventSubject(%q) = %q, which ValidatePublishSubject refuses: %v", typ, subject, err)
		}
		if got, ok := typeFromEventSubject(subject); !ok || got != typ {
			t.Fatalf("typeFromEventSubject(%q) = %q, %v; want %q, true", subject, got, ok, typ)
		}
	})
}

// FuzzDecode feeds Decode a header block ("name: value" lines, see
// parseHeaderBlock) and a body. Decode must not panic; what it refuses is a
// *ValidationError; what it accepts passes Validate, decodes the same way
// again, and survives Encode and Decode unchanged.
func FuzzDecode(f *testing.F) {
	// The golden inputs, as files and split into header block and body.
	for _, dir := range []string{"encode", "decode"} {
		files, err := filepath.Glob(filepath.Join("testdata", dir, "*"))
		if err != nil {
			f.Fatal(err)
		}
		if len(files) == 0 {
			f.Fatalf("no golden inputs under testdata/%s", dir)
		}
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			head, body, ok := strings.Cut(string(b), "\n\n")
			if strings.HasPrefix(string(b), "\n") {
				head, body, ok = "", string(b[1:]), true
			}
			if !ok {
				f.Fatalf("%s: no blank line after the headers", file)
			}
			f.Add(head, []byte(body))
		}
	}
	const binary = "ce-specversion: 1.0\nce-id: i\nce-source: /s\nce-type: t\n"
	for _, seed := range []struct{ head, body string }{
		{"", ""},
		{"", "{}"},
		{"", `{"specversion":"1.0","id":"i","source":"/s","type":"t","data_base64":"AAEC/w=="}`},
		{"content-type: application/cloudevents+json", `{"specversion":"1.0","id":"i","source":"/s","type":"t","n":1.5,"b":true,"MyExt":"x"}`},
		{"content-type: application/cloudevents+json", `{"specversion":"1.0","id":"i","source":"/s","type":"t","datacontenttype":"text/plain","data":"hi"}`},
		{"content-type: application/cloudevents+json", `{"specversion":"1.0","id":"i","source":"/s","type":"t","time":"2026-01-01T00:00:00.999999999+14:00"}`},
		{"content-type: application/cloudevents+json", `{"specversion":"0.3","id":"i","source":"/s","type":"t"}`},
		{"content-type: application/cloudevents-batch+json", `[]`},
		{"content-type: application/cloudevents+json", `[`},
		{binary, ""},
		{binary + "content-type: application/octet-stream", "\x00\x01\xff"},
		{binary + "ce-subject: 100%\nce-note: caf%C3%A9\nce-x: %zz", "x"},
		{binary + "ce-time: 2026-11-21T10:00:00Z\nce-dataschema: https://example.com/s", ""},
		{binary + "ce-time: yesterday", ""},
		{binary + "ce-", ""},
		{binary + "ce-my-ext: x", ""},
		{binary + "ce-data: x", ""},
		{binary + "ce-id: a%0Ab", ""},
		{"CE-SPECVERSION: 1.0\nCe-Id: i\nCE-SOURCE: /s\nce-TYPE: t\nContent-Type: application/json", `{"a":1}`},
		{"ce-specversion: 0.3\nce-id: i\nce-source: /s\nce-type: t", ""},
		{"ce-specversion: 1.0\nce-id: i\nce-source: /s\nce-type: " + events.TypeOnUserLoginFailure + "\ncontent-type: application/json", `{"ip":"192.0.2.1","endpoint":"html","error":{}}`},
		{"ce-specversion: 1.0\nce-id: i\nce-source: /s\nce-type: " + events.TypeOnUserLoginFailure, `{"ip":"192.0.2.1","endpoint":"web","error":{}}`},
	} {
		f.Add(seed.head, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, head string, body []byte) {
		h := parseHeaderBlock(head)
		e, err := events.Decode(h, body)
		if err != nil {
			var ve *events.ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("Decode refused with %v (%T), want a *ValidationError", err, err)
			}
			if e != nil {
				t.Fatalf("Decode returned an event with its error %v", err)
			}
			return
		}
		if err := (events.Codec{}).Validate(e); err != nil {
			t.Fatalf("Decode accepted an event Validate refuses: %v", err)
		}
		if ref, ok := sdkBinaryDecode(h, body); ok {
			if d := eventDiff(e, ref); d != "" {
				t.Fatalf("Decode and the CloudEvents library's binary reader disagree:\n%s", d)
			}
		}
		again, err := events.Decode(h, body)
		if err != nil {
			t.Fatalf("second Decode of the same message: %v", err)
		}
		if d := eventDiff(again, e); d != "" {
			t.Fatalf("the same message decoded two ways:\n%s", d)
		}
		subject, err := events.EventSubject(e.Type())
		if err != nil {
			t.Fatalf("Decode accepted type %q, EventSubject refuses it: %v", e.Type(), err)
		}
		msg, err := events.Encode(subject, e)
		if err != nil {
			t.Fatalf("Decode accepted the event, Encode refuses it: %v", err)
		}
		for name := range msg.Header {
			if name != events.HeaderMsgID && name != strings.ToLower(name) {
				t.Fatalf("Encode wrote header %q, not lowercase", name)
			}
		}
		if got, want := msg.Header.Get(events.HeaderMsgID), events.MsgID(e.Source(), e.ID()); got != want {
			t.Fatalf("Nats-Msg-Id %q, want %q", got, want)
		}
		back, err := events.Decode(msg.Header, msg.Data)
		if err != nil {
			t.Fatalf("Decode refuses what Encode wrote: %v\nmessage:\n%s", err, formatMsg(msg.Header, msg.Data))
		}
		if d := eventDiff(back, e); d != "" {
			t.Fatalf("Encode then Decode changed the event:\n%s\nmessage:\n%s", d, formatMsg(msg.Header, msg.Data))
		}
	})
}

// sdkBinaryDecode reads a binary-mode message with the CloudEvents
// library's binding (binding.ToEvent), the reference Decode's own binary
// reader must agree with on every event it accepts. ok is false for
// messages that are not binary mode or that the library refuses.
func sdkBinaryDecode(h nats.Header, body []byte) (*event.Event, bool) {
	m := sdkBinaryMessage{header: map[string]string{}, body: body}
	for k, vs := range h {
		if len(vs) > 0 {
			m.header[strings.ToLower(k)] = vs[0]
		}
	}
	if m.header["ce-specversion"] != "1.0" {
		return nil, false
	}
	e, err := binding.ToEvent(context.Background(), m)
	return e, err == nil
}

type sdkBinaryMessage struct {
	header map[string]string
	body   []byte
}

var sdkSpecs = spec.WithPrefix("ce-")

func (m sdkBinaryMessage) ReadEncoding() binding.Encoding { return binding.EncodingBinary }
func (m sdkBinaryMessage) Finish(error) error             { return nil }

// GetAttribute and GetExtension are for transformers, which are not used.
func (m sdkBinaryMessage) GetAttribute(spec.Kind) (spec.Attribute, any) { return nil, nil }
func (m sdkBinaryMessage) GetExtension(string) any                      { return nil }
func (m sdkBinaryMessage) ReadStructured(context.Context, binding.StructuredWriter) error {
	return binding.ErrNotStructured
}

// ReadBinary hands every header to the library's builder, percent-decoding
// all but URI references and media types (docs/protocol.md).
func (m sdkBinaryMessage) ReadBinary(ctx context.Context, w binding.BinaryWriter) error {
	v1 := sdkSpecs.Version("1.0")
	if err := w.SetAttribute(v1.AttributeFromKind(spec.SpecVersion), "1.0"); err != nil {
		return err
	}
	for k, v := range m.header {
		var a spec.Attribute
		switch {
		case k == "content-type":
			a = v1.AttributeFromKind(spec.DataContentType)
		case strings.HasPrefix(k, "ce-") && k != "ce-specversion":
			a = v1.Attribute(k)
		default:
			continue
		}
		if a == nil {
			d, err := url.PathUnescape(v)
			if err != nil {
				d = v
			}
			if err := w.SetExtension(strings.TrimPrefix(k, "ce-"), d); err != nil {
				return err
			}
			continue
		}
		switch a.Kind() {
		case spec.Source, spec.DataSchema, spec.DataContentType:
		default:
			if d, err := url.PathUnescape(v); err == nil {
				v = d
			}
		}
		if err := w.SetAttribute(a, v); err != nil {
			return err
		}
	}
	if len(m.body) > 0 {
		return w.SetData(bytes.NewReader(m.body))
	}
	return nil
}
