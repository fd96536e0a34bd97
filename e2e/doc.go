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
// The conformance suite (conformance_test.go) drives the plugin worker of
// each SDK, through its adapter (e2e/adapters: the Go SDK, the Node.js SDK
// and a raw nats.go worker; ADAPTER.md is the adapter protocol), case by
// case against its own hookbus serve, and prints the table of cases and
// adapters (to $HOOKBUS_CONFORMANCE_TABLE too, which make e2e prints); the
// raw worker broken on purpose must fail the cases that guard its rule.
// TestMixedLanguages runs a Go and a Node.js chain plugin and a notify
// plugin in each language on one event type. TestProtocolSnippets runs or
// checks every code block of docs/protocol.md (snippets_test.go).
//
// The tests are behind the build tag e2e, so `go test ./...` skips them:
//
//	go test -tags e2e -count=1 ./e2e/...
//
// They need Go, Node.js (20 or later), npm and curl; TestMain builds the binary, the Go
// example and the Go adapters once, installs and builds the Node.js SDK (sdks/node), and runs
// `npm ci` in e2e/node, examples/node-plugin, examples/node-device and e2e/adapters/node once. Without npm the Node tests fail, they do not
// skip.
package e2e
