package gateway

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// corsMaxAge is how long a browser may keep a preflight's answer.
const corsMaxAge = 10 * 60

// corsHeaders are the request headers a browser may send besides ce-*
// ones: the token, the content type, the webhook route's ids and the
// calls' Prefer.
var corsHeaders = []string{"authorization", "content-type", "idempotency-key", "webhook-id", "prefer"}

// cors answers the preflights of, and marks the answers to, browsers on
// Config.CORSOrigins; without origins it passes every request on as it is.
// Other origins get no CORS headers, so browsers keep their pages from
// reading the answers.
func (s *Service) cors(next http.Handler) http.Handler {
	if len(s.cfg.CORSOrigins) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		preflight := r.Method == http.MethodOptions && origin != "" && r.Header.Get("Access-Control-Request-Method") != ""
		if origin == "" || !slices.Contains(s.cfg.CORSOrigins, origin) {
			if preflight {
				writeProblem(w, &Problem{Status: http.StatusForbidden, Code: codeForbidden, Detail: "origin " + strconv.Quote(origin) + " is not allowed"})
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
		if !preflight {
			h.Set("Access-Control-Expose-Headers", "Retry-After, WWW-Authenticate, Preference-Applied")
			next.ServeHTTP(w, r)
			return
		}
		h.Add("Vary", "Access-Control-Request-Method")
		h.Add("Vary", "Access-Control-Request-Headers")
		h.Set("Access-Control-Allow-Methods", http.MethodPost)
		if allowed := allowedHeaders(r.Header.Values("Access-Control-Request-Headers")); allowed != "" {
			h.Set("Access-Control-Allow-Headers", allowed)
		}
		h.Set("Access-Control-Max-Age", strconv.Itoa(corsMaxAge))
		w.WriteHeader(http.StatusNoContent)
	})
}

// allowedHeaders returns those of the requested headers a browser may send:
// corsHeaders and ce-* headers.
func allowedHeaders(requested []string) string {
	var out []string
	for _, line := range requested {
		for name := range strings.SplitSeq(line, ",") {
			name = strings.ToLower(strings.TrimSpace(name))
			if slices.Contains(corsHeaders, name) || strings.HasPrefix(name, "ce-") && len(name) > len("ce-") {
				out = append(out, name)
			}
		}
	}
	return strings.Join(out, ", ")
}
