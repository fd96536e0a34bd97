package gateway

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/hookbus/hookbus/pkg/events"
)

func TestAppendStoredIsJSONEncoders(t *testing.T) {
	for _, st := range []Stored{
		{Stream: events.StreamEvents, Sequence: 1},
		{Stream: "S", Sequence: 1<<64 - 1, Duplicate: true},
		{Stream: ""},
		{Stream: `a"b\c<d>&é` + "\x01"},
	} {
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(st); err != nil {
			t.Fatal(err)
		}
		if got := appendStored(nil, st); !bytes.Equal(got, want.Bytes()) {
			t.Errorf("appendStored(%+v) = %s, want %s", st, got, want.Bytes())
		}
	}
}

func TestCloudEventsHeaderKeepsEveryValue(t *testing.T) {
	// Names that differ only in case (set on the map directly, not by
	// net/http) meet once lowercased: Decode must still see both values.
	h := http.Header{"Ce-Id": {"a"}, "ce-id": {"b"}, "Ce-Specversion": {"1.0"}, "Ce-Myext": {"x"}, "User-Agent": {"u"}}
	got := cloudEventsHeader(h, binaryMode)
	if len(got["ce-id"]) != 2 || got["ce-specversion"][0] != "1.0" || got["ce-myext"][0] != "x" || len(got) != 3 {
		t.Errorf("cloudEventsHeader = %v", got)
	}
	if _, err := events.Decode(got, []byte("{}")); err == nil {
		t.Error("Decode took an id given twice")
	}
	if got := cloudEventsHeader(h, structuredMode); len(got) != 0 {
		t.Errorf("structured mode: cloudEventsHeader = %v, want no ce- headers", got)
	}
}

func TestRequestMode(t *testing.T) {
	for name, tc := range map[string]struct {
		h    http.Header
		want mode
		ok   bool
	}{
		"binary":                  {http.Header{"Content-Type": {"application/json"}, "Ce-Specversion": {"1.0"}}, binaryMode, true},
		"binary without type":     {http.Header{"Ce-Specversion": {"1.0"}}, binaryMode, true},
		"structured":              {http.Header{"Content-Type": {"application/cloudevents+json; charset=utf-8"}}, structuredMode, true},
		"structured in caps":      {http.Header{"Content-Type": {"Application/CloudEvents+JSON"}}, structuredMode, true},
		"batch":                   {http.Header{"Content-Type": {"application/cloudevents-batch+json"}, "Ce-Specversion": {"1.0"}}, batchMode, true},
		"other event format":      {http.Header{"Content-Type": {"application/cloudevents+avro"}, "Ce-Specversion": {"1.0"}}, 0, false},
		"plain json":              {http.Header{"Content-Type": {"application/json"}}, 0, false},
		"unparsable, binary":      {http.Header{"Content-Type": {"application/cloudevents+json;;"}, "Ce-Specversion": {"1.0"}}, binaryMode, true},
		"cloudevents as a suffix": {http.Header{"Content-Type": {"text/x-cloudevents"}, "Ce-Specversion": {"1.0"}}, binaryMode, true},
	} {
		t.Run(name, func(t *testing.T) {
			m, p := requestMode(tc.h)
			if (p == nil) != tc.ok || tc.ok && m != tc.want {
				t.Errorf("requestMode = %v, %+v; want %v, ok %v", m, p, tc.want, tc.ok)
			}
			if p != nil && p.Status != http.StatusUnsupportedMediaType {
				t.Errorf("status %d, want 415", p.Status)
			}
		})
	}
}
