package events

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/nats-io/nats.go"
)

// The binary-mode encoding of a CloudEvents 1.0 context, written straight
// from its fields. It writes what sdk-go's binding writer (binaryHeaderSDK)
// writes, without its per-attribute boxing and copies: every value made
// here (Nats-Msg-Id, the time, percent-encoded values, extension header
// names) is appended to one buffer and becomes one string, and the header
// values share one backing array, which Encode allocates with the message.

// inlineValues is how many header values a message Encode allocates has
// room for in the same allocation; an event with more extensions takes
// one more.
const inlineValues = 12

// binaryMsg is a message and the backing array of its header values.
type binaryMsg struct {
	msg  nats.Msg
	vals [inlineValues]string
}

// headerEntry is one header of a message being encoded. The name is key,
// or text[klo:khi] when khi > 0; the value is val, or text[lo:hi] when
// hi > 0, text being the buffer the values were appended to.
type headerEntry struct {
	key, val         string
	klo, khi, lo, hi int
}

// binaryEntries appends ec's binary-mode headers to entries, in the order
// of sdk-go's binding writer (attributes, then extensions: an extension
// with an attribute's name replaces it, as there), and the text they need
// to buf; with msgID, Nats-Msg-Id last. The error is a header's value
// that is not a CloudEvents type.
func binaryEntries(ec *event.EventContextV1, msgID bool, buf []byte, entries []headerEntry) ([]byte, []headerEntry, error) {
	encoded := func(key, v string) {
		if v == "" {
			return
		}
		if !needsPercentEncoding(v) {
			entries = append(entries, headerEntry{key: key, val: v})
			return
		}
		lo := len(buf)
		buf = appendPercentEncoded(buf, v)
		entries = append(entries, headerEntry{key: key, lo: lo, hi: len(buf)})
	}
	verbatim := func(key, v string) {
		if v != "" {
			entries = append(entries, headerEntry{key: key, val: v})
		}
	}
	source := urlString(&ec.Source.URL)
	verbatim(HeaderPrefix+"specversion", event.CloudEventsVersionV1)
	encoded(HeaderPrefix+"id", ec.ID)
	verbatim(HeaderPrefix+"source", source)
	encoded(HeaderPrefix+"type", ec.Type)
	if ec.DataContentType != nil {
		verbatim(HeaderContentType, *ec.DataContentType)
	}
	if ec.DataSchema != nil {
		verbatim(HeaderPrefix+"dataschema", urlString(&ec.DataSchema.URL))
	}
	if ec.Subject != nil {
		encoded(HeaderPrefix+"subject", *ec.Subject)
	}
	if ec.Time != nil && !ec.Time.IsZero() {
		lo := len(buf)
		buf = ec.Time.UTC().AppendFormat(buf, time.RFC3339Nano)
		if needsPercentEncoding(buf[lo:]) { // never for years 0 to 9999
			v := string(buf[lo:])
			buf = appendPercentEncoded(buf[:lo], v)
		}
		entries = append(entries, headerEntry{key: HeaderPrefix + "time", lo: lo, hi: len(buf)})
	}
	for name, value := range ec.Extensions {
		if value == nil {
			continue
		}
		s, ok := value.(string)
		if !ok {
			var err error
			if s, err = types.Format(value); err != nil {
				return buf, entries, fmt.Errorf("header %s: %w", HeaderPrefix+name, err)
			}
		}
		klo := len(buf)
		buf = append(buf, HeaderPrefix...)
		buf = append(buf, name...)
		en := headerEntry{klo: klo, khi: len(buf), val: s}
		if needsPercentEncoding(s) {
			en.val, en.lo = "", len(buf)
			buf = appendPercentEncoded(buf, s)
			en.hi = len(buf)
		}
		entries = append(entries, en)
	}
	if msgID {
		lo := len(buf)
		buf = appendMsgID(buf, source, ec.ID)
		entries = append(entries, headerEntry{key: HeaderMsgID, lo: lo, hi: len(buf)})
	}
	return buf, entries, nil
}

// fillHeader sets the headers of entries in h, their values in vals (one
// each, len(vals) >= len(entries)), text being the string of the buffer
// binaryEntries appended to.
func fillHeader(h nats.Header, vals []string, entries []headerEntry, text string) {
	for i, en := range entries {
		key, v := en.key, en.val
		if en.khi > 0 {
			key = text[en.klo:en.khi]
		}
		if en.hi > 0 {
			v = text[en.lo:en.hi]
		}
		vals[i] = v
		// A slice of its own capacity, so that appending to one header's
		// values (Header.Add) cannot write over the next one's.
		h[key] = vals[i : i+1 : i+1]
	}
}

// encodeBinary is Encode's message for a CloudEvents 1.0 context: the
// message, its header values and, with room for one more header (such as
// the client's Nats-Expected-Stream), its header map.
func encodeBinary(subject string, ec *event.EventContextV1, data []byte) (*nats.Msg, error) {
	var (
		bufArray     [256]byte
		entriesArray [inlineValues]headerEntry
	)
	buf, entries, err := binaryEntries(ec, true, bufArray[:0], entriesArray[:0])
	if err != nil {
		return nil, err
	}
	m := &binaryMsg{msg: nats.Msg{Subject: subject, Data: data}}
	vals := m.vals[:]
	if len(entries) > len(vals) {
		vals = make([]string, len(entries))
	}
	m.msg.Header = make(nats.Header, len(entries)+1)
	fillHeader(m.msg.Header, vals, entries, string(buf))
	return &m.msg, nil
}

// binaryHeaderV1 is binaryHeader for a CloudEvents 1.0 context.
func binaryHeaderV1(ec *event.EventContextV1) (nats.Header, error) {
	var (
		bufArray     [128]byte
		entriesArray [inlineValues]headerEntry
	)
	buf, entries, err := binaryEntries(ec, false, bufArray[:0], entriesArray[:0])
	if err != nil {
		return nil, err
	}
	h := make(nats.Header, len(entries)+1)
	fillHeader(h, make([]string, len(entries)), entries, string(buf))
	return h, nil
}

// urlString is u.String() without the allocation for the usual source: a
// path of characters no URI printer escapes and nothing else, which
// String returns as it is.
func urlString(u *url.URL) string {
	if *u == (url.URL{Path: u.Path}) && plainSource(u.Path) {
		return u.Path
	}
	return u.String()
}

// v1Context returns e's context when it is a CloudEvents 1.0 one, the
// only kind the codec accepts, so that its fields can be read without the
// copies of the event's getters (Extensions copies the map, Source prints
// the URL).
func v1Context(e *event.Event) (*event.EventContextV1, bool) {
	ec, ok := e.Context.(*event.EventContextV1)
	return ec, ok && ec != nil
}

// eventSource is e.Source() without its allocation for plain sources.
func eventSource(e *event.Event) string {
	if ec, ok := v1Context(e); ok {
		return urlString(&ec.Source.URL)
	}
	return e.Source()
}

// eventExtensions is e.Extensions() without its copy of the map: the
// caller only reads it.
func eventExtensions(e *event.Event) map[string]any {
	if ec, ok := v1Context(e); ok {
		return ec.Extensions
	}
	return e.Extensions()
}

// appendMsgID appends MsgID(source, id) to dst, hashing in dst's spare
// room.
func appendMsgID(dst []byte, source, id string) []byte {
	lo := len(dst)
	dst = strconv.AppendInt(dst, int64(len(source)), 10)
	dst = append(dst, ':')
	dst = append(dst, source...)
	dst = append(dst, id...)
	sum := sha256.Sum256(dst[lo:])
	return hex.AppendEncode(dst[:lo], sum[:])
}

// msgIDLen is the length of every MsgID: hex of a SHA-256.
const msgIDLen = 2 * sha256.Size

func needsPercentEncoding[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if needsEscape(s[i]) {
			return true
		}
	}
	return false
}

// appendPercentEncoded appends s to dst with percentEncode's rule.
func appendPercentEncoded(dst []byte, s string) []byte {
	const upperHex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if needsEscape(c) {
			dst = append(dst, '%', upperHex[c>>4], upperHex[c&0xf])
		} else {
			dst = append(dst, c)
		}
	}
	return dst
}

// literalSubject reports, without allocating, whether checkPublishSubject
// accepts s for certain: printable ASCII without wildcard characters, in
// non-empty tokens. What it does not vouch for goes to the full check.
func literalSubject(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '.':
			if s[i-1] == '.' {
				return false
			}
		case c <= ' ' || c >= 0x7f || c == '*' || c == '>':
			return false
		}
	}
	return true
}

func validatePublishSubject(s string) error {
	if literalSubject(s) {
		return nil
	}
	return checkPublishSubject(s)
}
