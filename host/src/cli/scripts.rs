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
    /// Script name.
    pub name: String,
    /// The component (`.wasm`).
    pub file: PathBuf,
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

pub(super) async fn deploy(args: DeployArgs, client_args: &ClientArgs) -> anyhow::Result<()> {
    match args.file.extension().and_then(|e| e.to_str()) {
        Some("wasm") => {}
        Some("js" | "mjs") => bail!(
            "{} is JavaScript: build it into a component first, then deploy the .wasm:\n  \
             npx --package @bytecodealliance/componentize-js@0.23.0 componentize-js {} \
             --wit wit/js --world-name worker -o worker.wasm\n\
             (Berth does not build JS on the client; docs/javascript.md says why)",
            args.file.display(),
            args.file.display()
        ),
        _ => bail!("{} is not a .wasm component", args.file.display()),
    }
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
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
    let path = format!("/v1/namespaces/{}/scripts/{}", args.namespace, args.name);
    let v = client(client_args)?.upload(&path, bytes, &metadata).await?;
    print(client_args, &v, |v| format!("deployed {}", script_line(v)));
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
