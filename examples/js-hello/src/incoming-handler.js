// A Cloudflare-style worker (`export default { fetch(request, env) }`) as an
// exported `wasi:http/incoming-handler` — the form Berth can serve from a
// warm instance (`settings.isolation = "reuse"`).
//
// StarlingMonkey's built-in fetch event (index.js) handles one event per
// instance, so a component built from it is always served fresh. When the
// module instead exports `incomingHandler`, componentize-js calls that
// export once per request and runs the event loop until the promise it
// returns settles, so one instance can serve request after request (the
// host never gives it two at once). This file converts between the raw
// `wasi:http` resources and the fetch API around the worker's `fetch`.
//
// What it does not do: stream. The request body is read whole before the
// worker runs and the response body is buffered before it is written
// (within the script's body limits). Use index.js (fresh instances, with
// streaming) for workers that need either.
//
// State a request leaves in module scope is seen by the next request of
// the same script on the same instance — that is what reuse means. Nothing
// is shared between scripts.
//
// Every `wasi:http` handle is dropped as soon as it is read (the
// `Symbol.dispose` calls): in a reused instance a handle left to the garbage
// collector stays in the host's table across requests, and Berth retires an
// instance that ends a request holding many.
import {
  Fields,
  OutgoingBody,
  OutgoingResponse,
  ResponseOutparam,
} from "wasi:http/types@0.2.10";
import { readEnv } from "./env.js";

const decoder = new TextDecoder();
const encoder = new TextEncoder();
// Largest write `blocking-write-and-flush` accepts.
const CHUNK = 4096;

function toRequest(incoming) {
  const m = incoming.method();
  const method = m.tag === "other" ? m.val : m.tag.toUpperCase();
  const fields = incoming.headers();
  const entries = fields.entries();
  fields[Symbol.dispose]();
  const headers = new Headers();
  for (let i = 0; i < entries.length; i++) {
    headers.append(entries[i][0], decoder.decode(entries[i][1]));
  }
  const url = `http://${incoming.authority() ?? "localhost"}${incoming.pathWithQuery() ?? "/"}`;
  let body;
  if (method !== "GET" && method !== "HEAD") {
    const incomingBody = incoming.consume();
    const stream = incomingBody.stream();
    const parts = [];
    for (;;) {
      try {
        parts.push(stream.blockingRead(65536n));
      } catch {
        break; // closed (or failed: the worker sees what arrived)
      }
    }
    stream[Symbol.dispose]();
    incomingBody[Symbol.dispose]();
    body = new Blob(parts);
  }
  incoming[Symbol.dispose]();
  return new Request(url, { method, headers, body });
}

async function respond(response, outparam) {
  const list = [];
  response.headers.forEach((value, name) => list.push([name, encoder.encode(value)]));
  const outgoing = new OutgoingResponse(Fields.fromList(list));
  outgoing.setStatusCode(response.status);
  const body = outgoing.body();
  const bytes = new Uint8Array(await response.arrayBuffer());
  ResponseOutparam.set(outparam, { tag: "ok", val: outgoing });
  const stream = body.write();
  for (let i = 0; i < bytes.length; i += CHUNK) {
    stream.blockingWriteAndFlush(bytes.subarray(i, i + CHUNK));
  }
  stream[Symbol.dispose]();
  OutgoingBody.finish(body, undefined);
}

// The `incomingHandler` export for `worker`.
export function incomingHandlerFor(worker) {
  let env;
  return {
    async handle(incoming, outparam) {
      env ??= readEnv();
      // A throw (here or in the worker) traps the instance: the client gets
      // the host's typed error and the instance is never reused.
      await respond(await worker.fetch(toRequest(incoming), env), outparam);
    },
  };
}
