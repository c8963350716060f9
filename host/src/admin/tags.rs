//! Tags, filters, bulk delete and pagination of script lists.
//!
//! `GET /v1/namespaces/{ns}/scripts?tags=plan-pro:yes,beta:no&limit=50&cursor=…`
//! lists scripts having every `:yes` tag and none of the `:no` tags (a bare
//! `tag` means `tag:yes`), by name, a page at a time: `cursor` is the last
//! name of the previous page (opaque to clients), and `result_info.cursor`
//! is `null` on the last page. `DELETE …/scripts?tags=…` deletes every
//! matching script (a filter is required) and returns their names.
//! `PUT …/scripts/{name}/tags` replaces the tags; `PUT|DELETE
//! …/scripts/{name}/tags/{tag}` adds or removes one.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use super::error::{ApiError, ApiResult, ok, ok_page};
use super::scripts::{ScriptInfo, names_and_not_found};
use super::{AdminState, blocking};
use crate::base::Invalid;
use crate::base::names::Name;
use crate::deploy::{MAX_TAGS, validate_tag};
use crate::store::{ScriptRecord, StoreError};

/// Largest page; also the default.
pub const MAX_PAGE: usize = 1000;

/// Query of list and bulk-delete requests.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `a:yes,b:no` filter.
    #[serde(default)]
    pub tags: Option<String>,
    /// Page size (1–1000).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Continue after this script name.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// A parsed `tags=` filter.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TagFilter {
    include: Vec<String>,
    exclude: Vec<String>,
}

impl TagFilter {
    /// Parses `a:yes,b:no,c` (bare tags mean `:yes`).
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let mut filter = TagFilter::default();
        for item in text.split(',').filter(|s| !s.is_empty()) {
            let (tag, mode) = match item.rsplit_once(':') {
                Some((tag, mode)) => (tag, mode),
                None => (item, "yes"),
            };
            validate_tag(tag)?;
            match mode {
                "yes" => filter.include.push(tag.to_owned()),
                "no" => filter.exclude.push(tag.to_owned()),
                other => {
                    return Err(
                        format!("tag filter {item:?}: expected :yes or :no, got :{other}").into(),
                    );
                }
            }
        }
        Ok(filter)
    }

    /// Whether the filter selects nothing in particular.
    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// Whether `tags` pass the filter.
    pub fn matches(&self, tags: &[String]) -> bool {
        self.include.iter().all(|t| tags.contains(t))
            && !self.exclude.iter().any(|t| tags.contains(t))
    }
}

fn bad(message: impl ToString) -> ApiError {
    ApiError::BadRequest(message.to_string())
}

/// Filters and pages `scripts` (sorted by name).
pub fn page(
    scripts: Vec<ScriptRecord>,
    query: &ListQuery,
) -> Result<(Vec<ScriptRecord>, Option<String>), ApiError> {
    let filter = TagFilter::parse(query.tags.as_deref().unwrap_or("")).map_err(bad)?;
    let limit = query.limit.unwrap_or(MAX_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(bad(format!(
            "limit must be between 1 and {MAX_PAGE}, got {limit}"
        )));
    }
    let mut selected = scripts
        .into_iter()
        .filter(|s| query.cursor.as_deref().is_none_or(|c| s.name.as_str() > c))
        .filter(|s| filter.matches(&s.tags));
    let page: Vec<ScriptRecord> = selected.by_ref().take(limit).collect();
    let more = selected.next().is_some();
    let cursor = if more {
        page.last().map(|s| s.name.to_string())
    } else {
        None
    };
    Ok((page, cursor))
}

pub(super) async fn list(
    State(state): State<AdminState>,
    Path(ns): Path<String>,
    Query(query): Query<ListQuery>,
) -> ApiResult {
    let ns = Name::new(&ns).map_err(ApiError::name("namespace name"))?;
    let scripts = blocking(move || {
        if state.store().get_namespace(&ns)?.is_none() {
            return Err(StoreError::NamespaceNotFound(ns).into());
        }
        Ok(state.store().list_scripts(&ns)?)
    })
    .await?;
    let (page, cursor) = page(scripts, &query)?;
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
    let ns = Name::new(&ns).map_err(ApiError::name("namespace name"))?;
    let filter = TagFilter::parse(query.tags.as_deref().unwrap_or("")).map_err(bad)?;
    if filter.is_empty() {
        return Err(bad(
            "bulk delete needs a tags filter, e.g. ?tags=plan-free:yes",
        ));
    }
    let runtime = state.runtime.clone();
    let namespace = ns.clone();
    let deleted = blocking(move || {
        let store = state.store();
        if store.get_namespace(&ns)?.is_none() {
            return Err(StoreError::NamespaceNotFound(ns).into());
        }
        let mut deleted = Vec::new();
        for script in store
            .list_scripts(&ns)?
            .into_iter()
            .filter(|s| filter.matches(&s.tags))
        {
            if store.delete_script(&ns, &script.name)? {
                deleted.push(script.name);
            }
        }
        Ok(deleted)
    })
    .await?;
    for name in &deleted {
        runtime.evict(&namespace, name);
    }
    tracing::info!(namespace = %namespace, count = deleted.len(), "bulk delete by tags");
    Ok(ok(serde_json::json!({"deleted": deleted})))
}

async fn change_tags(
    state: AdminState,
    ns: String,
    script: String,
    change: impl FnMut(&mut Vec<String>) -> Result<(), String> + Send + 'static,
) -> ApiResult {
    let (ns, script, not_found) = names_and_not_found(&ns, &script)?;
    let mut change = change;
    let record = blocking(move || {
        let outcome = state.store().update_script(&ns, &script, &mut |record| {
            change(&mut record.tags)?;
            if record.tags.len() > MAX_TAGS {
                return Err(Invalid(format!(
                    "at most {MAX_TAGS} tags are allowed, got {}",
                    record.tags.len()
                )));
            }
            Ok(())
        })?;
        match outcome {
            None => Err(not_found),
            Some(Err(message)) => Err(bad(message.0)),
            Some(Ok(record)) => Ok(record),
        }
    })
    .await?;
    Ok(ok(record.tags))
}

pub(super) async fn put_all(
    State(state): State<AdminState>,
    Path((ns, script)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let tags: Vec<String> = serde_json::from_slice(&body)
        .map_err(|e| bad(format!("body must be a JSON array of tags: {e}")))?;
    for tag in &tags {
        validate_tag(tag).map_err(bad)?;
    }
    change_tags(state, ns, script, move |current| {
        let mut unique = Vec::new();
        for tag in &tags {
            if !unique.contains(tag) {
                unique.push(tag.clone());
            }
        }
        *current = unique;
        Ok(())
    })
    .await
}

pub(super) async fn put_one(
    State(state): State<AdminState>,
    Path((ns, script, tag)): Path<(String, String, String)>,
) -> ApiResult {
    validate_tag(&tag).map_err(bad)?;
    change_tags(state, ns, script, move |current| {
        if !current.contains(&tag) {
            current.push(tag.clone());
        }
        Ok(())
    })
    .await
}

pub(super) async fn delete_one(
    State(state): State<AdminState>,
    Path((ns, script, tag)): Path<(String, String, String)>,
) -> ApiResult {
    change_tags(state, ns, script, move |current| {
        current.retain(|t| *t != tag);
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_match() {
        let f = TagFilter::parse("pro:yes,beta:no,eu").unwrap();
        let tags = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(f.matches(&tags(&["pro", "eu"])));
        assert!(!f.matches(&tags(&["pro", "eu", "beta"])));
        assert!(!f.matches(&tags(&["pro"])));
        assert!(TagFilter::parse("").unwrap().is_empty());
        assert!(TagFilter::parse("a:maybe").unwrap_err().contains(":maybe"));
        assert!(TagFilter::parse("a&b:yes").is_err());
    }
}
