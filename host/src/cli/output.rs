//! How client commands print: a one-line summary per item, or the raw
//! JSON result with `--json`; and the parsers of JSON arguments.

use serde_json::Value;

use super::ClientArgs;

/// Shows settings at `path`, or applies `patch` (a JSON merge patch) and
/// shows the result.
pub(super) async fn show_or_patch(
    args: &ClientArgs,
    path: &str,
    patch: Option<Value>,
) -> anyhow::Result<()> {
    let v = match patch {
        Some(patch) => super::client(args)?.patch_json(path, &patch).await?,
        None => super::client(args)?.get(path).await?,
    };
    print(args, &v, pretty_json);
    Ok(())
}

pub(super) fn pretty_json(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

pub(super) fn parse_json_object(s: &str) -> Result<Value, String> {
    match serde_json::from_str::<Value>(s) {
        Ok(v) if v.is_object() => Ok(v),
        Ok(_) => Err("expected a JSON object".into()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

pub(super) fn print(args: &ClientArgs, value: &Value, summary: impl FnOnce(&Value) -> String) {
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    } else {
        println!("{}", summary(value));
    }
}

pub(super) fn script_line(s: &Value) -> String {
    let sha = s["sha256"].as_str().unwrap_or("");
    format!(
        "{}/{}  version {}  {} bytes  sha256 {}  modified {}{}",
        s["namespace"].as_str().unwrap_or("?"),
        s["name"].as_str().unwrap_or("?"),
        s["version"],
        s["size"],
        &sha[..sha.len().min(12)],
        s["modified_on"].as_str().unwrap_or("?"),
        match s["tags"].as_array() {
            Some(tags) if !tags.is_empty() => format!(
                "  tags {}",
                tags.iter()
                    .filter_map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            _ => String::new(),
        }
    )
}

pub(super) fn namespace_line(n: &Value) -> String {
    format!(
        "{}  {} script(s)  created {}",
        n["name"].as_str().unwrap_or("?"),
        n["script_count"],
        n["created_on"].as_str().unwrap_or("?")
    )
}

pub(super) fn lines(value: &Value, line: fn(&Value) -> String) -> String {
    match value.as_array() {
        Some(items) if !items.is_empty() => items.iter().map(line).collect::<Vec<_>>().join("\n"),
        _ => "(none)".into(),
    }
}

pub(super) fn names(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["name"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

pub(super) fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}
