//! `berth tail`: a script's live events (`…/scripts/{name}/tail`).

use serde_json::Value;

use super::{ClientArgs, ScriptRef, client};

/// `berth tail` arguments.
#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// The script.
    #[command(flatten)]
    pub target: ScriptRef,
}

/// Prints a script's live events until interrupted.
pub(super) async fn run(args: TailArgs, client_args: &ClientArgs) -> anyhow::Result<()> {
    let path = format!("{}/tail", args.target.path());
    let mut response = client(client_args)?.stream(&path).await?;
    let mut pending = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line).trim().to_owned();
            if client_args.json {
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
