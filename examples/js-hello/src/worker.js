// A Berth user worker in JavaScript, Cloudflare Workers style: `env` holds
// the script's vars and secrets (set with `berth deploy --var` / `berth
// secret put`).
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const greeting = env.GREETING ?? "Hello from JavaScript!";
    return new Response(`${greeting} You requested ${url.pathname}${url.search}\n`, {
      headers: { "content-type": "text/plain; charset=utf-8" },
    });
  },
};
