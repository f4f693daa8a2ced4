// The admin status page in a real headless Chromium, driven by tests/it/admin_page.rs.
//
//   node admin.js '<plan JSON>'
//
// The plan names the tether admin addresses the Rust test started (see admin_page.rs). When a
// scenario needs the Rust side to act (stop a demo node), this script prints one line
// {"ask": ...} and waits for one line on stdin. Everything it found goes out as one last line:
// {"results": [{name, ok, detail, ms}], "console_errors": [...], "chromium_pid": N}.
// It launches Debian's /usr/bin/chromium with background networking off and a fresh profile in
// a temporary directory, and ends by itself (closing Chromium) after plan.limit_ms.
'use strict';

const path = require('node:path');
const http = require('node:http');
const readline = require('node:readline');
const { assert, harness, watch, open, run, cards, until } = require('./common');

const plan = JSON.parse(process.argv[2]);
const h = harness();
const { results, check } = h;
const consoleErrors = [];
const expectedErrors = [];
let browser = null;
let attacker = null;

const stdin = readline.createInterface({ input: process.stdin });
const replies = [];
let waiting = null;
stdin.on('line', (line) => {
  if (waiting) { const w = waiting; waiting = null; w(line); } else replies.push(line);
});
function ask(what) {
  process.stdout.write(JSON.stringify({ ask: what }) + '\n');
  return new Promise((resolve) => {
    if (replies.length) resolve(replies.shift()); else waiting = resolve;
  });
}

async function api(admin, method, p, headers) {
  const res = await fetch(admin + p, { method, headers: headers || {} });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch (_) { /* not JSON */ }
  return { status: res.status, json, text };
}

async function nodeStatus(admin, upstream, id, token) {
  const h = { 'X-Tether-Admin': '1' };
  if (token) h.Authorization = 'Bearer ' + token;
  const s = await api(admin, 'GET', '/status', h);
  assert(s.status === 200, '/status answered ' + s.status);
  const u = s.json.upstreams.find((x) => x.name === upstream);
  return u && u.nodes.find((n) => n.id === id);
}

// A tab on an admin page, its console errors in `consoleErrors`.
const openTab = (context, url, label, viewport) => open(context, url, label, consoleErrors, viewport);

async function press(page, upstream, id, action) {
  const pressed = await page.$$eval('section.upstream', (sections, upstream, id, action) => {
    const s = sections.find((x) => x.dataset.upstream === upstream);
    const card = s && [...s.querySelectorAll('article.node')].find((a) => a.dataset.node === id);
    const b = card && card.querySelector('button[data-action="' + action + '"]');
    if (!b || b.disabled) return false;
    b.click();
    return true;
  }, upstream, id, action);
  assert(pressed, 'no enabled ' + action + ' button for ' + id);
}

async function shot(page, name, options) {
  const file = path.join(plan.shots, 'admin-' + name + '.png');
  await page.screenshot(Object.assign({ path: file }, options || {}));
  return file;
}

// Layout checks: nothing wider than the window, no card wider than itself, long ids cut with an
// ellipsis but whole in their title.
function layout(page) {
  return page.evaluate(() => {
    const doc = document.documentElement;
    const out = { pageOverflow: doc.scrollWidth - window.innerWidth, wideCards: [], cards: 0, wideSections: [] };
    for (const a of document.querySelectorAll('article.node')) {
      out.cards++;
      const r = a.getBoundingClientRect();
      if (a.scrollWidth > a.clientWidth + 1 || r.right > window.innerWidth + 1 || r.left < -1) out.wideCards.push(a.dataset.node);
    }
    for (const s of document.querySelectorAll('section.upstream')) {
      if (s.scrollWidth > s.clientWidth + 1) out.wideSections.push(s.dataset.upstream);
    }
    out.images = document.querySelectorAll('img').length;
    out.pwned = window.__pwned === 1;
    return out;
  });
}

// ---- scenarios ----

async function mainScenarios(context) {
  const m = plan.main;
  const page = await openTab(context, m.admin + '/', 'main');
  await check('the page lists every node with its state', async () => {
    await until(page, m.upstream, (c) => c.length === m.nodes.length && c.every((n) => n.state === 'active' && n.health === 'healthy'), 'every node active and healthy', 10000);
    const c = await cards(page, m.upstream);
    assert(JSON.stringify(c.map((n) => n.shown)) === JSON.stringify(m.nodes), 'ids shown: ' + JSON.stringify(c.map((n) => n.shown)));
    assert(c.every((n) => n.badge === 'active' && n.word === 'healthy'), JSON.stringify(c));
    // Let a few polls feed the charts before the picture.
    await new Promise((r) => setTimeout(r, 3500));
    await shot(page, 'nodes', { fullPage: true });
    return c.map((n) => n.id + ': ' + n.state + ', ' + n.health + ' (' + n.check + ')').join('; ');
  });

  await check('a node drained with a deadline shows its open tunnels and when the last closes', async () => {
    // The node holding the most of the test's WebSockets, drained through the API with a
    // deadline far enough away that nothing closes while the page is read.
    const all = await Promise.all(m.nodes.map((id) => nodeStatus(m.admin, m.upstream, id)));
    const busiest = all.reduce((a, b) => (b.open_tunnels > a.open_tunnels ? b : a));
    assert(busiest.open_tunnels > 0, 'no node holds a tunnel: ' + JSON.stringify(all.map((n) => n.open_tunnels)));
    const id = busiest.id;
    const drained = await api(m.admin, 'POST', '/upstreams/' + m.upstream + '/nodes/' + id + '/drain?close_after=300s&spread=60s', { 'X-Tether-Admin': '1' });
    assert(drained.status === 200 && drained.json.leaving && drained.json.leaving.reason === 'drained', JSON.stringify(drained.json));
    const leavingText = () => page.$$eval('article.node', (cards, id) => {
      const c = cards.find((a) => a.dataset.node === id);
      const l = c && c.querySelector('.leaving');
      return l && !l.hidden ? l.textContent : null;
    }, id);
    let text = null;
    const begun = Date.now();
    while (Date.now() - begun < 5000 && !(text = await leavingText())) await new Promise((r) => setTimeout(r, 100));
    assert(text, 'the page shows no leave for ' + id);
    const want = 'leaving (drained): ' + busiest.open_tunnels + (busiest.open_tunnels === 1 ? ' tunnel' : ' tunnels') + ' open';
    assert(text.startsWith(want), 'shown: "' + text + '", want "' + want + '…"');
    const s = await nodeStatus(m.admin, m.upstream, id);
    assert(s.leaving && s.leaving.closes_until - s.leaving.closes_from === 60, '/status leaving: ' + JSON.stringify(s.leaving));
    await shot(page, 'leaving', { fullPage: true });
    // Enabled again: the leave is called off and the page stops showing it.
    const enabled = await api(m.admin, 'POST', '/upstreams/' + m.upstream + '/nodes/' + id + '/enable', { 'X-Tether-Admin': '1' });
    assert(enabled.status === 200, JSON.stringify(enabled.json));
    const gone = Date.now();
    while (Date.now() - gone < 5000 && (await leavingText())) await new Promise((r) => setTimeout(r, 100));
    assert(!(await leavingText()), 'still shown as leaving after enable');
    const after = await nodeStatus(m.admin, m.upstream, id);
    assert(after.leaving === null && after.open_tunnels === busiest.open_tunnels, 'after enable: ' + JSON.stringify(after));
    return id + ': "' + text + '"; gone after enable, its ' + after.open_tunnels + ' tunnel(s) kept';
  });

  await check('the upstream shows its WebSocket frames each way', async () => {
    const s = await api(m.admin, 'GET', '/status', {});
    const w = s.json.upstreams.find((x) => x.name === m.upstream).websocket;
    // Each of the test's WebSockets got its node's greeting: frames down.
    assert(w && w.frames_down >= 2 && typeof w.ends.ping_timeout === 'number', '/status websocket: ' + JSON.stringify(w));
    const text = await page.$eval('section.upstream[data-upstream="' + m.upstream + '"] .websocket', (e) => (e.hidden ? null : e.textContent));
    assert(text && /^WebSocket frames [0-9.]+\/s up, [0-9.]+\/s down/.test(text), 'shown: ' + text);
    return '/status: ' + w.frames_up + ' up, ' + w.frames_down + ' down; page: "' + text + '"';
  });

  await check('drain from the page: /status says draining and the page shows it without a reload', async () => {
    await page.evaluate(() => { window.__sameDocument = true; });
    await press(page, m.upstream, m.drain, 'drain');
    const shown = await until(page, m.upstream, (c) => c.some((n) => n.id === m.drain && n.state === 'draining' && n.badge === 'draining'), m.drain + ' draining', 5000);
    const n = await nodeStatus(m.admin, m.upstream, m.drain);
    assert(n.admin_state === 'draining', '/status says ' + n.admin_state);
    assert(await page.evaluate(() => window.__sameDocument === true), 'the page was reloaded');
    const note = await page.$eval('#notice', (e) => e.textContent);
    assert(note.includes('draining'), 'notice: ' + note);
    return 'shown after ' + shown + ' ms; notice "' + note + '"';
  });

  await check('a stopped node turns unhealthy on the page within fall x interval (+ one poll)', async () => {
    const reply = await ask({ stop: m.stop });
    assert(reply === 'stopped', 'the test said ' + reply);
    const took = await until(page, m.upstream, (c) => c.some((n) => n.id === m.stop && n.health === 'unhealthy' && n.word === 'unhealthy'), m.stop + ' unhealthy', m.down_within_ms);
    const c = (await cards(page, m.upstream)).find((n) => n.id === m.stop);
    assert(c.check.startsWith('check failed'), 'check text: ' + c.check);
    await new Promise((r) => setTimeout(r, 2500));
    await shot(page, 'unhealthy', { fullPage: true });
    return 'unhealthy on the page ' + took + ' ms after the stop (bound ' + m.down_within_ms + ' ms); "' + c.check + '"';
  });

  // A page on another site (another host and port) whose form posts to the admin API.
  await check('a plain cross-site form POST is refused and the node stays active', async () => {
    const target = m.admin + '/upstreams/' + encodeURIComponent(m.upstream) + '/nodes/' + encodeURIComponent(m.csrf) + '/drain';
    const html = '<!doctype html><title>another site</title>'
      + '<form id=f method=POST action="' + target + '"><input type=hidden name=x value=1></form>'
      + '<script>'
      + 'fetch(' + JSON.stringify(target) + ', {method: "POST", mode: "no-cors", body: "x=1"}).catch(() => {});'
      + 'fetch(' + JSON.stringify(target) + ', {method: "POST", headers: {"X-Tether-Admin": "1"}}).catch(() => {});'
      + 'setTimeout(() => document.getElementById("f").submit(), 300);'
      + '</script>';
    attacker = http.createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(html);
    });
    await new Promise((r) => attacker.listen(0, plan.other_host, r));
    const site = 'http://' + plan.other_host + ':' + attacker.address().port + '/';
    const evil = await context.newPage();
    await evil.setViewport({ width: 1000, height: 400 });
    watch(evil, 'another site', expectedErrors);
    const seen = [];
    evil.on('response', (r) => { if (r.url().startsWith(m.admin)) seen.push(r.request().method() + ' ' + r.status()); });
    await evil.goto(site, { waitUntil: 'load' });
    // The form submits itself 300 ms after the page loads.
    if (!evil.url().startsWith(m.admin)) await evil.waitForNavigation({ waitUntil: 'load', timeout: 10000 });
    const body = await evil.evaluate(() => document.body.innerText);
    assert(evil.url().startsWith(m.admin), 'the form did not reach the admin port: ' + evil.url());
    assert(body.includes('X-Tether-Admin'), 'the answer does not explain the header: ' + body);
    assert(seen.includes('POST 403'), 'responses seen: ' + JSON.stringify(seen));
    await shot(evil, 'cross-site');
    await evil.close();
    const n = await nodeStatus(m.admin, m.upstream, m.csrf);
    assert(n.admin_state === 'active', m.csrf + ' is ' + n.admin_state);
    const c = (await cards(page, m.upstream)).find((x) => x.id === m.csrf);
    assert(c.state === 'active', 'the page shows ' + c.state);
    return 'admin answers seen by the other site: ' + seen.join(', ') + '; ' + m.csrf + ' still active; the browser showed: ' + body.slice(0, 120);
  });

  await check('without the header a POST is refused with 403 explaining it; with it, it works', async () => {
    const plain = await api(m.admin, 'POST', '/upstreams/' + m.upstream + '/nodes/' + m.csrf + '/drain');
    assert(plain.status === 403 && plain.json.error.includes('X-Tether-Admin: 1'), JSON.stringify(plain));
    const reload = await api(m.admin, 'POST', '/reload');
    assert(reload.status === 403, 'reload: ' + reload.status);
    const meant = await api(m.admin, 'POST', '/upstreams/' + m.upstream + '/nodes/' + m.csrf + '/enable', { 'X-Tether-Admin': '1' });
    assert(meant.status === 200, JSON.stringify(meant));
    return 'plain POST: ' + plain.status + ', /reload: ' + reload.status + ', with X-Tether-Admin: ' + meant.status;
  });
  await page.close();
}

async function tokenScenarios() {
  const t = plan.token;
  // A fresh context: its own sessionStorage, like a new browser.
  const context = await browser.createBrowserContext();
  const page = await openTab(context, t.admin + '/', 'token');
  const statusRequests = [];
  page.on('request', (r) => { if (r.url().startsWith(t.admin + '/status')) statusRequests.push(r.headers().authorization || ''); });

  await check('with a token configured the page asks for it before reading anything', async () => {
    await page.waitForSelector('#login:not([hidden])', { timeout: 5000 });
    assert((await cards(page, t.upstream)) === null, 'nodes shown without a token');
    assert(statusRequests.length === 0, 'the page read /status without a token');
    await shot(page, 'token');
    return 'token form shown, no /status request';
  });

  await check('after entering the token the page works, keeping it in sessionStorage only', async () => {
    await page.type('#token', t.token);
    await page.click('#login button[type=submit]');
    await until(page, t.upstream, (c) => c.length === t.nodes.length, 'the nodes', 5000);
    const where = await page.evaluate((key) => ({
      session: sessionStorage.getItem(key),
      local: localStorage.length,
      cookie: document.cookie,
      url: location.href,
      login: document.getElementById('login').hidden,
    }), 'tether-admin-token');
    assert(where.session === t.token, 'sessionStorage: ' + where.session);
    assert(where.local === 0 && where.cookie === '' && !where.url.includes(t.token), JSON.stringify(where));
    assert(where.login, 'the token form is still shown');
    assert(statusRequests.length > 0 && statusRequests.every((a) => a === 'Bearer ' + t.token), 'Authorization sent: ' + JSON.stringify(statusRequests));
    await press(page, t.upstream, t.node, 'drain');
    await until(page, t.upstream, (c) => c.some((n) => n.id === t.node && n.state === 'draining'), t.node + ' draining', 5000);
    const n = await nodeStatus(t.admin, t.upstream, t.node, t.token);
    assert(n.admin_state === 'draining', '/status says ' + n.admin_state);
    // The same tab after a reload: not asked again.
    await page.reload({ waitUntil: 'load' });
    await until(page, t.upstream, (c) => c.length === t.nodes.length, 'the nodes after a reload', 5000);
    assert(await page.$eval('#login', (e) => e.hidden), 'asked again after a reload');
    await shot(page, 'token-in');
    return 'sessionStorage only; ' + statusRequests.length + ' /status reads, all with the bearer token; drain worked; not asked again after a reload';
  });

  await check('with a token configured, calls without it are refused (the page itself is not)', async () => {
    const read = await api(t.admin, 'GET', '/status');
    const act = await api(t.admin, 'POST', '/upstreams/' + t.upstream + '/nodes/' + t.node + '/enable', { 'X-Tether-Admin': '1' });
    const wrong = await api(t.admin, 'POST', '/upstreams/' + t.upstream + '/nodes/' + t.node + '/enable', { Authorization: 'Bearer wrong' });
    const bare = await api(t.admin, 'POST', '/upstreams/' + t.upstream + '/nodes/' + t.node + '/enable');
    const pageItself = await api(t.admin, 'GET', '/');
    assert(read.status === 401 && act.status === 401 && wrong.status === 401, [read.status, act.status, wrong.status].join());
    assert(bare.status === 403, 'no header at all: ' + bare.status);
    assert(pageItself.status === 200 && !pageItself.text.includes(t.node), 'GET /: ' + pageItself.status);
    const n = await nodeStatus(t.admin, t.upstream, t.node, t.token);
    assert(n.admin_state === 'draining', t.node + ' changed to ' + n.admin_state);
    return 'GET /status ' + read.status + ', POST with X-Tether-Admin only ' + act.status + ', wrong token ' + wrong.status + ', no header ' + bare.status + ', GET / ' + pageItself.status;
  });
  await context.close();
}

async function shapeScenarios(context) {
  const s = plan.shapes;
  const page = await openTab(context, s.admin + '/', 'shapes');
  await check('0, 1 and 100 nodes, long ids and failing discovery render without overflow', async () => {
    await page.waitForFunction((n) => document.querySelectorAll('article.node').length === n, { timeout: 10000 }, s.total);
    await page.waitForFunction((u) => {
      const sec = [...document.querySelectorAll('section.upstream')].find((x) => x.dataset.upstream === u);
      const e = sec && sec.querySelector('.discovery .error');
      return e && !e.hidden && e.textContent.length > 0;
    }, { timeout: 10000 }, s.failing);
    await new Promise((r) => setTimeout(r, 2500));
    const wide = await layout(page);
    const details = await page.evaluate((failing, long) => {
      const sec = [...document.querySelectorAll('section.upstream')].find((x) => x.dataset.upstream === failing);
      const card = [...document.querySelectorAll('article.node')].find((a) => a.dataset.node === long);
      const h = card.querySelector('h3');
      return {
        error: sec.querySelector('.discovery .error').textContent,
        empty: sec.querySelector('.empty').textContent,
        emptyShown: !sec.querySelector('.empty').hidden,
        longCut: h.scrollWidth > h.clientWidth,
        longTitle: h.title === long,
        ellipsis: getComputedStyle(h).textOverflow,
        counts: [...document.querySelectorAll('section.upstream')].map((x) => x.dataset.upstream + ':' + x.querySelectorAll('article.node').length),
      };
    }, s.failing, s.long_id);
    assert(wide.pageOverflow <= 0, 'the page is ' + wide.pageOverflow + ' px wider than the window');
    assert(wide.wideCards.length === 0, 'cards wider than their box: ' + JSON.stringify(wide.wideCards));
    assert(wide.wideSections.length === 0, 'sections overflow: ' + JSON.stringify(wide.wideSections));
    assert(details.emptyShown && details.error.startsWith('last error:'), JSON.stringify(details));
    assert(details.longCut && details.longTitle && details.ellipsis === 'ellipsis', JSON.stringify(details));
    assert(JSON.stringify([...details.counts].sort()) === JSON.stringify([...s.counts].sort()), 'per upstream: ' + JSON.stringify(details.counts));
    await shot(page, 'shapes');
    await shot(page, 'shapes-full', { fullPage: true });
    await page.$$eval('article.node', (all, long) => all.find((a) => a.dataset.node === long).scrollIntoView({ block: 'center' }), s.long_id);
    await shot(page, 'long-ids');
    await page.evaluate(() => window.scrollTo(0, 0));
    const empty = await page.$('section.upstream[data-upstream="' + s.failing + '"]');
    await empty.screenshot({ path: path.join(plan.shots, 'admin-empty.png') });
    return 'cards per upstream ' + details.counts.join(', ') + '; discovery shows "' + details.error + '"; long id cut with an ellipsis';
  });

  await check('a certificate whose ACME order fails shows its state and error', async () => {
    await page.waitForFunction(() => {
      const c = document.querySelector('#certs .cert');
      return c && !document.getElementById('certs').hidden && c.dataset.failing === 'true';
    }, { timeout: 10000 });
    const got = await page.evaluate(() => {
      const c = document.querySelector('#certs .cert');
      return { names: c.querySelector('.names').textContent, facts: c.querySelector('.facts').textContent, error: c.querySelector('.error').textContent };
    });
    assert(got.names === 'Certificate for cert.test: failed', JSON.stringify(got));
    assert(got.facts.includes('none issued yet') && got.facts.includes('next order in'), JSON.stringify(got));
    assert(got.error.startsWith('last error: ') && got.error.includes('/dir'), JSON.stringify(got));
    await (await page.$('#certs')).screenshot({ path: path.join(plan.shots, 'admin-certificate.png') });
    return got.names + ' / ' + got.facts + ' / ' + got.error;
  });

  await check('strings from /status are text, never markup', async () => {
    const got = await page.evaluate((hostile) => {
      const card = [...document.querySelectorAll('article.node')].find((a) => a.dataset.node === hostile);
      return { shown: card ? card.querySelector('h3').textContent : null, images: document.querySelectorAll('img').length, pwned: window.__pwned === 1 };
    }, s.hostile_id);
    assert(got.shown === s.hostile_id && got.images === 0 && !got.pwned, JSON.stringify(got));
    return 'the id ' + JSON.stringify(s.hostile_id) + ' is shown as text';
  });

  await check('an id with a slash and spaces can be drained from the page', async () => {
    await press(page, s.many, s.odd_id, 'drain');
    await until(page, s.many, (c) => c.some((n) => n.id === s.odd_id && n.state === 'draining'), s.odd_id + ' draining', 5000);
    const n = await nodeStatus(s.admin, s.many, s.odd_id);
    assert(n.admin_state === 'draining', '/status says ' + n.admin_state);
    return JSON.stringify(s.odd_id) + ' draining';
  });

  await check('a phone-sized window: no overflow either', async () => {
    await page.setViewport({ width: 390, height: 844 });
    await new Promise((r) => setTimeout(r, 1200));
    const wide = await layout(page);
    assert(wide.pageOverflow <= 0, 'the page is ' + wide.pageOverflow + ' px wider than the window');
    assert(wide.wideCards.length === 0, 'cards wider than their box: ' + JSON.stringify(wide.wideCards.slice(0, 5)));
    await shot(page, 'narrow');
    return wide.cards + ' cards, none wider than the window';
  });
  await page.close();
}

async function main(launched) {
  browser = launched;
  const context = browser.defaultBrowserContext();
  await mainScenarios(context);
  await tokenScenarios();
  await shapeScenarios(context);
}

run(plan, h, main, () => ({ console_errors: consoleErrors, expected_errors: expectedErrors }), () => {
  if (attacker) attacker.close();
  stdin.close();
});
