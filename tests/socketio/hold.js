#!/usr/bin/env node
// Long-lived socket.io clients for tether's "clients move between nodes" tests
// (a node drained, removed by a config reload, gone from DNS, a rebalance after
// a node is added).
//
//   node hold.js --url http://127.0.0.1:PORT --clients N --hold-ms MS \
//     [--ramp 50] [--cookies on|off] [--timeout-ms HOLD+60000] [--ping-ms 2000] \
//     [--rejoin off|on]
//
// Every client is a real socket.io-client (`forceNew: true`: own Manager,
// engine and cookie jar) with the DEFAULT transports (polling handshake, then
// upgrade to WebSocket) and socket.io's DEFAULT reconnection (on, unlimited
// attempts, randomizationFactor 0.5), except `reconnectionDelay: 500` and
// `reconnectionDelayMax: 2000` so the tests are quick. `--cookies on` (the
// default) sets `withCredentials: true`, which in Node.js gives each engine a
// cookie jar that keeps the proxy's sticky cookie; `off` leaves no jar at all
// (see client.js for the details).
//
// Run:
//   1. Start --clients sockets in batches of --ramp: each batch is started, then
//      waited for until every client of it has its first node or its first
//      connect error (at most 2 s), then the next batch. After the last batch,
//      wait until every connected client's engine has upgraded to WebSocket
//      (at most 3 s; a client still on polling then stays on polling).
//   2. Print ONE line on stdout:
//        READY {"clients":N,"connected":n,"firstNodes":{"node-a":k,...},
//               "websocket":n,"elapsedMs":ms}
//      connected = clients connected now, firstNodes = clients by the node of
//      their first `node` event, websocket = connected clients whose engine has
//      already upgraded to WebSocket. The Rust test reads this line and then
//      acts on the proxy (drain a node, reload, ...).
//   3. Hold for --hold-ms. Each client learns its node from the server's `node`
//      event (server.js emits it on every connection, so again after every
//      reconnection) and records (node, t ms since start) for every
//      (re)connection; a reconnection to a node other than the previous one is a
//      move. Every --ping-ms (0 = never) each connected client that knows its
//      node sends an acknowledged `echo` (ack timeout 3 s); an ack whose `node`
//      is not the socket's current node counts in acksFromOtherNode.
//   4. Disconnect every socket (those "io client disconnect"s are not counted)
//      and print ONE line on stdout:
//        DONE {json}
//      with
//        clients, connected (clients connected at least once), moves (node
//        changes, all clients), movedClients (clients with 1+ moves), movedTwice
//        (clients with 2+ moves), reconnects (`connect` events after a client's
//        first one), reconnectAttempts (socket.io `reconnect_attempt` events),
//        finalNodes {node: count} (current node of the clients connected at the
//        end), disconnected (clients not connected at the end),
//        connectErrors {message: count}, sessionUnknown, disconnectReasons
//        {reason: count}, closeCodes {code: count}, closeReasons
//        {"code reason": count}, acks, ackTimeouts, acksLost (acks rejected
//        because the socket disconnected while waiting), acksFromOtherNode,
//        moveTimes [t ms relative to READY of every move, in order],
//        reconnectGapsMs [for every move: the client's `connect` time minus its
//        previous `disconnect` time], readyAtMs (READY time since start, null if
//        READY was never printed; moveTimes are then relative to the start),
//        histories [per client number: [[node, t ms since start], ...]],
//        hardTimeout (true if the DONE came from --timeout-ms), elapsedMs.
// Everything else goes to stderr. Exit code 0 whatever happened (the Rust test
// judges the numbers); 2 only for bad usage. --timeout-ms (default
// hold-ms + 60000) is a hard deadline counted from the start: DONE is then
// printed with what there is and the process exits 0.
//
// Connect errors (`connect_error`, counted by message, also during
// reconnection): socket.io-client reports engine.io transport errors as an
// Error whose message is engine.io-client's reason ("xhr poll error",
// "xhr post error", "websocket error", "timeout", ...), with the HTTP status in
// `err.description` and the XMLHttpRequest in `err.context`. engine.io's
// `{"code":1,"message":"Session ID unknown"}` answer (HTTP 400) is only in
// `err.context.responseText`, so the key is extended with the status and the
// server's message, e.g. "xhr poll error (400 Session ID unknown)".
// `sessionUnknown` counts connect errors AND disconnect descriptions (a
// connected client's poll answered 400 gives a "transport error" disconnect
// with the same kind of TransportError) that mention "Session ID unknown".
// socket.io-client 4.8 also emits "disconnect" for an attempt whose engine
// opened but whose socket.io CONNECT never completed (its POST answered 400:
// connect_error AND "disconnect" with reason "transport error" for the same
// failure); such disconnects of a never-connected socket are NOT counted
// anywhere (not in disconnectReasons, closeCodes nor sessionUnknown), so one
// failure counts once.
//
// Disconnect reasons are socket.io-client's: "transport close" (connection
// closed: WebSocket close, or a polling request answered with an engine.io
// close packet), "transport error" (a polling request failed, a WebSocket
// error), "ping timeout", "io server disconnect" (the server sent a socket.io
// DISCONNECT packet, e.g. `socket.disconnect()` on the server), "parse error".
// NOTE: after "io server disconnect" socket.io does NOT reconnect by itself;
// `--rejoin on` calls `socket.connect()` 500 ms later (what applications do);
// the default `off` leaves socket.io's behaviour as is. (server.js's SIGTERM
// does `io.close()`, which closes the engine connections WITHOUT a DISCONNECT
// packet: clients see "transport close" and reconnect.)
//
// WebSocket close codes (closeCodes / closeReasons): socket.io-client 4.8.x
// (engine.io-client 6.6.x) passes a second argument to the "disconnect"
// listener, `socket.on("disconnect", (reason, description) => ...)`. When the
// engine's transport is the WebSocket and the connection was closed, the chain
// is: `ws` 'close' -> transports/websocket.js
// `ws.onclose = (closeEvent) => this.onClose({ description: "websocket
// connection closed", context: closeEvent })` -> engine Socket
// `_onClose("transport close", details)` -> Manager `onclose(reason,
// description)` -> Socket "disconnect"(reason, description). So for reason
// "transport close" over WebSocket, `description.context` is the `ws` package's
// CloseEvent with `code` (number), `reason` (string) and `wasClean`; e.g. a
// proxy's close frame 1012 "moving" gives code 1012, reason "moving"; a TCP
// connection dropped without a close frame gives 1006; engine.io's own close
// (server.js stopped) gives 1005 (close frame without status code). Nothing
// of that kind exists for the other cases: over polling the description is
// `{description: "transport closed by the server"}` (no code), "transport
// error" gives a TransportError (`description` = HTTP status for polling or the
// ws ErrorEvent for websocket), "ping timeout" / "io server disconnect" give no
// description. A close of the WebSocket while it is still being probed for the
// upgrade (before the engine switched to it) does not disconnect the socket and
// is not seen here. Measured on loopback (Node 20, ws 8.21): a test proxy
// sending a 1012 "moving" close frame -> closeCodes {"1012":n}, closeReasons
// {"1012 moving":n}; server.js killed with SIGTERM -> {"1005":n}, closeReasons
// {"1005 ":n} (an empty reason leaves the key ending with a space).
"use strict";

const { io } = require("socket.io-client");

const { parseArgs } = require("./args");

function intArg(args, name, dflt, min) {
  const v = args[name] === undefined ? dflt : Number(args[name]);
  if (!Number.isInteger(v) || v < min) throw new Error(`bad --${name}: ${args[name]}`);
  return v;
}

function onOff(args, name, dflt) {
  const v = args[name] === undefined ? dflt : args[name];
  if (v !== "on" && v !== "off") throw new Error(`bad --${name}: ${v} (on or off)`);
  return v === "on";
}

let opts;
try {
  const args = parseArgs(process.argv.slice(2));
  if (!args.url) throw new Error("--url is required");
  if (args.clients === undefined) throw new Error("--clients is required");
  if (args["hold-ms"] === undefined) throw new Error("--hold-ms is required");
  const holdMs = intArg(args, "hold-ms", 0, 0);
  opts = {
    url: args.url,
    clients: intArg(args, "clients", 0, 1),
    holdMs,
    ramp: intArg(args, "ramp", 50, 1),
    cookies: onOff(args, "cookies", "on"),
    timeoutMs: intArg(args, "timeout-ms", holdMs + 60000, 1000),
    pingMs: intArg(args, "ping-ms", 2000, 0),
    rejoin: onOff(args, "rejoin", "off"),
  };
  const known = ["url", "clients", "hold-ms", "ramp", "cookies", "timeout-ms", "ping-ms", "rejoin"];
  for (const k of Object.keys(args)) {
    if (!known.includes(k)) throw new Error(`unknown option --${k}`);
  }
} catch (e) {
  process.stderr.write(`hold.js: ${e.message}\n`);
  process.stderr.write(
    "usage: node hold.js --url URL --clients N --hold-ms MS [--ramp 50] [--cookies on|off]\n" +
      "       [--timeout-ms HOLD+60000] [--ping-ms 2000] [--rejoin off|on]\n",
  );
  process.exit(2);
}

const ACK_TIMEOUT_MS = 3000;
const REJOIN_DELAY_MS = 500;
const UPGRADE_WAIT_MS = 3000;
const SESSION_UNKNOWN = "Session ID unknown";

const startedAt = Date.now();
const now = () => Date.now() - startedAt;

const counts = {
  clients: opts.clients,
  connected: 0,
  moves: 0,
  movedClients: 0,
  movedTwice: 0,
  reconnects: 0,
  reconnectAttempts: 0,
  finalNodes: {},
  disconnected: 0,
  connectErrors: {},
  sessionUnknown: 0,
  disconnectReasons: {},
  closeCodes: {},
  closeReasons: {},
  acks: 0,
  ackTimeouts: 0,
  acksLost: 0,
  acksFromOtherNode: 0,
  moveTimes: [],
  reconnectGapsMs: [],
  readyAtMs: null,
  histories: [],
  hardTimeout: false,
  elapsedMs: 0,
};

function bump(obj, key, n = 1) {
  obj[key] = (obj[key] || 0) + n;
}

function log(msg) {
  process.stderr.write(`hold.js: ${msg}\n`);
}

const states = [];
let finishing = false; // set before our own disconnects: nothing counted after

// "xhr poll error" -> "xhr poll error (400 Session ID unknown)" when the error
// carries an HTTP status and an engine.io error body (see header).
function errorKey(err) {
  if (!err) return "unknown";
  let key = err.message || String(err);
  try {
    const parts = [];
    if (typeof err.description === "number") parts.push(String(err.description));
    const text = err.context && err.context.responseText;
    if (typeof text === "string" && text.length) {
      let msg = text;
      try {
        const body = JSON.parse(text);
        if (body && typeof body.message === "string") msg = body.message;
      } catch (_) {
        // not JSON: keep the first line of the raw text (xmlhttprequest-ssl
        // puts a network error's stack there, e.g. "Error: connect
        // ECONNREFUSED 127.0.0.1:PORT" with status 0)
      }
      parts.push(msg.split("\n")[0].slice(0, 200));
    } else if (err.description && typeof err.description.message === "string") {
      parts.push(err.description.message.slice(0, 200)); // ws ErrorEvent
    }
    if (parts.length) key += ` (${parts.join(" ")})`;
  } catch (_) {
    // diagnostics only
  }
  return key;
}

// Close code / reason of a "disconnect" description, if it holds a ws CloseEvent.
function closeInfo(description) {
  const ctx = description && description.context;
  if (ctx && typeof ctx.code === "number") {
    return { code: ctx.code, reason: typeof ctx.reason === "string" ? ctx.reason : "" };
  }
  return null;
}

function startClient(index) {
  const state = {
    index,
    socket: null,
    connects: 0,
    connected: false,
    node: null, // node of the current connection (null until its `node` event)
    lastNode: null, // last node ever seen
    firstNode: null,
    moves: 0,
    history: [],
    lastConnectAt: null,
    lastDisconnectAt: null,
    seq: 0,
    pingTimer: null,
  };
  states[index] = state;
  counts.histories[index] = state.history;

  let settle;
  const settled = new Promise((resolve) => {
    settle = resolve;
  });

  const socket = io(opts.url, {
    // transports left at the default: polling handshake, then WebSocket upgrade.
    forceNew: true, // own Manager/engine/cookie jar per client
    withCredentials: opts.cookies, // on: per-engine cookie jar in Node.js
    reconnection: true,
    reconnectionDelay: 500,
    reconnectionDelayMax: 2000,
    // reconnectionAttempts (Infinity), randomizationFactor (0.5), timeout
    // (20000): socket.io defaults.
  });
  state.socket = socket;

  socket.io.on("reconnect_attempt", () => {
    if (!finishing) counts.reconnectAttempts++;
  });

  socket.on("connect", () => {
    const t = now();
    state.connects++;
    if (state.connects === 1) counts.connected++;
    else if (!finishing) counts.reconnects++;
    state.connected = true;
    state.lastConnectAt = t;
  });

  socket.on("node", (id) => {
    const t = now();
    state.history.push([id, t]);
    if (state.firstNode === null) {
      state.firstNode = id;
      settle();
    }
    if (state.lastNode !== null && id !== state.lastNode && !finishing) {
      state.moves++;
      counts.moves++;
      if (state.moves === 1) counts.movedClients++;
      if (state.moves === 2) counts.movedTwice++;
      counts.moveTimes.push(t);
      if (state.lastDisconnectAt !== null && state.lastConnectAt !== null) {
        counts.reconnectGapsMs.push(state.lastConnectAt - state.lastDisconnectAt);
      }
    }
    state.node = id;
    state.lastNode = id;
  });

  socket.on("connect_error", (err) => {
    settle();
    if (finishing) return;
    const key = errorKey(err);
    bump(counts.connectErrors, key);
    if (key.includes(SESSION_UNKNOWN)) counts.sessionUnknown++;
  });

  socket.on("disconnect", (reason, description) => {
    // socket.io-client also emits "disconnect" when the engine was open but the
    // socket.io connection never completed (e.g. the CONNECT packet's POST got
    // a 400 "Session ID unknown"); connect_error already reports that attempt,
    // so only disconnects of a connected socket are counted.
    const wasConnected = state.connected;
    state.connected = false;
    state.node = null;
    if (!wasConnected) return;
    state.lastDisconnectAt = now();
    if (finishing) return;
    bump(counts.disconnectReasons, reason);
    const close = closeInfo(description);
    if (close) {
      bump(counts.closeCodes, String(close.code));
      bump(counts.closeReasons, `${close.code} ${close.reason}`);
    }
    if (description && reason !== "transport close" && errorKey(description).includes(SESSION_UNKNOWN)) {
      counts.sessionUnknown++;
    }
    if (reason === "io server disconnect" && opts.rejoin) {
      setTimeout(() => {
        if (!finishing && !socket.connected) socket.connect();
      }, REJOIN_DELAY_MS);
    }
  });

  if (opts.pingMs > 0) {
    state.pingTimer = setInterval(() => {
      if (finishing || !socket.connected || state.node === null) return;
      const payload = { client: index, seq: state.seq++ };
      socket
        .timeout(ACK_TIMEOUT_MS)
        .emitWithAck("echo", payload)
        .then(
          (r) => {
            if (finishing) return;
            counts.acks++;
            if (!r || r.node !== state.node) counts.acksFromOtherNode++;
          },
          (e) => {
            if (finishing) return;
            // socket.io-client: "operation has timed out" for a timeout,
            // "socket has been disconnected" when the connection went away.
            if (e && /timed out/.test(e.message)) counts.ackTimeouts++;
            else counts.acksLost++;
          },
        );
    }, opts.pingMs);
  }

  return settled;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function tally(byNode) {
  const out = {};
  for (const n of byNode) if (n !== null) bump(out, n);
  return out;
}

function onWebsocket(s) {
  try {
    const e = s.socket.io.engine;
    return s.connected && e && e.transport && e.transport.name === "websocket";
  } catch (_) {
    return false;
  }
}

function connectedNotUpgraded() {
  return states.filter((s) => s.connected && !onWebsocket(s)).length;
}

function printReady() {
  const line = {
    clients: opts.clients,
    connected: states.filter((s) => s.connected).length,
    firstNodes: tally(states.map((s) => s.firstNode)),
    websocket: states.filter(onWebsocket).length,
    elapsedMs: now(),
  };
  counts.readyAtMs = line.elapsedMs;
  process.stdout.write(`READY ${JSON.stringify(line)}\n`);
}

let printed = false;
function finishAndExit() {
  if (printed) return;
  printed = true;
  // Snapshot the end state before our own disconnects.
  const connectedStates = states.filter((s) => s && s.connected);
  counts.finalNodes = tally(connectedStates.map((s) => s.node));
  counts.disconnected = opts.clients - connectedStates.length;
  finishing = true;
  for (const s of states) {
    if (!s) continue;
    if (s.pingTimer) clearInterval(s.pingTimer);
    try {
      s.socket.disconnect();
    } catch (_) {
      // ignore
    }
  }
  const base = counts.readyAtMs === null ? 0 : counts.readyAtMs;
  counts.moveTimes = counts.moveTimes.map((t) => t - base);
  counts.elapsedMs = now();
  process.stdout.write(`DONE ${JSON.stringify(counts)}\n`, () => process.exit(0));
  // In case the write callback never fires (closed pipe).
  setTimeout(() => process.exit(0), 500).unref();
}

// Hard stop: whatever happens, print what we have and exit by --timeout-ms.
setTimeout(() => {
  log(`hard timeout after ${now()} ms, printing partial results`);
  counts.hardTimeout = true;
  finishAndExit();
}, Math.max(0, opts.timeoutMs - 200));

process.on("uncaughtException", (e) => {
  log(`uncaught exception: ${e && e.stack}`);
  bump(counts.connectErrors, `uncaught: ${e && e.message}`);
});

async function main() {
  for (let i = 0; i < opts.clients && !printed; i += opts.ramp) {
    const batch = [];
    for (let j = i; j < Math.min(i + opts.ramp, opts.clients); j++) batch.push(startClient(j));
    await Promise.race([Promise.all(batch), sleep(2000)]);
  }
  // Give the engines time to finish their upgrade to WebSocket (it follows the
  // polling handshake by a few ms), so the test acts on WebSocket connections.
  const upgradeUntil = Date.now() + UPGRADE_WAIT_MS;
  while (!printed && Date.now() < upgradeUntil && connectedNotUpgraded() > 0) await sleep(50);
  if (printed) return;
  printReady();
  log(`ready after ${counts.readyAtMs} ms, holding ${opts.holdMs} ms`);
  await sleep(opts.holdMs);
  finishAndExit();
}

main().catch((e) => {
  log(`fatal: ${e && e.stack}`);
  bump(counts.connectErrors, `fatal: ${e && e.message}`);
  finishAndExit();
});
