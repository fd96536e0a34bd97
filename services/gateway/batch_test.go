package gateway_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/gateway"
)

func postBatch(t *testing.T, b *bus, body string) (int, gateway.BatchAnswer) {
	t.Helper()
	status, h, raw := post(t, b.url+"/events", map[string]string{"Content-Type": "application/cloudevents-batch+json"}, body)
	if ct := h.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("status %d, Content-Type %q, body %s: want a batch answer", status, ct, raw)
	}
	var a gateway.BatchAnswer
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatalf("answer %s: %v", raw, err)
	}
	return status, a
}

func TestBatchIsStoredPerEvent(t *testing.T) {
	b := newBus(t)
	batch := `[
		{"specversion":"1.0","id":"b-1","source":"/shop","type":"com.example.order.created","data":{"n":1}},
		{"specversion":"1.0","source":"/shop","type":"com.example.order.created"},
		{"specversion":"1.0","id":"b-3","source":"/shop","type":"on_user_after_logout","data":{"endpoint":"web"}},
		{"specversion":"1.0","id":"b-1","source":"/shop","type":"com.example.order.created","data":{"n":1}},
		{"specversion":"1.0","id":"b-5","source":"/shop","type":"com.example.order.shipped","subject":"order 42"}
	]`
	status, a := postBatch(t, b, batch)
	if status != http.StatusMultiStatus {
		t.Errorf("status %d, want 207: two of five events are invalid", status)
	}
	if len(a.Results) != 5 {
		t.Fatalf("%d results, want one per event: %+v", len(a.Results), a)
	}
	want := []struct {
		status    int
		field     string
		duplicate bool
	}{
		{status: 202},
		{status: 400, field: "id"},
		{status: 400, field: "data"},
		{status: 202, duplicate: true},
		{status: 202},
	}
	for i, w := range want {
		r := a.Results[i]
		switch {
		case r.Status != w.status:
			t.Errorf("event %d: status %d, want %d (%+v)", i, r.Status, w.status, r)
		case w.status == 202 && (r.Stored == nil || r.Stream != events.StreamEvents || r.Duplicate != w.duplicate || r.Error != nil):
			t.Errorf("event %d: %+v, want stored (duplicate %t)", i, r, w.duplicate)
		case w.status != 202 && (r.Error == nil || r.Stored != nil || r.Error.Status != w.status || r.Error.Code != "invalid" ||
			!strings.HasPrefix(r.Error.Field, w.field) || r.Error.Reason == ""):
			t.Errorf("event %d: %+v, want refused on %s", i, r, w.field)
		}
	}
	if a.Results[3].Stored != nil && a.Results[0].Stored != nil && a.Results[3].Sequence != a.Results[0].Sequence {
		t.Errorf("the repeated event answered sequence %d, the first %d", a.Results[3].Sequence, a.Results[0].Sequence)
	}
	if n := b.stored(t); n != 2 {
		t.Errorf("stream holds %d events, want the 2 valid ones", n)
	}
	if a.Results[4].Stored == nil {
		t.Fatal("the 5th event was not stored")
	}
	_, e := b.storedEvent(t, a.Results[4].Sequence)
	if e.ID() != "b-5" || e.Subject() != "order 42" || e.Type() != "com.example.order.shipped" {
		t.Errorf("stored at the 5th result's sequence: %s", e)
	}

	// All valid, sent again: 202, each a duplicate.
	valid := `[{"specversion":"1.0","id":"b-1","source":"/shop","type":"com.example.order.created","data":{"n":1}},
		{"specversion":"1.0","id":"b-5","source":"/shop","type":"com.example.order.shipped","subject":"order 42"}]`
	status, a = postBatch(t, b, valid)
	if status != http.StatusAccepted || len(a.Results) != 2 || !a.Results[0].Duplicate || !a.Results[1].Duplicate {
		t.Errorf("retried batch: %d %+v, want 202 and two duplicates", status, a)
	}
	if n := b.stored(t); n != 2 {
		t.Errorf("stream holds %d events after the retry, want 2", n)
	}

	status, a = postBatch(t, b, `[]`)
	if status != http.StatusAccepted || len(a.Results) != 0 {
		t.Errorf("empty batch: %d %+v, want 202 and no results", status, a)
	}
}
