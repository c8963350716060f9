//! The `berth` binary: parse the command line, set up logging, run.
//!
//! The command line ([`cli`]) and its admin API client ([`client`]) live
//! in the binary, not the library: `berth serve` is a user of the public
//! embedding API (`berth_host::Berth`) like any other Rust service.

mod cli;
mod client;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cli::{Cli, LogFormat, run};

/// mimalloc instead of glibc malloc: per request the host allocates and
/// frees many small objects on two or more threads (wasmtime instance
/// state, resource tables, hyper and header maps), where glibc's arenas
/// showed up as ~13 % of CPU in the dispatch-path profile. The library
/// crate leaves the choice to embedders.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Every file this process creates (store segments, keys, tokens) is
    // readable by its user only.
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,cranelift_codegen=warn,wasmtime=warn"));
    // Colours only on a terminal: log files and collectors get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
