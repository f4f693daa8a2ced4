// A recording HTTP/1.1 node for tether's differential tests: Node.js's own `http` module, whose
// parser (llhttp) is strict by default, is the reference for what a forwarded request means.
//
// It listens on 127.0.0.1 (port 0) and prints `PORTS <http> <control>` once both listeners are up.
// Every request is answered `200` with a small body, keep-alive, and the request's URL in
// `x-url`, once its body has ended. What llhttp parsed is recorded per connection as events:
//   open, request (method, url, httpVersion, rawHeaders, rawTrailers, body as base64, complete),
//   upgrade (the request; the recorder answers 101), tunnel (bytes after an upgrade's head),
//   clientError (code and rawPacket as base64), close.
// The control listener speaks lines: `TAKE` answers every event since the last TAKE as one JSON
// line and forgets them. Tests connect to it directly, never through the proxy.
// No npm packages: only Node's standard library.
'use strict';

const http = require('http');
const net = require('net');

let events = [];
let seq = 0;
let nextConn = 0;

function record(ev) {
  ev.seq = seq++;
  events.push(ev);
  return ev;
}

const server = http.createServer({
  // The point of the recorder: llhttp's strict mode. Never lenient.
  insecureHTTPParser: false,
  // A proxy may forward big heads; the recorder must not be the one that refuses them.
  maxHeaderSize: 256 * 1024,
  // tether decides whether Host is required; the recorder records what arrived.
  requireHostHeader: false,
  // Pooled connections stay open for the whole run.
  keepAliveTimeout: 0,
  requestTimeout: 0,
  headersTimeout: 60000,
});
server.keepAliveTimeout = 0;

server.on('connection', (socket) => {
  socket.recId = nextConn++;
  record({ type: 'open', conn: socket.recId });
  socket.on('close', () => record({ type: 'close', conn: socket.recId }));
});

function onRequest(req, res) {
  const ev = record({
    type: 'request',
    conn: req.socket.recId,
    method: req.method,
    url: req.url,
    httpVersion: req.httpVersion,
    rawHeaders: req.rawHeaders,
    rawTrailers: [],
    body: '',
    complete: false,
  });
  const parts = [];
  req.on('data', (d) => parts.push(d));
  req.on('end', () => {
    ev.body = Buffer.concat(parts).toString('base64');
    ev.rawTrailers = req.rawTrailers;
    ev.complete = true;
    const body = `ok ${ev.conn} ${ev.seq}\n`;
    res.writeHead(200, {
      'content-type': 'text/plain',
      'content-length': Buffer.byteLength(body),
      'x-url': encodeURIComponent(req.url),
      'x-rec': `${ev.conn}-${ev.seq}`,
    });
    res.end(body);
  });
  req.on('error', () => {});
}
server.on('request', onRequest);
// Node answers unknown expectations with 417 by itself; the recorder records and answers them
// like any request (what to do with Expect is the proxy's business).
server.on('checkExpectation', onRequest);

function onUpgrade(req, socket, head) {
  record({
    type: 'upgrade',
    conn: socket.recId,
    method: req.method,
    url: req.url,
    httpVersion: req.httpVersion,
    rawHeaders: req.rawHeaders,
  });
  // What follows the head belongs to the tunnel: recorded as it comes, one event per read.
  if (head.length > 0) {
    record({ type: 'tunnel', conn: socket.recId, data: Buffer.from(head).toString('base64') });
  }
  socket.on('data', (d) => {
    record({ type: 'tunnel', conn: socket.recId, data: d.toString('base64') });
  });
  socket.on('error', () => {});
  socket.write(
    'HTTP/1.1 101 Switching Protocols\r\n' +
      'Upgrade: websocket\r\nConnection: Upgrade\r\n' +
      'Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n',
  );
}
server.on('upgrade', onUpgrade);
server.on('connect', onUpgrade);

server.on('clientError', (err, socket) => {
  record({
    type: 'clientError',
    conn: socket.recId,
    code: err.code || String(err),
    reason: err.reason || err.message || '',
    rawPacket: err.rawPacket ? Buffer.from(err.rawPacket).toString('base64') : '',
  });
  if (socket.writable) {
    socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
  }
  socket.destroy();
});

const control = net.createServer((c) => {
  let pending = '';
  c.on('data', (d) => {
    pending += d.toString('latin1');
    let nl;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl).trim();
      pending = pending.slice(nl + 1);
      if (line === 'TAKE') {
        // Let any I/O that is already readable be parsed first.
        setImmediate(() =>
          setImmediate(() => {
            const out = events;
            events = [];
            c.write(JSON.stringify(out) + '\n');
          }),
        );
      }
    }
  });
  c.on('error', () => {});
});

server.listen(0, '127.0.0.1', () => {
  control.listen(0, '127.0.0.1', () => {
    process.stdout.write(`PORTS ${server.address().port} ${control.address().port}\n`);
  });
});

// The test kills us by PID; a closed stdin (the test process died) ends us too.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
