//! Cluster mode's one internal HTTP hop: a request that names a session another node holds
//! (the engine's `Output::Forward`) is sent to that node and its reply relayed as is, so
//! polling clients need no sticky sessions behind a round-robin proxy. The node's address
//! comes from the registry in Redis (through the broker task), cached per tag; the request
//! carries the cluster's key (`X-Livebridge-Cluster-Key`, a random value every node reads
//! from Redis) and the client's address (`X-Livebridge-Peer`), which the receiving node
//! trusts only with that key. When the node cannot be reached the request goes back to the
//! engine (`Input::ForwardFailed`), which answers it as if the session were unknown.
//!
//! The connections between nodes are kept alive and reused (`forward_pool.rs`).

use crate::broker::{BrokerHandle, ClusterIdentity};
use crate::forward_pool::Pool;
use crate::hub::Hub;
use async_channel::{Receiver, Sender};
use futures_lite::future::or;
use livebridge_core::{ContentType, HttpRequest, Reply, RequestBody, RequestId};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tracing::debug;

/// How long a node's address read from the registry is used before it is read again.
pub const ADDRESS_TTL: Duration = Duration::from_secs(5);
/// Largest reply relayed (a long poll's reply is at most `queue_limit` messages).
pub const MAX_REPLY_BYTES: usize = 64 * 1024 * 1024;
/// Longest wait for one node's part of a cluster-wide view; a node slower than that is
/// listed as not answering.
pub const GATHER_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a forwarded request checks that its client is still there. When it is gone the
/// connection to the owner is dropped, so the owner withdraws a pending long poll and keeps
/// its messages queued (instead of answering a reply nobody will read).
pub const CLIENT_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// A request to send to the node holding its session, or to every other node.
pub struct ForwardJob {
    /// The engine's id of the request.
    pub request: RequestId,
    /// The node's tag; `None`: every other live node (`Output::Gather`).
    pub node: Option<u16>,
    /// The request.
    pub http: Box<HttpRequest>,
    /// Where its reply goes.
    pub reply: Sender<Reply>,
}

/// Starts the forwarder: each job runs as its own task on `executor`. `timeout` bounds a
/// whole forwarded request (a long poll included).
pub fn spawn(
    executor: &Arc<smol::Executor<'static>>,
    broker: BrokerHandle,
    identity: Arc<ClusterIdentity>,
    hub: Weak<Hub>,
    timeout: Duration,
) -> Sender<ForwardJob> {
    let (jobs, receiver) = async_channel::unbounded::<ForwardJob>();
    let forwarder = Arc::new(Forwarder {
        broker,
        identity,
        hub,
        timeout,
        addresses: Mutex::new(BTreeMap::new()),
        pool: Pool::default(),
    });
    let spawner = Arc::clone(executor);
    executor.spawn(run(spawner, receiver, forwarder)).detach();
    jobs
}

struct Forwarder {
    broker: BrokerHandle,
    identity: Arc<ClusterIdentity>,
    hub: Weak<Hub>,
    timeout: Duration,
    /// Node tag → (address, when read). The last good address is kept while Redis is down.
    addresses: Mutex<BTreeMap<u16, (String, Instant)>>,
    /// Connections to the other nodes.
    pool: Pool,
}

async fn run(
    executor: Arc<smol::Executor<'static>>,
    jobs: Receiver<ForwardJob>,
    forwarder: Arc<Forwarder>,
) {
    while let Ok(job) = jobs.recv().await {
        let forwarder = Arc::clone(&forwarder);
        executor
            .spawn(async move { forwarder.forward(job).await })
            .detach();
    }
}

impl Forwarder {
    async fn forward(&self, job: ForwardJob) {
        let Some(node) = job.node else {
            return self.gather(job).await;
        };
        let result = match self.address(node).await {
            Some(address) => {
                let key = self.identity.key();
                let work = send(&self.pool, &address, &job.http, key.as_deref());
                let client_gone = async {
                    while !job.reply.is_closed() {
                        smol::Timer::after(CLIENT_CHECK_INTERVAL).await;
                    }
                };
                let outcome = or(async { Some(work.await) }, async {
                    client_gone.await;
                    None
                });
                let Some(outcome) = or(outcome, async {
                    smol::Timer::after(self.timeout).await;
                    Some(Err(format!("no answer within {:?}", self.timeout)))
                })
                .await
                else {
                    debug!(request = %job.request, "the client went away; forwarded request dropped");
                    return;
                };
                outcome
            }
            None => Err(format!(
                "no node with tag {node:04x} is registered in Redis"
            )),
        };
        match result {
            Ok(reply) => {
                let _ = job.reply.try_send(reply);
            }
            Err(error) => {
                debug!(request = %job.request, node, %error, "forwarding failed");
                if let Some(hub) = self.hub.upgrade() {
                    hub.forward_failed(job.request, job.reply, job.http, error);
                }
            }
        }
    }

    /// Asks every other live node (each answers for itself) and hands the answers back.
    async fn gather(&self, job: ForwardJob) {
        let own = self.identity.tag();
        let (peers, error) = match self.broker.nodes().await {
            Ok(nodes) => (nodes, None),
            Err(error) => (Vec::new(), Some(error)),
        };
        let key = self.identity.key();
        let asks = peers
            .into_iter()
            .filter(|(tag, _)| Some(*tag) != own)
            .map(|(tag, address)| {
                let (http, key) = (&job.http, key.as_deref());
                async move {
                    let work = async {
                        send(&self.pool, &address, http, key)
                            .await
                            .and_then(|reply| match reply.status {
                                200 => Ok(reply.body),
                                status => Err(format!("{status}: {}", reply.body)),
                            })
                    };
                    let answer = or(work, async {
                        smol::Timer::after(GATHER_TIMEOUT).await;
                        Err(format!("no answer within {GATHER_TIMEOUT:?}"))
                    })
                    .await;
                    livebridge_core::NodePart { node: tag, answer }
                }
            });
        let mut parts = Vec::new();
        // Concurrently: one slow node costs its timeout once, not once per node.
        let mut pending: Vec<_> = asks.map(Box::pin).collect();
        while !pending.is_empty() {
            let (part, rest) = select_first(pending).await;
            parts.push(part);
            pending = rest;
        }
        parts.sort_by_key(|part| part.node);
        if let Some(hub) = self.hub.upgrade() {
            hub.gathered(job.request, job.reply, parts, error);
        }
    }

    async fn address(&self, node: u16) -> Option<String> {
        let cached = self.lock().get(&node).cloned();
        if let Some((address, read)) = &cached
            && read.elapsed() < ADDRESS_TTL
        {
            return Some(address.clone());
        }
        match self.broker.lookup(node).await {
            Some(address) => {
                self.lock().insert(node, (address.clone(), Instant::now()));
                Some(address)
            }
            None => cached.map(|(address, _)| address),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u16, (String, Instant)>> {
        self.addresses
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The first of `futures` to finish, and the others.
async fn select_first<F: std::future::Future + Unpin>(mut futures: Vec<F>) -> (F::Output, Vec<F>) {
    std::future::poll_fn(move |cx| {
        for index in 0..futures.len() {
            if let std::task::Poll::Ready(output) = std::pin::Pin::new(&mut futures[index]).poll(cx)
            {
                drop(futures.swap_remove(index));
                return std::task::Poll::Ready((output, std::mem::take(&mut futures)));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Sends the request to `address` (`HOST:PORT`) on a connection from `pool` and reads the
/// whole reply.
async fn send(
    pool: &Pool,
    address: &str,
    http: &HttpRequest,
    key: Option<&str>,
) -> Result<Reply, String> {
    let body: &[u8] = match &http.body {
        RequestBody::Complete(body) => body,
        // Refused by the engine before it decides to forward.
        RequestBody::TooLarge { .. } | RequestBody::LengthRequired => &[],
    };
    let mut head = format!("{} {} HTTP/1.1\r\n", http.method, http.target);
    let mut header = |name: &str, value: &str| {
        // Values came from a parsed request head, so they hold no line breaks; stay safe.
        if !value.contains(['\r', '\n']) {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
    };
    header("Host", http.host.as_deref().unwrap_or(address));
    if let Some(origin) = &http.origin {
        header("Origin", origin);
    }
    if let Some(authorization) = &http.authorization {
        header("Authorization", authorization);
    }
    if let Some(key) = key {
        header("X-Livebridge-Cluster-Key", key);
    }
    if let Some(peer) = &http.peer {
        header("X-Livebridge-Peer", peer);
    }
    header("Content-Length", &body.len().to_string());
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    let head_request = http.method.eq_ignore_ascii_case("HEAD");
    let response = pool
        .exchange(address, &request, head_request, MAX_REPLY_BYTES)
        .await?;
    parse_reply(&response.head, response.body).map_err(|e| format!("the reply of {address}: {e}"))
}

/// An HTTP/1.1 response as a [`Reply`]: its head, and its body as the pool framed it.
fn parse_reply(head: &[u8], body: Vec<u8>) -> Result<Reply, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err("incomplete".to_string()),
        Err(error) => return Err(error.to_string()),
    }
    let status = response.code.ok_or("no status")?;
    let mut content_type = ContentType::Json;
    let mut extra = Vec::new();
    for header in response.headers.iter() {
        let value = String::from_utf8_lossy(header.value).trim().to_string();
        match header.name.to_ascii_lowercase().as_str() {
            "content-type" => content_type = content_type_of(&value),
            "content-length" | "connection" | "date" | "transfer-encoding" | "keep-alive"
            | "server" => {}
            _ => extra.push((header.name.to_string(), value)),
        }
    }
    let body = String::from_utf8(body)
        .unwrap_or_else(|invalid| String::from_utf8_lossy(invalid.as_bytes()).into_owned());
    Ok(Reply {
        status,
        content_type,
        headers: extra,
        body,
    })
}

fn content_type_of(value: &str) -> ContentType {
    let media = value.split(';').next().unwrap_or_default().trim();
    match media {
        "text/plain" => ContentType::Prometheus,
        "text/html" => ContentType::Html,
        "text/javascript" => ContentType::JavaScript,
        "text/css" => ContentType::Css,
        _ => ContentType::Json,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relayed_reply_keeps_status_type_headers_and_body() {
        let head = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\n\
                    access-control-allow-origin: https://a.example\r\ncontent-length: 2\r\n\
                    connection: close\r\n\r\n";
        let reply = parse_reply(head, b"{}".to_vec()).unwrap();
        assert_eq!(reply.status, 404);
        assert_eq!(reply.content_type, ContentType::Json);
        assert_eq!(
            reply.headers,
            [(
                "access-control-allow-origin".to_string(),
                "https://a.example".to_string()
            )]
        );
        assert_eq!(reply.body, "{}");
        assert!(parse_reply(b"HTTP/1.1 200", Vec::new()).is_err());
        assert!(parse_reply(b"garbage\r\n\r\n", Vec::new()).is_err());
    }
}
