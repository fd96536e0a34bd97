package gateway_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/hookbus/hookbus/services/gateway"
)

// request sends method to url with header and returns the answer.
func request(t *testing.T, method, url string, header map[string]string, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// corsHeaders returns the Access-Control-* headers of h.
func corsHeaders(h http.Header) map[string]string {
	out := map[string]string{}
	for k := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			out[k] = h.Get(k)
		}
	}
	return out
}

func TestCORS(t *testing.T) {
	const app = "https://app.example.com"
	preflight := func(origin string) map[string]string {
		return map[string]string{"Origin": origin, "Access-Control-Request-Method": "POST",
			"Access-Control-Request-Headers": "authorization, content-type, ce-specversion, ce-id, ce-source, ce-type, idempotency-key, x-evil"}
	}
	h, body := structured("cors-1", "com.example.order.created")
	h["Origin"] = app

	t.Run("off", func(t *testing.T) {
		b := newAuthBus(t, nil, nil)
		// OPTIONS is a method like any other: not allowed.
		resp := request(t, http.MethodOptions, b.url+"/events", preflight(app), "")
		if resp.StatusCode != http.StatusMethodNotAllowed || len(corsHeaders(resp.Header)) > 0 {
			t.Errorf("preflight with CORS off: %d %v, want 405 without CORS headers", resp.StatusCode, corsHeaders(resp.Header))
		}
		// Anonymous use is not for web pages: an origin not listed needs a token.
		resp = request(t, http.MethodPost, b.url+"/events", h, body)
		if resp.StatusCode != http.StatusUnauthorized || len(corsHeaders(resp.Header)) > 0 {
			t.Errorf("POST with CORS off: %d %v, want 401 without CORS headers", resp.StatusCode, corsHeaders(resp.Header))
		}
	})

	t.Run("on", func(t *testing.T) {
		b := newAuthBus(t, func(c *gateway.Config) { c.CORSOrigins = []string{"http://localhost:3000", app} }, nil)
		resp := request(t, http.MethodOptions, b.url+"/events/com.example.hook", preflight(app), "")
		got := corsHeaders(resp.Header)
		if resp.StatusCode != http.StatusNoContent || got["Access-Control-Allow-Origin"] != app ||
			got["Access-Control-Allow-Methods"] != "POST" || got["Access-Control-Max-Age"] == "" ||
			got["Access-Control-Allow-Headers"] != "authorization, content-type, ce-specversion, ce-id, ce-source, ce-type, idempotency-key" ||
			!strings.Contains(strings.Join(resp.Header.Values("Vary"), ","), "Origin") {
			t.Errorf("preflight: %d %v (Vary %q)", resp.StatusCode, got, resp.Header.Values("Vary"))
		}
		if n := b.stored(t); n != 0 {
			t.Errorf("stream holds %d events after a preflight", n)
		}

		resp = request(t, http.MethodPost, b.url+"/events", h, body)
		if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Access-Control-Allow-Origin") != app ||
			!strings.Contains(strings.Join(resp.Header.Values("Vary"), ","), "Origin") ||
			// Scripts may read what tells them when to retry and how long a call waited.
			resp.Header.Get("Access-Control-Expose-Headers") != "Retry-After, WWW-Authenticate, Preference-Applied" {
			t.Errorf("POST from %s: %d %v", app, resp.StatusCode, corsHeaders(resp.Header))
		}

		// Another origin gets no CORS headers, and no preflight.
		resp = request(t, http.MethodOptions, b.url+"/events", preflight("https://evil.example.com"), "")
		if resp.StatusCode == http.StatusNoContent || len(corsHeaders(resp.Header)) > 0 {
			t.Errorf("preflight from another origin: %d %v", resp.StatusCode, corsHeaders(resp.Header))
		}
		h2, body2 := structured("cors-2", "com.example.order.created")
		h2["Origin"] = "https://evil.example.com"
		resp = request(t, http.MethodPost, b.url+"/events", h2, body2)
		if len(corsHeaders(resp.Header)) > 0 {
			t.Errorf("POST from another origin: CORS headers %v", corsHeaders(resp.Header))
		}
	})
}
