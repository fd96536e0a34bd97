package dispatcher

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/hookbus/hookbus/internal/netguard"
	"github.com/hookbus/hookbus/pkg/events"
)

// webhookSender posts events to webhook hooks: signed as Standard Webhooks
// sign, through a client that dials only addresses checkAddress passes
// (checked on the resolved address, at every dial), follows no redirect
// and uses no proxy (a proxy would dial for it, unchecked).
type webhookSender struct {
	client         *http.Client
	defaultTimeout time.Duration
	now            func() time.Time
}

// newWebhookSender returns a sender that lets webhooks reach the refused
// networks only within allow.
func newWebhookSender(allow []netip.Prefix, defaultTimeout time.Duration) *webhookSender {
	dialer := &net.Dialer{
		Timeout: 10 * time.Second,
		// Control runs after name resolution, for each address tried:
		// a name that resolves to loopback is refused like 127.0.0.1.
		Control: func(_, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			ip, err := netip.ParseAddr(host)
			if err != nil {
				return fmt.Errorf("%w: %q is not an IP address", netguard.ErrRefused, host)
			}
			return netguard.Check(ip, allow)
		},
	}
	transport := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &webhookSender{
		client: &http.Client{
			Transport: transport,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
		defaultTimeout: defaultTimeout,
		now:            time.Now,
	}
}

// delivery is the outcome of one attempt of a hook: err nil for success;
// retry for a failure worth another attempt (a webhook's 408, 429, 5xx,
// the target unreachable or too slow, a program's non-zero exit), after
// retryAfter when the target said so; any other failure is final.
type delivery struct {
	status     int
	retry      bool
	retryAfter time.Duration
	err        error
}

// send posts e to hook h once and classifies the answer. This is the one
// place that decides what a webhook's answer means.
func (w *webhookSender) send(ctx context.Context, h events.Hook, e *event.Event) delivery {
	timeout := w.defaultTimeout
	if h.Settings.TimeoutMS > 0 {
		timeout = time.Duration(h.Settings.TimeoutMS) * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := w.request(ctx, h, e)
	if err != nil {
		return delivery{err: err}
	}
	resp, err := w.client.Do(req)
	if err != nil {
		if errors.Is(err, netguard.ErrRefused) {
			return delivery{err: err}
		}
		return delivery{retry: true, err: fmt.Errorf("post to hook %s: %w", h.ID, err)}
	}
	defer func() { _ = resp.Body.Close() }()
	// Read a little of the answer, so the connection can be reused and
	// the error can quote the target.
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	d := delivery{status: resp.StatusCode}
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return d
	case code >= 300 && code < 400:
		d.err = fmt.Errorf("hook %s: %s to %q: redirects are not followed", h.ID, resp.Status, resp.Header.Get("Location"))
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		d.retry = true
		d.retryAfter = retryAfter(resp.Header.Get("Retry-After"), w.now())
		d.err = fmt.Errorf("hook %s: %s: %s", h.ID, resp.Status, oneLine(body))
	default:
		d.err = fmt.Errorf("hook %s: %s: %s", h.ID, resp.Status, oneLine(body))
	}
	return d
}

// request builds the signed POST of e: binary mode (data as the body,
// attributes in ce- headers), or structured mode when the hook asks.
func (w *webhookSender) request(ctx context.Context, h events.Hook, e *event.Event) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.Arg, nil)
	if err != nil {
		return nil, fmt.Errorf("hook %s: %w", h.ID, err)
	}
	wctx := ctx
	if h.Settings.Structured {
		wctx = binding.WithForceStructured(ctx)
	}
	if err := cehttp.WriteRequest(wctx, binding.ToMessage(e), req); err != nil {
		return nil, fmt.Errorf("hook %s: encode event: %w", h.ID, err)
	}
	var body []byte
	if req.Body != nil {
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, fmt.Errorf("hook %s: encode event: %w", h.ID, err)
		}
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	// The same id on every attempt of the same event, so a receiver can
	// drop a duplicate.
	id := "msg_" + events.MsgID(e.Source(), e.ID())
	at := w.now() // one reading: the header must be the time signed
	sig, err := signWebhook(h.Secret, id, at, body)
	if err != nil {
		return nil, fmt.Errorf("hook %s: %w", h.ID, err)
	}
	// During a rotation's overlap the previous secret signs too, so a
	// receiver that knows either accepts (space-separated signatures).
	if h.PreviousSecret != "" && at.Before(h.PreviousExpires) {
		old, err := signWebhook(h.PreviousSecret, id, at, body)
		if err != nil {
			return nil, fmt.Errorf("hook %s: previous secret: %w", h.ID, err)
		}
		sig += " " + old
	}
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(at.Unix(), 10))
	req.Header.Set("webhook-signature", sig)
	req.Header.Set("User-Agent", "hookbus-webhook")
	return req, nil
}

// signWebhook returns the Standard Webhooks signature of body:
// "v1,<base64 of HMAC-SHA256 over id.timestamp.body>", keyed with the
// secret's bytes (the base64 after whsec_).
func signWebhook(secret, id string, at time.Time, body []byte) (string, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil || len(key) == 0 {
		return "", errors.New("the hook's secret is not whsec_<base64>")
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%d.", id, at.Unix())
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)), nil
}

// retryAfter reads a Retry-After header: delay seconds or an HTTP date;
// 0 when absent, unreadable or past.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// oneLine keeps an error quote of a target's answer on one line.
func oneLine(b []byte) string { return strings.Join(strings.Fields(string(b)), " ") }
