//! The operator dashboard's files: `GET /dashboard`, `/dashboard/` and
//! `/dashboard/<file>`, served from bytes compiled into the binary (no
//! network, no build step at run time; `dashboard/` beside this file holds
//! them, `dashboard/vendor/README.md` says what is vendored).
//!
//! These routes need **no token**: a browser loading the page cannot send
//! one, and the files are the same public code for everyone. The page asks
//! for the token and sends it as a bearer header on every API call, so no
//! data is ever served here. Every answer carries a strict
//! Content-Security-Policy (scripts, styles and connections to this origin
//! only, no framing, no inline code), `nosniff` and `no-referrer`.
//!
//! This module serves files; it must never read the store or the runtime.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// The policy the dashboard is written (and tested) against.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'self'; \
     form-action 'none'; frame-ancestors 'none'";

/// One embedded file.
struct File {
    path: &'static str,
    mime: &'static str,
    bytes: &'static [u8],
}

macro_rules! files {
    ($($path:literal => $mime:expr),* $(,)?) => {
        &[$(File { path: $path, mime: $mime, bytes: include_bytes!(concat!("dashboard/", $path)) }),*]
    };
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every file the dashboard loads.
const FILES: &[File] = files! {
    "index.html" => HTML,
    "app.css" => CSS,
    "app.js" => JS,
    "api.js" => JS,
    "dom.js" => JS,
    "charts.js" => JS,
    "favicon.svg" => "image/svg+xml",
    "pages/overview.js" => JS,
    "pages/namespaces.js" => JS,
    "pages/scripts.js" => JS,
    "pages/script.js" => JS,
    "pages/tail.js" => JS,
    "pages/top.js" => JS,
    "pages/cluster.js" => JS,
    "vendor/uPlot.iife.min.js" => JS,
    "vendor/uPlot.min.css" => CSS,
};

/// Strong validators of the files, computed once: the bytes only change
/// with the binary, so a reload revalidates with one small request.
fn etags() -> &'static [HeaderValue] {
    static ETAGS: OnceLock<Vec<HeaderValue>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        FILES
            .iter()
            .map(|f| {
                let digest = Sha256::digest(f.bytes);
                let tag = format!("\"{}\"", hex::encode(&digest[..12]));
                HeaderValue::from_str(&tag).unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
            })
            .collect()
    })
}

/// Headers every dashboard answer carries.
fn hardened(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// Answers with the file at `path` (relative to `/dashboard/`).
fn serve(path: &str, request: &HeaderMap) -> Response {
    let Some(index) = FILES.iter().position(|f| f.path == path) else {
        return hardened(
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "no such dashboard file\n",
            )
                .into_response(),
        );
    };
    let (file, etag) = (&FILES[index], &etags()[index]);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|t| t.trim().trim_start_matches("W/") == etag.to_str().unwrap_or(""))
        });
    let cache = [
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    if fresh {
        return hardened((StatusCode::NOT_MODIFIED, cache).into_response());
    }
    hardened(
        (
            cache,
            [(header::CONTENT_TYPE, HeaderValue::from_static(file.mime))],
            file.bytes,
        )
            .into_response(),
    )
}

/// `GET /dashboard` and `GET /dashboard/`: the page.
pub(super) async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /dashboard/{*path}`: a file of the page.
pub(super) async fn file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(path: &str) -> &'static str {
        let file = FILES.iter().find(|f| f.path == path).unwrap();
        std::str::from_utf8(file.bytes).unwrap()
    }

    /// Relative references in a file: quoted names of `.js`, `.css` and
    /// `.svg` files (in a module, only `./` and `../` ones: imports).
    fn references(text: &str, module: bool) -> Vec<String> {
        let mut out = Vec::new();
        for quote in ['"', '\''] {
            for piece in text.split(quote).skip(1).step_by(2) {
                let looks_local =
                    piece.ends_with(".js") || piece.ends_with(".css") || piece.ends_with(".svg");
                let relative = !module || piece.starts_with("./") || piece.starts_with("../");
                if looks_local && relative && !piece.contains("://") && !piece.contains(' ') {
                    out.push(piece.to_owned());
                }
            }
        }
        out
    }

    #[test]
    fn every_file_the_page_loads_is_embedded_with_its_type() {
        for file in FILES {
            let dir = file.path.rsplit_once('/').map_or("", |(d, _)| d);
            let module = file.mime == JS && !file.path.starts_with("vendor/");
            if module || file.path == "index.html" {
                for reference in references(body_of(file.path), module) {
                    // index.html's references are relative to /dashboard/
                    // (its <base>); modules' to their own folder.
                    let mut parts: Vec<&str> = if file.path == "index.html" || dir.is_empty() {
                        vec![]
                    } else {
                        dir.split('/').collect()
                    };
                    for segment in reference.split('/') {
                        match segment {
                            "." => {}
                            ".." => {
                                parts.pop();
                            }
                            s => parts.push(s),
                        }
                    }
                    let wanted = parts.join("/");
                    let found = FILES.iter().find(|f| f.path == wanted);
                    assert!(
                        found.is_some(),
                        "{} loads {reference} ({wanted}), which is not embedded",
                        file.path
                    );
                }
            }
            let expected = match file.path.rsplit('.').next() {
                Some("js") => JS,
                Some("css") => CSS,
                Some("html") => HTML,
                Some("svg") => "image/svg+xml",
                other => panic!("unexpected file type {other:?}"),
            };
            assert_eq!(file.mime, expected, "{}", file.path);
        }
    }

    #[test]
    fn files_come_with_the_policy_and_revalidate() {
        let none = HeaderMap::new();
        let page = serve("index.html", &none);
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(
            page.headers()[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(page.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let etag = page.headers()[header::ETAG].clone();
        let mut again = HeaderMap::new();
        again.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(
            serve("index.html", &again).status(),
            StatusCode::NOT_MODIFIED
        );
        let missing = serve("../Cargo.toml", &none);
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert!(
            missing
                .headers()
                .contains_key(header::CONTENT_SECURITY_POLICY)
        );
    }
}
