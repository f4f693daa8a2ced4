#!/usr/bin/env node
// Load client for tether's socket.io cluster test.
//
//   node client.js --url http://127.0.0.1:PORT --clients 200 --messages 20 \
//     --stats http://127.0.0.1:A,http://127.0.0.1:B,http://127.0.0.1:C \
//     [--timeout-ms 60000] [--ramp 20] [--upgrade-timeout-ms 10000] \
//     [--ack-timeout-ms 5000] [--cookies on|off] [--keepalive on|off] [--rooms 0]
//
// Every client is a real socket.io-client with the DEFAULT transports: it does
// the engine.io handshake over HTTP long-polling, then upgrades to WebSocket.
// Each client:
//   1. connects (reconnection off: one failed connect is one connect error),
//   2. waits for the server's `node` event (its "first node"),
//   3. waits until the engine has upgraded to websocket (else counts noUpgrade
//      and carries on over polling),
//   4. sends --messages acknowledged `echo` events one after the other and
//      checks that every ack comes from its first node.
// Clients stay connected until all are done (so all sessions are concurrent),
// then everything is closed, every --stats URL is fetched directly (not
// through the proxy) and ONE JSON line is printed on stdout. Exit code is 0
// whatever happened (the Rust test judges the numbers); 2 only for bad usage.
//
// Cookies / stickiness: the proxy pins a client with a cookie (e.g.
// `Set-Cookie: tether_node=...` on the handshake response). In Node.js,
// engine.io-client (6.6.x, shipped with socket.io-client 4.8.x) keeps cookies
// only when `withCredentials: true`: Socket then creates a per-socket
// CookieJar (build/cjs/globals.node.js). The jar is
//   - filled from `Set-Cookie` of every polling response
//     (transports/polling-xhr.js, `parseCookies(xhr.getResponseHeader("set-cookie"))`),
//   - sent as `Cookie:` on every polling request (`addCookies(xhr)`), and
//   - sent as `Cookie:` on the WebSocket upgrade request
//     (transports/websocket.node.js, `createSocket` pushes the jar into
//     `opts.headers.cookie` before `new ws.WebSocket(...)`).
// `forceNew: true` gives each client its own Manager, engine and so its own
// jar, so clients never share a cookie. No extraHeaders or custom jar is
// needed (and extraHeaders must NOT be used here: websocket.node.js mutates the
// extraHeaders object when it adds the jar's cookies).
// The JSON output reports `withCookie` / `cookieNames` from each engine's jar
// so the test can see the proxy's cookie really reached the clients.
//
// --cookies off: `withCredentials: false`, engine.io-client's default in
// Node.js: no cookie jar at all, nothing sent back (withCookie stays 0). Only
// the session id (`sid=` in every request's query) ties requests together.
//
// --keepalive: how polling requests reach the server. Without the flag,
// engine.io-client's default `agent: false`: Node.js makes a one-off agent
// per request, so each polling request already goes out on a new connection
// with `Connection: close` (measured: 4 to 5 TCP connections for a handshake,
// an upgrade and three acks). `on`: one `http.Agent({ keepAlive: true })` per
// client, reused by its polling requests. `off`: one
// `http.Agent({ keepAlive: false })` per client: every polling request and the
// WebSocket upgrade on a new TCP connection, stated rather than implied.
//
// --rooms N (default 0 = off): client number i (0-based, in start order)
// connects with the socket.io-client option `query: { room: "r" + (i % N) }`.
// engine.io-client merges `query` into the query string of EVERY engine.io
// request: the handshake GET, every later polling GET/POST (next to `sid=`)
// and the WebSocket upgrade, e.g.
// `/socket.io/?room=r2&EIO=4&transport=polling&t=...&sid=...`. That is the
// input of a proxy that pins by a query parameter (all clients of a room on
// one node). The JSON output then has `roomNodes`:
//   {"r0":{"node-a":5},"r1":{"node-b":4,"node-c":1},...}
// every room r0..r(N-1) (an empty object for a room none of whose clients got
// a node), and for each room the count of its clients by FIRST node (the
// `node` event). Clients that never got a node are not counted there (see
// clientNodes). Without --rooms no `query` option is set at all and
// `roomNodes` is null.
// Always (with or without --rooms): `clientNodes`, an array indexed by client
// number, each entry that client's first node id or null if it never got one,
// and `rooms` (N).
"use strict";

const http = require("node:http");
const { io } = require("socket.io-client");

const { parseArgs } = require("./args");

function intArg(args, name, dflt, min) {
  const v = args[name] === undefined ? dflt : Number(args[name]);
  if (!Number.isInteger(v) || v < min) throw new Error(`bad --${name}: ${args[name]}`);
  return v;
}

function onOff(args, name, dflt) {
  const v = args[name] === undefined ? dflt : args[name];
  if (v !== dflt && v !== "on" && v !== "off") throw new Error(`bad --${name}: ${v} (on or off)`);
  return v;
}

let opts;
try {
  const args = parseArgs(process.argv.slice(2));
  if (!args.url) throw new Error("--url is required");
  opts = {
    url: args.url,
    clients: intArg(args, "clients", 200, 1),
    messages: intArg(args, "messages", 20, 0),
    stats: (args.stats || "").split(",").map((s) => s.trim()).filter(Boolean),
    timeoutMs: intArg(args, "timeout-ms", 60000, 1000),
    ramp: intArg(args, "ramp", 20, 1),
    upgradeTimeoutMs: intArg(args, "upgrade-timeout-ms", 10000, 1),
    ackTimeoutMs: intArg(args, "ack-timeout-ms", 5000, 1),
    cookies: onOff(args, "cookies", "on") === "on",
    keepalive: onOff(args, "keepalive", null),
    rooms: intArg(args, "rooms", 0, 0),
  };
} catch (e) {
  process.stderr.write(`client.js: ${e.message}\n`);
  process.stderr.write(
    "usage: node client.js --url URL --clients N --messages M --stats URL[,URL...] [--timeout-ms 60000]\n" +
      "       [--cookies on|off] [--keepalive on|off] [--rooms N]\n",
  );
  process.exit(2);
}

const startedAt = Date.now();
// Time kept back at the end for closing sockets, fetching stats and printing.
const RESERVE_MS = Math.min(5000, Math.floor(opts.timeoutMs / 4));
const STATS_FETCH_TIMEOUT_MS = Math.max(500, RESERVE_MS - 1500);

const counts = {
  clients: opts.clients,
  messagesPerClient: opts.messages,
  cookies: opts.cookies,
  keepalive: opts.keepalive || "default",
  rooms: opts.rooms,
  started: 0,
  connected: 0,
  connectErrors: 0,
  errorsByMessage: {},
  gotNode: 0,
  upgraded: 0,
  noUpgrade: 0,
  upgradeErrors: 0,
  acks: 0,
  acksFromOtherNode: 0,
  ackTimeouts: 0,
  disconnectsBeforeDone: 0,
  disconnectReasons: {},
  completed: 0, // clients that got all their acks, all from their first node
  timeouts: 0, // clients that did not finish (node wait / ack timeout / global deadline)
  withCookie: 0, // clients whose engine cookie jar holds at least one cookie
  cookieNames: {},
  firstNodes: {},
  sessionUnknown: null,
  serverConnectionErrors: {},
  serverConnections: null,
  statsErrors: [],
  roomNodes: null, // --rooms only: {room: {node: count}}, filled in by printAndExit
  clientNodes: new Array(opts.clients).fill(null), // first node per client number
  elapsedMs: 0,
};

function roomOf(index) {
  return opts.rooms > 0 ? `r${index % opts.rooms}` : null;
}

function bump(obj, key, n = 1) {
  obj[key] = (obj[key] || 0) + n;
}

function log(msg) {
  process.stderr.write(`client.js: ${msg}\n`);
}

const sockets = [];
const clientPromises = [];
let deadlineHit = false;
let deadlineResolve;
const deadline = new Promise((resolve) => {
  deadlineResolve = resolve;
});

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Resolves with `value` after ms, or when the global deadline hits.
function timer(ms, value) {
  return Promise.race([sleep(ms).then(() => value), deadline.then(() => "deadline")]);
}

function runClient(index) {
  counts.started++;
  const clientOpts = {
    // transports left at the default: ["polling", "websocket", "webtransport"]
    // -> handshake over HTTP long-polling, then upgrade to WebSocket.
    reconnection: false,
    // on: per-socket cookie jar in Node.js (see header); off: no jar, the default.
    withCredentials: opts.cookies,
    forceNew: true, // own Manager/engine/cookie jar per client
    timeout: Math.min(20000, opts.timeoutMs), // connect timeout
  };
  if (opts.rooms > 0) {
    // Sent as `room=rK` on every engine.io request (see header).
    clientOpts.query = { room: roomOf(index) };
  }
  if (opts.keepalive !== null) {
    // Used by the polling requests and by the WebSocket upgrade.
    clientOpts.agent = new http.Agent({ keepAlive: opts.keepalive === "on" });
  }
  const socket = io(opts.url, clientOpts);
  sockets.push(socket);

  const state = { done: false, firstNode: null };
  let nodeResolve;
  const gotNode = new Promise((resolve) => {
    nodeResolve = resolve;
  });
  socket.on("node", (id) => {
    if (state.firstNode === null) {
      state.firstNode = id;
      counts.clientNodes[index] = id;
      nodeResolve(id);
    }
  });

  let disconnectResolve;
  const disconnected = new Promise((resolve) => {
    disconnectResolve = resolve;
  });

  const connectResult = new Promise((resolve) => {
    socket.once("connect", () => {
      counts.connected++;
      const engine = socket.io.engine;
      engine.on("upgradeError", () => {
        counts.upgradeErrors++;
      });
      socket.on("disconnect", (reason) => {
        if (!state.done) {
          counts.disconnectsBeforeDone++;
          bump(counts.disconnectReasons, reason);
        }
        disconnectResolve("disconnect");
      });
      resolve(true);
    });
    socket.once("connect_error", (err) => {
      counts.connectErrors++;
      bump(counts.errorsByMessage, (err && err.message) || String(err));
      resolve(false);
    });
  });

  const run = (async () => {
    const ok = await Promise.race([connectResult, deadline.then(() => "deadline")]);
    if (ok === "deadline") {
      counts.timeouts++;
      return;
    }
    if (!ok) return; // connect error, already counted

    // 1. first node
    const node = await Promise.race([
      gotNode,
      disconnected,
      timer(opts.ackTimeoutMs, "timeout"),
    ]);
    if (node === "disconnect") return;
    if (node === "timeout" || node === "deadline") {
      counts.timeouts++;
      return;
    }
    counts.gotNode++;
    bump(counts.firstNodes, node);

    // 2. upgrade to websocket
    const engine = socket.io.engine;
    let up;
    if (engine.transport && engine.transport.name === "websocket") {
      up = "upgraded";
    } else {
      up = await Promise.race([
        new Promise((resolve) => engine.once("upgrade", () => resolve("upgraded"))),
        disconnected,
        timer(opts.upgradeTimeoutMs, "timeout"),
      ]);
    }
    if (up === "disconnect") return;
    if (up === "deadline") {
      counts.noUpgrade++;
      counts.timeouts++;
      return;
    }
    if (up === "upgraded") counts.upgraded++;
    else counts.noUpgrade++; // carry on over polling

    // 3. sequential acked echoes
    let allGood = true;
    for (let m = 0; m < opts.messages; m++) {
      if (!socket.connected) return; // disconnect already counted
      const payload = { client: index, seq: m };
      const res = await Promise.race([
        socket
          .timeout(opts.ackTimeoutMs)
          .emitWithAck("echo", payload)
          .then(
            (r) => ({ ok: true, r }),
            (e) => ({ ok: false, e }),
          ),
        disconnected,
        deadline.then(() => "deadline"),
      ]);
      if (res === "disconnect") return;
      if (res === "deadline") {
        counts.timeouts++;
        return;
      }
      if (!res.ok) {
        // no ack within ackTimeoutMs (or the socket was closed meanwhile)
        if (!socket.connected) return;
        counts.ackTimeouts++;
        counts.timeouts++;
        return;
      }
      counts.acks++;
      const ackNode = res.r && res.r.node;
      if (ackNode !== state.firstNode) {
        counts.acksFromOtherNode++;
        allGood = false;
      }
    }
    state.done = true;
    if (allGood) counts.completed++;
  })().catch((e) => {
    bump(counts.errorsByMessage, `client exception: ${e && e.message}`);
  });

  // Every started client's promise, including the connect phase, for the ramp.
  return { run, connectResult };
}

function inspectCookies() {
  for (const s of sockets) {
    try {
      const jar = s.io && s.io.engine && s.io.engine._cookieJar;
      if (!jar) continue;
      let any = false;
      for (const [name] of jar.cookies) {
        any = true;
        bump(counts.cookieNames, name);
      }
      if (any) counts.withCookie++;
    } catch (_) {
      // private API; diagnostics only
    }
  }
}

async function fetchStats() {
  let sessionUnknown = 0;
  let serverConnections = 0;
  let anyOk = false;
  await Promise.all(
    opts.stats.map(async (base) => {
      const url = base.replace(/\/+$/, "") + "/stats";
      try {
        const ctrl = new AbortController();
        const t = setTimeout(() => ctrl.abort(), STATS_FETCH_TIMEOUT_MS);
        let body;
        try {
          const res = await fetch(url, { signal: ctrl.signal });
          if (!res.ok) throw new Error(`HTTP ${res.status}`);
          body = await res.json();
        } finally {
          clearTimeout(t);
        }
        anyOk = true;
        sessionUnknown += Number(body.sessionUnknown) || 0;
        serverConnections += Number(body.connections) || 0;
        for (const [msg, n] of Object.entries(body.connectionErrors || {})) {
          bump(counts.serverConnectionErrors, msg, Number(n) || 0);
        }
      } catch (e) {
        counts.statsErrors.push(`${url}: ${e && e.message}`);
      }
    }),
  );
  // null when no stats URL could be read, so a broken stats fetch is not
  // mistaken for "zero session errors".
  counts.sessionUnknown = anyOk ? sessionUnknown : null;
  counts.serverConnections = anyOk ? serverConnections : null;
}

// roomNodes from clientNodes (also on the hard-timeout path, so partial
// results still have it).
function computeRoomNodes() {
  if (opts.rooms <= 0) return;
  const rooms = {};
  for (let r = 0; r < opts.rooms; r++) rooms[`r${r}`] = {};
  counts.clientNodes.forEach((node, index) => {
    if (node !== null) bump(rooms[roomOf(index)], node);
  });
  counts.roomNodes = rooms;
}

let printed = false;
function printAndExit() {
  if (printed) return;
  printed = true;
  computeRoomNodes();
  counts.elapsedMs = Date.now() - startedAt;
  const line = JSON.stringify(counts) + "\n";
  process.stdout.write(line, () => process.exit(0));
  // In case the write callback never fires (closed pipe).
  setTimeout(() => process.exit(0), 500).unref();
}

let finalizing = false;
async function finalize() {
  if (finalizing) return;
  finalizing = true;
  inspectCookies();
  for (const s of sockets) {
    try {
      s.disconnect();
    } catch (_) {
      // ignore
    }
  }
  await fetchStats();
  printAndExit();
}

// Hard stop: whatever happens, print what we have and exit by --timeout-ms.
setTimeout(() => {
  log("hard timeout reached, printing partial results");
  if (!counts.statsErrors.length && counts.sessionUnknown === null) {
    counts.statsErrors.push("stats not fetched before hard timeout");
  }
  printAndExit();
}, opts.timeoutMs - 200).unref();

// Soft deadline: stop waiting for clients, leaving RESERVE_MS to wrap up.
const softTimer = setTimeout(() => {
  deadlineHit = true;
  log(`deadline after ${Date.now() - startedAt} ms; closing clients`);
  deadlineResolve();
}, opts.timeoutMs - RESERVE_MS);

process.on("uncaughtException", (e) => {
  log(`uncaught exception: ${e && e.stack}`);
  bump(counts.errorsByMessage, `uncaught: ${e && e.message}`);
});

async function main() {
  // Gentle ramp: start --ramp clients, wait until each of them has connected or
  // failed (at most 2 s), then start the next batch.
  for (let i = 0; i < opts.clients && !deadlineHit; i += opts.ramp) {
    const batch = [];
    for (let j = i; j < Math.min(i + opts.ramp, opts.clients); j++) {
      const c = runClient(j);
      clientPromises.push(c.run);
      batch.push(c.connectResult);
    }
    await Promise.race([Promise.all(batch), timer(2000), deadline]);
  }
  // Clients never started because of the deadline count as timeouts.
  counts.timeouts += opts.clients - counts.started;
  await Promise.race([Promise.all(clientPromises), deadline]);
  clearTimeout(softTimer);
  await finalize();
}

main().catch((e) => {
  log(`fatal: ${e && e.stack}`);
  bump(counts.errorsByMessage, `fatal: ${e && e.message}`);
  finalize();
});
