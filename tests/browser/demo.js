// `tether demo` in headless Chromium, as a newcomer uses it: the demo page's three panels
// (request, long-poll, WebSocket) agree on one node and its cluster panel lists the nodes; the
// admin page it links to shows them healthy; Stop pressed on the pinned node turns it unhealthy
// on the admin page while the demo page's panels all move to one other node (re-pinned); Start
// brings it back healthy without moving the client again; a phone-sized window does not overflow.
//
// Plan (argv[2], JSON): { chromium, shots, limit_ms, demo, admin, nodes, down_within_ms }.
// Prints {"chromium_pid": N}, then one line {"results", console_errors, expected_errors}.
// While a node is stopped, the page's requests to it may fail (a 502 through tether, a WebSocket
// closed under it): those console lines are expected then, and only then.
'use strict';

const path = require('node:path');
const { assert, pause, harness, open, overflow, cards, until, run } = require('./common');

const plan = JSON.parse(process.argv[2]);
const h = harness();
const { check } = h;
const consoleErrors = [];
const expectedErrors = [];
// True from the Stop press until every panel has moved to another node.
let nodeDown = false;
const duringStop = /status of 50[234]|WebSocket|net::ERR_|request failed/;

function sort(entry) {
  if (nodeDown && duringStop.test(entry.text)) expectedErrors.push(entry);
  else consoleErrors.push(entry);
}

const openTab = (browser, url, label, viewport) => open(browser, url, label, sort, viewport);

// What the demo page shows: the node of each panel and the cluster's members.
function panels(page) {
  return page.evaluate(() => {
    const text = (id) => document.getElementById(id).textContent.trim();
    return {
      who: text('who-node'),
      poll: text('poll-node'),
      ws: text('ws-node'),
      wsState: text('ws-state'),
      badges: ['who-badge', 'poll-badge', 'ws-badge'].map(text),
      lead: document.querySelector('p.lead').textContent.replace(/\s+/g, ' '),
      clusterShown: !document.getElementById('cluster').hidden,
      adminLink: document.getElementById('admin-link').href,
      members: [...document.querySelectorAll('#members li')].map((li) => ({
        id: li.querySelector('.id').textContent,
        state: li.querySelector('.state').textContent,
        button: li.querySelector('button').textContent,
        you: li.querySelector('.you').textContent,
      })),
    };
  });
}

// Polls the demo page until `pred(panels)` holds; the ms it took.
async function waitFor(page, pred, what, limitMs) {
  const start = Date.now();
  for (;;) {
    const p = await panels(page);
    if (pred(p)) return { took: Date.now() - start, panels: p };
    if (Date.now() - start > limitMs) throw new Error('never saw ' + what + ' within ' + limitMs + ' ms; page: ' + JSON.stringify(p));
    await pause(50);
  }
}

// One node in all three panels, the WebSocket open.
const settled = (p) => p.who !== '-' && p.who === p.poll && p.who === p.ws && p.wsState === 'open';

async function pressMember(page, id, label) {
  const pressed = await page.$$eval('#members li', (items, id, label) => {
    const li = items.find((x) => x.querySelector('.id').textContent === id);
    const b = li && li.querySelector('button');
    if (!b || b.disabled || b.textContent !== label) return false;
    b.click();
    return true;
  }, id, label);
  assert(pressed, 'no enabled ' + label + ' button for ' + id);
}

async function shot(page, name, options) {
  await page.screenshot(Object.assign({ path: path.join(plan.shots, name + '.png') }, options || {}));
}

async function main(browser) {
  const demo = await openTab(browser, plan.demo, 'demo');
  let pinned = null;
  let admin = null;
  let moved = null;

  await check('the demo page pins its three panels to one node and lists the cluster', async () => {
    const { took, panels: p } = await waitFor(demo, (p) => settled(p) && p.clusterShown && p.members.length === plan.nodes.length, 'one node in every panel and the cluster panel', 15000);
    pinned = p.who;
    assert(p.badges.every((b) => b === 'same node'), 'badges: ' + JSON.stringify(p.badges));
    assert(plan.nodes.includes(pinned), 'pinned to ' + pinned);
    assert(JSON.stringify(p.members.map((m) => m.id)) === JSON.stringify(plan.nodes), 'members: ' + JSON.stringify(p.members));
    assert(p.members.every((m) => m.state === 'running' && m.button === 'Stop'), JSON.stringify(p.members));
    assert(p.members.find((m) => m.id === pinned).you === 'you are pinned here', JSON.stringify(p.members));
    assert(p.adminLink === plan.admin, 'the admin link is ' + p.adminLink);
    await pause(2500); // a few echoes and polls in the picture
    await shot(demo, 'demo-cluster', { fullPage: true });
    return 'pinned to ' + pinned + ' after ' + took + ' ms; admin link ' + p.adminLink;
  });

  await check('the admin page the demo links to shows every node healthy', async () => {
    admin = await openTab(browser, (await panels(demo)).adminLink, 'admin');
    const took = await until(admin, 'demo', (c) => c.length === plan.nodes.length && c.every((n) => n.health === 'healthy' && n.state === 'active'), 'every node healthy', 10000);
    return 'after ' + took + ' ms';
  });

  await check('Stop on the pinned node: unhealthy on the admin page, every demo panel re-pinned to one other node', async () => {
    nodeDown = true;
    await pressMember(demo, pinned, 'Stop');
    const down = await until(admin, 'demo', (c) => c.some((n) => n.id === pinned && n.health === 'unhealthy'), pinned + ' unhealthy', plan.down_within_ms);
    const r = await waitFor(demo, (p) => settled(p) && p.who !== pinned && p.members.some((m) => m.id === pinned && m.state === 'stopped' && m.button === 'Start'), 'every panel on another node and ' + pinned + ' stopped', 20000);
    moved = r.panels.who;
    nodeDown = false;
    const badges = await waitFor(demo, (p) => p.badges.every((b) => b === 're-pinned, same node'), 'every badge saying re-pinned', 5000);
    assert(badges.panels.lead.includes(pinned + ' was stopped: tether re-pinned you to ' + moved), 'lead: ' + badges.panels.lead);
    await pause(1500);
    await shot(demo, 'demo-repinned', { fullPage: true });
    await shot(admin, 'demo-admin', { fullPage: true });
    return pinned + ' unhealthy on the admin page after ' + down + ' ms; the demo page moved to ' + moved + ' (' + r.took + ' ms later)';
  });

  await check('Start brings it back healthy, and the client stays on its new node', async () => {
    await pressMember(demo, pinned, 'Start');
    const up = await until(admin, 'demo', (c) => c.some((n) => n.id === pinned && n.health === 'healthy'), pinned + ' healthy again', plan.down_within_ms + 5000);
    await waitFor(demo, (p) => p.members.some((m) => m.id === pinned && m.state === 'running'), pinned + ' running on the demo page', 10000);
    // Two more whoami rounds (every 2 s) and a poll: still the new node.
    await pause(4500);
    const p = await panels(demo);
    assert(settled(p) && p.who === moved, 'the client moved again: ' + JSON.stringify(p));
    assert(p.badges.every((b) => b === 're-pinned, same node'), 'badges: ' + JSON.stringify(p.badges));
    return pinned + ' healthy after ' + up + ' ms; the client is still on ' + moved;
  });

  await check('a phone-sized window: no overflow', async () => {
    const phone = await openTab(browser, plan.demo, 'demo (phone)', { width: 390, height: 844, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
    await waitFor(phone, (p) => settled(p) && p.clusterShown && p.members.length === plan.nodes.length, 'the phone page settled', 15000);
    const o = await overflow(phone);
    assert(o.pageOverflow <= 0 && o.outside.length === 0, 'overflow: ' + JSON.stringify(o));
    // Every Stop/Start button in sight, not scrolled away inside its list.
    const hidden = await phone.$$eval('#members li', (items) => items.filter((li) => {
      const b = li.querySelector('button').getBoundingClientRect();
      const box = li.parentElement.getBoundingClientRect();
      return b.width === 0 || b.right > Math.min(window.innerWidth, box.right) + 1;
    }).map((li) => li.querySelector('.id').textContent));
    assert(hidden.length === 0, 'buttons out of sight: ' + JSON.stringify(hidden));
    await shot(phone, 'demo-phone', { fullPage: true });
    await phone.close();
    return 'width ' + o.width + ', nothing outside';
  });
}

run(plan, h, main, () => ({ console_errors: consoleErrors, expected_errors: expectedErrors }));
