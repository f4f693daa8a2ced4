// A `tether load --report` page in headless Chromium: it opens from a file:// URL without a
// console error or a request anywhere, draws every chart it names (each SVG laid out with a
// size), shows the summary table, and fits a phone-sized window without pushing the page wider.
//
// Plan (argv[2], JSON): { chromium, shots, limit_ms, report, charts }.
// Prints {"chromium_pid": N}, then one line {"results", console_errors, requests}.
'use strict';

const path = require('node:path');
const { assert, harness, watch, overflow, run } = require('./common');

const plan = JSON.parse(process.argv[2]);
const h = harness();
const { check } = h;
const consoleErrors = [];
const requests = [];

async function open(browser, viewport) {
  const page = await browser.newPage();
  await page.setViewport(viewport);
  watch(page, 'report', consoleErrors);
  page.on('request', (r) => requests.push(r.url()));
  await page.goto('file://' + plan.report, { waitUntil: 'load' });
  return page;
}

// Every chart on the page: its label and drawn size, and how many marks it holds.
function charts(page) {
  return page.$$eval('svg', (svgs) => svgs.map((s) => {
    const r = s.getBoundingClientRect();
    return {
      label: s.getAttribute('aria-label') || '',
      width: Math.round(r.width),
      height: Math.round(r.height),
      marks: s.querySelectorAll('path, rect, circle, line, polyline').length,
    };
  }));
}

async function main(browser) {
  const page = await open(browser, { width: 1280, height: 900 });

  await check('the report draws every chart it names', async () => {
    const c = await charts(page);
    for (const want of plan.charts) {
      const found = c.find((x) => x.label === want);
      assert(found, 'no chart ' + JSON.stringify(want) + ' in ' + JSON.stringify(c.map((x) => x.label)));
      assert(found.width >= 200 && found.height >= 60 && found.marks >= 3, want + ' drawn as ' + JSON.stringify(found));
    }
    return c.length + ' charts: ' + c.map((x) => x.label + ' ' + x.width + 'x' + x.height).join('; ');
  });

  await check('the summary table and the verdict are on the page', async () => {
    const t = await page.evaluate(() => ({
      title: document.querySelector('h1') && document.querySelector('h1').textContent,
      rows: [...document.querySelectorAll('table tbody tr')].map((r) => r.cells[0].textContent),
      verdict: (document.querySelector('.verdict') || {}).textContent || '',
    }));
    assert(t.title === 'tether load report', 'title: ' + t.title);
    assert(t.rows.length >= 2, 'summary rows: ' + JSON.stringify(t.rows));
    assert(t.verdict.includes('No stickiness violation, no error'), 'verdict: ' + t.verdict);
    return 'rows ' + t.rows.join(', ') + '; "' + t.verdict + '"';
  });

  await check('it loaded nothing but itself', async () => {
    const others = requests.filter((u) => u !== 'file://' + plan.report);
    assert(others.length === 0, 'requests: ' + JSON.stringify(others));
    await page.screenshot({ path: path.join(plan.shots, 'report.png'), fullPage: true });
    return requests.length + ' request';
  });

  await check('a phone-sized window: the page itself does not overflow', async () => {
    const phone = await open(browser, { width: 390, height: 844, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
    const o = await overflow(phone);
    assert(o.pageOverflow <= 0 && o.outside.length === 0, 'overflow: ' + JSON.stringify(o));
    await phone.screenshot({ path: path.join(plan.shots, 'report-phone.png'), fullPage: true });
    await phone.close();
    return 'width ' + o.width + ', nothing outside';
  });
}

run(plan, h, main, () => ({ console_errors: consoleErrors, requests }));
