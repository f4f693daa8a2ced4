// A WebSocket over HTTP/2 (RFC 8441) from Node's own http2 client, driven by tests/it/http2.rs.
//
//   node h2ws.js '<plan JSON>'
//
// plan: { url: "https://localhost:PORT", ca: "<PEM>", path: "/ws", origin?: "...",
//         cookie?: "...", echoes: N, limit_ms: N }
// It waits for the server's SETTINGS and fails unless they enable extended CONNECT, opens one
// CONNECT stream with :protocol websocket, reads the node's greeting, then sends N masked text
// frames one at a time and checks each echo. One JSON line goes out at the end:
// { status, enableConnectProtocol, greeting: {node,...} | null, echoed, setCookie, error }.
'use strict';

const http2 = require('node:http2');

const plan = JSON.parse(process.argv[2]);
const out = { status: null, enableConnectProtocol: null, greeting: null, echoed: 0, setCookie: null, error: null };
let done = false;
function finish(error) {
  if (done) return;
  done = true;
  if (error) out.error = String(error && error.message ? error.message : error);
  process.stdout.write(JSON.stringify(out) + '\n');
  process.exit(0);
}
setTimeout(() => finish('time limit'), plan.limit_ms || 20000).unref();

// A client frame: FIN, the opcode, masked as RFC 6455 requires of clients.
function frame(opcode, payload) {
  const mask = Buffer.from([0x12, 0x34, 0x56, 0x78]);
  const len = payload.length;
  let head;
  if (len < 126) head = Buffer.from([0x80 | opcode, 0x80 | len]);
  else if (len < 65536) { head = Buffer.alloc(4); head[0] = 0x80 | opcode; head[1] = 0x80 | 126; head.writeUInt16BE(len, 2); }
  else { head = Buffer.alloc(10); head[0] = 0x80 | opcode; head[1] = 0x80 | 127; head.writeBigUInt64BE(BigInt(len), 2); }
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i] ^= mask[i % 4];
  return Buffer.concat([head, mask, body]);
}

// Server frames (unmasked) out of a byte stream.
function reader(onFrame) {
  let buf = Buffer.alloc(0);
  return (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    for (;;) {
      if (buf.length < 2) return;
      const opcode = buf[0] & 0x0f;
      let len = buf[1] & 0x7f;
      let at = 2;
      if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); at = 4; }
      else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); at = 10; }
      if (buf.length < at + len) return;
      const payload = buf.subarray(at, at + len);
      buf = buf.subarray(at + len);
      onFrame(opcode, payload);
    }
  };
}

const session = http2.connect(plan.url, { ca: plan.ca, servername: 'localhost' });
session.on('error', (e) => finish(e));
session.once('remoteSettings', (settings) => {
  out.enableConnectProtocol = !!settings.enableConnectProtocol;
  if (!settings.enableConnectProtocol) return finish('the server does not enable extended CONNECT');
  const headers = {
    ':method': 'CONNECT',
    ':protocol': 'websocket',
    ':path': plan.path || '/ws',
    'sec-websocket-version': '13',
  };
  if (plan.origin) headers.origin = plan.origin;
  if (plan.cookie) headers.cookie = plan.cookie;
  const stream = session.request(headers, { endStream: false });
  stream.on('error', (e) => finish(e));
  stream.on('close', () => finish(out.status === 200 && out.echoed < (plan.echoes || 0) ? 'stream closed' : null));
  let next = 0;
  const want = plan.echoes || 0;
  const send = () => {
    if (next >= want) { stream.end(frame(0x8, Buffer.from([0x03, 0xe8]))); return; }
    stream.write(frame(0x1, 'echo ' + next));
  };
  stream.on('response', (h) => {
    out.status = h[':status'];
    out.setCookie = h['set-cookie'] || null;
    if (out.status !== 200) {
      stream.resume();
      stream.on('end', () => finish(null));
    }
  });
  stream.on('data', reader((opcode, payload) => {
    if (opcode === 0x8) { finish(null); return; }
    if (opcode !== 0x1) return;
    const text = payload.toString();
    if (out.greeting === null) {
      out.greeting = JSON.parse(text);
      send();
      return;
    }
    if (text !== 'echo ' + next) return finish('echo ' + next + ' came back as ' + JSON.stringify(text));
    out.echoed++;
    next++;
    send();
  }));
});
