// `#/ns/<ns>/<script>/tail`: the NDJSON stream of GET …/tail read with
// fetch + ReadableStream (EventSource cannot send the bearer header).
// Newest first, at most 500 rows; Pause keeps reading into a buffer of 500.

import { call, scriptPath } from '../api.js';
import { h, put, notice, isAbort, fmtTime, fmtNum, crumbs, anySignal } from '../dom.js';

const MAX = 500;
const COLS = ['Time', 'Method', 'Path', 'Status', 'Outcome', 'Duration', 'CPU', 'Request id', 'Logs'];

export default function tail(main, [ns, name], ctx) {
  ctx.title(`Tail ${name} · ${ns}`);
  const sig = ctx.signal;

  const state = h('p', { id: 'tail-status', class: 'tail-status', role: 'status', dataset: { tailState: 'connecting' } }, 'Connecting…');
  const reconnect = h('button', { type: 'button', id: 'tail-reconnect', hidden: true }, 'Reconnect');
  const statusSel = h('select', { id: 'filter-status' },
    ['all', '2xx', '3xx', '4xx', '5xx'].map((v) => h('option', { value: v }, v === 'all' ? 'Any status' : v)));
  const outcomeSel = h('select', { id: 'filter-outcome' },
    h('option', { value: 'all' }, 'Any outcome'), h('option', { value: 'ok' }, 'ok'),
    h('option', { value: 'error' }, 'any error'));
  const pauseBtn = h('button', { type: 'button', id: 'pause', 'aria-pressed': 'false' }, 'Pause');
  const clearBtn = h('button', { type: 'button', id: 'tail-clear' }, 'Clear');
  const counts = h('p', { class: 'muted', id: 'tail-counts' }, '\u00a0');
  const empty = h('tbody', { class: 'tail-empty' }, h('tr', {}, h('td', { colspan: COLS.length }, 'Waiting for requests…')));
  const tableEl = h('table', { id: 'tail-table' },
    h('caption', { class: 'sr-only' }, 'Requests, newest first'),
    h('thead', {}, h('tr', {}, COLS.map((c) => h('th', { scope: 'col' }, c)))),
    empty);

  put(main,
    crumbs(['Namespaces', 'namespaces'], [ns, 'ns', ns], [name, 'ns', ns, name], ['Live tail']),
    h('div', { class: 'page-head' }, h('h1', {}, 'Live tail of ', h('span', { class: 'mono' }, `${ns}/${name}`))),
    h('div', { class: 'row' }, state, reconnect),
    h('div', { class: 'filters row' },
      h('span', { class: 'pair' }, h('label', { for: 'filter-status' }, 'Status class'), statusSel),
      h('span', { class: 'pair' }, h('label', { for: 'filter-outcome' }, 'Outcome'), outcomeSel),
      pauseBtn, clearBtn),
    counts,
    h('div', { class: 'table-wrap table-slot-tall' }, tableEl));

  /** Shown events, oldest first: {ev, body}. */
  const rows = [];
  let queue = [];
  let pending = [];
  let paused = false;
  let lagged = 0;
  let droppedPaused = 0;
  let frame = 0;
  const outcomes = new Set(['ok']);

  const statusClass = (s) => (typeof s === 'number' ? `${Math.floor(s / 100)}xx` : 'none');
  function visible(ev) {
    const sc = statusSel.value;
    const oc = outcomeSel.value;
    if (sc !== 'all' && statusClass(ev.status) !== sc) return false;
    if (oc === 'all') return true;
    if (oc === 'error') return ev.outcome !== 'ok';
    return ev.outcome === oc;
  }

  function updateCounts() {
    const shown = rows.filter((r) => !r.body.hidden).length;
    let t = `Showing ${shown} of ${rows.length} (newest ${MAX} kept)`;
    if (lagged) t += ` · ${fmtNum(lagged)} dropped by the server (lagged)`;
    if (droppedPaused) t += ` · ${fmtNum(droppedPaused)} dropped while paused`;
    counts.textContent = t;
    empty.hidden = shown > 0;
    if (paused) pauseBtn.textContent = `Resume (${pending.length} new)`;
  }

  function rowFor(ev) {
    const logs = Array.isArray(ev.logs) ? ev.logs : [];
    const id = 'logs-' + Math.random().toString(36).slice(2);
    const extra = [];
    if (ev.fuel != null) extra.push(`fuel ${fmtNum(ev.fuel)}`);
    if (ev.subrequests != null) extra.push(`subrequests ${fmtNum(ev.subrequests)}`);
    if (Array.isArray(ev.dispatched_to) && ev.dispatched_to.length) extra.push('dispatched to ' + ev.dispatched_to.join(', '));
    const detail = h('tr', { class: 'tail-logs', id, hidden: true },
      h('td', { colspan: COLS.length },
        extra.length ? h('p', { class: 'muted' }, extra.join(' · ')) : null,
        logs.length
          ? h('pre', {}, logs.map((l) => h('span', { class: 'log-' + (l?.stream === 'stderr' ? 'err' : 'out') },
            `[${l?.stream ?? '?'}] ${l?.line ?? ''}\n`)))
          : h('p', { class: 'muted' }, 'No log lines.')));
    const toggle = h('button', { type: 'button', class: 'linkish', 'aria-expanded': 'false', 'aria-controls': id },
      logs.length ? `${logs.length} line${logs.length === 1 ? '' : 's'}` : 'details');
    toggle.addEventListener('click', () => {
      detail.hidden = !detail.hidden;
      toggle.setAttribute('aria-expanded', String(!detail.hidden));
    });
    const ok = ev.outcome === 'ok';
    const tr = h('tr', { class: ok ? '' : 'is-error' },
      h('td', { class: 'nowrap' }, fmtTime(ev.timestamp_ms, true)),
      h('td', {}, String(ev.method ?? '')),
      h('td', { class: 'mono path' }, String(ev.path ?? '')),
      h('td', { class: 'status s' + statusClass(ev.status) }, ev.status == null ? '—' : String(ev.status)),
      h('td', { class: 'outcome' }, String(ev.outcome ?? '')),
      h('td', { class: 'num' }, ev.duration_ms == null ? '—' : fmtNum(ev.duration_ms) + ' ms'),
      h('td', { class: 'num' }, ev.cpu_ms == null ? '—' : fmtNum(ev.cpu_ms) + ' ms'),
      h('td', {}, h('code', {}, String(ev.request_id ?? '—'))),
      h('td', {}, toggle));
    const body = h('tbody', { class: 'ev' }, tr, detail);
    body.hidden = !visible(ev);
    return body;
  }

  function noteOutcome(o) {
    if (typeof o !== 'string' || outcomes.has(o)) return;
    outcomes.add(o);
    outcomeSel.appendChild(h('option', { value: o }, o));
  }

  function flush() {
    frame = 0;
    const batch = queue.length > MAX ? queue.slice(-MAX) : queue;
    queue = [];
    for (const ev of batch) {
      noteOutcome(ev.outcome);
      const body = rowFor(ev);
      tableEl.insertBefore(body, tableEl.tBodies[0] || null);
      rows.push({ ev, body });
    }
    while (rows.length > MAX) rows.shift().body.remove();
    updateCounts();
  }

  function incoming(ev) {
    if (paused) {
      pending.push(ev);
      if (pending.length > MAX) { pending.shift(); droppedPaused++; }
      updateCounts();
      return;
    }
    queue.push(ev);
    if (queue.length > MAX) queue.shift();
    if (!frame) frame = requestAnimationFrame(flush);
  }
  sig.addEventListener('abort', () => cancelAnimationFrame(frame));

  function refilter() {
    for (const r of rows) r.body.hidden = !visible(r.ev);
    updateCounts();
  }
  statusSel.addEventListener('change', refilter);
  outcomeSel.addEventListener('change', refilter);
  pauseBtn.addEventListener('click', () => {
    paused = !paused;
    pauseBtn.setAttribute('aria-pressed', String(paused));
    if (paused) {
      updateCounts();
    } else {
      pauseBtn.textContent = 'Pause';
      queue.push(...pending);
      pending = [];
      flush();
    }
  });
  clearBtn.addEventListener('click', () => {
    for (const r of rows) r.body.remove();
    rows.length = 0;
    lagged = 0;
    droppedPaused = 0;
    updateCounts();
  });

  function setState(s, text) {
    state.dataset.tailState = s;
    put(state, s === 'error' ? notice(text) : text);
    reconnect.hidden = !(s === 'ended' || s === 'error');
  }

  function handle(line) {
    if (!line.trim()) return;
    let obj;
    try { obj = JSON.parse(line); } catch { return; }
    if (!obj || typeof obj !== 'object') return;
    if ('tail' in obj) {
      setState('live', `Live: ${obj.tail} since ${fmtTime(obj.since_ms)}`);
      ctx.ready();
    } else if ('lagged' in obj) {
      lagged += Number(obj.lagged) || 0;
      updateCounts();
    } else {
      incoming(obj);
    }
  }

  let conn = null;
  async function connect() {
    if (conn) conn.abort();
    conn = new AbortController();
    const signal = anySignal(sig, conn.signal);
    setState('connecting', 'Connecting…');
    try {
      const res = await call(scriptPath(ns, name, '/tail'), { raw: true, signal });
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      signal.addEventListener('abort', () => reader.cancel().catch(() => {}));
      let buf = '';
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buf += value;
        if (buf.indexOf('\n') < 0) continue;
        const lines = buf.split('\n');
        buf = lines.pop();
        for (const l of lines) handle(l);
      }
      if (buf) handle(buf);
      if (!signal.aborted) setState('ended', 'The stream ended.');
    } catch (e) {
      if (isAbort(e) || signal.aborted) return;
      setState('error', 'Tail failed: ' + e.message);
      ctx.ready();
    }
  }
  reconnect.addEventListener('click', connect);
  updateCounts();
  connect();
}
