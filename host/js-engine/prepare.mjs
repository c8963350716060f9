// Make-time preparation of the JavaScript engine that `berth serve` builds
// plain JS uploads with (`make js-engine`; docs/javascript.md).
//
// componentize-js does four things to turn a script into a component: it
// splices the world's bindings into StarlingMonkey (SpiderMonkey compiled to
// wasm), pre-initializes the result with Wizer so the script's top level is
// already evaluated, stubs the WASI imports the world does not provide, and
// wraps the core module into a component. Only the Wizer step depends on
// the script, and it changes only the main core module's memory and data
// sections. So this script runs everything else once, here, with the pinned
// npm package, and writes what the host needs to do the per-script step in
// Rust:
//
//   engine.wasm      the spliced core module, before Wizer (Wizer's input)
//   initializer.js   the bindings StarlingMonkey evaluates before the script
//   wizer_env.json   the exact environment the engine reads during Wizer
//   seed.wasm        componentize-js's own component for a one-line script:
//                    the host takes everything but its memory and data from it
//   manifest.json    versions and digests, checked by the host at start
//   NOTICE.md, LICENSE-componentize-js   the engine's provenance and licences
//
// Usage: node prepare.mjs <out-dir> <wit-dir>
import { readFile, writeFile, mkdir, copyFile, rm } from "node:fs/promises";
import { createHash } from "node:crypto";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { componentize, version } from "@bytecodealliance/componentize-js";

const here = dirname(fileURLToPath(import.meta.url));
const [, , outArg, witArg] = process.argv;
if (!outArg || !witArg) {
  console.error("usage: node prepare.mjs <out-dir> <wit-dir>");
  process.exit(2);
}
const out = resolve(outArg);
const witPath = resolve(witArg);
const worldName = "worker";
// The features componentize-js uses for a fetch-event worker: Berth's
// generated entry module registers the script's `fetch` handler, so this is
// the one variant the host needs.
const features = ["stdio", "random", "clocks", "http", "fetch-event"];

const pkg = join(here, "node_modules", "@bytecodealliance", "componentize-js");
const { splicer } = await import(
  join(pkg, "lib", "spidermonkey-embedding-splicer.js")
);

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });

const engineIn = await readFile(join(pkg, "lib", "starlingmonkey_embedding.wasm"));
const { wasm, jsBindings, exports, imports } = splicer.spliceBindings(
  engineIn,
  features,
  undefined,
  witPath,
  worldName,
  false,
);
await writeFile(join(out, "engine.wasm"), Buffer.from(wasm));
await writeFile(join(out, "initializer.js"), jsBindings);

// The environment componentize-js gives Wizer (src/componentize.js): the
// engine reads it to bind imports and exports. Nothing else may be in it:
// whatever the environment holds is snapshotted into every script.
const env = {
  DEBUG: "",
  SOURCE_NAME: "source.js",
  EXPORT_CNT: String(exports.length),
  FEATURE_CLOCKS: "1",
};
for (const [idx, [name, e]] of exports.entries()) {
  env[`EXPORT${idx}_NAME`] = name;
  env[`EXPORT${idx}_ARGS`] = (e.paramptr ? "*" : "") + e.params.join(",");
  env[`EXPORT${idx}_RET`] = (e.retptr ? "*" : "") + (e.ret || "");
  env[`EXPORT${idx}_RETSIZE`] = String(e.retsize);
}
for (let i = 0; i < imports.length; i++) {
  env[`IMPORT${i}_NAME`] = imports[i][1];
  env[`IMPORT${i}_ARGCNT`] = String(imports[i][2]);
}
env.IMPORT_CNT = String(imports.length);
await writeFile(join(out, "wizer_env.json"), JSON.stringify(env, null, 1) + "\n");

// The seed: the stock pipeline on a one-line fetch-event script.
const seedDir = join(out, ".seed");
await mkdir(seedDir, { recursive: true });
const seedSource = join(seedDir, "seed.js");
await writeFile(
  seedSource,
  'addEventListener("fetch", (e) => e.respondWith(new Response("seed")));\n',
);
const { component } = await componentize({
  sourcePath: seedSource,
  witPath,
  worldName,
});
await writeFile(join(out, "seed.wasm"), Buffer.from(component));
await rm(seedDir, { recursive: true, force: true });

const sha = async (f) =>
  createHash("sha256").update(await readFile(join(out, f))).digest("hex");
const manifest = {
  format: 1,
  componentize_js: version,
  world: worldName,
  features,
  files: {
    "engine.wasm": await sha("engine.wasm"),
    "initializer.js": await sha("initializer.js"),
    "wizer_env.json": await sha("wizer_env.json"),
    "seed.wasm": await sha("seed.wasm"),
  },
};
await writeFile(join(out, "manifest.json"), JSON.stringify(manifest, null, 1) + "\n");
await copyFile(join(here, "NOTICE.md"), join(out, "NOTICE.md"));
await copyFile(join(pkg, "LICENSE"), join(out, "LICENSE-componentize-js"));
console.log(`JS engine (componentize-js ${version}) prepared in ${out}`);
