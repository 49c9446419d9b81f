//! `GET /v1/ws`: the last place that sees HTTP. It checks the origin, the
//! WebSocket headers and an optional `Authorization` header, answers 101,
//! and hands the upgraded socket to [`crate::session::run`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::auth;
use crate::limits::TooMany;
use crate::session::{self, HeaderAuth};
use crate::state::AppState;

/// The upgrade handler.
pub async fn ws_upgrade(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
) -> Response {
    if state.shutdown.is_cancelled() {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "draining");
    }
    let headers = request.headers();
    if !origin_allowed(headers, &state.config.auth.allowed_origins) {
        return refuse(StatusCode::FORBIDDEN, "origin not allowed");
    }
    if !header_has_token(headers, header::UPGRADE, "websocket")
        || !header_has_token(headers, header::CONNECTION, "upgrade")
    {
        return refuse(
            StatusCode::UPGRADE_REQUIRED,
            "a WebSocket upgrade is required",
        );
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        let mut response = refuse(
            StatusCode::UPGRADE_REQUIRED,
            "WebSocket version 13 is required",
        );
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return response;
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return refuse(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
    };
    let accept = derive_accept_key(key.as_bytes());
    let header_auth: HeaderAuth = headers.get(header::AUTHORIZATION).map(|value| {
        value
            .to_str()
            .ok()
            .and_then(auth::bearer)
            .ok_or(auth::AuthError::Invalid)
            .and_then(|token| state.verifier.verify(token))
    });

    let client = client_addr(
        peer.ip(),
        headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()),
        &state.config.gateway.trusted_proxies,
    );
    if !state.connect_limiter.allow(client) {
        return crate::http::error_response(
            StatusCode::TOO_MANY_REQUESTS,
            sluice_proto::ErrorCode::RateLimited,
            "too many new connections from this address",
        )
        .into_response();
    }
    let slot = match state.unauthenticated.enter(client) {
        Ok(slot) => slot,
        Err(TooMany::Address) => {
            return crate::http::error_response(
                StatusCode::TOO_MANY_REQUESTS,
                sluice_proto::ErrorCode::RateLimited,
                "too many connections from this address have not said hello yet",
            )
            .into_response();
        }
        Err(TooMany::Process) => {
            return crate::http::error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                sluice_proto::ErrorCode::Unavailable,
                "too many connections have not said hello yet",
            )
            .into_response();
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    let ws_config = state.ws_config;
    let hello_bytes = state.config.gateway.max_hello_bytes;
    let session_state = state.clone();
    state.sessions.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let budget = session::budget::ReadBudget::new(hello_bytes);
                let ws = WebSocketStream::from_raw_socket(
                    session::budget::Budgeted::new(TokioIo::new(upgraded), budget.clone()),
                    Role::Server,
                    Some(ws_config),
                )
                .await;
                let session = session::run(
                    ws,
                    session_state.clone(),
                    header_auth,
                    &client.to_string(),
                    Some(session::budget::PreHello {
                        budget,
                        slot: Some(slot),
                    }),
                );
                // A task of its own, so that it does not carry this one's
                // upgrade state for the session's life.
                session_state.sessions.spawn(session);
            }
            Err(e) => tracing::debug!(%peer, error = %e, "upgrade failed"),
        }
    });

    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// The client's address: the direct peer, unless the peer is a trusted proxy,
/// in which case the rightmost `X-Forwarded-For` entry that is not itself a
/// trusted proxy (entries further left are the client's own claims).
fn client_addr(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let Some(list) = forwarded_for else {
        return peer;
    };
    let mut client = peer;
    for hop in list.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !trusted.contains(&ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

/// A browser's `Origin` must be listed when a list is configured;
/// non-browser clients send none and are judged by their token alone.
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    match headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        None => true,
        Some(origin) => allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)),
    }
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .to_str()
            .map(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

fn refuse(status: StatusCode, message: &'static str) -> Response {
    crate::http::error_response(status, sluice_proto::ErrorCode::BadRequest, message)
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_matched_only_when_configured() {
        let mut headers = HeaderMap::new();
        assert!(origin_allowed(&headers, &["https://a.example".into()]));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://b.example"),
        );
        assert!(origin_allowed(&headers, &[]));
        assert!(!origin_allowed(&headers, &["https://a.example".into()]));
        assert!(origin_allowed(&headers, &["https://B.example".into()]));
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let outside: IpAddr = "198.51.100.7".parse().unwrap();
        let trusted = [local];
        let client = |peer, xff| client_addr(peer, xff, &trusted).to_string();
        assert_eq!(client(local, Some("203.0.113.9")), "203.0.113.9");
        assert_eq!(
            client(local, Some("10.9.9.9, 203.0.113.9, 127.0.0.1")),
            "203.0.113.9"
        );
        assert_eq!(client(local, None), "127.0.0.1");
        assert_eq!(
            client(outside, Some("203.0.113.9")),
            "198.51.100.7",
            "untrusted peers cannot claim"
        );
        assert_eq!(client(local, Some("garbage")), "127.0.0.1");
    }

    #[test]
    fn connection_header_tokens() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert!(header_has_token(&headers, header::CONNECTION, "upgrade"));
        assert!(!header_has_token(&headers, header::UPGRADE, "websocket"));
    }
}
