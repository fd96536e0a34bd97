// Package microerr answers a NATS micro request with an error the one way
// every Hookbus service does (docs/protocol.md, "Errors"): the headers
// Nats-Service-Error-Code and Nats-Service-Error, which micro's stats
// count, and the body {"error": {"code", "message"}} with the whole
// message.
package microerr

import (
	"encoding/json"
	"strings"

	"github.com/nats-io/nats.go/micro"

	"github.com/hookbus/hookbus/pkg/events"
)

// Respond answers r with e.
func Respond(r micro.Request, e *events.Error) error {
	body, err := json.Marshal(events.ErrorReply{Error: e})
	if err != nil {
		return err
	}
	return r.Error(string(e.Code), headerSafe(e.Message), body)
}

// headerSafe turns control characters (an id may hold any) into spaces, so
// that a message is one valid header line; the body keeps it as it is.
func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
