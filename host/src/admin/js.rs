//! `/v1/js`: whether this host builds plain JavaScript (and with what), and
//! `POST /v1/js/build`, a build that stores nothing — to check a script, or
//! to export the self-contained component componentize-js would have made
//! (`?output=component`).

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;

use super::AdminState;
use super::error::{ApiError, ApiResult, ok};
use super::scripts::{Code, UploadQuery, build_info, bundle, read_upload};
use crate::js::JsError;
use crate::ops::OpsError;

/// `GET /v1/js`.
pub(super) async fn status(State(state): State<AdminState>) -> ApiResult {
    let (status, error) = match state.ops.js().map(|js| js.ready()) {
        None => ("unavailable", Some("this host has no JS engine".to_owned())),
        Some(None) => ("preparing", None),
        Some(Some(Ok(()))) => ("ready", None),
        Some(Some(Err(why))) => ("unavailable", Some(why)),
    };
    Ok(ok(serde_json::json!({
        "state": status,
        "error": error,
        "componentize_js": crate::js::COMPONENTIZE_JS,
        "config": state.ops.js().map(|js| js.config()),
    })))
}

/// `POST /v1/js/build`: the body as for an upload (JavaScript only).
pub(super) async fn build(
    State(state): State<AdminState>,
    Query(query): Query<UploadQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    let standalone = match query.output.as_deref() {
        None | Some("report") => false,
        Some("component") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "output={other:?}: expected \"report\" or \"component\""
            )));
        }
    };
    let (code, metadata) = read_upload(
        request,
        state.max_upload_bytes,
        UploadQuery {
            main_module: query.main_module,
            output: None,
        },
    )
    .await?;
    let Code::Js(modules) = code else {
        return Err(ApiError::BadRequest(
            "POST /v1/js/build takes JavaScript modules, not a component".into(),
        ));
    };
    let js = state.ops.js().ok_or_else(|| {
        ApiError::Ops(OpsError::Js(JsError::Unavailable(
            "this host has no JS engine".into(),
        )))
    })?;
    let bundle = bundle(modules, &metadata);
    let built = if standalone {
        js.build_standalone(bundle).await
    } else {
        js.build(bundle).await
    }
    .map_err(OpsError::Js)?;
    if standalone {
        return Ok((
            [(CONTENT_TYPE, "application/wasm")],
            Body::from(built.component),
        )
            .into_response());
    }
    Ok(ok(build_info(&built)).into_response())
}
