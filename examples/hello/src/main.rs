//! `hello`: the smallest Berth user worker.
//!
//! A `wasi:http/proxy` component written with `wstd`. It greets the caller
//! with the path it asked for; the `GREETING` variable (set at deploy time
//! with `berth deploy --var GREETING=…`) replaces the default greeting, which
//! shows that a script's vars reach the guest as its environment.

use wstd::http::{Body, Request, Response};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, wstd::http::Error> {
    let greeting = std::env::var("GREETING").unwrap_or_else(|_| "Hello from Berth!".to_string());
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let text = format!("{greeting} You requested {path}\n");
    Ok(Response::builder()
        .header("content-type", "text/plain; charset=utf-8")
        .body(Body::from(text))?)
}
