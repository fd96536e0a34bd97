package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

// codeTimeout is the code of a call whose chain did not answer within its
// wait.
const codeTimeout events.ErrorCode = "timeout"

// postCall is POST /calls/{type}: one CloudEvent in binary or structured
// mode, its type the path's, runs the chain of that type now through
// hookbus.call.<type>. A call the dispatcher answered gets its ChainResult
// (200, or the status of its error's code); a call refused before it got
// there gets a problem.
func (s *Service) postCall(w http.ResponseWriter, r *http.Request) {
	typ := r.PathValue("type")
	if p := s.permit(r, ActionCall, typ); p != nil {
		writeProblem(w, p)
		return
	}
	wait, preferred, p := s.callWait(r)
	if p != nil {
		writeProblem(w, p)
		return
	}
	e, p := s.pathEvent(w, r, typ, fmt.Sprintf("a call takes one event: send %s (structured mode) or ce-* headers (binary mode), not a batch", contentTypeStructured))
	if p != nil {
		writeProblem(w, p)
		return
	}
	if preferred {
		w.Header().Set("Preference-Applied", "wait="+strconv.FormatInt(int64(wait/time.Second), 10))
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	defer context.AfterFunc(s.calls, cancel)()
	res, err := s.bus.Call(ctx, *e)
	var failed *client.Error
	switch {
	case err == nil || errors.As(err, &failed):
		writeChainResult(w, res, failed)
	case r.Context().Err() != nil:
		s.log.Debug("client gone before the call's answer", "event_id", e.ID(), "event_type", e.Type(), "err", err)
	case s.calls.Err() != nil:
		writeProblem(w, &Problem{Status: http.StatusServiceUnavailable, Code: events.CodeUnavailable,
			Detail: fmt.Sprintf("the gateway is shutting down: the chain of %s may still run to its end", typ)})
	case errors.Is(err, client.ErrNoDispatcher):
		writeProblem(w, &Problem{Status: http.StatusServiceUnavailable, Code: events.CodeUnavailable, Detail: err.Error()})
	case errors.Is(err, context.DeadlineExceeded):
		writeProblem(w, &Problem{Status: http.StatusGatewayTimeout, Code: codeTimeout,
			Detail: fmt.Sprintf("the chain of %s did not answer within %s: it may still run to its end", typ, wait)})
	default:
		s.log.Warn("call failed", "event_id", e.ID(), "event_type", e.Type(), "err", err)
		writeProblem(w, refusal(err))
	}
}

// writeChainResult answers a call the dispatcher answered: its result, with
// 200 when the chain ran (halted or not), else the status of failed's code:
// 400 invalid, 502 plugin_failed, 503 unavailable, 500 otherwise.
func writeChainResult(w http.ResponseWriter, res events.ChainResult, failed *client.Error) {
	status := http.StatusOK
	if failed != nil {
		switch failed.Code {
		case events.CodeInvalid:
			status = http.StatusBadRequest
		case events.CodePluginFailed:
			status = http.StatusBadGateway
		case events.CodeUnavailable:
			status = http.StatusServiceUnavailable
			w.Header().Set("Retry-After", "1")
		default:
			status = http.StatusInternalServerError
		}
		if res.Error == nil {
			res.Error = failed
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(res)
}

// callWait returns how long a call waits for its chain: the query
// parameter timeout (seconds, or a Go duration such as 1500ms) when given,
// else the Prefer header's wait preference (RFC 7240, seconds), else
// Config.CallTimeout; at most Config.MaxCallTimeout. preferred reports
// that the wait is Prefer's, to be answered with Preference-Applied. A
// value that is not a positive time is refused with 400.
func (s *Service) callWait(r *http.Request) (wait time.Duration, preferred bool, p *Problem) {
	if r.URL.RawQuery != "" {
		if v := r.URL.Query().Get("timeout"); v != "" {
			d, ok := parseTimeout(v)
			if !ok {
				return 0, false, badWait("timeout", fmt.Sprintf("%q is not a positive number of seconds or a Go duration (e.g. 1500ms)", v))
			}
			return min(d, s.cfg.MaxCallTimeout), false, nil
		}
	}
	if v, ok := preference(r.Header, "wait"); ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if errors.Is(err, strconv.ErrRange) && n > 0 { // digits past int64: over any cap
			err = nil
		}
		if err != nil || n <= 0 {
			return 0, false, badWait("Prefer", fmt.Sprintf("wait=%q is not a positive number of seconds", v))
		}
		if n > int64(s.cfg.MaxCallTimeout/time.Second) {
			return s.cfg.MaxCallTimeout.Truncate(time.Second), true, nil
		}
		return time.Duration(n) * time.Second, true, nil
	}
	return s.cfg.CallTimeout, false, nil
}

// parseTimeout reads a positive number of seconds or Go duration.
func parseTimeout(v string) (time.Duration, bool) {
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if !(f > 0) || math.IsInf(f, 1) { // NaN is not > 0
			return 0, false
		}
		if f >= math.MaxInt64/float64(time.Second) {
			return math.MaxInt64, true // over any cap
		}
		d := time.Duration(f * float64(time.Second))
		return d, d > 0
	}
	d, err := time.ParseDuration(v)
	return d, err == nil && d > 0
}

func badWait(field, reason string) *Problem {
	return &Problem{Status: http.StatusBadRequest, Code: events.CodeInvalid, Field: field, Reason: reason,
		Detail: "invalid call: " + field + ": " + reason}
}

// preference returns the value of the first preference called name in the
// Prefer headers of h (RFC 7240: comma-separated preferences, each
// name[=value] with ;parameters, the name without regard to case, a value
// possibly quoted; the first of a name counts).
func preference(h http.Header, name string) (string, bool) {
	for _, line := range h.Values("Prefer") {
		for pref := range strings.SplitSeq(line, ",") {
			pref, _, _ = strings.Cut(pref, ";")
			k, v, _ := strings.Cut(pref, "=")
			if strings.EqualFold(strings.TrimSpace(k), name) {
				v = strings.TrimSpace(v)
				if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
					v = v[1 : len(v)-1]
				}
				return v, true
			}
		}
	}
	return "", false
}
