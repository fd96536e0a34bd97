// adapter.mjs is the conformance adapter of the Node.js SDK
// (@hookbus/client, sdks/node, built): see e2e/adapters/ADAPTER.md for the
// protocol it speaks on stdin and stdout.
import { createInterface } from "node:readline";
import { connect } from "nats";
import { Client, continueWith, halt, permanent } from "@hookbus/client";

const nc = await connect({ servers: process.env.HOOKBUS_NATS_URL, maxReconnectAttempts: -1 });
const client = new Client(nc);
const report = (r) => process.stdout.write(JSON.stringify(r) + "\n");
const now = () => Date.now();
const sleep = (ms, signal) =>
  new Promise((resolve) => {
    if (!ms) return resolve();
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });

let abort;
let serving;

function plugin(spec) {
  const name = spec.name;
  if (spec.mode === "notify") {
    return {
      spec,
      notify: async (d) => {
        const b = d.event.data?.b ?? {};
        report({ report: "start", plugin: name, id: d.event.id, attempt: d.attempt, step: 0, t_ms: now() });
        let outcome = "ok";
        try {
          if (b.fail === "always") throw new Error(`fail ${d.attempt}`);
          if (b.fail === "permanent") throw permanent(new Error(`permanent failure at ${d.attempt}`));
          if (d.attempt < (b.fail_until ?? 0)) throw new Error(`fail ${d.attempt}`);
          if (b.hang_at === d.attempt) await sleep(600_000, d.signal);
          await sleep(b.sleep_ms, d.signal);
        } catch (err) {
          outcome = "fail";
          throw err;
        } finally {
          report({ report: "end", plugin: name, id: d.event.id, attempt: d.attempt, outcome, t_ms: now() });
        }
      },
    };
  }
  return {
    spec,
    chain: async (s) => {
      const state = s.event.data && typeof s.event.data === "object" ? { ...s.event.data } : {};
      const b = state.b ?? {};
      report({ report: "start", plugin: name, id: s.event.id, attempt: s.attempt, step: s.number, t_ms: now() });
      let outcome = "ok";
      try {
        await sleep(b.sleep_ms, s.signal);
        Object.assign(state, b.set ?? {});
        if (b.act === "halt") return halt(state);
        if (b.act === "error") {
          outcome = "fail";
          throw new Error(b.msg);
        }
        return continueWith(state);
      } finally {
        report({ report: "end", plugin: name, id: s.event.id, attempt: s.attempt, outcome, t_ms: now() });
      }
    },
  };
}

for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const cmd = JSON.parse(line);
  switch (cmd.cmd) {
    case "hello":
      report({ report: "hello", sdk: "node", features: { chain: true, notify: true, progress: true, concurrency: true, drain: true } });
      break;
    case "serve": {
      abort = new AbortController();
      serving = client.serve(plugin(cmd.plugin), {
        signal: abort.signal,
        concurrency: cmd.concurrency || undefined,
        drainTimeoutMs: cmd.drain_timeout_ms || undefined,
        logger: { warn: (m, f) => console.error(m, f ?? ""), error: (m, f) => console.error(m, f ?? "") },
      });
      serving.catch((err) => console.error("serve:", err));
      break;
    }
    case "stop": {
      let error = "";
      if (abort) {
        abort.abort();
        try {
          await serving;
        } catch (err) {
          error = String(err?.message ?? err);
        }
      }
      report({ report: "stopped", error });
      await nc.close();
      process.exit(0);
    }
    default:
      console.error(`unknown command ${cmd.cmd}`);
      process.exit(2);
  }
}
