// The component's entry point: StarlingMonkey (componentize-js) delivers each
// request as a `fetch` event; this hands it to the module's default export
// the way Cloudflare Workers do, with the script's vars as `env` (env.js).
// Every request gets a fresh instance; reusable.js builds the same worker
// in the form Berth can reuse (docs/javascript.md#warm-reuse-isolation--reuse).
import { readEnv } from "./env.js";
import worker from "./worker.js";

let env;

addEventListener("fetch", (event) => {
  env ??= readEnv();
  event.respondWith(worker.fetch(event.request, env));
});
