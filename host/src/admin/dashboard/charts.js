// Time-series charts on the vendored uPlot (global `uPlot`, loaded by
// index.html). A chart box has a fixed height from the start (skeleton
// first), so nothing moves when data arrives. Missing series degrade to a
// "no data" note; null values are gaps.

import { h, put } from './dom.js';

const live = new Set();

function cssVar(name, fallback) {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

export function colors() {
  return {
    fg: cssVar('--fg-muted', '#666'),
    grid: cssVar('--grid', 'rgba(128,128,128,.2)'),
    series: Array.from({ length: 8 }, (_, i) => cssVar('--c' + (i + 1), '#888')),
    named: {
      '2xx': cssVar('--ok', '#2a7'), '3xx': cssVar('--c1', '#37c'),
      '4xx': cssVar('--warn', '#c80'), '5xx': cssVar('--bad', '#d33'),
      p50: cssVar('--c1', '#37c'), p99: cssVar('--c4', '#a4c'),
    },
  };
}

// Redraw every chart in the new colours when the theme changes.
window.addEventListener('berth:theme', () => { for (const c of live) c.rebuild(); });

/** Axis tick: HH:MM, or HH:MM:SS off the minute. */
function clock(v) {
  if (v == null) return '';
  const d = new Date(v * 1000);
  const p = (n) => String(n).padStart(2, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}` + (d.getSeconds() ? ':' + p(d.getSeconds()) : '');
}

/** Numbers or null, exactly `n` long. */
export function clean(arr, n) {
  const out = new Array(n).fill(null);
  if (!Array.isArray(arr)) return out;
  for (let i = 0; i < n && i < arr.length; i++) {
    const v = arr[i];
    out[i] = typeof v === 'number' && Number.isFinite(v) ? v : null;
  }
  return out;
}

/** X values (Unix seconds) of a history result. */
export function xsOf(hist) {
  const n = Math.max(0, Number(hist?.points) || 0);
  const step = Number(hist?.step_s) || 1;
  const start = (Number(hist?.start_ms) || 0) / 1000;
  return Array.from({ length: n }, (_, i) => start + i * step);
}

/** Index of the last point where `arr` has a number, or -1. */
export function lastIndex(arr) {
  if (!Array.isArray(arr)) return -1;
  for (let i = arr.length - 1; i >= 0; i--) if (typeof arr[i] === 'number') return i;
  return -1;
}

/**
 * A chart in a fixed-size figure. `fmt` formats values (axis and legend).
 * `update(xs, [{label, data, color?}])`; an empty list shows "no data".
 */
export class TimeChart {
  constructor({ title, fmt = String, id }) {
    this.title = title;
    this.fmt = fmt;
    this.plot = h('div', { class: 'chart-plot' }, h('div', { class: 'skeleton chart-skeleton' }));
    this.note = h('p', { class: 'chart-note', hidden: true });
    this.summary = h('p', { class: 'sr-only' });
    this.el = h('figure', { class: 'chart', id, 'aria-label': title },
      h('figcaption', {}, title), this.plot, this.note, this.summary);
    this.u = null;
    this.key = '';
    this.data = null;
    this.series = [];
    this.ro = new ResizeObserver(() => this.resize());
    this.ro.observe(this.plot);
    live.add(this);
  }

  size() {
    return { width: Math.max(200, Math.floor(this.plot.clientWidth)), height: 170 };
  }

  resize() {
    if (this.u) {
      const s = this.size();
      if (s.width !== this.u.width) this.u.setSize(s);
    }
  }

  showNote(text) {
    this.note.textContent = text;
    this.note.hidden = !text;
  }

  update(xs, series) {
    series = series.filter((s) => Array.isArray(s.data));
    if (!series.length) {
      this.destroyPlot();
      put(this.plot);
      this.showNote('Not available.');
      this.summary.textContent = this.title + ': not available.';
      return;
    }
    if (!xs.length) {
      // No points yet: draw empty axes over the last 15 minutes.
      const now = Math.floor(Date.now() / 1000);
      xs = [now - 900, now];
    }
    const n = xs.length;
    const data = [xs, ...series.map((s) => clean(s.data, n))];
    const key = series.map((s) => s.label).join('\u0000');
    this.series = series;
    this.data = data;
    const empty = data.slice(1).every((d) => d.every((v) => v == null));
    this.showNote(empty ? 'No data yet.' : '');
    if (this.u && key === this.key) this.u.setData(data);
    else { this.key = key; this.build(); }
    const last = series.map((s, i) => {
      const d = data[i + 1];
      const j = lastIndex(d);
      return `${s.label} ${j < 0 ? 'no data' : this.fmt(d[j])}`;
    });
    this.summary.textContent = `${this.title}, latest: ${last.join('; ')}.`;
  }

  build() {
    this.destroyPlot();
    put(this.plot);
    if (!this.data || typeof window.uPlot !== 'function') {
      if (typeof window.uPlot !== 'function') this.showNote('Chart library failed to load.');
      return;
    }
    const c = colors();
    const fmt = this.fmt;
    const axis = {
      stroke: c.fg,
      grid: { stroke: c.grid, width: 1 },
      ticks: { stroke: c.grid, width: 1 },
      font: '11px system-ui, sans-serif',
    };
    const opts = {
      ...this.size(),
      pxAlign: 0,
      cursor: { drag: { x: false, y: false }, points: { size: 5 } },
      legend: { live: true },
      scales: {
        x: { time: true },
        y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] },
      },
      axes: [
        { ...axis, values: (u, splits) => splits.map(clock) },
        { ...axis, size: 62, values: (u, splits) => splits.map((v) => (v == null ? '' : fmt(v))) },
      ],
      series: [
        { label: 'Time', value: (u, v) => (v == null ? '—' : new Date(v * 1000).toLocaleTimeString(undefined, { hour12: false })) },
        ...this.series.map((s, i) => ({
          label: s.label,
          stroke: s.color || c.named[s.label] || c.series[i % c.series.length],
          width: 1.5,
          points: { show: false },
          spanGaps: false,
          value: (u, v) => (v == null ? '—' : fmt(v)),
        })),
      ],
    };
    this.u = new window.uPlot(opts, this.data, this.plot);
  }

  rebuild() {
    if (this.u) this.build();
  }

  destroyPlot() {
    if (this.u) { this.u.destroy(); this.u = null; }
  }

  destroy() {
    this.destroyPlot();
    this.ro.disconnect();
    live.delete(this);
  }
}

/** Destroys charts when `signal` aborts (page left). */
export function chartsFor(signal, specs) {
  const charts = specs.map((s) => new TimeChart(s));
  signal.addEventListener('abort', () => charts.forEach((c) => c.destroy()));
  return charts;
}

/** Series of an object of arrays (`{"2xx": [...], ...}`), keys sorted. */
export function seriesOf(obj, order) {
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) return [];
  const keys = Object.keys(obj).filter((k) => Array.isArray(obj[k]));
  if (order) keys.sort((a, b) => (order.indexOf(a) + 1 || 99) - (order.indexOf(b) + 1 || 99) || a.localeCompare(b));
  else keys.sort();
  return keys.map((k) => ({ label: k, data: obj[k] }));
}
