//! Dispatch over plain `fetch()`: the reserved `dispatch.internal` domain.
//!
//! Some guest languages cannot hand `wasi:http` resources to the
//! `berth:platform/dispatcher` import — StarlingMonkey (componentize-js)
//! keeps its request and response handles to itself. For those, a dispatch
//! worker calls a user worker with an ordinary outbound request:
//!
//! ```text
//! GET http://<script>.dispatch.internal/<path>
//! berth-dispatch-cpu-ms: 50            per-call limits (optional):
//! berth-dispatch-wall-ms: 5000           cpu-ms, wall-ms, memory-mb,
//! berth-dispatch-memory-mb: 64           subrequests
//! berth-dispatch-outbound-customer: a  outbound parameter `customer`
//! berth-dispatch-host: a.example.com   the Host the user worker sees
//! ```
//!
//! The egress choke point ([`crate::egress`]) hands every request for this
//! domain to [`serve`] when the caller is a dispatch worker, and refuses it
//! for everyone else. The request then takes the same path as
//! `worker.fetch`: the dispatch worker's namespace only, the same limit
//! combination, outbound parameters, platform headers and deadline. Every
//! `berth-dispatch-*` header is removed before the user worker runs; an
//! unknown one or a bad value is refused with 400 `bad-dispatch-request`
//! naming it. Failures come back as responses with the status and
//! `x-berth-error` code the data plane would use; an `x-berth-error` set by
//! the user worker itself is removed, so the header is trustworthy.
//!
//! `GET http://dispatch.internal/hostnames/<hostname>` is the fetch form of
//! `dispatcher.lookup-hostname`: 200 `{"script":"<name>"}` or 404.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, header};
use http_body_util::{BodyExt, Full};
use wasmtime_wasi_http::WasiBody;

use super::DispatchBinding;
use crate::base::Invalid;
use crate::base::error::{ERROR_HEADER, WorkerError};
use crate::base::limits::CallLimits;
use crate::base::names::Name;
use crate::base::reserved::Target;

/// Prefix of the headers that carry per-call options.
pub const HEADER_PREFIX: &str = "berth-dispatch-";

/// Per-call options taken out of the request headers.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FetchOptions {
    /// Limits for this call.
    pub limits: CallLimits,
    /// Outbound parameters, in header order.
    pub outbound: Vec<(String, String)>,
    /// The authority (Host and URL) the user worker sees instead of
    /// `<script>.dispatch.internal`.
    pub host: Option<HeaderValue>,
}

/// Removes every `berth-dispatch-*` header and parses them into options;
/// the error names the offending header.
pub fn take_options(headers: &mut HeaderMap) -> Result<FetchOptions, Invalid> {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with(HEADER_PREFIX))
        .cloned()
        .collect();
    let mut options = FetchOptions::default();
    let mut problem = None;
    for name in names {
        let values: Vec<HeaderValue> = headers.get_all(&name).iter().cloned().collect();
        // Removes every value of the name.
        headers.remove(&name);
        if problem.is_none()
            && let Err(message) = apply_option(&mut options, &name, &values)
        {
            problem = Some(message);
        }
    }
    match problem {
        Some(message) => Err(message),
        None => Ok(options),
    }
}

fn apply_option(
    options: &mut FetchOptions,
    name: &HeaderName,
    values: &[HeaderValue],
) -> Result<(), Invalid> {
    let key = &name.as_str()[HEADER_PREFIX.len()..];
    if let Some(param) = key.strip_prefix("outbound-") {
        if param.is_empty() {
            return Err(Invalid(format!(
                "{name}: the outbound parameter has no name"
            )));
        }
        for value in values {
            let value = value
                .to_str()
                .map_err(|_| format!("{name}: value is not visible ASCII"))?;
            options.outbound.push((param.to_owned(), value.to_owned()));
        }
        return Ok(());
    }
    let [value] = values else {
        return Err(Invalid(format!("{name}: given {} times", values.len())));
    };
    if key == "host" {
        options.host = Some(value.clone());
        return Ok(());
    }
    let number = || -> Result<u64, String> {
        value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{name}: {value:?} is not a positive integer"))
    };
    let limits = &mut options.limits;
    match key {
        "cpu-ms" => limits.cpu_ms = Some(number()?),
        "wall-ms" => limits.wall_ms = Some(number()?),
        "memory-mb" => limits.memory_mb = Some(number()?),
        "subrequests" => {
            let n = number()?;
            limits.subrequests = Some(
                u32::try_from(n).map_err(|_| format!("{name}: {n} is larger than {}", u32::MAX))?,
            );
        }
        _ => {
            return Err(Invalid(format!(
                "unknown header {name} (known: cpu-ms, wall-ms, memory-mb, subrequests, host, outbound-<name>)"
            )));
        }
    }
    Ok(())
}

/// Serves one request of a dispatch worker to the reserved domain.
pub async fn serve(
    binding: DispatchBinding,
    target: Target,
    request: http::Request<WasiBody>,
) -> http::Response<WasiBody> {
    match target {
        Target::Control => control(binding, request).await,
        Target::Script(script) => call(binding, &script, request).await,
    }
}

async fn call(
    binding: DispatchBinding,
    script: &str,
    mut request: http::Request<WasiBody>,
) -> http::Response<WasiBody> {
    let options = match take_options(request.headers_mut()) {
        Ok(options) => options,
        Err(message) => return bad_request(&message.0),
    };
    let Ok(name) = Name::new(script) else {
        return worker_error(WorkerError::NotFound(script.to_owned()));
    };
    binding.record(name.as_str());
    let invoker = match binding.invoker.get() {
        Ok(invoker) => invoker,
        Err(error) => return worker_error(error),
    };
    let worker = match invoker
        .clone()
        .user_worker(binding.namespace().clone(), name)
        .await
    {
        Ok(worker) => worker,
        Err(error) => return worker_error(error),
    };
    if let Some(host) = options.host {
        // The guest sees its URL's authority, so both change.
        let authority = match host
            .to_str()
            .ok()
            .and_then(|h| h.parse::<http::uri::Authority>().ok())
        {
            Some(authority) => authority,
            None => return bad_request(&format!("berth-dispatch-host: {host:?} is not a host")),
        };
        let mut parts = request.uri().clone().into_parts();
        parts.authority = Some(authority);
        match http::Uri::from_parts(parts) {
            Ok(uri) => *request.uri_mut() = uri,
            Err(e) => return bad_request(&format!("berth-dispatch-host: {e}")),
        }
        request.headers_mut().insert(header::HOST, host);
    }
    binding.apply_platform_headers(request.headers_mut());
    let invoke = binding.invoke_options(options.limits, options.outbound);
    match invoker.serve(worker, request, invoke).await {
        Ok(mut response) => {
            // Only the host speaks `x-berth-error` on this path.
            response.headers_mut().remove(ERROR_HEADER);
            response
        }
        Err(error) => worker_error(error),
    }
}

async fn control(
    binding: DispatchBinding,
    request: http::Request<WasiBody>,
) -> http::Response<WasiBody> {
    let path = request.uri().path();
    let Some(hostname) = path.strip_prefix("/hostnames/").filter(|h| !h.is_empty()) else {
        return bad_request(&format!(
            "no dispatch endpoint {path:?} (try /hostnames/<hostname>)"
        ));
    };
    if request.method() != http::Method::GET {
        return bad_request("hostname lookups are GET requests");
    }
    let hostname = hostname.to_owned();
    let store = match binding.invoker.get() {
        Ok(invoker) => invoker.hostnames(),
        Err(error) => return worker_error(error),
    };
    let namespace = binding.namespace().clone();
    let lookup = tokio::task::spawn_blocking(move || {
        store.lookup(&namespace, &hostname).map(|n| (n, hostname))
    })
    .await;
    match lookup {
        Ok(Ok((Some(script), _))) => {
            let body = serde_json::json!({ "script": script.as_str() }).to_string();
            let mut response = http::Response::new(full(body));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Ok(Ok((None, hostname))) => worker_error(WorkerError::NotFound(format!(
            "no script for hostname {hostname:?}"
        ))),
        Ok(Err(error)) => worker_error(WorkerError::Internal(error.to_string())),
        Err(join) => worker_error(WorkerError::Internal(join.to_string())),
    }
}

fn full(text: String) -> WasiBody {
    Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn bad_request(message: &str) -> http::Response<WasiBody> {
    worker_error(WorkerError::BadDispatchRequest(message.to_owned()))
}

fn worker_error(error: WorkerError) -> http::Response<WasiBody> {
    error.to_http(full)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn the_sdk_knows_the_bad_request_code() {
        let response = bad_request("berth-dispatch-x: unknown");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[ERROR_HEADER], "bad-dispatch-request");
    }

    #[test]
    fn takes_limits_outbound_and_host_and_strips_them() {
        let mut map = headers(&[
            ("berth-dispatch-cpu-ms", "50"),
            ("berth-dispatch-wall-ms", "5000"),
            ("berth-dispatch-memory-mb", "64"),
            ("berth-dispatch-subrequests", "3"),
            ("berth-dispatch-outbound-customer", "a"),
            ("berth-dispatch-outbound-plan", "pro"),
            ("berth-dispatch-host", "a.example.com"),
            ("accept", "text/plain"),
        ]);
        let options = take_options(&mut map).unwrap();
        assert_eq!(
            options.limits,
            CallLimits {
                cpu_ms: Some(50),
                wall_ms: Some(5000),
                memory_mb: Some(64),
                subrequests: Some(3),
            }
        );
        assert_eq!(
            options.outbound,
            vec![
                ("customer".to_owned(), "a".to_owned()),
                ("plan".to_owned(), "pro".to_owned())
            ]
        );
        assert_eq!(options.host.unwrap(), "a.example.com");
        assert_eq!(map.len(), 1, "only the guest's own header is left");
        assert!(map.contains_key("accept"));
    }

    #[test]
    fn refuses_bad_values_and_unknown_headers_naming_them_and_still_strips() {
        for (name, value, expect) in [
            ("berth-dispatch-cpu-ms", "fast", "berth-dispatch-cpu-ms"),
            ("berth-dispatch-wall-ms", "0", "not a positive integer"),
            ("berth-dispatch-subrequests", "99999999999", "larger than"),
            (
                "berth-dispatch-color",
                "red",
                "unknown header berth-dispatch-color",
            ),
            ("berth-dispatch-outbound-", "x", "has no name"),
        ] {
            let mut map = headers(&[(name, value), ("accept", "*/*")]);
            let error = take_options(&mut map).unwrap_err();
            assert!(error.contains(expect), "{name}: {error}");
            assert_eq!(
                map.len(),
                1,
                "{name}: the berth-dispatch-* header is removed"
            );
        }
        let mut twice = headers(&[
            ("berth-dispatch-cpu-ms", "5"),
            ("berth-dispatch-cpu-ms", "6"),
        ]);
        assert!(
            take_options(&mut twice)
                .unwrap_err()
                .contains("given 2 times")
        );
        assert!(twice.is_empty());
    }
}
