// A Hookbus device in Node.js: the gateway's device sessions
// (docs/protocol.md, "Device sessions") with the npm ws package.
//
//   node device.mjs --url ws://127.0.0.1:8080/devices/websocket --id box-1 \
//     --credentials '{"password":"sesame"}' --token-file ./token.json
//
// It logs in with its credentials the first time (the gateway's
// hookbus.device.authenticate chain decides), stores every token the
// gateway sends in --token-file (atomically, mode 0600) and connects with
// the token afterwards. It sends one JSON message and one binary frame
// (sent again after a reconnection until the gateway acknowledges them),
// prints every push and acknowledges it (push_ack). A dead token (401, 403
// invalid_token, close 4001) is deleted and the device logs in again; a
// replacement by a newer connection (4002) or a plugin's stop (4003) ends
// the process. With --pushes N it exits after N pushes.
//
// Every event is one line on stdout: "connected token", "token stored",
// "ack 1", "push {...}", "push binary dead", "stopped 4003 reason", ...

import { open, rename, readFile, unlink } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string', default: 'ws://127.0.0.1:8080/devices/websocket' },
    id: { type: 'string', default: 'node-device-1' },
    credentials: { type: 'string', default: '' },
    'token-file': { type: 'string', default: './token.json' },
    pushes: { type: 'string', default: '0' },
  },
});
const deviceId = args.id;
const credentials = args.credentials ? JSON.parse(args.credentials) : null;
const tokenFile = args['token-file'];
const exitAfterPushes = Number(args.pushes);
const minBackoff = 500;
const maxBackoff = 30_000;

const log = (...parts) => console.log(parts.join(' '));

// --- token file: written to a temporary file, synced, renamed over ---
async function loadToken() {
  try {
    const t = JSON.parse(await readFile(tokenFile, 'utf8'));
    return t.token && Date.parse(t.expires) > Date.now() ? t.token : null;
  } catch (err) {
    if (err.code !== 'ENOENT') log('token file unreadable:', err.message);
    return null;
  }
}

async function saveToken(token, expires) {
  const tmp = join(dirname(tokenFile), `.${basename(tokenFile)}.${process.pid}.tmp`);
  const f = await open(tmp, 'w', 0o600);
  try {
    await f.writeFile(JSON.stringify({ token, expires }) + '\n');
    await f.sync();
  } finally {
    await f.close();
  }
  await rename(tmp, tokenFile);
}

async function deleteToken() {
  await unlink(tokenFile).catch((err) => {
    if (err.code !== 'ENOENT') throw err;
  });
}

// --- what the device sends: kept until acknowledged, sent again in order ---
const outbox = [
  { type: 'text', data: JSON.stringify({ type: 'message', data: { hello: 'from node', device: deviceId } }) },
  { type: 'binary', data: Buffer.from([0xca, 0xfe, 0x00, 0x01]) },
];

let attempt = 0;
let pushesSeen = 0;
let stopping = false;
let socket = null;

async function connect(withCredentials = false) {
  const token = withCredentials ? null : await loadToken();
  if (!token && !credentials) {
    log('unregistered: no valid token and no --credentials');
    process.exit(2);
  }
  const auth = token ? { device_id: deviceId, token } : { ...credentials, device_id: deviceId };
  const header = Buffer.from(JSON.stringify(auth)).toString('base64');
  const ws = new WebSocket(args.url, { headers: { 'x-hookbus-auth': header }, maxPayload: 4 << 20 });
  socket = ws;
  let acked = 0; // the session's acks
  let pushes = 0; // the session's pushes
  let opened = false;

  ws.on('unexpected-response', (req, res) => {
    let body = '';
    res.on('data', (c) => (body += c));
    res.on('end', async () => {
      let problem = {};
      try { problem = JSON.parse(body); } catch { /* not a problem */ }
      log('refused', res.statusCode, problem.code ?? '', problem.detail ?? '');
      const deadToken = token && (res.statusCode === 401 || problem.code === 'invalid_token');
      if (deadToken) {
        // Never retry a dead token: log in again with credentials.
        await deleteToken();
        if (!credentials) { log('unregistered: token dead and no --credentials'); process.exit(2); }
        return connect(true);
      }
      if (res.statusCode < 500 && res.statusCode !== 429) {
        log('failed: not retrying'); // 403 authentication_failed, 400, 404
        process.exit(1);
      }
      retry();
    });
    req.destroy();
  });

  ws.on('open', () => {
    opened = true;
    log('connected', token ? 'token' : 'credentials');
    for (const f of outbox) ws.send(f.data, { binary: f.type === 'binary' });
  });

  ws.on('message', async (data, isBinary) => {
    if (isBinary) return onPush(ws, ++pushes, 'binary ' + Buffer.from(data).toString('hex'));
    let f;
    try { f = JSON.parse(data.toString('utf8')); } catch { return; }
    switch (f.type) {
      case 'token':
        attempt = 0; // logged in: the next loss starts the backoff again
        await saveToken(f.token, f.expires);
        log('token stored');
        break;
      case 'ack':
        while (acked < f.seq && outbox.length > 0) { acked++; outbox.shift(); log('ack', acked); }
        break;
      case 'push':
        onPush(ws, ++pushes, JSON.stringify(f.data));
        break;
      default: // a frame of a newer gateway
    }
  });

  ws.on('close', async (code, reason) => {
    if (socket === ws) socket = null;
    if (!opened || stopping) return; // a refused upgrade is handled above
    reason = reason.toString();
    log('closed', code, reason);
    switch (code) {
      case 4001: // revoked: log in again
        await deleteToken();
        if (!credentials) { log('unregistered: revoked and no --credentials'); process.exit(2); }
        return connect(true);
      case 4002: // a newer connection of this device: do not fight it
      case 4003: // a plugin stopped this device
        log('stopped', code, reason);
        process.exit(0);
    }
    retry();
  });

  ws.on('error', (err) => {
    if (!opened) log('connect failed:', err.message);
    if (!opened && !err.message.startsWith('Unexpected server response')) retry();
  });
}

function onPush(ws, n, text) {
  log('push', text);
  pushesSeen++;
  // Cumulative: "I have the first n pushes of this session".
  if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'push_ack', seq: n }));
  if (exitAfterPushes > 0 && pushesSeen >= exitAfterPushes) stop();
}

// retry connects again after a random wait (full jitter) up to
// minBackoff doubled at each attempt, at most maxBackoff.
function retry() {
  if (stopping) return;
  const ceil = Math.min(maxBackoff, minBackoff * 2 ** attempt++);
  setTimeout(() => connect(), Math.random() * ceil);
}

function stop() {
  stopping = true;
  if (socket) {
    socket.once('close', () => process.exit(0));
    socket.close(1000, 'device stopping');
  } else {
    process.exit(0);
  }
}

process.on('SIGINT', stop);
process.on('SIGTERM', stop);
connect();
