// Package chaos is Hookbus's chaos suite: it runs Hookbus the way a real
// deployment fails, as separate OS processes killed with SIGKILL and
// restarted while traffic flows, and checks the outcome by set equality at
// the end, as Kafka's system tests do. The tests are behind the build tag
// chaos (make chaos; make test runs a short pass).
//
// Every run builds the hookbus binary and a nats-server binary, then runs
// three scenarios, each for CHAOS_TIME (a Go duration, default 3m in make
// chaos) of kills:
//
//   - all-in-one: `hookbus serve` on its embedded NATS server (fsync on every
//     write) is killed and restarted in a loop, together with plugin
//     workers. Its HTTP gateway listens on the same loopback port across
//     restarts, and two HTTP publishers post to it (below).
//   - split: a 3-node nats-server cluster (JetStream, sync_interval always,
//     max_payload 2MiB), `hookbus serve registry`, two `hookbus serve
//     dispatcher` replicas, `hookbus serve persistence` and `hookbus serve
//     gateway` (anonymous use off: its HTTP publishers send a token admin
//     made with `hookbus gateway token create`), all with stream replicas 3, and 3,000 seeded plugins of other event types in
//     hookbus_plugins. One loop kills services and workers, another kills
//     one NATS node at a time (a minority) and waits until it is healthy
//     again. NATS runs the permission model of the Kubernetes manifests:
//     the nodes load a copy of deployments/k8s/base/nats/accounts.conf
//     (random hex passwords in their environment) to which each kind of
//     chaos worker adds a user of its own, made for its one plugin by
//     `hookbus plugin credentials NAME --user USER`; every service connects
//     as its own user (the registry with topology create, the others with
//     check, as in the manifests), every worker as its user, each with the
//     inbox prefix _INBOX.<user>. The test's state readers, checkers and
//     one publisher connect as admin; the other publisher and the caller as
//     an application, with the in-process worker's user. Routes between
//     the nodes are not authenticated.
//   - poison: the all-in-one without kills, flooded with about 1,000 raw
//     invalid messages a second (non-JSON data on a chain type, events over
//     the size limit, a type that does not match the subject, invalid
//     attributes, a non-UTF-8 id, bodies that are no CloudEvent, calls with
//     non-JSON data), and its gateway with about 100 invalid HTTP requests
//     a second (an event without source, with specversion 0.3, a bad time,
//     a type with a space, a non-UTF-8 id, catalog data failing its schema,
//     a body that is no CloudEvent, the XML event format, a malformed
//     batch, a batch that is not an array; and now and then a body over
//     the size limit in binary and in structured mode and a batch of 1,001
//     valid events), while valid events flow; it prints the p50 and p99 of
//     publish-to-result and publish-to-notify-delivery delays of the valid
//     events (target: p99 under 1 s).
//
// In the all-in-one and split scenarios three devices also send numbered
// messages, 25 a second each, over device WebSockets to the gateway (which has a device token
// secret and salt): each message is sent again, on a new connection, until
// its ack frame comes; a device connects again with the last token the
// gateway gave it (its first is sealed by the test with the same secret).
// At the end every message acknowledged to its device must be on
// hookbus.device.<id>.in (stream HOOKBUS_DEVICES) at least once; the table
// gives device sent/acked/stored (distinct), lost/stored twice or more, and
// reconnects. An upgrade refused with a problem (the token the gateway gave
// refused) fails the test.
//
// In every scenario a persistent webhook hook on the notify type joins:
// the suite creates it with `hookbus hook create --persistent` as admin (the
// services run with HOOKBUS_WEBHOOK_ALLOW=127.0.0.0/8) and its receiver is
// an HTTP server in the test process, on loopback, never killed. The
// receiver checks every request's Standard Webhooks signature by hand
// (HMAC-SHA256 of id.timestamp.body with the secret the CLI printed, the
// timestamp within 5 minutes) and answers 500 to one request in 300 and
// 429 with Retry-After: 1 to one in 500 (each failure holds the hook, one
// event at a time in order, for about a second: more would outrun the
// publishers). In the poison scenario a ninth of the flood (non-CloudEvent
// bodies) goes to the hook's node, and the receiver's line gives the p50
// and p99 of the valid events' publish-to-delivery delays (a 500 holds the
// events behind it for the retry delay, 1 s: no target is set).
//
// Traffic comes from the test process through the Go SDK (pkg/client):
// publishers give each event a unique id and retry it with the same id until
// it is acknowledged; a caller runs client.Call on the chain type. Plugin
// workers are child processes (the test binary run again with CHAOS_WORKER
// set) so they can be killed too: a chain plugin with two replicas, and a
// notify plugin with two replicas that append every delivery to a file
// before acknowledging it. A second chain plugin runs in the test process
// and is never killed.
//
// In both scenarios the HTTP gateway runs, and two HTTP
// publishers post events to it as well, 25 a second each: one event per
// POST, in binary and structured mode in turn, and batches of 5
// (application/cloudevents-batch+json). An event not answered 202 (the
// connection refused or reset, no answer, a 5xx; for a batch, each event
// whose result is not 202) is posted again with the same source and id,
// in the other mode, until it is answered 202 or the suite gives up
// (publishGiveUp after the traffic stopped); any 4xx fails the test. Their
// events are among the sent and acknowledged events the checks below
// compare with the streams. Every request goes through httpPublisher.post,
// which adds a bearer token when the deployment has one (gatewayToken: the
// split deployment's).
//
// After the kills stop, the suite polls, with a deadline, until everything
// has settled, then checks:
//
//   - every acknowledged event (over HTTP: answered 202) is stored exactly
//     once in HOOKBUS_EVENTS (0 lost, 0 duplicated), and some event posted
//     to the gateway was answered 202;
//   - every stored event of the notify type was delivered to the notify
//     plugin at least once, with fewer redeliveries than half the events
//     plus 100;
//   - every stored event of the chain type has exactly one result in
//     HOOKBUS_RESULTS;
//   - every call got an answer, any answer including an error: a call is
//     tried with a 5 s deadline, again after a timeout or no responders,
//     for up to 30 s; only a call never answered in that time counts as
//     unanswered;
//   - every stored event of the notify type reached the webhook receiver
//     at least once with a valid signature, or is dead-lettered for
//     subscriber hook-<id> (none should be: each is listed in the log);
//     no request had a bad signature; duplicates are counted (at-least-once
//     allows them); every poison message on the hook's node is
//     dead-lettered for hook-<id>;
//   - the consumers chain-<chain type>, notify-<plugin> and hook-<id> end
//     with nothing pending and nothing waiting for an acknowledgement;
//   - every stored poison message is dead-lettered in HOOKBUS_DLQ (or it was
//     refused at publish), every poison call is answered, and the valid
//     events' p99 delays stay under 1 s; every invalid HTTP request is
//     answered with its 4xx status (400, 413 or 415) and a problem body,
//     none goes unanswered, and nothing of them is stored (no event no
//     publisher sent, none on the catalog type's subject);
//   - split: NATS refused nothing. Every line of the nodes' logs about a
//     refused publish, subscription or login (Publish Violation,
//     Subscription Violation, authentication error) fails the test and is
//     listed, but for those of the suite's one deliberate probe (a worker
//     subscribing to admin's inbox, at the start), which must be there: it
//     shows the permissions apply and the logs are read.
//
// The table at the end has, per scenario: events sent, acknowledged,
// stored, delivered to the notify plugin, chain results, lost, duplicated,
// dead-lettered, the hook's delivered, duplicated, dead-lettered and
// missing events and the poison dead-lettered for it, the events posted
// over HTTP and those answered 202, how
// many of them were lost or duplicated, the HTTP requests that got no
// answer at all (each one's event was posted again), kills by kind, the recovery time (the longest time from a
// restart of Hookbus or NATS until both a publish was acknowledged and a
// call answered again), the poison delays and the NATS permission
// violations (split only). Below it: the HTTP requests by outcome (202,
// 207, 503, refused, no answer), the webhook receiver's requests by
// answer, and the HTTP poison's counts.
//
// Kill loops take the kinds of process in turn (hookbus and workers in the
// all-in-one; registry, dispatcher, persistence, gateway and workers in the split
// deployment, plus a loop of its own for NATS nodes), so every kind is
// killed about as often. A Hookbus or NATS process that exits by itself
// fails the test; a worker that does is restarted and logged.
//
// The NATS stores are on /dev/shm when the machine has it (CHAOS_DATA_DIR
// sets another place): with fsync on every write, a virtual disk that
// syncs about a thousand writes a second would set the pace of the poison
// scenario, not Hookbus. A kill -9 leaves a tmpfs store as it leaves a
// disk's.
//
// Process logs go to a directory under the system's temporary directory,
// kept and named in the test log when a test fails.
package chaos
