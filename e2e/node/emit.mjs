// emit.mjs sends one CloudEvent to the Hookbus HTTP gateway with the npm
// cloudevents package's own HTTP emitter (emitterFor(httpTransport(url))),
// the way a Node.js producer that knows nothing of Hookbus or NATS would.
// It prints the gateway's answer as one JSON line on stdout:
// {"contentType": ..., "body": ...} (the package's transport does not
// report the status code; the body tells a 202 from a problem).
//
//   node emit.mjs --url http://127.0.0.1:8080/events --mode binary \
//     --event '{"id":"n-1","source":"/e2e/npm","type":"com.example.interop","data":{"n":1}}' \
//     [--header 'Authorization: Bearer ...']
//
// --event holds the attributes and the data of a CloudEvent (what the
// package's CloudEvent constructor takes); --mode is binary or structured.
// Exit status: 0 answered (whatever the answer), 1 anything else, with the
// reason on stderr.
import { parseArgs } from "node:util";
import { CloudEvent, emitterFor, httpTransport, Mode } from "cloudevents";

async function main() {
  const { values: opts } = parseArgs({
    options: {
      url: { type: "string" },
      mode: { type: "string", default: "binary" },
      event: { type: "string" },
      header: { type: "string", multiple: true, default: [] },
    },
  });
  if (!opts.url || !opts.event) throw new Error("--url and --event are required");
  const modes = { binary: Mode.BINARY, structured: Mode.STRUCTURED };
  const mode = modes[opts.mode];
  if (mode === undefined) throw new Error(`--mode ${opts.mode}: want binary or structured`);
  const headers = {};
  for (const h of opts.header) {
    const i = h.indexOf(":");
    if (i < 1) throw new Error(`--header ${h}: want "Name: value"`);
    headers[h.slice(0, i).trim()] = h.slice(i + 1).trim();
  }

  const event = new CloudEvent(JSON.parse(opts.event));
  const emit = emitterFor(httpTransport(opts.url), { mode });
  const resp = await emit(event, { headers });
  process.stdout.write(JSON.stringify({ contentType: resp.headers["content-type"] ?? "", body: resp.body }) + "\n");
}

main().catch((err) => {
  process.stderr.write(`emit.mjs: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
