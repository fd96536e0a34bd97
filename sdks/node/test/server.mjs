// server.mjs starts a real `hookbus serve` for the tests: free loopback
// ports, a temp data dir, /readyz awaited with a deadline. The binary is
// $HOOKBUS_BIN, or the repository's bin/hookbus, built with `go build` when
// missing.
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { connect } from "nats";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const live = new Set();
process.on("exit", () => {
  for (const p of live) p.kill("SIGKILL");
});

/** hookbusBinary returns the binary the tests run, building it if needed. */
export function hookbusBinary() {
  if (process.env.HOOKBUS_BIN) return process.env.HOOKBUS_BIN;
  const bin = join(repo, "bin", "hookbus");
  if (!existsSync(bin)) {
    execFileSync("go", ["build", "-o", bin, "./cmd/hookbus"], { cwd: repo, stdio: "inherit", env: { ...process.env, CGO_ENABLED: "0" } });
  }
  return bin;
}

/** freePort returns a loopback port free at the time of asking. */
export function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.on("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

/**
 * startHookbus runs `hookbus serve` and resolves once it is ready, with
 * its URLs, its data dir and stop/kill/restart. extraArgs are added to
 * serve's flags, env to its environment.
 */
export async function startHookbus({ extraArgs = [], env = {}, readyTimeoutMs = 30_000 } = {}) {
  const dataDir = mkdtempSync(join(process.env.TMPDIR || tmpdir(), "hookbus-node-"));
  const bin = hookbusBinary();
  const s = { dataDir, natsUrl: "", opsUrl: "", gatewayUrl: "", proc: null, stderr: "" };
  let ports;
  async function spawnIt() {
    ports ??= [await freePort(), await freePort(), await freePort()];
    const [nats, ops, gw] = ports;
    s.natsUrl = `nats://127.0.0.1:${nats}`;
    s.opsUrl = `http://127.0.0.1:${ops}`;
    s.gatewayUrl = `http://127.0.0.1:${gw}`;
    const args = ["serve", "--nats-listen", `127.0.0.1:${nats}`, "--ops-addr", `127.0.0.1:${ops}`, "--gateway-addr", `127.0.0.1:${gw}`, "--data-dir", dataDir, ...extraArgs];
    const p = spawn(bin, args, { env: { PATH: process.env.PATH, HOME: process.env.HOME, TMPDIR: process.env.TMPDIR, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    s.proc = p;
    live.add(p);
    s.stderr = "";
    const keep = (b) => {
      s.stderr = (s.stderr + b.toString()).slice(-64 * 1024);
    };
    p.stdout.on("data", keep);
    p.stderr.on("data", keep);
    p.on("exit", () => live.delete(p));
    const deadline = Date.now() + readyTimeoutMs;
    for (;;) {
      if (p.exitCode !== null) throw new Error(`hookbus serve exited with ${p.exitCode}: ${s.stderr}`);
      try {
        const r = await fetch(`${s.opsUrl}/readyz`);
        if (r.status === 200) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        p.kill("SIGKILL");
        throw new Error(`hookbus serve not ready in ${readyTimeoutMs} ms: ${s.stderr}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  async function waitExit(p) {
    if (p.exitCode !== null || p.signalCode !== null) return;
    await new Promise((r) => p.once("exit", r));
  }
  await spawnIt();
  return Object.assign(s, {
    /** connect opens a NATS connection to it (closed by the caller). */
    connect: (opts = {}) => connect({ servers: s.natsUrl, ...opts }),
    /** stop ends it with SIGTERM (graceful) and removes its data. */
    async stop() {
      s.proc.kill("SIGTERM");
      await waitExit(s.proc);
      rmSync(dataDir, { recursive: true, force: true });
    },
    /** kill ends it with SIGKILL, keeping its data. */
    async kill() {
      s.proc.kill("SIGKILL");
      await waitExit(s.proc);
    },
    /** restart starts it again on the same ports and data (after kill). */
    async restart() {
      await spawnIt();
    },
  });
}

/** waitFor polls f (sync or async) until it is true, for ms at most. */
export async function waitFor(f, ms = 15_000) {
  const end = Date.now() + ms;
  for (;;) {
    if (await f()) return;
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * useHookbus gives a test file one hookbus serve for all its tests: it
 * starts it before them (with a NATS connection and a Client on it in
 * ctx) and stops it after them.
 */
export function useHookbus(before, after, Client, clientOptions = { timeoutMs: 10_000 }) {
  const ctx = {};
  before(async () => {
    ctx.hb = await startHookbus();
    ctx.nc = await ctx.hb.connect();
    ctx.client = new Client(ctx.nc, clientOptions);
  });
  after(async () => {
    await ctx.nc?.close();
    await ctx.hb?.stop();
  });
  return ctx;
}
