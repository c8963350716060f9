//! Operations endpoints: `GET /metrics` (Prometheus, token required),
//! `GET /healthz` and `GET /readyz` (no token: they reveal nothing), and
//! the live tail `GET /v1/namespaces/{ns}/scripts/{name}/tail`.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use tokio::sync::broadcast::error::RecvError;

use super::error::ApiError;
use super::{AdminState, names};

/// Prometheus text exposition (OpenMetrics).
pub(super) async fn metrics(State(state): State<AdminState>) -> Response {
    let runtime = state.ops.runtime();
    let stats = runtime.stats();
    let pool = &stats.pool;
    runtime.metrics().set_gauges(
        &[
            ("component_instances", pool.component_instances as i64),
            ("core_instances", pool.core_instances as i64),
            ("memories", pool.memories as i64),
            ("tables", pool.tables as i64),
            ("stacks", pool.stacks as i64),
        ],
        runtime.queued() as i64,
    );
    (
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        runtime.metrics().encode(),
    )
        .into_response()
}

/// Liveness: the process answers.
pub(super) async fn healthz() -> Response {
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({"status": "ok"})),
    )
        .into_response()
}

/// Readiness: the store answers and the engine is up.
pub(super) async fn readyz(State(state): State<AdminState>) -> Response {
    let ready = state.ops.store_ready().await;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(serde_json::json!({"ready": ready}))).into_response()
}

/// Newline-delimited JSON events of one script until the client leaves.
pub(super) async fn tail(
    State(state): State<AdminState>,
    Path((ns, script)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (ns, script) = names(&ns, &script)?;
    state.ops.script(&ns, &script).await?;
    let receiver = state.ops.runtime().tail().subscribe(&ns, &script);
    let hello =
        serde_json::json!({"tail": format!("{ns}/{script}"), "since_ms": crate::store::now_ms()});
    let first =
        futures::stream::once(
            async move { Ok::<_, std::io::Error>(Bytes::from(format!("{hello}\n"))) },
        );
    let events = futures::stream::unfold(receiver, |mut receiver| async move {
        let mut line = match receiver.recv().await {
            Ok(event) => event.to_vec(),
            Err(RecvError::Lagged(missed)) => serde_json::json!({"lagged": missed})
                .to_string()
                .into_bytes(),
            Err(RecvError::Closed) => return None,
        };
        line.push(b'\n');
        Some((Ok::<_, std::io::Error>(Bytes::from(line)), receiver))
    });
    let body = Body::from_stream(futures::StreamExt::chain(first, events));
    Ok(([(http::header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}
