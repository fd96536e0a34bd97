// npm pack produces a package that installs in a fresh folder and runs the
// README's 10-line worker against a real hookbus serve.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { startHookbus } from "./server.mjs";

const pkgDir = join(dirname(fileURLToPath(import.meta.url)), "..");

// readmeWorker is the code block under "A worker in 10 lines".
function readmeWorker() {
  const readme = readFileSync(join(pkgDir, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("## A worker in 10 lines"));
  const m = /```js\n([\s\S]*?)```/.exec(section);
  assert.ok(m, "README has the worker's code block");
  return m[1];
}

test("the packed tarball installs in a fresh folder and runs the README's worker", { timeout: 240_000 }, async () => {
  const code = readmeWorker();
  assert.ok(code.trim().split("\n").length <= 10, "the worker is 10 lines at most");
  const dir = mkdtempSync(join(process.env.TMPDIR || tmpdir(), "hookbus-pack-"));
  const hb = await startHookbus();
  let worker;
  try {
    const out = execFileSync("npm", ["pack", "--pack-destination", dir, "--silent"], { cwd: pkgDir, encoding: "utf8" });
    const tarball = join(dir, out.trim().split("\n").pop());
    const app = join(dir, "app");
    execFileSync("mkdir", ["-p", app]);
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
    execFileSync("npm", ["install", "--no-audit", "--no-fund", "nats@2.29.3", tarball], { cwd: app, stdio: "pipe" });
    writeFileSync(join(app, "worker.mjs"), code);
    worker = spawn("node", ["worker.mjs"], { cwd: app, env: { ...process.env, NATS_URL: hb.natsUrl }, stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    worker.stderr.on("data", (b) => (stderr += b));
    const exited = new Promise((r) => worker.on("exit", (code) => r(code)));
    const nc = await hb.connect();
    try {
      const { Client } = await import(join(app, "node_modules", "@hookbus", "client", "dist", "index.js"));
      const client = new Client(nc);
      let state;
      for (let i = 0; i < 150 && !state?.greeted; i++) {
        const r = await client.call({ id: `pack-${i}`, source: "/pack-test", type: "com.example.greeting", data: { name: "ada" } });
        state = r.state;
        if (!state.greeted) await new Promise((r) => setTimeout(r, 100));
      }
      assert.deepEqual(state, { name: "ada", greeted: true }, stderr);
    } finally {
      await nc.close();
    }
    // It drains and exits at once: no timer of the SDK keeps the process up.
    const t0 = Date.now();
    worker.kill("SIGTERM");
    assert.equal(await exited, 0, stderr);
    assert.ok(Date.now() - t0 < 5000, `the worker took ${Date.now() - t0} ms to exit after SIGTERM`);
  } finally {
    worker?.kill("SIGKILL");
    await hb.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
