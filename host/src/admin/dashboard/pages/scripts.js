// `#/ns/<ns>`: one page (50) of a namespace's scripts at a time, filtered
// on the server (`search`, `tags`), paged with the API cursor.

import { call } from '../api.js';
import { h, put, link, table, skeletonTable, notice, isAbort, fmtDate, fmtBytes, fmtNum, debounce, crumbs, tagList, anySignal } from '../dom.js';

const HEAD = ['Name', 'Version', 'Size', 'SHA-256', 'Tags', 'Modified'];
const PAGE = 50;
const remembered = new Map(); // ns → {search, tags}, for coming back

export default function scripts(main, [ns], ctx) {
  ctx.title(ns);
  const saved = remembered.get(ns) || { search: '', tags: '' };
  const search = h('input', { id: 'script-search', type: 'search', value: saved.search, autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'search-help' });
  const tags = h('input', { id: 'tag-filter', type: 'text', value: saved.tags, autocomplete: 'off', spellcheck: 'false', placeholder: 'plan-pro:yes,beta:no', 'aria-describedby': 'tags-help' });
  const prev = h('button', { type: 'button', id: 'prev-page', disabled: true }, 'Previous page');
  const next = h('button', { type: 'button', id: 'next-page', disabled: true }, 'Next page');
  const info = h('p', { class: 'muted page-info', role: 'status' }, '\u00a0');
  const body = h('div', { class: 'table-slot table-slot-tall' }, skeletonTable(HEAD, 10));

  put(main,
    crumbs(['Namespaces', 'namespaces'], [ns]),
    h('div', { class: 'page-head' }, h('h1', {}, 'Scripts in ', h('span', { class: 'mono' }, ns))),
    h('form', { class: 'filters', role: 'search', on: { submit: (e) => { e.preventDefault(); restart(); } } },
      h('div', { class: 'field' },
        h('label', { for: 'script-search' }, 'Name contains'), search,
        h('small', { id: 'search-help', class: 'muted' }, 'Substring of the script name.')),
      h('div', { class: 'field' },
        h('label', { for: 'tag-filter' }, 'Tags'), tags,
        h('small', { id: 'tags-help', class: 'muted' }, 'tag:yes has it, tag:no lacks it; comma-separated.'))),
    h('div', { class: 'pager' }, prev, next, info),
    body);

  let cursors = [null]; // cursor of each page seen; the last is the current one
  let inflight = null;

  async function load() {
    if (inflight) inflight.abort();
    inflight = new AbortController();
    const signal = anySignal(ctx.signal, inflight.signal);
    const q = new URLSearchParams();
    if (search.value.trim()) q.set('search', search.value.trim());
    if (tags.value.trim()) q.set('tags', tags.value.trim().replace(/\s+/g, ''));
    q.set('limit', String(PAGE));
    const cursor = cursors[cursors.length - 1];
    if (cursor) q.set('cursor', cursor);
    body.setAttribute('aria-busy', 'true');
    try {
      const env = await call(`/v1/namespaces/${encodeURIComponent(ns)}/scripts?${q}`, { signal });
      const list = Array.isArray(env?.result) ? env.result : [];
      const nextCursor = env?.result_info?.cursor ?? null;
      put(body, table({
        caption: `Scripts in ${ns}`,
        id: 'scripts-table',
        head: HEAD,
        rows: list.map((s) => [
          link(s.name, 'ns', ns, s.name),
          fmtNum(s.version),
          fmtBytes(s.size),
          h('code', { title: s.sha256 || '' }, String(s.sha256 || '—').slice(0, 12)),
          tagList(s.tags),
          fmtDate(s.modified_on),
        ]),
        empty: search.value || tags.value ? 'No script matches.' : 'No scripts in this namespace.',
      }));
      const page = cursors.length;
      info.textContent = `Page ${page} · ${list.length} script${list.length === 1 ? '' : 's'}` + (nextCursor ? '' : ' · last page');
      prev.disabled = page <= 1;
      next.disabled = !nextCursor;
      next.dataset.cursor = nextCursor || '';
      if (!nextCursor) delete next.dataset.cursor;
    } catch (e) {
      if (isAbort(e)) return;
      put(body, notice('Cannot list scripts: ' + e.message));
      info.textContent = '\u00a0';
      prev.disabled = cursors.length <= 1;
    } finally {
      body.removeAttribute('aria-busy');
    }
    ctx.ready();
  }

  function restart() {
    remembered.set(ns, { search: search.value, tags: tags.value });
    cursors = [null];
    load();
  }

  const onInput = debounce(restart, 250);
  ctx.signal.addEventListener('abort', onInput.cancel);
  search.addEventListener('input', onInput);
  tags.addEventListener('input', onInput);
  next.addEventListener('click', () => {
    if (!next.dataset.cursor || body.hasAttribute('aria-busy')) return;
    cursors.push(next.dataset.cursor);
    load();
  });
  prev.addEventListener('click', () => {
    if (body.hasAttribute('aria-busy')) return;
    if (cursors.length > 1) cursors.pop();
    load();
  });
  load();
}
