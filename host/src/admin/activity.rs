//! What the dashboard charts, behind the token like every API route:
//! `GET /v1/dashboard/history` (the host's last 15 minutes),
//! `GET /v1/dashboard/scripts/{ns}/{name}/history` (one script's, with its
//! last errors), `GET /v1/dashboard/top` (the heaviest scripts of the last
//! minute) and `GET /v1/cluster` (the hosts sharing the store). The shapes
//! are `observe::history::view`'s and `base::cluster`'s; these handlers only
//! read and wrap.

use axum::extract::{Path, State};

use super::error::{ApiResult, ok};
use super::{AdminState, names};
use crate::store::now_ms;

pub(super) async fn history(State(state): State<AdminState>) -> ApiResult {
    let history = state.ops.runtime().metrics().history();
    Ok(ok(history.host_view(now_ms())))
}

pub(super) async fn script_history(
    State(state): State<AdminState>,
    Path((ns, script)): Path<(String, String)>,
) -> ApiResult {
    let (ns, script) = names(&ns, &script)?;
    // A script that does not exist is a 404, not an empty chart.
    state.ops.script(&ns, &script).await?;
    let runtime = state.ops.runtime();
    let labels = runtime.metrics().labels_of(ns.as_str(), script.as_str());
    Ok(ok(runtime.metrics().history().script_view(
        &labels,
        script.as_str(),
        runtime.meters_fuel(),
        now_ms(),
    )))
}

pub(super) async fn top(State(state): State<AdminState>) -> ApiResult {
    Ok(ok(state.ops.runtime().metrics().history().top(now_ms())))
}

pub(super) async fn cluster(State(state): State<AdminState>) -> ApiResult {
    Ok(ok(state.ops.cluster().await?))
}
