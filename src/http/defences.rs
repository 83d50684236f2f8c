//! Web defences every response gets: a Host allow-list (a DNS-rebinding page cannot
//! reach a loopback daemon under its own name), checked on the `Host` header and on the
//! HTTP/2 `:authority` alike; a same-origin check on state-changing requests; and
//! security headers suited to the embedded UI.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;

use super::error::ApiError;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   media-src 'self' blob:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

/// Whether `host` (a Host header value or an origin's host, with or without port) is
/// one this daemon answers to: IP literals (a rebinding attacker's page can only use
/// its own domain name), `localhost`, and `server.allowed_hosts`.
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        }),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<IpAddr>().is_ok()
        || name == "localhost"
        || name.ends_with(".localhost")
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(&name))
}

/// CORS for the configured origins (none by default).
pub fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::HeaderName;
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        tower_http::cors::CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("x-csrf-token"),
                HeaderName::from_static("x-request-id"),
                // Anthropic's clients: the key, the API version, and the header its
                // browser builds send.
                HeaderName::from_static("x-api-key"),
                HeaderName::from_static("anthropic-version"),
                HeaderName::from_static("anthropic-beta"),
                HeaderName::from_static("anthropic-dangerous-direct-browser-access"),
            ])
            .expose_headers([HeaderName::from_static("x-request-id"), header::RETRY_AFTER])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// The host a request names: its `Host` header, or for HTTP/2 (and absolute-form
/// requests) the URI's authority. Both are checked when both are present.
fn named_hosts(req: &Request) -> Vec<String> {
    let mut hosts = Vec::new();
    if let Some(host) = req.headers().get(header::HOST) {
        // A Host header that is not text is not one we answer to.
        hosts.push(host.to_str().unwrap_or("\u{fffd}").to_string());
    }
    if let Some(authority) = req.uri().authority() {
        hosts.push(authority.as_str().to_string());
    }
    hosts
}

/// Whether an HTTP/1 request carries a body (which a refusal may leave unread).
pub fn has_unread_body(req: &Request) -> bool {
    let headers = req.headers();
    req.version() <= axum::http::Version::HTTP_11
        && (headers.contains_key(header::TRANSFER_ENCODING)
            || headers
                .get(header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() != b"0"))
}

/// Answers that can come before a request's body is read to its end (a full disk
/// while an upload streams, a body over its limit, the daemon too busy): the client
/// must not send its next request on this connection, whose input still holds the
/// rest of that body.
fn may_leave_body_unread(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::INSUFFICIENT_STORAGE
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::REQUEST_TIMEOUT
    )
}

/// Whether a request asks to become a WebSocket (`Upgrade: websocket`).
pub fn is_websocket_upgrade(headers: &axum::http::HeaderMap) -> bool {
    headers.get_all(header::UPGRADE).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
        })
    })
}

/// The middleware.
pub async fn defend(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let allowed = &state.config.server.allowed_hosts;
    let hosts = named_hosts(&req);
    if let Some(host) = hosts.iter().find(|h| !host_allowed(h, allowed)) {
        let shown: String = host.chars().take(100).collect();
        return secure(
            ApiError::Forbidden(format!(
                "host `{shown}` is not one this server answers to; add it to server.allowed_hosts"
            ))
            .into_response(),
        );
    }
    // A WebSocket is opened by a GET that a cross-site page can send with the user's
    // cookie (and read the answers of): it is checked like a state-changing request.
    let state_changing = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        || is_websocket_upgrade(req.headers());
    if state_changing && let Some(origin) = req.headers().get(header::ORIGIN) {
        // Same origin only (the daemon's own scheme, host and port, as this request
        // names them), or a configured CORS origin.
        let origin = origin.to_str().unwrap_or("null");
        let scheme = if state.config.tls_enabled() {
            "https"
        } else {
            "http"
        };
        let own = hosts
            .first()
            .is_some_and(|host| origin.eq_ignore_ascii_case(&format!("{scheme}://{host}")));
        let listed = state.config.server.cors_origins.iter().any(|o| o == origin);
        if !(own || listed) {
            let shown: String = origin.chars().take(100).collect();
            return secure(
                ApiError::Forbidden(format!("cross-origin request from `{shown}` refused"))
                    .into_response(),
            );
        }
    }
    let with_body = has_unread_body(&req);
    let mut response = secure(next.run(req).await);
    if with_body && may_leave_body_unread(response.status()) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if state.config.tls_enabled() {
        response.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
}

fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::host_allowed;

    #[test]
    fn rebinding_names_are_refused_and_local_ones_accepted() {
        let none: Vec<String> = Vec::new();
        for ok in [
            "127.0.0.1:8470",
            "localhost:8470",
            "[::1]:8470",
            "10.0.0.5",
            "LOCALHOST",
            "app.localhost:1",
        ] {
            assert!(host_allowed(ok, &none), "{ok}");
        }
        for bad in [
            "evil.example:8470",
            "evil.example",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
        ] {
            assert!(!host_allowed(bad, &none), "{bad}");
        }
        assert!(host_allowed(
            "ai.internal:443",
            &["ai.internal".to_string()]
        ));
    }
}
