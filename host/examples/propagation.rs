//! `make bench` (cluster part): how long a deploy on one host takes to be
//! served by the others.
//!
//! Against a running cluster (`bench/cluster.sh`), it deploys the `hello`
//! example `DEPLOYS` times through the first host's admin API, each time
//! with a new `GREETING`, and from the moment the upload is acknowledged
//! polls every other host's data plane until it answers with that greeting.
//! Prints p50/p99/max per host and over all, in ms, as a Markdown table.
//!
//! ```sh
//! ADMIN=http://127.0.0.1:8901 DATA=http://127.0.0.1:8802,http://127.0.0.1:8803 \
//!   BERTH_ADMIN_TOKEN=… WASM_DIR=build/wasm DEPLOYS=100 \
//!   cargo run --release -p berth-host --example propagation
//! ```

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let admin = std::env::var("ADMIN").context("ADMIN (admin URL of the deploying host)")?;
    let data: Vec<String> = std::env::var("DATA")
        .context("DATA (comma-separated data-plane URLs of the other hosts)")?
        .split(',')
        .map(str::to_owned)
        .collect();
    let token = std::env::var("BERTH_ADMIN_TOKEN").context("BERTH_ADMIN_TOKEN")?;
    let wasm_dir = std::env::var("WASM_DIR").context("WASM_DIR")?;
    let deploys: usize = std::env::var("DEPLOYS")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(100);
    let component = std::fs::read(format!("{wasm_dir}/hello.wasm"))?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); data.len()];
    for i in 0..deploys {
        let greeting = format!("propagation round {i}");
        let metadata = serde_json::json!({"vars": {"GREETING": greeting}});
        let form = reqwest::multipart::Form::new()
            .part(
                "metadata",
                reqwest::multipart::Part::text(metadata.to_string())
                    .mime_str("application/json")?,
            )
            .part(
                "component",
                reqwest::multipart::Part::bytes(component.clone()).mime_str("application/wasm")?,
            );
        let reply = client
            .put(format!("{admin}/v1/namespaces/default/scripts/propagation"))
            .bearer_auth(&token)
            .multipart(form)
            .send()
            .await?;
        if !reply.status().is_success() {
            bail!("deploy {i}: {} {}", reply.status(), reply.text().await?);
        }
        let acked = Instant::now();
        let waits = data.iter().map(|url| {
            let (client, greeting) = (client.clone(), greeting.clone());
            async move {
                let deadline = acked + Duration::from_secs(30);
                loop {
                    let seen = client
                        .get(format!("{url}/"))
                        .header("host", "propagation.localhost")
                        .send()
                        .await
                        .ok()
                        .filter(|r| r.status() == 200);
                    if let Some(reply) = seen
                        && reply.text().await.unwrap_or_default().contains(&greeting)
                    {
                        return Ok(acked.elapsed().as_secs_f64() * 1000.0);
                    }
                    if Instant::now() > deadline {
                        bail!("{url} did not serve round {i} within 30 s");
                    }
                    tokio::time::sleep(Duration::from_micros(500)).await;
                }
            }
        });
        for (host, ms) in futures::future::join_all(waits)
            .await
            .into_iter()
            .enumerate()
        {
            samples[host].push(ms?);
        }
    }
    println!("| host | deploys | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    let mut all = Vec::new();
    for (url, host) in data.iter().zip(&mut samples) {
        all.extend_from_slice(host);
        print_row(url, host);
    }
    print_row("all", &mut all);
    Ok(())
}

fn print_row(name: &str, samples: &mut [f64]) {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "| {name} | {} | {:.1} | {:.1} | {:.1} |",
        samples.len(),
        at(0.5),
        at(0.99),
        samples.last().copied().unwrap_or_default()
    );
}
