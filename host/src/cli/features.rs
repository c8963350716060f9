//! CLI verbs for namespace features: tags, secrets, hostnames, static
//! assets and KV. Each maps one-to-one onto an admin API endpoint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{ClientArgs, client, pretty_json, print};

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
        /// Admin API connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Add one tag.
    Add {
        /// The script.
        #[command(flatten)]
        target: ScriptRef,
        /// The tag.
        tag: String,
        /// Admin API connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove one tag.
    Remove {
        /// The script.
        #[command(flatten)]
        target: ScriptRef,
        /// The tag.
        tag: String,
        /// Admin API connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete every script matching a filter, e.g. `plan-free:yes,beta:no`.
    DeleteScripts {
        /// The namespace.
        #[command(flatten)]
        ns: NamespaceRef,
        /// The filter.
        filter: String,
        /// Admin API connection.
        #[command(flatten)]
        client: ClientArgs,
    },
}

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
        /// Admin API connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a secret.
    Delete {
        /// The script.
        #[command(flatten)]
        target: ScriptRef,
        /// Variable name.
        key: String,
        /// Admin API connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List secret names (never values).
    List {
        /// The script.
        #[command(flatten)]
        target: ScriptRef,
        /// Admin API connection.
        #[command(flatten)]
        client: ClientArgs,
    },
}

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
        /// Admin API connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove a hostname mapping.
    Delete {
        /// The namespace.
        #[command(flatten)]
        ns: NamespaceRef,
        /// The hostname or wildcard.
        hostname: String,
        /// Admin API connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List a namespace's hostname table.
    List {
        /// The namespace.
        #[command(flatten)]
        ns: NamespaceRef,
        /// Admin API connection.
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `berth assets …`
#[derive(Debug, Subcommand)]
pub enum AssetsCommand {
    /// Upload a directory as the script's static assets (only new content
    /// is sent).
    Upload {
        /// The script.
        #[command(flatten)]
        target: ScriptRef,
        /// Directory to publish; its files become `/relative/path`.
        dir: PathBuf,
        /// Admin API connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show the asset manifest and serving options.
    List {
        /// The script.
        #[command(flatten)]
        target: ScriptRef,
        /// Admin API connection.
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `berth kv …`
#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// List keys of a script's bucket.
    List {
        /// The script.
        #[command(flatten)]
        target: ScriptRef,
        /// Admin API connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print a value (raw bytes to standard output).
    Get {
        /// The script.
        #[command(flatten)]
        target: ScriptRef,
        /// The key.
        key: String,
        /// Admin API connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a key.
    Delete {
        /// The script.
        #[command(flatten)]
        target: ScriptRef,
        /// The key.
        key: String,
        /// Admin API connection.
        #[command(flatten)]
        client: ClientArgs,
    },
}

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
    fn path(&self) -> String {
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

pub(super) async fn tags(cmd: TagsCommand) -> anyhow::Result<()> {
    match cmd {
        TagsCommand::Set {
            target,
            tags,
            client: args,
        } => {
            let list: Vec<&str> = tags
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .collect();
            let v = client(&args)?
                .put_json(&format!("{}/tags", target.path()), Some(&json!(list)))
                .await?;
            print(&args, &v, pretty_json);
        }
        TagsCommand::Add {
            target,
            tag,
            client: args,
        } => {
            let v = client(&args)?
                .put_json(&format!("{}/tags/{tag}", target.path()), None)
                .await?;
            print(&args, &v, pretty_json);
        }
        TagsCommand::Remove {
            target,
            tag,
            client: args,
        } => {
            let v = client(&args)?
                .delete(&format!("{}/tags/{tag}", target.path()))
                .await?;
            print(&args, &v, pretty_json);
        }
        TagsCommand::DeleteScripts {
            ns,
            filter,
            client: args,
        } => {
            let v = client(&args)?
                .delete(&format!(
                    "/v1/namespaces/{}/scripts?tags={filter}",
                    ns.namespace
                ))
                .await?;
            print(&args, &v, |v| format!("deleted {}", v["deleted"]));
        }
    }
    Ok(())
}

pub(super) async fn secret(cmd: SecretCommand) -> anyhow::Result<()> {
    match cmd {
        SecretCommand::Put {
            target,
            key,
            value,
            client: args,
        } => {
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
            let v = client(&args)?
                .put_json(&path, Some(&json!({"value": value})))
                .await?;
            print(&args, &v, |_| {
                format!("secret {key} set on {}/{}", target.namespace, target.script)
            });
        }
        SecretCommand::Delete {
            target,
            key,
            client: args,
        } => {
            let v = client(&args)?
                .delete(&format!("{}/secrets/{key}", target.path()))
                .await?;
            print(&args, &v, |_| format!("secret {key} deleted"));
        }
        SecretCommand::List {
            target,
            client: args,
        } => {
            let v = client(&args)?
                .get(&format!("{}/secrets", target.path()))
                .await?;
            print(&args, &v, names);
        }
    }
    Ok(())
}

pub(super) async fn hostname(cmd: HostnameCommand) -> anyhow::Result<()> {
    match cmd {
        HostnameCommand::Put {
            ns,
            hostname,
            script,
            client: args,
        } => {
            let path = format!("/v1/namespaces/{}/hostnames/{hostname}", ns.namespace);
            let v = client(&args)?
                .put_json(&path, Some(&json!({"script": script})))
                .await?;
            print(&args, &v, |v| {
                format!(
                    "{} → {}",
                    v["hostname"].as_str().unwrap_or(""),
                    v["script"].as_str().unwrap_or("")
                )
            });
        }
        HostnameCommand::Delete {
            ns,
            hostname,
            client: args,
        } => {
            let v = client(&args)?
                .delete(&format!(
                    "/v1/namespaces/{}/hostnames/{hostname}",
                    ns.namespace
                ))
                .await?;
            print(&args, &v, |_| format!("removed {hostname}"));
        }
        HostnameCommand::List { ns, client: args } => {
            let v = client(&args)?
                .get(&format!("/v1/namespaces/{}/hostnames", ns.namespace))
                .await?;
            print(&args, &v, |v| {
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

/// Every file under `dir`, as (`/relative/path`, absolute path).
fn walk(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in
            std::fs::read_dir(&current).with_context(|| format!("reading {}", current.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.is_file() {
                let rel = path
                    .strip_prefix(dir)?
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push((format!("/{rel}"), path));
            }
        }
    }
    out.sort();
    Ok(out)
}

pub(super) async fn assets(cmd: AssetsCommand) -> anyhow::Result<()> {
    match cmd {
        AssetsCommand::Upload {
            target,
            dir,
            client: args,
        } => {
            if !dir.is_dir() {
                bail!("{} is not a directory", dir.display());
            }
            let mut manifest = serde_json::Map::new();
            let mut contents: BTreeMap<String, Vec<u8>> = BTreeMap::new();
            for (url_path, file) in walk(&dir)? {
                let bytes =
                    std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                let hash = hex::encode(Sha256::digest(&bytes));
                manifest.insert(url_path, json!({"sha256": hash, "size": bytes.len()}));
                contents.insert(hash, bytes);
            }
            let path = format!("{}/assets", target.path());
            let api = client(&args)?;
            let manifest = Value::Object(manifest).to_string();
            // Manifest alone first; upload only what the host lacks.
            let first = api
                .put_form(
                    &path,
                    reqwest::multipart::Form::new().text("manifest", manifest.clone()),
                )
                .await;
            let missing: Option<Vec<String>> = first.as_ref().err().and_then(|e| {
                let failure = e.downcast_ref::<crate::client::ApiFailure>()?;
                let missing = failure.error("missing_assets")?["missing"].as_array()?;
                Some(
                    missing
                        .iter()
                        .filter_map(|h| h.as_str().map(str::to_owned))
                        .collect(),
                )
            });
            let v = match (first, missing) {
                (Ok(v), _) => v,
                (Err(_), Some(missing)) => {
                    let mut form = reqwest::multipart::Form::new().text("manifest", manifest);
                    let needed: Vec<&String> =
                        contents.keys().filter(|h| missing.contains(h)).collect();
                    for hash in needed {
                        form = form.part(
                            hash.clone(),
                            reqwest::multipart::Part::bytes(contents[hash].clone()),
                        );
                    }
                    api.put_form(&path, form).await?
                }
                (Err(e), None) => return Err(e),
            };
            print(&args, &v, |v| {
                let uploaded = v["uploaded"].as_array().map_or(0, |a| a.len());
                format!("{} files published ({uploaded} new)", v["count"])
            });
        }
        AssetsCommand::List {
            target,
            client: args,
        } => {
            let v = client(&args)?
                .get(&format!("{}/assets", target.path()))
                .await?;
            print(&args, &v, pretty_json);
        }
    }
    Ok(())
}

pub(super) async fn kv(cmd: KvCommand) -> anyhow::Result<()> {
    match cmd {
        KvCommand::List {
            target,
            client: args,
        } => {
            let v = client(&args)?.get(&format!("{}/kv", target.path())).await?;
            print(&args, &v, names);
        }
        KvCommand::Get {
            target,
            key,
            client: args,
        } => {
            let bytes = client(&args)?
                .get_raw(&format!("{}/kv/{key}", target.path()))
                .await?;
            use std::io::Write;
            std::io::stdout().write_all(&bytes)?;
        }
        KvCommand::Delete {
            target,
            key,
            client: args,
        } => {
            let v = client(&args)?
                .delete(&format!("{}/kv/{key}", target.path()))
                .await?;
            print(&args, &v, |_| format!("deleted {key}"));
        }
    }
    Ok(())
}

fn names(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["name"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// `berth tail` arguments.
#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// The script.
    #[command(flatten)]
    pub target: ScriptRef,
    /// Admin API connection.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Prints a script's live events until interrupted.
pub(super) async fn tail(args: TailArgs) -> anyhow::Result<()> {
    let path = format!("{}/tail", args.target.path());
    let mut response = client(&args.client)?.stream(&path).await?;
    let mut pending = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line).trim().to_owned();
            if args.client.json {
                println!("{text}");
                continue;
            }
            let Ok(event) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            if let Some(target) = event["tail"].as_str() {
                eprintln!("tailing {target} (Ctrl-C to stop)");
                continue;
            }
            if let Some(missed) = event["lagged"].as_u64() {
                eprintln!("… {missed} events dropped (too slow)");
                continue;
            }
            println!(
                "{} {} {} {} {}ms cpu {:.1}ms{}",
                event["method"].as_str().unwrap_or("?"),
                event["path"].as_str().unwrap_or("?"),
                event["status"]
                    .as_u64()
                    .map_or("-".to_string(), |s| s.to_string()),
                event["outcome"].as_str().unwrap_or("?"),
                event["duration_ms"],
                event["cpu_ms"].as_f64().unwrap_or(0.0),
                event["request_id"]
                    .as_str()
                    .map(|id| format!(" [{id}]"))
                    .unwrap_or_default(),
            );
            for log in event["logs"].as_array().into_iter().flatten() {
                println!(
                    "  {}: {}",
                    log["stream"].as_str().unwrap_or(""),
                    log["line"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}
