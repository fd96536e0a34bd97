// The CloudEvents codec against the Go package's golden files and the
// rules of docs/protocol.md ("CloudEvents on NATS", "Validation").
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { headers } from "nats";
import { decode, encodeBinary, encodeStructured, msgId, percentDecode, percentEncode, validate, ValidationError } from "../dist/index.js";

const testdata = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "pkg", "events", "testdata");

// readMsg reads a message as the golden files hold it: header lines, a
// blank line, the body.
function readMsg(path) {
  const text = readFileSync(path, "utf8");
  const i = text.startsWith("\n") ? 0 : text.indexOf("\n\n");
  const h = headers();
  for (const line of text.slice(0, i).split("\n").filter(Boolean)) {
    const j = line.indexOf(": ");
    h.append(line.slice(0, j), line.slice(j + 2));
  }
  return { headers: h, body: text.slice(i === 0 ? 1 : i + 2).replace(/\n$/, "") };
}

function lines(h) {
  return h.keys().map((k) => `${k}: ${h.get(k)}`).sort();
}

const orderEvent = {
  id: "order-42",
  source: "/shop",
  type: "com.example.order.created",
  subject: "orders/42",
  time: new Date("2026-11-21T10:00:00.123Z"),
  dataschema: "https://example.com/schemas/order.json",
  datacontenttype: "application/json",
  tenant: "acme corp",
  traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
  data: { total: 12.5, items: ["book"] },
};

test("msgId: SHA-256 of <byte length of source>:<source><id>", () => {
  assert.equal(msgId("/shop", "order-42"), "034156ece92fdca7fd7dce00e495981afca176cf30a65d7af40553b86d0abce9");
  // The length is in bytes: a two-byte character counts twice.
  assert.notEqual(msgId("/é", "x"), msgId("/e", "x"));
  assert.notEqual(msgId("/a", "b/c"), msgId("/ab", "/c"));
});

test("binary mode: the bytes the Go codec pins (encode/binary.golden)", () => {
  const want = readMsg(join(testdata, "encode", "binary.golden"));
  const got = encodeBinary(orderEvent);
  assert.deepEqual(lines(got.headers), lines(want.headers));
  assert.equal(new TextDecoder().decode(got.data), want.body);
});

test("structured mode: the document the Go codec pins (encode/structured.golden)", () => {
  const want = readMsg(join(testdata, "encode", "structured.golden"));
  const got = encodeStructured(orderEvent);
  assert.deepEqual(lines(got.headers), lines(want.headers));
  assert.deepEqual(JSON.parse(new TextDecoder().decode(got.data)), JSON.parse(want.body));
});

test("decode: every message of decode/ and the encode goldens", () => {
  const want = {
    "binary_capitalised.msg": { id: "order-43", subject: "orders/43", tenant: "acme corp", time: "2026-11-21T11:00:00+01:00", data: { total: 7 } },
    "binary_uppercase.msg": { id: "order-44", datacontenttype: "text/plain", data: new TextEncoder().encode("forty-four") },
    "nats_pub_raw.msg": { id: "cli-7", source: "/cli", data: { n: 7 } },
    "node_publish_mjs.msg": { id: "node-1", source: "/e2e/node", data: { n: 2 } },
    "node_sdk_structured.msg": { id: "5d4e1b9a-6a2c-4a0e-9c7d-3f1e2b8a9c01", source: "urn:example:node", tenant: "acme", data: { total: 12.5 } },
  };
  for (const f of readdirSync(join(testdata, "decode"))) {
    const m = readMsg(join(testdata, "decode", f));
    const ev = decode(m.headers, new TextEncoder().encode(m.body));
    assert.equal(ev.type, "com.example.order.created", f);
    for (const [k, v] of Object.entries(want[f])) assert.deepEqual(ev[k], v, `${f}: ${k}`);
  }
  for (const f of ["binary.golden", "structured.golden"]) {
    const m = readMsg(join(testdata, "encode", f));
    const ev = decode(m.headers, new TextEncoder().encode(m.body));
    assert.equal(ev.tenant, "acme corp", f);
    assert.deepEqual(ev.data, orderEvent.data, f);
  }
});

test("percent-encoding: bytes outside printable ASCII, space, '\"' and '%'", () => {
  assert.equal(percentEncode("a b\"c%d"), "a%20b%22c%25d");
  assert.equal(percentEncode("nöde"), "n%C3%B6de");
  assert.equal(percentEncode("plain-id_1.2"), "plain-id_1.2");
  assert.equal(percentDecode("id", "n%C3%B6de"), "nöde");
  assert.equal(percentDecode("id", "100%"), "100%", "a literal % is kept as sent");
  assert.throws(() => percentDecode("id", "%FF"), /id: is not valid UTF-8/);
  const ev = decode(encodeBinary({ ...orderEvent, id: "order 42 ü" }).headers, new Uint8Array());
  assert.equal(ev.id, "order 42 ü");
});

test("decode refuses a header given twice, in two cases or both content types", () => {
  const h = headers();
  h.set("ce-specversion", "1.0");
  h.set("ce-id", "a");
  h.set("CE-ID", "b");
  h.set("ce-source", "/s");
  h.set("ce-type", "t");
  assert.throws(() => decode(h, new Uint8Array()), (e) => e instanceof ValidationError && e.field === "header ce-id");
  const h2 = headers();
  for (const [k, v] of [["ce-specversion", "1.0"], ["ce-id", "a"], ["ce-source", "/s"], ["ce-type", "t"], ["content-type", "application/json"], ["ce-datacontenttype", "application/json"]]) h2.set(k, v);
  assert.throws(() => decode(h2, new Uint8Array()), /datacontenttype: given twice/);
});

test("decode refuses what is not a CloudEvent, and batches", () => {
  assert.throws(() => decode(undefined, new TextEncoder().encode("hello")), /not a CloudEvent/);
  const h = headers();
  h.set("content-type", "application/cloudevents-batch+json");
  assert.throws(() => decode(h, new TextEncoder().encode("[]")), /not supported on NATS/);
  const h3 = headers();
  h3.set("ce-specversion", "0.3");
  assert.throws(() => decode(h3, new Uint8Array()), /specversion: "0.3" is not supported/);
});

test("validation: every rule of the table, with the field named", () => {
  const base = { id: "a", source: "/s", type: "t.x" };
  const cases = [
    [{ ...base, specversion: "0.3" }, "specversion", /"0.3" is not supported/],
    [{ ...base, id: "" }, "id", /required/],
    [{ ...base, id: " a" }, "id", /white space/],
    [{ ...base, id: "a\u0001" }, "id", /control character/],
    [{ ...base, id: "a\ud800" }, "id", /not valid UTF-8/],
    [{ ...base, source: "" }, "source", /required/],
    [{ ...base, source: "/e2e/nöde" }, "source", /send "\/e2e\/n%C3%B6de"/],
    [{ ...base, source: "/a b" }, "source", /send "\/a%20b"/],
    [{ ...base, source: "HTTP://x/y" }, "source", /send "http:\/\/x\/y"/],
    [{ ...base, type: "a b" }, "type", /contains ' '/],
    [{ ...base, type: "a..b" }, "type", /empty token/],
    [{ ...base, type: "a.>" }, "type", /contains '>'/],
    [{ ...base, type: "x".repeat(201) }, "type", /limit is 200/],
    [{ ...base, subject: " s" }, "subject", /white space/],
    [{ ...base, datacontenttype: "json" }, "datacontenttype", /not a media type/],
    [{ ...base, dataschema: "a b" }, "dataschema", /not a URI reference/],
    [{ ...base, time: "yesterday" }, "time", /not an RFC 3339 time/],
    [{ ...base, time: new Date("invalid") }, "time", /invalid Date/],
    [{ ...base, "my-ext": "v" }, "my-ext", /lowercase letters and digits/],
    [{ ...base, ext: { a: 1 } }, "ext", /strings, integers or booleans/],
    [{ ...base, data: "x".repeat(1 << 20) }, "size", /limit is 1048576/],
    [{ ...base, type: "on_user_authorisation", data: {} }, "data.user_id", /required/],
    [{ ...base, type: "on_user_authorisation", data: { user_id: "0f8fad5b-d9cb-469f-a165-70867728950e", ip: "1.2.3.4", endpoint: "web", module: "m", operation: "o" } }, "data.endpoint", /value "web" not one of html, api/],
    [{ ...base, type: "on_user_authorisation", data: { user_id: "x", ip: "1.2.3.4", endpoint: "api", module: "m", operation: "o" } }, "data.user_id", /at least 36 characters/],
    [{ ...base, type: "on_user_authorisation", datacontenttype: "text/plain", data: "x" }, "datacontenttype", /is not JSON/],
  ];
  for (const [ev, field, msg] of cases) {
    assert.throws(
      () => validate(ev),
      (e) => e instanceof ValidationError && e.code === "invalid" && e.field === field && msg.test(e.message) && e.message.startsWith("invalid event: "),
      `${field}: ${JSON.stringify(ev).slice(0, 120)}`,
    );
  }
  validate(base);
  validate({ ...base, type: "on_user_authorisation", data: { user_id: "0f8fad5b-d9cb-469f-a165-70867728950e", ip: "1.2.3.4", endpoint: "api", module: "m", operation: "o" } });
  validate({ ...base, source: "/a%20b", count: 3, flag: true, time: "2026-11-21T10:00:00Z", data: new Uint8Array([1, 2]) });
});

test("data: JSON values, bytes, and text of another content type", () => {
  const bin = encodeBinary({ id: "b", source: "/s", type: "t", data: new Uint8Array([0, 255]) });
  assert.equal(bin.headers.get("content-type"), "application/octet-stream");
  assert.deepEqual(decode(bin.headers, bin.data).data, new Uint8Array([0, 255]));
  const text = encodeBinary({ id: "t", source: "/s", type: "t", datacontenttype: "text/plain", data: "héllo" });
  assert.equal(new TextDecoder().decode(text.data), "héllo");
  const nul = encodeBinary({ id: "n", source: "/s", type: "t", data: null });
  assert.equal(new TextDecoder().decode(nul.data), "null");
  assert.equal(decode(nul.headers, nul.data).data, null);
  const st = encodeStructured({ id: "s", source: "/s", type: "t", data: new Uint8Array([7]) });
  const doc = JSON.parse(new TextDecoder().decode(st.data));
  assert.equal(doc.data_base64, "Bw==");
  assert.deepEqual(decode(st.headers, st.data).data, new Uint8Array([7]));
});
