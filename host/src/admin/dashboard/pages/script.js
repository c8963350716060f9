// `#/ns/<ns>/<script>`: facts, charts, last errors, settings editor, vars
// and secret names, KV browser (read-only) and deploy.

import { call, get, scriptPath, ApiError } from '../api.js';
import {
  h, put, href, table, notice, poll, isAbort, fmtDate, fmtBytes, fmtNum, fmtShort, fmtMs, fmtTime,
  fmtValue, crumbs, tagList, anySignal,
} from '../dom.js';
import { chartsFor, xsOf, seriesOf } from '../charts.js';

const KV_SHOW = 4096;

export default function script(main, [ns, name], ctx) {
  ctx.title(`${name} · ${ns}`);
  // Aborted when the page is left, or when the script turns out not to exist.
  const gone = new AbortController();
  const sig = anySignal(ctx.signal, gone.signal);
  const path = (rest = '') => scriptPath(ns, name, rest);

  // ---- layout (fixed-size placeholders first) ----
  const facts = h('dl', { class: 'facts', id: 'facts' });
  const factsMsg = h('div', { class: 'status-slot' });
  const charts = chartsFor(sig, [
    { title: 'Requests by status class', fmt: (v) => fmtShort(v) + '/s', id: 'chart-status' },
    { title: 'Limit hits by kind', fmt: (v) => fmtShort(v) + '/s', id: 'chart-limits' },
    { title: 'CPU seconds per second', fmt: (v) => fmtShort(v) + ' s', id: 'chart-cpu' },
    { title: 'Fuel per second', fmt: (v) => fmtShort(v) + '/s', id: 'chart-fuel' },
    { title: 'Latency p99', fmt: fmtMs, id: 'chart-p99' },
  ]);
  const histMsg = h('div', { class: 'status-slot' });
  const errorsSlot = h('div', { class: 'table-slot' }, h('div', { class: 'skeleton skeleton-block' }));

  const settingsText = h('textarea', {
    id: 'settings-json', rows: 16, spellcheck: 'false', autocomplete: 'off',
    'aria-describedby': 'settings-help settings-error', disabled: true,
  });
  const applyBtn = h('button', { type: 'submit', class: 'primary', id: 'settings-apply', disabled: true }, 'Apply');
  const reloadBtn = h('button', { type: 'button', id: 'settings-reload' }, 'Reload');
  const settingsStatus = h('span', { id: 'settings-status', role: 'status', class: 'muted' });
  const settingsError = h('div', { id: 'settings-error', role: 'alert', class: 'inline-error' });
  const warnings = h('div', { id: 'settings-warnings' });
  const varsSlot = h('div', { class: 'table-slot' }, h('div', { class: 'skeleton skeleton-block' }));
  const secretsSlot = h('div', {}, h('span', { class: 'skeleton skeleton-text' }));

  const kvList = h('ul', { class: 'kv-keys', id: 'kv-keys' });
  const kvMore = h('button', { type: 'button', id: 'kv-more', hidden: true }, 'More keys');
  const kvMsg = h('div', { class: 'status-slot' });
  const kvValue = h('div', { class: 'kv-value', id: 'kv-value' }, h('p', { class: 'muted' }, 'Choose a key to see its value.'));

  const fileInput = h('input', { type: 'file', id: 'deploy-file', accept: '.wasm,.js,.mjs,application/wasm,text/javascript' });
  const deployBtn = h('button', { type: 'button', class: 'primary', id: 'deploy-button', disabled: true }, 'Deploy');
  const chosen = h('span', { class: 'muted', id: 'deploy-file-name' }, 'No file chosen.');
  const deployResult = h('div', { id: 'deploy-result', 'aria-live': 'polite' });
  const drop = h('div', { class: 'dropzone', id: 'dropzone' },
    h('label', { for: 'deploy-file' }, 'Drop a .wasm component or a .js / .mjs module here, or choose a file'),
    fileInput);

  put(main,
    crumbs(['Namespaces', 'namespaces'], [ns, 'ns', ns], [name]),
    h('div', { class: 'page-head' },
      h('h1', {}, h('span', { class: 'mono' }, name)),
      h('a', { class: 'button', href: href('ns', ns, name, 'tail'), id: 'tail-link' }, 'Live tail')),
    factsMsg, facts,
    h('section', { 'aria-labelledby': 'h-activity' },
      h('h2', { id: 'h-activity' }, 'Last 15 minutes'), histMsg,
      h('div', { class: 'charts' }, charts.map((c) => c.el))),
    h('section', { 'aria-labelledby': 'h-errors' }, h('h2', { id: 'h-errors' }, 'Last errors'), errorsSlot),
    h('div', { class: 'two-col' },
      h('section', { 'aria-labelledby': 'h-settings', class: 'card' },
        h('h2', { id: 'h-settings' }, 'Settings'),
        h('form', { id: 'settings-form', on: { submit: (e) => { e.preventDefault(); apply(); } } },
          h('label', { for: 'settings-json' }, 'Settings (JSON merge patch)'),
          h('p', { id: 'settings-help', class: 'muted' },
            'Apply sends this text as a JSON merge patch: keys given replace, null removes a key, keys left out stay.'),
          settingsText,
          h('div', { class: 'row' }, applyBtn, reloadBtn, settingsStatus),
          settingsError, warnings)),
      h('div', {},
        h('section', { 'aria-labelledby': 'h-vars', class: 'card' }, h('h2', { id: 'h-vars' }, 'Vars'), varsSlot),
        h('section', { 'aria-labelledby': 'h-secrets', class: 'card' },
          h('h2', { id: 'h-secrets' }, 'Secrets'),
          h('p', { class: 'muted' }, 'Names only: values are never shown.'), secretsSlot))),
    h('div', { class: 'two-col' },
      h('section', { 'aria-labelledby': 'h-kv', class: 'card' },
        h('h2', { id: 'h-kv' }, 'KV keys'), kvMsg,
        h('div', { class: 'kv' }, h('div', { class: 'kv-list' }, kvList, kvMore), kvValue)),
      h('section', { 'aria-labelledby': 'h-deploy', class: 'card' },
        h('h2', { id: 'h-deploy' }, 'Deploy a new version'), drop,
        h('div', { class: 'row' }, deployBtn, chosen), deployResult)));

  // ---- facts ----
  const FACTS = [
    ['Version', (s) => fmtNum(s.version)],
    ['Size', (s) => fmtBytes(s.size)],
    ['SHA-256', (s) => h('code', { class: 'wrap' }, s.sha256 || '—')],
    ['Tags', (s) => tagList(s.tags)],
    ['Created', (s) => fmtDate(s.created_on)],
    ['Modified', (s) => fmtDate(s.modified_on)],
    ['Limits', (s) => fmtValue(s.limits)],
    ['Isolation', (s) => fmtValue(s.isolation)],
    ['Hostnames', (s) => (Array.isArray(s.hostnames) && s.hostnames.length
      ? h('ul', { class: 'plain' }, s.hostnames.map((x) => h('li', {}, String(x)))) : '—')],
    ['Assets', (s) => assetsCount(s.assets)],
  ];
  const renderFacts = (s) => put(facts, FACTS.map(([k, f]) => h('div', {}, h('dt', {}, k), h('dd', {}, s ? f(s) : h('span', { class: 'skeleton skeleton-text' })))));
  renderFacts(null);

  async function loadFacts() {
    try {
      const s = await get(path(), { signal: sig });
      renderFacts(s || {});
      put(factsMsg);
    } catch (e) {
      if (isAbort(e)) return;
      if (e.status === 404) {
        gone.abort();
        put(main, crumbs(['Namespaces', 'namespaces'], [ns, 'ns', ns], [name]),
          h('div', { class: 'page-head' }, h('h1', {}, h('span', { class: 'mono' }, name))),
          notice(e.message), h('p', {}, h('a', { href: href('ns', ns) }, `Back to the scripts of ${ns}`)));
        ctx.ready();
        return;
      }
      put(factsMsg, notice('Cannot load the script: ' + e.message));
      renderFacts({});
    }
  }

  // ---- history + last errors, every 2 s ----
  let lastErrors = null;
  async function loadHistory() {
    let hist;
    try {
      hist = await get(`/v1/dashboard/scripts/${encodeURIComponent(ns)}/${encodeURIComponent(name)}/history`, { signal: sig });
      put(histMsg);
    } catch (e) {
      if (isAbort(e)) throw e;
      put(histMsg, notice('Cannot load history: ' + e.message));
      if (lastErrors === null) { lastErrors = ''; put(errorsSlot, notice('Not available.', 'info')); }
      return;
    }
    const s = hist?.series || {};
    const xs = xsOf(hist);
    const [cStatus, cLimits, cCpu, cFuel, cP99] = charts;
    cStatus.update(xs, seriesOf(s.requests, ['2xx', '3xx', '4xx', '5xx']));
    cLimits.update(xs, seriesOf(s.limit_hits));
    cCpu.update(xs, [{ label: 'cpu', data: s.cpu_s }]);
    cFuel.update(xs, [{ label: 'fuel', data: s.fuel }]);
    cP99.update(xs, [{ label: 'p99', data: s.p99_ms }]);
    const errs = Array.isArray(hist?.errors) ? hist.errors : [];
    const key = JSON.stringify(errs);
    if (key !== lastErrors) {
      lastErrors = key;
      put(errorsSlot, table({
        caption: 'Last errors, newest first',
        id: 'errors-table',
        head: ['Time', 'Status', 'Outcome', 'Path', 'Request id'],
        rows: errs.map((e) => [
          fmtTime(e.timestamp_ms ?? e.time, true),
          e.status == null ? '—' : String(e.status),
          h('span', { class: 'outcome' }, String(e.outcome ?? '—')),
          h('span', { class: 'mono' }, String(e.path ?? '')),
          h('code', {}, String(e.request_id ?? '—')),
        ]),
        empty: 'No errors recorded.',
      }));
    }
  }

  // ---- settings, vars, secrets ----
  function showSettings(view) {
    const copy = { ...(view || {}) };
    const warn = Array.isArray(copy.warnings) ? copy.warnings : [];
    delete copy.warnings;
    settingsText.value = JSON.stringify(copy, null, 2);
    put(warnings, warn.length
      ? h('div', { class: 'notice notice-warn', role: 'status' },
        h('strong', {}, 'Warnings'), h('ul', {}, warn.map((w) => h('li', {}, String(w)))))
      : null);
    const vars = copy.vars && typeof copy.vars === 'object' ? Object.entries(copy.vars) : [];
    put(varsSlot, table({
      caption: 'Vars', id: 'vars-table', head: ['Name', 'Value'],
      rows: vars.map(([k, v]) => [h('code', {}, k), h('span', { class: 'var-value' }, typeof v === 'string' ? v : JSON.stringify(v))]),
      empty: 'No vars.',
    }));
  }

  async function loadSettings() {
    settingsText.disabled = true;
    applyBtn.disabled = true;
    try {
      showSettings(await get(path('/settings'), { signal: sig }));
      settingsError.textContent = '';
      settingsStatus.textContent = '';
    } catch (e) {
      if (isAbort(e)) return;
      settingsError.textContent = 'Cannot load settings: ' + e.message;
      put(varsSlot, notice('Not available.', 'info'));
    } finally {
      settingsText.disabled = false;
      applyBtn.disabled = false;
    }
  }

  async function apply() {
    settingsError.textContent = '';
    settingsStatus.textContent = '';
    let patch;
    try {
      patch = JSON.parse(settingsText.value);
    } catch (e) {
      settingsError.textContent = 'Not valid JSON: ' + e.message;
      return;
    }
    if (!patch || typeof patch !== 'object' || Array.isArray(patch)) {
      settingsError.textContent = 'The patch must be a JSON object.';
      return;
    }
    applyBtn.disabled = true;
    settingsStatus.textContent = 'Saving…';
    try {
      const view = await get(path('/settings'), {
        method: 'PATCH', body: JSON.stringify(patch), type: 'application/json', signal: sig,
      });
      showSettings(view);
      settingsStatus.textContent = 'Saved at ' + fmtTime(Date.now());
      loadFacts();
    } catch (e) {
      if (isAbort(e)) return;
      settingsStatus.textContent = '';
      settingsError.textContent = e instanceof ApiError && e.status === 400 ? e.message : 'Not saved: ' + e.message;
    } finally {
      applyBtn.disabled = false;
    }
  }
  reloadBtn.addEventListener('click', loadSettings);

  async function loadSecrets() {
    try {
      const list = (await get(path('/secrets'), { signal: sig })) || [];
      put(secretsSlot, list.length
        ? h('ul', { class: 'plain', id: 'secrets-list' }, list.map((s) => h('li', {}, h('code', {}, String(s?.name ?? s)))))
        : h('p', { class: 'muted' }, 'No secrets.'));
    } catch (e) {
      if (!isAbort(e)) put(secretsSlot, notice('Cannot list secrets: ' + e.message));
    }
  }

  // ---- KV browser ----
  let kvCursor = null;
  async function loadKeys() {
    const q = new URLSearchParams({ limit: '50' });
    if (kvCursor) q.set('cursor', kvCursor);
    kvMore.disabled = true;
    try {
      const env = await call(path('/kv?' + q), { signal: sig });
      const keys = Array.isArray(env?.result) ? env.result : [];
      if (!kvCursor && !keys.length) put(kvList, h('li', { class: 'muted' }, 'No keys.'));
      for (const k of keys) {
        const key = String(k?.name ?? k);
        kvList.appendChild(h('li', {}, h('button', { type: 'button', class: 'linkish', on: { click: () => showKey(key) } }, key)));
      }
      kvCursor = env?.result_info?.cursor ?? null;
      kvMore.hidden = !kvCursor;
      put(kvMsg);
    } catch (e) {
      if (!isAbort(e)) put(kvMsg, notice('Cannot list keys: ' + e.message));
    } finally {
      kvMore.disabled = false;
    }
  }
  kvMore.addEventListener('click', loadKeys);

  let kvShown = null;
  sig.addEventListener('abort', () => kvShown?.abort());
  async function showKey(key) {
    if (kvShown) kvShown.abort();
    kvShown = new AbortController();
    const signal = kvShown.signal;
    put(kvValue, h('p', { class: 'muted' }, 'Loading ', h('code', {}, key), '…'));
    try {
      const res = await call(path('/kv/' + encodeURIComponent(key)), { raw: true, signal });
      const { bytes, total } = await readHead(res, KV_SHOW);
      const truncated = total > KV_SHOW;
      const shown = bytes.subarray(0, KV_SHOW);
      let text = null;
      try { text = new TextDecoder('utf-8', { fatal: true }).decode(shown, { stream: truncated }); } catch { /* binary */ }
      put(kvValue,
        h('p', { class: 'kv-meta' }, h('code', {}, key), ` · ${fmtBytes(total)} · `, text == null ? 'binary (hex)' : 'UTF-8 text',
          truncated ? ` · showing the first ${fmtBytes(KV_SHOW)}` : ''),
        h('pre', { class: 'kv-data', tabindex: 0 }, text == null ? hex(shown) : text));
    } catch (e) {
      if (!isAbort(e)) put(kvValue, notice(`Cannot read ${key}: ${e.message}`));
    }
  }

  // ---- deploy ----
  let file = null;
  function choose(f) {
    file = f || null;
    put(deployResult);
    if (!file) { chosen.textContent = 'No file chosen.'; deployBtn.disabled = true; return; }
    const type = typeFor(file.name);
    chosen.textContent = `${file.name} (${fmtBytes(file.size)})`;
    deployBtn.disabled = !type;
    if (!type) put(deployResult, notice('Choose a .wasm, .js or .mjs file.'));
  }
  fileInput.addEventListener('change', () => choose(fileInput.files?.[0]));
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    choose(e.dataTransfer?.files?.[0]);
  });
  deployBtn.addEventListener('click', async () => {
    if (!file) return;
    const type = typeFor(file.name);
    if (!type) return;
    deployBtn.disabled = true;
    put(deployResult, h('p', { class: 'muted', role: 'status' }, `Deploying ${file.name}…`));
    try {
      const r = await get(path(), { method: 'PUT', body: file, type, signal: sig });
      put(deployResult, notice(`Deployed version ${fmtNum(r?.version)} (sha256 ${String(r?.sha256 || '').slice(0, 12)}).`, 'ok'));
      loadFacts();
    } catch (e) {
      if (!isAbort(e)) put(deployResult, notice('Deploy failed: ' + e.message));
    } finally {
      deployBtn.disabled = false;
    }
  });

  Promise.allSettled([loadFacts(), loadSettings(), loadSecrets(), loadKeys()]).then(() => ctx.ready());
  poll(loadHistory, 2000, sig);
}

function typeFor(fileName) {
  const n = fileName.toLowerCase();
  if (n.endsWith('.wasm')) return 'application/wasm';
  if (n.endsWith('.js') || n.endsWith('.mjs')) return 'application/javascript+module';
  return null;
}

function assetsCount(a) {
  if (a == null) return '—';
  if (typeof a === 'number') return fmtNum(a);
  if (Array.isArray(a)) return fmtNum(a.length);
  if (typeof a === 'object' && 'count' in a) return fmtNum(a.count);
  return fmtValue(a);
}

/** The first `limit` (+1) bytes of a body, and its total size. */
async function readHead(res, limit) {
  const cl = res.headers.get('content-length');
  const declared = cl == null || cl === '' ? NaN : Number(cl);
  const bytes = new Uint8Array(limit + 1);
  let kept = 0;
  let got = 0;
  const reader = res.body?.getReader();
  if (!reader) {
    const all = new Uint8Array(await res.arrayBuffer());
    bytes.set(all.subarray(0, limit + 1));
    return { bytes: bytes.subarray(0, Math.min(all.length, limit + 1)), total: all.length };
  }
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    got += value.length;
    if (kept < bytes.length) {
      const part = value.subarray(0, bytes.length - kept);
      bytes.set(part, kept);
      kept += part.length;
    }
    // Enough to show; the size is known from the header.
    if (kept >= bytes.length && Number.isFinite(declared)) { reader.cancel().catch(() => {}); break; }
  }
  return { bytes: bytes.subarray(0, kept), total: Number.isFinite(declared) ? declared : got };
}

function hex(bytes) {
  const lines = [];
  for (let i = 0; i < bytes.length; i += 16) {
    const row = Array.from(bytes.subarray(i, i + 16), (b) => b.toString(16).padStart(2, '0'));
    lines.push(i.toString(16).padStart(8, '0') + '  ' + row.join(' '));
  }
  return lines.join('\n');
}
