// The script's vars and secrets as a frozen object, the `env` a
// Cloudflare-style worker receives.
//
// Call it on the first request, not at module load: componentize-js
// snapshots the module at build time (Wizer), when the script's vars do not
// exist yet.
//
// Built with a plain indexed loop on purpose: every request runs in a fresh
// instance, and there the iterator protocol (`Object.fromEntries`, `for…of`,
// destructuring) cost ~0.45 ms per request — the Workers-style hello served
// 1,250 req/s with `Object.fromEntries(getEnvironment())` and 2,800 with
// this loop (docs/javascript.md#performance).
import { getEnvironment } from "wasi:cli/environment@0.2.12";

export function readEnv() {
  const vars = {};
  const list = getEnvironment();
  for (let i = 0; i < list.length; i++) {
    vars[list[i][0]] = list[i][1];
  }
  return Object.freeze(vars);
}
