//go:build e2e

// Package e2e tests the built hookbus binary from the outside: it runs
// `hookbus serve` as a subprocess on free ports, drives it through the CLI,
// a Go NATS client and a Node.js client (e2e/node), and checks what ends up
// in JetStream, including across a restart. The example plugin workers
// (examples/go-plugin and examples/node-plugin) run as one chain.
//
// The tests are behind the build tag e2e, so `go test ./...` skips them:
//
//	go test -tags e2e -count=1 ./e2e/...
//
// They need Go, Node.js and npm; TestMain builds the binary and the Go
// example once and runs `npm ci` in e2e/node and examples/node-plugin once. Without npm the Node tests fail, they do not
// skip.
package e2e
