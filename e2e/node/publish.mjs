// publish.mjs publishes one CloudEvent to Hookbus from Node.js, the way a
// producer in another language would: structured mode (content-type
// application/cloudevents+json, the JSON event format as the body) through
// JetStream, with Nats-Msg-Id computed as pkg/events.MsgID documents. It
// prints the PubAck as one JSON line on stdout, plus the msgId it sent.
//
//   node publish.mjs --server nats://127.0.0.1:4222 --type com.example.order.created \
//     --source /e2e/node --id node-1 --data '{"n":2}'
//
// Exit status: 0 stored (or recognised as a duplicate), 1 anything else,
// with the reason on stderr.
import { createHash } from "node:crypto";
import { parseArgs } from "node:util";
import { connect, headers } from "nats";

// msgID mirrors events.MsgID: lowercase hex SHA-256 of
// "<byte length of source>:<source><id>". The length is in UTF-8 bytes, not
// JavaScript string units, so a non-ASCII source hashes as in Go.
export function msgID(source, id) {
  return createHash("sha256")
    .update(`${Buffer.byteLength(source, "utf8")}:${source}${id}`, "utf8")
    .digest("hex");
}

async function main() {
  const { values: opts } = parseArgs({
    options: {
      server: { type: "string", default: "nats://127.0.0.1:4222" },
      type: { type: "string" },
      source: { type: "string" },
      id: { type: "string" },
      data: { type: "string", default: "{}" },
      timeout: { type: "string", default: "5000" },
    },
  });
  for (const name of ["type", "source", "id"]) {
    if (!opts[name]) throw new Error(`--${name} is required`);
  }

  const event = {
    specversion: "1.0",
    id: opts.id,
    source: opts.source,
    type: opts.type,
    datacontenttype: "application/json",
    time: new Date().toISOString(),
    data: JSON.parse(opts.data),
  };
  const h = headers();
  h.set("content-type", "application/cloudevents+json");
  const id = msgID(event.source, event.id);
  h.set("Nats-Msg-Id", id);

  const nc = await connect({ servers: opts.server, name: "hookbus-e2e-node" });
  try {
    const js = nc.jetstream();
    const ack = await js.publish(
      `hookbus.event.${event.type}`,
      new TextEncoder().encode(JSON.stringify(event)),
      { headers: h, timeout: Number(opts.timeout), expect: { streamName: "HOOKBUS_EVENTS" } },
    );
    process.stdout.write(
      JSON.stringify({ stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate, msgId: id }) + "\n",
    );
  } finally {
    await nc.drain();
  }
}

main().catch((err) => {
  process.stderr.write(`publish.mjs: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
