// Publish, publisher, batch and call against a real hookbus serve.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Client, HookbusError, ValidationError } from "../dist/index.js";
import { startHookbus, useHookbus } from "./server.mjs";

const ctx = useHookbus(before, after, Client);

const ev = (id, data = { n: 1 }, type = "com.example.order.created") => ({ id, source: "/node-test", type, data });

async function stored(subject) {
  const jsm = await ctx.nc.jetstreamManager();
  const info = await jsm.streams.info("HOOKBUS_EVENTS", { subjects_filter: subject });
  return info.state.subjects?.[subject] ?? 0;
}

test("publish stores once: a retry with the same source and id is a duplicate", async () => {
  const a = await ctx.client.publish(ev("p-1"));
  assert.equal(a.stream, "HOOKBUS_EVENTS");
  assert.equal(a.duplicate, false);
  const b = await ctx.client.publish(ev("p-1"));
  assert.equal(b.duplicate, true);
  assert.equal(b.seq, a.seq);
  const s = await ctx.client.publish(ev("p-2"), { structured: true });
  assert.equal(s.duplicate, false);
  const js = ctx.nc.jetstream();
  const m = await (await ctx.nc.jetstreamManager()).streams.getMessage("HOOKBUS_EVENTS", { seq: s.seq });
  assert.equal(m.header.get("content-type"), "application/cloudevents+json");
  assert.ok(js);
});

test("an invalid event is refused before anything is sent", async () => {
  const before = await stored("hookbus.event.com.example.bad");
  await assert.rejects(ctx.client.publish({ id: "x", source: "/a b", type: "com.example.bad" }), (e) => e instanceof ValidationError && e.code === "invalid" && e.field === "source");
  await assert.rejects(ctx.client.publish({ id: "x", source: "/s", type: "com.example.bad", "my-ext": 1 }), (e) => e.code === "invalid");
  assert.equal(await stored("hookbus.event.com.example.bad"), before);
});

test("an aborted signal ends a publish with code aborted", async () => {
  const ac = new AbortController();
  ac.abort(new Error("bye"));
  await assert.rejects(ctx.client.publish(ev("p-abort"), { signal: ac.signal }), (e) => e instanceof HookbusError && e.code === "aborted");
});

test("a publisher stores 10 000 events, every one acknowledged", async () => {
  const p = ctx.client.publisher({ window: 128 });
  let settled = 0;
  const p2 = ctx.client.publisher({ onAck: () => settled++ });
  const acks = [];
  for (let i = 0; i < 10_000; i++) acks.push((await p.publish(ev(`pub-${i}`, { i }, "com.example.bulk"))).ack);
  assert.ok(p.pending <= 128);
  await p.close();
  const got = await Promise.all(acks);
  assert.equal(new Set(got.map((a) => a.seq)).size, 10_000);
  assert.deepEqual(p.stats(), { published: 10_000, duplicates: 0, failed: 0 });
  assert.equal(await stored("hookbus.event.com.example.bulk"), 10_000);
  await assert.rejects(p.publish(ev("late")), (e) => e.code === "publisher_closed");
  await (await p2.publish(ev("pub-0", { i: 0 }, "com.example.bulk"))).ack.then((a) => assert.equal(a.duplicate, true));
  await p2.close();
  assert.equal(settled, 1);
});

test("a batch is stored all or nothing; one already stored refuses it whole", async () => {
  const ack = await ctx.client.publishBatch([ev("b-1", {}, "com.example.batch"), ev("b-2", {}, "com.example.batch"), ev("b-3", {}, "com.example.batch")]);
  assert.equal(ack.count, 3);
  await assert.rejects(ctx.client.publishBatch([ev("b-4", {}, "com.example.batch"), ev("b-1", {}, "com.example.batch")]), (e) => e.code === "batch_duplicate" && /nothing of the batch was stored/.test(e.message));
  assert.equal(await stored("hookbus.event.com.example.batch"), 3);
  await assert.rejects(ctx.client.publishBatch([ev("b-5", {}, "com.example.batch"), { id: "", source: "/s", type: "t" }]), (e) => e.code === "invalid" && /batch event 1/.test(e.message));
  await assert.rejects(ctx.client.publishBatch([]), (e) => e.code === "invalid");
});

test("call: a type without chain plugins answers the state unchanged; private fields are sent", async () => {
  const r = await ctx.client.call(ev("c-1", { user: "u1", x: 1 }, "com.example.nochain"), { private: ["user"] });
  assert.deepEqual(r.state, { user: "u1", x: 1 });
  assert.deepEqual(r.trace, []);
  assert.equal(r.event_id, "c-1");
  await assert.rejects(ctx.client.call(ev("c-2", {}, "com.example.x"), { private: ["a,b"] }), (e) => e.code === "invalid");
});

test("no stream: not_stored once the time is up; no dispatcher: no_dispatcher", async () => {
  // A Hookbus with the registry alone (no dispatcher), HOOKBUS_EVENTS deleted.
  const hb2 = await startHookbus({ extraArgs: ["registry"] });
  const nc2 = await hb2.connect();
  try {
    const jsm = await nc2.jetstreamManager();
    await jsm.streams.delete("HOOKBUS_EVENTS");
    const c2 = new Client(nc2, { timeoutMs: 1500, retryWaitMs: 200 });
    const t0 = Date.now();
    await assert.rejects(c2.publish(ev("ns-1")), (e) => e.code === "not_stored" && /not stored after \d+ attempt/.test(e.message));
    assert.ok(Date.now() - t0 < 5000);
    await assert.rejects(c2.call(ev("nd-1", {}, "com.example.x")), (e) => e.code === "no_dispatcher");
  } finally {
    await nc2.close();
    await hb2.stop();
  }
});

test("a publish waits out a Hookbus restart and is stored once", { timeout: 120_000 }, async () => {
  const hb2 = await startHookbus();
  const nc2 = await hb2.connect({ maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  try {
    const c2 = new Client(nc2, { timeoutMs: 60_000, retryWaitMs: 300 });
    await c2.publish(ev("r-0"));
    await hb2.kill(); // kill -9: nothing answers now
    const pending = c2.publish(ev("r-1"));
    await new Promise((r) => setTimeout(r, 1500));
    await hb2.restart(); // same ports, same data
    const ack = await pending;
    assert.equal(ack.duplicate, false);
    const again = await c2.publish(ev("r-1"));
    assert.equal(again.duplicate, true, "the retried event is stored once");
    assert.equal(again.seq, ack.seq);
  } finally {
    await nc2.close();
    await hb2.stop();
  }
});
