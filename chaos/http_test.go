//go:build chaos

package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/hookbus/hookbus/pkg/events"
)

// Timings of the HTTP publishers.
const (
	// httpInterval paces each HTTP publisher: 25 events a second, in
	// single POSTs for one, in batches of httpBatchSize for the other.
	httpInterval  = 40 * time.Millisecond
	httpBatchSize = 5
	// httpAttemptTimeout bounds one request: longer than the gateway's
	// own wait for JetStream (4 sends of 5 s, then 503), so that a
	// gateway that is up always answers first.
	httpAttemptTimeout = 30 * time.Second
	// httpRetryPause paces the attempts while the gateway is down
	// (connection refused comes back at once).
	httpRetryPause = 100 * time.Millisecond
)

// Outcomes of one HTTP request that are not a status code.
const (
	outcomeRefused  = "refused"   // connection refused: the request never reached a gateway
	outcomeNoAnswer = "no answer" // sent (or maybe sent) and never answered: reset, EOF, timeout
)

// httpPublisher posts CloudEvents to a Hookbus gateway. post is the
// suite's one HTTP request: it adds Authorization: Bearer <token> when the
// publisher has a token, and nothing when it has none (an anonymous
// client, which the gateway allows on loopback).
type httpPublisher struct {
	url   string // http://host:port of the gateway
	token string
	hc    *http.Client
}

func newHTTPPublisher(url, token string) *httpPublisher {
	return &httpPublisher{url: url, token: token, hc: &http.Client{
		Timeout:   httpAttemptTimeout,
		Transport: &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second},
	}}
}

// post sends body to POST /events with header and returns the status and
// body of the answer. An answer cut short is an error: no answer.
func (p *httpPublisher) post(ctx context.Context, header http.Header, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url+"/events", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	maps.Copy(req.Header, header)
	if p.token != "" {
		req.Header.Set("Authorization", "Bearer "+p.token)
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, answer, nil
}

// httpOutcome names what came of one request, for the report, and says
// whether the event is to be sent again: after a 5xx, or when no gateway
// answered (a retry with the same source and id is stored once). Any
// other status is final.
func httpOutcome(status int, err error) (outcome string, retry bool) {
	switch {
	case err == nil:
		return strconv.Itoa(status), status >= 500
	case errors.Is(err, syscall.ECONNREFUSED):
		return outcomeRefused, true
	default:
		return outcomeNoAnswer, true
	}
}

// binaryRequest is e in the HTTP binding's binary mode.
func binaryRequest(e event.Event) (http.Header, []byte) {
	h := http.Header{}
	h.Set("ce-specversion", "1.0")
	h.Set("ce-id", e.ID())
	h.Set("ce-source", e.Source())
	h.Set("ce-type", e.Type())
	h.Set("Content-Type", e.DataContentType())
	return h, e.Data()
}

// structuredRequest is e in the HTTP binding's structured mode.
func structuredRequest(e event.Event) (http.Header, []byte) {
	body, _ := json.Marshal(e) // a valid event always encodes
	return http.Header{"Content-Type": {event.ApplicationCloudEventsJSON}}, body
}

// storedAnswer reports whether answer is the gateway's 202 body: the event
// stored in HOOKBUS_EVENTS.
func storedAnswer(answer []byte) bool {
	var s struct {
		Stream string `json:"stream"`
		Seq    uint64 `json:"seq"`
	}
	return json.Unmarshal(answer, &s) == nil && s.Stream == events.StreamEvents && s.Seq > 0
}

// httpSent records events as sent through the gateway.
func (tr *traffic) httpSent(evs ...event.Event) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	now := time.Now()
	for _, e := range evs {
		tr.sent[e.ID()], tr.typeOf[e.ID()], tr.overHTTP[e.ID()] = now, e.Type(), true
	}
}

// httpRequest counts one request's outcome; a final refusal also counts
// as an error that stopped the publish for good.
func (tr *traffic) httpRequest(outcome string, final error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.httpOutcomes[outcome]++
	if final != nil {
		tr.publishErrs[final.Error()]++
	}
}

// httpPublishLoop posts one event every httpInterval to the gateway,
// alternately of the chain and the notify type, until stop ends; each is
// sent until answered 202, or until giveUp ends.
func (tr *traffic) httpPublishLoop(stop, giveUp context.Context, p *httpPublisher, prefix string) {
	eventLoop(stop, httpInterval, prefix, func(e event.Event) { tr.publishHTTP(giveUp, p, e) })
}

// publishHTTP posts e until it is answered 202, as a careful HTTP client
// would: after a 5xx or no answer, the same event (same source and id)
// again, in binary mode and structured mode in turn.
func (tr *traffic) publishHTTP(giveUp context.Context, p *httpPublisher, e event.Event) {
	tr.httpSent(e)
	for attempt := 0; ; attempt++ {
		h, body := binaryRequest(e)
		if attempt%2 == 1 {
			h, body = structuredRequest(e)
		}
		ctx, cancel := context.WithTimeout(giveUp, httpAttemptTimeout)
		status, answer, err := p.post(ctx, h, body)
		cancel()
		if err != nil && giveUp.Err() != nil {
			return // the suite gave up, not the gateway
		}
		outcome, retry := httpOutcome(status, err)
		switch {
		case status == http.StatusAccepted && storedAnswer(answer):
			tr.httpRequest(outcome, nil)
			tr.ack(e.ID())
			return
		case !retry:
			tr.httpRequest(outcome, fmt.Errorf("HTTP POST answered %d: %s", status, bytes.TrimSpace(answer)))
			return
		}
		tr.httpRequest(outcome, nil)
		select {
		case <-giveUp.Done():
			return
		case <-time.After(httpRetryPause):
		}
	}
}

// httpBatchLoop posts a batch of httpBatchSize events every
// httpBatchSize*httpInterval until stop ends; the events of a batch not
// answered 202 are sent again, as a batch, until they are, or until giveUp
// ends.
func (tr *traffic) httpBatchLoop(stop, giveUp context.Context, p *httpPublisher, prefix string) {
	tick := time.NewTicker(httpBatchSize * httpInterval)
	defer tick.Stop()
	for n := 0; ; n += httpBatchSize {
		select {
		case <-stop.Done():
			return
		case <-tick.C:
		}
		batch := make([]event.Event, httpBatchSize)
		for i := range batch {
			typ := chainType
			if (n+i)%2 == 1 {
				typ = notifyType
			}
			batch[i] = newEvent(fmt.Sprintf("%s-%06d", prefix, n+i), typ, n+i)
		}
		tr.publishHTTPBatch(giveUp, p, batch)
	}
}

// publishHTTPBatch posts evs as one batch (application/cloudevents-batch+json)
// and sends the events not answered 202 again, until none is left.
func (tr *traffic) publishHTTPBatch(giveUp context.Context, p *httpPublisher, evs []event.Event) {
	tr.httpSent(evs...)
	for len(evs) > 0 {
		body, _ := json.Marshal(evs) // valid events always encode
		ctx, cancel := context.WithTimeout(giveUp, httpAttemptTimeout)
		status, answer, err := p.post(ctx, http.Header{"Content-Type": {event.ApplicationCloudEventsBatchJSON}}, body)
		cancel()
		if err != nil && giveUp.Err() != nil {
			return
		}
		outcome, retry := httpOutcome(status, err)
		switch {
		case status == http.StatusAccepted || status == http.StatusMultiStatus:
			left, final := tr.batchAnswer(evs, answer)
			tr.httpRequest(outcome, final)
			if final != nil {
				return
			}
			evs = left
		case !retry:
			tr.httpRequest(outcome, fmt.Errorf("HTTP batch POST answered %d: %s", status, bytes.TrimSpace(answer)))
			return
		default:
			tr.httpRequest(outcome, nil)
		}
		if len(evs) == 0 {
			return
		}
		select {
		case <-giveUp.Done():
			return
		case <-time.After(httpRetryPause):
		}
	}
}

// batchAnswer acknowledges the events of evs the gateway's batch answer
// says are stored and returns those to send again (5xx); an answer that
// does not fit evs, or an event refused for good, is an error.
func (tr *traffic) batchAnswer(evs []event.Event, answer []byte) (left []event.Event, err error) {
	var a struct {
		Results []struct {
			Status int             `json:"status"`
			Stream string          `json:"stream"`
			Seq    uint64          `json:"seq"`
			Error  json.RawMessage `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal(answer, &a); err != nil || len(a.Results) != len(evs) {
		return nil, fmt.Errorf("HTTP batch of %d answered %s", len(evs), bytes.TrimSpace(answer))
	}
	for i, r := range a.Results {
		switch {
		case r.Status == http.StatusAccepted && r.Stream == events.StreamEvents && r.Seq > 0:
			tr.ack(evs[i].ID())
		case r.Status >= 500:
			left = append(left, evs[i])
			tr.mu.Lock()
			tr.httpOutcomes["batch event "+strconv.Itoa(r.Status)]++
			tr.mu.Unlock()
		default:
			return nil, fmt.Errorf("HTTP batch event answered %d: %s", r.Status, r.Error)
		}
	}
	return left, nil
}

// httpPoisonKinds are the invalid requests the poison scenario posts to
// the gateway, in turn, each with the status it must be answered with.
var httpPoisonKinds = []struct {
	kind   string
	status int
}{
	{"no-source", http.StatusBadRequest},
	{"bad-specversion", http.StatusBadRequest},
	{"bad-time", http.StatusBadRequest},
	{"bad-type", http.StatusBadRequest},
	{"non-utf8-id", http.StatusBadRequest},
	{"catalog-schema", http.StatusBadRequest},
	{"not-a-cloudevent", http.StatusUnsupportedMediaType},
	{"xml-format", http.StatusUnsupportedMediaType},
	{"malformed-batch", http.StatusBadRequest},
	{"batch-not-an-array", http.StatusBadRequest},
}

// Rare, large kinds of HTTP poison, mixed in apart.
const (
	httpOversizedEvery = 97  // a body over the limit (413) every 97 requests, binary and structured in turn
	httpTooManyEvery   = 101 // a batch of 1,001 valid events (413) every 101 requests
	httpPoisonTick     = 10 * time.Millisecond
	httpPoisonSource   = "/chaos/http-poison"
	httpPoisonIDPrefix = "hpoison-"
	// httpPoisonCatalogType is the catalog type of the catalog-schema
	// kind; the check reads its subject, where no event must be.
	httpPoisonCatalogType = "on_user_login_failure"
)

// httpPoison posts invalid requests to the gateway and counts the answers
// that are not the status each must get.
type httpPoison struct {
	p *httpPublisher

	mu      sync.Mutex
	sent    map[string]int    // by kind
	wrong   map[string]int    // "kind: what came back" -> requests
	example map[string]string // "kind: what came back" -> the first such answer or error
}

func newHTTPPoison(p *httpPublisher) *httpPoison {
	return &httpPoison{p: p, sent: map[string]int{}, wrong: map[string]int{}, example: map[string]string{}}
}

// request builds the n-th invalid request, and the status it must get.
func (hp *httpPoison) request(n int) (kind string, want int, h http.Header, body []byte) {
	id := httpPoisonIDPrefix + strconv.Itoa(n)
	h = http.Header{}
	h.Set("ce-specversion", "1.0")
	h.Set("ce-id", id)
	h.Set("ce-source", httpPoisonSource)
	h.Set("ce-type", chainType)
	h.Set("Content-Type", event.ApplicationJSON)
	body = []byte(`{"n":` + strconv.Itoa(n) + `}`)
	switch {
	case n%httpOversizedEvery == httpOversizedEvery-1:
		pad := strings.Repeat("x", events.DefaultMaxSize+64<<10)
		if n%2 == 0 {
			return "oversized-binary", http.StatusRequestEntityTooLarge, h, []byte(`{"pad":"` + pad + `"}`)
		}
		// Over the structured limit, 4/3 of the event limit plus 64 KiB.
		pad += strings.Repeat("x", events.DefaultMaxSize/2)
		return "oversized-structured", http.StatusRequestEntityTooLarge, http.Header{"Content-Type": {event.ApplicationCloudEventsJSON}},
			[]byte(`{"specversion":"1.0","id":"` + id + `","source":"` + httpPoisonSource + `","type":"` + chainType + `","data":{"pad":"` + pad + `"}}`)
	case n%httpTooManyEvery == httpTooManyEvery-1:
		var b bytes.Buffer
		b.WriteByte('[')
		for i := range 1001 {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"specversion":"1.0","id":"%s-%d","source":"%s","type":"%s","data":{"n":%d}}`, id, i, httpPoisonSource, chainType, i)
		}
		b.WriteByte(']')
		return "batch-too-many", http.StatusRequestEntityTooLarge, http.Header{"Content-Type": {event.ApplicationCloudEventsBatchJSON}}, b.Bytes()
	}
	k := httpPoisonKinds[n%len(httpPoisonKinds)]
	kind, want = k.kind, k.status
	switch kind {
	case "no-source":
		h.Del("ce-source")
	case "bad-specversion":
		h = http.Header{"Content-Type": {event.ApplicationCloudEventsJSON}}
		body = []byte(`{"specversion":"0.3","id":"` + id + `","source":"` + httpPoisonSource + `","type":"` + chainType + `","data":{}}`)
	case "bad-time":
		h.Set("ce-time", "yesterday")
	case "bad-type":
		h.Set("ce-type", "chaos%20chain") // "chaos chain"
	case "non-utf8-id":
		h.Set("ce-id", httpPoisonIDPrefix+"%FF%FE-"+strconv.Itoa(n))
	case "catalog-schema":
		h.Set("ce-type", httpPoisonCatalogType)
		body = []byte(`{"ip":"1.2.3.4","endpoint":"web","error":"x"}`)
	case "not-a-cloudevent":
		h = http.Header{"Content-Type": {"text/plain"}}
		body = []byte("plain text " + strconv.Itoa(n))
	case "xml-format":
		h = http.Header{"Content-Type": {"application/cloudevents+xml"}}
		body = []byte("<event/>")
	case "malformed-batch":
		h = http.Header{"Content-Type": {event.ApplicationCloudEventsBatchJSON}}
		body = []byte(`[{"specversion":"1.0","id":"` + id + `"`)
	case "batch-not-an-array":
		h = http.Header{"Content-Type": {event.ApplicationCloudEventsBatchJSON}}
		body = []byte(`{"specversion":"1.0","id":"` + id + `","source":"` + httpPoisonSource + `","type":"` + chainType + `"}`)
	}
	return kind, want, h, body
}

// flood posts one invalid request every httpPoisonTick until ctx ends.
func (hp *httpPoison) flood(ctx context.Context) {
	tick := time.NewTicker(httpPoisonTick)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		kind, want, h, body := hp.request(n)
		reqCtx, cancel := context.WithTimeout(context.Background(), httpAttemptTimeout)
		status, answer, err := hp.p.post(reqCtx, h, body)
		cancel()
		var what, example string
		switch {
		case err != nil:
			what, example = kind+": no answer", err.Error()
		case status != want:
			what, example = fmt.Sprintf("%s: %d, want %d", kind, status, want), string(bytes.TrimSpace(answer))
		case !bytes.Contains(answer, []byte(`"status":`+strconv.Itoa(want))):
			what, example = fmt.Sprintf("%s: %d without a problem body", kind, status), string(bytes.TrimSpace(answer))
		}
		hp.mu.Lock()
		hp.sent[kind]++
		if what != "" {
			if hp.wrong[what]++; hp.wrong[what] == 1 {
				hp.example[what] = example
			}
		}
		hp.mu.Unlock()
	}
}

// summary is what was posted, by kind.
func (hp *httpPoison) summary() string {
	hp.mu.Lock()
	defer hp.mu.Unlock()
	total, wrong := 0, 0
	for _, n := range hp.sent {
		total += n
	}
	for _, n := range hp.wrong {
		wrong += n
	}
	return fmt.Sprintf("posted %d (%s), answered otherwise than 4xx as expected %d", total, counts(hp.sent), wrong)
}

// problems lists the requests answered otherwise than expected and the
// kinds never posted.
func (hp *httpPoison) problems() []string {
	hp.mu.Lock()
	defer hp.mu.Unlock()
	var out []string
	for _, what := range slices.Sorted(maps.Keys(hp.wrong)) {
		out = append(out, fmt.Sprintf("HTTP poison answered wrongly %d times: %s, e.g. %.300s", hp.wrong[what], what, hp.example[what]))
	}
	for _, k := range httpPoisonKinds {
		if hp.sent[k.kind] == 0 {
			out = append(out, "HTTP poison kind "+k.kind+" never posted")
		}
	}
	return out
}
