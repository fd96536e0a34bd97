// serve: chain and notify workers against a real hookbus serve. The
// protocol's delivery table is also checked, for this SDK and the Go one,
// by the conformance suite (e2e/conformance_test.go).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Client, continueWith, halt, permanent } from "../dist/index.js";
import { startHookbus, waitFor, useHookbus } from "./server.mjs";

const ctx = useHookbus(before, after, Client);


const running = (name) => async () => ["started", "restarted"].includes((await ctx.client.get(name).catch(() => undefined))?.status);

test("a chain of two workers: continue, halt, error, private fields, a null state", async () => {
  const ac = new AbortController();
  const first = ctx.client.serve(
    { spec: { name: "first", event: "com.example.greeting", priority: 10 }, chain: (s) => {
      const st = s.event.data ?? {}; // the first step of a call without data gets null
      if (st.fail) throw new Error("first failed");
      return (st.stop ? halt : continueWith)({ ...st, visited: [...(st.visited ?? []), "first"], user: "changed" });
    } },
    { signal: ac.signal },
  );
  const second = ctx.client.serve({ spec: { name: "second", event: "com.example.greeting", priority: 20 }, chain: (s) => continueWith({ ...s.event.data, visited: [...s.event.data.visited, "second"], step: s.number }) }, { signal: ac.signal });
  try {
    await waitFor(running("first"));
    await waitFor(running("second"));
    const call = (id, data, opts) => ctx.client.call({ id, source: "/node-test", type: "com.example.greeting", data }, opts);
    let r;
    await waitFor(async () => (r = await call(`g-${Date.now()}`, { user: "u1" }, { private: ["user"] })).trace.length === 2);
    assert.deepEqual(r.state, { user: "u1", visited: ["first", "second"], step: 2 });
    r = await call("g-halt", { stop: true });
    assert.equal(r.halted, true);
    assert.equal(r.halted_by, "first");
    r = await call("g-fail", { fail: true });
    assert.equal(r.trace[0].outcome, "skipped");
    assert.equal(r.trace[0].error, "first failed");
    r = await call("g-null", undefined);
    assert.deepEqual(r.state.visited, ["first", "second"]);
  } finally {
    ac.abort();
    await Promise.all([first, second]);
  }
});

test("notify: retried after its backoff, dead-lettered at max_deliver or at once when permanent", async () => {
  const ac = new AbortController();
  const runs = new Map();
  const served = ctx.client.serve(
    { spec: { name: "notifier", event: "com.example.note", settings: { max_deliver: 3, backoff_ms: [200] } }, notify: async (d) => {
      runs.set(d.event.id, [...(runs.get(d.event.id) ?? []), d.attempt]);
      assert.equal(d.maxDeliver, 3);
      if (d.event.data.mode === "flaky" && d.attempt < 2) throw new Error("flaky");
      if (d.event.data.mode === "broken") throw new Error("broken");
      if (d.event.data.mode === "permanent") throw permanent(new Error("bad payload"));
    } },
    { signal: ac.signal },
  );
  try {
    await waitFor(running("notifier"));
    const pub = (id, mode) => ctx.client.publish({ id, source: "/node-test", type: "com.example.note", data: { mode } });
    await pub("ok", "ok");
    await pub("flaky", "flaky");
    const broken = await pub("broken", "broken");
    const perm = await pub("permanent", "permanent");
    await waitFor(async () => runs.get("ok")?.length === 1 && runs.get("flaky")?.length === 2 && runs.get("broken")?.length === 3 && runs.get("permanent")?.length === 1);
    const reasons = new Map();
    await waitFor(async () => {
      for await (const d of ctx.client.deadLetters("notifier")) reasons.set(d.streamSeq, d.reason);
      return reasons.size === 2;
    });
    assert.equal(reasons.get(broken.seq), "broken");
    assert.equal(reasons.get(perm.seq), "bad payload");
    assert.deepEqual(runs.get("flaky"), [1, 2]);
  } finally {
    ac.abort();
    await served;
  }
});

test("lifecycle: a stopped plugin takes nothing until enabled; callbacks see every change", async () => {
  const ac = new AbortController();
  const changes = [];
  const seen = [];
  const served = ctx.client.serve(
    {
      spec: { name: "switchable", event: "com.example.switch", settings: { backoff_ms: [1000] } },
      notify: (d) => void seen.push(d.event.id),
      onStart: (p) => changes.push(`start:${p.status}`),
      onStop: (p) => changes.push(`stop:${p.status}`),
    },
    { signal: ac.signal, concurrency: 2 },
  );
  try {
    await waitFor(running("switchable"));
    await ctx.client.stop("switchable");
    await waitFor(async () => changes.includes("stop:stopped"));
    await ctx.client.publish({ id: "while-stopped", source: "/node-test", type: "com.example.switch", data: {} });
    await new Promise((r) => setTimeout(r, 1500));
    assert.deepEqual(seen, [], "a stopped plugin pulls nothing");
    await ctx.client.enable("switchable");
    await waitFor(async () => seen.includes("while-stopped"));
    assert.ok(changes.includes("start:started"), changes.join(","));
  } finally {
    ac.abort();
    await served;
  }
});

test("drain: a running handler finishes and is acknowledged; the exit action applies", async () => {
  const ac = new AbortController();
  let started;
  const startedP = new Promise((r) => (started = r));
  let finished = false;
  const served = ctx.client.serve(
    { spec: { name: "drainer", event: "com.example.drain", settings: { backoff_ms: [5000] } }, notify: async () => {
      started();
      await new Promise((r) => setTimeout(r, 800));
      finished = true;
    } },
    { signal: ac.signal, exitAction: "stop" },
  );
  await waitFor(running("drainer"));
  await ctx.client.publish({ id: "slow", source: "/node-test", type: "com.example.drain", data: {} });
  await startedP;
  ac.abort();
  await served;
  assert.equal(finished, true);
  assert.equal((await ctx.client.get("drainer")).status, "stopped");
  const info = await (await ctx.nc.jetstreamManager()).consumers.info("HOOKBUS_EVENTS", "notify-drainer");
  assert.equal(info.num_ack_pending, 0);
  assert.equal(info.num_pending, 0);
});

test("serve refuses an invalid plugin", async () => {
  await assert.rejects(ctx.client.serve({ spec: { name: "x", event: "e" } }), (e) => e.code === "invalid" && /exactly one of chain and notify/.test(e.message));
  await assert.rejects(ctx.client.serve({ spec: { name: "bad name", event: "e" }, chain: () => continueWith() }), (e) => e.code === "invalid");
  await assert.rejects(ctx.client.serve({ spec: { name: "x", event: "e", mode: "notify" }, chain: () => continueWith() }), (e) => e.code === "invalid");
  await assert.rejects(ctx.client.serve({ spec: { name: "x", event: "e" }, chain: () => continueWith() }, { concurrency: 0 }), (e) => e.code === "invalid");
});
