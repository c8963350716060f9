//! Serving a script's static assets, before (or instead of) running it.
//!
//! For GET and HEAD, the request path is matched against the script's
//! asset manifest ([`find`]): exactly, or — with `html_handling =
//! "auto-trailing-slash"` (the default) — as `path.html`, `path/index.html`
//! or, for `dir/`, `dir/index.html`. When nothing matches,
//! `not_found_handling` decides: `none` runs the worker, `404-page` serves
//! the nearest `404.html` with status 404, `single-page-application` serves
//! `/index.html`. With `run_worker_first`, the worker runs first and assets
//! only answer what it answers with 404. Responses carry `content-type`
//! (by extension), `etag` (the content hash) and honour `If-None-Match`
//! with 304.
//!
//! Pure matching and response building, plus [`serve`], which reads the
//! content from the store's [`Blobs`]. It sits beside the store, below the
//! runtime: the runtime's `handle` asks it before running a worker.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::base::Invalid;
use crate::base::error::WorkerError;
use crate::base::records::{HtmlHandling, NotFoundHandling};
use crate::store::{AssetConfig, AssetEntry, Blobs};

/// What to serve for a request: the manifest path, its entry and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The manifest path that matched.
    pub path: String,
    /// Its content.
    pub entry: AssetEntry,
    /// 200, or 404 for a `404.html` fallback.
    pub status: StatusCode,
}

/// Percent-decodes a request path, byte by byte (never slicing the text,
/// so any byte sequence is safe). A `%` must start a two-digit hex escape
/// and the result must be UTF-8; anything else is refused, naming why.
fn decode_path(path: &str) -> Result<String, Invalid> {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        match (
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
            _ => {
                return Err(Invalid(format!(
                    "the path has a '%' at byte {i} that does not start a %XX escape"
                )));
            }
        }
        i += 3;
    }
    String::from_utf8(out).map_err(|_| Invalid("the decoded path is not UTF-8".into()))
}

/// What answers a request to a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The worker (no asset matches, or the method is not GET/HEAD).
    Worker,
    /// This asset, without running the worker.
    Asset(Hit),
    /// The worker first (`run_worker_first`); this asset if it answers 404.
    WorkerThenAsset(Hit),
}

/// Decides what answers `method path` of a script with `assets`: the one
/// place that reads `run_worker_first`. A path that cannot be decoded is
/// refused.
pub fn route(
    assets: &BTreeMap<String, AssetEntry>,
    config: &AssetConfig,
    method: &Method,
    path: &str,
) -> Result<Route, Invalid> {
    if assets.is_empty() || !(method == Method::GET || method == Method::HEAD) {
        return Ok(Route::Worker);
    }
    Ok(match find(assets, config, path)? {
        None => Route::Worker,
        Some(hit) if config.run_worker_first => Route::WorkerThenAsset(hit),
        Some(hit) => Route::Asset(hit),
    })
}

/// The asset for `path` (no query string), if any, following `config`;
/// a path that cannot be decoded is refused.
pub fn find(
    assets: &BTreeMap<String, AssetEntry>,
    config: &AssetConfig,
    path: &str,
) -> Result<Option<Hit>, Invalid> {
    if assets.is_empty() {
        return Ok(None);
    }
    let path = decode_path(path)?;
    Ok(find_decoded(assets, config, path))
}

fn find_decoded(
    assets: &BTreeMap<String, AssetEntry>,
    config: &AssetConfig,
    path: String,
) -> Option<Hit> {
    let ok = |p: &str| {
        assets.get(p).map(|entry| Hit {
            path: p.to_owned(),
            entry: entry.clone(),
            status: StatusCode::OK,
        })
    };
    let candidates: Vec<String> = match config.html_handling {
        HtmlHandling::None => vec![path.clone()],
        HtmlHandling::AutoTrailingSlash if path.ends_with('/') => {
            vec![format!("{path}index.html")]
        }
        HtmlHandling::AutoTrailingSlash => vec![
            path.clone(),
            format!("{path}.html"),
            format!("{path}/index.html"),
        ],
    };
    if let Some(hit) = candidates.iter().find_map(|p| ok(p)) {
        return Some(hit);
    }
    match config.not_found_handling {
        NotFoundHandling::SinglePageApplication => ok("/index.html"),
        NotFoundHandling::Page404 => nearest_404(assets, &path),
        NotFoundHandling::None => None,
    }
}

/// The page a `404-page` fallback looks for in each directory.
const PAGE_404: &str = "/404.html";

/// The `404.html` of the deepest directory of `path` that has one.
fn nearest_404(assets: &BTreeMap<String, AssetEntry>, path: &str) -> Option<Hit> {
    let mut key = String::with_capacity(MAX_PATH_BYTES);
    for dir in dirs_404(path) {
        key.clear();
        key.push_str(dir);
        key.push_str(PAGE_404);
        if let Some(entry) = assets.get(&key) {
            return Some(Hit {
                path: key,
                entry: entry.clone(),
                status: StatusCode::NOT_FOUND,
            });
        }
    }
    None
}

/// The directories of `path` whose `404.html` a manifest could name,
/// deepest first: none with an empty segment (`//`, which no manifest path
/// has), none whose page would be longer than [`MAX_PATH_BYTES`]. So the
/// walk is bounded whatever the client sends: `GET /` followed by 65,000
/// slashes tries one directory, not 65,000 ever-longer copies.
fn dirs_404(path: &str) -> impl Iterator<Item = &str> {
    let nameable = &path[..path.find("//").map_or(path.len(), |i| i + 1)];
    let deepest = nameable.rfind('/').map(|end| &nameable[..end]);
    std::iter::successors(deepest, |dir| dir.rfind('/').map(|end| &dir[..end]))
        .filter(|dir| dir.len() + PAGE_404.len() <= MAX_PATH_BYTES)
}

/// The content type for a path, by extension.
pub fn content_type(path: &str) -> &'static str {
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

/// Asset contents shared by every request that serves them: one `Bytes`
/// per hash (responses clone the reference, never the content), least
/// recently used first out once `budget` bytes are held. Files over an
/// eighth of the budget are not kept (they would evict everything else),
/// but while any response still sends one, every other request for it
/// shares that one copy: a file is in memory once however many slow
/// clients are reading it, never once per connection.
pub struct AssetCache {
    budget: usize,
    inner: std::sync::Mutex<(lru::LruCache<String, Bytes>, usize)>,
    /// Large files some response is sending right now.
    sending: std::sync::Mutex<std::collections::HashMap<String, std::sync::Weak<Large>>>,
}

/// The bytes of a large file, owned by the responses sending it.
struct Large(Vec<u8>);

impl AsRef<[u8]> for Large {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl AssetCache {
    /// A cache holding at most `budget` bytes of content.
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            inner: std::sync::Mutex::new((lru::LruCache::unbounded(), 0)),
            sending: Default::default(),
        }
    }

    /// The content of `sha256`, from the cache or from `blobs`. A miss is
    /// read on a blocking thread: a store may have to fetch it over the
    /// network (the NATS backend), which must not stall the request's
    /// worker thread.
    pub async fn get(
        &self,
        blobs: Arc<dyn Blobs>,
        sha256: &str,
    ) -> Result<Option<Bytes>, WorkerError> {
        if let Some(content) = self.lock().0.get(sha256) {
            return Ok(Some(content.clone()));
        }
        if let Some(large) = self.sending_lock().get(sha256).and_then(|w| w.upgrade()) {
            return Ok(Some(Bytes::from_owner(LargeRef(large))));
        }
        let sha = sha256.to_owned();
        let read = crate::store::blocking(move || blobs.blob(&sha)).await?;
        let Some(content) = read else {
            return Ok(None);
        };
        if content.len() > self.budget / 8 {
            let large = Arc::new(Large(content));
            let mut sending = self.sending_lock();
            sending.retain(|_, weak| weak.strong_count() > 0);
            sending.insert(sha256.to_owned(), Arc::downgrade(&large));
            return Ok(Some(Bytes::from_owner(LargeRef(large))));
        }
        let content = Bytes::from(content);
        {
            let mut guard = self.lock();
            let (cache, held) = &mut *guard;
            if let Some(old) = cache.put(sha256.to_owned(), content.clone()) {
                *held -= old.len();
            }
            *held += content.len();
            while *held > self.budget {
                match cache.pop_lru() {
                    Some((_, evicted)) => *held -= evicted.len(),
                    None => break,
                }
            }
        }
        Ok(Some(content))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (lru::LruCache<String, Bytes>, usize)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sending_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, std::sync::Weak<Large>>> {
        self.sending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A response's reference to a large file being sent.
struct LargeRef(Arc<Large>);

impl AsRef<[u8]> for LargeRef {
    fn as_ref(&self) -> &[u8] {
        &self.0.0
    }
}

/// Serves `hit` with its content from `cache` (or `blobs`).
pub async fn serve(
    cache: &AssetCache,
    blobs: Arc<dyn Blobs>,
    hit: &Hit,
    method: &Method,
    if_none_match: Option<&HeaderValue>,
) -> Result<Response<HyperOutgoingBody>, WorkerError> {
    let content = cache
        .get(blobs, &hit.entry.sha256)
        .await?
        .ok_or_else(|| WorkerError::Internal(format!("asset {} content is missing", hit.path)))?;
    Ok(respond(hit, method, if_none_match, content))
}

/// Builds the response for `hit` given the request's method and
/// `If-None-Match`; `content` is the file's bytes.
pub fn respond(
    hit: &Hit,
    method: &Method,
    if_none_match: Option<&HeaderValue>,
    content: Bytes,
) -> Response<HyperOutgoingBody> {
    let etag = format!("\"{}\"", hit.entry.sha256);
    let matches = if_none_match
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim() == "*"
                || v.split(',')
                    .any(|t| t.trim().trim_start_matches("W/") == etag)
        });
    let empty = || {
        Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync()
    };
    let mut builder = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::CONTENT_TYPE, content_type(&hit.path));
    if matches && hit.status == StatusCode::OK {
        builder = builder.status(StatusCode::NOT_MODIFIED);
        return builder
            .body(empty())
            .unwrap_or_else(|_| Response::new(empty()));
    }
    builder = builder
        .status(hit.status)
        .header(header::CONTENT_LENGTH, content.len());
    let body = if method == Method::HEAD {
        empty()
    } else {
        Full::new(content)
            .map_err(|never| match never {})
            .boxed_unsync()
    };
    builder
        .body(body)
        .unwrap_or_else(|_| Response::new(empty()))
}

/// Checks an asset path from a manifest.
pub fn validate_path(path: &str) -> Result<(), Invalid> {
    let ok = path.starts_with('/')
        && path.len() <= MAX_PATH_BYTES
        && !path.ends_with('/')
        && !path.split('/').any(|seg| seg == ".." || seg == ".")
        && !path.contains("//")
        && !path.chars().any(|c| c.is_control() || c == '?' || c == '#');
    if ok {
        Ok(())
    } else {
        Err(Invalid(format!(
            "asset path {path:?} is invalid: it must start with '/', name a file (no trailing '/'), have no '.', '..' or empty segments, no '?' '#' or control characters, and be at most 1024 bytes"
        )))
    }
}

/// Longest asset path, bytes.
pub const MAX_PATH_BYTES: usize = 1024;
/// Most files per script.
pub const MAX_ASSET_FILES: usize = 20_000;
/// Largest single file, bytes.
pub const MAX_ASSET_BYTES: u64 = 25 << 20;

/// Checks an uploaded manifest as a whole: the file count, every path, every
/// hash (64 lowercase hex digits) and every declared size.
pub fn check_manifest(manifest: &BTreeMap<String, AssetEntry>) -> Result<(), Invalid> {
    if manifest.len() > MAX_ASSET_FILES {
        return Err(Invalid(format!(
            "{} files; the limit is {MAX_ASSET_FILES}",
            manifest.len()
        )));
    }
    for (path, entry) in manifest {
        validate_path(path)?;
        let hex = entry
            .sha256
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        if entry.sha256.len() != 64 || !hex {
            return Err(Invalid(format!(
                "{path}: sha256 must be 64 lowercase hex digits"
            )));
        }
        if entry.size > MAX_ASSET_BYTES {
            return Err(Invalid(format!(
                "{path} is {} bytes; the limit is {MAX_ASSET_BYTES}",
                entry.size
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(paths: &[&str]) -> BTreeMap<String, AssetEntry> {
        paths
            .iter()
            .map(|p| {
                (
                    p.to_string(),
                    AssetEntry {
                        sha256: format!("h{p}"),
                        size: 1,
                    },
                )
            })
            .collect()
    }

    fn config(html: &str, not_found: &str) -> AssetConfig {
        serde_json::from_value(serde_json::json!({
            "html_handling": html,
            "not_found_handling": not_found,
        }))
        .expect("a valid asset config")
    }

    /// The issue-25 request: a path of 65,000 slashes makes the fallback
    /// try one directory; a deep path at most one per segment that fits.
    #[test]
    fn the_404_walk_is_bounded_by_what_a_manifest_can_name() {
        let slashes = format!("/{}", "/".repeat(65_000));
        assert_eq!(dirs_404(&slashes).collect::<Vec<_>>(), vec![""]);
        let deep = "/a".repeat(40_000);
        let dirs: Vec<&str> = dirs_404(&deep).collect();
        assert!(dirs.len() <= MAX_PATH_BYTES / 2, "{}", dirs.len());
        assert!(
            dirs.iter()
                .all(|d| d.len() + PAGE_404.len() <= MAX_PATH_BYTES)
        );
        assert_eq!(dirs.last(), Some(&""), "the root is always tried");
        assert_eq!(
            dirs_404("/docs/guide/page").collect::<Vec<_>>(),
            vec!["/docs/guide", "/docs", ""]
        );
        let m = manifest(&["/404.html", "/docs/404.html"]);
        let hit = find(&m, &config("auto-trailing-slash", "404-page"), &slashes)
            .unwrap()
            .unwrap();
        assert_eq!(
            (hit.path.as_str(), hit.status),
            ("/404.html", StatusCode::NOT_FOUND)
        );
    }

    #[test]
    fn html_handling_finds_pages_with_and_without_extensions() {
        let m = manifest(&[
            "/index.html",
            "/about.html",
            "/docs/index.html",
            "/app.js",
            "/a b.txt",
        ]);
        let auto = config("auto-trailing-slash", "none");
        let path = |p: &str| find(&m, &auto, p).unwrap().map(|h| h.path);
        assert_eq!(path("/").as_deref(), Some("/index.html"));
        assert_eq!(path("/about").as_deref(), Some("/about.html"));
        assert_eq!(path("/docs").as_deref(), Some("/docs/index.html"));
        assert_eq!(path("/docs/").as_deref(), Some("/docs/index.html"));
        assert_eq!(path("/a%20b.txt").as_deref(), Some("/a b.txt"));
        assert_eq!(path("/missing"), None);
        let exact = config("none", "none");
        assert_eq!(find(&m, &exact, "/about").unwrap(), None);
        assert!(find(&m, &exact, "/app.js").unwrap().is_some());
    }

    #[tokio::test]
    async fn cached_assets_are_shared_not_copied_and_bounded() {
        struct One(Vec<u8>);
        impl Blobs for One {
            fn script_content(
                &self,
                _: &crate::base::names::Name,
                _: &crate::base::names::Name,
            ) -> crate::store::StoreResult<Option<Vec<u8>>> {
                Ok(None)
            }
            fn put_assets(
                &self,
                _: &crate::base::names::Name,
                _: &crate::base::names::Name,
                _: BTreeMap<String, AssetEntry>,
                _: BTreeMap<String, Vec<u8>>,
            ) -> crate::store::StoreResult<Option<crate::store::ScriptRecord>> {
                Ok(None)
            }
            fn blob(&self, sha256: &str) -> crate::store::StoreResult<Option<Vec<u8>>> {
                Ok((sha256 != "missing").then(|| self.0.clone()))
            }
            fn get_artifact(&self, _: &str, _: &str) -> crate::store::StoreResult<Option<Vec<u8>>> {
                Ok(None)
            }
            fn put_artifact(&self, _: &str, _: &str, _: &[u8]) -> crate::store::StoreResult<()> {
                Ok(())
            }
        }
        let blobs: Arc<dyn Blobs> = Arc::new(One(vec![b'x'; 100]));
        let cache = AssetCache::new(1000);
        let get = |sha: &str| {
            let (blobs, sha) = (blobs.clone(), sha.to_owned());
            let cache = &cache;
            async move { cache.get(blobs, &sha).await.unwrap() }
        };
        let a = get("a").await.unwrap();
        let again = get("a").await.unwrap();
        assert_eq!(a.as_ptr(), again.as_ptr(), "one copy, shared");
        assert!(get("missing").await.is_none());
        // Past the budget the least recently used content goes.
        for i in 0..20 {
            get(&format!("f{i}")).await;
        }
        let held = cache.inner.lock().unwrap().1;
        assert!(held <= 1000, "{held}");
        let fresh = get("a").await.unwrap();
        assert_ne!(fresh.as_ptr(), a.as_ptr(), "evicted and read again");

        // A file over an eighth of the budget is not kept, but every
        // response sending it shares one copy (slow clients do not each
        // pin their own), and it is gone with the last of them.
        let blobs: Arc<dyn Blobs> = Arc::new(One(vec![b'L'; 500]));
        let first = cache.get(blobs.clone(), "large").await.unwrap().unwrap();
        let second = cache.get(blobs.clone(), "large").await.unwrap().unwrap();
        assert_eq!(first.as_ptr(), second.as_ptr(), "one copy while sent");
        assert_eq!(
            cache.inner.lock().unwrap().0.get("large"),
            None,
            "not cached"
        );
        let address = first.as_ptr();
        drop((first, second));
        assert!(
            cache.sending.lock().unwrap()["large"].upgrade().is_none(),
            "freed with its last response"
        );
        let later = cache.get(blobs, "large").await.unwrap().unwrap();
        assert_eq!(later.len(), 500);
        let _ = address;
    }

    #[test]
    fn broken_escapes_are_refused_on_any_byte_boundary() {
        let m = manifest(&["/index.html", "/é.txt"]);
        let auto = config("auto-trailing-slash", "none");
        // The measured panic: '%', one hex digit, then a multi-byte char.
        for bad in ["/%a\u{e9}", "/%", "/%a", "/%zz", "/%\u{e9}\u{e9}", "/%ff"] {
            let err = find(&m, &auto, bad).unwrap_err();
            assert!(!err.is_empty(), "{bad}");
        }
        assert_eq!(
            find(&m, &auto, "/%C3%A9.txt")
                .unwrap()
                .map(|h| h.path)
                .as_deref(),
            Some("/é.txt")
        );
        assert_eq!(
            find(&m, &auto, "/\u{e9}.txt")
                .unwrap()
                .map(|h| h.path)
                .as_deref(),
            Some("/é.txt")
        );
    }

    #[test]
    fn not_found_handling_falls_back() {
        let m = manifest(&["/index.html", "/404.html", "/blog/404.html"]);
        let spa = config("auto-trailing-slash", "single-page-application");
        assert_eq!(
            find(&m, &spa, "/app/route")
                .unwrap()
                .map(|h| (h.path, h.status)),
            Some(("/index.html".into(), StatusCode::OK))
        );
        let page = config("auto-trailing-slash", "404-page");
        assert_eq!(
            find(&m, &page, "/blog/x/y")
                .unwrap()
                .map(|h| (h.path, h.status)),
            Some(("/blog/404.html".into(), StatusCode::NOT_FOUND))
        );
        assert_eq!(
            find(&m, &page, "/nope").unwrap().map(|h| h.path),
            Some("/404.html".into())
        );
    }

    #[test]
    fn etags_give_304_and_head_has_no_body() {
        let hit = Hit {
            path: "/a.css".into(),
            entry: AssetEntry {
                sha256: "abc".into(),
                size: 3,
            },
            status: StatusCode::OK,
        };
        let r = respond(
            &hit,
            &Method::GET,
            Some(&HeaderValue::from_static("\"abc\"")),
            Bytes::from_static(b"a{}"),
        );
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        let r = respond(&hit, &Method::GET, None, Bytes::from_static(b"a{}"));
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/css; charset=utf-8");
        assert_eq!(r.headers()[header::ETAG], "\"abc\"");
        let r = respond(&hit, &Method::HEAD, None, Bytes::from_static(b"a{}"));
        assert_eq!(r.headers()[header::CONTENT_LENGTH], "3");
    }

    #[test]
    fn manifest_paths_are_checked() {
        for good in ["/index.html", "/a/b.css", "/a b.txt"] {
            assert!(validate_path(good).is_ok(), "{good}");
        }
        for bad in ["index.html", "/a/../b", "/a/", "/a//b", "/a?x", "/./a"] {
            assert!(validate_path(bad).is_err(), "{bad}");
        }
    }
}
