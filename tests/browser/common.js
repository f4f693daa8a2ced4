// What the browser scripts (admin.js, demo.js, report.js) share: Chromium launched one way, a
// page's console watched, the scenario harness, and the one last line of results.
//
// Every script prints {"chromium_pid": N} as soon as Chromium runs (the Rust side kills it by
// that PID if the script dies), and ends with one line {"results": [...], ...}, by itself after
// plan.limit_ms at the latest.
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const puppeteer = require('puppeteer-core');

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

const pause = (ms) => new Promise((r) => setTimeout(r, ms));

// The scenarios of one run: `check(name, fn)` runs one and records whether it threw.
function harness() {
  const results = [];
  function record(name, ok, detail, ms) {
    results.push({ name, ok: !!ok, detail: detail || '', ms: ms === undefined ? null : Math.round(ms) });
  }
  async function check(name, fn) {
    const start = Date.now();
    try {
      const detail = await fn();
      record(name, true, detail, Date.now() - start);
    } catch (e) {
      record(name, false, String(e && e.stack ? e.stack : e), Date.now() - start);
    }
  }
  return { results, record, check };
}

// Every console error, uncaught exception and failed request of `page` goes to `into`: an array,
// or a function that sorts the entries itself. `label` says which page it came from.
function watch(page, label, into) {
  const put = typeof into === 'function' ? into : (e) => into.push(e);
  page.on('console', (m) => {
    if (m.type() === 'error') put({ page: label, text: m.text(), url: (m.location() || {}).url || '' });
  });
  page.on('pageerror', (e) => put({ page: label, text: 'uncaught: ' + (e && e.message ? e.message : e) }));
  page.on('requestfailed', (r) => put({ page: label, text: 'request failed: ' + r.url() + ' ' + ((r.failure() || {}).errorText || ''), url: r.url(), failed: true }));
}

// A new tab (of a browser or a context) at `url`, its console watched into `into` (see
// `watch`); `label` says which page an error came from. Desktop-sized unless `viewport`.
async function open(owner, url, label, into, viewport) {
  const page = await owner.newPage();
  await page.setViewport(viewport || { width: 1280, height: 900 });
  watch(page, label, into);
  await page.goto(url, { waitUntil: 'load' });
  return page;
}

// Debian's Chromium, headless, with exactly these flags: no network of its own (this machine has
// none, and a test must not depend on it), a fresh profile in a temporary directory; a plan may
// add some (`chromium_args`: a test certificate's SPKI to accept, for instance).
async function launch(executablePath, extraArgs) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'tether-chromium-'));
  const browser = await puppeteer.launch({
    executablePath,
    ignoreDefaultArgs: true,
    pipe: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--user-data-dir=' + profile, '--no-default-browser-check', '--disable-extensions',
      '--disable-default-apps', '--disable-domain-reliability', '--mute-audio',
      '--password-store=basic', '--use-mock-keychain',
    ].concat(extraArgs || [], ['about:blank']),
    timeout: 30000,
  });
  const pid = browser.process() ? browser.process().pid : null;
  process.stdout.write(JSON.stringify({ chromium_pid: pid }) + '\n');
  return { browser, profile };
}

// Horizontal overflow at the page's current width: how much wider than the window the document
// is, and the elements that stick out of it (left or right) without an ancestor that scrolls or
// clips them, described as tag#id.class.
function overflow(page) {
  return page.evaluate(() => {
    const width = window.innerWidth;
    const clipped = (el) => {
      for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
        if (getComputedStyle(a).overflowX !== 'visible') return true;
      }
      return false;
    };
    const name = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
      + (typeof el.className === 'string' && el.className ? '.' + el.className.trim().split(/\s+/).join('.') : '');
    const out = { width, pageOverflow: document.documentElement.scrollWidth - width, outside: [] };
    for (const el of document.body.querySelectorAll('*')) {
      const r = el.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue;
      if ((r.right > width + 1 || r.left < -1) && !clipped(el)) {
        out.outside.push(name(el) + ' [' + Math.round(r.left) + ', ' + Math.round(r.right) + ']');
      }
    }
    return out;
  });
}

// The node cards the admin page shows: id, admin state and health as the page has them.
function cards(page, upstream) {
  return page.$$eval('section.upstream', (sections, upstream) => {
    const s = sections.find((x) => x.dataset.upstream === upstream);
    if (!s) return null;
    return [...s.querySelectorAll('article.node')].map((a) => ({
      id: a.dataset.node,
      shown: a.querySelector('h3').textContent,
      state: a.dataset.state,
      badge: a.querySelector('.badge').textContent,
      health: a.dataset.health,
      word: a.querySelector('.health .word').textContent,
      check: a.querySelector('.health .check').textContent,
    }));
  }, upstream);
}

// Polls the admin page's cards of `upstream` until `pred` holds; the ms it took.
async function until(page, upstream, pred, what, limitMs) {
  const start = Date.now();
  for (;;) {
    const c = await cards(page, upstream);
    if (c && pred(c)) return Date.now() - start;
    if (Date.now() - start > limitMs) throw new Error('never saw ' + what + ' within ' + limitMs + ' ms; cards: ' + JSON.stringify(c));
    await new Promise((r) => setTimeout(r, 50));
  }
}

// Runs `main()` within plan.limit_ms, then closes Chromium, removes its profile, calls
// `teardown` and prints the last line: the results plus whatever `extra()` adds.
function run(plan, h, main, extra, teardown) {
  let chromium = null;
  async function finish(error) {
    if (error) h.record('the run', false, String(error && error.stack ? error.stack : error));
    if (teardown) teardown();
    if (chromium) {
      await chromium.browser.close().catch(() => {});
      fs.rmSync(chromium.profile, { recursive: true, force: true });
    }
    process.stdout.write(JSON.stringify(Object.assign({ results: h.results }, extra ? extra() : {})) + '\n');
    process.exit(0);
  }
  const limit = setTimeout(() => finish(new Error('the browser run took longer than ' + plan.limit_ms + ' ms')), plan.limit_ms);
  (async () => {
    fs.mkdirSync(plan.shots, { recursive: true });
    chromium = await launch(plan.chromium, plan.chromium_args);
    await main(chromium.browser);
  })().then(() => { clearTimeout(limit); return finish(); }, (e) => { clearTimeout(limit); return finish(e); });
}

module.exports = { assert, pause, harness, watch, open, launch, overflow, cards, until, run };
