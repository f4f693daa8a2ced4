#!/usr/bin/env node
// Load client for tether's socket.io cluster test, socket.io-client 2.x
// (engine.io protocol 3): the same command line, behaviour and JSON as
// tests/socketio/client.js (4.x).
//
//   node client.js --url http://127.0.0.1:PORT --clients 200 --messages 20 \
//     --stats http://127.0.0.1:A,http://127.0.0.1:B,http://127.0.0.1:C \
//     [--timeout-ms 60000] [--ramp 20] [--upgrade-timeout-ms 10000] \
//     [--ack-timeout-ms 5000] [--cookies on|off] [--keepalive on|off]
//
// Every client is a real socket.io-client 2.5 with the DEFAULT transports:
// the engine.io handshake over HTTP long-polling (`EIO=3`; in Node.js the
// client supports binary, so payloads come as engine.io 3's binary framing),
// then the upgrade to WebSocket. Each client connects (reconnection off),
// waits for the server's `node` event, waits for the upgrade, sends --messages
// acknowledged `echo` events one after the other and checks every ack comes
// from its first node; then ONE JSON line as the 4.x client prints. Exit code
// 0 whatever happened; 2 only for bad usage.
//
// Differences from 4.x that the script bridges:
//   - no `socket.timeout().emitWithAck`: acks are waited for with a timer;
//   - the engine closing before the namespace is connected (a poll answered
//     `400 Session ID unknown`) gives `disconnect`, not `connect_error`: it is
//     counted as a connect error (`disconnect before connect: <reason>`).
//
// Cookies: engine.io-client 3.x keeps no cookies in Node.js (`withCredentials`
// only matters in browsers). --cookies on (the default) gives each client a jar
// as 2.x users did it: its own `extraHeaders` object, which the client passes
// by reference to every polling request and to the WebSocket handshake; the
// `Set-Cookie` of every polling response is stored in it as a `cookie` header.
// --cookies off: no jar (withCookie stays 0); only `sid=` ties requests
// together.
//
// --keepalive: as in the 4.x client. Without it, the client's default
// `agent: false` (a new connection per polling request, `Connection: close`);
// `on` / `off`: one `http.Agent({ keepAlive })` per client, for the polling
// requests and the WebSocket upgrade.
"use strict";

const http = require("node:http");
const io = require("socket.io-client");
const { Request } = require("engine.io-client/lib/transports/polling-xhr");

// The per-client jar of --cookies on: `Set-Cookie` of a polling response goes
// into the `cookie` entry of the request's extraHeaders (the client's own
// object, shared by reference with its transports). `_jar` is not enumerable,
// so it is never sent as a header itself.
const onLoad = Request.prototype.onLoad;
Request.prototype.onLoad = function () {
  const headers = this.extraHeaders;
  const jar = headers && headers._jar;
  if (jar) {
    let set = null;
    try {
      set = this.xhr.getResponseHeader("set-cookie");
    } catch (_) {
      // no headers
    }
    for (const line of [].concat(set || [])) {
      const pair = String(line).split(";")[0];
      const eq = pair.indexOf("=");
      if (eq > 0) jar.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
    }
    if (jar.size > 0) {
      headers.cookie = [...jar].map(([n, v]) => `${n}=${v}`).join("; ");
    }
  }
  return onLoad.apply(this, arguments);
};

const { parseArgs } = require("../socketio/args");

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
  };
} catch (e) {
  process.stderr.write(`client.js: ${e.message}\n`);
  process.stderr.write(
    "usage: node client.js --url URL --clients N --messages M --stats URL[,URL...] [--timeout-ms 60000]\n" +
      "       [--cookies on|off] [--keepalive on|off]\n",
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
  elapsedMs: 0,
};

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
    // transports left at the default: ["polling", "websocket"]
    // -> handshake over HTTP long-polling, then upgrade to WebSocket.
    reconnection: false,
    forceNew: true, // own Manager/engine per client
    timeout: Math.min(20000, opts.timeoutMs), // connect timeout
  };
  if (opts.cookies) {
    // Non-empty, or engine.io-client ignores it; the jar rides along unsent.
    const headers = { "x-client": String(index) };
    Object.defineProperty(headers, "_jar", { value: new Map(), enumerable: false });
    clientOpts.extraHeaders = headers;
  }
  if (opts.keepalive !== null) {
    // Used by the polling requests and by the WebSocket upgrade.
    clientOpts.agent = new http.Agent({ keepAlive: opts.keepalive === "on" });
  }
  const socket = io(opts.url, clientOpts);
  sockets.push({ socket, jar: clientOpts.extraHeaders && clientOpts.extraHeaders._jar });

  const state = { done: false, firstNode: null, connectedOnce: false, failed: false };
  let nodeResolve;
  const gotNode = new Promise((resolve) => {
    nodeResolve = resolve;
  });
  socket.on("node", (id) => {
    if (state.firstNode === null) {
      state.firstNode = id;
      nodeResolve(id);
    }
  });

  let disconnectResolve;
  const disconnected = new Promise((resolve) => {
    disconnectResolve = resolve;
  });

  const connectResult = new Promise((resolve) => {
    socket.once("connect", () => {
      state.connectedOnce = true;
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
    // One connect error per client, whichever way the connect fails.
    const fail = (msg) => {
      if (state.connectedOnce || state.failed) return;
      state.failed = true;
      counts.connectErrors++;
      bump(counts.errorsByMessage, msg);
      resolve(false);
    };
    socket.once("connect_error", (err) => fail((err && err.message) || String(err)));
    socket.once("disconnect", (reason) => fail(`disconnect before connect: ${reason}`));
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
        emitWithAck(socket, "echo", payload, opts.ackTimeoutMs),
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

// `{ ok: true, r }` with the ack's argument, or `{ ok: false }` after ms.
function emitWithAck(socket, event, payload, ms) {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve({ ok: false }), ms);
    socket.emit(event, payload, (r) => {
      clearTimeout(t);
      resolve({ ok: true, r });
    });
  });
}

function inspectCookies() {
  for (const { jar } of sockets) {
    if (!jar || jar.size === 0) continue;
    counts.withCookie++;
    for (const [name] of jar) bump(counts.cookieNames, name);
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

let printed = false;
function printAndExit() {
  if (printed) return;
  printed = true;
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
  for (const { socket: s } of sockets) {
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
