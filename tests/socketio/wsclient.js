#!/usr/bin/env node
// ONE raw WebSocket client (the `ws` package, no socket.io) for tether's
// WebSocket tests, e.g. a half-open client: the test freezes this process with
// SIGSTOP so it neither reads nor answers pings any more.
//
//   node wsclient.js --url ws://127.0.0.1:PORT/ws [--timeout-ms 120000]
//
// stdout, one line per event, in order:
//   OPEN                 once the WebSocket handshake has completed,
//   MESSAGE <text>       for each text message received (the test nodes greet
//                        with a line naming the node), newlines in <text>
//                        replaced by "\n" escapes so one message is one line;
//                        a binary message prints `BINARY <length>`,
//   CLOSE <code> <reason> when the connection is closed (code as `ws` reports
//                        it: 1006 if the TCP connection ended without a close
//                        frame, 1005 for a close frame without a status code;
//                        <reason> may be empty, the line then ends with the
//                        space after the code), then the process exits 0.
// Errors reported by `ws` (e.g. a failed handshake: `Unexpected server
// response: 502`) go to stderr only; `ws` then emits close as well (1006), so
// CLOSE still ends stdout.
// Nothing is sent by this client on its own: no messages, no pings. Pings from
// the peer are answered with pongs by `ws` itself (autoPong, the default).
// Diagnostics go to stderr. Exit code 0 whatever happened; 2 only for bad
// usage. --timeout-ms (default 120000; 0 = none) is a hard deadline so the
// process always ends by itself: when it expires it prints `TIMEOUT` and exits
// 0 without closing the connection politely (the socket is destroyed with the
// process). Time spent stopped (SIGSTOP) counts: the timer fires at once after
// SIGCONT if the deadline has passed.
"use strict";

const WebSocket = require("ws");

const { parseArgs } = require("./args");

let opts;
try {
  const args = parseArgs(process.argv.slice(2));
  if (!args.url) throw new Error("--url is required");
  if (!/^wss?:\/\//.test(args.url)) throw new Error(`bad --url ${args.url} (ws:// or wss://)`);
  const timeoutMs = args["timeout-ms"] === undefined ? 120000 : Number(args["timeout-ms"]);
  if (!Number.isInteger(timeoutMs) || timeoutMs < 0) throw new Error(`bad --timeout-ms: ${args["timeout-ms"]}`);
  for (const k of Object.keys(args)) {
    if (k !== "url" && k !== "timeout-ms") throw new Error(`unknown option --${k}`);
  }
  opts = { url: args.url, timeoutMs };
} catch (e) {
  process.stderr.write(`wsclient.js: ${e.message}\n`);
  process.stderr.write("usage: node wsclient.js --url ws://HOST:PORT/PATH [--timeout-ms 120000]\n");
  process.exit(2);
}

function out(line) {
  process.stdout.write(line + "\n");
}

function oneLine(text) {
  return text.replace(/\\/g, "\\\\").replace(/\r/g, "\\r").replace(/\n/g, "\\n");
}

let ended = false;
function endWith(line) {
  if (ended) return;
  ended = true;
  process.stdout.write(line + "\n", () => process.exit(0));
  // In case the write callback never fires (closed pipe).
  setTimeout(() => process.exit(0), 500).unref();
}

let ws;
try {
  // autoPong (default true): pings are answered without any code here.
  ws = new WebSocket(opts.url);
} catch (e) {
  process.stderr.write(`wsclient.js: ${e.message}\n`);
  endWith(`CLOSE 1006 ${oneLine(String(e.message))}`);
}

if (ws) {
  ws.on("open", () => out("OPEN"));
  ws.on("message", (data, isBinary) => {
    if (isBinary) out(`BINARY ${data.length}`);
    else out(`MESSAGE ${oneLine(data.toString("utf8"))}`);
  });
  ws.on("ping", () => process.stderr.write("wsclient.js: ping (pong sent by ws)\n"));
  ws.on("error", (err) => {
    process.stderr.write(`wsclient.js: error: ${err && err.message}\n`);
  });
  ws.on("close", (code, reason) => {
    endWith(`CLOSE ${code} ${oneLine(reason.toString("utf8"))}`);
  });
}

if (opts.timeoutMs > 0) {
  setTimeout(() => {
    process.stderr.write(`wsclient.js: timeout after ${opts.timeoutMs} ms\n`);
    endWith("TIMEOUT");
  }, opts.timeoutMs);
}
