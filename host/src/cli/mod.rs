//! The `berth` command line: `serve` runs a host; every other command is a
//! client of a running host's admin API (wrangler-style).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};

mod features;

use crate::client::AdminClient;
use berth_host::Config;
use berth_host::{Berth, shutdown_signal};

/// Berth: run your customers' WebAssembly workers, many tenants in one process.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about)]
pub struct Cli {
    /// Log output format (filter with RUST_LOG, e.g. `RUST_LOG=berth_host=debug`).
    #[arg(long, value_enum, default_value_t = LogFormat::Pretty, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How logs are written to stderr.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the host: data plane and admin API.
    Serve(ServeArgs),
    /// Manage dispatch namespaces.
    #[command(subcommand)]
    Namespace(NamespaceCommand),
    /// Upload a component as a script (creates or replaces it).
    Deploy(DeployArgs),
    /// Inspect and delete scripts.
    #[command(subcommand)]
    Script(ScriptCommand),
    /// Edit script tags; delete scripts by tag.
    #[command(subcommand)]
    Tags(features::TagsCommand),
    /// Manage write-only secrets of a script.
    #[command(subcommand)]
    Secret(features::SecretCommand),
    /// Manage a namespace's hostname table.
    #[command(subcommand)]
    Hostname(features::HostnameCommand),
    /// Publish a script's static assets.
    #[command(subcommand)]
    Assets(features::AssetsCommand),
    /// Inspect a script's KV bucket.
    #[command(subcommand)]
    Kv(features::KvCommand),
    /// Stream a script's live events (requests, outcomes, guest output).
    Tail(features::TailArgs),
}

/// `berth serve` options; each overrides the config file.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Config file (TOML); without it the built-in defaults apply.
    #[arg(long, env = "BERTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data-plane address (server.listen).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Admin API address (server.admin_listen).
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
    /// Data directory (server.data_dir).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Where client commands find the admin API.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Admin API base URL.
    #[arg(
        long,
        env = "BERTH_ADMIN_URL",
        default_value = "http://127.0.0.1:8788",
        global = true
    )]
    pub admin_url: String,
    /// Admin token (default: BERTH_ADMIN_TOKEN, else <data-dir>/admin-token).
    #[arg(long, global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// The server's data dir, to read a generated admin token from.
    #[arg(
        long,
        env = "BERTH_DATA_DIR",
        default_value = "./berth-data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// Print the raw JSON result instead of a summary.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `berth namespace …`
#[derive(Debug, Subcommand)]
pub enum NamespaceCommand {
    /// Create a namespace.
    Create {
        /// Namespace name.
        name: String,
        /// Admin API connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List namespaces.
    List {
        /// Admin API connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one namespace.
    Get {
        /// Namespace name.
        name: String,
        /// Admin API connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a namespace's settings, or change them with a JSON merge patch.
    Settings {
        /// Namespace name.
        name: String,
        /// JSON merge patch, e.g. '{"egress": {"deny": ["*"]}}' (omit to show).
        #[arg(value_parser = parse_json_object)]
        patch: Option<Value>,
        /// Admin API connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a namespace.
    Delete {
        /// Namespace name.
        name: String,
        /// Also delete the scripts it holds.
        #[arg(long)]
        force: bool,
        /// Admin API connection.
        #[command(flatten)]
        client: ClientArgs,
    },
}

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
    /// Admin API connection.
    #[command(flatten)]
    pub client: ClientArgs,
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
        /// Admin API connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one script.
    Get {
        /// Namespace.
        #[arg(long, short = 'n', default_value = "default")]
        namespace: String,
        /// Script name.
        name: String,
        /// Admin API connection.
        #[command(flatten)]
        client: ClientArgs,
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
        /// Admin API connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete one script.
    Delete {
        /// Namespace.
        #[arg(long, short = 'n', default_value = "default")]
        namespace: String,
        /// Script name.
        name: String,
        /// Admin API connection.
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Namespace(cmd) => namespace(cmd).await,
        Command::Deploy(args) => deploy(args).await,
        Command::Script(cmd) => script(cmd).await,
        Command::Tags(cmd) => features::tags(cmd).await,
        Command::Secret(cmd) => features::secret(cmd).await,
        Command::Hostname(cmd) => features::hostname(cmd).await,
        Command::Assets(cmd) => features::assets(cmd).await,
        Command::Kv(cmd) => features::kv(cmd).await,
        Command::Tail(args) => features::tail(args).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if let Some(admin) = args.admin_listen {
        config.server.admin_listen = admin;
    }
    if let Some(dir) = args.data_dir {
        config.server.data_dir = dir;
    }
    let server = Berth::builder(config).build().await?.serve().await?;
    // Stable, machine-readable readiness lines (scripts and tests wait for them).
    println!("berth: data plane listening on http://{}", server.data_addr);
    println!("berth: admin API listening on http://{}", server.admin_addr);
    shutdown_signal().await;
    server.shutdown().await
}

fn client(args: &ClientArgs) -> anyhow::Result<AdminClient> {
    AdminClient::new(&args.admin_url, args.token.clone(), &args.data_dir)
}

/// Shows settings at `path`, or applies `patch` (a JSON merge patch) and
/// shows the result.
async fn show_or_patch(args: &ClientArgs, path: &str, patch: Option<Value>) -> anyhow::Result<()> {
    let v = match patch {
        Some(patch) => client(args)?.patch_json(path, &patch).await?,
        None => client(args)?.get(path).await?,
    };
    print(args, &v, pretty_json);
    Ok(())
}

fn pretty_json(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

fn parse_json_object(s: &str) -> Result<Value, String> {
    match serde_json::from_str::<Value>(s) {
        Ok(v) if v.is_object() => Ok(v),
        Ok(_) => Err("expected a JSON object".into()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

fn print(args: &ClientArgs, value: &Value, summary: impl FnOnce(&Value) -> String) {
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    } else {
        println!("{}", summary(value));
    }
}

fn script_line(s: &Value) -> String {
    let sha = s["sha256"].as_str().unwrap_or("");
    format!(
        "{}/{}  version {}  {} bytes  sha256 {}  modified {}{}",
        s["namespace"].as_str().unwrap_or("?"),
        s["name"].as_str().unwrap_or("?"),
        s["version"],
        s["size"],
        &sha[..sha.len().min(12)],
        s["modified_on"].as_str().unwrap_or("?"),
        match s["tags"].as_array() {
            Some(tags) if !tags.is_empty() => format!(
                "  tags {}",
                tags.iter()
                    .filter_map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            _ => String::new(),
        }
    )
}

fn namespace_line(n: &Value) -> String {
    format!(
        "{}  {} script(s)  created {}",
        n["name"].as_str().unwrap_or("?"),
        n["script_count"],
        n["created_on"].as_str().unwrap_or("?")
    )
}

fn lines(value: &Value, line: fn(&Value) -> String) -> String {
    match value.as_array() {
        Some(items) if !items.is_empty() => items.iter().map(line).collect::<Vec<_>>().join("\n"),
        _ => "(none)".into(),
    }
}

async fn namespace(cmd: NamespaceCommand) -> anyhow::Result<()> {
    match cmd {
        NamespaceCommand::Create { name, client: args } => {
            let v = client(&args)?
                .post_json("/v1/namespaces", &json!({"name": name}))
                .await?;
            print(&args, &v, |v| {
                format!("created namespace {}", namespace_line(v))
            });
        }
        NamespaceCommand::List { client: args } => {
            let v = client(&args)?.get("/v1/namespaces").await?;
            print(&args, &v, |v| lines(v, namespace_line));
        }
        NamespaceCommand::Get { name, client: args } => {
            let v = client(&args)?
                .get(&format!("/v1/namespaces/{name}"))
                .await?;
            print(&args, &v, namespace_line);
        }
        NamespaceCommand::Settings {
            name,
            patch,
            client: args,
        } => {
            show_or_patch(&args, &format!("/v1/namespaces/{name}/settings"), patch).await?;
        }
        NamespaceCommand::Delete {
            name,
            force,
            client: args,
        } => {
            let path = format!(
                "/v1/namespaces/{name}{}",
                if force { "?force=true" } else { "" }
            );
            let v = client(&args)?.delete(&path).await?;
            print(&args, &v, |v| {
                let n = v["deleted_scripts"].as_array().map_or(0, |a| a.len());
                format!("deleted namespace {name} ({n} script(s) deleted)")
            });
        }
    }
    Ok(())
}

async fn deploy(args: DeployArgs) -> anyhow::Result<()> {
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
    let v = client(&args.client)?
        .upload(&path, bytes, &metadata)
        .await?;
    print(&args.client, &v, |v| format!("deployed {}", script_line(v)));
    Ok(())
}

async fn script(cmd: ScriptCommand) -> anyhow::Result<()> {
    match cmd {
        ScriptCommand::List {
            namespace,
            tags,
            client: args,
        } => {
            let filter = tags.map(|t| format!("?tags={t}")).unwrap_or_default();
            let v = client(&args)?
                .get(&format!("/v1/namespaces/{namespace}/scripts{filter}"))
                .await?;
            print(&args, &v, |v| lines(v, script_line));
        }
        ScriptCommand::Get {
            namespace,
            name,
            client: args,
        } => {
            let v = client(&args)?
                .get(&format!("/v1/namespaces/{namespace}/scripts/{name}"))
                .await?;
            print(&args, &v, script_line);
        }
        ScriptCommand::Settings {
            namespace,
            name,
            patch,
            client: args,
        } => {
            let path = format!("/v1/namespaces/{namespace}/scripts/{name}/settings");
            show_or_patch(&args, &path, patch).await?;
        }
        ScriptCommand::Delete {
            namespace,
            name,
            client: args,
        } => {
            let v = client(&args)?
                .delete(&format!("/v1/namespaces/{namespace}/scripts/{name}"))
                .await?;
            print(&args, &v, |_| format!("deleted {namespace}/{name}"));
        }
    }
    Ok(())
}
