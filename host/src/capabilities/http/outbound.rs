//! The outbound worker hand-off: a user worker's subrequest goes to the
//! namespace's outbound worker first, with the dispatch worker's outbound
//! parameters as `berth-outbound-<name>` headers the user worker cannot
//! forge.

use wasmtime_wasi_http::{Error as HttpError, WasiBody};

use super::client::Sent;
use crate::capabilities::{CallOptions, OutboundWorker};

/// `berth-outbound-<name>`: the header an outbound parameter travels in.
pub fn outbound_header_name(name: &str) -> Option<http::HeaderName> {
    let clean: String = name
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if clean.is_empty() {
        return None;
    }
    http::HeaderName::from_bytes(format!("berth-outbound-{clean}").as_bytes()).ok()
}

/// Hands a user worker's outbound request to the outbound worker, with the
/// dispatch worker's parameters as `berth-outbound-<name>` headers.
pub(super) async fn via_outbound_worker(
    outbound: OutboundWorker,
    params: Vec<(String, String)>,
    call: CallOptions,
    mut request: http::Request<WasiBody>,
) -> Result<Sent, HttpError> {
    let headers = request.headers_mut();
    // The user worker cannot forge parameters.
    let forged: Vec<_> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("berth-outbound-"))
        .cloned()
        .collect();
    for name in forged {
        headers.remove(name);
    }
    for (name, value) in params {
        if let (Some(name), Ok(value)) = (
            outbound_header_name(&name),
            http::HeaderValue::from_str(&value),
        ) {
            headers.append(name, value);
        }
    }
    if let Some(authority) = request.uri().authority().map(|a| a.to_string())
        && let Ok(host) = http::HeaderValue::from_str(&authority)
    {
        request.headers_mut().insert(http::header::HOST, host);
    }
    let invoker = outbound
        .invoker
        .get()
        .map_err(|error| HttpError::InternalError(Some(format!("outbound worker: {error}"))))?;
    match invoker.serve(outbound.worker, request, call).await {
        Ok(response) => Ok((
            response,
            Box::pin(async { Ok(()) }) as crate::base::BoxFuture<'static, _>,
        )),
        Err(error) => Err(HttpError::InternalError(Some(format!(
            "outbound worker: {error}"
        )))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbound_parameter_headers_are_sanitized() {
        assert_eq!(
            outbound_header_name("customer").unwrap().as_str(),
            "berth-outbound-customer"
        );
        assert_eq!(
            outbound_header_name("Plan Tier").unwrap().as_str(),
            "berth-outbound-plan-tier"
        );
        assert!(outbound_header_name("  ").is_none());
    }
}
