// `#/cluster`: GET /v1/cluster, every 5 s.

import { get } from '../api.js';
import { h, put, table, skeletonTable, notice, poll, isAbort, fmtNum, ago, fmtDate } from '../dom.js';

const HEAD = ['Host', 'Last seen', 'Revision', 'Lag', 'Loaded scripts'];

export default function cluster(main, _params, ctx) {
  ctx.title('Cluster');
  const summary = h('div', { class: 'cluster-summary' }, h('span', { class: 'skeleton skeleton-text' }));
  const body = h('div', { class: 'table-slot' }, skeletonTable(HEAD, 3));
  put(main, h('div', { class: 'page-head' }, h('h1', {}, 'Cluster')), summary, body);

  poll(async () => {
    let c;
    try {
      c = (await get('/v1/cluster', { signal: ctx.signal })) || {};
    } catch (e) {
      if (isAbort(e)) throw e;
      put(summary, notice('Cannot load the cluster state: ' + e.message));
      put(body);
      ctx.ready();
      return;
    }
    const hosts = Array.isArray(c.hosts) ? c.hosts : [];
    const backend = String(c.backend ?? 'unknown');
    put(summary, h('dl', { class: 'facts' },
      h('div', {}, h('dt', {}, 'Store'), h('dd', { id: 'cluster-backend' },
        backend === 'sled' ? 'single host (sled store)' : backend === 'nats' ? `cluster (NATS), ${hosts.length} host${hosts.length === 1 ? '' : 's'}` : backend)),
      h('div', {}, h('dt', {}, 'Revision'), h('dd', {}, fmtNum(c.revision)))));
    if (backend === 'sled' && !hosts.length) put(body);
    else put(body, table({
      caption: 'Hosts', id: 'hosts-table', head: HEAD,
      rows: hosts.map((x) => [
        h('code', {}, String(x.host_id ?? '—')),
        h('span', { title: x.last_seen_ms ? fmtDate(Number(x.last_seen_ms)) : '' }, ago(x.last_seen_ms)),
        fmtNum(x.revision), fmtNum(x.lag), fmtNum(x.loaded_scripts),
      ]),
      empty: 'No hosts reported.',
    }));
    ctx.ready();
  }, 5000, ctx.signal);
}
