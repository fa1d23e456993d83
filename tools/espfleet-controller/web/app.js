/*
 * espfleet-controller dashboard (docs/dashboard.md), against the HTTP API of
 * docs/api.md. Plain ES2020, no framework, no external URL: the controller
 * serves this file with `Content-Security-Policy: default-src 'self'`.
 *
 * Rules kept throughout:
 *  - every string that comes from the API (device ids, versions, errors,
 *    reasons...) reaches the page through textContent or an attribute value,
 *    never through innerHTML (this file never uses innerHTML);
 *  - the token lives in sessionStorage and travels as `Authorization:
 *    Bearer`, or as `?access_token=` for the event stream only (EventSource
 *    cannot set headers);
 *  - the fleet table keeps one row element per device in a Map and, per
 *    animation frame, changes only the cells whose value changed; nothing
 *    re-renders the whole table on an event. window.__efStats counts it.
 */
'use strict';

(() => {
  const API = '/api/v1';
  const TOKEN_KEY = 'espfleet.token';
  const DEVICE_STATES = ['idle', 'downloading', 'verifying', 'activating', 'rebooting',
    'succeeded', 'failed', 'rejected', 'canceled', 'skipped'];
  const ROLLOUT_COUNTS = ['waiting', 'sent', 'running', 'succeeded', 'failed', 'timed_out', 'offline'];
  const ROLLOUT_FINAL = new Set(['completed', 'aborted', 'invalid']);
  const DEVICE_FINAL = new Set(['succeeded', 'failed', 'rejected', 'canceled', 'skipped']);
  const REASON_LABEL = { aborted: 'Aborted', halted: 'Halted', paused: 'Paused', invalid: 'Refused',
    completed: 'Completed', pending: 'Waiting', running: 'Note' };

  /* ---- measurements ------------------------------------------------------ */

  /** What the live updates cost: read it from the console or a test
   *  (window.__efStats), reset it with __efStats.reset(). */
  const stats = {
    events: { device: 0, progress: 0, rollout: 0, stale: 0 },
    flushes: 0,          // animation frames that applied fleet updates
    devicesFlushed: 0,   // devices taken from the queue (several events of one device in a frame count once)
    rowsTouched: 0,      // rows of which at least one cell changed
    cellsTouched: 0,     // cells written
    rowsCreated: 0,
    fullRenders: 0,      // times the whole table body was rebuilt (only the first snapshot)
    snapshots: 0,        // GET /devices applied
    firstRenderMs: 0,    // building the table from the first snapshot
    snapshotMs: 0,       // the last snapshot: request, parse and apply
    lastFlushMs: 0,
    maxFlushMs: 0,
    totalFlushMs: 0,
    maxBatch: 0,         // most devices applied in one frame
    maxLatencyMs: 0,     // longest time from an event's arrival to its frame's end
    flushMs: [],         // every flush's duration (the last 20000)
    reset() {
      this.events = { device: 0, progress: 0, rollout: 0, stale: 0 };
      this.flushes = this.devicesFlushed = this.rowsTouched = this.cellsTouched = this.rowsCreated = 0;
      this.lastFlushMs = this.maxFlushMs = this.totalFlushMs = this.maxBatch = this.maxLatencyMs = 0;
      this.flushMs = [];
    },
  };
  window.__efStats = stats;

  /* ---- DOM helpers ------------------------------------------------------- */

  const $ = (sel, root = document) => root.querySelector(sel);

  /**
   * h('a', {href: '#/x', class: 'y', text: 'z', on: {click: fn}}, ...children)
   * Strings become text nodes; attributes are set with setAttribute. Inline
   * styles and handlers (style, on*) are refused: the CSP forbids them, and
   * data must never become markup.
   */
  function h(tag, props, ...kids) {
    const el = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === 'class') el.className = v;
        else if (k === 'text') el.textContent = String(v);
        else if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
        else if (k === 'hidden') el.hidden = true;
        else if (k === 'value') el.value = String(v);
        else if (k === 'checked') el.checked = true;
        else if (k === 'disabled') el.disabled = true;
        else if (k === 'style' || k.startsWith('on') || k === 'innerHTML' || k === 'srcdoc') throw new Error(`h: ${k} not allowed`);
        else el.setAttribute(k, v === true ? '' : String(v));
      }
    }
    for (const c of kids.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : String(c));
    }
    return el;
  }

  /** A class name part from an enum value: anything unexpected becomes "unknown". */
  const cls = (v) => (typeof v === 'string' && /^[a-z_]{1,20}$/.test(v) ? v : 'unknown');

  function badge(state, text) {
    return h('span', { class: `badge st-${cls(state)}`, text: text ?? (state ?? 'unknown') });
  }

  function setBadge(el, state) {
    el.className = `badge st-${cls(state)}`;
    el.textContent = state ?? 'unknown';
  }

  const pad = (n, w = 2) => String(n).padStart(w, '0');

  /** Local time, YYYY-MM-DD HH:MM:SS; the raw value when it does not parse;
   *  a dash for none (a zero time, 1970, means none too). */
  function fmtTime(iso) {
    if (!iso) return '—';
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    if (d.getTime() <= 0) return '—';
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function fmtDuration(s) {
    s = Math.max(0, Math.round(s));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${pad(s % 60)} s`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${pad(Math.floor((s % 3600) / 60))} min`;
    return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  }

  function timeEl(iso) {
    return h('time', { datetime: iso || undefined, title: iso || undefined, text: fmtTime(iso) });
  }

  const deviceHref = (id) => `#/devices/${encodeURIComponent(id)}`;
  const rolloutHref = (id) => `#/rollouts/${encodeURIComponent(id)}`;

  /** fn at most once per ms milliseconds, the last call always honoured. */
  function throttle(fn, ms) {
    let timer = null;
    let last = 0;
    const run = () => {
      if (timer) return;
      timer = setTimeout(() => {
        timer = null;
        last = Date.now();
        fn();
      }, Math.max(0, last + ms - Date.now()));
    };
    run.cancel = () => { clearTimeout(timer); timer = null; };
    return run;
  }

  const banner = {
    show(kind, text) {
      const el = $('#banner');
      el.className = `banner banner-${kind}`;
      el.textContent = text;
      el.hidden = false;
    },
    hide() { $('#banner').hidden = true; },
  };

  /* ---- the API ------------------------------------------------------------ */

  let token = '';
  try { token = sessionStorage.getItem(TOKEN_KEY) || ''; } catch { token = ''; }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  /** fetch against /api/v1: JSON in, JSON out; an ApiError carries the
   *  server's {"error": {"code", "message"}} for anything but 2xx. */
  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (token) headers.Authorization = `Bearer ${token}`;
    const init = { method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(API + path, init);
    } catch (e) {
      throw new ApiError(0, 'network', `The controller cannot be reached (${e.message}).`);
    }
    const text = await res.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch { data = null; }
    }
    if (!res.ok) {
      const err = data && typeof data.error === 'object' && data.error ? data.error : {};
      const e = new ApiError(res.status, typeof err.code === 'string' ? err.code : `http_${res.status}`,
        typeof err.message === 'string' ? err.message : `HTTP ${res.status} ${res.statusText}`);
      if (res.status === 401) auth.needed(e);
      throw e;
    }
    return data;
  }

  /* ---- who am I ----------------------------------------------------------- */

  const auth = {
    role: null,
    async load() {
      try {
        const me = await api('GET', '/whoami');
        this.role = me && me.role === 'operator' ? 'operator' : 'viewer';
        document.body.classList.remove('role-unknown', 'role-viewer', 'role-operator');
        document.body.classList.add(`role-${this.role}`);
        $('#whoami').textContent = `${me.name} · ${this.role}`;
        $('#whoami').title = this.role === 'operator'
          ? 'operator: may start, pause, resume and abort rollouts'
          : 'viewer: read only';
        if ($('#banner').dataset.kind === 'auth') { banner.hide(); delete $('#banner').dataset.kind; }
      } catch (e) {
        this.role = null;
        document.body.classList.remove('role-viewer', 'role-operator');
        document.body.classList.add('role-unknown');
        $('#whoami').textContent = e.status === 401 ? 'not signed in' : 'controller unreachable';
        if (e.status !== 401) banner.show('error', e.message);
      }
    },
    needed(e) {
      banner.show('auth', `${e.message.replace(/[.\s]+$/, '')}. Paste a token in the Token field (it is kept for this tab only).`);
      $('#banner').dataset.kind = 'auth';
    },
    isOperator() { return this.role === 'operator'; },
  };

  function setToken(t) {
    token = t;
    try {
      if (t) sessionStorage.setItem(TOKEN_KEY, t);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch { /* storage off: the token lives until the tab reloads */ }
    restart();
  }

  /* ---- a table whose rows are kept by key -------------------------------- */

  /**
   * cols: [{head, cls, value(item) -> primitive, init?(td), paint?(td, value, item)}]
   * Each row remembers the value each cell shows; paint runs only when it
   * changed. sync(items) follows an ordered list; upsertSorted(item) inserts
   * by key order (the fleet table).
   * With big = true the rows are not a <table> but rows of a CSS grid with
   * fixed column widths and a fixed height, each contained (contain:
   * strict; content-visibility: auto): a changed cell lays out its own row
   * only, and rows out of sight are not laid out or painted at all. A table
   * lays out every row again for any change, which is what a 1,000-row
   * table cannot afford ten times a second (docs/dashboard.md). ARIA roles
   * keep it a table for assistive technology.
   */
  class KeyedTable {
    constructor(cols, keyOf, tableClass, big = false) {
      this.cols = cols;
      this.keyOf = keyOf;
      this.big = big;
      this.rows = new Map();
      this.keys = []; // sorted keys (upsertSorted only)
      if (big) {
        this.tbody = h('div', { class: 'rows', role: 'rowgroup' });
        this.table = h('div', { class: `vgrid ${tableClass || ''}`, role: 'table' },
          h('div', { class: 'head', role: 'rowgroup' }, h('div', { class: 'row', role: 'row' },
            cols.map((c) => h('div', { class: `cell ${c.cls || ''}`, role: 'columnheader', text: c.head })))),
          this.tbody);
      } else {
        this.tbody = h('tbody');
        this.table = h('table', { class: `grid ${tableClass || ''}` },
          h('thead', null, h('tr', null, cols.map((c) => h('th', { class: c.cls, scope: 'col', text: c.head })))),
          this.tbody);
      }
    }

    makeRow(key) {
      const tr = this.big ? h('div', { class: 'row', role: 'row', 'data-id': key }) : h('tr', { 'data-id': key });
      const tds = this.cols.map((c) => {
        const td = this.big ? h('div', { class: `cell ${c.cls || ''}`, role: 'cell' }) : h('td', { class: c.cls });
        if (c.init) c.init(td);
        tr.append(td);
        return td;
      });
      const row = { key, tr, tds, v: new Array(this.cols.length).fill(undefined) };
      this.rows.set(key, row);
      return row;
    }

    /** Repaints the cells that changed; returns how many. */
    paint(row, item) {
      let n = 0;
      for (let i = 0; i < this.cols.length; i++) {
        const c = this.cols[i];
        const v = c.value(item);
        if (Object.is(row.v[i], v)) continue;
        row.v[i] = v;
        if (c.paint) c.paint(row.tds[i], v, item);
        else {
          row.tds[i].textContent = v === null || v === undefined ? '' : String(v);
          if (c.titled) row.tds[i].title = row.tds[i].textContent;
        }
        n++;
      }
      return n;
    }

    sync(items) {
      const seen = new Set();
      let prev = null;
      let cells = 0;
      for (const item of items) {
        const key = this.keyOf(item);
        if (seen.has(key)) continue;
        seen.add(key);
        const row = this.rows.get(key) || this.makeRow(key);
        cells += this.paint(row, item);
        const want = prev ? prev.nextSibling : this.tbody.firstChild;
        if (want !== row.tr) this.tbody.insertBefore(row.tr, want);
        prev = row.tr;
      }
      for (const [key, row] of this.rows) {
        if (!seen.has(key)) { row.tr.remove(); this.rows.delete(key); }
      }
      return cells;
    }

    /** Index of the first key >= key in this.keys. */
    lowerBound(key) {
      let lo = 0;
      let hi = this.keys.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (this.keys[mid] < key) lo = mid + 1; else hi = mid;
      }
      return lo;
    }

    /** Inserts or updates one row, kept sorted by key. Returns
     *  {row, cells, created}. */
    upsertSorted(item) {
      const key = this.keyOf(item);
      let row = this.rows.get(key);
      let created = false;
      if (!row) {
        row = this.makeRow(key);
        const i = this.lowerBound(key);
        const next = i < this.keys.length ? this.rows.get(this.keys[i]) : null;
        this.keys.splice(i, 0, key);
        this.tbody.insertBefore(row.tr, next ? next.tr : null);
        created = true;
      }
      return { row, cells: this.paint(row, item), created };
    }

    remove(key) {
      const row = this.rows.get(key);
      if (!row) return;
      row.tr.remove();
      this.rows.delete(key);
      const i = this.lowerBound(key);
      if (this.keys[i] === key) this.keys.splice(i, 1);
    }

    /** Replaces every row at once (the first snapshot): built off-document in
     *  one fragment. */
    rebuildSorted(items) {
      this.rows.clear();
      this.keys = [];
      const frag = document.createDocumentFragment();
      const sorted = [...items].sort((a, b) => (this.keyOf(a) < this.keyOf(b) ? -1 : this.keyOf(a) > this.keyOf(b) ? 1 : 0));
      for (const item of sorted) {
        const row = this.makeRow(this.keyOf(item));
        this.keys.push(row.key);
        this.paint(row, item);
        frag.append(row.tr);
      }
      this.tbody.replaceChildren(frag);
      return sorted.length;
    }
  }

  /* ---- the fleet: every device, live --------------------------------------- */

  /** Progress shown in the table: the download's percent while downloading,
   *  100 once it is checked and installed, nothing otherwise. */
  function progressOf(d) {
    if (d.state === 'downloading') {
      const p = d.progress;
      if (p && typeof p.percent === 'number') return Math.max(0, Math.min(100, Math.round(p.percent)));
      return 0;
    }
    if (d.state === 'verifying' || d.state === 'activating' || d.state === 'rebooting') return 100;
    return null;
  }

  /** A device's error in one line: its detail ("hash_mismatch: expected
   *  ..."), which starts with the fine-grained name, or else its code. */
  const errorText = (e) => (e ? (e.detail || e.code || 'error') : '');
  const errorLong = (e) => (e ? (e.code && e.detail && !e.detail.startsWith(e.code) ? `${e.code} — ${e.detail}` : errorText(e)) : '');

  const fleetCols = [
    {
      head: 'Device', cls: 'c-id', value: (d) => d.device_id,
      paint: (td, v) => td.replaceChildren(h('a', { href: deviceHref(v), text: v })),
    },
    {
      head: 'Online', cls: 'c-online', value: (d) => d.online === true,
      init: (td) => td.append(h('span', { class: 'dot' }), h('span', { class: 'dot-text' })),
      paint: (td, v) => {
        td.firstChild.className = v ? 'dot dot-on' : 'dot dot-off';
        td.lastChild.textContent = v ? 'online' : 'offline';
        td.parentNode.classList.toggle('is-offline', !v);
      },
    },
    {
      head: 'State', cls: 'c-state', value: (d) => d.state ?? null,
      init: (td) => td.append(h('span', { class: 'badge' })),
      paint: (td, v) => setBadge(td.firstChild, v),
    },
    { head: 'Job', cls: 'c-job', value: (d) => d.job_id ?? '', titled: true },
    {
      head: 'Progress', cls: 'c-progress', value: progressOf,
      init: (td) => td.append(h('progress', { max: '100', value: '0' }), h('span', { class: 'pct' })),
      paint: (td, v) => {
        const bar = td.firstChild;
        bar.hidden = v === null;
        if (v !== null) bar.value = v;
        td.lastChild.textContent = v === null ? '' : `${v}%`;
      },
    },
    { head: 'App', cls: 'c-app', value: (d) => d.app_version ?? '' },
    { head: 'Firmware', cls: 'c-fw', value: (d) => d.fw_version ?? '' },
    { head: 'Groups', cls: 'c-groups', value: (d) => (Array.isArray(d.groups) ? d.groups.join(', ') : ''), titled: true },
    {
      head: 'Error', cls: 'c-error', value: (d) => errorLong(d.error),
      paint: (td, v) => { td.textContent = v; td.title = v; },
    },
  ];

  const fleet = {
    devices: new Map(),     // device_id -> Device (as the API gave it, progress merged)
    groups: new Set(),
    table: new KeyedTable(fleetCols, (d) => d.device_id, 'fleet', true),
    pending: new Set(),     // ids changed since the last frame
    queuedAt: 0,
    frame: 0,
    counted: new Map(),     // device_id -> the key it is counted under
    counts: new Map(),      // key (a state, "unknown" or "offline") -> n
    countsDirty: true,
    visible: 0,
    filter: { state: '', group: '', q: '' },
    el: null,
    loaded: false,
    listeners: new Set(),   // views that follow devices: fn(device)

    matches(d) {
      const f = this.filter;
      if (f.state && this.countKey(d) !== f.state) return false;
      if (f.group && !(Array.isArray(d.groups) && d.groups.includes(f.group))) return false;
      if (f.q) {
        const q = f.q;
        const hay = [d.device_id, d.job_id, d.app_version, d.fw_version, d.error && d.error.code, d.error && d.error.detail];
        if (!hay.some((s) => typeof s === 'string' && s.toLowerCase().includes(q))) return false;
      }
      return true;
    },

    /** Counted as the server counts (GET /devices "counts"): a device that
     *  is away counts as offline, whatever it did last. */
    countKey(d) {
      return d.online === true ? (d.state || 'unknown') : 'offline';
    },

    count(d) {
      const key = this.countKey(d);
      const was = this.counted.get(d.device_id);
      if (was === key) return;
      if (was !== undefined) this.counts.set(was, (this.counts.get(was) || 1) - 1);
      this.counts.set(key, (this.counts.get(key) || 0) + 1);
      this.counted.set(d.device_id, key);
      this.countsDirty = true;
    },

    uncount(id) {
      const was = this.counted.get(id);
      if (was === undefined) return;
      this.counts.set(was, (this.counts.get(was) || 1) - 1);
      this.counted.delete(id);
      this.countsDirty = true;
    },

    noteGroups(d) {
      if (!Array.isArray(d.groups)) return;
      for (const g of d.groups) {
        if (typeof g === 'string' && !this.groups.has(g)) { this.groups.add(g); this.groupsDirty = true; }
      }
    },

    /** A device document from the stream (or a snapshot): kept, and its row
     *  queued for the next frame. */
    put(d, fromStream) {
      if (!d || typeof d.device_id !== 'string') return;
      // While GET /devices runs, remember who the stream spoke of: for them
      // the stream is at least as new as the snapshot (the server writes
      // each event from the device's newest document when it sends it, and
      // any later change sends another).
      if (fromStream && this.inFlight) this.inFlight.add(d.device_id);
      this.devices.set(d.device_id, d);
      this.queue(d.device_id);
      for (const fn of this.listeners) fn(d);
    },

    progress(p) {
      if (!p || typeof p.device_id !== 'string') return;
      const d = this.devices.get(p.device_id);
      if (!d || d.state !== 'downloading' || (d.job_id && p.job_id && d.job_id !== p.job_id)) return;
      if (this.inFlight) this.inFlight.add(d.device_id);
      const nd = { ...d, progress: { job_id: p.job_id, bytes: p.bytes, total: p.total, percent: p.percent } };
      this.devices.set(d.device_id, nd);
      this.queue(d.device_id);
      for (const fn of this.listeners) fn(nd);
    },

    queue(id) {
      if (this.pending.size === 0) this.queuedAt = performance.now();
      this.pending.add(id);
      if (!this.frame) {
        // Frames do not run in a hidden tab: a timer takes over there.
        this.frame = document.hidden
          ? setTimeout(() => this.flush(), 250)
          : requestAnimationFrame(() => this.flush());
      }
    },

    /** Applies the queued devices to their rows: one batch of DOM writes
     *  per frame, only the cells that changed. */
    flush() {
      this.frame = 0;
      if (this.pending.size === 0) return;
      const t0 = performance.now();
      const batch = this.pending.size;
      let rows = 0;
      let cells = 0;
      for (const id of this.pending) {
        const d = this.devices.get(id);
        if (!d) { this.table.remove(id); this.uncount(id); continue; }
        const r = this.table.upsertSorted(d);
        if (r.created) stats.rowsCreated++;
        const hide = !this.matches(d);
        if (r.row.tr.hidden !== hide || r.created) { r.row.tr.hidden = hide; this.visibleDirty = true; }
        if (r.cells) { rows++; cells += r.cells; }
        this.noteGroups(d);
        this.count(d);
      }
      this.pending.clear();
      this.paintCounts();
      const t1 = performance.now();
      const ms = t1 - t0;
      stats.flushes++;
      stats.devicesFlushed += batch;
      stats.rowsTouched += rows;
      stats.cellsTouched += cells;
      stats.lastFlushMs = ms;
      stats.totalFlushMs += ms;
      if (ms > stats.maxFlushMs) stats.maxFlushMs = ms;
      if (batch > stats.maxBatch) stats.maxBatch = batch;
      if (t1 - this.queuedAt > stats.maxLatencyMs) stats.maxLatencyMs = t1 - this.queuedAt;
      if (stats.flushMs.length >= 20000) stats.flushMs.shift();
      stats.flushMs.push(ms);
    },

    /** GET /devices: the whole fleet, at the start and after every
     *  reconnection of the stream (events may have been missed). */
    async snapshot() {
      if (this.loading) { this.again = true; return; }
      this.loading = true;
      const streamed = new Set();
      this.inFlight = streamed;
      try {
        const ts = performance.now();
        const r = await api('GET', '/devices');
        this.inFlight = null;
        const list = Array.isArray(r && r.devices) ? r.devices : [];
        stats.snapshots++;
        if (!this.loaded) {
          // the first one builds the table in one go
          const tr = performance.now();
          for (const d of list) {
            if (!d || typeof d.device_id !== 'string') continue;
            if (streamed.has(d.device_id)) { stats.events.stale++; continue; }
            this.devices.set(d.device_id, d);
          }
          stats.fullRenders++;
          stats.rowsCreated += this.table.rebuildSorted([...this.devices.values()]);
          for (const d of this.devices.values()) {
            this.count(d);
            this.noteGroups(d);
            this.table.rows.get(d.device_id).tr.hidden = !this.matches(d);
          }
          this.pending.clear();
          this.loaded = true;
          this.paintCounts();
          stats.firstRenderMs = performance.now() - tr;
        } else {
          const ids = new Set();
          for (const d of list) {
            if (!d || typeof d.device_id !== 'string') continue;
            ids.add(d.device_id);
            if (streamed.has(d.device_id)) { stats.events.stale++; continue; }
            const old = this.devices.get(d.device_id);
            if (old && JSON.stringify(old) === JSON.stringify(d)) continue;
            this.put(d);
          }
          for (const id of this.devices.keys()) {
            if (!ids.has(id) && !streamed.has(id)) { this.devices.delete(id); this.queue(id); }
          }
        }
        stats.snapshotMs = performance.now() - ts;
        this.setStatus('');
      } catch (e) {
        this.setStatus(e.status === 401 ? 'A token is needed to see the fleet.' : e.message);
      } finally {
        this.inFlight = null;
        this.loading = false;
        if (this.again) { this.again = false; this.snapshot(); }
      }
    },

    setStatus(text) {
      if (!this.el) return;
      const el = $('.fleet-status', this.el);
      el.textContent = text;
      el.hidden = !text;
    },

    /** The count chips above the table, and the group choices. */
    paintCounts() {
      if (!this.el) return;
      if (this.groupsDirty) {
        this.groupsDirty = false;
        const sel = $('#f-group', this.el);
        const cur = sel.value;
        sel.replaceChildren(h('option', { value: '', text: 'all groups' }),
          [...this.groups].sort().map((g) => h('option', { value: g, text: g })));
        sel.value = this.groups.has(cur) ? cur : '';
      }
      if (!this.countsDirty) {
        if (this.visibleDirty) this.paintVisible();
        return;
      }
      this.countsDirty = false;
      const chips = [];
      const total = this.devices.size;
      chips.push(this.chip('', 'all', total));
      const keys = [...DEVICE_STATES, 'unknown'];
      for (const [k] of this.counts) if (!keys.includes(k) && k !== 'offline') keys.push(k);
      keys.push('offline');
      for (const k of keys) {
        const n = this.counts.get(k) || 0;
        if (n > 0 || k === 'succeeded' || k === 'failed' || k === 'offline') chips.push(this.chip(k, k, n));
      }
      $('.counts', this.el).replaceChildren(...chips);
      this.paintVisible();
    },

    chip(filter, label, n) {
      const active = this.filter.state === filter;
      return h('button', {
        type: 'button', class: `chip st-${cls(filter || 'all')}${active ? ' chip-active' : ''}`,
        'data-state': filter || 'all', 'aria-pressed': active ? 'true' : 'false',
        on: { click: () => { $('#f-state', this.el).value = filter; this.setFilter({ state: filter }); } },
      }, h('span', { class: 'chip-label', text: label }), h('span', { class: 'chip-n', text: String(n) }));
    },

    paintVisible() {
      this.visibleDirty = false;
      let n = 0;
      for (const row of this.table.rows.values()) if (!row.tr.hidden) n++;
      this.visible = n;
      $('.shown', this.el).textContent = n === this.devices.size
        ? `${n} devices` : `${n} of ${this.devices.size} devices shown`;
      $('.empty', this.el).hidden = !(this.loaded && n === 0);
    },

    setFilter(f) {
      Object.assign(this.filter, f);
      for (const [id, row] of this.table.rows) {
        const d = this.devices.get(id);
        row.tr.hidden = !(d && this.matches(d));
      }
      this.countsDirty = true;
      this.paintCounts();
      const q = new URLSearchParams();
      if (this.filter.state) q.set('state', this.filter.state);
      if (this.filter.group) q.set('group', this.filter.group);
      if (this.filter.q) q.set('q', this.filter.q);
      const hash = `#/devices${q.toString() ? `?${q}` : ''}`;
      if (location.hash !== hash && router.current === 'fleet') history.replaceState(null, '', hash);
    },

    build() {
      const stateSel = h('select', { id: 'f-state', 'aria-label': 'State' },
        h('option', { value: '', text: 'all states' }),
        [...DEVICE_STATES, 'unknown', 'offline'].map((s) => h('option', { value: s, text: s })));
      const groupSel = h('select', { id: 'f-group', 'aria-label': 'Group' }, h('option', { value: '', text: 'all groups' }));
      const q = h('input', { id: 'f-q', type: 'search', placeholder: 'device, job, version or error', 'aria-label': 'Search', spellcheck: 'false' });
      stateSel.addEventListener('change', () => this.setFilter({ state: stateSel.value }));
      groupSel.addEventListener('change', () => this.setFilter({ group: groupSel.value }));
      let qTimer = 0;
      q.addEventListener('input', () => {
        clearTimeout(qTimer);
        qTimer = setTimeout(() => this.setFilter({ q: q.value.trim().toLowerCase() }), 120);
      });
      this.el = h('section', { id: 'fleet', class: 'view view-fleet' },
        h('div', { class: 'view-head' },
          h('h1', { text: 'Fleet' }),
          h('span', { class: 'shown muted' })),
        h('div', { class: 'counts', role: 'group', 'aria-label': 'Devices per state' }),
        h('div', { class: 'filters' },
          h('label', null, 'State ', stateSel),
          h('label', null, 'Group ', groupSel),
          h('label', { class: 'grow' }, 'Search ', q)),
        h('p', { class: 'fleet-status notice', hidden: true }),
        h('div', { class: 'table-wrap' }, this.table.table),
        h('p', { class: 'empty muted', hidden: true, text: 'No device matches.' }));
      this.table.table.id = 'fleet-table';
      this.countsDirty = true;
      this.groupsDirty = true;
      this.paintCounts();
    },

    view(params) {
      if (!this.el) this.build();
      const f = { state: params.get('state') || '', group: params.get('group') || '', q: (params.get('q') || '').toLowerCase() };
      $('#f-state', this.el).value = f.state;
      if (f.group && !this.groups.has(f.group)) { this.groups.add(f.group); this.groupsDirty = true; this.paintCounts(); }
      $('#f-group', this.el).value = f.group;
      $('#f-q', this.el).value = f.q;
      if (f.state !== this.filter.state || f.group !== this.filter.group || f.q !== this.filter.q) this.setFilter(f);
      return { el: this.el };
    },
  };

  /* ---- rollouts ----------------------------------------------------------- */

  const rollouts = {
    all: new Map(), // rollout_id -> RolloutStatus
    listeners: new Set(),
    loaded: false,

    put(s) {
      if (!s || typeof s.rollout_id !== 'string') return;
      if (s.deleted) this.all.delete(s.rollout_id);
      else this.all.set(s.rollout_id, s);
      for (const fn of this.listeners) fn(s);
    },

    async snapshot() {
      const r = await api('GET', '/rollouts');
      const list = Array.isArray(r && r.rollouts) ? r.rollouts : [];
      const ids = new Set();
      for (const s of list) {
        if (!s || typeof s.rollout_id !== 'string') continue;
        ids.add(s.rollout_id);
        this.all.set(s.rollout_id, s);
      }
      for (const id of [...this.all.keys()]) if (!ids.has(id)) this.all.delete(id);
      this.loaded = true;
      for (const fn of this.listeners) fn(null);
    },
  };

  function stepText(s) {
    if (!s) return '';
    if (s.state === 'invalid') return '—';
    if (s.step < 0) return `0/${s.steps}`;
    return `${s.step + 1}/${s.steps}`;
  }

  function rolloutListView() {
    const table = new KeyedTable([
      {
        head: 'Rollout', cls: 'c-id', value: (s) => s.rollout_id,
        paint: (td, v) => td.replaceChildren(h('a', { href: rolloutHref(v), text: v })),
      },
      {
        head: 'State', cls: 'c-state', value: (s) => s.state,
        init: (td) => td.append(h('span', { class: 'badge' })), paint: (td, v) => setBadge(td.firstChild, v),
      },
      { head: 'Step', cls: 'c-step', value: stepText },
      { head: 'Job', cls: 'c-job', value: (s) => s.job_id ?? '', titled: true },
      { head: 'Devices', cls: 'c-num', value: (s) => `${s.step_devices ?? 0}/${s.devices ?? 0}` },
      { head: 'Succeeded', cls: 'c-num', value: (s) => (s.counts ? s.counts.succeeded : 0) },
      {
        head: 'Failed', cls: 'c-num', value: (s) => (s.counts ? s.counts.failed + s.counts.timed_out + s.counts.offline : 0),
      },
      { head: 'Reason', cls: 'c-reason', value: (s) => s.reason ?? '', titled: true },
      {
        head: 'Updated', cls: 'c-time', value: (s) => s.updated ?? '',
        paint: (td, v) => td.replaceChildren(timeEl(v)),
      },
    ], (s) => s.rollout_id, 'rollouts');
    table.table.id = 'rollouts-table';
    const empty = h('p', { class: 'empty muted', hidden: true },
      'No rollout yet. ', h('a', { href: '#/new', class: 'op-only', text: 'Start one.' }));
    const status = h('p', { class: 'notice', hidden: true });
    const el = h('section', { class: 'view view-rollouts' },
      h('div', { class: 'view-head' }, h('h1', { text: 'Rollouts' }),
        h('a', { class: 'button op-only', href: '#/new', text: 'New rollout' })),
      status, h('div', { class: 'table-wrap' }, table.table), empty);
    let frame = 0;
    const paint = () => {
      frame = 0;
      const list = [...rollouts.all.values()].sort((a, b) => (a.created < b.created ? 1 : a.created > b.created ? -1
        : a.rollout_id < b.rollout_id ? -1 : 1));
      table.sync(list);
      empty.hidden = !(rollouts.loaded && list.length === 0);
    };
    const onChange = () => { if (!frame) frame = requestAnimationFrame(paint); };
    rollouts.listeners.add(onChange);
    rollouts.snapshot().then(() => { status.hidden = true; }, (e) => { status.textContent = e.message; status.hidden = false; });
    paint();
    return {
      el,
      unmount() { rollouts.listeners.delete(onChange); cancelAnimationFrame(frame); },
    };
  }

  /** Devices each step reaches (docs/rollouts.md, "Steps and reach"). */
  function stepReach(steps, n) {
    const out = [];
    let prev = 0;
    for (const s of steps) {
      let r = typeof s.percent === 'number' ? Math.floor((n * s.percent + 99) / 100)
        : Math.min(typeof s.count === 'number' ? s.count : 0, n);
      r = Math.max(r, prev);
      out.push(r);
      prev = r;
    }
    return out;
  }

  function rolloutView(id) {
    const el = h('section', { class: 'view view-rollout' });
    const head = h('div', { class: 'view-head' });
    const reason = h('div', { class: 'reason', id: 'rollout-reason', role: 'status', hidden: true });
    const summary = h('div', { class: 'cards' });
    const stepsEl = h('ol', { class: 'steps', id: 'rollout-steps' });
    const countsEl = h('div', { class: 'rcounts', id: 'rollout-counts' });
    const controls = h('div', { class: 'controls op-only', id: 'rollout-controls' });
    const actionMsg = h('p', { class: 'notice', id: 'action-msg', hidden: true });
    const jobEl = h('dl', { class: 'kv' });
    const devTable = new KeyedTable([
      {
        head: 'Device', cls: 'c-id', value: (r) => r.device_id,
        paint: (td, v) => td.replaceChildren(h('a', { href: deviceHref(v), text: v })),
      },
      { head: 'Step', cls: 'c-num', value: (r) => (typeof r.step === 'number' && r.step >= 0 ? r.step + 1 : '—') },
      {
        head: 'Counted as', cls: 'c-state', value: (r) => r.state ?? null,
        init: (td) => td.append(h('span', { class: 'badge' })), paint: (td, v) => setBadge(td.firstChild, v),
      },
      { head: 'Job state', cls: 'c-jobstate', value: (r) => r.job_state ?? '' },
      { head: 'Error', cls: 'c-error', value: (r) => r.error ?? '', titled: true },
      { head: 'Updated', cls: 'c-time', value: (r) => r.updated ?? '', paint: (td, v) => td.replaceChildren(timeEl(v)) },
    ], (r) => r.device_id, 'rollout-devices', true);
    devTable.table.id = 'rollout-devices';
    const notice = h('p', { class: 'notice', hidden: true });
    el.append(head, notice, reason, summary, controls, actionMsg,
      h('h2', { text: 'Steps' }), stepsEl,
      h('h2', { text: 'Devices by state' }), countsEl,
      h('h2', { text: 'Job' }), jobEl,
      h('h2', { text: 'Devices' }), h('div', { class: 'table-wrap' }, devTable.table));

    let data = null;     // GET /rollouts/{id}
    let status = rollouts.all.get(id) || null; // newest status (the stream's or the GET's)
    let gone = false;
    const opened = Date.now();
    let pending = null;  // the action sent, until the status answers (or 10 s)
    let retry = 0;
    let soakTimer = 0;
    const soakEl = h('span', { id: 'soak' });

    // Controls: built once, enabled per state.
    const reasonIn = h('input', { id: 'action-reason', type: 'text', placeholder: 'reason (optional)', maxlength: '200' });
    const btnPause = h('button', { type: 'button', id: 'btn-pause', text: 'Pause' });
    const btnResume = h('button', { type: 'button', id: 'btn-resume', text: 'Resume' });
    const btnAbort = h('button', { type: 'button', id: 'btn-abort', class: 'danger', text: 'Abort…' });
    const confirmBox = h('div', { class: 'confirm', id: 'abort-confirm', hidden: true, role: 'alertdialog', 'aria-labelledby': 'abort-q' });
    const confirmYes = h('button', { type: 'button', id: 'btn-abort-confirm', class: 'danger', text: 'Abort the rollout' });
    const confirmNo = h('button', { type: 'button', id: 'btn-abort-cancel', text: 'Keep it' });
    confirmBox.append(
      h('p', { id: 'abort-q' }, h('strong', { text: `Abort rollout ${id}?` }),
        ' Devices still downloading or verifying are canceled and no further step starts. ' +
        'Devices that already installed the image keep it: there is no rollback. An aborted rollout cannot be resumed.'),
      h('div', { class: 'buttons' }, confirmYes, confirmNo));
    controls.append(reasonIn, btnPause, btnResume, btnAbort, confirmBox);

    async function act(action) {
      const body = {};
      if (reasonIn.value.trim()) body.reason = reasonIn.value.trim();
      for (const b of [btnPause, btnResume, btnAbort, confirmYes]) b.disabled = true;
      actionMsg.className = 'notice';
      actionMsg.textContent = `${action}: sending…`;
      actionMsg.hidden = false;
      const before = status ? status.state : null;
      try {
        await api('POST', `/rollouts/${encodeURIComponent(id)}/${action}`, body);
        actionMsg.textContent = `${action} sent; the controller answers with a new status.`;
        reasonIn.value = '';
        if (status && status.state === before) pending = { action, state: before, timer: setTimeout(() => { pending = null; paintControls(); }, 10000) };
      } catch (e) {
        actionMsg.className = 'notice notice-error';
        actionMsg.textContent = `${action} refused: ${e.message}`;
      }
      confirmBox.hidden = true;
      paintControls();
    }
    btnPause.addEventListener('click', () => act('pause'));
    btnResume.addEventListener('click', () => act('resume'));
    btnAbort.addEventListener('click', () => { confirmBox.hidden = false; confirmYes.focus(); paintControls(); });
    confirmNo.addEventListener('click', () => { confirmBox.hidden = true; paintControls(); });
    confirmYes.addEventListener('click', () => act('abort'));

    function paintControls() {
      const st = status ? status.state : null;
      if (pending && st !== pending.state) { clearTimeout(pending.timer); pending = null; }
      btnPause.disabled = !!pending || !(st === 'running' || st === 'halted');
      btnResume.disabled = !!pending || !(st === 'paused' || st === 'halted');
      btnAbort.disabled = !st || ROLLOUT_FINAL.has(st) || !confirmBox.hidden;
      confirmYes.disabled = !st || ROLLOUT_FINAL.has(st);
      controls.hidden = !st || ROLLOUT_FINAL.has(st);
      btnPause.title = btnPause.disabled ? 'only a running or halted rollout can be paused' : '';
      btnResume.title = btnResume.disabled ? 'only a paused or halted rollout can be resumed' : '';
    }

    /** When the current step's soak ends: timers.soak_until, or (the server
     *  leaves it out for the last step, whose soak delays "completed") the
     *  step's done time plus the policy's soak. */
    function soakUntil() {
      const t = data && data.timers;
      if (!t) return null;
      if (t.soak_until) return t.soak_until;
      const soakS = data.rollout && data.rollout.policy && data.rollout.policy.soak_s;
      const done = t.step_done ? Date.parse(t.step_done) : NaN;
      if (!soakS || Number.isNaN(done) || done <= 0) return null;
      return new Date(done + soakS * 1000).toISOString();
    }

    function paintSoak() {
      const until = soakUntil();
      if (!until || !status || ROLLOUT_FINAL.has(status.state)) { soakEl.textContent = 'not running'; return; }
      const left = (Date.parse(until) - Date.now()) / 1000;
      soakEl.textContent = Number.isNaN(left) ? String(until)
        : left > 0 ? `${fmtDuration(left)} left · ${fmtTime(until).slice(11)}` : `over · ${fmtTime(until).slice(11)}`;
    }

    function card(label, value, extra) {
      const v = value instanceof Node ? value : h('span', { text: String(value) });
      return h('div', { class: `card${extra ? ` ${extra}` : ''}` }, h('div', { class: 'card-label', text: label }), h('div', { class: 'card-value' }, v));
    }

    let shownState = null;
    function paintStatus() {
      const s = status;
      // the answer to an action came (or something else changed the state)
      if (s && shownState !== null && s.state !== shownState && !actionMsg.classList.contains('notice-error')) actionMsg.hidden = true;
      shownState = s ? s.state : null;
      head.replaceChildren(
        h('h1', null, 'Rollout ', h('span', { class: 'mono', id: 'rollout-id', text: id })),
        s ? h('span', { id: 'rollout-state', class: `badge st-${cls(s.state)}`, text: s.state }) : null,
        h('a', { class: 'back', href: '#/rollouts', text: '← all rollouts' }));
      if (!s) return;
      // The reason, prominently: why it halted, paused, aborted, waits or was refused.
      reason.hidden = !s.reason;
      reason.className = `reason reason-${cls(s.state)}`;
      reason.replaceChildren(
        h('span', { class: 'reason-label', text: REASON_LABEL[s.state] || 'Note' }),
        h('span', { class: 'reason-text', text: s.reason || '' }));
      const rollout = data && data.rollout;
      const policy = (rollout && rollout.policy) || {};
      const abort = policy.abort || {};
      summary.replaceChildren(
        card('State', badge(s.state)),
        card('Step', s.step < 0 ? `not started (${s.steps} steps)` : `${s.step + 1} of ${s.steps}`, 'card-step'),
        card('Devices reached', `${s.step_devices} of ${s.devices}`),
        card('Success threshold', `${policy.success_percent ?? 100} % of the reached devices`),
        card('Abort threshold', `${abort.failure_percent ?? 10} % of finished devices failed, once ${abort.min_finished ?? 1} or more finished`),
        card('Soak', policy.soak_s ? `${fmtDuration(policy.soak_s)} after each step` : 'none'),
        card('Soak timer', soakEl),
        card('Created', timeEl(s.created)),
        card('Updated', timeEl(s.updated)));
      paintSoak();
      // Counts per counted state, as a bar and as numbers.
      const total = ROLLOUT_COUNTS.reduce((a, k) => a + ((s.counts && s.counts[k]) || 0), 0);
      const bar = h('div', { class: 'stack', role: 'img', 'aria-label': 'devices by state' });
      const legend = h('ul', { class: 'legend' });
      for (const k of ROLLOUT_COUNTS) {
        const n = (s.counts && s.counts[k]) || 0;
        if (n > 0 && total > 0) {
          const seg = h('span', { class: `seg st-${k}`, title: `${k}: ${n}` });
          seg.style.flexGrow = String(n); // CSSOM, allowed by the CSP (no style attribute)
          bar.append(seg);
        }
        legend.append(h('li', { 'data-state': k }, badge(k), h('span', { class: 'n', text: String(n) })));
      }
      countsEl.replaceChildren(bar, legend);
      // Steps with their reach.
      const steps = rollout && Array.isArray(rollout.steps) && rollout.steps.length ? rollout.steps : [{ percent: 100 }];
      const reach = stepReach(steps, s.devices || 0);
      stepsEl.replaceChildren(...steps.map((st, k) => {
        const state = k < s.step ? 'done' : k === s.step ? 'current' : 'next';
        const what = typeof st.percent === 'number' ? `${st.percent} %` : `${st.count} device${st.count === 1 ? '' : 's'}`;
        return h('li', { class: `step step-${state}` },
          h('span', { class: 'step-n', text: `Step ${k + 1}` }),
          h('span', { class: 'step-what', text: what }),
          h('span', { class: 'step-reach', text: `reaches ${reach[k]} of ${s.devices || 0}` }),
          h('span', { class: 'step-state', text: state === 'current' ? (s.state === 'completed' ? 'done' : 'current') : state === 'done' ? 'done' : '' }));
      }));
      paintControls();
    }

    function paintRest() {
      const r = data && data.rollout;
      const job = (r && r.job) || {};
      const items = [['Job id', job.job_id], ['URL', job.url], ['SHA-256', job.sha256], ['Size', job.size != null ? `${job.size} bytes` : null],
        ['Version', job.version], ['Project', job.project], ['Chip', job.chip],
        ['Signed by', job.release && job.release.key_id ? job.release.key_id : 'not signed'],
        ['Target groups', r && r.target && r.target.groups ? r.target.groups.join(', ') : null],
        ['Target devices', r && r.target && r.target.devices ? r.target.devices.join(', ') : null],
        ['Step started', data && data.timers ? fmtTime(data.timers.step_started) : null],
        ['Step done', data && data.timers ? fmtTime(data.timers.step_done) : null]];
      jobEl.replaceChildren(...items.filter(([, v]) => v !== null && v !== undefined && v !== '')
        .flatMap(([k, v]) => [h('dt', { text: k }), h('dd', { class: 'mono', text: String(v) })]));
      devTable.sync(Array.isArray(data && data.devices) ? data.devices : []);
    }

    async function load() {
      try {
        const d = await api('GET', `/rollouts/${encodeURIComponent(id)}`);
        if (gone) return;
        data = d;
        // the stream's status may be newer than the GET's
        if (!status || !d.status || !status.updated || d.status.updated >= status.updated) status = d.status;
        notice.hidden = true;
        paintStatus();
        paintRest();
      } catch (e) {
        if (gone) return;
        if (e.status === 404 && !data && Date.now() - opened < 15000) {
          // just created: the controller stores it at its next batch
          notice.textContent = `Waiting for the controller to take rollout ${id}…`;
          notice.className = 'notice';
          notice.hidden = false;
          clearTimeout(retry);
          retry = setTimeout(load, 500);
          return;
        }
        notice.textContent = e.status === 404 ? `No rollout ${id} (it may have been deleted).` : e.message;
        notice.className = 'notice notice-error';
        notice.hidden = false;
        paintStatus();
      }
    }
    const reload = throttle(load, 1000);
    const onRollout = (s) => {
      if (s === null) return;
      if (s.rollout_id !== id) return;
      if (s.deleted) { status = null; notice.textContent = `Rollout ${id} was deleted.`; notice.hidden = false; paintStatus(); return; }
      status = s;
      paintStatus();
      reload();
    };
    rollouts.listeners.add(onRollout);
    let ticks = 0;
    soakTimer = setInterval(() => {
      paintSoak();
      // While not final, refresh the per-device rows now and then (device
      // states move without a status change).
      if (++ticks % 3 === 0 && status && !ROLLOUT_FINAL.has(status.state)) reload();
    }, 1000);
    paintStatus();
    paintControls();
    load();
    return {
      el,
      resync: load,
      unmount() {
        gone = true;
        rollouts.listeners.delete(onRollout);
        clearInterval(soakTimer);
        clearTimeout(retry);
        if (pending) clearTimeout(pending.timer);
        reload.cancel();
      },
    };
  }

  /* ---- one device ---------------------------------------------------------- */

  function deviceView(id) {
    const el = h('section', { class: 'view view-device' });
    const head = h('div', { class: 'view-head' });
    const facts = h('dl', { class: 'kv', id: 'device-facts' });
    const errEl = h('div', { class: 'reason reason-failed', id: 'device-error', hidden: true });
    const notice = h('p', { class: 'notice', hidden: true });
    const hist = new KeyedTable([
      { head: 'Time', cls: 'c-time', value: (l) => l.ts ?? '', paint: (td, v) => td.replaceChildren(timeEl(v)) },
      { head: 'Job', cls: 'c-job', value: (l) => l.job_id ?? '' },
      {
        head: 'Rollout', cls: 'c-id', value: (l) => l.rollout_id ?? '',
        paint: (td, v) => td.replaceChildren(v ? h('a', { href: rolloutHref(v), text: v }) : '—'),
      },
      {
        head: 'State', cls: 'c-state', value: (l) => l.state ?? null,
        init: (td) => td.append(h('span', { class: 'badge' })), paint: (td, v) => setBadge(td.firstChild, v),
      },
      { head: 'Attempt', cls: 'c-num', value: (l) => l.attempt ?? '' },
      { head: 'Error', cls: 'c-error', value: (l) => l.error ?? '', titled: true },
    ], (l) => `${l.job_id}\u0000${l.state}\u0000${l.ts}`, 'history');
    hist.table.id = 'device-history';
    const histEmpty = h('p', { class: 'empty muted', hidden: true, text: 'No finished job recorded for this device yet.' });
    el.append(head, notice, errEl, facts, h('h2', { text: 'Job history' }),
      h('p', { class: 'muted', text: 'Final states of the jobs this device ran, newest first (the controller\'s store).' }),
      h('div', { class: 'table-wrap' }, hist.table), histEmpty);
    let gone = false;
    let device = fleet.devices.get(id) || null;

    function paint() {
      const d = device;
      head.replaceChildren(h('h1', null, 'Device ', h('span', { class: 'mono', id: 'device-id', text: id })),
        d ? badge(d.state) : null,
        d ? h('span', { class: `online ${d.online ? 'is-on' : 'is-off'}`, text: d.online ? 'online' : 'offline' }) : null,
        h('a', { class: 'back', href: '#/devices', text: '← fleet' }));
      if (!d) return;
      const p = progressOf(d);
      const progress = p === null ? '—' : h('span', null, h('progress', { max: '100', value: String(p) }), ` ${p}%`,
        d.progress && d.progress.total ? ` (${d.progress.bytes} of ${d.progress.total} bytes)` : '');
      const rows = [
        ['State', badge(d.state)],
        ['Online', d.online ? 'yes' : 'no'],
        ['Groups', Array.isArray(d.groups) && d.groups.length ? d.groups.join(', ') : '—'],
        ['Job', d.job_id ?? '—'],
        ['Progress', progress],
        ['App version', d.app_version ?? '—'],
        ['Firmware version', d.fw_version ?? '—'],
        ['Last error', d.error ? errorLong(d.error) : '—'],
        ['Updated', timeEl(d.updated)],
      ];
      facts.replaceChildren(...rows.flatMap(([k, v]) => [h('dt', { text: k }),
        h('dd', { 'data-key': k }, v instanceof Node ? v : String(v))]));
      errEl.hidden = !d.error;
      errEl.replaceChildren(h('span', { class: 'reason-label', text: 'Last error' }),
        h('span', { class: 'reason-text', text: errorLong(d.error) }));
    }

    async function load() {
      try {
        const d = await api('GET', `/devices/${encodeURIComponent(id)}`);
        if (gone) return;
        const { history: lines, ...dev } = d;
        device = dev;
        paint();
        const list = Array.isArray(lines) ? lines : [];
        hist.sync(list);
        histEmpty.hidden = list.length > 0;
        notice.hidden = true;
      } catch (e) {
        if (gone) return;
        notice.textContent = e.status === 404 ? `No device ${id} is known to the controller.` : e.message;
        notice.className = 'notice notice-error';
        notice.hidden = false;
      }
    }
    const reload = throttle(load, 1000);
    const onDevice = (d) => {
      if (d.device_id !== id) return;
      const wasFinal = device && DEVICE_FINAL.has(device.state);
      device = d;
      paint();
      if (DEVICE_FINAL.has(d.state) && !wasFinal) reload(); // a new line in the history
    };
    fleet.listeners.add(onDevice);
    paint();
    load();
    return {
      el,
      resync: load,
      unmount() { gone = true; fleet.listeners.delete(onDevice); reload.cancel(); },
    };
  }

  /* ---- start a rollout ---------------------------------------------------- */

  /** "1,10%,50%,100%" -> [{count:1},{percent:10},...]; throws with a sentence. */
  function parseSteps(text) {
    const t = text.trim();
    if (!t) return undefined;
    return t.split(',').map((part, i) => {
      const p = part.trim();
      let m = /^(\d{1,7})\s*%$/.exec(p);
      if (m) return { percent: Number(m[1]) };
      m = /^(\d{1,7})$/.exec(p);
      if (m) return { count: Number(m[1]) };
      throw new Error(`steps: item ${i + 1} ("${p}") must be a number of devices (5) or a percent (10%)`);
    });
  }

  function parseList(text) {
    return text.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
  }

  /** "22:00-06:00, 12:00-13:00" -> [{start, end}, ...] */
  function parseWindows(text) {
    const t = text.trim();
    if (!t) return undefined;
    return t.split(',').map((part, i) => {
      const m = /^\s*(\d{2}:\d{2})\s*-\s*(\d{2}:\d{2})\s*$/.exec(part);
      if (!m) throw new Error(`windows: item ${i + 1} must be HH:MM-HH:MM (UTC)`);
      return { start: m[1], end: m[2] };
    });
  }

  function intField(input, name) {
    const v = input.value.trim();
    if (!v) return undefined;
    if (!/^\d+$/.test(v)) throw new Error(`${name}: a whole number, please`);
    return Number(v);
  }

  function newRolloutView() {
    const f = (id, props) => h('input', { id, spellcheck: 'false', autocomplete: 'off', ...props });
    const rid = f('f-rollout-id', { required: true, pattern: '[A-Za-z0-9._:-]{1,64}', placeholder: 'hosted-1.0.4' });
    const modeManifest = h('input', { type: 'radio', name: 'mode', id: 'f-mode-manifest', value: 'manifest', checked: true });
    const modeJob = h('input', { type: 'radio', name: 'mode', id: 'f-mode-job', value: 'job' });
    const url = f('f-url', { type: 'url', placeholder: 'https://updates.example.com/esp/na-1.0.4.bin' });
    const jobId = f('f-job-id', { placeholder: 'default: the rollout id', pattern: '[A-Za-z0-9._:-]{1,64}' });
    const manifest = h('textarea', { id: 'f-manifest', rows: '6', spellcheck: 'false', placeholder: '{"format": "espfleet-release-v1", ...} as `espfleet sign` writes it' });
    const manifestFile = h('input', { type: 'file', id: 'f-manifest-file', accept: '.json,application/json' });
    const manifestInfo = h('div', { class: 'manifest-info', id: 'f-manifest-info' });
    const job = h('textarea', { id: 'f-job', rows: '6', spellcheck: 'false', placeholder: '{"job_id": "...", "url": "https://...", "sha256": "...", "size": 1048576, "version": "1.0.4"}' });
    const groups = f('f-groups', { placeholder: 'site-a, site-b', list: 'f-groups-list' });
    const groupsList = h('datalist', { id: 'f-groups-list' }, [...fleet.groups].sort().map((g) => h('option', { value: g })));
    const devices = f('f-devices', { placeholder: 'gw-0042, gw-0043' });
    const steps = f('f-steps', { placeholder: '1,10%,50%,100% (default: 100%)' });
    const success = f('f-success', { inputmode: 'numeric', placeholder: '100' });
    const abortPct = f('f-abort-pct', { inputmode: 'numeric', placeholder: '10' });
    const abortMin = f('f-abort-min', { inputmode: 'numeric', placeholder: '1' });
    const soak = f('f-soak', { inputmode: 'numeric', placeholder: '0' });
    const inprog = f('f-inprog', { inputmode: 'numeric', placeholder: '3600' });
    const offline = f('f-offline', { inputmode: 'numeric', placeholder: '600' });
    const windows = f('f-windows', { placeholder: '22:00-06:00 (UTC; default: any time)' });
    const preview = h('pre', { class: 'preview', id: 'f-preview' });
    const err = h('div', { class: 'form-error', id: 'f-error', role: 'alert', hidden: true });
    const submit = h('button', { type: 'submit', id: 'f-submit', class: 'primary', text: 'Start rollout' });

    const manifestBlock = h('fieldset', { class: 'mode-manifest' },
      h('legend', { text: 'Signed release' }),
      h('label', { for: 'f-url', text: 'Image URL' }), url,
      h('label', { for: 'f-manifest', text: 'Signed manifest (paste, or choose the file `espfleet sign` wrote)' }),
      manifest, h('div', { class: 'row' }, manifestFile), manifestInfo,
      h('label', { for: 'f-job-id', text: 'Job id' }), jobId);
    const jobBlock = h('fieldset', { class: 'mode-job', hidden: true },
      h('legend', { text: 'Job document' }),
      h('label', { for: 'f-job', text: 'Job document (JSON, docs/schema/job.schema.json; no rollout key)' }), job);

    const form = h('form', { class: 'form', id: 'new-rollout', novalidate: true },
      h('label', { for: 'f-rollout-id', text: 'Rollout id' }), rid,
      h('div', { class: 'radios', role: 'radiogroup', 'aria-label': 'What to install' },
        h('label', null, modeManifest, ' signed manifest + URL'),
        h('label', null, modeJob, ' job document')),
      manifestBlock, jobBlock,
      h('fieldset', null, h('legend', { text: 'Target' }),
        h('label', { for: 'f-groups', text: 'Groups' }), groups, groupsList,
        h('label', { for: 'f-devices', text: 'Devices' }), devices),
      h('fieldset', null, h('legend', { text: 'Steps and policy' }),
        h('label', { for: 'f-steps', text: 'Steps (counts and percents, cumulative; the last one 100%)' }), steps,
        h('div', { class: 'grid3' },
          h('div', null, h('label', { for: 'f-success', text: 'Success %' }), success),
          h('div', null, h('label', { for: 'f-abort-pct', text: 'Abort at failure %' }), abortPct),
          h('div', null, h('label', { for: 'f-abort-min', text: 'Abort needs failures ≥' }), abortMin),
          h('div', null, h('label', { for: 'f-soak', text: 'Soak (s)' }), soak),
          h('div', null, h('label', { for: 'f-inprog', text: 'In-progress timeout (s)' }), inprog),
          h('div', null, h('label', { for: 'f-offline', text: 'Offline timeout (s)' }), offline)),
        h('label', { for: 'f-windows', text: 'Maintenance windows' }), windows),
      err,
      h('div', { class: 'buttons' }, submit, h('a', { href: '#/rollouts', class: 'button', text: 'Cancel' })),
      h('details', { class: 'preview-box' }, h('summary', { text: 'Request body (POST /api/v1/rollouts)' }), preview));

    const el = h('section', { class: 'view view-new' },
      h('div', { class: 'view-head' }, h('h1', { text: 'New rollout' })),
      h('p', { class: 'muted', text: 'The controller checks the document as it would any rollout (docs/rollouts.md) and refuses it with a sentence that says why.' }),
      h('p', { class: 'notice viewer-only', text: 'Your token is a viewer\'s: the controller refuses to start rollouts for it.' }),
      form);

    const mode = () => (modeJob.checked ? 'job' : 'manifest');

    function parseJson(text, what) {
      try {
        const v = JSON.parse(text);
        if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not a JSON object');
        return v;
      } catch (e) {
        throw new Error(`${what}: not a JSON object (${e.message})`);
      }
    }

    function build() {
      const body = { rollout_id: rid.value.trim() };
      if (mode() === 'manifest') {
        body.url = url.value.trim();
        if (!manifest.value.trim()) throw new Error('manifest: paste the signed manifest or choose its file');
        body.manifest = parseJson(manifest.value, 'manifest');
        if (jobId.value.trim()) body.job_id = jobId.value.trim();
      } else {
        if (!job.value.trim()) throw new Error('job: paste the job document');
        body.job = parseJson(job.value, 'job');
      }
      const target = {};
      const g = parseList(groups.value);
      const d = parseList(devices.value);
      if (g.length) target.groups = g;
      if (d.length) target.devices = d;
      body.target = target;
      const st = parseSteps(steps.value);
      if (st) body.steps = st;
      const policy = {};
      const sp = intField(success, 'success %');
      if (sp !== undefined) policy.success_percent = sp;
      const ap = intField(abortPct, 'abort at failure %');
      const am = intField(abortMin, 'abort needs failures');
      if (ap !== undefined || am !== undefined) {
        policy.abort = {};
        if (ap !== undefined) policy.abort.failure_percent = ap;
        if (am !== undefined) policy.abort.min_finished = am;
      }
      const so = intField(soak, 'soak');
      if (so !== undefined) policy.soak_s = so;
      const ip = intField(inprog, 'in-progress timeout');
      if (ip !== undefined) policy.in_progress_timeout_s = ip;
      const ot = intField(offline, 'offline timeout');
      if (ot !== undefined) policy.offline_timeout_s = ot;
      const w = parseWindows(windows.value);
      if (w) policy.windows = w;
      if (Object.keys(policy).length) body.policy = policy;
      return body;
    }

    function showManifest() {
      manifestInfo.replaceChildren();
      const t = manifest.value.trim();
      if (!t) return;
      let m;
      try { m = parseJson(t, 'manifest'); } catch (e) {
        manifestInfo.append(h('span', { class: 'bad', text: e.message }));
        return;
      }
      const facts = [['project', m.project], ['version', m.version], ['chip', m.chip], ['size', m.size],
        ['sha256', typeof m.sha256 === 'string' ? `${m.sha256.slice(0, 16)}…` : m.sha256],
        ['hosted release', m.hosted_release], ['signed by', m.key_id]];
      manifestInfo.append(...facts.filter(([, v]) => v !== undefined && v !== null)
        .map(([k, v]) => h('span', { class: 'fact' }, h('span', { class: 'muted', text: `${k} ` }), String(v))));
      if (m.format !== 'espfleet-release-v1' || typeof m.signature !== 'string') {
        manifestInfo.append(h('span', { class: 'bad', text: 'not a signed espfleet-release-v1 manifest' }));
      }
    }

    function updatePreview() {
      try {
        preview.textContent = JSON.stringify(build(), null, 2);
      } catch (e) {
        preview.textContent = `(${e.message})`;
      }
    }

    function setMode() {
      manifestBlock.hidden = mode() !== 'manifest';
      jobBlock.hidden = mode() !== 'job';
      updatePreview();
    }
    modeManifest.addEventListener('change', setMode);
    modeJob.addEventListener('change', setMode);
    manifest.addEventListener('input', showManifest);
    manifestFile.addEventListener('change', async () => {
      const file = manifestFile.files && manifestFile.files[0];
      if (!file) return;
      if (file.size > 65536) { manifestInfo.replaceChildren(h('span', { class: 'bad', text: 'manifest: that file is too big for a manifest' })); return; }
      manifest.value = await file.text();
      showManifest();
      updatePreview();
    });
    form.addEventListener('input', updatePreview);

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      err.hidden = true;
      let body;
      try {
        body = build();
        if (!body.rollout_id) throw new Error('rollout id: required');
        if (mode() === 'manifest' && !body.url) throw new Error('image URL: required');
        if (!body.target.groups && !body.target.devices) throw new Error('target: name at least one group or device');
      } catch (e) {
        err.textContent = e.message;
        err.hidden = false;
        return;
      }
      submit.disabled = true;
      submit.textContent = 'Starting…';
      try {
        const r = await api('POST', '/rollouts', body);
        location.hash = rolloutHref((r && r.rollout_id) || body.rollout_id);
      } catch (e) {
        err.replaceChildren(h('strong', { text: e.status ? `${e.status} ${e.code}: ` : '' }), h('span', { class: 'form-error-text', text: e.message }));
        err.hidden = false;
      } finally {
        submit.disabled = false;
        submit.textContent = 'Start rollout';
      }
    });
    updatePreview();
    return { el };
  }

  /* ---- live updates ----------------------------------------------------------- */

  const live = {
    es: null,
    retry: 0,
    poll: 0,
    set(state, text) {
      const el = $('#live');
      el.className = `live live-${state}`;
      el.textContent = text || state;
    },
    start() {
      this.stop();
      const url = `${API}/events${token ? `?access_token=${encodeURIComponent(token)}` : ''}`;
      const es = new EventSource(url);
      this.es = es;
      this.set('connecting');
      es.addEventListener('open', () => {
        this.set('live');
        if (!auth.role) auth.load();
        clearInterval(this.poll);
        this.poll = 0;
        // Whatever happened while the stream was down: read it again.
        resync();
      });
      es.addEventListener('error', () => {
        if (es.readyState === EventSource.CLOSED) {
          // refused (401, 403, not an event stream): EventSource gives up; we do not
          this.set('offline', 'no live updates');
          clearTimeout(this.retry);
          this.retry = setTimeout(() => { auth.load(); this.start(); }, 5000);
        } else {
          this.set('reconnecting');
        }
        if (!this.poll) this.poll = setInterval(() => fleet.snapshot(), 10000);
      });
      const parse = (ev) => {
        try { return JSON.parse(ev.data); } catch { return null; }
      };
      es.addEventListener('device', (ev) => { stats.events.device++; fleet.put(parse(ev), true); });
      es.addEventListener('progress', (ev) => { stats.events.progress++; fleet.progress(parse(ev)); });
      es.addEventListener('rollout', (ev) => { stats.events.rollout++; rollouts.put(parse(ev)); });
      // the server's ring left this stream behind: events were lost
      es.addEventListener('resync', () => { stats.events.resync = (stats.events.resync || 0) + 1; resync(); });
    },
    stop() {
      if (this.es) this.es.close();
      this.es = null;
      clearTimeout(this.retry);
      clearInterval(this.poll);
      this.poll = 0;
    },
  };

  /* ---- routing ---------------------------------------------------------------- */

  const router = {
    current: null,
    view: null,
    go() {
      const raw = location.hash || '#/devices';
      const [path, query] = raw.slice(1).split('?');
      const params = new URLSearchParams(query || '');
      const parts = path.split('/').filter(Boolean).map((p) => {
        try { return decodeURIComponent(p); } catch { return p; }
      });
      if (this.view && this.view.unmount) this.view.unmount();
      let name;
      if (parts[0] === 'rollouts' && parts[1]) { name = 'rollout'; this.view = rolloutView(parts.slice(1).join('/')); }
      else if (parts[0] === 'rollouts') { name = 'rollouts'; this.view = rolloutListView(); }
      else if (parts[0] === 'devices' && parts[1]) { name = 'device'; this.view = deviceView(parts.slice(1).join('/')); }
      else if (parts[0] === 'new') { name = 'new'; this.view = newRolloutView(); }
      else { name = 'fleet'; this.view = fleet.view(params); }
      this.current = name;
      document.body.dataset.view = name;
      $('#view').replaceChildren(this.view.el);
      for (const [id, on] of [['nav-devices', name === 'fleet' || name === 'device'],
        ['nav-rollouts', name === 'rollouts' || name === 'rollout'], ['nav-new', name === 'new']]) {
        const a = document.getElementById(id);
        if (on) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
      }
      const titles = { fleet: 'Fleet', device: `Device ${parts[1] || ''}`, rollouts: 'Rollouts', rollout: `Rollout ${parts[1] || ''}`, new: 'New rollout' };
      document.title = `${titles[name]} · espfleet`;
    },
  };

  /** Reads again what the page shows (the stream was down, or lost events). */
  function resync() {
    fleet.snapshot();
    rollouts.snapshot().catch(() => {});
    if (router.view && router.view.resync) router.view.resync();
  }

  /** A new token, or the page's start: who am I, the stream, the fleet. */
  function restart() {
    auth.load();
    fleet.loaded = false;
    fleet.devices.clear();
    fleet.counted.clear();
    fleet.counts.clear();
    fleet.countsDirty = true;
    live.start();
    // the stream's open reads the fleet; without a stream, read it anyway
    clearTimeout(restart.fallback);
    restart.fallback = setTimeout(() => { if (!fleet.loaded && !fleet.loading) fleet.snapshot(); }, 1500);
    rollouts.snapshot().catch(() => {});
    router.go();
  }

  function init() {
    const input = $('#token');
    input.value = token;
    $('#token-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      setToken(input.value.trim());
    });
    $('#token-forget').addEventListener('click', () => { input.value = ''; setToken(''); });
    window.addEventListener('hashchange', () => router.go());
    document.addEventListener('visibilitychange', () => {
      // a hidden tab ran its updates on a timer; frames again now
      if (!document.hidden && fleet.pending.size) fleet.flush();
    });
    fleet.build();
    restart();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
