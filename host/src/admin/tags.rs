//! Tags, filters, bulk delete and pagination of script lists.
//!
//! `GET /v1/namespaces/{ns}/scripts?tags=plan-pro:yes,beta:no&search=shop&limit=50&cursor=…`
//! lists scripts having every `:yes` tag and none of the `:no` tags (a bare
//! `tag` means `tag:yes`) whose name contains `search`, by name, a page at a
//! time: `cursor` is the last name of the previous page (opaque to
//! clients), and `result_info.cursor` is `null` on the last page.
//! `DELETE …/scripts?tags=…` deletes every matching script (a filter is
//! required) and returns their names. `PUT …/scripts/{name}/tags` replaces
//! the tags; `PUT|DELETE …/scripts/{name}/tags/{tag}` adds or removes one.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};

use super::error::{ApiResult, ok, ok_page};
use super::scripts::ScriptInfo;
use super::{AdminState, json_body, names, namespace};
use crate::base::listing::ListQuery;

pub(super) async fn list(
    State(state): State<AdminState>,
    Path(ns): Path<String>,
    Query(query): Query<ListQuery>,
) -> ApiResult {
    let (page, cursor) = state.ops.list_scripts_page(&namespace(&ns)?, query).await?;
    Ok(ok_page(
        page.into_iter().map(ScriptInfo::from).collect(),
        cursor,
    ))
}

pub(super) async fn bulk_delete(
    State(state): State<AdminState>,
    Path(ns): Path<String>,
    Query(query): Query<ListQuery>,
) -> ApiResult {
    let deleted = state.ops.delete_tagged(&namespace(&ns)?, &query).await?;
    Ok(ok(serde_json::json!({"deleted": deleted})))
}

pub(super) async fn put_all(
    State(state): State<AdminState>,
    Path((ns, script)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let (ns, script) = names(&ns, &script)?;
    let tags: Vec<String> = json_body(&body, "a JSON array of tags")?;
    Ok(ok(state.ops.set_tags(&ns, &script, tags).await?))
}

pub(super) async fn put_one(
    State(state): State<AdminState>,
    Path((ns, script, tag)): Path<(String, String, String)>,
) -> ApiResult {
    let (ns, script) = names(&ns, &script)?;
    Ok(ok(state.ops.add_tag(&ns, &script, tag).await?))
}

pub(super) async fn delete_one(
    State(state): State<AdminState>,
    Path((ns, script, tag)): Path<(String, String, String)>,
) -> ApiResult {
    let (ns, script) = names(&ns, &script)?;
    Ok(ok(state.ops.remove_tag(&ns, &script, tag).await?))
}
