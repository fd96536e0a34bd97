// Package node measures the Node.js SDK (sdks/node, @hookbus/client)
// beside raw nats.js doing the same work on the same embedded server in
// the same run: publish with the SDK's windowed publisher against
// js.publish with the same window, headers and Nats-Msg-Id, and notify
// delivery through client.serve against a raw pull consumer acking each
// message with the same concurrency. The Node side is bench.mjs; the
// benchmarks report events/s of both and x_raw (SDK / raw).
//
// It has benchmarks only (go test -bench, run by make bench), no tests.
// The benchmarks skip when node or npm is missing; they run npm ci (and
// the SDK's build) the first time.
package node
