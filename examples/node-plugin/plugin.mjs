// plugin.mjs is a Hookbus chain plugin in Node.js on the SDK,
// @hookbus/client (sdks/node). For every call of its event it appends its
// name to the "visited" list of the state (with --halt it also ends the
// chain there).
//
//   npm ci && node plugin.mjs --nats-url nats://127.0.0.1:4222 \
//     --name greeter-node --event com.example.greeting --priority 20
//
// With NATS users (docs/security.md), it connects as HOOKBUS_NATS_USER with
// HOOKBUS_NATS_PASSWORD (what `hookbus plugin credentials NAME` prints) and
// reads its replies under its own inbox prefix _INBOX.<user>.
//
// client.serve does the protocol's work (docs/protocol.md "Plugin
// workers"): it subscribes to the plugin's chain steps, registers and
// starts the plugin (--no-register leaves that to an operator), prints
// "plugin <name> ready (<status>)" once it serves, and on SIGINT or SIGTERM
// drains: steps already received are answered, then it exits.
import { parseArgs } from "node:util";
import { connect } from "nats";
import { Client, continueWith, halt } from "@hookbus/client";

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

const user = process.env.HOOKBUS_NATS_USER;
const nc = await connect({
  servers: opts["nats-url"],
  name,
  maxReconnectAttempts: -1,
  // A NATS user reads only its own part of _INBOX (docs/security.md).
  ...(user ? { user, pass: process.env.HOOKBUS_NATS_PASSWORD, inboxPrefix: `_INBOX.${user}` } : {}),
});
const client = new Client(nc);

const stop = new AbortController();
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => stop.abort());

try {
  await client.serve(
    {
      spec: { name, event: opts.event, priority: Number(opts.priority), owner: "examples", version: "1.0.0" },
      // The plugin itself: the state in (null for a call without data), the answer out.
      chain: (step) => {
        const state = step.event.data ?? {};
        if (typeof state !== "object" || Array.isArray(state)) throw new Error("state is not a JSON object");
        state.visited = [...(Array.isArray(state.visited) ? state.visited : []), name];
        return opts.halt ? halt(state) : continueWith(state);
      },
    },
    {
      signal: stop.signal,
      register: !opts["no-register"],
      onReady: (p) => console.log(`plugin ${name} ready (${p.status})`),
      logger: { warn: (m, f) => console.error(m, f ?? ""), error: (m, f) => console.error(m, f ?? "") },
    },
  );
} finally {
  await nc.drain();
}
