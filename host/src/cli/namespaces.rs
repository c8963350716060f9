//! `berth namespace …`: dispatch namespaces (`/v1/namespaces`).

use clap::Subcommand;
use serde_json::{Value, json};

use super::output::{lines, namespace_line, parse_json_object, print, show_or_patch};
use super::{ClientArgs, client};

/// `berth namespace …`
#[derive(Debug, Subcommand)]
pub enum NamespaceCommand {
    /// Create a namespace.
    Create {
        /// Namespace name.
        name: String,
    },
    /// List namespaces.
    List {},
    /// Show one namespace.
    Get {
        /// Namespace name.
        name: String,
    },
    /// Show a namespace's settings, or change them with a JSON merge patch.
    Settings {
        /// Namespace name.
        name: String,
        /// JSON merge patch, e.g. '{"egress": {"deny": ["*"]}}' (omit to show).
        #[arg(value_parser = parse_json_object)]
        patch: Option<Value>,
    },
    /// Delete a namespace.
    Delete {
        /// Namespace name.
        name: String,
        /// Also delete the scripts it holds.
        #[arg(long)]
        force: bool,
    },
}

pub(super) async fn run(cmd: NamespaceCommand, args: &ClientArgs) -> anyhow::Result<()> {
    match cmd {
        NamespaceCommand::Create { name } => {
            let v = client(args)?
                .post_json("/v1/namespaces", &json!({"name": name}))
                .await?;
            print(args, &v, |v| {
                format!("created namespace {}", namespace_line(v))
            });
        }
        NamespaceCommand::List {} => {
            let v = client(args)?.get("/v1/namespaces").await?;
            print(args, &v, |v| lines(v, namespace_line));
        }
        NamespaceCommand::Get { name } => {
            let v = client(args)?.get(&format!("/v1/namespaces/{name}")).await?;
            print(args, &v, namespace_line);
        }
        NamespaceCommand::Settings { name, patch } => {
            show_or_patch(args, &format!("/v1/namespaces/{name}/settings"), patch).await?;
        }
        NamespaceCommand::Delete { name, force } => {
            let path = format!(
                "/v1/namespaces/{name}{}",
                if force { "?force=true" } else { "" }
            );
            let v = client(args)?.delete(&path).await?;
            print(args, &v, |v| {
                let n = v["deleted_scripts"].as_array().map_or(0, |a| a.len());
                format!("deleted namespace {name} ({n} script(s) deleted)")
            });
        }
    }
    Ok(())
}
