// Berth's Workers runtime for plain JavaScript uploads.
//
// Written beside every upload at build time as `__berth/runtime.js`
// (host/src/js/runtime.js; docs/javascript.md). The generated entry module
// imports `__berth/prelude.js` (which calls `install` with the upload's
// binding names), then the script's main module, then calls `serve` with
// the main module's namespace:
//
// - `export default { fetch(request, env, ctx) }` is registered as the
//   fetch handler; `env` holds the script's vars and secrets (read from the
//   host on every request, so rotating a secret needs no rebuild) and one
//   KV namespace object per `kv_namespace` binding; `ctx.waitUntil(p)`
//   keeps the instance running until `p` settles, after the response.
// - a service-worker script (`addEventListener("fetch", ...)`) gets the
//   same values as globals, set before each event.
//
// Nothing here may read the environment or open KV at the top level: the
// build snapshots the top level, and the host refuses those calls then.
import { getEnvironment } from "wasi:cli/environment@0.2.12";
import { open } from "wasi:keyvalue/store@0.2.0-draft";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const addListener = globalThis.addEventListener;

let kvNames = [];
let serviceWorker = false;
let namespace = null;

export function install(bindings) {
  kvNames = bindings.kv;
  globalThis.addEventListener = function addEventListener(type, listener, options) {
    if (type === "fetch" && typeof listener === "function") {
      serviceWorker = true;
      const inner = listener;
      listener = function (event) {
        exposeGlobals();
        return inner.call(globalThis, event);
      };
    }
    return addListener.call(globalThis, type, listener, options);
  };
}

export function serve(worker) {
  const handler = worker.default;
  if (handler && typeof handler.fetch === "function") {
    addListener.call(globalThis, "fetch", (event) => {
      const ctx = {
        waitUntil(promise) {
          event.waitUntil(Promise.resolve(promise));
        },
        passThroughOnException() {},
      };
      event.respondWith(handler.fetch(event.request, readEnv(), ctx));
    });
    return;
  }
  if (!serviceWorker) {
    throw new Error(
      "the main module neither exports a default object with a fetch method " +
        "(export default { fetch(request, env, ctx) { ... } }) nor calls " +
        'addEventListener("fetch", ...)',
    );
  }
}

// A plain indexed loop: in a fresh instance per request the iterator
// protocol costs more than the rest of a small handler (see
// examples/js-hello/src/env.js).
function readEnv() {
  const env = {};
  const list = getEnvironment();
  for (let i = 0; i < list.length; i++) {
    env[list[i][0]] = list[i][1];
  }
  for (let i = 0; i < kvNames.length; i++) {
    env[kvNames[i]] = kv();
  }
  return env;
}

function exposeGlobals() {
  const env = readEnv();
  for (const name in env) {
    globalThis[name] = env[name];
  }
}

function kv() {
  if (namespace === null) {
    namespace = new KVNamespace();
  }
  return namespace;
}

function failure(op, error) {
  const payload = error && error.payload;
  const detail =
    payload && payload.val !== undefined ? payload.val : payload && payload.tag ? payload.tag : String(error);
  return new Error(`KV ${op} failed: ${detail}`);
}

function toBytes(value) {
  if (typeof value === "string") return encoder.encode(value);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  return null;
}

// The script's bucket in Cloudflare's KV shape. Operations are
// synchronous host calls wrapped in promises.
class KVNamespace {
  #bucket = null;

  #open() {
    if (this.#bucket === null) {
      try {
        this.#bucket = open("default");
      } catch (e) {
        throw failure("open", e);
      }
    }
    return this.#bucket;
  }

  async get(key, options) {
    const type = typeof options === "string" ? options : (options && options.type) || "text";
    let bytes;
    try {
      bytes = this.#open().get(String(key));
    } catch (e) {
      throw failure("get", e);
    }
    if (bytes === undefined || bytes === null) return null;
    switch (type) {
      case "text":
        return decoder.decode(bytes);
      case "json":
        return JSON.parse(decoder.decode(bytes));
      case "arrayBuffer":
        return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
      case "stream":
        return new Response(bytes).body;
      default:
        throw new TypeError(`KV get: unknown type "${type}" (text, json, arrayBuffer or stream)`);
    }
  }

  async getWithMetadata(key, options) {
    return { value: await this.get(key, options), metadata: null };
  }

  async put(key, value, options) {
    if (
      options &&
      (options.expiration !== undefined || options.expirationTtl !== undefined || options.metadata !== undefined)
    ) {
      throw new Error("KV put: expiration, expirationTtl and metadata are not supported by Berth's KV");
    }
    let bytes = toBytes(value);
    if (bytes === null && value instanceof ReadableStream) {
      bytes = new Uint8Array(await new Response(value).arrayBuffer());
    }
    if (bytes === null) {
      throw new TypeError("KV put: the value must be a string, ArrayBuffer, ArrayBufferView or ReadableStream");
    }
    try {
      this.#open().set(String(key), bytes);
    } catch (e) {
      throw failure("put", e);
    }
  }

  async delete(key) {
    try {
      this.#open().delete(String(key));
    } catch (e) {
      throw failure("delete", e);
    }
  }

  // Keys in order; `cursor` is the position to continue from.
  async list(options) {
    const prefix = (options && options.prefix) || "";
    let limit = Number((options && options.limit) || 1000);
    if (!(limit >= 1)) limit = 1;
    if (limit > 1000) limit = 1000;
    let position = options && options.cursor ? Number(options.cursor) : 0;
    if (!Number.isSafeInteger(position) || position < 0) {
      throw new TypeError("KV list: invalid cursor");
    }
    const keys = [];
    for (;;) {
      let page;
      try {
        page = this.#open().listKeys(position === 0 ? undefined : BigInt(position));
      } catch (e) {
        throw failure("list", e);
      }
      for (let i = 0; i < page.keys.length; i++) {
        position += 1;
        const name = page.keys[i];
        if (name.startsWith(prefix)) {
          keys.push({ name });
          if (keys.length === limit) {
            const done = page.cursor === undefined && i === page.keys.length - 1;
            return done
              ? { keys, list_complete: true, cacheStatus: null }
              : { keys, list_complete: false, cursor: String(position), cacheStatus: null };
          }
        }
      }
      if (page.cursor === undefined) {
        return { keys, list_complete: true, cacheStatus: null };
      }
      position = Number(page.cursor);
    }
  }
}
