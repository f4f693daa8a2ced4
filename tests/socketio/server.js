#!/usr/bin/env node
// One socket.io backend node for tether's socket.io cluster test.
//
//   node server.js --id node-a [--port 0] [--host 127.0.0.1] [--ids default|tilde]
//
// stdout: exactly one line, `LISTENING <port>`, once the server accepts
// connections (the Rust test reads it). Everything else goes to stderr.
//
// Behaviour:
//   - socket.io Server with default options (polling + websocket, no cors).
//   - on `connection`: emits `node` with this node's id.
//   - event `echo`: `(payload, ack) => ack({ node: id, payload })`.
//   - counts engine.io `connection_error` events by `err.message`
//     ("Session ID unknown" is the one a non-sticky proxy produces).
//   - `GET /stats` (plain HTTP on the same port; socket.io only takes
//     `/socket.io/`) answers
//     {"node":id,"connections":n,"connectedNow":n,"connectionErrors":{msg:count},"sessionUnknown":count,
//      "idMode":"default"|"tilde","handshakes":n,"ids":[sid,...]}
//     `handshakes` counts engine.io ids issued (one per handshake), `ids` lists
//     them in issue order, capped at the first 1000.
//   - `GET /page`: an HTML page for the browser tests (tests/browser/h2.js): it loads the
//     socket.io client this server serves (/socket.io/socket.io.js), connects with the default
//     transports (long-polling, then the WebSocket upgrade), and when the upgrade is done asks
//     for an `echo` over it, then opens a raw `new WebSocket(wss://same-origin/ws)`; it sets
//     `window.result` to {first, firstTransport, upgradedTo, afterUpgrade, transport, raw,
//     rawError} (node ids as the node said them).
//   - exits 0 on SIGTERM / SIGINT.
//
// --ids: how engine.io session ids (the `sid` of the handshake, sent back by
// the client as `?sid=` on every later request) are made.
//   default  engine.io's own generator (contrib/base64id: 20 characters from
//            random bytes and a counter, base64 with `/`->`_` and `+`->`-`,
//            e.g. `o3kYBih_-dK2ZGdlAAAA`); never contains `~`.
//   tilde    a custom `io.engine.generateId` (socket.io 4 / engine.io 6 let an
//            application replace it; engine.io uses the returned string as is).
//            The k-th handshake on this node (k = 0, 1, 2, ...) gets
//              `${id}-${k/2}`    when k is even,
//              `${id}-${(k-1)/2}~b` when k is odd,
//            i.e. node-a-0, node-a-0~b, node-a-1, node-a-1~b, ... It
//            reproduces applications whose custom id generators produce `~` (a
//            character a proxy might treat as a separator in the sid) and ids
//            that are prefixes of other live ids (`node-a-0` of `node-a-0~b`),
//            so a proxy matching sids by prefix or cutting them at `~` picks
//            the wrong session. The ids are not random: only for tests.
//            engine.io-client puts the sid into the query with
//            encodeURIComponent, which leaves `~` (RFC 3986 unreserved) as is:
//            requests carry `sid=node-a-0~b` literally; engine.io reads the
//            query with URLSearchParams, so `%7E` would be decoded as well.
//
// DEBUG_URLS=1 (environment): log the method and URL of every request under
// /socket.io/ (polling GET/POST and the WebSocket upgrade) on stderr. Off by
// default; stdout is never touched.
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");

const { parseArgs } = require("./args");

let args;
try {
  args = parseArgs(process.argv.slice(2));
} catch (e) {
  process.stderr.write(`server.js: ${e.message}\n`);
  process.exit(2);
}

const id = args.id;
if (!id) {
  process.stderr.write("usage: node server.js --id NAME [--port 0] [--host 127.0.0.1]\n");
  process.exit(2);
}
const port = Number(args.port ?? 0);
const host = args.host ?? "127.0.0.1";
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write(`server.js: bad --port ${args.port}\n`);
  process.exit(2);
}
const idMode = args.ids ?? "default";
if (idMode !== "default" && idMode !== "tilde") {
  process.stderr.write(`server.js: bad --ids ${args.ids} (default or tilde)\n`);
  process.exit(2);
}
const debugUrls = process.env.DEBUG_URLS === "1";

const SESSION_UNKNOWN = "Session ID unknown";
let connections = 0; // socket.io connections accepted since start
let connectedNow = 0; // currently connected sockets
const connectionErrors = {}; // engine.io connection_error count by message
const MAX_IDS = 1000;
let handshakes = 0; // engine.io ids issued (= handshakes seen by generateId)
const ids = []; // the first MAX_IDS of them, in issue order

function stats() {
  return {
    node: id,
    connections,
    connectedNow,
    connectionErrors: { ...connectionErrors },
    sessionUnknown: connectionErrors[SESSION_UNKNOWN] || 0,
    idMode,
    handshakes,
    ids: ids.slice(),
  };
}

// socket.io (engine.io) wraps the existing `request` listeners: requests under
// /socket.io/ are handled by engine.io, everything else reaches this handler.
const httpServer = http.createServer((req, res) => {
  const path = (req.url || "").split("?")[0];
  if (req.method === "GET" && path === "/stats") {
    const body = JSON.stringify(stats());
    res.writeHead(200, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(body),
      "cache-control": "no-store",
    });
    res.end(body);
    return;
  }
  if (req.method === "GET" && path === "/page") {
    res.writeHead(200, {
      "content-type": "text/html; charset=utf-8",
      "content-length": Buffer.byteLength(PAGE),
      "cache-control": "no-store",
    });
    res.end(PAGE);
    return;
  }
  res.writeHead(404, { "content-type": "text/plain" });
  res.end("not found\n");
});

const PAGE = `<!doctype html>
<meta charset="utf-8"><title>socket.io over tether</title><link rel="icon" href="data:,">
<script src="/socket.io/socket.io.js"></script>
<script>
window.result = null;
const out = {};
const socket = io();
socket.on("node", (n) => {
  out.first = n;
  out.firstTransport = socket.io.engine.transport.name;
});
socket.io.engine.on("upgrade", (t) => {
  out.upgradedTo = t.name;
  socket.emit("echo", "after upgrade", (r) => {
    out.afterUpgrade = r.node;
    out.transport = socket.io.engine.transport.name;
    const ws = new WebSocket("wss://" + location.host + "/ws");
    ws.onmessage = (m) => { out.raw = JSON.parse(m.data).node; ws.close(); window.result = out; };
    ws.onerror = () => { out.rawError = true; window.result = out; };
  });
});
</script>
<p>socket.io over tether</p>
`;

const io = new Server(httpServer);

// engine.io calls generateId(req) once per handshake (polling or websocket).
// Both modes record the id; only `tilde` replaces engine.io's generator.
const defaultGenerateId = io.engine.generateId.bind(io.engine);
io.engine.generateId = (req) => {
  const k = handshakes;
  let sid;
  if (idMode === "tilde") {
    sid = k % 2 === 0 ? `${id}-${Math.floor(k / 2)}` : `${id}-${Math.floor(k / 2)}~b`;
  } else {
    sid = defaultGenerateId(req);
  }
  handshakes++;
  if (ids.length < MAX_IDS) ids.push(sid);
  return sid;
};

if (debugUrls) {
  // Added after `new Server` (engine.io's attach() wraps the `request`
  // listeners present at that time, which then no longer see /socket.io/).
  // Prepended so the line comes before engine.io handles the request.
  const logUrl = (kind) => (req) => {
    const url = req.url || "";
    if (url.startsWith("/socket.io/")) {
      process.stderr.write(`server.js [${id}] ${kind} ${req.method} ${url}\n`);
    }
  };
  httpServer.prependListener("request", logUrl("http"));
  httpServer.prependListener("upgrade", logUrl("upgrade"));
}

io.engine.on("connection_error", (err) => {
  const msg = (err && err.message) || "unknown";
  connectionErrors[msg] = (connectionErrors[msg] || 0) + 1;
});

io.on("connection", (socket) => {
  connections++;
  connectedNow++;
  socket.on("disconnect", () => {
    connectedNow--;
  });
  socket.on("echo", (payload, ack) => {
    if (typeof ack === "function") ack({ node: id, payload });
  });
  socket.emit("node", id);
});

httpServer.on("error", (err) => {
  process.stderr.write(`server.js [${id}]: ${err.stack || err}\n`);
  process.exit(1);
});

httpServer.listen(port, host, () => {
  const addr = httpServer.address();
  process.stdout.write(`LISTENING ${addr.port}\n`);
  process.stderr.write(`server.js [${id}]: listening on ${host}:${addr.port}\n`);
});

let stopping = false;
function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  process.stderr.write(`server.js [${id}]: ${signal}, stopping; stats ${JSON.stringify(stats())}\n`);
  // Never hang on shutdown: force exit if closing takes too long.
  setTimeout(() => process.exit(0), 2000).unref();
  // io.close() disconnects every socket and closes the http server.
  io.close(() => process.exit(0));
  // Idle keep-alive HTTP connections would keep httpServer.close() pending.
  if (typeof httpServer.closeAllConnections === "function") {
    httpServer.closeAllConnections();
  }
}
process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));
