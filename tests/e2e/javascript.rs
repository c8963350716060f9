//! Plain JavaScript uploads, built on the host (docs/javascript.md): the
//! admin API and `berth deploy x.js` take modules, the host runs the top
//! level in its build sandbox and serves the snapshot. Every test here
//! starts a server with the JS engine `make js-engine` prepared (its
//! compiled code is cached across servers, `build/js-cache`).

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Berth, Reply, js_args, wasm};

/// A Workers-syntax worker using env, KV, ctx.waitUntil and the
/// response helpers StarlingMonkey provides.
const WORKER: &str = r#"
import { greet } from "./lib/greet.js";

export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    switch (url.pathname) {
      case "/":
        return new Response(greet(env.GREETING, env.TOKEN));
      case "/kv/put": {
        await env.STORE.put(url.searchParams.get("k"), url.searchParams.get("v"));
        return new Response("stored");
      }
      case "/kv/get": {
        const v = await env.STORE.get(url.searchParams.get("k"));
        return new Response(v === null ? "<null>" : v);
      }
      case "/kv/json": {
        await env.STORE.put("doc", JSON.stringify({ n: 41 }));
        const doc = await env.STORE.get("doc", { type: "json" });
        return Response.json({ n: doc.n + 1 });
      }
      case "/kv/list": {
        const page = await env.STORE.list({ prefix: url.searchParams.get("prefix") || "" });
        return Response.json(page.keys.map((k) => k.name));
      }
      case "/kv/delete": {
        await env.STORE.delete(url.searchParams.get("k"));
        return new Response("deleted");
      }
      case "/later": {
        ctx.waitUntil(env.STORE.put("after", "written after the response"));
        return new Response("answered");
      }
      case "/echo": {
        const body = await request.json();
        const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(body.text));
        const hex = Array.from(new Uint8Array(digest)).map((b) => b.toString(16).padStart(2, "0")).join("");
        return Response.json({ got: body, sha256: hex });
      }
      case "/surface": {
        // What docs/javascript.md promises a script can use.
        const stream = new ReadableStream({
          start(c) { c.enqueue(new TextEncoder().encode("streamed")); c.close(); },
        });
        return Response.json({
          uuid: typeof crypto.randomUUID === "function" && crypto.randomUUID().length === 36,
          random: crypto.getRandomValues(new Uint8Array(4)).length,
          base64: btoa("hi") + "/" + atob("aGk="),
          clone: structuredClone({ a: [1, 2] }).a.length,
          params: new URLSearchParams("a=1&b=2").get("b"),
          headers: new Headers({ "X-A": "1" }).get("x-a"),
          stream: await new Response(stream).text(),
          timer: await new Promise((resolve) => setTimeout(() => resolve("fired"), 1)),
        });
      }
      default:
        return new Response("not found", { status: 404 });
    }
  },
};
"#;

const GREET: &str = r#"
export function greet(greeting, token) {
  return `${greeting}, world (secret ${token ? "set" : "missing"})`;
}
"#;

fn error_code(reply: &Reply) -> String {
    reply.json()["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_workers_module_is_built_on_the_host_and_serves_env_kv_and_wait_until() {
    let berth = Berth::start_js(&[]).await;
    let reply = berth
        .upload_js(
            "default",
            "shop",
            &[("index.js", WORKER), ("lib/greet.js", GREET)],
            json!({"vars": {"GREETING": "Hello"}, "kv_bindings": ["STORE"]}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let result = &reply.json()["result"];
    assert!(
        result["build"]["timings_ms"]["init_ms"].as_f64().is_some(),
        "{result}"
    );
    // The engine's ~10 MB of code is not in the script's component.
    let size = result["size"].as_u64().expect("size");
    assert!(
        size < 8 << 20,
        "the component carries the engine: {size} bytes"
    );

    assert_eq!(
        berth.get("shop.localhost", "/").await.text(),
        "Hello, world (secret missing)"
    );
    // A secret set after the build reaches the running script: env is read
    // per request, never snapshotted.
    let secret = berth
        .send(
            berth
                .admin_request(
                    Method::PUT,
                    "/v1/namespaces/default/scripts/shop/secrets/TOKEN",
                )
                .json(&json!({"value": "s3cret"})),
        )
        .await;
    assert_eq!(secret.status, 200, "{}", secret.text());
    assert_eq!(
        berth.get("shop.localhost", "/").await.text(),
        "Hello, world (secret set)"
    );

    // KV through the binding, visible to the admin API.
    assert_eq!(
        berth
            .get("shop.localhost", "/kv/put?k=colour&v=teal")
            .await
            .text(),
        "stored"
    );
    assert_eq!(
        berth.get("shop.localhost", "/kv/get?k=colour").await.text(),
        "teal"
    );
    assert_eq!(
        berth
            .get("shop.localhost", "/kv/get?k=nothing")
            .await
            .text(),
        "<null>"
    );
    let admin = berth
        .admin_get("/v1/namespaces/default/scripts/shop/kv/colour")
        .await;
    assert_eq!(admin.text(), "teal");
    assert_eq!(
        berth.get("shop.localhost", "/kv/json").await.json(),
        json!({"n": 42})
    );
    assert_eq!(
        berth
            .get("shop.localhost", "/kv/list?prefix=co")
            .await
            .json(),
        json!(["colour"])
    );
    assert_eq!(
        berth
            .get("shop.localhost", "/kv/delete?k=colour")
            .await
            .text(),
        "deleted"
    );
    assert_eq!(
        berth.get("shop.localhost", "/kv/get?k=colour").await.text(),
        "<null>"
    );

    // ctx.waitUntil: the write lands after the answer.
    assert_eq!(
        berth.get("shop.localhost", "/later").await.text(),
        "answered"
    );
    crate::harness::eventually("the waitUntil write", || async {
        let r = berth
            .admin_get("/v1/namespaces/default/scripts/shop/kv/after")
            .await;
        (r.status == 200).then(|| assert_eq!(r.text(), "written after the response"))
    })
    .await;

    // request.json(), Response.json(), crypto.subtle.digest.
    let echo = berth
        .send(
            berth
                .data_request(Method::POST, "shop.localhost", "/echo")
                .json(&json!({"text": "abc"})),
        )
        .await;
    assert_eq!(echo.status, 200, "{}", echo.text());
    assert_eq!(echo.json()["got"], json!({"text": "abc"}));
    assert_eq!(
        echo.json()["sha256"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    // Reuse is refused with a reason: the build is on the fetch event.
    let settings = berth
        .patch_settings("default", "shop", json!({"isolation": "reuse"}))
        .await;
    assert_eq!(settings.status, 200, "{}", settings.text());
    assert!(
        settings.text().contains("served fresh"),
        "{}",
        settings.text()
    );
    let surface = berth.get("shop.localhost", "/surface").await;
    assert_eq!(surface.status, 200, "{}", surface.text());
    assert_eq!(
        surface.json(),
        json!({"uuid": true, "random": 4, "base64": "aGk=/hi", "clone": 2, "params": "2",
               "headers": "1", "stream": "streamed", "timer": "fired"})
    );
}

#[tokio::test]
async fn a_service_worker_script_gets_its_bindings_as_globals() {
    let berth = Berth::start_js(&[]).await;
    let sw = r#"
addEventListener("fetch", (event) => {
  event.respondWith(new Response(`${GREETING} from a service worker`));
});
"#;
    let reply = berth
        .send(
            berth
                .admin_request(
                    Method::PUT,
                    "/v1/namespaces/default/scripts/sw?main_module=worker.js",
                )
                .header("content-type", "application/javascript")
                .body(sw),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let settings = berth
        .patch_settings("default", "sw", json!({"vars": {"GREETING": "Hi"}}))
        .await;
    assert_eq!(settings.status, 200, "{}", settings.text());
    assert_eq!(
        berth.get("sw.localhost", "/").await.text(),
        "Hi from a service worker"
    );
}

#[tokio::test]
async fn scripts_that_do_not_build_answer_400_with_the_js_error_and_store_nothing() {
    let berth = Berth::start_js(&[]).await;
    // A good version first: every failure below must leave it serving.
    let good = berth
        .upload_js(
            "default",
            "app",
            &[(
                "index.js",
                "export default { fetch() { return new Response('v1'); } };",
            )],
            json!({}),
        )
        .await;
    assert_eq!(good.status, 200, "{}", good.text());

    /// What is wrong, the modules, the error code, a word of the message.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: [Case; 5] = [
        (
            "syntax error",
            &[(
                "index.js",
                "export default { fetch() { return new Response('x') ;\n",
            )],
            "script_error",
            "SyntaxError",
        ),
        (
            "top-level throw",
            &[(
                "index.js",
                "const x = 1;\nthrow new Error('top-level boom');\n",
            )],
            "script_error",
            "top-level boom",
        ),
        (
            "missing module",
            &[(
                "index.js",
                "import { nope } from './missing.js';\nexport default { fetch() { return new Response(nope); } };",
            )],
            "script_error",
            "missing.js",
        ),
        (
            "a host call at top level",
            &[(
                "index.js",
                "import { getEnvironment } from 'wasi:cli/environment@0.2.12';\nconst env = getEnvironment();\nexport default { fetch() { return new Response('x'); } };",
            )],
            "script_error",
            "get-environment",
        ),
        (
            "no handler",
            &[("index.js", "export const x = 1;")],
            "script_error",
            "export default",
        ),
    ];
    for (what, modules, code, needle) in cases {
        let reply = berth.upload_js("default", "app", modules, json!({})).await;
        assert_eq!(reply.status, 400, "{what}: {}", reply.text());
        assert_eq!(error_code(&reply), code, "{what}: {}", reply.text());
        let message = reply.json()["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(message.contains(needle), "{what}: {message}");
        assert_eq!(
            berth.get("app.localhost", "/").await.text(),
            "v1",
            "{what} replaced the good version"
        );
    }
    // The JS error carries its location.
    let reply = berth
        .upload_js(
            "default",
            "app",
            &[("index.js", "const x = 1;\nthrow new Error('boom');\n")],
            json!({}),
        )
        .await;
    let script = &reply.json()["errors"][0]["script"];
    assert_eq!(script["module"], "index.js", "{script}");
    assert_eq!(script["line"], 2, "{script}");

    // A first deploy that fails leaves no script behind.
    let reply = berth
        .upload_js(
            "default",
            "never",
            &[("index.js", "throw new Error('no');")],
            json!({}),
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    let missing = berth
        .admin_get("/v1/namespaces/default/scripts/never")
        .await;
    assert_eq!(missing.status, 404, "{}", missing.text());

    // Bad uploads name the problem.
    let reply = berth
        .upload_js(
            "default",
            "app",
            &[("../escape.js", "export default {}")],
            json!({}),
        )
        .await;
    assert_eq!(
        (reply.status, error_code(&reply).as_str()),
        (400, "invalid_script"),
        "{}",
        reply.text()
    );
    let reply = berth
        .upload_js(
            "default",
            "app",
            &[("index.js", "export default {}")],
            json!({"kv_bindings": ["A", "B"]}),
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(reply.text().contains("one KV bucket"), "{}", reply.text());
}

#[tokio::test]
async fn runaway_and_oversized_top_levels_hit_the_build_limits_by_name() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        "[js]\nbuild_timeout_ms = 1000\nbuild_memory_mb = 128\nmax_snapshot_mb = 24\n",
    )
    .expect("config");
    let berth = Berth::start_js(&["--config", config.to_str().expect("utf-8")]).await;

    let looping = berth
        .upload_js(
            "default",
            "spin",
            &[("index.js", "while (true) {}\nexport default {};")],
            json!({}),
        )
        .await;
    assert_eq!(looping.status, 400, "{}", looping.text());
    assert_eq!(error_code(&looping), "build_limit_exceeded");
    assert_eq!(looping.json()["errors"][0]["limit"], "js.build_timeout_ms");

    // 40 MiB of live heap: over the snapshot cap, under the build memory.
    let big = "const chunks = [];\nfor (let i = 0; i < 40; i++) chunks.push(new Uint8Array(1 << 20).fill(7));\nglobalThis.keep = chunks;\nexport default { fetch() { return new Response('big'); } };";
    let reply = berth
        .upload_js("default", "big", &[("index.js", big)], json!({}))
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(
        reply.json()["errors"][0]["limit"],
        "js.max_snapshot_mb",
        "{}",
        reply.text()
    );

    // 200 MiB: over the build memory itself.
    let huge = "const chunks = [];\nfor (let i = 0; i < 200; i++) chunks.push(new Uint8Array(1 << 20).fill(7));\nglobalThis.keep = chunks;\nexport default {};";
    let reply = berth
        .upload_js("default", "huge", &[("index.js", huge)], json!({}))
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    let limit = reply.json()["errors"][0]["limit"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let code = error_code(&reply);
    assert!(
        limit == "js.build_memory_mb" || code == "script_error",
        "an out-of-memory top level is a limit or the engine's own error: {}",
        reply.text()
    );
    for name in ["spin", "big", "huge"] {
        let r = berth
            .admin_get(&format!("/v1/namespaces/default/scripts/{name}"))
            .await;
        assert_eq!(r.status, 404, "{name} was stored: {}", r.text());
    }
    // The sandbox is still usable after all that.
    let ok = berth
        .upload_js(
            "default",
            "fine",
            &[(
                "index.js",
                "export default { fetch() { return new Response('fine'); } };",
            )],
            json!({}),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(berth.get("fine.localhost", "/").await.text(), "fine");
}

#[tokio::test]
async fn two_scripts_uploaded_at_once_each_serve_their_own_code() {
    let berth = Berth::start_js(&[]).await;
    let source = |n: usize| {
        format!(
            "const ID = {n};\nexport default {{ fetch() {{ return new Response('script ' + ID); }} }};"
        )
    };
    let (a, b) = (source(1), source(2));
    let (ma, mb) = ([("index.js", a.as_str())], [("index.js", b.as_str())]);
    let (ra, rb) = tokio::join!(
        berth.upload_js("default", "one", &ma, json!({})),
        berth.upload_js("default", "two", &mb, json!({})),
    );
    assert_eq!(ra.status, 200, "{}", ra.text());
    assert_eq!(rb.status, 200, "{}", rb.text());
    assert_eq!(berth.get("one.localhost", "/").await.text(), "script 1");
    assert_eq!(berth.get("two.localhost", "/").await.text(), "script 2");
}

#[tokio::test]
async fn berth_deploy_builds_a_js_file_and_a_restart_serves_it_from_the_cache() {
    let berth = Berth::start_js(&[]).await;
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("hello.js");
    std::fs::write(
        &file,
        "import { who } from './who.js';\nexport default { async fetch(req, env) { return new Response(`hello ${who} ${env.PLAN}`); } };",
    )
    .expect("write");
    let module = dir.path().join("who.js");
    std::fs::write(&module, "export const who = 'from the CLI';").expect("write");
    let out = berth.cli(&[
        "deploy",
        file.to_str().expect("utf-8"),
        "--module",
        module.to_str().expect("utf-8"),
        "--var",
        "PLAN=pro",
    ]);
    let stdout = crate::harness::ok(out);
    assert!(stdout.contains("built on the host"), "{stdout}");
    assert_eq!(
        berth.get("hello.localhost", "/").await.text(),
        "hello from the CLI pro"
    );

    // After a restart the script's component loads against the engine code
    // the host loads from its cache (the load waits for it).
    let berth = berth.restart();
    let reply = berth.get("hello.localhost", "/").await;
    assert_eq!(reply.text(), "hello from the CLI pro");
}

#[tokio::test]
async fn components_still_deploy_and_js_is_refused_by_name_without_an_engine() {
    let berth = Berth::start();
    let status = berth.admin_get("/v1/js").await.json();
    assert_eq!(status["result"]["state"], "unavailable", "{status}");
    let reply = berth
        .upload_js(
            "default",
            "x",
            &[("index.js", "export default {};")],
            json!({}),
        )
        .await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(error_code(&reply), "js_unavailable");
    assert!(reply.text().contains("engine_dir"), "{}", reply.text());
    berth.deploy("default", "hello", wasm("hello")).await;
    assert_eq!(berth.get("hello.localhost", "/").await.status, 200);
}

/// The sections of a component and, recursively, of its core modules.
fn section_table(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    fn leb(bytes: &[u8], at: &mut usize) -> usize {
        let (mut value, mut shift) = (0usize, 0);
        loop {
            let b = bytes[*at];
            *at += 1;
            value |= ((b & 0x7f) as usize) << shift;
            if b & 0x80 == 0 {
                return value;
            }
            shift += 7;
        }
    }
    fn walk(prefix: &str, bytes: &[u8], out: &mut Vec<(String, Vec<u8>)>, component: bool) {
        let mut at = 8;
        let (mut index, mut module) = (0, 0);
        while at < bytes.len() {
            let id = bytes[at];
            at += 1;
            let size = leb(bytes, &mut at);
            let payload = &bytes[at..at + size];
            if component && id == 1 {
                walk(&format!("{prefix}module{module}/"), payload, out, false);
                module += 1;
            } else {
                out.push((format!("{prefix}#{index} id {id}"), payload.to_vec()));
            }
            index += 1;
            at += size;
        }
    }
    let mut out = Vec::new();
    walk("", bytes, &mut out, true);
    out
}

/// The invariant the host's build rests on: for one world, a component
/// differs from script to script only in its main module's memory and
/// data. Berth's self-contained build of a script is compared with
/// componentize-js's own build of another (examples/js-hello, `make js`).
#[tokio::test]
async fn the_host_build_equals_componentize_js_but_for_memory_and_data() {
    let _ = js_args();
    let berth = Berth::start_js(&[]).await;
    let reply = berth
        .send(
            berth
                .admin_request(Method::POST, "/v1/js/build?output=component")
                .header("content-type", "application/javascript+module")
                .body(
                    "addEventListener('fetch', (e) => e.respondWith(new Response('standalone')));",
                ),
        )
        .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body[..reply.body.len().min(400)])
    );
    let ours = reply.body.clone();
    let theirs = wasm("js_hello");
    let (a, b) = (section_table(&ours), section_table(&theirs));
    assert_eq!(
        a.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        b.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        "the two components have different section layouts"
    );
    let differing: Vec<&String> = a
        .iter()
        .zip(&b)
        .filter(|((_, x), (_, y))| x != y)
        .map(|((n, _), _)| n)
        .collect();
    for name in &differing {
        let id: u8 = name
            .rsplit(' ')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(255);
        assert!(
            name.starts_with("module0/") && matches!(id, 5 | 11 | 12),
            "section {name} differs (only the main module's memory 5, data 11 and data count 12 may): {differing:?}"
        );
    }
    assert!(
        differing.iter().any(|n| n.ends_with("id 11")),
        "the data must differ: {differing:?}"
    );

    // And the self-contained component serves like any component.
    berth.deploy("default", "standalone", ours).await;
    assert_eq!(
        berth.get("standalone.localhost", "/").await.text(),
        "standalone"
    );
}

#[tokio::test]
async fn js_builds_take_their_time_limits_from_the_config_and_report_phases() {
    let berth = Berth::start_js(&[]).await;
    let status = berth.admin_get("/v1/js").await.json();
    assert_eq!(status["result"]["state"], "ready");
    assert_eq!(
        status["result"]["config"]["build_timeout_ms"], 5000,
        "{status}"
    );
    let reply = berth
        .upload_js(
            "default",
            "phases",
            &[("index.js", "console.log('top level ran');\nexport default { fetch() { return new Response('ok'); } };")],
            json!({}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let build: Value = reply.json()["result"]["build"].clone();
    for phase in ["files_ms", "init_ms", "snapshot_ms", "assemble_ms"] {
        assert!(
            build["timings_ms"][phase].as_f64().is_some(),
            "{phase}: {build}"
        );
    }
    assert_eq!(build["stdout"], "top level ran\n", "{build}");
}
