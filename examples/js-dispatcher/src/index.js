// An example platform dispatch worker in JavaScript — the same routing as
// the Rust example in examples/dispatcher:
//
// - routes `<customer>.<PLATFORM_DOMAIN>` to the customer's script, and
//   any other host through the namespace's hostname table (`berth hostname
//   add`), like `dispatcher.lookup-hostname`;
// - requires `Authorization: Bearer <ADMIN_TOKEN>` for paths under /admin;
// - runs each customer under the limits in CPU_MS, WALL_MS, MEMORY_MB,
//   SUBREQUESTS and tells the egress layer who the customer is (outbound
//   parameter `customer`);
// - strips response headers starting with `x-internal-`;
// - answers JSON errors: 404 for unknown customers, 429 when a customer
//   hits a limit, 503 when the host is overloaded, 502 when the worker fails.
//
// JavaScript cannot hand its request to the `berth:platform/dispatcher`
// import (StarlingMonkey keeps the wasi:http handles to itself), so it uses
// the fetch form of dispatch: a request to
// `http://<script>.dispatch.internal/...` never reaches the network; the
// host runs that script of this dispatcher's namespace, taking per-call
// options from `berth-dispatch-*` headers (removed before the customer's
// worker sees the request). Host-side failures come back with an
// `x-berth-error` code (see docs/wit.md, "Dispatch with fetch()").
//
// Its settings come from the `vars` of its `[[dispatch]]` entry.
import { getEnvironment } from "wasi:cli/environment@0.2.12";

let env;

// Plain indexed loops in the per-request path: in a fresh instance the
// iterator protocol (`Object.fromEntries`, `for…of`, destructuring) costs
// ~0.45 ms per request (see examples/js-hello/src/index.js).
function readEnv() {
  const vars = {};
  const list = getEnvironment();
  for (let i = 0; i < list.length; i++) {
    vars[list[i][0]] = list[i][1];
  }
  return vars;
}

addEventListener("fetch", (event) => {
  env ??= readEnv();
  event.respondWith(dispatch(event.request));
});

const LIMITS = [
  ["CPU_MS", "berth-dispatch-cpu-ms"],
  ["WALL_MS", "berth-dispatch-wall-ms"],
  ["MEMORY_MB", "berth-dispatch-memory-mb"],
  ["SUBREQUESTS", "berth-dispatch-subrequests"],
];

const LIMIT_ERRORS = new Set(["cpu-limit", "memory-limit", "wall-limit", "subrequest-limit"]);

function jsonError(status, error, customer) {
  return new Response(JSON.stringify({ error, customer }) + "\n", {
    status,
    headers: { "content-type": "application/json" },
  });
}

// `<customer>.<domain>` → `customer` (one label, lower case), else null.
function subdomain(host, domain) {
  const name = host.replace(/:\d+$/, "").replace(/\.$/, "").toLowerCase();
  const suffix = "." + domain.toLowerCase();
  if (!name.endsWith(suffix)) return null;
  const label = name.slice(0, -suffix.length);
  return label && !label.includes(".") ? label : null;
}

function constantTimeEqual(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

// A custom hostname → the script it is mapped to, or null.
async function lookupHostname(host) {
  const name = host.replace(/:\d+$/, "");
  const response = await fetch(`http://dispatch.internal/hostnames/${encodeURIComponent(name)}`);
  if (!response.ok) return null;
  return (await response.json()).script;
}

function isAdminPath(path) {
  return path === "/admin" || path.startsWith("/admin/");
}

async function dispatch(request) {
  const url = new URL(request.url);
  const host = request.headers.get("host") ?? url.host;
  const customer =
    subdomain(host, env.PLATFORM_DOMAIN ?? "localhost") ?? (await lookupHostname(host));
  if (customer === null) return jsonError(404, "unknown-host", "");

  if (isAdminPath(url.pathname)) {
    const expected = env.ADMIN_TOKEN ?? "";
    const given = (request.headers.get("authorization") ?? "").replace(/^Bearer\s+/i, "");
    if (!expected || !constantTimeEqual(given, expected)) {
      return jsonError(401, "unauthorized", customer);
    }
  }

  const headers = new Headers(request.headers);
  for (let i = 0; i < LIMITS.length; i++) {
    const name = LIMITS[i][0];
    if (env[name]) headers.set(LIMITS[i][1], env[name]);
  }
  headers.set("berth-dispatch-outbound-customer", customer);
  headers.set("berth-dispatch-host", host);

  const init = { method: request.method, headers };
  if (request.method !== "GET" && request.method !== "HEAD") {
    init.body = await request.arrayBuffer();
  }
  const response = await fetch(
    `http://${customer}.dispatch.internal${url.pathname}${url.search}`,
    init,
  );

  const code = response.headers.get("x-berth-error");
  if (code === "worker-not-found") return jsonError(404, code, customer);
  if (code === "overloaded") return jsonError(503, code, customer);
  if (LIMIT_ERRORS.has(code)) return jsonError(429, code, customer);
  if (code) return jsonError(502, code, customer);

  const out = new Headers();
  response.headers.forEach((value, name) => {
    if (!name.startsWith("x-internal-")) out.append(name, value);
  });
  return new Response(response.body, { status: response.status, headers: out });
}
