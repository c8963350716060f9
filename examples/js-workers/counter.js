// A plain Workers-syntax script: no build step, no Node. `berth deploy
// counter.js --kv VISITS` uploads it; the host builds it (docs/javascript.md).
import { plural } from "./lib/words.js";

export default {
  async fetch(request, env, ctx) {
    const seen = Number((await env.VISITS.get("count")) ?? 0) + 1;
    // Written after the response is on its way.
    ctx.waitUntil(env.VISITS.put("count", String(seen)));
    const who = env.GREETING ?? "Hello";
    return new Response(`${who} from plain JavaScript! ${seen} ${plural(seen, "visit")} so far.\n`);
  },
};
