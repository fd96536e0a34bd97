// plugin.mjs is a Hookbus chain plugin in Node.js, written from
// docs/protocol.md alone with the npm "nats" package (2.29.x): no Hookbus
// library. For every call of its event it appends its name to the "visited"
// list of the state (with --halt it also ends the chain there).
//
//   npm ci && node plugin.mjs --nats-url nats://127.0.0.1:4222 \
//     --name greeter-node --event com.example.greeting --priority 20
//
// With NATS users (docs/security.md), it connects as HOOKBUS_NATS_USER with
// HOOKBUS_NATS_PASSWORD (what `hookbus plugin credentials NAME` prints) and
// reads its replies under its own inbox prefix _INBOX.<user>.
//
// What it does, in protocol terms:
//   1. subscribes to hookbus.plugin.<name>.call in queue group <name> (chain
//      steps: a CloudEvent whose data is the current state; the answer is
//      {"action":"continue"|"halt","state":...} or {"error":"..."});
//   2. registers and starts the plugin by publishing command CloudEvents to
//      hookbus.cmd.plugin.register.<name>.<event> / .start.<name> with a
//      Hookbus-Reply-To header naming hookbus.answer.plugin.<name>.<id>, and
//      reads the registry's answers there (--no-register skips this, for
//      when an operator registers it with `hookbus plugin register/start`);
//   3. prints "plugin <name> ready (<status>)" and serves until SIGINT or
//      SIGTERM, then drains: steps already received are answered.
import { createHash, randomUUID } from "node:crypto";
import { parseArgs } from "node:util";
import { connect, headers, Match } from "nats";

const { values: opts } = parseArgs({
  options: {
    "nats-url": { type: "string", default: "nats://127.0.0.1:4222" },
    name: { type: "string", default: "greeter-node" },
    event: { type: "string", default: "com.example.greeting" },
    priority: { type: "string", default: "20" },
    halt: { type: "boolean", default: false },
    "no-register": { type: "boolean", default: false },
  },
});
const name = opts.name;
const source = "/examples/node-plugin";
const enc = new TextEncoder();
const dec = new TextDecoder();

// msgID is the JetStream deduplication id Hookbus uses: lowercase hex
// SHA-256 of "<byte length of source>:<source><id>".
function msgID(source, id) {
  return createHash("sha256")
    .update(`${Buffer.byteLength(source, "utf8")}:${source}${id}`, "utf8")
    .digest("hex");
}

// header reads a header, its name compared without regard to case.
function header(h, key) {
  return h ? h.get(key, Match.IgnoreCase) : "";
}

// readEvent reads a CloudEvent from a NATS message in either content mode.
function readEvent(msg) {
  const h = msg.headers;
  const contentType = header(h, "content-type").toLowerCase();
  const body = dec.decode(msg.data);
  const headerless = !h || h.keys().length === 0;
  if (contentType.startsWith("application/cloudevents+json") || (headerless && body.trim().startsWith("{"))) {
    const ev = JSON.parse(body);
    if (ev.specversion !== "1.0") throw new Error(`specversion ${ev.specversion}: want 1.0`);
    return { id: ev.id, source: ev.source, type: ev.type, data: ev.data ?? null };
  }
  if (header(h, "ce-specversion") !== "1.0") throw new Error("not a CloudEvent");
  const pct = (s) => { try { return decodeURIComponent(s); } catch { return s; } };
  const isJSON = contentType === "" || contentType.startsWith("application/json") || contentType.includes("+json");
  return {
    id: pct(header(h, "ce-id")),
    source: header(h, "ce-source"),
    type: pct(header(h, "ce-type")),
    data: body.length === 0 ? null : isJSON ? JSON.parse(body) : body,
  };
}

// step is the plugin itself: the state in, the answer out.
function step(msg) {
  let ev;
  try {
    ev = readEvent(msg);
  } catch (err) {
    return { error: `invalid step request: ${err.message}` };
  }
  const state = ev.data ?? {};
  if (typeof state !== "object" || Array.isArray(state)) {
    return { error: "state is not a JSON object" };
  }
  state.visited = [...(Array.isArray(state.visited) ? state.visited : []), name];
  return { action: opts.halt ? "halt" : "continue", state };
}

const user = process.env.HOOKBUS_NATS_USER;
const nc = await connect({
  servers: opts["nats-url"],
  name,
  maxReconnectAttempts: -1,
  // A NATS user reads only its own part of _INBOX (docs/security.md).
  ...(user ? { user, pass: process.env.HOOKBUS_NATS_PASSWORD, inboxPrefix: `_INBOX.${user}` } : {}),
});
const js = nc.jetstream();

// command sends a plugin command and returns the registry's answer
// ({"plugins": [...]} or {"plugins": null, "error": {"code", "message"}}).
async function command(op, data) {
  const id = randomUUID();
  // The answer's subject names the plugin: only users allowed to command
  // it may read it, and the registry answers nowhere else.
  const answerTo = `hookbus.answer.plugin.${name}.${id}`;
  const answers = nc.subscribe(answerTo, { max: 1, timeout: 15000 });
  const type = `hookbus.cmd.plugin.${op}`;
  const h = headers();
  h.set("ce-specversion", "1.0");
  h.set("ce-id", id);
  h.set("ce-source", source);
  h.set("ce-type", type);
  h.set("ce-time", new Date().toISOString());
  h.set("content-type", "application/json");
  h.set("Hookbus-Reply-To", answerTo);
  h.set("Nats-Msg-Id", msgID(source, id));
  // hookbus.cmd.plugin.<op>.<name>; a register names the event too, which
  // NATS permissions may limit (docs/security.md).
  const subject = op === "register" ? `${type}.${name}.${data.plugin.event}` : `${type}.${name}`;
  await js.publish(subject, enc.encode(JSON.stringify(data)), { headers: h, expect: { streamName: "HOOKBUS_COMMANDS" } });
  for await (const m of answers) {
    return JSON.parse(dec.decode(m.data));
  }
  throw new Error(`${op}: no answer from the registry`);
}

// 1. Answer chain steps; subscribe before starting, so that no step finds
// nobody.
const steps = nc.subscribe(`hookbus.plugin.${name}.call`, {
  queue: name,
  callback: (err, msg) => {
    if (err) {
      console.error(`subscription: ${err.message}`);
      return;
    }
    // Steps come only from the dispatcher, which asks from its inbox; a
    // message a JetStream push consumer delivers has a $JS.ACK. reply and
    // is not a step (docs/security.md).
    if (!msg.reply || !msg.reply.startsWith("_INBOX.")) {
      console.error(`step refused: reply subject ${msg.reply || "(none)"} is not an inbox`);
      return;
    }
    msg.respond(enc.encode(JSON.stringify(step(msg))));
  },
});
await nc.flush();

// 2. Register (an upsert by name) and start.
let status = "registered (by an operator)";
if (!opts["no-register"]) {
  const plugin = { name, event: opts.event, priority: Number(opts.priority), owner: "examples", version: "1.0.0" };
  const reg = await command("register", { plugin });
  if (reg.error) throw new Error(`register: ${reg.error.code}: ${reg.error.message}`);
  status = reg.plugins[0].status;
  if (status === "registered") {
    const st = await command("start", { name });
    if (st.error && st.error.code !== "dependency_not_running" && st.error.code !== "stopped") {
      throw new Error(`start: ${st.error.code}: ${st.error.message}`);
    }
    status = st.error ? `registered, not started: ${st.error.message}` : st.plugins[0].status;
  }
}
console.log(`plugin ${name} ready (${status})`);

// 3. Serve until a signal, then drain.
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, async () => {
    await steps.drain();
    await nc.drain();
  });
}
await nc.closed();
