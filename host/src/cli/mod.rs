//! The `berth` command line: `serve` runs a host; every other command is a
//! client of a running host's admin API (wrangler-style), one file per
//! resource, each verb one admin API call. The connection options
//! ([`ClientArgs`]) are global: given once, before or after the verb.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod assets;
mod hostnames;
mod kv;
mod namespaces;
mod output;
mod scripts;
mod secrets;
mod serve;
mod tags;
mod tail;

use crate::client::AdminClient;

/// Berth: run your customers' WebAssembly workers, many tenants in one process.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about)]
pub struct Cli {
    /// Log output format (filter with RUST_LOG, e.g. `RUST_LOG=berth_host=debug`).
    #[arg(long, value_enum, default_value_t = LogFormat::Pretty, global = true)]
    pub log_format: LogFormat,
    /// Where client commands find the admin API (and `serve` its data dir).
    #[command(flatten)]
    pub client: ClientArgs,
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
    Serve(serve::ServeArgs),
    /// Manage dispatch namespaces.
    #[command(subcommand)]
    Namespace(namespaces::NamespaceCommand),
    /// Upload a component as a script (creates or replaces it).
    Deploy(scripts::DeployArgs),
    /// Inspect and delete scripts.
    #[command(subcommand)]
    Script(scripts::ScriptCommand),
    /// Edit script tags; delete scripts by tag.
    #[command(subcommand)]
    Tags(tags::TagsCommand),
    /// Manage write-only secrets of a script.
    #[command(subcommand)]
    Secret(secrets::SecretCommand),
    /// Manage a namespace's hostname table.
    #[command(subcommand)]
    Hostname(hostnames::HostnameCommand),
    /// Publish a script's static assets.
    #[command(subcommand)]
    Assets(assets::AssetsCommand),
    /// Inspect a script's KV bucket.
    #[command(subcommand)]
    Kv(kv::KvCommand),
    /// Stream a script's live events (requests, outcomes, guest output).
    Tail(tail::TailArgs),
}

/// Where client commands find the admin API. Global: each option may be
/// given once, anywhere on the command line.
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
    /// Admin token (default: BERTH_ADMIN_TOKEN, else DATA_DIR/admin-token).
    #[arg(long, global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// The server's data dir: where `serve` keeps its data (overrides
    /// server.data_dir), and where client commands read a generated admin
    /// token from (default ./berth-data).
    #[arg(long, env = "BERTH_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Print the raw JSON result instead of a summary.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Where client commands look for a generated admin token by default.
const DEFAULT_DATA_DIR: &str = "./berth-data";

/// A script on the command line: `[-n NS] SCRIPT`.
#[derive(Debug, clap::Args)]
pub struct ScriptRef {
    /// Namespace.
    #[arg(long, short = 'n', default_value = "default")]
    pub namespace: String,
    /// Script name.
    pub script: String,
}

impl ScriptRef {
    /// The script's admin API path.
    pub fn path(&self) -> String {
        format!("/v1/namespaces/{}/scripts/{}", self.namespace, self.script)
    }
}

/// A namespace on the command line: `[-n NS]`.
#[derive(Debug, clap::Args)]
pub struct NamespaceRef {
    /// Namespace.
    #[arg(long, short = 'n', default_value = "default")]
    pub namespace: String,
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let args = &cli.client;
    match cli.command {
        Command::Serve(serve) => serve::run(serve, args.data_dir.clone()).await,
        Command::Namespace(cmd) => namespaces::run(cmd, args).await,
        Command::Deploy(deploy) => scripts::deploy(deploy, args).await,
        Command::Script(cmd) => scripts::run(cmd, args).await,
        Command::Tags(cmd) => tags::run(cmd, args).await,
        Command::Secret(cmd) => secrets::run(cmd, args).await,
        Command::Hostname(cmd) => hostnames::run(cmd, args).await,
        Command::Assets(cmd) => assets::run(cmd, args).await,
        Command::Kv(cmd) => kv::run(cmd, args).await,
        Command::Tail(tail) => tail::run(tail, args).await,
    }
}

fn client(args: &ClientArgs) -> anyhow::Result<AdminClient> {
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    AdminClient::new(&args.admin_url, args.token.clone(), &data_dir)
}
