//! `berth tags …`: a script's tags, and deleting scripts by tag
//! (`…/scripts/{name}/tags`, `DELETE …/scripts?tags=`).

use clap::Subcommand;
use serde_json::json;

use super::output::{pretty_json, print};
use super::{ClientArgs, NamespaceRef, ScriptRef, client};

/// `berth tags …`
#[derive(Debug, Subcommand)]
pub enum TagsCommand {
    /// Replace a script's tags (comma-separated; empty clears them).
    Set {
        /// The script.
        #[command(flatten)]
        target: ScriptRef,
        /// Tags, e.g. `plan-pro,eu`.
        tags: String,
    },
    /// Add one tag.
    Add {
        /// The script.
        #[command(flatten)]
        target: ScriptRef,
        /// The tag.
        tag: String,
    },
    /// Remove one tag.
    Remove {
        /// The script.
        #[command(flatten)]
        target: ScriptRef,
        /// The tag.
        tag: String,
    },
    /// Delete every script matching a filter, e.g. `plan-free:yes,beta:no`.
    DeleteScripts {
        /// The namespace.
        #[command(flatten)]
        ns: NamespaceRef,
        /// The filter.
        filter: String,
    },
}

pub(super) async fn run(cmd: TagsCommand, args: &ClientArgs) -> anyhow::Result<()> {
    match cmd {
        TagsCommand::Set { target, tags } => {
            let list: Vec<&str> = tags
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .collect();
            let v = client(args)?
                .put_json(&format!("{}/tags", target.path()), Some(&json!(list)))
                .await?;
            print(args, &v, pretty_json);
        }
        TagsCommand::Add { target, tag } => {
            let v = client(args)?
                .put_json(&format!("{}/tags/{tag}", target.path()), None)
                .await?;
            print(args, &v, pretty_json);
        }
        TagsCommand::Remove { target, tag } => {
            let v = client(args)?
                .delete(&format!("{}/tags/{tag}", target.path()))
                .await?;
            print(args, &v, pretty_json);
        }
        TagsCommand::DeleteScripts { ns, filter } => {
            let v = client(args)?
                .delete(&format!(
                    "/v1/namespaces/{}/scripts?tags={filter}",
                    ns.namespace
                ))
                .await?;
            print(args, &v, |v| format!("deleted {}", v["deleted"]));
        }
    }
    Ok(())
}
