//! `berth hostname …`: a namespace's hostname table
//! (`/v1/namespaces/{ns}/hostnames`).

use clap::Subcommand;
use serde_json::json;

use super::output::print;
use super::{ClientArgs, NamespaceRef, client};

/// `berth hostname …`
#[derive(Debug, Subcommand)]
pub enum HostnameCommand {
    /// Map a hostname (`shop.example.com` or `*.example.com`) to a script.
    Put {
        /// The namespace.
        #[command(flatten)]
        ns: NamespaceRef,
        /// The hostname or wildcard.
        hostname: String,
        /// Script name.
        script: String,
    },
    /// Remove a hostname mapping.
    Delete {
        /// The namespace.
        #[command(flatten)]
        ns: NamespaceRef,
        /// The hostname or wildcard.
        hostname: String,
    },
    /// List a namespace's hostname table.
    List {
        /// The namespace.
        #[command(flatten)]
        ns: NamespaceRef,
    },
}

pub(super) async fn run(cmd: HostnameCommand, args: &ClientArgs) -> anyhow::Result<()> {
    match cmd {
        HostnameCommand::Put {
            ns,
            hostname,
            script,
        } => {
            let path = format!("/v1/namespaces/{}/hostnames/{hostname}", ns.namespace);
            let v = client(args)?
                .put_json(&path, Some(&json!({"script": script})))
                .await?;
            print(args, &v, |v| {
                format!(
                    "{} → {}",
                    v["hostname"].as_str().unwrap_or(""),
                    v["script"].as_str().unwrap_or("")
                )
            });
        }
        HostnameCommand::Delete { ns, hostname } => {
            let v = client(args)?
                .delete(&format!(
                    "/v1/namespaces/{}/hostnames/{hostname}",
                    ns.namespace
                ))
                .await?;
            print(args, &v, |_| format!("removed {hostname}"));
        }
        HostnameCommand::List { ns } => {
            let v = client(args)?
                .get(&format!("/v1/namespaces/{}/hostnames", ns.namespace))
                .await?;
            print(args, &v, |v| {
                v.as_array()
                    .map(|a| {
                        a.iter()
                            .map(|e| {
                                format!(
                                    "{} → {}",
                                    e["hostname"].as_str().unwrap_or(""),
                                    e["script"].as_str().unwrap_or("")
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default()
            });
        }
    }
    Ok(())
}
