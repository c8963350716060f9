// The component's entry point: StarlingMonkey (componentize-js) delivers each
// request as a `fetch` event; this hands it to the module's default export
// the way Cloudflare Workers do, with the script's vars as `env`.
//
// `getEnvironment()` is read on the first request, not at module load:
// componentize-js snapshots the module at build time (Wizer), when the
// script's vars do not exist yet.
import { getEnvironment } from "wasi:cli/environment@0.2.12";
import worker from "./worker.js";

let env;

addEventListener("fetch", (event) => {
  env ??= Object.freeze(Object.fromEntries(getEnvironment()));
  event.respondWith(worker.fetch(event.request, env));
});
