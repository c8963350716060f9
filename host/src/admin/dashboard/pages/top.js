// `#/top`: heaviest tenants over the last window, GET /v1/dashboard/top,
// every 5 s.

import { get } from '../api.js';
import { h, put, link, table, skeletonTable, notice, poll, isAbort, fmtBytes, fmtNum } from '../dom.js';

const LISTS = [
  ['by_cpu', 'CPU', 'CPU seconds', (v) => fmtNum(v) + ' s'],
  ['by_memory', 'Memory', 'Memory', fmtBytes],
  ['by_egress', 'Egress', 'Subrequests', fmtNum],
  ['by_limit_hits', 'Limit hits', 'Limit hits', fmtNum],
];

export default function top(main, _params, ctx) {
  ctx.title('Top tenants');
  const when = h('p', { class: 'muted updated' }, '\u00a0');
  const status = h('div', { class: 'status-slot' });
  const slots = LISTS.map(([key, title, col]) => {
    const slot = h('div', { class: 'table-slot' }, skeletonTable(['Script', col], 5));
    return { key, slot, el: h('section', { class: 'card', 'aria-labelledby': 'h-' + key }, h('h2', { id: 'h-' + key }, title), slot) };
  });
  put(main,
    h('div', { class: 'page-head' }, h('h1', {}, 'Top tenants'), when),
    status,
    h('div', { class: 'grid-4' }, slots.map((s) => s.el)));

  poll(async () => {
    let top;
    try {
      top = (await get('/v1/dashboard/top', { signal: ctx.signal })) || {};
      put(status);
    } catch (e) {
      if (isAbort(e)) throw e;
      put(status, notice('Cannot load top tenants: ' + e.message));
      ctx.ready();
      return;
    }
    LISTS.forEach(([key, title, col, fmt], i) => {
      const list = Array.isArray(top[key]) ? top[key] : [];
      put(slots[i].slot, table({
        caption: `${title}, heaviest first`,
        id: 'top-' + key.replace('by_', '').replace('_', '-'),
        head: ['Script', col],
        rows: list.map((r) => [
          link(`${r.namespace}/${r.script}`, 'ns', String(r.namespace), String(r.script)),
          h('span', { class: 'num' }, fmt(r.value)),
        ]),
        empty: 'Nothing in this window.',
      }));
    });
    const w = Number(top.window_s);
    when.textContent = (w ? `Last ${w} s` : 'Latest window') + ' · updated ' + new Date().toLocaleTimeString(undefined, { hour12: false });
    ctx.ready();
  }, 5000, ctx.signal);
}
