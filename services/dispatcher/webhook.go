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

	"github.com/hookbus/hookbus/pkg/events"
)

// errAddressRefused marks a webhook target whose address the SSRF guard
// refuses (loopback, private, link-local, metadata, ...).
var errAddressRefused = errors.New("address refused")

// refusedPrefixes are the networks a webhook may not reach unless the
// operator allows them: what the host itself, its cluster and its cloud
// serve (loopback, private and link-local ranges, where cloud metadata
// services answer), and addresses that are no single host.
var refusedPrefixes = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8",      // "this network", unspecified
		"10.0.0.0/8",     // private
		"100.64.0.0/10",  // shared address space (carrier NAT; Alibaba's metadata 100.100.100.200)
		"127.0.0.0/8",    // loopback
		"169.254.0.0/16", // link-local, cloud metadata 169.254.169.254
		"172.16.0.0/12",  // private
		"192.0.0.0/24",   // IETF protocol assignments
		"192.168.0.0/16", // private
		"198.18.0.0/15",  // benchmarking
		"224.0.0.0/4",    // multicast
		"240.0.0.0/4",    // reserved, broadcast
		"::/128",         // unspecified
		"::1/128",        // loopback
		"64:ff9b::/96",   // NAT64: embeds an IPv4 address
		"64:ff9b:1::/48", // local NAT64
		"2002::/16",      // 6to4: embeds an IPv4 address
		"fc00::/7",       // unique local (private; AWS metadata fd00:ec2::254)
		"fe80::/10",      // link-local
		"ff00::/8",       // multicast
		"2001::/32",      // Teredo: embeds an IPv4 address
		"100::/64",       // discard-only
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// checkAddress refuses ip when it is in refusedPrefixes and in no prefix
// of allow.
func checkAddress(ip netip.Addr, allow []netip.Prefix) error {
	ip = ip.WithZone("")
	for _, a := range []netip.Addr{ip, ip.Unmap()} {
		for _, p := range allow {
			if p.Contains(a) {
				return nil
			}
		}
	}
	for _, a := range []netip.Addr{ip, ip.Unmap()} {
		for _, p := range refusedPrefixes {
			if p.Contains(a) {
				return fmt.Errorf("%w: %s is in %s (loopback, private, link-local, metadata or not a single host); an operator may allow it with the dispatcher's webhook allow-list", errAddressRefused, ip, p)
			}
		}
	}
	return nil
}

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
				return fmt.Errorf("%w: %q is not an IP address", errAddressRefused, host)
			}
			return checkAddress(ip, allow)
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

// delivery is the outcome of one webhook attempt: err nil for success;
// retry for a failure worth another attempt (408, 429, 5xx, the target
// unreachable or too slow), after retryAfter when the target said so.
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
		if errors.Is(err, errAddressRefused) {
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
	sig, err := signWebhook(h.Secret, id, w.now(), body)
	if err != nil {
		return nil, fmt.Errorf("hook %s: %w", h.ID, err)
	}
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(w.now().Unix(), 10))
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
