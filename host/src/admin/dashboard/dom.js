// DOM helpers. Every string that reaches the page goes through text nodes
// (textContent / createTextNode): tenant data (names, tags, vars, keys, log
// lines, error messages) can never become markup. No innerHTML anywhere.

/**
 * Creates an element. `attrs`: `class`, `text`, `dataset` (object),
 * `on` (object of event listeners), booleans (set/removed), anything else
 * via setAttribute. Children: nodes, strings (as text), arrays, null.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = String(v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === 'value') el.value = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c == null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** Replaces the children of `el`. */
export function put(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A link into the dashboard: `parts` are path segments, each encoded. */
export function href(...parts) {
  return '#/' + parts.map((p) => encodeURIComponent(p)).join('/');
}

export function link(text, ...parts) {
  return h('a', { href: href(...parts) }, text);
}

/** A table with a fixed header; `rows` are arrays of cells (nodes/text). */
export function table({ caption, head, rows, id, cls, empty = 'Nothing here.' }) {
  const tbody = h('tbody');
  fillRows(tbody, head.length, rows, empty);
  return h('div', { class: 'table-wrap' + (cls ? ' ' + cls : '') },
    h('table', { id },
      caption ? h('caption', { class: 'sr-only' }, caption) : null,
      h('thead', {}, h('tr', {}, head.map((c) => h('th', { scope: 'col' }, c)))),
      tbody));
}

export function fillRows(tbody, cols, rows, empty = 'Nothing here.') {
  if (!rows.length) {
    put(tbody, h('tr', { class: 'empty' }, h('td', { colspan: cols }, empty)));
    return;
  }
  put(tbody, rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c)))));
}

/** Placeholder rows of fixed height while a table loads. */
export function skeletonTable(head, n = 6) {
  return table({
    head,
    rows: Array.from({ length: n }, () => head.map(() => h('span', { class: 'skeleton skeleton-text' }))),
  });
}

/** An inline message; `role=alert` for errors so screen readers announce it. */
export function notice(message, kind = 'error') {
  return h('p', { class: 'notice notice-' + kind, role: kind === 'error' ? 'alert' : 'status' }, message);
}

// ---- formatting ---------------------------------------------------------

const nf = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
const nf3 = new Intl.NumberFormat(undefined, { maximumSignificantDigits: 3 });

export function fmtNum(v) {
  if (v == null || !Number.isFinite(Number(v))) return '—';
  return nf.format(Number(v));
}

/** Three significant digits, with k/M/G suffixes. */
export function fmtShort(v) {
  if (v == null || !Number.isFinite(v)) return '—';
  const a = Math.abs(v);
  if (a >= 1e9) return nf3.format(v / 1e9) + 'G';
  if (a >= 1e6) return nf3.format(v / 1e6) + 'M';
  if (a >= 1e4) return nf3.format(v / 1e3) + 'k';
  return nf3.format(v);
}

export function fmtBytes(v) {
  if (v == null || !Number.isFinite(Number(v))) return '—';
  let n = Number(v);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? String(n) : nf3.format(n)) + ' ' + units[i];
}

export function fmtMs(v) {
  if (v == null || !Number.isFinite(Number(v))) return '—';
  const n = Number(v);
  if (n >= 10000) return nf3.format(n / 1000) + ' s';
  return nf3.format(n) + ' ms';
}

export function fmtPct(v) {
  if (v == null || !Number.isFinite(v)) return '—';
  return nf3.format(v * 100) + ' %';
}

export function fmtTime(ms, withMs = false) {
  if (ms == null || !Number.isFinite(Number(ms))) return '—';
  const d = new Date(Number(ms));
  const t = d.toLocaleTimeString(undefined, { hour12: false });
  return withMs ? t + '.' + String(d.getMilliseconds()).padStart(3, '0') : t;
}

/** RFC 3339 → local date and time; unparseable text is shown as is. */
export function fmtDate(s) {
  if (s == null || s === '') return '—';
  const d = new Date(s);
  if (Number.isNaN(d.getTime())) return String(s);
  return d.toLocaleString(undefined, { hour12: false });
}

export function ago(ms) {
  if (ms == null || !Number.isFinite(Number(ms))) return '—';
  const s = Math.round((Date.now() - Number(ms)) / 1000);
  if (s < 2) return 'just now';
  if (s < 120) return s + ' s ago';
  if (s < 7200) return Math.round(s / 60) + ' min ago';
  return Math.round(s / 3600) + ' h ago';
}

/** Any JSON-ish value as short text: objects as `k=v, …`. */
export function fmtValue(v) {
  if (v == null) return '—';
  if (typeof v === 'string') return v === '' ? '—' : v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return v.length ? v.map(fmtValue).join(', ') : '—';
  const parts = Object.entries(v).filter(([, x]) => x != null).map(([k, x]) => `${k}=${typeof x === 'object' ? JSON.stringify(x) : x}`);
  return parts.length ? parts.join(', ') : '—';
}

/** Calls `fn` now and then `ms` after each run finishes, until `signal` aborts. */
export function poll(fn, ms, signal) {
  let timer = 0;
  const run = async () => {
    if (signal.aborted) return;
    try { await fn(); } catch (e) { if (e?.name !== 'AbortError') console.warn('poll:', e?.message); }
    if (!signal.aborted) timer = setTimeout(run, ms);
  };
  signal.addEventListener('abort', () => clearTimeout(timer));
  run();
}

export function debounce(fn, ms) {
  let t = 0;
  const d = (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
  d.cancel = () => clearTimeout(t);
  return d;
}

export const isAbort = (e) => e?.name === 'AbortError';

/** Breadcrumb trail: `[text, ...pathParts]` links, the last item is text. */
export function crumbs(...items) {
  const last = items.length - 1;
  return h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' },
    h('ol', {}, items.map((it, i) => h('li', {},
      i === last ? h('span', { 'aria-current': 'page' }, it[0]) : link(it[0], ...it.slice(1))))));
}

/** Tags as chips (text only). */
export function tagList(tags) {
  if (!Array.isArray(tags) || !tags.length) return '—';
  return h('ul', { class: 'tags' }, tags.map((t) => h('li', { class: 'tag' }, String(t))));
}

/** A signal aborted when any of `signals` aborts. */
export function anySignal(...signals) {
  if (AbortSignal.any) return AbortSignal.any(signals);
  const c = new AbortController();
  for (const s of signals) {
    if (s.aborted) c.abort();
    else s.addEventListener('abort', () => c.abort(), { once: true });
  }
  return c.signal;
}
