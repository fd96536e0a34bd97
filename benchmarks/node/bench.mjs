// bench.mjs measures the Node SDK (@hookbus/client) beside raw nats.js
// doing the same work, in interleaved rounds of one run, and prints one
// JSON line: {"sdk": events/s, "raw": events/s} (medians of the rounds).
// It is run by bench_test.go, which starts the server (and, for notify,
// the registry and the queues: notify-sdk-<run>-<round> and
// notify-raw-<run>-<round>, each with
// --events stored events).
//
//   node bench.mjs --server URL --mode publish|notify --events N --rounds R --window W --concurrency C
import { createHash } from "node:crypto";
import { parseArgs } from "node:util";
import { connect, headers } from "nats";
import { Client } from "@hookbus/client";

const { values: o } = parseArgs({
  options: {
    server: { type: "string" },
    mode: { type: "string", default: "publish" },
    run: { type: "string", default: "0" },
    events: { type: "string", default: "5000" },
    rounds: { type: "string", default: "3" },
    window: { type: "string", default: "256" },
    concurrency: { type: "string", default: "8" },
  },
});
const N = Number(o.events), rounds = Number(o.rounds), window = Number(o.window), concurrency = Number(o.concurrency);
const data = { user: "ada", amount: 42, note: "a typical small event" };
const type = "com.example.bench";
const enc = new TextEncoder();

const nc = await connect({ servers: o.server, name: "hookbus-bench-node" });
const js = nc.jetstream();
const client = new Client(nc);

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function sdkPublish(round) {
  const p = client.publisher({ window });
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    await p.publish({ specversion: "1.0", id: `sdk-${o.run}-${round}-${i}`, source: "/bench", type, datacontenttype: "application/json", data });
  }
  await p.flush();
  const dt = performance.now() - t0;
  await p.close();
  if (p.stats().published !== N) throw new Error(`sdk publisher: ${JSON.stringify(p.stats())}`);
  return (N * 1000) / dt;
}

// rawPublish: js.publish of the same binary-mode message (ce-* headers,
// content-type, Nats-Msg-Id as docs/protocol.md), at most `window` acks
// outstanding.
async function rawPublish(round) {
  const inflight = [];
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    const id = `raw-${o.run}-${round}-${i}`;
    const h = headers();
    h.set("ce-specversion", "1.0");
    h.set("ce-id", id);
    h.set("ce-source", "/bench");
    h.set("ce-type", type);
    h.set("content-type", "application/json");
    h.set("Nats-Msg-Id", createHash("sha256").update(`${Buffer.byteLength("/bench")}:/bench${id}`).digest("hex"));
    if (inflight.length >= window) await inflight.shift();
    inflight.push(js.publish(`hookbus.event.${type}`, enc.encode(JSON.stringify(data)), { headers: h }));
  }
  await Promise.all(inflight);
  return (N * 1000) / (performance.now() - t0);
}

async function sdkNotify(round) {
  const name = `sdk-${o.run}-${round}`;
  const ac = new AbortController();
  let n = 0, done;
  const all = new Promise((r) => (done = r));
  // The clock starts once the plugin is registered and started (onReady):
  // the raw side does not register anything either.
  let t0 = 0;
  const served = client.serve(
    { spec: { name, event: `bench.serve.${name}`, mode: "notify" }, notify: () => { if (++n === N) done(); } },
    { signal: ac.signal, concurrency, onReady: () => (t0 = performance.now()) },
  );
  served.catch(done);
  await all;
  const dt = performance.now() - t0;
  ac.abort();
  await served;
  return (N * 1000) / dt;
}

// rawNotify: a pull consumer read with consume (a prefetch as large as the
// worker's concurrency), acking each message.
async function rawNotify(round) {
  const c = await js.consumers.get("HOOKBUS_EVENTS", `notify-raw-${o.run}-${round}`);
  let n = 0;
  const t0 = performance.now();
  const msgs = await c.consume({ max_messages: concurrency });
  for await (const m of msgs) {
    m.ack();
    if (++n === N) break; // leaving the loop stops the consumer (awaiting msgs.close() after it never settles in nats.js 2.29)
  }
  const dt = performance.now() - t0;
  await nc.flush();
  return (N * 1000) / dt;
}

if (o.mode === "notify" && typeof client.serve !== "function") {
  await nc.close();
  console.log(JSON.stringify({ skip: "this build of @hookbus/client has no client.serve (sdks/node/src/worker.ts)" }));
  process.exit(0);
}
const [sdk, raw] = o.mode === "publish" ? [sdkPublish, rawPublish] : [sdkNotify, rawNotify];
const sdkR = [], rawR = [];
for (let r = 0; r < rounds; r++) {
  // Interleaved, the order swapped each round.
  if (r % 2 === 0) { sdkR.push(await sdk(r)); rawR.push(await raw(r)); }
  else { rawR.push(await raw(r)); sdkR.push(await sdk(r)); }
}
await nc.flush();
await nc.close();
console.log(JSON.stringify({ sdk: median(sdkR), raw: median(rawR), sdk_rounds: sdkR, raw_rounds: rawR }));
