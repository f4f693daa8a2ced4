// socket.io and a raw WebSocket in a real headless Chromium over tether's HTTP/2 TLS listener,
// driven by tests/it/http2.rs.
//
//   node h2.js '<plan JSON>'
//
// Plan: { chromium, chromium_args, shots, limit_ms, url }. The page (`GET /page` of
// tests/socketio/server.js, through tether) connects socket.io with its default transports and
// then opens a raw `new WebSocket('wss://…/ws')`; this script waits for the page's
// `window.result` and reports it with the protocol the page itself was loaded over
// (`nextHopProtocol`: `h2` when Chromium spoke HTTP/2). Prints {"chromium_pid": N}, then one
// line {"results": [...], "page": {...}, "console_errors": [...]}.
'use strict';

const path = require('node:path');
const { assert, harness, watch, run } = require('./common');

const plan = JSON.parse(process.argv[2]);
const h = harness();
const { check } = h;
const consoleErrors = [];
let found = null;

async function main(browser) {
  const page = await browser.newPage();
  watch(page, 'page', consoleErrors);
  await check('the page loads over TLS and socket.io connects, upgrades and echoes', async () => {
    await page.goto(plan.url + '/page', { waitUntil: 'load' });
    await page.waitForFunction(() => window.result !== null, { timeout: 20000 });
    const result = await page.evaluate(() => window.result);
    const protocol = await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
    found = Object.assign({ protocol }, result);
    await page.screenshot({ path: path.join(plan.shots, 'h2-page.png') });
    assert(result.first && result.afterUpgrade && result.raw, 'incomplete: ' + JSON.stringify(found));
    return JSON.stringify(found);
  });
  await page.close();
}

run(plan, h, main, () => ({ page: found, console_errors: consoleErrors }));
