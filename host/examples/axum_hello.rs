//! The ceiling for `make bench` case 4: a plain axum server that answers
//! what `examples/hello` answers, with no WebAssembly at all.
//!
//! `cargo run --release --example axum_hello -- 127.0.0.1:0` prints
//! `listening on http://ADDR` and serves until killed.

use axum::Router;
use axum::http::Uri;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let app = Router::new().fallback(|uri: Uri| async move {
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        (
            [("content-type", "text/plain; charset=utf-8")],
            format!("Hello from Berth! You requested {path}\n"),
        )
    });
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
