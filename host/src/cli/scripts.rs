//! `berth deploy` and `berth script …`: upload, inspect, configure and
//! delete scripts (`/v1/namespaces/{ns}/scripts`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::output::{lines, parse_json_object, parse_var, print, script_line, show_or_patch};
use super::{ClientArgs, client};

/// `berth deploy …`
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Namespace to deploy into.
    #[arg(long, short = 'n', default_value = "default")]
    pub namespace: String,
    /// Script name; with one argument, the file, and the script is named
    /// after it (`hello.js` → `hello`).
    pub name: String,
    /// The component (`.wasm`) or JavaScript module (`.js`, `.mjs`; the
    /// host builds it).
    pub file: Option<PathBuf>,
    /// JavaScript: another module of the worker (repeatable), named by its
    /// path relative to the main module's directory.
    #[arg(long = "module")]
    pub modules: Vec<PathBuf>,
    /// JavaScript: a `kv_namespace` binding, the name under which `env`
    /// holds the script's KV bucket.
    #[arg(long = "kv")]
    pub kv: Option<String>,
    /// Tag the script (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Environment variable for the guest, KEY=VALUE (repeatable).
    #[arg(long = "var", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Limits as JSON, e.g. '{"cpu_ms": 50, "memory_mb": 64}'.
    #[arg(long, value_parser = parse_json_object)]
    pub limits: Option<Value>,
    /// Egress rules as JSON, e.g. '{"allow": ["api.example.com"]}'.
    #[arg(long, value_parser = parse_json_object)]
    pub egress: Option<Value>,
}

/// `berth script …`
#[derive(Debug, Subcommand)]
pub enum ScriptCommand {
    /// List the scripts of a namespace.
    List {
        /// Namespace.
        #[arg(long, short = 'n', default_value = "default")]
        namespace: String,
        /// Only scripts matching this tag filter, e.g. `plan-pro:yes,beta:no`.
        #[arg(long)]
        tags: Option<String>,
    },
    /// Show one script.
    Get {
        /// Namespace.
        #[arg(long, short = 'n', default_value = "default")]
        namespace: String,
        /// Script name.
        name: String,
    },
    /// Show a script's settings, or change them with a JSON merge patch.
    Settings {
        /// Namespace.
        #[arg(long, short = 'n', default_value = "default")]
        namespace: String,
        /// Script name.
        name: String,
        /// JSON merge patch, e.g. '{"limits": {"cpu_ms": 50}}' (omit to show).
        #[arg(value_parser = parse_json_object)]
        patch: Option<Value>,
    },
    /// Delete one script.
    Delete {
        /// Namespace.
        #[arg(long, short = 'n', default_value = "default")]
        namespace: String,
        /// Script name.
        name: String,
    },
}

/// `hello.js` → `hello`; `My_Worker.mjs` → `my-worker`.
fn name_from_file(file: &std::path::Path) -> anyhow::Result<String> {
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .with_context(|| format!("cannot name a script after {}", file.display()))?;
    Ok(stem.to_ascii_lowercase().replace(['_', '.', ' '], "-"))
}

pub(super) async fn deploy(args: DeployArgs, client_args: &ClientArgs) -> anyhow::Result<()> {
    let (name, file) = match &args.file {
        Some(file) => (args.name.clone(), file.clone()),
        None => {
            let file = PathBuf::from(&args.name);
            (name_from_file(&file)?, file)
        }
    };
    let javascript = match file.extension().and_then(|e| e.to_str()) {
        Some("wasm") => false,
        Some("js" | "mjs") => true,
        _ => bail!(
            "{} is neither a .wasm component nor a .js module",
            file.display()
        ),
    };
    if !javascript && (!args.modules.is_empty() || args.kv.is_some()) {
        bail!("--module and --kv apply to JavaScript (.js) deploys");
    }
    let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let vars: serde_json::Map<String, Value> = args
        .vars
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.clone())))
        .collect();
    // Only what is given replaces the previous version's settings.
    let mut metadata = json!({});
    if !args.tags.is_empty() {
        metadata["tags"] = json!(args.tags);
    }
    if !vars.is_empty() {
        metadata["vars"] = Value::Object(vars);
    }
    if let Some(limits) = args.limits {
        metadata["limits"] = limits;
    }
    if let Some(egress) = args.egress {
        metadata["egress"] = egress;
    }
    let path = format!("/v1/namespaces/{}/scripts/{}", args.namespace, name);
    let v = if javascript {
        let base = file.parent().unwrap_or(std::path::Path::new(""));
        let main = file
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no file name", file.display()))?
            .to_owned();
        let mut modules = vec![(main.clone(), bytes)];
        for extra in &args.modules {
            let relative = extra.strip_prefix(base).unwrap_or(extra);
            let module = relative
                .to_str()
                .with_context(|| format!("{} is not a UTF-8 path", extra.display()))?
                .to_owned();
            let source =
                std::fs::read(extra).with_context(|| format!("cannot read {}", extra.display()))?;
            modules.push((module, source));
        }
        metadata["main_module"] = json!(main);
        if let Some(kv) = &args.kv {
            metadata["kv_bindings"] = json!([kv]);
        }
        client(client_args)?
            .upload_js(&path, modules, &metadata)
            .await?
    } else {
        client(client_args)?.upload(&path, bytes, &metadata).await?
    };
    print(client_args, &v, |v| {
        let mut line = format!("deployed {}", script_line(v));
        if let Some(t) = v.get("build").and_then(|b| b.get("timings_ms")) {
            let phase = |k: &str| t.get(k).and_then(Value::as_f64).unwrap_or(0.0);
            line.push_str(&format!(
                "\n  built on the host in {:.0} ms (top level {:.0} ms, snapshot {:.0} ms, assemble {:.0} ms)",
                phase("files_ms") + phase("init_ms") + phase("snapshot_ms") + phase("assemble_ms"),
                phase("init_ms"),
                phase("snapshot_ms"),
                phase("assemble_ms")
            ));
        }
        line
    });
    Ok(())
}

pub(super) async fn run(cmd: ScriptCommand, args: &ClientArgs) -> anyhow::Result<()> {
    match cmd {
        ScriptCommand::List { namespace, tags } => {
            let filter = tags.map(|t| format!("?tags={t}")).unwrap_or_default();
            let v = client(args)?
                .get(&format!("/v1/namespaces/{namespace}/scripts{filter}"))
                .await?;
            print(args, &v, |v| lines(v, script_line));
        }
        ScriptCommand::Get { namespace, name } => {
            let v = client(args)?
                .get(&format!("/v1/namespaces/{namespace}/scripts/{name}"))
                .await?;
            print(args, &v, script_line);
        }
        ScriptCommand::Settings {
            namespace,
            name,
            patch,
        } => {
            let path = format!("/v1/namespaces/{namespace}/scripts/{name}/settings");
            show_or_patch(args, &path, patch).await?;
        }
        ScriptCommand::Delete { namespace, name } => {
            let v = client(args)?
                .delete(&format!("/v1/namespaces/{namespace}/scripts/{name}"))
                .await?;
            print(args, &v, |_| format!("deleted {namespace}/{name}"));
        }
    }
    Ok(())
}
