package events_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/binding/spec"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/internal/stepheader"
	"github.com/hookbus/hookbus/pkg/events"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/ from the current output")

const orderSubject = "hookbus.event.com.example.order.created"

// orderEvent is the fixed event of the golden files: every attribute set,
// two string extensions (one that needs percent-encoding) and JSON data.
func orderEvent() *event.Event {
	e := event.New()
	e.SetID("order-42")
	e.SetSource("/shop")
	e.SetType("com.example.order.created")
	e.SetSubject("orders/42")
	e.SetTime(time.Date(2026, 11, 21, 10, 0, 0, 123_000_000, time.UTC))
	e.SetDataSchema("https://example.com/schemas/order.json")
	e.SetExtension("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	e.SetExtension("tenant", "acme corp")
	// json.RawMessage, not []byte: the SDK marks []byte data as binary and
	// structured mode would then carry it as data_base64.
	if err := e.SetData(event.ApplicationJSON, json.RawMessage(`{"total":12.5,"items":["book"]}`)); err != nil {
		panic(err)
	}
	return &e
}

// minimalEvent is a valid event with only the required attributes and
// JSON data, the base the invalid cases change one thing of.
func minimalEvent() *event.Event {
	e := event.New()
	e.SetID("order-42")
	e.SetSource("/shop")
	e.SetType("com.example.order.created")
	if err := e.SetData(event.ApplicationJSON, json.RawMessage(`{"total":12.5}`)); err != nil {
		panic(err)
	}
	return &e
}

// v1 gives direct access to an event's attributes, to set values the SDK's
// setters would refuse (and silently keep the old value).
func v1(e *event.Event) *event.EventContextV1 { return e.Context.(*event.EventContextV1) }

// eventDiff describes every difference between got and want in the
// attributes and the data, or returns "" when they are the same. Extension
// values are compared in their string form: binary mode does not carry
// their CloudEvents type.
func eventDiff(got, want *event.Event) string {
	var d []string
	cmp := func(name, g, w string) {
		if g != w {
			d = append(d, fmt.Sprintf("%s: got %q, want %q", name, g, w))
		}
	}
	cmp("specversion", got.SpecVersion(), want.SpecVersion())
	cmp("id", got.ID(), want.ID())
	cmp("source", got.Source(), want.Source())
	cmp("type", got.Type(), want.Type())
	cmp("subject", got.Subject(), want.Subject())
	cmp("dataschema", got.DataSchema(), want.DataSchema())
	cmp("datacontenttype", got.DataContentType(), want.DataContentType())
	if !got.Time().Equal(want.Time()) {
		d = append(d, fmt.Sprintf("time: got %v, want %v", got.Time(), want.Time()))
	}
	if g, w := extensionStrings(got), extensionStrings(want); !maps.Equal(g, w) {
		d = append(d, fmt.Sprintf("extensions: got %q, want %q", g, w))
	}
	if !bytes.Equal(got.Data(), want.Data()) {
		d = append(d, fmt.Sprintf("data: got %q, want %q", got.Data(), want.Data()))
	}
	return strings.Join(d, "\n")
}

func extensionStrings(e *event.Event) map[string]string {
	out := make(map[string]string, len(e.Extensions()))
	for k, v := range e.Extensions() {
		s, err := types.Format(v)
		if err != nil {
			s = fmt.Sprintf("unformattable %T %v", v, v)
		}
		out[k] = s
	}
	return out
}

// formatMsg prints a NATS message as the golden files hold it: the header
// names sorted, one "name: value" line per value, a blank line, the body.
func formatMsg(h nats.Header, body []byte) []byte {
	var b bytes.Buffer
	for _, name := range slices.Sorted(maps.Keys(h)) {
		for _, v := range h[name] {
			fmt.Fprintf(&b, "%s: %s\n", name, v)
		}
	}
	b.WriteString("\n")
	b.Write(body)
	return b.Bytes()
}

// parseMsg reads what formatMsg prints. A file that starts with the blank
// line is a message without headers (nil header).
func parseMsg(b []byte) (nats.Header, []byte) {
	if body, ok := bytes.CutPrefix(b, []byte("\n")); ok {
		return nil, body
	}
	head, body, _ := bytes.Cut(b, []byte("\n\n"))
	return parseHeaderBlock(string(head)), body
}

// parseHeaderBlock reads "name: value" lines, keeping the names' case.
// Lines without a colon are skipped; no lines give a nil header.
func parseHeaderBlock(s string) nats.Header {
	var h nats.Header
	for line := range strings.SplitSeq(s, "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		if h == nil {
			h = nats.Header{}
		}
		h[name] = append(h[name], strings.TrimPrefix(value, " "))
	}
	return h
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkGolden compares got with testdata/name, or rewrites the file with
// -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./pkg/events -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test ./pkg/events -update rewrites it after a deliberate change)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// encoders are the two ways a Codec writes an event.
var encoders = []struct {
	name   string
	encode func(c events.Codec, subject string, e *event.Event) (*nats.Msg, error)
}{
	{"binary", events.Codec.Encode},
	{"structured", events.Codec.EncodeStructured},
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		event func() *event.Event
	}{
		{"every attribute and JSON data", orderEvent},
		{"required attributes only", func() *event.Event {
			e := event.New()
			e.SetID("1")
			e.SetSource("urn:example:a")
			e.SetType("a")
			return &e
		}},
		{"binary data", func() *event.Event {
			e := minimalEvent()
			if err := e.SetData("application/octet-stream", []byte{0, 1, 0x7f, 0x80, 0xfe, 0xff, '\n', '%'}); err != nil {
				panic(err)
			}
			return e
		}},
		{"text data", func() *event.Event {
			e := minimalEvent()
			if err := e.SetData("text/plain", "héllo, wörld\n100% \"quoted\""); err != nil {
				panic(err)
			}
			return e
		}},
		{"JSON data without datacontenttype", func() *event.Event {
			e := minimalEvent()
			v1(e).DataContentType = nil
			return e
		}},
		{"extensions of every string shape", func() *event.Event {
			e := minimalEvent()
			e.SetExtension("empty", "")
			e.SetExtension("spaced", " leading and trailing ")
			e.SetExtension("unicode", "日本語 ✓")
			e.SetExtension("a1b2", "x")
			return e
		}},
		{"non-ASCII source, percent-encoded by the SDK", func() *event.Event {
			e := minimalEvent()
			e.SetSource("/e2e/nöde?q=a b")
			return e
		}},
		{"time with nanoseconds, given in another zone", func() *event.Event {
			e := minimalEvent()
			e.SetTime(time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("X", -5*3600)))
			return e
		}},
	}
	for _, tt := range tests {
		for _, enc := range encoders {
			t.Run(tt.name+"/"+enc.name, func(t *testing.T) {
				want := tt.event()
				msg, err := enc.encode(events.Codec{}, "hookbus.event."+want.Type(), want)
				if err != nil {
					t.Fatalf("encode: %v", err)
				}
				if msg.Subject != "hookbus.event."+want.Type() {
					t.Errorf("subject %q, want hookbus.event.%s", msg.Subject, want.Type())
				}
				if got, want := msg.Header.Get(events.HeaderMsgID), events.MsgID(want.Source(), want.ID()); got != want {
					t.Errorf("Nats-Msg-Id %q, want MsgID(source, id) %q", got, want)
				}
				got, err := events.Decode(msg.Header, msg.Data)
				if err != nil {
					t.Fatalf("decode: %v\nmessage:\n%s", err, formatMsg(msg.Header, msg.Data))
				}
				if d := eventDiff(got, want); d != "" {
					t.Errorf("decoded event differs from the encoded one:\n%s\nmessage:\n%s", d, formatMsg(msg.Header, msg.Data))
				}
			})
		}
	}
}

func TestEncodeBinaryHeaders(t *testing.T) {
	e := orderEvent()
	msg, err := events.Encode(orderSubject, e)
	if err != nil {
		t.Fatal(err)
	}
	want := nats.Header{
		"ce-specversion":   {"1.0"},
		"ce-id":            {"order-42"},
		"ce-source":        {"/shop"},
		"ce-type":          {"com.example.order.created"},
		"ce-subject":       {"orders/42"},
		"ce-time":          {"2026-11-21T10:00:00.123Z"},
		"ce-dataschema":    {"https://example.com/schemas/order.json"},
		"ce-traceparent":   {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		"ce-tenant":        {"acme%20corp"},
		"content-type":     {"application/json"},
		events.HeaderMsgID: {events.MsgID("/shop", "order-42")},
	}
	if !maps.EqualFunc(msg.Header, want, slices.Equal) {
		t.Errorf("headers:\n%s\nwant:\n%s", formatMsg(msg.Header, nil), formatMsg(want, nil))
	}
	if got := string(msg.Data); got != `{"total":12.5,"items":["book"]}` {
		t.Errorf("body %s, want the data as it is", got)
	}
}

func TestEncodeStructuredHeaders(t *testing.T) {
	msg, err := events.Codec{}.EncodeStructured(orderSubject, orderEvent())
	if err != nil {
		t.Fatal(err)
	}
	want := nats.Header{
		"content-type":     {"application/cloudevents+json"},
		events.HeaderMsgID: {events.MsgID("/shop", "order-42")},
	}
	if !maps.EqualFunc(msg.Header, want, slices.Equal) {
		t.Errorf("headers:\n%s\nwant:\n%s", formatMsg(msg.Header, nil), formatMsg(want, nil))
	}
	var body map[string]any
	if err := json.Unmarshal(msg.Data, &body); err != nil {
		t.Fatalf("body is not a JSON object: %v\n%s", err, msg.Data)
	}
	wantBody := map[string]any{
		"specversion":     "1.0",
		"id":              "order-42",
		"source":          "/shop",
		"type":            "com.example.order.created",
		"subject":         "orders/42",
		"time":            "2026-11-21T10:00:00.123Z",
		"dataschema":      "https://example.com/schemas/order.json",
		"datacontenttype": "application/json",
		"traceparent":     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"tenant":          "acme corp",
		"data":            map[string]any{"total": 12.5, "items": []any{"book"}},
	}
	if got, want := fmt.Sprint(body), fmt.Sprint(wantBody); got != want {
		t.Errorf("body:\n%s\nwant:\n%s", got, want)
	}
}

// TestGoldenEncode pins the bytes of both modes for the fixed event.
func TestGoldenEncode(t *testing.T) {
	for _, enc := range encoders {
		t.Run(enc.name, func(t *testing.T) {
			msg, err := enc.encode(events.Codec{}, orderSubject, orderEvent())
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, "encode/"+enc.name+".golden", formatMsg(msg.Header, msg.Data))
		})
	}
}

// decodeGoldens are messages as other producers send them, under
// testdata/decode, with the event each must decode to.
var decodeGoldens = []struct {
	file string
	want func() *event.Event
}{
	{"../encode/binary.golden", orderEvent},
	{"../encode/structured.golden", orderEvent},
	{
		// e2e/node/publish.mjs: lowercase content-type, JSON.stringify of
		// the event, Date.toISOString() time.
		"node_publish_mjs.msg", func() *event.Event {
			e := event.New()
			e.SetID("node-1")
			e.SetSource("/e2e/node")
			e.SetType("com.example.order.created")
			e.SetTime(time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC))
			_ = e.SetData(event.ApplicationJSON, json.RawMessage(`{"n":2}`))
			return &e
		},
	},
	{
		// The CloudEvents JavaScript SDK's HTTP.structured output sent over
		// NATS: capitalised Content-Type with a charset, its own field order.
		"node_sdk_structured.msg", func() *event.Event {
			e := event.New()
			e.SetID("5d4e1b9a-6a2c-4a0e-9c7d-3f1e2b8a9c01")
			e.SetSource("urn:example:node")
			e.SetType("com.example.order.created")
			e.SetTime(time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC))
			e.SetExtension("tenant", "acme")
			_ = e.SetData(event.ApplicationJSON, json.RawMessage(`{"total":12.5}`))
			return &e
		},
	},
	{
		// Binary mode from a producer that canonicalises header names the
		// way net/http does, with a time in another zone.
		"binary_capitalised.msg", func() *event.Event {
			e := event.New()
			e.SetID("order-43")
			e.SetSource("/shop")
			e.SetType("com.example.order.created")
			e.SetSubject("orders/43")
			e.SetTime(time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC))
			e.SetExtension("tenant", "acme corp")
			_ = e.SetData(event.ApplicationJSON, json.RawMessage(`{"total":7}`))
			return &e
		},
	},
	{
		"binary_uppercase.msg", func() *event.Event {
			e := event.New()
			e.SetID("order-44")
			e.SetSource("/shop")
			e.SetType("com.example.order.created")
			_ = e.SetData("text/plain", "forty-four")
			return &e
		},
	},
	{
		// nats pub hookbus.event.com.example.order.created '{...}': no
		// headers at all.
		"nats_pub_raw.msg", func() *event.Event {
			e := event.New()
			e.SetID("cli-7")
			e.SetSource("/cli")
			e.SetType("com.example.order.created")
			v1(&e).DataContentType = nil
			e.DataEncoded = []byte(`{"n":7}`)
			return &e
		},
	},
}

func TestGoldenDecode(t *testing.T) {
	for _, tt := range decodeGoldens {
		t.Run(strings.TrimSuffix(filepath.Base(tt.file), filepath.Ext(tt.file)), func(t *testing.T) {
			h, body := parseMsg(readTestdata(t, filepath.Join("decode", tt.file)))
			got, err := events.Decode(h, body)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			want := tt.want()
			if d := eventDiff(got, want); d != "" {
				t.Errorf("decoded event:\n%s", d)
			}
			// Producers in other languages compute Nats-Msg-Id themselves:
			// it must agree with MsgID, or their retries are stored twice.
			if id := h.Get(events.HeaderMsgID); id != "" && id != events.MsgID(want.Source(), want.ID()) {
				t.Errorf("Nats-Msg-Id in the file %s, MsgID(%q, %q) = %s", id, want.Source(), want.ID(), events.MsgID(want.Source(), want.ID()))
			}
		})
	}
}

func TestDecodeHeaderNamesIgnoreCase(t *testing.T) {
	const structuredBody = `{"specversion":"1.0","id":"i-1","source":"/s","type":"t.x","tenant":"acme","datacontenttype":"text/plain","data":"hi"}`
	tests := []struct {
		name   string
		header nats.Header
		body   string
	}{
		{"structured Content-Type", nats.Header{"Content-Type": {"application/cloudevents+json"}}, structuredBody},
		{"structured CONTENT-TYPE", nats.Header{"CONTENT-TYPE": {"application/cloudevents+json"}}, structuredBody},
		{"structured cOnTeNt-TyPe with charset", nats.Header{"cOnTeNt-TyPe": {"application/cloudevents+json; charset=utf-8"}}, structuredBody},
		{"structured media type in capitals", nats.Header{"content-type": {"Application/CloudEvents+JSON"}}, structuredBody},
		{"structured with other headers", nats.Header{"Content-Type": {"application/cloudevents+json"}, "Nats-Msg-Id": {"x"}, "X-Trace": {"y"}}, structuredBody},
		{"no headers, JSON object body", nil, structuredBody},
		{"empty header map, JSON object body with leading space", nats.Header{}, " \n\t" + structuredBody},
		{"binary Ce-Id and CE-SOURCE", nats.Header{
			"Ce-Specversion": {"1.0"},
			"Ce-Id":          {"i-1"},
			"CE-SOURCE":      {"/s"},
			"cE-tYpE":        {"t.x"},
			"CE-Tenant":      {"acme"},
			"Content-Type":   {"text/plain"},
		}, "hi"},
		{"binary ce-datacontenttype instead of content-type", nats.Header{
			"ce-specversion":     {"1.0"},
			"ce-id":              {"i-1"},
			"ce-source":          {"/s"},
			"ce-type":            {"t.x"},
			"ce-tenant":          {"acme"},
			"CE-DATACONTENTTYPE": {"text/plain"},
		}, "hi"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := events.Decode(tt.header, []byte(tt.body))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			want := event.New()
			want.SetID("i-1")
			want.SetSource("/s")
			want.SetType("t.x")
			want.SetExtension("tenant", "acme")
			_ = want.SetData("text/plain", "hi")
			if d := eventDiff(got, &want); d != "" {
				t.Error(d)
			}
		})
	}
}

func TestPercentEncodingRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		value string
		wire  string // the header value in binary mode
	}{
		{"plain", "abc-123_/:.", "abc-123_/:."},
		{"space", "a b", "a%20b"},
		{"percent", "100%", "100%25"},
		{"something that looks encoded", "a%20b", "a%2520b"},
		{"double quote", `say "hi"`, "say%20%22hi%22"},
		{"non-ASCII", "café", "caf%C3%A9"},
		{"CJK", "日本", "%E6%97%A5%E6%9C%AC"},
		{"plus and equals stay", "a+b=c", "a+b=c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := minimalEvent()
			v1(e).ID = tt.value
			e.SetSubject(tt.value)
			e.SetExtension("note", tt.value)
			msg, err := events.Encode(orderSubject, e)
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{"ce-id", "ce-subject", "ce-note"} {
				if got := msg.Header[name]; !slices.Equal(got, []string{tt.wire}) {
					t.Errorf("%s: %q, want %q", name, got, tt.wire)
				}
			}
			got, err := events.Decode(msg.Header, msg.Data)
			if err != nil {
				t.Fatal(err)
			}
			if d := eventDiff(got, e); d != "" {
				t.Error(d)
			}
		})
	}
}

// TestPercentDecodingOfForeignValues: producers that do not percent-encode
// still get their values through when they are not valid encodings.
func TestPercentDecodingOfForeignValues(t *testing.T) {
	tests := []struct {
		name, wire, want string
	}{
		{"literal percent at the end", "100%", "100%"},
		{"literal percent before letters", "50%off", "50%off"},
		{"invalid escape", "%zz", "%zz"},
		{"truncated escape", "a%2", "a%2"},
		{"one invalid escape keeps the whole value", "a%20b%", "a%20b%"},
		{"valid escape", "a%20b", "a b"},
		{"lowercase hex", "caf%c3%a9", "café"},
		{"escaped letter", "%41", "A"},
		{"plus is not a space", "a+b", "a+b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := nats.Header{
				"ce-specversion": {"1.0"},
				"ce-id":          {"i"},
				"ce-source":      {"/s"},
				"ce-type":        {"t"},
				"ce-subject":     {tt.wire},
				"ce-note":        {tt.wire},
			}
			e, err := events.Decode(h, nil)
			if err != nil {
				t.Fatal(err)
			}
			if e.Subject() != tt.want {
				t.Errorf("subject %q, want %q", e.Subject(), tt.want)
			}
			if got := e.Extensions()["note"]; got != tt.want {
				t.Errorf("extension %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEncodeInvalid(t *testing.T) {
	tests := []struct {
		name   string
		codec  events.Codec
		change func(e *event.Event)
		field  string
		msg    string
	}{
		{
			name:   "missing id",
			change: func(e *event.Event) { v1(e).ID = "" },
			field:  "id",
			msg:    "invalid event: id: required",
		},
		{
			name:   "missing source",
			change: func(e *event.Event) { v1(e).Source = types.URIRef{} },
			field:  "source",
			msg:    "invalid event: source: required",
		},
		{
			name:   "missing type",
			change: func(e *event.Event) { v1(e).Type = "" },
			field:  "type",
			msg:    "invalid event: type: required",
		},
		{
			name:   "type with a space",
			change: func(e *event.Event) { v1(e).Type = "order created" },
			field:  "type",
			msg:    `invalid event: type: "order created" contains ' ': only letters, digits, '_' and '-' are allowed in a token`,
		},
		{
			name:   "type with *",
			change: func(e *event.Event) { v1(e).Type = "com.example.*" },
			field:  "type",
			msg:    `invalid event: type: "com.example.*" contains '*': only letters, digits, '_' and '-' are allowed in a token`,
		},
		{
			name:   "type with >",
			change: func(e *event.Event) { v1(e).Type = "com.>" },
			field:  "type",
			msg:    `invalid event: type: "com.>" contains '>': only letters, digits, '_' and '-' are allowed in a token`,
		},
		{
			name:   "type with an empty token",
			change: func(e *event.Event) { v1(e).Type = "a..b" },
			field:  "type",
			msg:    `invalid event: type: "a..b" has an empty token (at token 2): tokens are joined by single dots`,
		},
		{
			name:   "type with a leading dot",
			change: func(e *event.Event) { v1(e).Type = ".a" },
			field:  "type",
			msg:    `invalid event: type: ".a" has an empty token (at token 1): tokens are joined by single dots`,
		},
		{
			name:   "specversion 0.3",
			change: func(e *event.Event) { e.SetSpecVersion("0.3") },
			field:  "specversion",
			msg:    `invalid event: specversion: "0.3" is not supported, want "1.0"`,
		},
		{
			name:   "no specversion (no context)",
			change: func(e *event.Event) { *e = event.Event{} },
			field:  "specversion",
			msg:    "invalid event: specversion: required",
		},
		{
			name:   "control character in id",
			change: func(e *event.Event) { v1(e).ID = "order\n42" },
			field:  "id",
			msg:    "invalid event: id: contains the control character U+000A",
		},
		{
			name:   "DEL in subject",
			change: func(e *event.Event) { e.SetSubject("a\x7fb") },
			field:  "subject",
			msg:    "invalid event: subject: contains the control character U+007F",
		},
		{
			name:   "control character in a string extension",
			change: func(e *event.Event) { e.SetExtension("tenant", "a\tb") },
			field:  "tenant",
			msg:    "invalid event: tenant: contains the control character U+0009",
		},
		{
			// The SDK's SetExtension lowercases names; a map set directly
			// (or another SDK) can still hold one.
			name:   "uppercase extension name",
			change: func(e *event.Event) { v1(e).Extensions = map[string]any{"Tenant": "acme"} },
			field:  "Tenant",
			msg:    "invalid event: Tenant: extension names are lowercase letters and digits only (CloudEvents 1.0)",
		},
		{
			name:   "extension name with -",
			change: func(e *event.Event) { v1(e).Extensions = map[string]any{"my-ext": "x"} },
			field:  "my-ext",
			msg:    "invalid event: my-ext: extension names are lowercase letters and digits only (CloudEvents 1.0)",
		},
		{
			name:   "empty extension name",
			change: func(e *event.Event) { v1(e).Extensions = map[string]any{"": "x"} },
			field:  `extension ""`,
			msg:    `invalid event: extension "": name must be 1 to 64 characters`,
		},
		{
			name:   "reserved extension name",
			change: func(e *event.Event) { v1(e).Extensions = map[string]any{"data": "x"} },
			field:  "extension data",
			msg:    "invalid event: extension data: the name is reserved by the JSON event format",
		},
		{
			name:   "datacontenttype not a media type",
			change: func(e *event.Event) { e.SetDataContentType("application json") },
			field:  "datacontenttype",
			msg:    `invalid event: datacontenttype: "application json" is not a media type (type/subtype, e.g. application/json)`,
		},
		{
			name:   "over the size limit",
			codec:  events.Codec{MaxSize: 100},
			change: func(e *event.Event) {},
			field:  "size",
			msg:    "invalid event: size: event is 229 bytes encoded, the limit is 100",
		},
		{
			name: "catalog data failing its schema",
			change: func(e *event.Event) {
				e.SetType(events.TypeOnUserLoginFailure)
				_ = e.SetData(event.ApplicationJSON, json.RawMessage(`{"ip":"192.0.2.1","endpoint":"web","error":{"reason":"bad password"}}`))
			},
			field: "data.endpoint",
			msg:   `invalid event: data.endpoint: value "web" not one of html, api`,
		},
		{
			name: "catalog type with non-JSON data",
			change: func(e *event.Event) {
				e.SetType(events.TypeOnUserLoginFailure)
				_ = e.SetData("text/plain", "failed")
			},
			field: "datacontenttype",
			msg:   `invalid event: datacontenttype: "text/plain" is not JSON: catalog type on_user_login_failure needs application/json data`,
		},
	}
	for _, tt := range tests {
		for _, enc := range encoders {
			t.Run(tt.name+"/"+enc.name, func(t *testing.T) {
				e := minimalEvent()
				tt.change(e)
				msg, err := enc.encode(tt.codec, orderSubject, e)
				checkInvalid(t, err, tt.field, tt.msg)
				if msg != nil {
					t.Errorf("a message came back with the error: %s", formatMsg(msg.Header, msg.Data))
				}
			})
		}
		t.Run(tt.name+"/Validate", func(t *testing.T) {
			e := minimalEvent()
			tt.change(e)
			checkInvalid(t, tt.codec.Validate(e), tt.field, tt.msg)
		})
	}
}

// checkInvalid checks that err refuses an event: the exact message, a
// *ValidationError for field, matching ErrInvalid. An empty msg leaves the
// message unchecked.
func checkInvalid(t *testing.T, err error, field, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %q", msg)
	}
	if msg != "" && err.Error() != msg {
		t.Errorf("error:\n  %s\nwant:\n  %s", err, msg)
	}
	if !errors.Is(err, events.ErrInvalid) {
		t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
	}
	var ve *events.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("%v (%T) is not a *ValidationError", err, err)
	}
	if field != "" && ve.Field != field {
		t.Errorf("Field %q, want %q", ve.Field, field)
	}
}

func TestValidateSource(t *testing.T) {
	valid := []string{"/shop", "urn:example:node", "https://example.com/a?b=c#d", "/e2e/n%C3%B6de", "/a%20b", "//host:80/p", "shop"}
	for _, s := range valid {
		if err := events.ValidateSource(s); err != nil {
			t.Errorf("ValidateSource(%q) = %v", s, err)
		}
	}
	invalid := []struct{ source, msg string }{
		{"/a b", `invalid event: source: "/a b" is not in canonical URI form: send "/a%20b"`},
		{"/e2e/nöde", `invalid event: source: "/e2e/nöde" is not in canonical URI form: send "/e2e/n%C3%B6de"`},
		{"HTTPS://example.com/", `invalid event: source: "HTTPS://example.com/" is not in canonical URI form: send "https://example.com/"`},
		{"%zz", `invalid event: source: "%zz" is not a URI reference`},
	}
	for _, tt := range invalid {
		t.Run(tt.source, func(t *testing.T) {
			checkInvalid(t, events.ValidateSource(tt.source), "source", tt.msg)
		})
	}
}

func TestEncodeRefusesPublishSubject(t *testing.T) {
	tests := []struct {
		name, subject, reason string
	}{
		{"wildcard token", "hookbus.event.*", `"hookbus.event.*" contains the wildcard "*": publish needs a literal subject`},
		{"full wildcard", "hookbus.>", `"hookbus.>" contains the wildcard ">": publish needs a literal subject`},
		{"empty token", "hookbus..event", `"hookbus..event" has an empty token (at token 2)`},
		{"space", "hookbus.event.a b", `"hookbus.event.a b" contains a space`},
		{"empty", "", "required"},
	}
	for _, tt := range tests {
		for _, enc := range encoders {
			t.Run(tt.name+"/"+enc.name, func(t *testing.T) {
				_, err := enc.encode(events.Codec{}, tt.subject, minimalEvent())
				checkInvalid(t, err, "subject", "")
				var ve *events.ValidationError
				if errors.As(err, &ve) && ve.Reason != tt.reason {
					t.Errorf("reason %q, want %q", ve.Reason, tt.reason)
				}
			})
		}
	}
}

func TestDecodeInvalid(t *testing.T) {
	binary := func(kv ...string) nats.Header {
		h := nats.Header{}
		for i := 0; i < len(kv); i += 2 {
			h[kv[i]] = []string{kv[i+1]}
		}
		return h
	}
	structured := nats.Header{"content-type": {"application/cloudevents+json"}}
	tests := []struct {
		name   string
		codec  events.Codec
		header nats.Header
		body   string
		field  string
		msg    string // "" leaves the message unchecked (see the comment on the row)
	}{
		{
			name:   "binary: missing id",
			header: binary("ce-specversion", "1.0", "ce-source", "/s", "ce-type", "t"),
			field:  "id",
			msg:    "invalid event: id: required",
		},
		{
			name:   "binary: missing source",
			header: binary("ce-specversion", "1.0", "ce-id", "i", "ce-type", "t"),
			field:  "source",
			msg:    "invalid event: source: required",
		},
		{
			name:   "binary: missing type",
			header: binary("ce-specversion", "1.0", "ce-id", "i", "ce-source", "/s"),
			field:  "type",
			msg:    "invalid event: type: required",
		},
		{
			name:   "binary: percent-encoded space in type",
			header: binary("ce-specversion", "1.0", "ce-id", "i", "ce-source", "/s", "ce-type", "a%20b"),
			field:  "type",
			msg:    `invalid event: type: "a b" contains ' ': only letters, digits, '_' and '-' are allowed in a token`,
		},
		{
			name:   "binary: wildcard type",
			header: binary("ce-specversion", "1.0", "ce-id", "i", "ce-source", "/s", "ce-type", "a.>"),
			field:  "type",
			msg:    `invalid event: type: "a.>" contains '>': only letters, digits, '_' and '-' are allowed in a token`,
		},
		{
			name:   "binary: specversion 0.3",
			header: binary("ce-specversion", "0.3", "ce-id", "i", "ce-source", "/s", "ce-type", "t"),
			field:  "specversion",
			msg:    `invalid event: specversion: "0.3" is not supported, want "1.0"`,
		},
		{
			name:   "binary: no ce-specversion and no content-type",
			header: binary("ce-id", "i", "ce-source", "/s", "ce-type", "t"),
			body:   `{"a":1}`,
			field:  "specversion",
			msg:    `invalid event: specversion: not a CloudEvent: no ce-specversion header (binary mode) and no content-type header (structured mode needs application/cloudevents+json)`,
		},
		{
			name:   "binary: no ce-specversion, JSON content-type",
			header: binary("ce-id", "i", "content-type", "application/json"),
			body:   `{"a":1}`,
			field:  "specversion",
			msg:    `invalid event: specversion: not a CloudEvent: no ce-specversion header (binary mode) and content-type is "application/json", not application/cloudevents+json (structured mode)`,
		},
		{
			name:   "binary: percent-encoded control character in id",
			header: binary("ce-specversion", "1.0", "ce-id", "a%0Db", "ce-source", "/s", "ce-type", "t"),
			field:  "id",
			msg:    "invalid event: id: contains the control character U+000D",
		},
		{
			name:   "structured: source not in canonical form",
			header: structured,
			body:   `{"specversion":"1.0","id":"i","source":"/e2e/nöde","type":"t"}`,
			field:  "source",
			msg:    `invalid event: source: "/e2e/nöde" is not in canonical URI form: send "/e2e/n%C3%B6de"`,
		},
		{
			name:   "structured: source with an upper-case scheme",
			header: structured,
			body:   `{"specversion":"1.0","id":"i","source":"HTTP://example.com/shop","type":"t"}`,
			field:  "source",
			msg:    `invalid event: source: "HTTP://example.com/shop" is not in canonical URI form: send "http://example.com/shop"`,
		},
		{
			name:   "binary: source not in canonical form",
			header: binary("ce-specversion", "1.0", "ce-id", "i", "ce-source", "/a b", "ce-type", "t"),
			field:  "source",
			msg:    `invalid event: source: "/a b" is not in canonical URI form: send "/a%20b"`,
		},
		{
			name:   "binary: source not a URI reference",
			header: binary("ce-specversion", "1.0", "ce-id", "i", "ce-source", "/a%zz", "ce-type", "t"),
			field:  "source",
			msg:    `invalid event: source: "/a%zz" is not a URI reference`,
		},
		{
			name:   "binary: extension name with -",
			header: binary("ce-specversion", "1.0", "ce-id", "i", "ce-source", "/s", "ce-type", "t", "ce-my-ext", "x"),
			field:  "my-ext",
			msg:    "invalid event: my-ext: extension names are lowercase letters and digits only (CloudEvents 1.0)",
		},
		{
			name:   "binary: reserved extension name",
			header: binary("ce-specversion", "1.0", "ce-id", "i", "ce-source", "/s", "ce-type", "t", "CE-DATA", "x"),
			field:  "extension data",
			msg:    "invalid event: extension data: the name is reserved by the JSON event format",
		},
		{
			name:   "binary: bad time",
			header: binary("ce-specversion", "1.0", "ce-id", "i", "ce-source", "/s", "ce-type", "t", "ce-time", "yesterday"),
			field:  "time",
			msg:    `invalid event: time: "yesterday" is not an RFC 3339 time`,
		},
		{
			name:   "binary: catalog data failing its schema",
			header: binary("ce-specversion", "1.0", "ce-id", "i", "ce-source", "/s", "ce-type", events.TypeOnUserLoginFailure, "content-type", "application/json"),
			body:   `{"ip":"192.0.2.1","endpoint":"web","error":{}}`,
			field:  "data.endpoint",
			msg:    `invalid event: data.endpoint: value "web" not one of html, api`,
		},
		{
			// 100 bytes of data and 41 of header names and values.
			name:   "binary: over the size limit",
			codec:  events.Codec{MaxSize: 100},
			header: binary("ce-specversion", "1.0", "ce-id", "i", "ce-source", "s", "ce-type", "t"),
			body:   strings.Repeat("x", 100),
			field:  "size",
			msg:    "invalid event: size: event is 169 bytes encoded, the limit is 100",
		},
		{
			name:   "batch content type",
			header: nats.Header{"Content-Type": {"application/cloudevents-batch+json"}},
			body:   `[{"specversion":"1.0","id":"i","source":"/s","type":"t"}]`,
			field:  "content-type",
			msg:    `invalid event: content-type: "application/cloudevents-batch+json" is not supported on NATS: send one event per message as application/cloudevents+json`,
		},
		{
			name:   "structured: body not JSON",
			header: structured,
			body:   "{not json",
			field:  "body",
			msg:    "invalid event: body: structured event is not a JSON object: invalid character 'n' looking for beginning of object key string",
		},
		{
			name:   "structured: body a JSON array",
			header: structured,
			body:   `[1]`,
			field:  "body",
			msg:    "invalid event: body: structured event is not a JSON object: json: cannot unmarshal array into Go value of type map[string]json.RawMessage",
		},
		{
			name:   "structured: missing id",
			header: structured,
			body:   `{"specversion":"1.0","source":"/s","type":"t"}`,
			field:  "id",
			msg:    "invalid event: id: required",
		},
		{
			name:   "structured: id not a string",
			header: structured,
			body:   `{"specversion":"1.0","id":42,"source":"/s","type":"t"}`,
			field:  "id",
			msg:    "invalid event: id: must be a JSON string, got 42",
		},
		{
			name:   "structured: missing specversion",
			header: structured,
			body:   `{"id":"i","source":"/s","type":"t"}`,
			field:  "specversion",
			msg:    "invalid event: specversion: required",
		},
		{
			name:   "structured: specversion 0.3",
			header: structured,
			body:   `{"specversion":"0.3","id":"i","source":"/s","type":"t"}`,
			field:  "specversion",
			msg:    `invalid event: specversion: "0.3" is not supported, want "1.0"`,
		},
		{
			name:   "structured: bad type",
			header: structured,
			body:   `{"specversion":"1.0","id":"i","source":"/s","type":"a..b"}`,
			field:  "type",
			msg:    `invalid event: type: "a..b" has an empty token (at token 2): tokens are joined by single dots`,
		},
		{
			name:   "structured: control character in subject",
			header: structured,
			body:   `{"specversion":"1.0","id":"i","source":"/s","type":"t","subject":"a\u0000b"}`,
			field:  "subject",
			msg:    "invalid event: subject: contains the control character U+0000",
		},
		{
			// Message not pinned: it is the SDK's ("bad key, CloudEvents
			// attribute names MUST consist of lower-case letters ...,
			// upper-case letters ...") under Field "body", where binary mode
			// names the extension.
			name:   "structured: extension name with -",
			header: structured,
			body:   `{"specversion":"1.0","id":"i","source":"/s","type":"t","my-ext":"x"}`,
		},
		{
			name:   "structured: catalog data failing its schema",
			header: structured,
			body:   `{"specversion":"1.0","id":"i","source":"/s","type":"on_user_login_failure","datacontenttype":"application/json","data":{"ip":"192.0.2.1","endpoint":"web","error":{}}}`,
			field:  "data.endpoint",
			msg:    `invalid event: data.endpoint: value "web" not one of html, api`,
		},
		{
			name:  "no headers: missing id",
			body:  `{"specversion":"1.0","source":"/s","type":"t"}`,
			field: "id",
			msg:   "invalid event: id: required",
		},
		{
			name:  "no headers, body not JSON",
			body:  "hello",
			field: "specversion",
			msg:   `invalid event: specversion: not a CloudEvent: no ce-specversion header (binary mode) and no content-type header (structured mode needs application/cloudevents+json)`,
		},
		{
			name:  "no headers, empty body",
			field: "specversion",
			msg:   `invalid event: specversion: not a CloudEvent: no ce-specversion header (binary mode) and no content-type header (structured mode needs application/cloudevents+json)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := tt.codec.Decode(tt.header, []byte(tt.body))
			checkInvalid(t, err, tt.field, tt.msg)
			if e != nil {
				t.Errorf("an event came back with the error: %v", e)
			}
		})
	}
}

// TestInvalidDoesNotBlockValid: refusing one message leaves the codec able
// to read the next (no state kept between calls).
func TestInvalidDoesNotBlockValid(t *testing.T) {
	good, err := events.Encode(orderSubject, orderEvent())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := events.Decode(nats.Header{"ce-specversion": {"0.3"}}, nil); !errors.Is(err, events.ErrInvalid) {
			t.Fatalf("round %d: invalid message: %v, want ErrInvalid", i, err)
		}
		e, err := events.Decode(good.Header, good.Data)
		if err != nil {
			t.Fatalf("round %d: valid message after an invalid one: %v", i, err)
		}
		if e.ID() != "order-42" {
			t.Fatalf("round %d: id %q", i, e.ID())
		}
	}
}

func TestMsgID(t *testing.T) {
	// Pinned: producers in other languages compute the same value
	// (docs/protocol.md shows this example): SHA-256 of "5:/shoporder-42".
	const golden = "034156ece92fdca7fd7dce00e495981afca176cf30a65d7af40553b86d0abce9"
	if got := events.MsgID("/shop", "order-42"); got != golden {
		t.Errorf(`MsgID("/shop", "order-42") = %s, want %s`, got, golden)
	}
	if a, b := events.MsgID("/shop", "order-42"), events.MsgID("/shop", "order-42"); a != b {
		t.Errorf("MsgID is not deterministic: %s, %s", a, b)
	}
	distinct := []struct{ source, id string }{
		{"a", "bc"},
		{"ab", "c"},
		{"/shop", "1"},
		{"/warehouse", "1"},
		{"", "1:/x"},
		{"1:/x", ""},
		{"/é", "x"},
	}
	seen := map[string]string{}
	for _, p := range distinct {
		id := events.MsgID(p.source, p.id)
		if len(id) != 64 || strings.ToLower(id) != id {
			t.Errorf("MsgID(%q, %q) = %q, want 64 lowercase hex digits", p.source, p.id, id)
		}
		key := fmt.Sprintf("(%q, %q)", p.source, p.id)
		if other, ok := seen[id]; ok {
			t.Errorf("MsgID%s == MsgID%s", key, other)
		}
		seen[id] = key
	}
}

// The tests below state parts of the contract the code did not meet when
// they were written; see the comment on each.

// TestBinaryContentTypeWithParameters: datacontenttype travels as the
// content-type header as it is (docs/protocol.md: as in the HTTP binding,
// where only ce- headers are percent-encoded), and comes back unchanged.
func TestBinaryContentTypeWithParameters(t *testing.T) {
	for _, ct := range []string{
		"application/json; charset=utf-8",
		`text/plain; format="a b"`,
	} {
		t.Run(ct, func(t *testing.T) {
			e := minimalEvent()
			e.SetDataContentType(ct)
			msg, err := events.Encode(orderSubject, e)
			if err != nil {
				t.Fatal(err)
			}
			if got := msg.Header.Get(events.HeaderContentType); got != ct {
				t.Errorf("content-type header %q, want %q", got, ct)
			}
			got, err := events.Decode(msg.Header, msg.Data)
			if err != nil {
				t.Fatal(err)
			}
			if got.DataContentType() != ct {
				t.Errorf("decoded datacontenttype %q, want %q", got.DataContentType(), ct)
			}
		})
	}
}

// TestEncodeRefusesWhatTheSDKRefused: the SDK's setters record a refused
// value in Event.FieldErrors and keep the old one; publishing such an event
// must fail rather than send something the producer did not ask for.
func TestEncodeRefusesWhatTheSDKRefused(t *testing.T) {
	tests := []struct {
		name   string
		change func(e *event.Event)
	}{
		{"extension name with -", func(e *event.Event) { e.SetExtension("my-ext", "x") }},
		{"empty id", func(e *event.Event) { e.SetID("") }},
	}
	for _, tt := range tests {
		for _, enc := range encoders {
			t.Run(tt.name+"/"+enc.name, func(t *testing.T) {
				e := minimalEvent()
				tt.change(e)
				msg, err := enc.encode(events.Codec{}, orderSubject, e)
				if !errors.Is(err, events.ErrInvalid) {
					t.Errorf("err = %v, want ErrInvalid (the SDK refused: %v); sent:\n%s", err, e.FieldErrors, formatMsgOrNil(msg))
				}
			})
		}
	}
}

func formatMsgOrNil(m *nats.Msg) []byte {
	if m == nil {
		return []byte("nothing")
	}
	return formatMsg(m.Header, m.Data)
}

// TestDataContentTypeIsAMediaType: datacontenttype is type/subtype (RFC
// 2046). mime.ParseMediaType also accepts a bare Content-Disposition token.
func TestDataContentTypeIsAMediaType(t *testing.T) {
	e := minimalEvent()
	e.SetDataContentType("json")
	if err := (events.Codec{}).Validate(e); !errors.Is(err, events.ErrInvalid) {
		t.Errorf(`Validate with datacontenttype "json": %v, want ErrInvalid`, err)
	}
	h := nats.Header{"ce-specversion": {"1.0"}, "ce-id": {"i"}, "ce-source": {"/s"}, "ce-type": {"t"}, "content-type": {"json"}}
	if _, err := events.Decode(h, []byte("x")); !errors.Is(err, events.ErrInvalid) {
		t.Errorf(`Decode with content-type "json": %v, want ErrInvalid`, err)
	}
}

// TestDecodedTimeReencodes: a time Decode accepts must survive Encode and
// Decode again. RFC 3339 has years 0000 to 9999 only; an offset can push
// the UTC form of a valid time out of that range.
func TestDecodedTimeReencodes(t *testing.T) {
	for _, tm := range []string{"9999-12-31T23:30:00-01:00", "0000-01-01T00:30:00+01:00"} {
		t.Run(tm, func(t *testing.T) {
			h := nats.Header{"ce-specversion": {"1.0"}, "ce-id": {"i"}, "ce-source": {"/s"}, "ce-type": {"t"}, "ce-time": {tm}}
			e, err := events.Decode(h, nil)
			if err != nil {
				checkInvalid(t, err, "time", "")
				return // refused: fine
			}
			msg, err := events.Encode(orderSubject, e)
			if err != nil {
				t.Fatalf("decoded, but Encode refuses it: %v", err)
			}
			if _, err := events.Decode(msg.Header, msg.Data); err != nil {
				t.Errorf("decoded, encoded as ce-time %q, which Decode refuses: %v", msg.Header.Get("ce-time"), err)
			}
		})
	}
}

// TestDecodeIsDeterministic: a message with two headers that differ only in
// case (or both content-type and ce-datacontenttype) must always decode the
// same way, or be refused. Dispatcher replicas would otherwise disagree
// about what one stored message says.
func TestDecodeIsDeterministic(t *testing.T) {
	tests := []struct {
		name   string
		header nats.Header
	}{
		{"ce-id and Ce-Id", nats.Header{
			"ce-specversion": {"1.0"}, "ce-source": {"/s"}, "ce-type": {"t"},
			"ce-id": {"a"}, "Ce-Id": {"b"},
		}},
		{"content-type and ce-datacontenttype", nats.Header{
			"ce-specversion": {"1.0"}, "ce-id": {"i"}, "ce-source": {"/s"}, "ce-type": {"t"},
			"content-type": {"text/plain"}, "ce-datacontenttype": {"text/csv"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outcome := func() string {
				e, err := events.Decode(tt.header, []byte("x"))
				if err != nil {
					return "error " + err.Error()
				}
				return e.ID() + " " + e.DataContentType()
			}
			first := outcome()
			for range 200 {
				if got := outcome(); got != first {
					t.Fatalf("decoded as %q once and %q another time", first, got)
				}
			}
		})
	}
}

// TestBinaryModeKeepsSurroundingSpace: binary mode must carry an attribute
// with leading or trailing white space unchanged, as structured mode does,
// or Encode must refuse it. (Otherwise the id, and so Nats-Msg-Id, of one
// event depends on the mode it travelled in.)
func TestBinaryModeKeepsSurroundingSpace(t *testing.T) {
	tests := []struct {
		name   string
		change func(e *event.Event)
	}{
		{"id", func(e *event.Event) { v1(e).ID = " order-42 " }},
		{"subject", func(e *event.Event) { s := "orders/42\u00a0"; v1(e).Subject = &s }},
		{"subject of one space", func(e *event.Event) { s := " "; v1(e).Subject = &s }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := minimalEvent()
			tt.change(e)
			msg, err := events.Encode(orderSubject, e)
			if err != nil {
				checkInvalid(t, err, "", "")
				return // refused: fine
			}
			got, err := events.Decode(msg.Header, msg.Data)
			if err != nil {
				t.Fatalf("Decode refuses what Encode wrote: %v", err)
			}
			if d := eventDiff(got, e); d != "" {
				t.Errorf("binary round trip changed the event:\n%s\nmessage:\n%s", d, formatMsg(msg.Header, msg.Data))
			}
		})
	}
}

// TestBinarySourceIsVerbatim pins that URI attributes travel in headers as
// they are: a canonical source is already percent-encoded, so it is neither
// encoded again on the way out nor decoded on the way in.
func TestBinarySourceIsVerbatim(t *testing.T) {
	h := nats.Header{}
	for k, v := range map[string]string{"ce-specversion": "1.0", "ce-id": "i", "ce-source": "/a%20b", "ce-type": "t", "ce-dataschema": "https://x.example/s%20v1"} {
		h.Set(k, v)
	}
	e, err := events.Decode(h, nil)
	if err != nil {
		t.Fatal(err)
	}
	if e.Source() != "/a%20b" || e.DataSchema() != "https://x.example/s%20v1" {
		t.Errorf("source %q dataschema %q, want them as sent", e.Source(), e.DataSchema())
	}
	msg, err := events.Encode("hookbus.event.t", e)
	if err != nil {
		t.Fatal(err)
	}
	if got := msg.Header.Get("ce-source"); got != "/a%20b" {
		t.Errorf("encoded ce-source %q, want /a%%20b", got)
	}
}

// sdkHeaderWriter is the binding.BinaryWriter Encode and binaryHeader used
// before they wrote the headers themselves: sdk-go's binding walks the
// event and this writes one header per attribute and extension,
// percent-encoding all but URI references and media types. The headers
// Hookbus writes must stay the same as this one's.
type sdkHeaderWriter struct{ h nats.Header }

func (w *sdkHeaderWriter) Start(context.Context) error { return nil }
func (w *sdkHeaderWriter) End(context.Context) error   { return nil }
func (w *sdkHeaderWriter) SetData(io.Reader) error     { return nil }

func (w *sdkHeaderWriter) SetAttribute(a spec.Attribute, v any) error {
	switch a.Kind() {
	case spec.DataContentType:
		return w.set(events.HeaderContentType, v, false)
	case spec.Source, spec.DataSchema, spec.SpecVersion:
		return w.set(events.HeaderPrefix+a.Name(), v, false)
	}
	return w.set(events.HeaderPrefix+a.Name(), v, true)
}

func (w *sdkHeaderWriter) SetExtension(name string, v any) error {
	return w.set(events.HeaderPrefix+name, v, true)
}

func (w *sdkHeaderWriter) set(key string, v any, encode bool) error {
	if v == nil {
		return nil
	}
	s, err := types.Format(v)
	if err != nil {
		return err
	}
	if encode {
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			if c := s[i]; c <= 0x20 || c >= 0x7f || c == '"' || c == '%' {
				fmt.Fprintf(&b, "%%%02X", c)
			} else {
				b.WriteByte(c)
			}
		}
		s = b.String()
	}
	w.h[key] = []string{s}
	return nil
}

func sdkBinaryHeader(e *event.Event) (nats.Header, error) {
	w := sdkHeaderWriter{h: nats.Header{}}
	ev := *e
	_, err := binding.Write(context.Background(), binding.ToMessage(&ev), nil, &w)
	return w.h, err
}

// checkHeaderAsSDK compares binaryHeader (stepheader.Binary) and, for a valid event, Encode
// with the headers sdk-go's binding writes.
func checkHeaderAsSDK(t *testing.T, e *event.Event) {
	t.Helper()
	want, wantErr := sdkBinaryHeader(e)
	got, err := stepheader.Binary(e)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("BinaryHeader: %v; the binding writer: %v", err, wantErr)
	}
	if err != nil {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("BinaryHeader:\n%v\nthe binding writer:\n%v", got, want)
	}
	msg, err := events.Encode("hookbus.event.t", e)
	if err != nil {
		return // invalid: Encode refuses it, binaryHeader does not check
	}
	if id := msg.Header.Get(events.HeaderMsgID); id != events.MsgID(e.Source(), e.ID()) {
		t.Errorf("Nats-Msg-Id %s, want MsgID(%q, %q)", id, e.Source(), e.ID())
	}
	delete(msg.Header, events.HeaderMsgID)
	if !reflect.DeepEqual(msg.Header, want) {
		t.Errorf("Encode:\n%v\nthe binding writer:\n%v", msg.Header, want)
	}
}

// TestBinaryHeaderAsSDK: the headers Encode and binaryHeader write
// themselves are those sdk-go's binding writer gives, for every kind of
// attribute and extension value.
func TestBinaryHeaderAsSDK(t *testing.T) {
	tests := []struct {
		name   string
		change func(e *event.Event)
	}{
		{"minimal", func(*event.Event) {}},
		{"every attribute", func(e *event.Event) { *e = *orderEvent() }},
		{"no data", func(e *event.Event) { e.DataEncoded = nil; e.SetDataContentType("") }},
		{"values to percent-encode", func(e *event.Event) {
			e.SetID(`a b%c"dé`)
			e.SetSubject("ünï cødé\u2028%")
		}},
		{"time with nanoseconds in another zone", func(e *event.Event) {
			e.SetTime(time.Date(2026, 11, 21, 10, 0, 0, 123456789, time.FixedZone("x", -5*3600)))
		}},
		{"time beyond RFC 3339", func(e *event.Event) { e.SetTime(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)) }},
		{"time before year 0", func(e *event.Event) { e.SetTime(time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)) }},
		{"source with scheme, host, query and fragment", func(e *event.Event) { e.SetSource("https://example.com/a%20b?c=d#e") }},
		{"source urn", func(e *event.Event) { e.SetSource("urn:example:shop") }},
		{"source network-path", func(e *event.Event) { e.SetSource("//example.com/shop") }},
		{"source relative with colon", func(e *event.Event) { v1(e).Source = types.URIRef{URL: url.URL{Path: "a:b"}} }},
		{"source path to escape", func(e *event.Event) { v1(e).Source = types.URIRef{URL: url.URL{Path: "/a b"}} }},
		{"source path with raw form", func(e *event.Event) {
			v1(e).Source = types.URIRef{URL: url.URL{Path: "/a/b", RawPath: "/a%2Fb"}}
		}},
		{"source empty", func(e *event.Event) { v1(e).Source = types.URIRef{} }},
		{"source star", func(e *event.Event) { v1(e).Source = types.URIRef{URL: url.URL{Path: "*"}} }},
		{"dataschema", func(e *event.Event) { e.SetDataSchema("https://example.com/s.json") }},
		{"dataschema plain path", func(e *event.Event) { e.SetDataSchema("/schemas/order") }},
		{"extension kinds", func(e *event.Event) {
			e.SetExtension("str", "a value")
			e.SetExtension("empty", "")
			e.SetExtension("num", 42)
			e.SetExtension("neg", -7)
			e.SetExtension("flag", true)
			e.SetExtension("bin", []byte{0, 1, 0xff})
			e.SetExtension("uri", &url.URL{Scheme: "https", Host: "example.com", Path: "/x y"})
			e.SetExtension("at", time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC))
		}},
		{"many extensions", func(e *event.Event) {
			for i := range 20 {
				e.SetExtension(fmt.Sprintf("ext%d", i), fmt.Sprintf("value %d", i))
			}
		}},
		{"extension named as an attribute", func(e *event.Event) { v1(e).Extensions = map[string]any{"id": "other", "type": "x y"} }},
		{"extension name not lowercase", func(e *event.Event) { v1(e).Extensions = map[string]any{"MyExt": "x"} }},
		{"extension nil", func(e *event.Event) { v1(e).Extensions = map[string]any{"gone": nil} }},
		{"extension of no CloudEvents type", func(e *event.Event) { v1(e).Extensions = map[string]any{"bad": struct{}{}} }},
		{"extension value that needs conversion", func(e *event.Event) { v1(e).Extensions = map[string]any{"n": uint8(7), "f": 2.5} }},
		{"spec version 0.3", func(e *event.Event) { e.SetSpecVersion(event.CloudEventsVersionV03) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := minimalEvent()
			tt.change(e)
			checkHeaderAsSDK(t, e)
		})
	}
}

// TestBinaryHeaderValuesApart: each header of an encoded message has a
// value slice of its own, so that adding to one leaves the others as they
// are (the values share one allocation).
func TestBinaryHeaderValuesApart(t *testing.T) {
	msg, err := events.Encode(orderSubject, orderEvent())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{}
	for k, vs := range msg.Header {
		want[k] = slices.Clone(vs)
	}
	for k := range msg.Header {
		msg.Header[k] = append(msg.Header[k], "added to "+k)
	}
	for k, vs := range msg.Header {
		if len(vs) != 2 || vs[0] != want[k][0] || vs[1] != "added to "+k {
			t.Errorf("header %s = %q after appending to each, want %q and the one added", k, vs, want[k])
		}
	}
}

// FuzzBinaryHeader: for any attribute values, the headers Hookbus writes
// are those of sdk-go's binding writer.
func FuzzBinaryHeader(f *testing.F) {
	f.Add("order-42", "/shop", "com.example.order.created", "orders/42", "tenant", "acme corp", int64(1795255200), int64(0))
	f.Add(`a b%"`, "https://example.com/a?b#c", "t", "", "x", "\x00é", int64(-62135596801), int64(999999999))
	f.Add("i", "a:b", "t", " s ", "id", "override", int64(253402300800), int64(1))
	f.Fuzz(func(t *testing.T, id, source, typ, subject, ext, extValue string, sec, nsec int64) {
		e := event.New()
		e.SetID(id)
		e.SetSource(source)
		e.SetType(typ)
		e.SetSubject(subject)
		if sec != 0 || nsec != 0 {
			e.SetTime(time.Unix(sec, nsec))
		}
		if ext != "" {
			v1(&e).Extensions = map[string]any{ext: extValue}
		}
		checkHeaderAsSDK(t, &e)
	})
}

// TestCodecAllocations pins what the codec allocates for a valid binary
// event with a time and no extensions: Encode the message (with its header
// values), its header map and one string for Nats-Msg-Id and the time;
// Decode the event, its context and their values in one.
func TestCodecAllocations(t *testing.T) {
	e := minimalEvent()
	e.SetTime(time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC))
	msg, err := events.Encode(orderSubject, e)
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = events.Encode(orderSubject, e) }); n > 4 {
		t.Errorf("Encode: %v allocations, want 4 at most", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = events.Decode(msg.Header, msg.Data) }); n > 1 {
		t.Errorf("Decode: %v allocations, want 1", n)
	}
}
