#!/usr/bin/env node
/*
 * The dashboard of espfleet-controller in a real headless Chromium, against
 * a running controller and swarm. tests/integration/test_dashboard.sh sets
 * everything up and runs this script; it is not meant to run alone.
 *
 * Environment (all set by test_dashboard.sh):
 *   EF_URL            the page, http://127.0.0.1:PORT/
 *   EF_CHROMIUM       the browser (/usr/bin/chromium)
 *   EF_DEVICES        the swarm's device ids, comma-separated
 *   EF_GROUP          their group
 *   EF_BROKEN_JOB     a job document (JSON) whose sha256 is wrong
 *   EF_GOOD_URL       the good image's URL
 *   EF_GOOD_MANIFEST  its signed manifest (a file, as `espfleet sign` writes it)
 *   EF_GOOD_VERSION   its version (what the devices report once it runs)
 *   EF_ABORT_URL, EF_ABORT_MANIFEST, EF_ABORT_DEVICE  a third release and
 *                     the one device it goes to
 *   EF_OPERATOR_TOKEN, EF_VIEWER_TOKEN  tokens of the controller's tokens file
 *   EF_SHOTS          where the screenshots go
 *   EF_PROFILE        a fresh folder for the browser's profile
 *
 * It checks, in order:
 *   1. without a token the page says that one is needed; with a viewer's
 *      token it shows the fleet, and no operator control;
 *   2. with an operator's token, every device is in the table, live;
 *   3. the form refuses a bad document with the controller's sentence;
 *   4. a rollout of the broken job, started from the form (job document),
 *      aborts at its canary, and the rollout view shows the reason;
 *   5. a rollout of the good release, started from the form (URL + the
 *      signed manifest's file), is paused (the viewer sees it paused, with
 *      no control), resumed, and completes; the table shows every device
 *      succeeded with the new version;
 *   6. a third release, to one device (EF_ABORT_DEVICE) with a long soak:
 *      the soak timer runs, Abort asks first ("Keep it" keeps it), then
 *      aborts it with the reason given;
 *   7. the canary's page lists both jobs in its history;
 *   8. no script error and no CSP violation happened on any page.
 * Screenshots of each view go to EF_SHOTS. Exit status 0, or 1 with the
 * first failed check.
 */
'use strict';

const fs = require('fs');
const path = require('path');
const puppeteer = require('puppeteer-core');

const env = (name) => {
  const v = process.env[name];
  if (v === undefined || v === '') throw new Error(`${name} is not set (run tests/integration/test_dashboard.sh)`);
  return v;
};

const URL_BASE = env('EF_URL');
const DEVICES = env('EF_DEVICES').split(',');
const GROUP = env('EF_GROUP');
const SHOTS = env('EF_SHOTS');
const t0 = Date.now();
const log = (msg) => console.log(`[dashboard +${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}`);
const problems = []; // script errors and CSP violations, on any page

function watch(page, name) {
  // CSP violations also as errors of their own (Chromium logs them too)
  page.evaluateOnNewDocument(() => {
    document.addEventListener('securitypolicyviolation', (e) =>
      console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI || ''}`));
  });
  page.on('pageerror', (e) => problems.push(`${name}: script error: ${e.message}`));
  page.on('console', (m) => {
    const text = m.text();
    if (m.type() !== 'error') return;
    // Expected: the 401 of the token-less start, the 400 of the refused
    // document; the page has no favicon (404).
    if (/Failed to load resource: the server responded with a status of (400|401|404)/.test(text)) return;
    problems.push(`${name}: console error: ${text}`);
  });
}

async function shot(page, name, full = true) {
  const file = path.join(SHOTS, `${name}.png`);
  await page.evaluate(() => window.scrollTo(0, 0));
  const vp = page.viewport();
  if (full) {
    // The whole page in the viewport: rows out of sight are not rendered
    // (content-visibility: auto), which a fullPage capture would show empty.
    const height = await page.evaluate(() => document.documentElement.scrollHeight);
    await page.setViewport({ ...vp, height: Math.max(vp.height, Math.min(height, 4000)) });
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  }
  await page.screenshot({ path: file });
  if (full) await page.setViewport(vp);
  log(`screenshot ${file}`);
}

const text = (page, sel) => page.$eval(sel, (e) => e.textContent.trim());

/** Waits until fn(...args) in the page is true; a clear failure otherwise. */
async function until(page, what, fn, timeoutS, ...args) {
  try {
    await page.waitForFunction(fn, { timeout: timeoutS * 1000, polling: 100 }, ...args);
  } catch (e) {
    const shotName = `failed-${what.replace(/[^a-z0-9]+/gi, '-').slice(0, 40)}`;
    await shot(page, shotName).catch(() => {});
    throw new Error(`${what}: not within ${timeoutS} s (see ${shotName}.png)`);
  }
}

/** Every device's state badge, by id, in the fleet table. */
const fleetStates = (page) => page.$$eval('#fleet-table .rows .row', (rows) =>
  Object.fromEntries(rows.map((r) => [r.dataset.id, r.querySelector('.c-state .badge').textContent])));

async function setToken(page, token) {
  await page.$eval('#token', (e) => { e.value = ''; });
  await page.type('#token', token);
  await page.click('#token-form button[type=submit]');
}

async function setValue(page, sel, value) {
  await page.$eval(sel, (e, v) => {
    e.value = v;
    e.dispatchEvent(new Event('input', { bubbles: true }));
  }, value);
}

/** Fills the new-rollout form; opts: {id, jobDoc | (url, manifestFile, jobId), devices?, steps, soak}. */
async function fillForm(page, opts) {
  // (from another view: the form keeps what was typed while it is shown)
  await page.goto(`${URL_BASE}#/rollouts`);
  await page.goto(`${URL_BASE}#/new`);
  await page.waitForSelector('#new-rollout');
  await page.type('#f-rollout-id', opts.id);
  if (opts.jobDoc) {
    await page.click('#f-mode-job');
    await setValue(page, '#f-job', opts.jobDoc);
  } else {
    await page.type('#f-url', opts.url);
    const input = await page.$('#f-manifest-file');
    await input.uploadFile(opts.manifestFile);
    await until(page, 'the manifest file read in the browser',
      () => /signed by/.test(document.querySelector('#f-manifest-info').textContent), 10);
    if (opts.jobId) await page.type('#f-job-id', opts.jobId);
  }
  if (opts.devices) await page.type('#f-devices', opts.devices);
  else await page.type('#f-groups', GROUP);
  await page.type('#f-steps', opts.steps);
  if (opts.soak) await page.type('#f-soak', String(opts.soak));
}

async function rolloutState(page) {
  return page.$eval('#rollout-state', (e) => e.textContent).catch(() => null);
}

async function main() {
  fs.mkdirSync(SHOTS, { recursive: true });
  const browser = await puppeteer.launch({
    executablePath: env('EF_CHROMIUM'),
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--user-data-dir=${env('EF_PROFILE')}`],
    defaultViewport: { width: 1360, height: 860 },
  });
  log(`browser ${await browser.version()}`);
  try {
    await run(browser);
  } finally {
    await browser.close();
  }
}

async function run(browser) {
  // ---- 1. a viewer's tab: no token first, then the viewer's
  const viewer = await browser.newPage();
  watch(viewer, 'viewer tab');
  await viewer.goto(URL_BASE);
  await until(viewer, 'the page asks for a token', () => {
    const b = document.querySelector('#banner');
    return !b.hidden && /token/i.test(b.textContent) && document.querySelector('#whoami').textContent === 'not signed in';
  }, 15);
  log(`without a token: "${await text(viewer, '#banner')}"`);
  await setToken(viewer, env('EF_VIEWER_TOKEN'));
  await until(viewer, 'the viewer signed in', () => /· viewer$/.test(document.querySelector('#whoami').textContent)
    && document.querySelector('#banner').hidden, 15);
  await until(viewer, 'the viewer sees every device', (n) =>
    document.querySelectorAll('#fleet-table .rows .row').length === n, 15, DEVICES.length);
  const navNew = await viewer.$eval('#nav-new', (e) => getComputedStyle(e).display);
  if (navNew !== 'none') throw new Error('a viewer sees the "New rollout" link');
  const stored = await viewer.evaluate(() => sessionStorage.getItem('espfleet.token'));
  if (stored !== env('EF_VIEWER_TOKEN')) throw new Error('the token is not kept in sessionStorage');
  log('PASS: no token: asked for one; a viewer reads the fleet, without operator controls');

  // ---- 2. the operator's tab
  const page = await browser.newPage();
  watch(page, 'operator tab');
  await page.goto(URL_BASE);
  await setToken(page, env('EF_OPERATOR_TOKEN'));
  await until(page, 'the operator signed in', () => /· operator$/.test(document.querySelector('#whoami').textContent), 15);
  await until(page, 'every device in the table, live', (ids) => {
    if (!document.querySelector('#live.live-live')) return false;
    const rows = [...document.querySelectorAll('#fleet-table .rows .row')].map((r) => r.dataset.id);
    return ids.every((id) => rows.includes(id));
  }, 20, DEVICES);
  const states = await fleetStates(page);
  log(`fleet: ${JSON.stringify(states)}`);
  for (const id of DEVICES) if (!states[id]) throw new Error(`${id} is not in the table`);
  await shot(page, 'fleet', false);
  log(`PASS: all ${DEVICES.length} devices in the table, live updates on`);

  // ---- 3. the controller's sentence for a bad document
  await fillForm(page, { id: 'r-refused', jobDoc: env('EF_BROKEN_JOB'), steps: '1,50%' });
  await page.click('#f-submit');
  await until(page, 'the refusal shown', () => !document.querySelector('#f-error').hidden, 10);
  const refusal = await text(page, '#f-error');
  if (!/^400 bad_request/.test(refusal) || !/step/.test(refusal)) throw new Error(`refusal: "${refusal}"`);
  if (!(await page.evaluate(() => location.hash)).startsWith('#/new')) throw new Error('a refused form left the page');
  log(`PASS: a bad document is refused with the controller's sentence: "${refusal}"`);

  // ---- 4. the broken release, from a job document
  await fillForm(page, { id: 'r-broken', jobDoc: env('EF_BROKEN_JOB'), steps: '1,50%,100%' });
  await shot(page, 'new-rollout-job');
  await page.click('#f-submit');
  await until(page, 'the rollout view of r-broken', () => location.hash === '#/rollouts/r-broken', 10);
  await until(page, 'r-broken aborted', () => {
    const s = document.querySelector('#rollout-state');
    const r = document.querySelector('#rollout-reason');
    return s && s.textContent === 'aborted' && r && !r.hidden && /abort threshold/.test(r.textContent);
  }, 90);
  const reason = await text(page, '#rollout-reason .reason-text');
  // wait for the per-device rows to show the failed canary
  await until(page, 'the failed canary in the rollout\'s rows', () =>
    [...document.querySelectorAll('#rollout-devices .rows .row')].some((r) => r.querySelector('.c-state .badge').textContent === 'failed'), 15);
  const canary = await page.$$eval('#rollout-devices .rows .row', (rows) => rows
    .filter((r) => r.querySelector('.c-state .badge').textContent === 'failed').map((r) => r.dataset.id));
  if (canary.length !== 1) throw new Error(`failed devices of r-broken: ${canary.join(', ')}`);
  const controlsShown = await page.$eval('#rollout-controls', (e) => !e.hidden);
  if (controlsShown) throw new Error('an aborted rollout still offers pause, resume or abort');
  await shot(page, 'rollout-aborted');
  log(`PASS: r-broken aborted at its canary ${canary[0]}: "${reason}"`);

  // ---- 5. the good release, from the signed manifest: pause, resume, complete
  await fillForm(page, {
    id: 'r-good', url: env('EF_GOOD_URL'), manifestFile: env('EF_GOOD_MANIFEST'), jobId: 'fixed-v2',
    steps: '1,50%,100%', soak: 3,
  });
  await shot(page, 'new-rollout');
  await page.click('#f-submit');
  await until(page, 'the rollout view of r-good', () => location.hash === '#/rollouts/r-good', 10);
  await until(page, 'r-good running, Pause enabled', () => {
    const b = document.querySelector('#btn-pause');
    return document.querySelector('#rollout-state')?.textContent === 'running' && b && !b.disabled;
  }, 30);
  await page.type('#action-reason', 'dashboard test');
  await page.click('#btn-pause');
  await until(page, 'r-good paused', () => document.querySelector('#rollout-state')?.textContent === 'paused'
    && /paused: dashboard test/.test(document.querySelector('#rollout-reason').textContent), 20);
  log('PASS: paused from the page');
  // the viewer sees the same, without controls
  await viewer.goto(`${URL_BASE}#/rollouts/r-good`);
  await until(viewer, 'the viewer sees r-good paused', () => document.querySelector('#rollout-state')?.textContent === 'paused', 15);
  const viewerControls = await viewer.$eval('#rollout-controls', (e) => getComputedStyle(e).display);
  if (viewerControls !== 'none') throw new Error('a viewer sees the rollout controls');
  log('PASS: a viewer sees the paused rollout, and no control');
  await shot(page, 'rollout-paused');
  await until(page, 'Resume enabled', () => !document.querySelector('#btn-resume').disabled, 10);
  await page.click('#btn-resume');
  await until(page, 'r-good running again', () => ['running', 'completed'].includes(document.querySelector('#rollout-state')?.textContent), 20);
  log('PASS: resumed from the page');
  await until(page, 'r-good completed', () => document.querySelector('#rollout-state')?.textContent === 'completed', 180);
  await shot(page, 'rollout-completed');
  await page.goto(`${URL_BASE}#/devices`);
  await until(page, 'every device succeeded with the new version in the table', (ids, version) => ids.every((id) => {
    const r = document.querySelector(`#fleet-table .row[data-id="${id}"]`);
    return r && r.querySelector('.c-state .badge').textContent === 'succeeded' && r.querySelector('.c-app').textContent === version;
  }), 60, DEVICES, env('EF_GOOD_VERSION'));
  const chips = await page.$$eval('.counts .chip', (cs) => cs.map((c) =>
    `${c.querySelector('.chip-label').textContent} ${c.querySelector('.chip-n').textContent}`).join(', '));
  await shot(page, 'fleet-succeeded', false);
  log(`PASS: the table shows every device succeeded (${chips})`);

  // ---- 6. a rollout held in its soak, aborted from the page
  const target = env('EF_ABORT_DEVICE');
  await fillForm(page, {
    id: 'r-abort', url: env('EF_ABORT_URL'), manifestFile: env('EF_ABORT_MANIFEST'), jobId: 'next-v3',
    devices: target, steps: '100%', soak: 600,
  });
  await page.click('#f-submit');
  await until(page, 'r-abort soaking', () => document.querySelector('#rollout-state')?.textContent === 'running'
    && /left/.test(document.querySelector('#soak')?.textContent || ''), 60);
  const soak = await text(page, '#soak');
  await shot(page, 'rollout-soak');
  await page.click('#btn-abort');
  await until(page, 'the abort confirmation', () => !document.querySelector('#abort-confirm').hidden, 5);
  await page.click('#btn-abort-cancel');
  await new Promise((r) => setTimeout(r, 500));
  if (await rolloutState(page) !== 'running') throw new Error('"Keep it" did not keep the rollout running');
  await page.type('#action-reason', 'dashboard test abort');
  await page.click('#btn-abort');
  await until(page, 'the abort confirmation', () => !document.querySelector('#abort-confirm').hidden, 5);
  await page.click('#btn-abort-confirm');
  await until(page, 'r-abort aborted', () => document.querySelector('#rollout-state')?.textContent === 'aborted'
    && /aborted: dashboard test abort/.test(document.querySelector('#rollout-reason').textContent), 20);
  log(`PASS: r-abort soaking (${soak}) was aborted after a confirmation ("Keep it" kept it)`);

  // ---- 7. the canary's history: both jobs
  await page.goto(`${URL_BASE}#/devices/${encodeURIComponent(canary[0])}`);
  await until(page, `both jobs in ${canary[0]}'s history`, () => {
    const jobs = [...document.querySelectorAll('#device-history tbody tr')].map((r) =>
      `${r.querySelector('td.c-job').textContent}=${r.querySelector('.c-state .badge').textContent}`);
    return jobs.some((j) => /=failed$/.test(j)) && jobs.includes('fixed-v2=succeeded');
  }, 20);
  const hist = await page.$$eval('#device-history tbody tr', (rows) => rows.map((r) =>
    `${r.querySelector('td.c-job').textContent} ${r.querySelector('.c-state .badge').textContent}`));
  await shot(page, 'device-history');
  log(`PASS: ${canary[0]}'s history: ${hist.join('; ')}`);

  await page.goto(`${URL_BASE}#/rollouts`);
  await until(page, 'both rollouts in the list', () => ['r-broken', 'r-good'].every((id) =>
    document.querySelector(`#rollouts-table tbody tr[data-id="${id}"]`)), 10);
  await shot(page, 'rollouts', false);

  const st = await page.evaluate(() => { const s = { ...window.__efStats }; delete s.flushMs; return s; });
  log(`page updates: ${JSON.stringify(st)}`);
  if (st.fullRenders > 1) throw new Error(`the fleet table was rebuilt ${st.fullRenders} times`);

  // ---- 8. nothing went wrong on the way
  if (problems.length) throw new Error(`the pages reported:\n  ${problems.join('\n  ')}`);
  log('PASS: no script error, no CSP violation');
}

main().then(() => {
  log('all checks passed');
}, (e) => {
  console.error(`FAIL: ${e.message}`);
  if (problems.length) console.error(`pages reported:\n  ${problems.join('\n  ')}`);
  process.exitCode = 1;
});
