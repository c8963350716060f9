// What an exported incomingHandler pays per wasi:http call and per fetch-API
// object, measured inside a reused instance (bench/js-glue.sh runs it). Each
// line is the mean of N calls, in microseconds, taken with performance.now().
// The adapter in examples/js-hello/src/incoming-handler.js makes roughly one
// of each per request; the fetch-event form does the same work natively.
import { Fields, OutgoingResponse, OutgoingBody, ResponseOutparam } from "wasi:http/types@0.2.10";
const decoder = new TextDecoder();
const encoder = new TextEncoder();
const N = 500;
function time(label, f, out) { const t0 = performance.now(); for (let i = 0; i < N; i++) f(); out.push(`${label} ${((performance.now() - t0) * 1000 / N).toFixed(1)}us`); }
async function atime(label, f, out) { const t0 = performance.now(); for (let i = 0; i < N; i++) await f(); out.push(`${label} ${((performance.now() - t0) * 1000 / N).toFixed(1)}us`); }
async function handle(incoming, outparam) {
  const out = [];
  const url = `http://${incoming.authority()}${incoming.pathWithQuery()}`;
  time("method", () => incoming.method(), out);
  time("headers+entries", () => incoming.headers().entries(), out);
  const entries = incoming.headers().entries();
  out.push(`n headers ${entries.length}`);
  time("decode+Headers", () => { const h = new Headers(); for (let i = 0; i < entries.length; i++) h.append(entries[i][0], decoder.decode(entries[i][1])); }, out);
  const pairs = entries.map(([k, v]) => [k, decoder.decode(v)]);
  time("new Request(pairs)", () => new Request(url, { method: "GET", headers: pairs }), out);
  time("new Request(noheaders)", () => new Request(url), out);
  time("new URL", () => new URL(url), out);
  time("new Response(str, headers)", () => new Response("Hello\n", { headers: { "content-type": "text/plain" } }), out);
  const r = new Response("Hello\n", { headers: { "content-type": "text/plain" } });
  time("headers.forEach+encode", () => { const l = []; r.headers.forEach((v, k) => l.push([k, encoder.encode(v)])); }, out);
  time("for-of headers", () => { const l = []; for (const [k, v] of r.headers) l.push([k, encoder.encode(v)]); }, out);
  time("Fields.fromList", () => { const f = Fields.fromList([["content-type", encoder.encode("text/plain")]]); f[Symbol.dispose](); }, out);
  time("Fields.fromList([])", () => { const f = Fields.fromList([]); f[Symbol.dispose](); }, out);
  time("new Fields + append", () => { const f = new Fields(); f.append("content-type", encoder.encode("text/plain")); f[Symbol.dispose](); }, out);
  time("new Fields", () => { const f = new Fields(); f[Symbol.dispose](); }, out);
  time("encoder.encode", () => encoder.encode("text/plain"), out);
  await atime("await Promise.resolve", () => Promise.resolve(1), out);
  await atime("await arrayBuffer", () => new Response("Hello\n").arrayBuffer(), out);
  await atime("await text", () => new Response("Hello\n").text(), out);
  await atime("async fn call", async () => new Response("x"), out);
  const o = new OutgoingResponse(Fields.fromList([["content-type", encoder.encode("text/plain")]]));
  const body = o.body();
  ResponseOutparam.set(outparam, { tag: "ok", val: o });
  const s = body.write();
  s.blockingWriteAndFlush(encoder.encode(out.join("\n") + "\n"));
  s[Symbol.dispose]();
  OutgoingBody.finish(body, undefined);
}
export const incomingHandler = { handle };
