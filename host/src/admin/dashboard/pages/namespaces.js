// `#/namespaces`: GET /v1/namespaces.

import { get } from '../api.js';
import { h, put, link, table, skeletonTable, notice, isAbort, fmtDate, fmtNum } from '../dom.js';

const HEAD = ['Name', 'Scripts', 'Trusted', 'Created'];

export default async function namespaces(main, _params, ctx) {
  ctx.title('Namespaces');
  const body = h('div', { class: 'table-slot' }, skeletonTable(HEAD, 4));
  put(main, h('div', { class: 'page-head' }, h('h1', {}, 'Namespaces')), body);
  try {
    const list = (await get('/v1/namespaces', { signal: ctx.signal })) || [];
    list.sort((a, b) => String(a.name).localeCompare(String(b.name)));
    put(body, table({
      caption: 'Namespaces',
      id: 'namespaces-table',
      head: HEAD,
      rows: list.map((ns) => [
        link(ns.name, 'ns', ns.name),
        fmtNum(ns.script_count),
        ns.trusted ? 'yes' : 'no',
        fmtDate(ns.created_on),
      ]),
      empty: 'No namespaces yet.',
    }));
  } catch (e) {
    if (isAbort(e)) return;
    put(body, notice('Cannot list namespaces: ' + e.message));
  }
  ctx.ready();
}
