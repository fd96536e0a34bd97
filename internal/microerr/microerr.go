// Package microerr writes an error answer the one way every Hookbus
// service does (docs/protocol.md, "Errors"): the headers
// Nats-Service-Error-Code and Nats-Service-Error of the NATS micro
// protocol, and a body whose "error" member is {"code", "message"} with
// the whole message.
package microerr

import (
	"encoding/json"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/hookbus/hookbus/pkg/events"
)

// Respond answers the micro request r with e, so that micro's stats count
// it as an error.
func Respond(r micro.Request, e *events.Error) error {
	body, err := json.Marshal(events.ErrorReply{Error: e})
	if err != nil {
		return err
	}
	return r.Error(string(e.Code), description(e), body)
}

// Header returns the micro error headers of e, for an answer that is not
// a micro request's (a command's answer, a call's result) and whose body
// carries e in its "error" member.
func Header(e *events.Error) nats.Header {
	return nats.Header{
		micro.ErrorCodeHeader: {string(e.Code)},
		micro.ErrorHeader:     {description(e)},
	}
}

// description is e's message as one valid header line: control characters
// (an id may hold any) become spaces, the body keeps them; micro refuses an
// empty one, so a message-less error repeats its code.
func description(e *events.Error) string {
	if e.Message == "" {
		return string(e.Code)
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, e.Message)
}
