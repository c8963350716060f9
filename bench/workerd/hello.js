// The JS hello world: the workerd peer of the single-worker cases, and the
// user worker behind dispatcher.js.
export default {
  async fetch(request, env) {
    return new Response("Hello, world!\n", {
      headers: { "content-type": "text/plain" },
    });
  },
};
