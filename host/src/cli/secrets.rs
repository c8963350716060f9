//! `berth secret …`: a script's write-only secrets
//! (`…/scripts/{name}/secrets`).

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;

use super::output::{names, print};
use super::{ClientArgs, ScriptRef, client};

/// `berth secret …`
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Set a secret; the value is read from standard input (or `--value`).
    Put {
        /// The script.
        #[command(flatten)]
        target: ScriptRef,
        /// Variable name.
        key: String,
        /// The value (default: read standard input; avoids shell history).
        #[arg(long)]
        value: Option<String>,
    },
    /// Delete a secret.
    Delete {
        /// The script.
        #[command(flatten)]
        target: ScriptRef,
        /// Variable name.
        key: String,
    },
    /// List secret names (never values).
    List {
        /// The script.
        #[command(flatten)]
        target: ScriptRef,
    },
}

pub(super) async fn run(cmd: SecretCommand, args: &ClientArgs) -> anyhow::Result<()> {
    match cmd {
        SecretCommand::Put { target, key, value } => {
            let value = match value {
                Some(v) => v,
                None => {
                    let mut text = String::new();
                    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                        .context("reading the secret from stdin")?;
                    text.trim_end_matches(['\n', '\r']).to_owned()
                }
            };
            let path = format!("{}/secrets/{key}", target.path());
            let v = client(args)?
                .put_json(&path, Some(&json!({"value": value})))
                .await?;
            print(args, &v, |_| {
                format!("secret {key} set on {}/{}", target.namespace, target.script)
            });
        }
        SecretCommand::Delete { target, key } => {
            let v = client(args)?
                .delete(&format!("{}/secrets/{key}", target.path()))
                .await?;
            print(args, &v, |_| format!("secret {key} deleted"));
        }
        SecretCommand::List { target } => {
            let v = client(args)?
                .get(&format!("{}/secrets", target.path()))
                .await?;
            print(args, &v, names);
        }
    }
    Ok(())
}
