//! `berth kv …`: a script's KV bucket (`…/scripts/{name}/kv`).

use clap::Subcommand;

use super::output::{names, print};
use super::{ClientArgs, ScriptRef, client};

/// `berth kv …`
#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// List keys of a script's bucket.
    List {
        /// The script.
        #[command(flatten)]
        target: ScriptRef,
    },
    /// Print a value (raw bytes to standard output).
    Get {
        /// The script.
        #[command(flatten)]
        target: ScriptRef,
        /// The key.
        key: String,
    },
    /// Delete a key.
    Delete {
        /// The script.
        #[command(flatten)]
        target: ScriptRef,
        /// The key.
        key: String,
    },
}

pub(super) async fn run(cmd: KvCommand, args: &ClientArgs) -> anyhow::Result<()> {
    match cmd {
        KvCommand::List { target } => {
            let v = client(args)?.get(&format!("{}/kv", target.path())).await?;
            print(args, &v, names);
        }
        KvCommand::Get { target, key } => {
            let bytes = client(args)?
                .get_raw(&format!("{}/kv/{key}", target.path()))
                .await?;
            use std::io::Write;
            std::io::stdout().write_all(&bytes)?;
        }
        KvCommand::Delete { target, key } => {
            let v = client(args)?
                .delete(&format!("{}/kv/{key}", target.path()))
                .await?;
            print(args, &v, |_| format!("deleted {key}"));
        }
    }
    Ok(())
}
