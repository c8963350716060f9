//! `berth serve`: run a host until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use berth_host::{Berth, Config, shutdown_signal};

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
    /// The JS engine `make js-engine` prepared (js.engine_dir): plain
    /// JavaScript uploads build with it.
    #[arg(long, env = "BERTH_JS_ENGINE_DIR")]
    pub js_engine_dir: Option<PathBuf>,
    /// Where the JS engine's compiled code is cached (js.cache_dir).
    #[arg(long, env = "BERTH_JS_CACHE_DIR")]
    pub js_cache_dir: Option<PathBuf>,
}

pub(super) async fn run(args: ServeArgs, data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if let Some(admin) = args.admin_listen {
        config.server.admin_listen = admin;
    }
    if let Some(dir) = data_dir {
        config.server.data_dir = dir;
    }
    if let Some(dir) = args.js_engine_dir {
        config.js.engine_dir = Some(dir);
    }
    if let Some(dir) = args.js_cache_dir {
        config.js.cache_dir = Some(dir);
    }
    let server = Berth::builder(config).build().await?.serve().await?;
    // Stable, machine-readable readiness lines (scripts and tests wait for them).
    println!("berth: data plane listening on http://{}", server.data_addr);
    println!("berth: admin API listening on http://{}", server.admin_addr);
    println!(
        "berth: dashboard at http://{}/dashboard/",
        server.admin_addr
    );
    shutdown_signal().await;
    Ok(server.shutdown().await?)
}
