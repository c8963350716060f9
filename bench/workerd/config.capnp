# workerd peers of `make bench` (bench/run.sh: case 2, dispatch, and the JS hello case).
#
# Two configurations in one file; pick one with the second argument of
# `workerd serve`, and the listening address with --socket-addr:
#
#   W=$(bench/install-workerd.sh)
#   $W serve bench/workerd/config.capnp hello    --socket-addr http=127.0.0.1:8080
#   $W serve bench/workerd/config.capnp dispatch --socket-addr http=127.0.0.1:8081
#   curl http://127.0.0.1:8080/     # Hello, world!   (hello worker)
#   curl http://127.0.0.1:8081/     # Hello, world!   (dispatcher → USER binding → user)
#
# A port of 0 picks a free one; `--control-fd 3 3>FILE` makes workerd write
# {"event":"listen","socket":"http","port":N} to FILE once it listens
# (bench/run.sh does this).
using Workerd = import "/workerd/workerd.capnp";

# JS hello case: one worker.
const hello :Workerd.Config = (
  services = [ (name = "hello", worker = .helloWorker) ],
  sockets = [ (name = "http", address = "127.0.0.1:8080", http = (), service = "hello") ],
);

# Case 2: a dispatch worker in front of a user worker, reached through a
# service binding (what Workers for Platforms' dispatch namespace binding is
# in workerd: a call to another worker in the same process).
const dispatch :Workerd.Config = (
  services = [
    (name = "dispatcher", worker = .dispatcherWorker),
    (name = "user", worker = .userWorker),
  ],
  sockets = [ (name = "http", address = "127.0.0.1:8081", http = (), service = "dispatcher") ],
);

const helloWorker :Workerd.Worker = (
  modules = [ (name = "hello.js", esModule = embed "hello.js") ],
  compatibilityDate = "2026-11-01",
);

const dispatcherWorker :Workerd.Worker = (
  modules = [ (name = "dispatcher.js", esModule = embed "dispatcher.js") ],
  compatibilityDate = "2026-11-01",
  bindings = [ (name = "USER", service = "user") ],
);

# The user worker is the same module as the hello worker.
const userWorker :Workerd.Worker = (
  modules = [ (name = "hello.js", esModule = embed "hello.js") ],
  compatibilityDate = "2026-11-01",
);
