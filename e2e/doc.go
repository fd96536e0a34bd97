//go:build e2e

// Package e2e tests the built hookbus binary from the outside: it runs
// `hookbus serve` as a subprocess on free ports, drives it through the CLI,
// a Go NATS client and a Node.js client (e2e/node), and checks what ends up
// in JetStream, including across a restart. The example plugin workers
// (examples/go-plugin and examples/node-plugin) run as one chain.
//
// The HTTP gateway is tested from clients no one here wrote: curl in
// binary, structured and batch mode, the npm cloudevents package's HTTP
// emitter (e2e/node/emit.mjs, binary and structured) and sdk-go's HTTP
// client (cloudevents.NewClientHTTP, binary and structured). A notify and
// a chain plugin run in the test process (client.Serve) and record every
// event they see: each event posted over HTTP must reach both with the
// same id, source, type, subject, time, dataschema, extensions and data
// as it was sent, and as its twin (the same event under another id)
// published over NATS with the Go SDK. A POST sent again with the same
// source and id (binary, then structured, then from the npm emitter) is
// stored once and answered duplicate:true; a batch with an invalid event
// is answered 207 and the invalid one is not stored; while HOOKBUS_EVENTS
// refuses messages (a limit reached, discard new) a POST gets a 5xx
// problem, not 202, and nothing is stored. Every request to the
// gateway takes its headers from server.gatewayAuth: a bearer token when
// server.GatewayToken is set, none otherwise. curl must be on PATH.
//
// The tests are behind the build tag e2e, so `go test ./...` skips them:
//
//	go test -tags e2e -count=1 ./e2e/...
//
// They need Go, Node.js (20 or later), npm and curl; TestMain builds the binary and the Go
// example once and runs `npm ci` in e2e/node and examples/node-plugin once. Without npm the Node tests fail, they do not
// skip.
package e2e
