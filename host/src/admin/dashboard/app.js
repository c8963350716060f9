// Shell of the Berth operator dashboard: theme, login, hash routing.

import { token, checkToken } from './api.js';
import { h, put, notice } from './dom.js';
import overview from './pages/overview.js';
import namespaces from './pages/namespaces.js';
import scripts from './pages/scripts.js';
import script from './pages/script.js';
import tail from './pages/tail.js';
import top from './pages/top.js';
import cluster from './pages/cluster.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const logout = document.getElementById('logout');
const themeBtn = document.getElementById('theme');

// ---- theme: prefers-color-scheme, overridden by a toggle (sessionStorage) --

const THEME_KEY = 'berth.theme';
const dark = window.matchMedia('(prefers-color-scheme: dark)');

function storedTheme() {
  try { return sessionStorage.getItem(THEME_KEY); } catch { return null; }
}

function effectiveTheme() {
  const s = storedTheme();
  return s === 'dark' || s === 'light' ? s : dark.matches ? 'dark' : 'light';
}

function applyTheme() {
  const s = storedTheme();
  if (s === 'dark' || s === 'light') document.documentElement.dataset.theme = s;
  else delete document.documentElement.dataset.theme;
  const next = effectiveTheme() === 'dark' ? 'light' : 'dark';
  themeBtn.textContent = next === 'dark' ? 'Dark theme' : 'Light theme';
  themeBtn.setAttribute('aria-label', `Switch to ${next} theme`);
  window.dispatchEvent(new CustomEvent('berth:theme'));
}

themeBtn.addEventListener('click', () => {
  try { sessionStorage.setItem(THEME_KEY, effectiveTheme() === 'dark' ? 'light' : 'dark'); } catch { /* ignore */ }
  applyTheme();
});
dark.addEventListener('change', applyTheme);
applyTheme();

// ---- routing -----------------------------------------------------------

const routes = [
  // [path pattern, page, nav section, page id (main[data-page])]
  [/^\/?$/, overview, 'overview', 'overview'],
  [/^\/namespaces$/, namespaces, 'namespaces', 'namespaces'],
  [/^\/ns\/([^/]+)$/, scripts, 'namespaces', 'scripts'],
  [/^\/ns\/([^/]+)\/([^/]+)$/, script, 'namespaces', 'script'],
  [/^\/ns\/([^/]+)\/([^/]+)\/tail$/, tail, 'namespaces', 'tail'],
  [/^\/top$/, top, 'top', 'top'],
  [/^\/cluster$/, cluster, 'cluster', 'cluster'],
];

let current = null; // AbortController of the page shown
let firstRender = true;

function safeDecode(s) {
  try { return decodeURIComponent(s); } catch { return s; }
}

function leave() {
  if (current) current.abort();
  current = null;
  delete main.dataset.ready;
  delete main.dataset.page;
}

function route() {
  leave();
  if (!token.get()) { showLogin(); return; }
  document.body.classList.remove('logged-out');
  const path = location.hash.startsWith('#/') ? location.hash.slice(1).split('?')[0] : '/';
  let match = null;
  for (const [re, page, section, id] of routes) {
    const m = path.match(re);
    if (m) { match = { page, section, id, params: m.slice(1).map(safeDecode) }; break; }
  }
  for (const a of nav.querySelectorAll('a')) {
    if (match && a.dataset.section === match.section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  put(main);
  current = new AbortController();
  const signal = current.signal;
  const ctx = {
    signal,
    title(t) { if (!signal.aborted) document.title = `${t} · Berth`; },
    // Set once the page shows its first data (tests wait for it).
    ready() { if (!signal.aborted) main.dataset.ready = '1'; },
  };
  if (!match) {
    main.dataset.page = 'not-found';
    ctx.title('Not found');
    put(main, h('h1', {}, 'Not found'), h('p', {}, 'No page here. ', h('a', { href: '#/' }, 'Go to the overview.')));
    ctx.ready();
  } else {
    main.dataset.page = match.id;
    match.page(main, match.params, ctx);
  }
  if (!firstRender) main.focus({ preventScroll: true });
  firstRender = false;
  window.scrollTo(0, 0);
}

window.addEventListener('hashchange', () => {
  // In-page anchors (not '#/…') are not routes.
  if (location.hash && !location.hash.startsWith('#/')) return;
  route();
});

document.getElementById('skip').addEventListener('click', (e) => {
  e.preventDefault();
  main.focus();
});

// ---- login ---------------------------------------------------------------

let loginMessage = '';

function showLogin() {
  leave();
  document.body.classList.add('logged-out');
  document.title = 'Sign in · Berth';
  const input = h('input', {
    id: 'token', name: 'token', type: 'password', autocomplete: 'off',
    spellcheck: 'false', required: true, 'aria-describedby': 'login-help',
  });
  const msg = h('div', { id: 'login-message', 'aria-live': 'assertive' },
    loginMessage ? notice(loginMessage) : null);
  const button = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h('form', { class: 'login card', id: 'login' },
    h('h1', {}, 'Sign in'),
    h('label', { for: 'token' }, 'Admin token'),
    input,
    h('p', { id: 'login-help', class: 'muted' },
      'The token from BERTH_ADMIN_TOKEN, server.admin_token, or <data_dir>/admin-token. ' +
      'It is kept in this tab only (sessionStorage) and sent as a bearer header.'),
    button, msg);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const candidate = input.value.trim();
    if (!candidate) return;
    button.disabled = true;
    put(msg, h('p', { class: 'muted', role: 'status' }, 'Checking…'));
    try {
      if (await checkToken(candidate)) {
        token.set(candidate);
        loginMessage = '';
        input.value = '';
        route();
        return;
      }
      put(msg, notice('Wrong token: the server refused it (401). Check the token and try again.'));
      input.select();
    } catch (e) {
      put(msg, notice(e.message || String(e)));
    } finally {
      button.disabled = false;
    }
  });
  put(main, form);
  main.dataset.page = 'login';
  main.dataset.ready = '1';
  input.focus();
}

window.addEventListener('berth:unauthorized', () => {
  loginMessage = 'Wrong token: the server refused it (401). Sign in again.';
  if (!document.body.classList.contains('logged-out')) showLogin();
});

logout.addEventListener('click', () => {
  token.clear();
  loginMessage = '';
  showLogin();
});

// Dropping a file outside a drop zone must not navigate away.
window.addEventListener('dragover', (e) => e.preventDefault());
window.addEventListener('drop', (e) => e.preventDefault());

// Served as /dashboard: make relative URLs resolve under /dashboard/.
if (!location.pathname.endsWith('/')) {
  history.replaceState(null, '', location.pathname + '/' + location.search + location.hash);
}

route();
