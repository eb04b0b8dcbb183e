//! The axum side: every request, whatever its path, becomes an engine `HttpRequest` (the
//! engine does the routing, so both runtimes answer exactly alike), and a `GET /ws` upgrade
//! is decided by the engine before axum completes it.

use crate::hub::Hub;
use crate::websocket;
use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use livebridge_core::{HttpRequest, Reply, RequestBody};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What the handler needs besides the request.
#[derive(Clone)]
pub(crate) struct Shared {
    pub hub: Arc<Hub>,
    pub max_body_bytes: usize,
    pub max_message_bytes: usize,
    pub close_timeout: Duration,
}

/// A `Router` that serves the whole livebridge protocol on every path (merge it into an
/// application's router with `Router::merge`, or nest it under a prefix with `nest`; the
/// engine sees paths as the router hands them).
pub(crate) fn router(shared: Shared) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

async fn handle(State(shared): State<Shared>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string());
    let head = match Head::read(&parts.headers) {
        Ok(head) => head,
        Err(problem) => return reply_response(Reply::error(400, &problem)),
    };
    let target = parts.uri.path_and_query().map_or_else(
        || parts.uri.path().to_string(),
        |pq| pq.as_str().to_string(),
    );
    let method = parts.method.as_str().to_string();
    let wants_upgrade = is_websocket_upgrade(&parts.headers);
    if wants_upgrade {
        let upgrade = HttpRequest {
            method,
            target,
            host: head.host,
            origin: head.origin,
            body: RequestBody::default(),
            authorization: head.authorization,
            peer,
            forwarded: false,
        };
        let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(ws) => ws,
            Err(rejection) => {
                return reply_response(Reply::error(
                    400,
                    &format!("WebSocket handshake failed: {}", rejection.body_text()),
                ));
            }
        };
        let (conn, outbox) = match shared.hub.open_websocket(upgrade) {
            Ok(accepted) => accepted,
            Err(reply) => return reply_response(reply),
        };
        let hub = Arc::clone(&shared.hub);
        let close_timeout = shared.close_timeout;
        let failed_hub = Arc::clone(&shared.hub);
        return ws
            // The smol runtime's buffer sizes: most connections are idle most of the time,
            // and tungstenite's defaults (128 KiB to read) cost ~140 KB per connection.
            .read_buffer_size(512)
            .write_buffer_size(16 * 1024)
            .max_message_size(shared.max_message_bytes)
            .max_frame_size(shared.max_message_bytes)
            .on_failed_upgrade(move |_| failed_hub.websocket_closed(conn, None))
            .on_upgrade(move |socket| websocket::serve(socket, conn, outbox, hub, close_timeout));
    }
    let body = match declared_length(&parts.headers) {
        Declared::Chunked => RequestBody::LengthRequired,
        Declared::Length(length) if length > shared.max_body_bytes as u64 => {
            RequestBody::TooLarge { declared: length }
        }
        Declared::Length(_) | Declared::None => match to_bytes(body, shared.max_body_bytes).await {
            Ok(bytes) => RequestBody::Complete(bytes.to_vec()),
            Err(_) => {
                return reply_response(Reply::error(400, "the request body could not be read"));
            }
        },
    };
    let http = HttpRequest {
        method,
        target,
        host: head.host,
        origin: head.origin,
        body,
        authorization: head.authorization,
        peer,
        forwarded: false,
    };
    reply_response(shared.hub.request(http).await)
}

/// The headers the protocol looks at.
struct Head {
    host: Option<String>,
    origin: Option<String>,
    authorization: Option<String>,
}

impl Head {
    /// Reads them. A header value with bytes outside visible ASCII, space and tab is refused
    /// (the engine's `check_header_value`, which the smol runtime applies too).
    fn read(headers: &HeaderMap) -> Result<Head, String> {
        for (name, value) in headers {
            livebridge_core::http_api::check_header_value(name.as_str(), value.as_bytes())?;
        }
        let text = |name: header::HeaderName| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(|value| value.trim().to_string())
        };
        Ok(Head {
            host: text(header::HOST),
            origin: text(header::ORIGIN),
            authorization: text(header::AUTHORIZATION),
        })
    }
}

enum Declared {
    None,
    Length(u64),
    Chunked,
}

fn declared_length(headers: &HeaderMap) -> Declared {
    if headers
        .get(header::TRANSFER_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        return Declared::Chunked;
    }
    match headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
    {
        Some(length) => Declared::Length(length),
        None => Declared::None,
    }
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    has_token(header::CONNECTION, "upgrade") && has_token(header::UPGRADE, "websocket")
}

/// The engine's reply as an axum response.
pub(crate) fn reply_response(reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, Body::from(reply.body)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(reply.content_type.as_str()),
    );
    for (name, value) in &reply.headers {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
    response
}
