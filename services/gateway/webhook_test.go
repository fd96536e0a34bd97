package gateway_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestWebhookBecomesAnEvent(t *testing.T) {
	b := newAuthBus(t, noAnonymous, nil)
	token := b.createToken(t, "stripe", 0, "publish:com.stripe.>")
	url := b.url + "/events/com.stripe.charge.succeeded"
	hook := func(extra map[string]string) map[string]string {
		h := map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/json"}
		for k, v := range extra {
			h[k] = v
		}
		return h
	}

	t.Run("Idempotency-Key, stored once", func(t *testing.T) {
		before := time.Now().Add(-time.Second)
		status, _, rb := post(t, url, hook(map[string]string{"Idempotency-Key": "ch_1", "Webhook-Id": "ignored"}), `{"amount": 100}`)
		first := accepted(t, status, rb)
		status, _, rb = post(t, url, hook(map[string]string{"Idempotency-Key": "ch_1"}), `{"amount": 100}`)
		retry := accepted(t, status, rb)
		if first.Duplicate || !retry.Duplicate || retry.Sequence != first.Sequence {
			t.Errorf("first %+v, retry %+v: want the retry a duplicate of the first", first, retry)
		}
		msg, e := b.storedEvent(t, first.Sequence)
		if msg.Subject != "hookbus.event.com.stripe.charge.succeeded" || e.SpecVersion() != "1.0" || e.ID() != "ch_1" ||
			e.Source() != "/gateway/stripe" || e.Type() != "com.stripe.charge.succeeded" || e.DataContentType() != "application/json" ||
			string(e.Data()) != `{"amount": 100}` || e.Time().Before(before) || e.Time().After(time.Now()) {
			t.Errorf("stored on %s:\n%s", msg.Subject, e)
		}
	})
	t.Run("webhook-id", func(t *testing.T) {
		status, _, rb := post(t, url, hook(map[string]string{"webhook-id": "msg_2"}), `[1,2]`)
		got := accepted(t, status, rb)
		if _, e := b.storedEvent(t, got.Sequence); e.ID() != "msg_2" {
			t.Errorf("id %q, want the webhook-id msg_2", e.ID())
		}
	})
	t.Run("generated id", func(t *testing.T) {
		var ids []string
		for range 2 {
			status, _, rb := post(t, url, hook(nil), `{"amount": 5}`)
			got := accepted(t, status, rb)
			if got.Duplicate {
				t.Errorf("answer %s: a webhook without an id is a new event each time", rb)
			}
			_, e := b.storedEvent(t, got.Sequence)
			if _, err := uuid.Parse(e.ID()); err != nil {
				t.Errorf("generated id %q: %v", e.ID(), err)
			}
			ids = append(ids, e.ID())
		}
		if ids[0] == ids[1] {
			t.Errorf("two webhooks got the same id %s", ids[0])
		}
	})
	t.Run("a CloudEvent of the path's type", func(t *testing.T) {
		status, _, rb := post(t, url, map[string]string{"Authorization": "Bearer " + token,
			"ce-specversion": "1.0", "ce-id": "ce-1", "ce-source": "/stripe", "ce-type": "com.stripe.charge.succeeded", "Content-Type": "application/json"}, `{"amount": 7}`)
		got := accepted(t, status, rb)
		if _, e := b.storedEvent(t, got.Sequence); e.ID() != "ce-1" || e.Source() != "/stripe" {
			t.Errorf("stored %s: want the CloudEvent as sent", e)
		}
	})

	stored := b.stored(t)
	for _, tt := range []struct {
		name   string
		url    string
		header map[string]string
		body   string
		status int
		code   string
		field  string
	}{
		{"not JSON", url, hook(nil), `amount=100`, 400, "invalid", "data"},
		{"empty body", url, hook(nil), ``, 400, "invalid", "data"},
		{"binary CloudEvent of another type", url, map[string]string{"Authorization": "Bearer " + token,
			"ce-specversion": "1.0", "ce-id": "ce-2", "ce-source": "/stripe", "ce-type": "com.stripe.charge.failed"}, `{}`, 400, "invalid", "type"},
		{"structured CloudEvent of another type", url, map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/cloudevents+json"},
			`{"specversion":"1.0","id":"ce-3","source":"/stripe","type":"com.stripe.charge.failed"}`, 400, "invalid", "type"},
		{"batch", url, map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/cloudevents-batch+json"},
			`[{"specversion":"1.0","id":"ce-4","source":"/stripe","type":"com.stripe.charge.succeeded"}]`, 415, "unsupported_media_type", ""},
		{"bad type", b.url + "/events/com.stripe..x", hook(nil), `{}`, 400, "invalid", "type"},
		{"id with a control character", url, hook(map[string]string{"Idempotency-Key": "a\tb"}), `{}`, 400, "invalid", "id"},
		{"body over the limit", url, hook(nil), `"` + strings.Repeat("x", testMaxEventSize) + `"`, 413, "too_large", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, _, rb := post(t, tt.url, tt.header, tt.body)
			p := refused(t, status, rb, tt.status, tt.code)
			if p.Field != tt.field {
				t.Errorf("problem %s: want field %q", rb, tt.field)
			}
			if n := b.stored(t); n != stored {
				t.Errorf("stream holds %d events after a refusal, want %d", n, stored)
			}
		})
	}
}
