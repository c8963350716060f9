// The JS hello as plain JavaScript, built on the host (`make bench`'s
// "plain JS" rows): the same worker as examples/js-hello (env.GREETING and the
// path), without a build step.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const greeting = env.GREETING ?? "Hello from JavaScript!";
    return new Response(`${greeting} You requested ${url.pathname}${url.search}\n`, {
      headers: { "content-type": "text/plain; charset=utf-8" },
    });
  },
};
