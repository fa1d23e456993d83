#!/usr/bin/env node
/*
 * What the dashboard's live updates cost with a big fleet (docs/dashboard.md,
 * "Measured"): opens the page in headless Chromium against a running
 * controller, waits for the whole fleet in the table, starts one rollout
 * through the API, follows it to the end and reports window.__efStats
 * (rows and cells touched, time per frame), long tasks, DOM size and heap.
 * tests/browser/measure-fleet.sh sets everything up and runs it.
 *
 *   node measure.js URL DEVICES ROLLOUT_JSON OUT_JSON [SCREENSHOT]
 * Environment: EF_CHROMIUM (default /usr/bin/chromium), EF_PROFILE (a fresh
 * profile folder; default a temporary one), EF_TIMEOUT_S (default 600).
 */
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const puppeteer = require('puppeteer-core');

const [url, nText, rolloutJson, outFile, shotFile] = process.argv.slice(2);
if (!url || !nText || !rolloutJson || !outFile) {
  console.error('usage: node measure.js URL DEVICES ROLLOUT_JSON OUT_JSON [SCREENSHOT]');
  process.exit(2);
}
const N = Number(nText);
const rollout = JSON.parse(rolloutJson);
const timeoutS = Number(process.env.EF_TIMEOUT_S || 600);
const t0 = Date.now();
const log = (m) => console.log(`[measure +${((Date.now() - t0) / 1000).toFixed(1)}s] ${m}`);

const pct = (xs, p) => {
  if (!xs.length) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const r1 = (x) => Math.round(x * 10) / 10;

async function main() {
  const profile = process.env.EF_PROFILE || fs.mkdtempSync(path.join(os.tmpdir(), 'ef-measure-'));
  const browser = await puppeteer.launch({
    executablePath: process.env.EF_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--user-data-dir=${profile}`],
    defaultViewport: { width: 1360, height: 860 },
  });
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    // Long tasks (> 50 ms on the main thread), from the start.
    await page.evaluateOnNewDocument(() => {
      window.__efLong = { count: 0, totalMs: 0, maxMs: 0 };
      new PerformanceObserver((list) => {
        for (const e of list.getEntries()) {
          window.__efLong.count++;
          window.__efLong.totalMs += e.duration;
          window.__efLong.maxMs = Math.max(window.__efLong.maxMs, e.duration);
        }
      }).observe({ type: 'longtask', buffered: true });
    });
    await page.goto(url);
    await page.waitForFunction((n) => document.querySelectorAll('#fleet-table .rows .row').length >= n,
      { timeout: 60000, polling: 'raf' }, N);
    const load = await page.evaluate(() => ({
      tableAtMs: performance.now(),
      firstRenderMs: window.__efStats.firstRenderMs,
      snapshotMs: window.__efStats.snapshotMs,
      longTasks: { ...window.__efLong },
    }));
    log(`${N} devices in the table ${Math.round(load.tableAtMs)} ms after navigation (table built in ${r1(load.firstRenderMs)} ms)`);
    await new Promise((r) => setTimeout(r, 2000)); // the stream settles
    await page.evaluate(() => {
      window.__efStats.reset();
      window.__efLong = { count: 0, totalMs: 0, maxMs: 0 };
    });

    // The rollout, through the API, from the page (same origin, as the form does).
    const m0 = await page.metrics();
    const started = Date.now();
    const answer = await page.evaluate(async (body) => {
      const r = await fetch('/api/v1/rollouts', {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
      });
      return { status: r.status, text: await r.text() };
    }, rollout);
    if (answer.status !== 202) throw new Error(`POST /rollouts: ${answer.status} ${answer.text}`);
    log(`rollout ${rollout.rollout_id} started`);

    const count = (state) => page.$eval(`.counts .chip[data-state="${state}"] .chip-n`, (e) => Number(e.textContent)).catch(() => 0);
    let shot = false;
    let maxInFlight = 0;
    for (;;) {
      const [succeeded, downloading] = [await count('succeeded'), await count('downloading')];
      maxInFlight = Math.max(maxInFlight, downloading);
      // the screenshot: mid-rollout, with downloads under way on screen
      const midway = !shot && shotFile && !process.env.EF_NO_SHOT && succeeded >= N / 20 && downloading >= N / 20 &&
        await page.$$eval('#fleet-table .rows .row .pct', (ps) => ps.slice(0, 25).filter((p) => /^([1-9]|[1-9][0-9])%$/.test(p.textContent)).length >= 3);
      if (midway) {
        await page.screenshot({ path: shotFile });
        log(`screenshot ${shotFile} (${succeeded} succeeded, ${downloading} downloading)`);
        shot = true;
      }
      if (succeeded >= N) break;
      if (Date.now() - started > timeoutS * 1000) throw new Error(`not every device succeeded within ${timeoutS} s`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const elapsed = (Date.now() - started) / 1000;
    log(`every device succeeded in the table after ${r1(elapsed)} s`);
    await new Promise((r) => setTimeout(r, 1500));
    const st = await page.evaluate(() => {
      const s = window.__efStats;
      return { ...s, flushMs: [...s.flushMs], long: { ...window.__efLong },
        domNodes: document.getElementsByTagName('*').length };
    });
    // The rollout's page: status, steps and one row per device (GET /rollouts/ID).
    const rolloutView = await page.evaluate((id, n) => new Promise((resolve) => {
      const t = performance.now();
      location.hash = `#/rollouts/${id}`;
      const poll = () => (document.querySelectorAll('#rollout-devices .rows .row').length >= n
        ? resolve(performance.now() - t) : requestAnimationFrame(poll));
      poll();
    }), rollout.rollout_id, N);
    log(`the rollout's page with ${N} rows in ${Math.round(rolloutView)} ms`);
    const heap = await page.metrics();
    // the renderer's main thread during the rollout (CDP Performance.getMetrics), seconds
    const busy = (k) => r1((heap[k] - m0[k]) * 1000);
    const ms = st.flushMs;
    const out = {
      devices: N,
      browser: await browser.version(),
      load: {
        table_ms_after_navigation: Math.round(load.tableAtMs),
        first_render_ms: r1(load.firstRenderMs),
        snapshot_ms: r1(load.snapshotMs),
      },
      rollout: { id: rollout.rollout_id, seconds_to_all_succeeded_in_table: r1(elapsed),
        rollout_page_ms: Math.round(rolloutView) },
      events: st.events,
      frames: st.flushes,
      devices_applied: st.devicesFlushed,
      rows_touched: st.rowsTouched,
      cells_touched: st.cellsTouched,
      rows_created: st.rowsCreated,
      full_renders: st.fullRenders,
      cells_per_row_touched: r1(st.cellsTouched / Math.max(1, st.rowsTouched)),
      most_devices_in_one_frame: st.maxBatch,
      frame_ms: { total: r1(st.totalFlushMs), mean: r1(st.totalFlushMs / Math.max(1, st.flushes)),
        p50: r1(pct(ms, 50)), p95: r1(pct(ms, 95)), p99: r1(pct(ms, 99)), max: r1(st.maxFlushMs) },
      max_event_to_painted_ms: r1(st.maxLatencyMs),
      main_thread_ms: { script: busy('ScriptDuration'), style: busy('RecalcStyleDuration'),
        layout: busy('LayoutDuration'), all_tasks: busy('TaskDuration'), layouts: heap.LayoutCount - m0.LayoutCount },
      long_tasks: { count: st.long.count, total_ms: Math.round(st.long.totalMs), max_ms: Math.round(st.long.maxMs) },
      most_downloading_at_once: maxInFlight,
      dom_nodes: st.domNodes,
      js_heap_mib: r1(heap.JSHeapUsedSize / 1048576),
      page_errors: errors,
    };
    fs.writeFileSync(outFile, `${JSON.stringify(out, null, 2)}\n`);
    console.log(JSON.stringify(out, null, 2));
    if (errors.length) process.exitCode = 1;
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(`measure: ${e.message}`);
  process.exitCode = 1;
});
