//! A small client for the admin API, used by the CLI's client commands.
//!
//! It unwraps the `{"success", "errors", "result"}` envelope: a failure
//! becomes an error carrying the server's code and message.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;

use berth_host::{TOKEN_ENV, TOKEN_FILE};

/// The admin API refused a request: its status and the envelope's
/// `errors` (each with `code` and `message`, some with more detail).
#[derive(Debug, thiserror::Error)]
#[error("{status}: {}", describe(.errors))]
pub struct ApiFailure {
    /// HTTP status.
    pub status: u16,
    /// The envelope's `errors`.
    pub errors: Vec<Value>,
}

impl ApiFailure {
    /// The first error with `code`, if any.
    pub fn error(&self, code: &str) -> Option<&Value> {
        self.errors.iter().find(|e| e["code"] == code)
    }
}

fn describe(errors: &[Value]) -> String {
    let text: Vec<String> = errors
        .iter()
        .map(|e| {
            format!(
                "{} ({})",
                e["message"].as_str().unwrap_or("?"),
                e["code"].as_str().unwrap_or("?")
            )
        })
        .collect();
    text.join("; ")
}

/// Connection settings for the admin API.
pub struct AdminClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl AdminClient {
    /// A client for `base` (e.g. `http://127.0.0.1:8788`); the token is taken
    /// from `token`, else `BERTH_ADMIN_TOKEN`, else `<data_dir>/admin-token`.
    pub fn new(base: &str, token: Option<String>, data_dir: &Path) -> anyhow::Result<Self> {
        let token = match token.or_else(|| std::env::var(TOKEN_ENV).ok()) {
            Some(t) if !t.trim().is_empty() => t.trim().to_owned(),
            _ => {
                let path: PathBuf = data_dir.join(TOKEN_FILE);
                std::fs::read_to_string(&path)
                    .with_context(|| {
                        format!(
                            "no admin token: set {TOKEN_ENV}, pass --token, or point --data-dir \
                             at the server's data dir (tried {})",
                            path.display()
                        )
                    })?
                    .trim()
                    .to_owned()
            }
        };
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http: reqwest::Client::new(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request and unwraps the envelope's `result`.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach the admin API at {}", self.base))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .with_context(|| format!("admin API answered {status} without a JSON envelope"))?;
        if body["success"] == Value::Bool(true) {
            return Ok(body["result"].clone());
        }
        let errors = body["errors"].as_array().cloned().unwrap_or_default();
        Err(ApiFailure {
            status: status.as_u16(),
            errors,
        }
        .into())
    }

    /// GET `path`.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(self.url(path))).await
    }

    /// DELETE `path`.
    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.delete(self.url(path))).await
    }

    /// `PATCH path` with a JSON body; returns the envelope's `result`.
    pub async fn patch_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.patch(self.url(path)).json(body)).await
    }

    /// `PUT path` with a JSON body (or none).
    pub async fn put_json(&self, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let request = self.http.put(self.url(path));
        let request = match body {
            Some(body) => request.json(body),
            None => request,
        };
        self.send(request).await
    }

    /// `PUT path` with a multipart form.
    pub async fn put_form(
        &self,
        path: &str,
        form: reqwest::multipart::Form,
    ) -> anyhow::Result<Value> {
        self.send(self.http.put(self.url(path)).multipart(form))
            .await
    }

    /// `GET path` of a raw (non-envelope) body; errors still come back as
    /// an envelope.
    pub async fn get_raw(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        Ok(self.stream(path).await?.bytes().await?.to_vec())
    }

    /// `GET path` as a stream (for the live tail); a failure status is
    /// turned into the envelope's error.
    pub async fn stream(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach the admin API at {}", self.base))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let error = &body["errors"][0];
        bail!(
            "{}: {} ({status})",
            error["code"].as_str().unwrap_or("error"),
            error["message"].as_str().unwrap_or("")
        )
    }

    /// POST JSON to `path`.
    pub async fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    /// Uploads a component with metadata as multipart.
    pub async fn upload(
        &self,
        path: &str,
        component: Vec<u8>,
        metadata: &Value,
    ) -> anyhow::Result<Value> {
        let form = reqwest::multipart::Form::new()
            .part(
                "metadata",
                reqwest::multipart::Part::text(metadata.to_string())
                    .mime_str("application/json")?,
            )
            .part(
                "component",
                reqwest::multipart::Part::bytes(component)
                    .file_name("component.wasm")
                    .mime_str("application/wasm")?,
            );
        self.send(self.http.put(self.url(path)).multipart(form))
            .await
    }

    /// Uploads plain JavaScript modules (name, source) with `metadata`; the
    /// host builds the component.
    pub async fn upload_js(
        &self,
        path: &str,
        modules: Vec<(String, Vec<u8>)>,
        metadata: &Value,
    ) -> anyhow::Result<Value> {
        let mut form = reqwest::multipart::Form::new().part(
            "metadata",
            reqwest::multipart::Part::text(metadata.to_string()).mime_str("application/json")?,
        );
        for (name, source) in modules {
            form = form.part(
                name.clone(),
                reqwest::multipart::Part::bytes(source)
                    .file_name(name)
                    .mime_str("application/javascript+module")?,
            );
        }
        self.send(self.http.put(self.url(path)).multipart(form))
            .await
    }
}
