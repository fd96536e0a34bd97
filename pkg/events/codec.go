package events

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/binding/format"
	"github.com/cloudevents/sdk-go/v2/binding/spec"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/internal/stepheader"
)

// Wire names of the CloudEvents NATS binding as Hookbus uses it
// (docs/protocol.md).
const (
	// HeaderPrefix starts the header of every attribute in binary mode.
	HeaderPrefix = "ce-"
	// HeaderContentType carries datacontenttype in binary mode and the
	// event format in structured mode.
	HeaderContentType = "content-type"
	// HeaderMsgID is JetStream's deduplication header; Hookbus sets it to
	// MsgID(source, id).
	HeaderMsgID = "Nats-Msg-Id"
	// ContentTypeStructured marks a structured-mode message.
	ContentTypeStructured = event.ApplicationCloudEventsJSON
	// DefaultMaxSize is the default limit on an encoded event: data plus
	// every header name and value.
	DefaultMaxSize = 1 << 20
)

// Codec turns CloudEvents into NATS messages and back, validating both ways.
// The zero value is ready to use and applies DefaultMaxSize.
type Codec struct {
	// MaxSize limits the encoded size of an event (data plus headers), in
	// bytes. Zero or less means DefaultMaxSize.
	MaxSize int
}

func (c Codec) maxSize() int {
	if c.MaxSize <= 0 {
		return DefaultMaxSize
	}
	return c.MaxSize
}

func init() { stepheader.Binary = binaryHeader }

// Encode validates e and returns it as a binary-mode message on subject:
// one lowercase "ce-" header per attribute, datacontenttype in
// "content-type", the data as the body, and Nats-Msg-Id set to
// MsgID(source, id). Invalid events return a *ValidationError.
func Encode(subject string, e *event.Event) (*nats.Msg, error) { return Codec{}.Encode(subject, e) }

// Decode reads a CloudEvent from a NATS message's header and data, in binary
// or structured mode, and validates it. See Codec.Decode.
func Decode(h nats.Header, data []byte) (*event.Event, error) { return Codec{}.Decode(h, data) }

// Encode is the package-level Encode with c's size limit.
func (c Codec) Encode(subject string, e *event.Event) (*nats.Msg, error) {
	if err := validatePublishSubject(subject); err != nil {
		return nil, err
	}
	if err := c.validateAttributes(e); err != nil {
		return nil, err
	}
	var msg *nats.Msg
	if ec, ok := v1Context(e); ok {
		var err error
		if msg, err = encodeBinary(subject, ec, e.Data()); err != nil {
			return nil, fmt.Errorf("encode event %s: %w", e.ID(), err)
		}
	} else {
		h, err := binaryHeaderSDK(e)
		if err != nil {
			return nil, err
		}
		h.Set(HeaderMsgID, MsgID(e.Source(), e.ID()))
		msg = &nats.Msg{Subject: subject, Header: h, Data: e.Data()}
	}
	if err := c.checkSize(headerSize(msg.Header) + len(msg.Data)); err != nil {
		return nil, err
	}
	if err := ValidateCatalogData(e.Type(), e.DataContentType(), e.Data()); err != nil {
		return nil, err
	}
	return msg, nil
}

// HeaderValue returns the first value of header name in h, comparing names
// without regard to case, as the wire contract does for every header.
func HeaderValue(h nats.Header, name string) string {
	if v := h.Get(name); v != "" {
		return v
	}
	for k, vs := range h {
		if len(vs) > 0 && strings.EqualFold(k, name) {
			return vs[0]
		}
	}
	return ""
}

// binaryHeader returns e's binary-mode headers (one lowercase ce- header
// per attribute, datacontenttype in content-type), without validating e
// and without Nats-Msg-Id, for events that are valid already; Encode
// validates, then writes the same headers. The dispatcher reaches it
// through internal/stepheader.
func binaryHeader(e *event.Event) (nats.Header, error) {
	if ec, ok := v1Context(e); ok {
		h, err := binaryHeaderV1(ec)
		if err != nil {
			return nil, fmt.Errorf("encode event %s: %w", e.ID(), err)
		}
		return h, nil
	}
	return binaryHeaderSDK(e)
}

// binaryHeaderSDK is binaryHeader through sdk-go's binding writer, for an
// event context of another kind than CloudEvents 1.0 (Encode refuses
// those; binaryHeader writes what the library reads from them).
func binaryHeaderSDK(e *event.Event) (nats.Header, error) {
	ev := *e // the binding takes a pointer it keeps: a copy, so that e stays where it is
	w := headerWriter{h: make(nats.Header, 8)}
	if _, err := binding.Write(context.Background(), binding.ToMessage(&ev), nil, &w); err != nil {
		return nil, fmt.Errorf("encode event %s: %w", e.ID(), err)
	}
	return w.h, nil
}

// EncodeStructured validates e and returns it as a structured-mode message
// (content-type application/cloudevents+json, the JSON event format as the
// body) with Nats-Msg-Id set. Hookbus itself sends binary mode; this exists
// for producers and tests that want the other mode.
func (c Codec) EncodeStructured(subject string, e *event.Event) (*nats.Msg, error) {
	if err := checkPublishSubject(subject); err != nil {
		return nil, err
	}
	if err := c.Validate(e); err != nil {
		return nil, err
	}
	body, err := format.JSON.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode event %s: %w", e.ID(), err)
	}
	h := nats.Header{}
	h.Set(HeaderContentType, ContentTypeStructured)
	h.Set(HeaderMsgID, MsgID(e.Source(), e.ID()))
	if err := c.checkSize(headerSize(h) + len(body)); err != nil {
		return nil, err
	}
	return &nats.Msg{Subject: subject, Header: h, Data: body}, nil
}

// Decode reads a CloudEvent from a NATS message and validates it.
//
// Header names are compared without regard to case. A message whose
// content-type is application/cloudevents+json, or that has neither a
// content-type nor any ce- header and a JSON object body, is read in
// structured mode; one with a ce-specversion header in binary mode (header
// values percent-decoded as in the HTTP binding). Anything else, or an event
// that fails Validate, returns a *ValidationError naming the part at fault.
// A binary-mode event's data is data itself, not a copy (NATS gives every
// message a buffer of its own): do not change data afterwards.
func (c Codec) Decode(h nats.Header, data []byte) (*event.Event, error) {
	var buf [12]field // room for every attribute without allocating
	fields, r, err := readHeader(h, buf[:0])
	if err != nil {
		return nil, err
	}
	if err := c.checkSize(r.size + len(data)); err != nil {
		return nil, err
	}
	var e *event.Event
	switch {
	case isStructured(r.contentType):
		if mt, _, _ := mime.ParseMediaType(r.contentType); mt != ContentTypeStructured {
			return nil, invalid(HeaderContentType, "%q is not supported on NATS: send one event per message as %s", r.contentType, ContentTypeStructured)
		}
		e, err = decodeStructured(data)
	case r.specVersion != "":
		if sv := percentDecode(r.specVersion); sv != event.CloudEventsVersionV1 {
			return nil, invalid("specversion", "%q is not supported, want %q", sv, event.CloudEventsVersionV1)
		}
		e, err = decodeBinary(fields, data)
	case len(fields) == 0 && looksLikeJSONObject(data):
		// No content-type and no ce- header (a raw nats pub, a client
		// without header support, only Nats-Msg-Id set): this can only be
		// structured mode, binary mode needs ce-specversion.
		e, err = decodeStructured(data)
	case r.contentType == "":
		return nil, invalid("specversion", "not a CloudEvent: no ce-specversion header (binary mode) and no content-type header (structured mode needs %s)", ContentTypeStructured)
	default:
		return nil, invalid("specversion", "not a CloudEvent: no ce-specversion header (binary mode) and content-type is %q, not %s (structured mode)", r.contentType, ContentTypeStructured)
	}
	if err != nil {
		return nil, err
	}
	if err := c.validateAttributes(e); err != nil {
		return nil, err
	}
	if err := ValidateCatalogData(e.Type(), e.DataContentType(), e.Data()); err != nil {
		return nil, err
	}
	return e, nil
}

// Validate checks what Hookbus relies on: specversion 1.0; id, source and
// type present; type a valid event type (ValidateType); source and
// dataschema URI references; extension names of lowercase letters and
// digits; no control characters in string attributes; the encoded size
// within the limit; and, for catalog types, the data against the type's
// JSON Schema. The error is a *ValidationError naming the attribute.
func (c Codec) Validate(e *event.Event) error {
	if err := c.validateAttributes(e); err != nil {
		return err
	}
	if err := c.checkSize(encodedSize(e)); err != nil {
		return err
	}
	return ValidateCatalogData(e.Type(), e.DataContentType(), e.Data())
}

// validateAttributes checks the context attributes in a fixed order, so the
// error for an event with several faults is always the same one.
func (c Codec) validateAttributes(e *event.Event) error {
	if e == nil {
		return invalid("event", "nil")
	}
	// The CloudEvents library records, rather than returns, what its
	// setters refused (SetExtension("my-ext", ...), SetID("")): an event
	// with such a record is not the event its producer meant.
	if len(e.FieldErrors) > 0 {
		keys := slices.Sorted(maps.Keys(e.FieldErrors))
		return invalid(keys[0], "%v", e.FieldErrors[keys[0]])
	}
	if sv := e.SpecVersion(); sv != event.CloudEventsVersionV1 {
		if sv == "" {
			return invalid("specversion", "required")
		}
		return invalid("specversion", "%q is not supported, want %q", sv, event.CloudEventsVersionV1)
	}
	if e.ID() == "" {
		return invalid("id", "required")
	}
	if err := checkTrimmed("id", e.ID()); err != nil {
		return err
	}
	// e.Source() is printed by net/url, so it is canonical by
	// construction; what a producer sent is checked where it is read
	// (ReadBinary, checkStructuredSource).
	if eventSource(e) == "" {
		return invalid("source", "required")
	}
	if err := ValidateType(e.Type()); err != nil {
		return err
	}
	if err := checkTrimmed("subject", e.Subject()); err != nil {
		return err
	}
	if ct := e.DataContentType(); ct != "" && ct != event.ApplicationJSON {
		if err := checkTrimmed("datacontenttype", ct); err != nil {
			return err
		}
		if mt, _, err := mime.ParseMediaType(ct); err != nil || !strings.Contains(mt, "/") {
			return invalid("datacontenttype", "%q is not a media type (type/subtype, e.g. application/json)", ct)
		}
	}
	if ds := e.DataSchema(); ds != "" {
		if err := checkURIRef("dataschema", ds); err != nil {
			return err
		}
	}
	if t := e.Time(); !t.IsZero() && (t.UTC().Year() < 0 || t.UTC().Year() > 9999) {
		return invalid("time", "%s is outside the years 0 to 9999 that RFC 3339 can write", t.UTC().Format(time.RFC3339))
	}
	exts := eventExtensions(e)
	if len(exts) == 0 {
		return nil
	}
	for name, v := range exts {
		if err := checkExtensionName(name); err != nil {
			return err
		}
		if s, ok := v.(string); ok {
			if err := checkText(name, s); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkText refuses control characters and text that is not UTF-8 (JSON
// and readers in other languages would change it, an id among them).
func checkText(field, s string) error {
	if !utf8.ValidString(s) {
		return invalid(field, "is not valid UTF-8")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return invalid(field, "contains the control character %U", r)
		}
	}
	return nil
}

// checkTrimmed is checkText for the attributes the CloudEvents library
// trims when it reads them from headers (id, subject, datacontenttype):
// surrounding white space would change the event, and its Nats-Msg-Id,
// with the mode, so it is refused.
func checkTrimmed(field, s string) error {
	if err := checkText(field, s); err != nil {
		return err
	}
	if strings.TrimSpace(s) != s {
		return invalid(field, "%q has white space at its start or end", s)
	}
	return nil
}

func checkURIRef(field, s string) error {
	if err := checkText(field, s); err != nil {
		return err
	}
	if _, err := url.Parse(s); err != nil {
		return invalid(field, "%q is not a URI reference", s)
	}
	return nil
}

// ValidateSource checks a source as a producer sends it: a URI reference in
// canonical form, that is unchanged by parsing and printing it again
// (non-ASCII and spaces percent-encoded, lower-case scheme). Readers see
// every source in that form, and MsgID hashes the source as sent, so a
// non-canonical source would make a producer's retries unrecognisable.
// Decode applies it to what it reads; the error names the canonical form.
func ValidateSource(raw string) error {
	if plainSource(raw) {
		return nil
	}
	if !utf8.ValidString(raw) {
		return invalid("source", "is not valid UTF-8")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return invalid("source", "%q is not a URI reference", raw)
	}
	if c := u.String(); c != raw {
		return invalid("source", "%q is not in canonical URI form: send %q", raw, c)
	}
	return nil
}

// plainSource reports whether s is made only of characters that no URI
// parser rewrites (lowercase letters, digits, '/', '.', '-', '_', '~'), the
// shape of most sources, so that they skip the parse.
func plainSource(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '/' || c == '.' || c == '-' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

// checkStructuredSource applies ValidateSource to the source of a
// structured event as it is in the body.
func checkStructuredSource(body []byte) error {
	var raw struct {
		Source string `json:"source"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return invalid("body", "structured event is not a JSON object: %v", err)
	}
	return ValidateSource(raw.Source)
}

// maxExtensionNameLen is a sanity cap; CloudEvents asks for at most 20
// characters (SHOULD), which Hookbus does not enforce.
const maxExtensionNameLen = 64

func checkExtensionName(name string) error {
	if name == "" || len(name) > maxExtensionNameLen {
		return invalid("extension "+strconv.Quote(name), "name must be 1 to %d characters", maxExtensionNameLen)
	}
	for _, r := range name {
		if !('a' <= r && r <= 'z' || '0' <= r && r <= '9') {
			return invalid(name, "extension names are lowercase letters and digits only (CloudEvents 1.0)")
		}
	}
	if name == "data" {
		return invalid("extension data", "the name is reserved by the JSON event format")
	}
	return nil
}

// checkSize refuses an encoded event of more than MaxSize bytes: data plus
// its header block as NATS sends it (headerSize), the size a stream's
// max_msg_size counts.
func (c Codec) checkSize(size int) error {
	if size > c.maxSize() {
		return invalid("size", "event is %d bytes encoded, the limit is %d", size, c.maxSize())
	}
	return nil
}

// headerFrame is what a non-empty NATS header block adds to its lines:
// "NATS/1.0\r\n" before them and "\r\n" after.
const headerFrame = len("NATS/1.0\r\n") + len("\r\n")

// headerBytes is the size of header k with values vs on the wire: one
// "k: v\r\n" line per value.
func headerBytes(k string, vs []string) int {
	n := 0
	for _, v := range vs {
		n += len(k) + len(v) + len(": \r\n")
	}
	return n
}

// headerSize is the size of h on the wire, as JetStream counts it against
// a stream's max_msg_size.
func headerSize(h nats.Header) int {
	if len(h) == 0 {
		return 0
	}
	n := headerFrame
	for k, vs := range h {
		n += headerBytes(k, vs)
	}
	return n
}

// WireSize is the size of a message with header h and data on the wire,
// as JetStream counts it against a stream's max_msg_size.
func WireSize(h nats.Header, data []byte) int { return headerSize(h) + len(data) }

// encodedSize is the size of e in binary mode, without encoding it.
func encodedSize(e *event.Event) int {
	size := len(e.Data()) + headerFrame + len(HeaderMsgID) + msgIDLen + len(": \r\n")
	add := func(name, v string) {
		if v != "" {
			size += len(HeaderPrefix) + len(name) + len(v) + len(": \r\n")
		}
	}
	add("specversion", e.SpecVersion())
	add("id", e.ID())
	add("source", eventSource(e))
	add("type", e.Type())
	add("subject", e.Subject())
	add("dataschema", e.DataSchema())
	if ct := e.DataContentType(); ct != "" {
		size += headerBytes(HeaderContentType, []string{ct})
	}
	if t := e.Time(); !t.IsZero() {
		var b [64]byte
		size += len(HeaderPrefix+"time") + len(t.UTC().AppendFormat(b[:0], time.RFC3339Nano)) + len(": \r\n")
	}
	for name, v := range eventExtensions(e) {
		s, _ := types.Format(v)
		add(name, s)
	}
	return size
}

// MsgID returns the JetStream deduplication id of the event (source, id):
// the lowercase hex SHA-256 of "<byte length of source>:<source><id>", over
// the source in its canonical form (see ValidateSource).
// CloudEvents makes (source, id) unique; the length prefix keeps the pair
// unambiguous, so two producers that reuse an id are never merged.
func MsgID(source, id string) string {
	var b [128]byte
	return string(appendMsgID(b[:0], source, id))
}

// headerWriter is the binding.BinaryWriter that fills a NATS message's
// headers; the body is the event's data as it is (Encode takes e.Data()).
type headerWriter struct {
	h nats.Header
}

func (w *headerWriter) Start(context.Context) error { return nil }
func (w *headerWriter) End(context.Context) error   { return nil }

// SetData drops the copy of the data sdk-go hands over (a bytes.Reader
// over e.Data(): writing it to io.Discard allocates nothing).
func (w *headerWriter) SetData(r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}

func (w *headerWriter) SetAttribute(a spec.Attribute, value any) error {
	if a.Kind() == spec.DataContentType {
		return w.set(HeaderContentType, value, false)
	}
	return w.set(HeaderPrefix+a.Name(), value, !verbatim(a.Kind()))
}

func (w *headerWriter) SetExtension(name string, value any) error {
	return w.set(HeaderPrefix+name, value, true)
}

// verbatim reports whether an attribute travels without percent-encoding:
// URI references (source, dataschema) are ASCII and already percent-encoded
// in their canonical form, and media types are ASCII tokens.
func verbatim(k spec.Kind) bool {
	return k == spec.Source || k == spec.DataSchema || k == spec.DataContentType || k == spec.SpecVersion
}

func (w *headerWriter) set(key string, value any, encode bool) error {
	if value == nil {
		return nil
	}
	s, err := types.Format(value)
	if err != nil {
		return fmt.Errorf("header %s: %w", key, err)
	}
	if encode {
		s = percentEncode(s)
	}
	// Lowercase keys, assigned directly: binary mode's header names.
	w.h[key] = []string{s}
	return nil
}

// field is a CloudEvents header of a received message (content-type or a
// ce- header): its name in lowercase and its value as sent.
type field struct{ name, value string }

// received is what Decode reads from a NATS header besides the fields.
type received struct {
	contentType string // content-type, "" if absent
	specVersion string // ce-specversion as sent, "" if absent
	size        int    // headerBytes of every header
}

// readHeader appends the CloudEvents headers of h to fields, lowercasing
// their names, and refuses a header given twice (in two cases, or with
// two values) and datacontenttype given both ways. (fields is a result of
// its own, not a member of received, so that escape analysis can keep the
// caller's buffer on the stack.)
func readHeader(h nats.Header, fields []field) ([]field, received, error) {
	var (
		r                          received
		ceContentType, contentType bool
	)
	if len(h) > 0 {
		r.size = headerFrame
	}
	for k, vs := range h {
		r.size += headerBytes(k, vs)
		// Only ce- headers and content-type matter; look before lowering,
		// so the others (Nats-Msg-Id, ...) cost nothing.
		if len(vs) == 0 || len(k) <= len(HeaderPrefix) || k[0]|0x20 != 'c' ||
			!(strings.EqualFold(k[:len(HeaderPrefix)], HeaderPrefix) || strings.EqualFold(k, HeaderContentType)) {
			continue
		}
		name := lower(k)
		if len(vs) > 1 || slices.ContainsFunc(fields, func(f field) bool { return f.name == name }) {
			return nil, r, invalid("header "+name, "given more than once (header names are compared without regard to case)")
		}
		fields = append(fields, field{name, vs[0]})
		switch name {
		case HeaderContentType:
			r.contentType, contentType = vs[0], true
		case HeaderPrefix + "datacontenttype":
			ceContentType = true
		case HeaderPrefix + "specversion":
			r.specVersion = vs[0]
		}
	}
	if contentType && ceContentType {
		return nil, r, invalid("datacontenttype", "given twice, as content-type and as ce-datacontenttype: send only content-type")
	}
	return fields, r, nil
}

// lower is strings.ToLower without the allocation for names that are
// lowercase already, as binary mode sends them.
func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// decodeBinary builds the event of a binary-mode message from its
// CloudEvents headers (ce-specversion checked already) with the CloudEvents
// library's own setters, so attributes read as the library reads them:
// values percent-decoded (except URI references and media types, which
// travel verbatim), the source in canonical form (ValidateSource), the time
// in RFC 3339.
func decodeBinary(fields []field, data []byte) (*event.Event, error) {
	// The event, its context and the values the context points to in one
	// allocation. For those values the setters' code is repeated here, as
	// they would allocate each one on its own.
	a := &struct {
		e           event.Event
		ec          event.EventContextV1
		ct, subject string
		time        types.Timestamp
	}{}
	e, ec := &a.e, &a.ec
	e.Context = ec
	for i, f := range fields {
		name := strings.TrimPrefix(f.name, HeaderPrefix)
		var err error
		switch name {
		case "specversion":
		case HeaderContentType, "datacontenttype":
			// ec.SetDataContentType(f.value)
			if a.ct = strings.TrimSpace(f.value); a.ct == "" {
				ec.DataContentType = nil
			} else {
				ec.DataContentType = &a.ct
			}
		case "source":
			if err := ValidateSource(f.value); err != nil {
				return nil, err
			}
			if plainSource(f.value) && !strings.HasPrefix(f.value, "//") {
				// A relative or absolute path and nothing else (no
				// scheme, host, query or escape): what url.Parse would
				// return, without parsing.
				ec.Source = types.URIRef{URL: url.URL{Path: f.value}}
				continue
			}
			err = ec.SetSource(f.value)
		case "dataschema":
			err = ec.SetDataSchema(f.value)
		case "id":
			err = ec.SetID(percentDecode(f.value))
		case "type":
			err = ec.SetType(percentDecode(f.value))
		case "subject":
			// ec.SetSubject(percentDecode(f.value))
			if a.subject = strings.TrimSpace(percentDecode(f.value)); a.subject == "" {
				ec.Subject = nil
			} else {
				ec.Subject = &a.subject
			}
		case "time":
			v := percentDecode(f.value)
			// types.ToTime(v), then ec.SetTime
			t, terr := time.Parse(time.RFC3339Nano, v)
			if terr != nil {
				return nil, invalid("time", "%q is not an RFC 3339 time", v)
			}
			if t.IsZero() {
				ec.Time = nil
			} else {
				a.time = types.Timestamp{Time: t}
				ec.Time = &a.time
			}
		default:
			if err := checkExtensionName(name); err != nil {
				return nil, err
			}
			if ec.Extensions == nil {
				ec.Extensions = make(map[string]any, countExtensions(fields[i:]))
			}
			err = ec.SetExtension(name, percentDecode(f.value))
		}
		if err != nil {
			return nil, attrErr(name, err)
		}
	}
	if len(data) > 0 {
		e.DataEncoded = data
	}
	return e, nil
}

// countExtensions counts the fields decodeBinary makes extensions of.
func countExtensions(fields []field) int {
	n := 0
	for _, f := range fields {
		switch strings.TrimPrefix(f.name, HeaderPrefix) {
		case "specversion", HeaderContentType, "datacontenttype", "source", "dataschema", "id", "type", "subject", "time":
		default:
			n++
		}
	}
	return n
}

// decodeStructured reads a structured-mode body with the CloudEvents JSON
// format, refusing a source that is not in canonical form.
func decodeStructured(data []byte) (*event.Event, error) {
	e := event.New()
	if err := format.JSON.Unmarshal(data, &e); err != nil {
		return nil, explainStructured(data, err)
	}
	if ec, ok := v1Context(&e); ok && sourceAsSent(&ec.Source.URL, data) {
		return &e, nil
	}
	if err := checkStructuredSource(data); err != nil {
		return nil, err
	}
	return &e, nil
}

// sourceName is how a member named source ends in a JSON body.
var sourceName = []byte(`source"`)

// sourceAsSent reports, without parsing body again, that the source the
// CloudEvents library read from structured body into u is the one in
// body, as sent, so that checkStructuredSource would accept it: u is a
// plain path (what url.Parse returns only for that same string, or for it
// followed by an empty fragment, "#"), the body has no '#' and no escape
// (so the string in the body is the string parsed), and no other member
// whose name is "source" in any case (which encoding/json, unlike the
// library, would read). When it returns false, checkStructuredSource
// decides.
func sourceAsSent(u *url.URL, body []byte) bool {
	if *u != (url.URL{Path: u.Path}) || !plainSource(u.Path) || strings.HasPrefix(u.Path, "//") ||
		bytes.IndexByte(body, '#') >= 0 || bytes.IndexByte(body, '\\') >= 0 {
		return false
	}
	n := 0
	for i := bytes.IndexByte(body, '"'); i >= 0; {
		if i >= len(sourceName)-1 && bytes.EqualFold(body[i-len(sourceName)+1:i+1], sourceName) {
			n++
		}
		j := bytes.IndexByte(body[i+1:], '"')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return n == 1
}

func attrErr(field string, err error) error {
	var ve *ValidationError
	if errors.As(err, &ve) {
		return ve
	}
	return invalid(field, "%v", err)
}

// explainStructured turns the CloudEvents library's error for a structured
// body into a *ValidationError naming the attribute at fault. It runs only
// on the failure path, so valid events are parsed once.
func explainStructured(data []byte, err error) error {
	var ve *ValidationError
	if errors.As(err, &ve) {
		return ve
	}
	var obj map[string]json.RawMessage
	if jerr := json.Unmarshal(data, &obj); jerr != nil {
		return invalid("body", "structured event is not a JSON object: %v", jerr)
	}
	for _, name := range []string{"specversion", "id", "source", "type"} {
		raw, ok := obj[name]
		if !ok {
			return invalid(name, "required")
		}
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return invalid(name, "must be a JSON string, got %s", raw)
		}
		if name == "specversion" && s != event.CloudEventsVersionV1 {
			return invalid(name, "%q is not supported, want %q", s, event.CloudEventsVersionV1)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(obj)) {
		if name == "time" {
			var s string
			if json.Unmarshal(obj[name], &s) != nil {
				return invalid("time", "must be an RFC 3339 string, got %s", obj[name])
			}
			if _, terr := types.ParseTime(s); terr != nil {
				return invalid("time", "%q is not an RFC 3339 time", s)
			}
		}
		if !slices.Contains(structuredFields, name) {
			if xerr := checkExtensionName(name); xerr != nil {
				return xerr
			}
		}
	}
	return invalid("body", "%v", err)
}

// structuredFields are the members of a structured event that are not
// extensions.
var structuredFields = []string{"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema", "data", "data_base64"}

// percentEncode applies the HTTP binding's rule to a header value: bytes
// outside printable ASCII, space, '"' and '%' become %XX.
func percentEncode(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if needsEscape(s[i]) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	return string(appendPercentEncoded(make([]byte, 0, len(s)+16), s))
}

func needsEscape(c byte) bool { return c <= 0x20 || c >= 0x7f || c == '"' || c == '%' }

// percentDecode reverses percentEncode. A value that is not validly
// percent-encoded (a producer that did not encode a literal '%') is kept as
// sent rather than refused.
func percentDecode(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	if d, err := url.PathUnescape(s); err == nil {
		return d
	}
	return s
}

func isStructured(contentType string) bool {
	return format.IsFormat(strings.ToLower(strings.TrimSpace(contentType)))
}

func looksLikeJSONObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) > 0 && b[0] == '{'
}
