// A dispatch worker: hands every request to the user worker through the
// USER service binding and returns its response unchanged, as a Workers for
// Platforms dispatcher does with `env.DISPATCHER.get(name).fetch(request)`.
export default {
  async fetch(request, env) {
    return env.USER.fetch(request);
  },
};
