// `#/`: the host over the last 15 minutes, refreshed every 2 s from
// GET /v1/dashboard/history.

import { get } from '../api.js';
import { h, put, notice, poll, isAbort, fmtShort, fmtPct, fmtMs, fmtBytes, fmtNum } from '../dom.js';
import { chartsFor, xsOf, lastIndex, seriesOf } from '../charts.js';

const perSec = (v) => fmtShort(v) + '/s';

export default function overview(main, _params, ctx) {
  ctx.title('Overview');
  const stat = (label) => {
    const value = h('span', { class: 'stat-value' }, h('span', { class: 'skeleton skeleton-text' }));
    return { value, el: h('div', { class: 'stat' }, h('span', { class: 'stat-label' }, label), value) };
  };
  const reqs = stat('Requests/s');
  const errs = stat('Error rate');
  const p99 = stat('p99 latency');
  const when = h('p', { class: 'muted updated', 'aria-live': 'off' }, '\u00a0');
  const status = h('div', { class: 'status-slot' });
  const [cReq, cErr, cLat, cCpu, cMem, cInst] = chartsFor(ctx.signal, [
    { title: 'Requests per second', fmt: perSec, id: 'chart-requests' },
    { title: 'Errors per second by x-berth-error code', fmt: perSec, id: 'chart-errors' },
    { title: 'Latency p50 / p99', fmt: fmtMs, id: 'chart-latency' },
    { title: 'CPU seconds per second', fmt: (v) => fmtShort(v) + ' s', id: 'chart-cpu' },
    { title: 'Host memory', fmt: fmtBytes, id: 'chart-memory' },
    { title: 'Instances in use', fmt: fmtShort, id: 'chart-instances' },
  ]);
  put(main,
    h('div', { class: 'page-head' }, h('h1', {}, 'Overview'), when),
    h('section', { class: 'stats', 'aria-label': 'Latest second' }, reqs.el, errs.el, p99.el),
    status,
    h('section', { class: 'charts', 'aria-label': 'Last 15 minutes' },
      [cReq, cErr, cLat, cCpu, cMem, cInst].map((c) => c.el)));

  poll(async () => {
    let hist;
    try {
      hist = await get('/v1/dashboard/history', { signal: ctx.signal });
      put(status);
    } catch (e) {
      if (isAbort(e)) throw e;
      put(status, notice('Cannot load history: ' + e.message));
      ctx.ready();
      return;
    }
    const s = hist?.series || {};
    const xs = xsOf(hist);
    const errors = seriesOf(s.errors);
    cReq.update(xs, [{ label: 'requests', data: s.requests }]);
    cErr.update(xs, errors);
    cLat.update(xs, [{ label: 'p50', data: s.p50_ms }, { label: 'p99', data: s.p99_ms }]);
    cCpu.update(xs, [{ label: 'cpu', data: s.cpu_s }]);
    cMem.update(xs, [{ label: 'memory', data: s.host_memory_bytes }]);
    cInst.update(xs, [{ label: 'instances', data: s.instances }]);

    // Headline numbers from the latest second that has data.
    const i = lastIndex(s.requests);
    const at = (arr) => (Array.isArray(arr) && i >= 0 && typeof arr[i] === 'number' ? arr[i] : null);
    const r = at(s.requests);
    const e = errors.reduce((sum, x) => sum + (at(x.data) || 0), 0);
    put(reqs.value, r == null ? '—' : fmtNum(r));
    put(errs.value, r ? fmtPct(e / r) : e ? fmtShort(e) + ' errors' : '—');
    put(p99.value, fmtMs(at(s.p99_ms)));
    when.textContent = i >= 0 ? 'Latest: ' + new Date(xs[i] * 1000).toLocaleTimeString(undefined, { hour12: false }) : 'No traffic in the last 15 minutes.';
    ctx.ready();
  }, 2000, ctx.signal);
}
