//! Admin authentication: one bearer token, compared in constant time.
//!
//! Where the token comes from (first that is set): `BERTH_ADMIN_TOKEN`,
//! `server.admin_token`, or `<data_dir>/admin-token`, generated on first
//! start with mode 0600. The token itself is never logged, only its origin.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// Environment variable holding the admin token.
pub const TOKEN_ENV: &str = "BERTH_ADMIN_TOKEN";
/// File under the data dir holding a generated token.
pub const TOKEN_FILE: &str = "admin-token";

/// Where the effective token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// The environment variable.
    Env,
    /// The config file.
    Config,
    /// A file under the data dir (existing or generated now).
    File(PathBuf),
}

/// Picks the admin token: env, then config, then the data-dir file
/// (generated if missing).
/// Why the admin token could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token file exists but is empty.
    #[error("{} is empty; delete it to generate a new token", .0.display())]
    Empty(PathBuf),
    /// The token file could not be read or created.
    #[error("cannot {what} {}: {source}", path.display())]
    File {
        /// Read or create.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The system has no randomness to generate one.
    #[error("no randomness for the admin token: {0}")]
    Random(getrandom::Error),
}

pub fn resolve_token(
    env: Option<String>,
    config: Option<&str>,
    data_dir: &Path,
) -> Result<(String, TokenSource), TokenError> {
    if let Some(token) = env.filter(|t| !t.trim().is_empty()) {
        return Ok((token.trim().to_owned(), TokenSource::Env));
    }
    if let Some(token) = config.filter(|t| !t.trim().is_empty()) {
        return Ok((token.trim().to_owned(), TokenSource::Config));
    }
    let path = data_dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => {
            warn_if_shared(&path);
            return Ok((token.trim().to_owned(), TokenSource::File(path)));
        }
        Ok(_) => return Err(TokenError::Empty(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(TokenError::File {
                what: "read",
                path,
                source,
            });
        }
    }
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(TokenError::Random)?;
    let token = hex::encode(raw);
    let file = {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options.open(&path)
    };
    let written = file.and_then(|mut file| {
        writeln!(file, "{token}")?;
        file.sync_all()
    });
    match written {
        Ok(()) => Ok((token, TokenSource::File(path))),
        Err(source) => Err(TokenError::File {
            what: "create",
            path,
            source,
        }),
    }
}

/// Warns when a file that grants admin access is readable by other users.
fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(), mode = %format!("{mode:o}"),
                    "the admin token file is readable by other users; chmod 600 it"
                );
            }
        }
    }
}

/// The expected token, shared by the middleware.
#[derive(Clone)]
pub struct AdminToken(pub Arc<str>);

/// Rejects requests without `Authorization: Bearer <token>`.
pub async fn require_token(State(token): State<AdminToken>, req: Request, next: Next) -> Response {
    if token_matches(&token, req.headers()) {
        next.run(req).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

/// Whether `headers` carry `Authorization: Bearer <token>` (constant-time).
pub fn token_matches(token: &AdminToken, headers: &http::HeaderMap) -> bool {
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    bool::from(presented.as_bytes().ct_eq(token.0.as_bytes())) && !presented.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_env_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let (t, s) = resolve_token(Some("e".into()), Some("c"), dir.path()).unwrap();
        assert_eq!((t.as_str(), s), ("e", TokenSource::Env));
        let (t, s) = resolve_token(None, Some("c"), dir.path()).unwrap();
        assert_eq!((t.as_str(), s), ("c", TokenSource::Config));
        let (generated, s) = resolve_token(None, None, dir.path()).unwrap();
        assert_eq!(s, TokenSource::File(dir.path().join(TOKEN_FILE)));
        assert_eq!(generated.len(), 64);
        let (again, _) = resolve_token(None, None, dir.path()).unwrap();
        assert_eq!(generated, again, "a generated token is reused");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(TOKEN_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
