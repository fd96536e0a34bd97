// Package stepheader gives the dispatcher the binary-mode headers of an
// event that is valid already, written by pkg/events' own encoder,
// without making that writer part of the wire contract's API.
package stepheader

import (
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
)

// Binary returns e's binary-mode headers (one lowercase ce- header per
// attribute, datacontenttype in content-type), without validating e and
// without Nats-Msg-Id; each value is a slice of its own. pkg/events sets
// it when it is initialised.
var Binary func(e *event.Event) (nats.Header, error)
