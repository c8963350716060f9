// Drives the Berth operator dashboard in headless Chromium.
//
// Env: ADMIN_URL (http://127.0.0.1:PORT of the admin listener), DATA_URL
// (the data plane), TOKEN (admin token), CHROMIUM (default
// /usr/bin/chromium), SCREENSHOTS (optional dir for 1280×800 PNGs).
// Expects namespace `dash` with scripts s0000…s0999 and `spinner`; s0500
// tagged `<img src=x onerror=window.__xss=1>` with var
// NOTE=`<script>window.__xss=2</script>`, and `/panic` raising an exception.
//
// Prints `ok <step>` per step; exits non-zero with `FAIL <step>: why`.

import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const ADMIN_URL = (process.env.ADMIN_URL || '').replace(/\/+$/, '');
const DATA_URL = (process.env.DATA_URL || '').replace(/\/+$/, '');
const TOKEN = process.env.TOKEN || '';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SCREENSHOTS = process.env.SCREENSHOTS || '';
const TAG = '<img src=x onerror=window.__xss=1>';
const VAR = '<script>window.__xss=2</script>';
const TOTAL_TIMEOUT_MS = 240_000;

for (const [k, v] of Object.entries({ ADMIN_URL, DATA_URL, TOKEN })) {
  if (!v) {
    console.error(`FAIL setup: environment variable ${k} is not set`);
    process.exit(2);
  }
}

let step = 'setup';
let context = null;
let userDataDir = null;
const pageErrors = [];
const consoleErrors = [];

async function cleanup() {
  try { if (context) await context.close(); } catch { /* already gone */ }
  try { if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true }); } catch { /* ignore */ }
}

async function fail(message) {
  console.error(`FAIL ${step}: ${message}`);
  for (const e of pageErrors) console.error(`  page error: ${e}`);
  for (const e of consoleErrors.slice(-10)) console.error(`  console: ${e}`);
  await cleanup();
  process.exit(1);
}

const guard = setTimeout(() => { fail(`the whole run took over ${TOTAL_TIMEOUT_MS / 1000} s`); }, TOTAL_TIMEOUT_MS);

/** Runs one step; any exception fails the run with the step's name. */
async function run(name, fn) {
  step = name;
  try {
    await fn();
  } catch (e) {
    // eslint-disable-next-line no-control-regex
    await fail(String(e?.message || e).replace(/\x1b\[[0-9;]*m/g, '').split('\n').slice(0, 6).join('\n'));
  }
  if (pageErrors.length) await fail('uncaught error in the page');
  console.log(`ok ${name}`);
}

function check(cond, message) {
  if (!cond) throw new Error(message);
}

/** A request to the data plane with a Host header (fetch cannot set it). */
function dataRequest(host, reqPath, timeoutMs = 10_000) {
  const u = new URL(DATA_URL);
  return new Promise((resolve, reject) => {
    const req = http.request({
      hostname: u.hostname, port: u.port || 80, path: reqPath, method: 'GET',
      headers: { host }, timeout: timeoutMs,
    }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode, error: res.headers['x-berth-error'] || null }));
    });
    req.on('timeout', () => req.destroy(new Error(`data request ${host}${reqPath} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

async function gotoPage(page, hash, id) {
  await page.evaluate((h) => { location.hash = h; }, hash);
  await page.waitForSelector(`main[data-page="${id}"][data-ready]`, { timeout: 15_000 });
}

const canvasDrawn = () => [...document.querySelectorAll('.uplot canvas')]
  .some((c) => c.width > 0 && c.height > 0 && c.getBoundingClientRect().width > 0);

async function main() {
  let page;
  await run('launch', async () => {
    check(fs.existsSync(CHROMIUM), `no Chromium at ${CHROMIUM} (set CHROMIUM)`);
    userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-dash-'));
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1280, height: 800 },
      args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ],
    });
    context.setDefaultTimeout(15_000);
    page = context.pages()[0] || await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  });

  await run('login', async () => {
    await page.goto(`${ADMIN_URL}/dashboard/`);
    await page.waitForSelector('#token');
    await page.fill('#token', `wrong-${Date.now()}`);
    await page.click('#login button[type=submit]');
    await page.locator('#login-message', { hasText: /wrong token/i }).waitFor({ timeout: 10_000 });
    await page.fill('#token', TOKEN);
    await page.click('#login button[type=submit]');
    await page.waitForFunction(() => document.querySelector('main[data-page="overview"]')
      || /wrong token/i.test(document.querySelector('#login-message')?.textContent || ''), null, { timeout: 10_000 });
    check(!(await page.isVisible('#token')), 'the server refused TOKEN (401): is it the admin token?');
    await page.waitForSelector('#nav', { state: 'visible' });
    await page.waitForSelector('main[data-page="overview"]');
    const where = await page.evaluate(() => ({
      url: location.href,
      local: JSON.stringify(localStorage),
      session: sessionStorage.getItem('berth.admin.token'),
    }));
    check(where.session === TOKEN, 'the token is not in sessionStorage');
    check(!where.url.includes(TOKEN), 'the token leaked into the URL');
    check(!where.local.includes(TOKEN), 'the token leaked into localStorage');
  });

  await run('overview-chart', async () => {
    await page.waitForFunction(canvasDrawn, null, { timeout: 10_000 });
  });

  await run('search', async () => {
    await page.click('#nav a[href="#/namespaces"]');
    await page.locator('#namespaces-table a', { hasText: /^dash$/ }).click();
    await page.waitForSelector('main[data-page="scripts"] #scripts-table');
    await page.fill('#script-search', 's0500');
    await page.waitForFunction(() => {
      const rows = document.querySelectorAll('#scripts-table tbody tr');
      return rows.length === 1 && rows[0].querySelector('a')?.textContent === 's0500';
    }, null, { timeout: 10_000 });
    await page.click('#scripts-table a');
    await page.waitForSelector('main[data-page="script"]');
  });

  await run('xss-inert', async () => {
    await page.locator('#facts .tag', { hasText: TAG }).first().waitFor({ state: 'visible', timeout: 10_000 });
    const tagText = await page.locator('#facts .tag', { hasText: TAG }).first().textContent();
    check(tagText === TAG, `tag shown as ${JSON.stringify(tagText)}`);
    await page.locator('#vars-table td', { hasText: VAR }).first().waitFor({ state: 'visible', timeout: 10_000 });
    await page.waitForTimeout(1000);
    const state = await page.evaluate(() => ({
      xss: typeof window.__xss,
      imgs: document.querySelectorAll('main img').length,
      scripts: document.querySelectorAll('main script').length,
    }));
    check(state.xss === 'undefined', `window.__xss is set (${state.xss}): markup ran`);
    check(state.imgs === 0 && state.scripts === 0, 'tenant markup became elements');
  });

  await run('settings', async () => {
    await page.waitForFunction(() => {
      const t = document.querySelector('#settings-json');
      return t && !t.disabled && t.value.trim().startsWith('{');
    });
    const before = JSON.parse(await page.inputValue('#settings-json'));
    const original = before?.limits?.cpu_ms ?? null;

    const apply = async (text) => {
      await page.fill('#settings-json', text);
      await page.click('#settings-apply');
    };
    await apply('{"limits": {"cpu_ms": 7}}');
    await page.waitForFunction(() => {
      const status = document.querySelector('#settings-status')?.textContent || '';
      const err = document.querySelector('#settings-error')?.textContent || '';
      try {
        return /saved/i.test(status) && !err
          && JSON.parse(document.querySelector('#settings-json').value).limits.cpu_ms === 7;
      } catch { return false; }
    }, null, { timeout: 10_000 });

    // The new limit holds on the very next request: 100 M rounds of work
    // take well over 7 ms of CPU.
    const cut = await dataRequest('s0500.localhost', '/work?n=100');
    check(cut.status === 503 && cut.error === 'cpu-limit',
      `with cpu_ms 7 the next request answered ${cut.status} ${cut.error}`);

    const bad = '{"limits": {"cpu_ms": 0}}';
    await apply(bad);
    await page.locator('#settings-error[role=alert]', { hasText: 'cpu_ms' }).waitFor({ timeout: 10_000 });
    check(await page.inputValue('#settings-json') === bad, 'the rejected text was not kept in the editor');

    // Put the limit back as it was.
    await apply(JSON.stringify({ limits: { cpu_ms: original } }));
    await page.waitForFunction((want) => {
      const status = document.querySelector('#settings-status')?.textContent || '';
      try {
        return /saved/i.test(status)
          && (JSON.parse(document.querySelector('#settings-json').value).limits?.cpu_ms ?? null) === want;
      } catch { return false; }
    }, original, { timeout: 10_000 });
    // ...and the restored one too (the host's 1,000 ms default, or the
    // script's own).
    const served = await dataRequest('s0500.localhost', '/work?n=100');
    check(served.status === 200, `with the limit restored the next request answered ${served.status} ${served.error}`);
  });

  await run('tail', async () => {
    await page.click('#tail-link');
    await page.waitForSelector('main[data-page="tail"] #tail-status[data-tail-state="live"]', { timeout: 10_000 });
    const sent = Date.now();
    await dataRequest('s0500.localhost', '/panic');
    // Liveness bound only (timings belong in `make bench`): the row is
    // expected within a second; the time it took is printed.
    await page.locator('#tail-table td.outcome', { hasText: /^exception$/ }).first().waitFor({ timeout: 5_000 });
    console.log(`tail: the error appeared ${Date.now() - sent} ms after the request was sent`);
  });

  if (SCREENSHOTS) {
    await run('screenshots', async () => {
      fs.mkdirSync(SCREENSHOTS, { recursive: true });
      const shot = async (file) => {
        await page.waitForTimeout(400); // let charts and fonts settle
        await page.screenshot({ path: path.join(SCREENSHOTS, file) });
      };
      await gotoPage(page, '#/', 'overview');
      await page.waitForFunction(canvasDrawn, null, { timeout: 10_000 });
      await shot('overview.png');
      await gotoPage(page, '#/namespaces', 'namespaces');
      await shot('namespaces.png');
      await gotoPage(page, '#/ns/dash', 'scripts');
      await shot('scripts.png');
      await gotoPage(page, '#/ns/dash/s0500', 'script');
      // Best effort: a script with no history yet shows notes, not charts.
      await page.waitForFunction(canvasDrawn, null, { timeout: 5_000 }).catch(() => {});
      await shot('script.png');
      await gotoPage(page, '#/ns/dash/s0500/tail', 'tail');
      await page.waitForSelector('#tail-status[data-tail-state="live"]');
      await dataRequest('s0500.localhost', '/');
      await dataRequest('s0500.localhost', '/panic');
      await page.locator('#tail-table td.outcome', { hasText: /^exception$/ }).first().waitFor({ timeout: 5_000 });
      await shot('tail.png');
      // Some CPU for the top-tenants tables (best effort).
      await dataRequest('spinner.localhost', '/', 5_000).catch(() => {});
      await gotoPage(page, '#/top', 'top');
      await shot('top.png');
      await gotoPage(page, '#/cluster', 'cluster');
      await shot('cluster.png');
    });
  }

  clearTimeout(guard);
  await cleanup();
  console.log('ok done');
}

main().catch((e) => fail(e?.stack || String(e)));
