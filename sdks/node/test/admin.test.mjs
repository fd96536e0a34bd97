// Plugin administration, dead letters and the auth store against a real
// hookbus serve.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Client } from "../dist/index.js";
import { startHookbus, waitFor, useHookbus } from "./server.mjs";

const ctx = useHookbus(before, after, Client);

test("plugin lifecycle: register, start, stop, enable, delete, unregister, get, list, apply", async () => {
  const p = await ctx.client.register({ name: "acl", event: "on_user_authorisation", priority: 10, settings: { on_error: "halt" } });
  assert.equal(p.status, "registered");
  assert.equal(p.mode, "chain");
  assert.equal(p.settings.on_error, "halt");
  assert.equal((await ctx.client.start("acl")).status, "started");
  assert.equal((await ctx.client.stop("acl")).status, "stopped");
  await assert.rejects(ctx.client.start("acl"), (e) => e.code === "stopped");
  assert.equal((await ctx.client.enable("acl")).status, "started");
  const audit = await ctx.client.register({ name: "audit", event: "on_user_authorisation", priority: 20, depends: [{ name: "acl" }] });
  assert.equal(audit.status, "registered");
  assert.equal((await ctx.client.get("audit")).name, "audit");
  const list = await ctx.client.list({ event: "on_user_authorisation" });
  assert.deepEqual(list.map((x) => x.name), ["acl", "audit"]);
  assert.equal((await ctx.client.delete("acl")).status, "registered");
  await assert.rejects(ctx.client.start("audit"), (e) => e.code === "dependency_not_running" && /acl/.test(e.message));
  const both = await ctx.client.apply("start", "on_user_authorisation");
  assert.deepEqual(both.map((x) => x.status).sort(), ["started", "started"]);
  await assert.rejects(ctx.client.register({ name: "acl", event: "on_user_authorisation", depends: [{ name: "audit" }] }), (e) => e.code === "cycle" && /acl/.test(e.message));
  assert.equal((await ctx.client.unregister("audit")).name, "audit");
  await assert.rejects(ctx.client.get("audit"), (e) => e.code === "not_found");
  await assert.rejects(ctx.client.register({ name: "hook-x", event: "e" }), (e) => e.code === "invalid" && /reserved/.test(e.message));
  await assert.rejects(ctx.client.register({ name: "ok", event: "a b" }), (e) => e.code === "invalid" && e.field === "type");
  await assert.rejects(ctx.client.register({ name: "pri", event: "e", priority: 500 }), (e) => e.code === "invalid" && /priority/.test(e.message));
});

test("a command stored while no registry answers: not_applied, and kept for a registry", async () => {
  const hb2 = await startHookbus({ extraArgs: ["persistence"] });
  const nc2 = await hb2.connect();
  try {
    const c2 = new Client(nc2);
    await assert.rejects(c2.register({ name: "late", event: "e.late" }, { timeoutMs: 1500 }), (e) => e.code === "not_applied" && /command seq \d+/.test(e.message));
    const info = await (await nc2.jetstreamManager()).streams.info("HOOKBUS_COMMANDS", { subjects_filter: "hookbus.cmd.plugin.register.late.e.late" });
    assert.equal(info.state.subjects?.["hookbus.cmd.plugin.register.late.e.late"], 1);
  } finally {
    await nc2.close();
    await hb2.stop();
  }
});

test("dead letters: listed with their reason, replayed to their subscriber alone", async () => {
  // An invalid event published on a chain type goes to the dispatcher's
  // dead letters; a notify plugin's come from its worker.
  const h = ctx.nc.jetstream();
  await h.publish("hookbus.event.com.example.poison", new TextEncoder().encode("not an event"), { msgID: "poison-1" });
  const ac = new AbortController();
  let runs = 0;
  const served = ctx.client.serve(
    { spec: { name: "mailer", event: "com.example.mail", settings: { max_deliver: 2, backoff_ms: [200] } }, notify: async (d) => {
      runs++;
      if (d.subject.startsWith("hookbus.event.")) throw new Error("smtp down");
    } },
    { signal: ac.signal },
  );
  try {
    await waitFor(async () => (await ctx.client.get("mailer").catch(() => undefined))?.status === "started");
    const ack = await ctx.client.publish({ id: "m-1", source: "/node-test", type: "com.example.mail", data: { to: "ada" } });
    let dl;
    await waitFor(async () => {
      for await (const d of ctx.client.deadLetters("mailer")) if (d.streamSeq === ack.seq) dl = d;
      return dl !== undefined;
    });
    assert.equal(dl.reason, "smtp down");
    assert.equal(dl.deliveries, 2);
    assert.equal(dl.subscriber, "mailer");
    assert.equal(dl.event.id, "m-1");
    assert.equal(dl.forged, undefined);
    // The replay reaches the worker (on hookbus.replay.mailer), which takes it.
    await ctx.client.replay(dl.seq);
    await waitFor(async () => runs === 3);
    await assert.rejects(ctx.client.replay(dl.seq), (e) => e.code === "not_found");
    // A forged dead letter (its header names another subscriber) is marked and not replayed.
    const fh = (await import("nats")).headers();
    fh.set("Hookbus-Dlq-Subscriber", "someone-else");
    fh.set("Hookbus-Dlq-Reason", "x");
    const f = await h.publish("hookbus.dlq.mailer", new Uint8Array(), { headers: fh });
    let forged;
    for await (const d of ctx.client.deadLetters("mailer")) if (d.seq === f.seq) forged = d;
    assert.match(forged.forged, /forged/);
    await assert.rejects(ctx.client.replay(f.seq), (e) => e.code === "not_replayable");
  } finally {
    ac.abort();
    await served;
  }
});

test("auth store: credentials with revisions, keys in batches, clear", async () => {
  const store = ctx.client.authStore("acme");
  await assert.rejects(store.loadCredentials(), (e) => e.code === "not_found");
  const r1 = await store.saveCredentialsIf(new TextEncoder().encode('{"me":{}}'), 0);
  await assert.rejects(store.saveCredentialsIf(new Uint8Array([1]), 0), (e) => e.code === "conflict");
  const creds = await store.loadCredentials();
  assert.equal(creds.revision, r1);
  assert.equal(new TextDecoder().decode(creds.value), '{"me":{}}');
  const r2 = await store.saveCredentials(new Uint8Array([9]));
  assert.ok(r2 > r1);
  await store.saveKeys({ "pre-key": { 1: new Uint8Array([1, 2, 3]), 2: new Uint8Array([4]) }, session: { "5511@s.whatsapp.net": new Uint8Array() } });
  const keys = await store.loadKeys("pre-key", ["1", "2", "3"]);
  assert.deepEqual([...keys.keys()].sort(), ["1", "2"]);
  assert.deepEqual(keys.get("1"), new Uint8Array([1, 2, 3]));
  await store.saveKeys({ "pre-key": { 2: null } });
  assert.deepEqual(await store.listKeys("pre-key"), ["1"]);
  assert.deepEqual(await store.listKeys("session"), ["5511@s.whatsapp.net"]);
  await store.deleteKeys("pre-key", ["1", "nope"]);
  assert.deepEqual(await store.listKeys("pre-key"), []);
  assert.equal(await store.clear(), 2);
  await assert.rejects(ctx.client.authStore("x").loadKeys("bad type", ["1"]), (e) => e.code === "invalid");
  const rot = await ctx.client.rotateAuthKeys();
  assert.equal(typeof rot.key_id, "string");
});

test("device pushes are stored; a bad device id is refused", async () => {
  const ack = await ctx.client.pushDevice("dev-1", { hello: "device" });
  assert.equal(ack.stream, "HOOKBUS_DEVICE_PUSHES");
  await ctx.client.stopDevice("dev-1", "maintenance");
  await assert.rejects(ctx.client.pushDevice("bad id", {}), (e) => e.code === "invalid");
});

