//! Cluster mode on a real Redis and real `livebridge` nodes (issue 16): a publish on any node
//! reaches the subscribers of every node exactly once and in order, with the offsets and
//! epoch Redis gave; a client recovers on another node with the same positions; Redis down
//! means 503 and a degraded health, Redis back (empty) means publishing again and
//! `recovered: false` for the history it lost; a node killed with SIGKILL leaves its clients
//! to recover on another node.

#[path = "support/cluster.rs"]
mod cluster_support;
mod support;

use cluster_support::{Node, PATIENCE, Proxy, Redis};
use serde_json::{Value, json};
use std::time::Instant;
use support::WsClient;

fn progress(n: u64) -> Value {
    json!({"type": "job_progress", "job_id": "job-1", "stage": "processing", "progress": n})
}

/// A WebSocket client on `node`, subscribed to `jobs` (with `since`, when given); returns the
/// client and its `subscribed` reply.
fn subscriber(node: &Node, since: Option<Value>) -> (WsClient, Value) {
    let mut client = smol::block_on(WsClient::connect(node.socket_addr()));
    let mut message = json!({"type": "subscribe", "channels": ["jobs"]});
    if let Some(since) = since {
        message["since"] = json!({"jobs": since});
    }
    client.send(message);
    let reply = client.recv().expect("subscribed");
    assert_eq!(reply["type"], "subscribed", "{reply}");
    (client, reply)
}

/// The next `count` channel events the client gets, as (offset, epoch, progress); fails on a
/// `messages_dropped` notice or anything missing.
fn events(client: &mut WsClient, count: usize) -> Vec<(u64, String, u64)> {
    let mut got = Vec::new();
    while got.len() < count {
        let frame = client
            .recv()
            .unwrap_or_else(|| panic!("only {} of {count} events arrived: {got:?}", got.len()));
        match frame["type"].as_str() {
            Some("job_progress") => got.push((
                frame["offset"].as_u64().unwrap(),
                frame["epoch"].as_str().unwrap().to_string(),
                frame["progress"].as_f64().unwrap() as u64,
            )),
            _ => panic!("unexpected frame {frame} after {got:?}"),
        }
    }
    got
}

fn publish(node: &Node, n: u64) -> (u64, String) {
    let (status, reply) = node.post("/api/events", progress(n));
    assert_eq!(status, 200, "{reply}");
    let (_, history) = node.get("/api/history/jobs?limit=0");
    (
        reply["events"][0]["offset"].as_u64().unwrap(),
        history["epoch"].as_str().unwrap().to_string(),
    )
}

#[test]
fn every_publish_reaches_the_subscribers_of_every_node_once_in_order() {
    let redis = Redis::start();
    let nodes: Vec<Node> = (0..3).map(|_| Node::start(&redis, &[])).collect();
    let mut clients: Vec<WsClient> = nodes.iter().map(|n| subscriber(n, None).0).collect();
    // Every publishing path, on every node in turn.
    let mut expected = Vec::new();
    for round in 0..4u64 {
        for (index, node) in nodes.iter().enumerate() {
            let n = round * 10 + index as u64;
            let (status, reply) = match round % 3 {
                0 => node.post("/api/events", progress(n)),
                1 => node.post(
                    "/ws/notify/job_progress",
                    json!({"job_id": "job-1", "stage": "processing", "progress": n}),
                ),
                _ => node.post(
                    "/ws/broadcast",
                    json!({"channel": "jobs", "message": progress(n)}),
                ),
            };
            assert_eq!(status, 200, "{reply}");
            let offset = reply["events"][0]["offset"]
                .as_u64()
                .or(reply["offset"].as_u64())
                .unwrap();
            expected.push((offset, n));
        }
    }
    let offsets: Vec<u64> = expected.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, (1..=12).collect::<Vec<_>>(), "Redis numbers them");
    let mut epochs = Vec::new();
    for client in &mut clients {
        let got = events(client, expected.len());
        let seen: Vec<(u64, u64)> = got.iter().map(|(o, _, p)| (*o, *p)).collect();
        assert_eq!(seen, expected, "every event once, in offset order");
        epochs.push(got[0].1.clone());
    }
    // Nothing came twice: the next event each client gets is the next one published.
    let (sentinel, _) = publish(&nodes[1], 100);
    for client in &mut clients {
        assert_eq!(events(client, 1)[0].0, sentinel);
    }
    epochs.dedup();
    assert_eq!(epochs.len(), 1, "one epoch on every node");
    // The same history on every node.
    let histories: Vec<Value> = nodes
        .iter()
        .map(|n| n.get("/api/history/jobs").1["events"].clone())
        .collect();
    assert_eq!(histories[0].as_array().unwrap().len(), 13);
    assert!(histories.iter().all(|h| *h == histories[0]));
}

#[test]
fn a_client_recovers_on_another_node_with_the_same_positions() {
    let redis = Redis::start();
    let a = Node::start(&redis, &[]);
    let b = Node::start(&redis, &[]);
    let c = Node::start(&redis, &[]);
    let (mut client, _) = subscriber(&a, None);
    for n in 1..=5 {
        publish(&b, n);
    }
    let got = events(&mut client, 5);
    let (last, epoch) = (got[4].0, got[4].1.clone());
    drop(client);
    for n in 6..=9 {
        publish(&a, n);
    }
    let since = json!({"offset": last, "epoch": epoch});
    let (mut client, reply) = subscriber(&c, Some(since));
    assert_eq!(reply["recovered"]["jobs"], true, "{reply}");
    let replayed = events(&mut client, 4);
    let replayed: Vec<(u64, String, u64)> = replayed;
    assert_eq!(
        replayed,
        (6..=9).map(|n| (n, epoch.clone(), n)).collect::<Vec<_>>()
    );
    // /api/history agrees on every node.
    for node in [&a, &b, &c] {
        let (_, history) = node.get("/api/history/jobs?since=7");
        assert_eq!(history["offset"], 9);
        assert_eq!(history["epoch"], epoch.as_str());
        let offsets: Vec<u64> = history["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["offset"].as_u64().unwrap())
            .collect();
        assert_eq!(offsets, [8, 9]);
    }
}

#[test]
fn while_redis_is_down_publishes_get_503_and_after_it_restarts_lost_history_is_not_recovered() {
    let mut redis = Redis::start();
    let a = Node::start(&redis, &[]);
    let b = Node::start(&redis, &[]);
    let (mut client, _) = subscriber(&a, None);
    for n in 1..=3 {
        publish(&b, n);
    }
    let got = events(&mut client, 3);
    let old_epoch = got[2].1.clone();

    redis.kill();
    // Until the node notices, a publish fails on the connection: 503 either way.
    for node in [&a, &b] {
        let (status, reply) = node.post("/api/events", progress(99));
        assert_eq!(status, 503, "{reply}");
        assert_eq!(reply["success"], false);
        assert!(
            reply["error"].as_str().unwrap().contains("Redis"),
            "{reply}"
        );
    }
    let health = a.wait_for_health("degraded");
    assert_eq!(health["broker"]["connected"], false);
    assert!(health["broker"]["error"].is_string(), "{health}");
    let metrics = a.metrics();
    assert!(metrics.contains("livebridge_broker_up 0"), "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("livebridge_broker_disconnects_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );

    redis.restart();
    a.wait_for_health("healthy");
    b.wait_for_health("healthy");
    assert!(a.metrics().contains("livebridge_broker_up 1"));
    // The connected client is told it missed something (Redis lost the channel).
    let notice = client.recv().expect("a notice");
    assert_eq!(notice["type"], "messages_dropped", "{notice}");
    let (offset, new_epoch) = publish(&a, 4);
    assert_eq!(offset, 1, "the channel starts over");
    assert_ne!(new_epoch, old_epoch);
    let got = events(&mut client, 1);
    assert_eq!(got[0], (1, new_epoch.clone(), 4));
    // A client that saw offset 3 of the old epoch cannot recover on any node.
    for node in [&a, &b] {
        let since = json!({"offset": 3, "epoch": old_epoch});
        let (_, reply) = subscriber(node, Some(since));
        assert_eq!(reply["recovered"]["jobs"], false, "{reply}");
        assert_eq!(reply["positions"]["jobs"]["epoch"], new_epoch.as_str());
    }
}

#[test]
fn after_a_kill_9_of_its_node_a_client_recovers_on_another_node() {
    let redis = Redis::start();
    let mut a = Node::start(&redis, &[]);
    let b = Node::start(&redis, &[]);
    let (mut client, _) = subscriber(&a, None);
    for n in 1..=5 {
        publish(&b, n);
    }
    let got = events(&mut client, 5);
    let (last, epoch) = (got[4].0, got[4].1.clone());
    a.kill();
    drop(client);
    let mut acknowledged = Vec::new();
    for n in 6..=10 {
        acknowledged.push(publish(&b, n).0);
    }
    // The client comes back through another node with what it saw.
    let since = json!({"offset": last, "epoch": epoch});
    let (mut client, reply) = subscriber(&b, Some(since));
    assert_eq!(reply["recovered"]["jobs"], true, "{reply}");
    let got: Vec<u64> = events(&mut client, 5).iter().map(|e| e.0).collect();
    assert_eq!(got, acknowledged, "every acknowledged event, once");
    let (sentinel, _) = publish(&b, 11);
    assert_eq!(events(&mut client, 1)[0].0, sentinel, "nothing twice");
}

#[test]
fn a_node_started_while_redis_is_down_refuses_clients_until_redis_answers() {
    let mut redis = Redis::start();
    let a = Node::start(&redis, &[]);
    publish(&a, 1);
    redis.kill();
    a.wait_for_health("degraded");
    // A node that never reached Redis: listening, but not ready.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_livebridge"))
        .args(["serve", "--bind", "127.0.0.1:0", "--log", "error"])
        .args(["--broker", &redis.url(), "--broker-reconnect-max", "200ms"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr = support::announced_address(&mut child);
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .build()
        .new_agent();
    let status = |path: &str, body: Option<&str>| {
        let url = format!("http://{addr}{path}");
        match body {
            Some(body) => agent.post(&url).send(body).unwrap().status().as_u16(),
            None => agent.get(&url).call().unwrap().status().as_u16(),
        }
    };
    assert_eq!(status("/api/system/health", None), 503);
    let handshake = r#"{"client_type":"gui","protocol_version":"1.0"}"#;
    assert_eq!(status("/ws/handshake", Some(handshake)), 503);
    redis.restart();
    let deadline = Instant::now() + PATIENCE;
    while status("/api/system/health", None) != 200 {
        assert!(
            Instant::now() < deadline,
            "the late node never became ready"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(status("/ws/handshake", Some(handshake)), 200);
    let _ = child.kill();
    let _ = child.wait();
}

/// Publishes 1..=3 on a node started with `extra`, restarts Redis from a snapshot holding
/// them, and returns the node's view afterwards: (the old epoch, the next publish's offset and
/// epoch, whether a client that saw offset 3 recovers).
fn after_a_snapshot_restart(extra: &[&str]) -> (String, u64, String, bool) {
    let mut redis = Redis::start();
    let node = Node::start(&redis, extra);
    let (mut client, _) = subscriber(&node, None);
    for n in 1..=3 {
        publish(&node, n);
    }
    let old_epoch = events(&mut client, 3)[2].1.clone();
    redis.restart_from_snapshot();
    // Lost and back: wait until the node has seen Redis go (it may reconnect very fast).
    let deadline = Instant::now() + PATIENCE;
    while !node
        .metrics()
        .lines()
        .any(|l| l.starts_with("livebridge_broker_disconnects_total ") && !l.ends_with(" 0"))
    {
        assert!(
            Instant::now() < deadline,
            "the node never noticed the restart"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    node.wait_for_health("healthy");
    let (offset, epoch) = publish(&node, 4);
    let since = json!({"offset": 3, "epoch": old_epoch});
    let (_, reply) = subscriber(&node, Some(since));
    let recovered = reply["recovered"]["jobs"].as_bool().unwrap();
    (old_epoch, offset, epoch, recovered)
}

#[test]
fn redis_restored_from_an_older_snapshot_starts_channels_over_unless_declared_durable() {
    // The snapshot could be older than what was acknowledged: offsets must not be given again
    // under the same epoch.
    let (old_epoch, offset, epoch, recovered) = after_a_snapshot_restart(&[]);
    assert_eq!(offset, 1);
    assert_ne!(epoch, old_epoch);
    assert!(!recovered);
    // The operator vouches that Redis keeps what it acknowledged: the channel goes on.
    let (old_epoch, offset, epoch, recovered) = after_a_snapshot_restart(&["--broker-durable"]);
    assert_eq!((offset, epoch), (4, old_epoch));
    assert!(recovered);
}

/// `(status, body)` of a request to the node at `addr`, on a fresh connection.
fn direct(node: &Node, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    node.call(method, path, body).expect("the node answers")
}

#[test]
fn a_polling_client_needs_no_sticky_sessions_behind_a_round_robin_proxy() {
    let redis = Redis::start();
    let nodes: Vec<Node> = (0..3).map(|_| Node::start(&redis, &[])).collect();
    let proxy = Proxy::start(nodes.iter().map(|n| n.addr.clone()).collect());
    let handshake = json!({"client_type": "gui", "protocol_version": "1.0"});
    let (status, reply) = proxy.call("POST", "/ws/handshake", Some(&handshake));
    assert_eq!(status, 200, "{reply}");
    let client_id = reply["client_id"].as_str().unwrap().to_string();
    // Every following request lands on the next node: two of three are forwarded.
    let subscribe = json!({"client_id": client_id,
                           "message": {"type": "subscribe", "channels": ["jobs"]}});
    let (status, reply) = proxy.call("POST", "/ws/send", Some(&subscribe));
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["response"]["type"], "subscribed");
    let poll = format!("/ws/poll?client_id={client_id}");
    let (status, reply) = proxy.call("GET", &poll, None);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["messages"][0]["type"], "connection_established");
    let mut received = Vec::new();
    for n in 1..=6u64 {
        let (status, _) = proxy.call("POST", "/api/events", Some(&progress(n)));
        assert_eq!(status, 200);
        let (status, reply) = proxy.call("GET", &format!("{poll}&wait=5"), None);
        assert_eq!(status, 200, "{reply}");
        for message in reply["messages"].as_array().unwrap() {
            received.push(message["progress"].as_f64().unwrap() as u64);
        }
    }
    assert_eq!(
        received,
        (1..=6).collect::<Vec<_>>(),
        "every event once, in order"
    );
    // Each node answers for the session, whichever holds it.
    for node in &nodes {
        let (status, reply) = direct(node, "GET", &poll, None);
        assert_eq!(status, 200, "{reply}");
    }
    // A disconnect reaches the owner, wherever it is sent.
    let disconnect = json!({"client_id": client_id});
    let (status, reply) = direct(&nodes[1], "POST", "/ws/disconnect", Some(&disconnect));
    assert_eq!(status, 200, "{reply}");
    for node in &nodes {
        assert_eq!(direct(node, "GET", &poll, None).0, 404);
    }
}

#[test]
fn a_polling_client_of_a_killed_node_is_told_its_session_is_gone_and_starts_a_new_one() {
    let redis = Redis::start();
    let mut a = Node::start(&redis, &[]);
    let b = Node::start(&redis, &[]);
    let handshake = json!({"client_type": "gui", "protocol_version": "1.0"});
    let (_, reply) = direct(&a, "POST", "/ws/handshake", Some(&handshake));
    let client_id = reply["client_id"].as_str().unwrap().to_string();
    assert_eq!(
        direct(&b, "GET", &format!("/ws/poll?client_id={client_id}"), None).0,
        200
    );
    a.kill();
    let (status, reply) = direct(&b, "GET", &format!("/ws/poll?client_id={client_id}"), None);
    assert_eq!(status, 404, "{reply}");
    let resume = json!({"client_type": "gui", "protocol_version": "1.0", "client_id": client_id});
    let (status, reply) = direct(&b, "POST", "/ws/handshake", Some(&resume));
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["resumed"], false);
    let fresh = reply["client_id"].as_str().unwrap().to_string();
    assert_ne!(fresh, client_id);
    assert_eq!(
        direct(&b, "GET", &format!("/ws/poll?client_id={fresh}"), None).0,
        200
    );
}

#[test]
fn an_operator_disconnect_sent_to_any_node_reaches_the_websocket_on_its_node() {
    let redis = Redis::start();
    let a = Node::start(&redis, &[]);
    let b = Node::start(&redis, &[]);
    let (mut client, _) = subscriber(&a, None);
    let path = format!("/websocket/disconnect/{}", client.client_id);
    let (status, reply) = direct(&b, "POST", &path, None);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["disconnected"], true);
    assert_eq!(client.close_code(), Some(4000));
}

#[test]
fn the_client_list_and_stats_answer_for_the_whole_cluster() {
    let redis = Redis::start();
    let a = Node::start(&redis, &[]);
    let b = Node::start(&redis, &[]);
    let mut c = Node::start(&redis, &[]);
    let _ws_a = subscriber(&a, None);
    let _ws_c = subscriber(&c, None);
    let handshake = json!({"client_type": "poller", "protocol_version": "1.0"});
    let (_, reply) = direct(&b, "POST", "/ws/handshake", Some(&handshake));
    let polling = reply["client_id"].as_str().unwrap().to_string();
    for node in [&a, &b, &c] {
        let (status, list) = node.get("/ws/clients");
        assert_eq!(status, 200, "{list}");
        assert_eq!(list["count"], 3, "{list}");
        assert_eq!(list["partial"], false);
        assert_eq!(list["nodes"].as_array().unwrap().len(), 3);
        let ids: Vec<&str> = list["clients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        assert!(ids.contains(&polling.as_str()), "{list}");
        let (status, stats) = node.get("/websocket/stats");
        assert_eq!(status, 200, "{stats}");
        assert_eq!(stats["total_clients"], 3, "{stats}");
        assert_eq!(stats["clients_by_type"]["poller"], 1);
        assert_eq!(stats["channels"]["jobs"], 2);
    }
    // A node that does not answer is named, and the view says it is partial.
    c.kill();
    let (_, list) = a.get("/ws/clients");
    assert_eq!(list["count"], 2, "{list}");
    assert_eq!(list["partial"], true);
    let failed: Vec<&Value> = list["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["ok"] == false)
        .collect();
    assert_eq!(failed.len(), 1, "{list}");
}

#[test]
fn a_node_whose_pub_sub_connection_was_cut_catches_up_in_order_from_redis() {
    let redis = Redis::start();
    // Waits 2 s before reconnecting: the events below are published while it is away.
    let a = Node::start(&redis, &["--broker-reconnect-min", "2s"]);
    // Started after `a` is ready, so `a`'s connections have the lower ids.
    let b = Node::start(&redis, &[]);
    let (mut client, _) = subscriber(&a, None);
    publish(&b, 1);
    assert_eq!(events(&mut client, 1)[0].0, 1);
    let a_pubsub = redis.pubsub_clients()[0];
    assert_eq!(
        redis.command(&["CLIENT", "KILL", "ID", &a_pubsub.to_string()]),
        "1"
    );
    // Published while `a` is not subscribed: `a` reads them from the channel's history in
    // Redis when it is back.
    for n in 2..=6 {
        publish(&b, n);
    }
    let got: Vec<(u64, u64)> = events(&mut client, 5)
        .iter()
        .map(|(offset, _, progress)| (*offset, *progress))
        .collect();
    assert_eq!(got, (2..=6).map(|n| (n, n)).collect::<Vec<_>>());
    let (sentinel, _) = publish(&b, 7);
    assert_eq!(events(&mut client, 1)[0].0, sentinel, "nothing twice");
    assert!(
        a.metrics()
            .lines()
            .any(|l| l.starts_with("livebridge_broker_disconnects_total ") && !l.ends_with(" 0")),
        "the cut was noticed"
    );
}

#[test]
fn events_redis_no_longer_holds_are_reported_as_dropped_and_not_recovered() {
    let redis = Redis::start();
    // Waits 2 s before reconnecting: the history is gone before it reads it.
    let a = Node::start(&redis, &["--broker-reconnect-min", "2s"]);
    let b = Node::start(&redis, &[]);
    let (mut client, _) = subscriber(&a, None);
    let (_, epoch) = publish(&b, 1);
    assert_eq!(events(&mut client, 1)[0].0, 1);
    let a_pubsub = redis.pubsub_clients()[0];
    assert_eq!(
        redis.command(&["CLIENT", "KILL", "ID", &a_pubsub.to_string()]),
        "1"
    );
    for n in 2..=4 {
        publish(&b, n);
    }
    // The channel's history is gone from Redis (as if trimmed) before `a` reads it.
    redis.command(&["DEL", "livebridge:ch:jobs:log"]);
    publish(&b, 5);
    // What `a` could not get is reported, never skipped in silence; then 5 arrives.
    let notice = client.recv().expect("a drop notice");
    assert_eq!(notice["type"], "messages_dropped", "{notice}");
    assert_eq!(notice["dropped"], 3, "{notice}");
    assert_eq!(events(&mut client, 1)[0].0, 5);
    // A client that saw offset 1 cannot recover 2..4 on `a`, which never had them. (`b`
    // received them live and still holds them in its mirror: it may replay them.)
    let since = json!({"offset": 1, "epoch": epoch});
    let (_, reply) = subscriber(&a, Some(since));
    assert_eq!(reply["recovered"]["jobs"], false, "{reply}");
}

#[test]
fn a_forwarded_long_poll_whose_client_left_is_withdrawn_and_loses_nothing() {
    let redis = Redis::start();
    let a = Node::start(&redis, &[]);
    let b = Node::start(&redis, &[]);
    let handshake = json!({"client_type": "gui", "protocol_version": "1.0"});
    let (_, reply) = direct(&a, "POST", "/ws/handshake", Some(&handshake));
    let client_id = reply["client_id"].as_str().unwrap().to_string();
    let subscribe = json!({"client_id": client_id,
                           "message": {"type": "subscribe", "channels": ["jobs"]}});
    assert_eq!(direct(&a, "POST", "/ws/send", Some(&subscribe)).0, 200);
    assert_eq!(
        direct(&a, "GET", &format!("/ws/poll?client_id={client_id}"), None).0,
        200
    );
    let attached = || {
        let (_, list) = a.get("/ws/clients");
        list["clients"][0]["attached"] == true
    };
    // A long poll through `b`, by a client that then goes away.
    let mut raw = std::net::TcpStream::connect(&b.addr).unwrap();
    let request =
        format!("GET /ws/poll?client_id={client_id}&wait=25 HTTP/1.1\r\nHost: localhost\r\n\r\n");
    std::io::Write::write_all(&mut raw, request.as_bytes()).unwrap();
    let deadline = Instant::now() + PATIENCE;
    while !attached() {
        assert!(
            Instant::now() < deadline,
            "the forwarded poll never reached its node"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(raw);
    // The hop is dropped too, so the owner withdraws the poll (long before its 25 s).
    let deadline = Instant::now() + PATIENCE;
    while attached() {
        assert!(
            Instant::now() < deadline,
            "the owner still holds the abandoned poll"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    publish(&b, 1);
    let (_, reply) = direct(&a, "GET", &format!("/ws/poll?client_id={client_id}"), None);
    let progress: Vec<u64> = reply["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["progress"].as_f64().map(|p| p as u64))
        .collect();
    assert_eq!(progress, [1], "{reply}");
}

#[test]
fn a_publish_redis_refuses_for_lack_of_memory_gets_503_and_changes_nothing() {
    let redis = Redis::start_with(&["--maxmemory", "3mb", "--maxmemory-policy", "noeviction"]);
    let a = Node::start(&redis, &[]);
    let (mut client, _) = subscriber(&a, None);
    let big = "x".repeat(30_000);
    let mut acknowledged = 0;
    let refusal = loop {
        assert!(acknowledged < 1_000, "Redis never ran out of memory");
        let event = json!({"type": "job_progress", "job_id": "j", "stage": big,
                           "progress": acknowledged + 1});
        let (status, reply) = a.post("/api/events", event);
        match status {
            200 => acknowledged += 1,
            _ => break (status, reply),
        }
    };
    assert_eq!(refusal.0, 503, "{}", refusal.1);
    let error = refusal.1["error"].as_str().unwrap();
    assert!(
        error.contains("OOM") && error.contains("nothing was published"),
        "{error}"
    );
    // Redis gave no offset to the refused event, and the node is still healthy.
    let latest = redis.command(&["HGET", "livebridge:ch:jobs:meta", "s"]);
    assert_eq!(latest, acknowledged.to_string());
    a.wait_for_health("healthy");
    let offsets: Vec<u64> = events(&mut client, acknowledged as usize)
        .iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(offsets, (1..=acknowledged).collect::<Vec<u64>>());
}

#[test]
fn a_node_restarted_on_its_address_is_listed_once_and_its_clients_counted_once() {
    let redis = Redis::start();
    let a = Node::start(&redis, &[]);
    let mut b = Node::start(&redis, &[]);
    let address = b.addr.clone();
    b.restart(&redis, &[]);
    assert_eq!(b.addr, address, "restarted on the same address");
    let _ws_b = subscriber(&b, None);
    for node in [&a, &b] {
        let (status, list) = node.get("/ws/clients");
        assert_eq!(status, 200, "{list}");
        assert_eq!(list["nodes"].as_array().unwrap().len(), 2, "{list}");
        assert_eq!(list["partial"], false, "{list}");
        assert_eq!(list["count"], 1, "{list}");
        let (_, stats) = node.get("/websocket/stats");
        assert_eq!(stats["total_clients"], 1, "{stats}");
        assert_eq!(stats["channels"]["jobs"], 1, "{stats}");
    }
    let entries = redis.command(&[
        "EVAL",
        "return #redis.call('KEYS', 'livebridge:node:*')",
        "0",
    ]);
    assert_eq!(entries, "2", "one registry entry per live node");
}

#[test]
fn a_node_stopped_gracefully_leaves_the_registry_at_once() {
    let redis = Redis::start();
    let a = Node::start(&redis, &[]);
    let mut b = Node::start(&redis, &[]);
    let (_, list) = a.get("/ws/clients");
    assert_eq!(list["nodes"].as_array().unwrap().len(), 2, "{list}");
    let status = b.terminate();
    assert!(status.success(), "a graceful stop exits 0: {status}");
    let entries = redis.command(&[
        "EVAL",
        "return #redis.call('KEYS', 'livebridge:node:*')",
        "0",
    ]);
    assert_eq!(entries, "1", "the stopped node's entry is gone");
    let (status, list) = a.get("/ws/clients");
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["nodes"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(
        list["partial"], false,
        "no node that is gone is asked: {list}"
    );
}
