//! `berth assets …`: publish a directory as a script's static assets,
//! sending only the content the host lacks (`…/scripts/{name}/assets`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::output::{pretty_json, print};
use super::{ClientArgs, ScriptRef, client};

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
    },
    /// Show the asset manifest and serving options.
    List {
        /// The script.
        #[command(flatten)]
        target: ScriptRef,
    },
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

pub(super) async fn run(cmd: AssetsCommand, args: &ClientArgs) -> anyhow::Result<()> {
    match cmd {
        AssetsCommand::Upload { target, dir } => {
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
            let api = client(args)?;
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
            print(args, &v, |v| {
                let uploaded = v["uploaded"].as_array().map_or(0, |a| a.len());
                format!("{} files published ({uploaded} new)", v["count"])
            });
        }
        AssetsCommand::List { target } => {
            let v = client(args)?
                .get(&format!("{}/assets", target.path()))
                .await?;
            print(args, &v, pretty_json);
        }
    }
    Ok(())
}
