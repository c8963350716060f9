// The admin API client. The token lives in sessionStorage only (gone when
// the tab closes; never in the URL, never in localStorage, never logged) and
// is sent as `Authorization: Bearer <token>` on every call. A 401 clears it
// and sends the user back to the login form.

const KEY = 'berth.admin.token';

export const token = {
  get() {
    try { return sessionStorage.getItem(KEY); } catch { return null; }
  },
  set(t) { sessionStorage.setItem(KEY, t); },
  clear() {
    try { sessionStorage.removeItem(KEY); } catch { /* storage disabled */ }
  },
};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

/** Path segment encoding for names and keys. */
export const seg = encodeURIComponent;

/** `/v1/namespaces/{ns}/scripts/{name}` plus `rest`. */
export function scriptPath(ns, name, rest = '') {
  return `/v1/namespaces/${seg(ns)}/scripts/${seg(name)}${rest}`;
}

function unauthorized() {
  token.clear();
  window.dispatchEvent(new CustomEvent('berth:unauthorized'));
}

async function errorOf(res) {
  let code = 'http_' + res.status;
  let message = `${res.status} ${res.statusText || 'error'}`.trim();
  try {
    const body = await res.json();
    const e = body?.errors?.[0];
    if (e) {
      if (e.code) code = String(e.code);
      if (e.message) message = String(e.message);
    }
  } catch { /* not JSON */ }
  return new ApiError(res.status, code, message);
}

/**
 * Calls the admin API. Returns the parsed envelope (`{result, result_info,
 * …}`), or the Response itself with `raw: true` (streams, raw bytes).
 * Throws ApiError (with the API's `errors[0].message`) or AbortError.
 */
export async function call(path, { method = 'GET', body, type, signal, raw = false } = {}) {
  const t = token.get();
  if (!t) {
    unauthorized();
    throw new ApiError(401, 'unauthorized', 'not signed in');
  }
  const headers = { Authorization: 'Bearer ' + t };
  if (!raw) headers.Accept = 'application/json';
  if (type) headers['Content-Type'] = type;
  let res;
  try {
    res = await fetch(path, { method, headers, body, signal, cache: 'no-store', credentials: 'omit' });
  } catch (e) {
    if (e?.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', 'cannot reach the server: ' + (e?.message || e));
  }
  if (res.status === 401) {
    unauthorized();
    throw new ApiError(401, 'unauthorized', 'wrong token');
  }
  if (!res.ok) throw await errorOf(res);
  if (raw) return res;
  let env;
  try { env = await res.json(); } catch {
    throw new ApiError(res.status, 'bad_response', 'the server answered with something that is not JSON');
  }
  if (env && env.success === false) {
    const e = env.errors?.[0] || {};
    throw new ApiError(res.status, e.code || 'error', e.message || 'request failed');
  }
  return env;
}

/** `call` returning only `result`. */
export async function get(path, opts) {
  return (await call(path, opts))?.result;
}

/**
 * Checks a candidate token without storing it: true if accepted, false on
 * 401; throws on anything else (server down, …).
 */
export async function checkToken(candidate) {
  let res;
  try {
    res = await fetch('/v1/runtime', {
      headers: { Authorization: 'Bearer ' + candidate, Accept: 'application/json' },
      cache: 'no-store', credentials: 'omit',
    });
  } catch (e) {
    throw new ApiError(0, 'network', 'cannot reach the server: ' + (e?.message || e));
  }
  if (res.status === 401) return false;
  if (!res.ok) throw await errorOf(res);
  return true;
}
