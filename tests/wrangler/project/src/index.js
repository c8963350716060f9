import { shout } from "./util.js";

export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    if (url.pathname === "/count") {
      const n = Number((await env.MY_KV.get("visits")) || "0") + 1;
      await env.MY_KV.put("visits", String(n));
      return new Response(`visits=${n}`);
    }
    const note = await env.MY_KV.get("note");
    const secret = env.API_KEY ? `secret=${env.API_KEY.length} chars` : "no secret";
    return new Response(shout(`${env.GREETING} from ${env.TENANT_TIER}`) + ` (${secret}, note=${note})`);
  },
};
