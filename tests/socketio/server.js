#!/usr/bin/env node
// One socket.io backend node for tether's socket.io cluster test.
//
//   node server.js --id node-a [--port 0] [--host 127.0.0.1]
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
//     {"node":id,"connections":n,"connectedNow":n,"connectionErrors":{msg:count},"sessionUnknown":count}
//   - exits 0 on SIGTERM / SIGINT.
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

const SESSION_UNKNOWN = "Session ID unknown";
let connections = 0; // socket.io connections accepted since start
let connectedNow = 0; // currently connected sockets
const connectionErrors = {}; // engine.io connection_error count by message

function stats() {
  return {
    node: id,
    connections,
    connectedNow,
    connectionErrors: { ...connectionErrors },
    sessionUnknown: connectionErrors[SESSION_UNKNOWN] || 0,
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
  res.writeHead(404, { "content-type": "text/plain" });
  res.end("not found\n");
});

const io = new Server(httpServer);

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
