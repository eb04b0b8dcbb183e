//! Cluster mode (`Config::clustered`) in the engine: publishes go through the broker and are
//! acknowledged only once it answered; channel events from the broker are applied at
//! `latest + 1` only (duplicates dropped, gaps held and read, a gap the broker no longer has
//! reported to subscribers as dropped, an epoch change too); publishes are refused while the
//! broker is lost, handshakes until it first synced; health and metrics say so.

mod support;

use livebridge_core::{
    BrokerCommand, BrokerError, BrokerEvent, ChannelHead, Config, ConnId, EventOrigin, Input,
    Output, Position,
};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::sync::Arc;
use support::{Harness, job_progress};

const NODE: &str = "node-a";

fn clustered() -> Harness {
    Harness::new(Config {
        clustered: true,
        ..Config::default()
    })
}

fn synced(heads: Vec<ChannelHead>) -> Harness {
    let mut h = clustered();
    h.input(Input::BrokerSynced {
        node: NODE.to_string(),
        node_tag: 1,
        epoch: "e0".to_string(),
        heads,
    });
    h
}

/// Broker commands emitted since the last call.
fn commands(h: &mut Harness, seen: &mut usize) -> Vec<BrokerCommand> {
    let found = h.log[*seen..]
        .iter()
        .filter_map(|(_, output)| match output {
            Output::Broker(command) => Some((**command).clone()),
            _ => None,
        })
        .collect();
    *seen = h.log.len();
    found
}

fn event(channel: &str, epoch: &str, offset: u64, progress: u32) -> BrokerEvent {
    let mut body = job_progress(progress);
    body["timestamp"] = json!("2026-12-01T00:00:00.000Z");
    BrokerEvent {
        channel: channel.into(),
        epoch: epoch.into(),
        offset,
        unix_millis: support::ANCHOR_UNIX_MILLIS,
        origin: None,
        body: body.to_string().into(),
    }
}

fn ws_subscriber(h: &mut Harness, since: Option<Value>) -> (ConnId, Value) {
    let (conn, _) = h.ws_open();
    let mut message = json!({"type": "subscribe", "channels": ["jobs"]});
    if let Some(since) = since {
        message["since"] = json!({"jobs": since});
    }
    h.ws_send(conn, message);
    let reply = h.take_frames(conn).remove(0);
    assert_eq!(reply["type"], "subscribed", "{reply}");
    (conn, reply)
}

/// What a client got: event offsets, and `messages_dropped` notices as `-dropped`.
fn seen(h: &mut Harness, conn: ConnId) -> Vec<i64> {
    h.take_frames(conn)
        .iter()
        .filter_map(|f| match f["type"].as_str() {
            Some("job_progress") => Some(f["offset"].as_i64().unwrap()),
            Some("messages_dropped") => Some(-f["dropped"].as_i64().unwrap()),
            _ => None,
        })
        .collect()
}

#[test]
fn before_the_first_sync_handshakes_upgrades_and_publishes_are_refused_and_health_says_starting() {
    let mut h = clustered();
    let body = r#"{"client_type":"gui","protocol_version":"1.0"}"#;
    let (status, reply) = h.call("POST", "/ws/handshake", body);
    assert_eq!(status, 503);
    assert!(
        reply["error"].as_str().unwrap().contains("broker"),
        "{reply}"
    );
    let refused = h.open_websocket(ConnId(1), Harness::upgrade("/ws"));
    assert_eq!(refused.unwrap_err().status, 503);
    let (status, reply) = h.call("POST", "/api/events", &job_progress(1).to_string());
    assert_eq!(status, 503, "{reply}");
    assert_eq!(reply["success"], false);
    let (status, health) = h.call("GET", "/api/system/health", "");
    assert_eq!((status, health["status"].as_str()), (503, Some("starting")));
    assert_eq!(health["broker"]["connected"], false);
    // No history to read: ready at the sync.
    h.input(Input::BrokerSynced {
        node: NODE.to_string(),
        node_tag: 1,
        epoch: "e0".to_string(),
        heads: vec![],
    });
    let (status, health) = h.call("GET", "/api/system/health", "");
    assert_eq!((status, health["status"].as_str()), (200, Some("healthy")));
    h.handshake("gui");
}

#[test]
fn a_publish_is_acknowledged_with_the_brokers_positions_only_once_the_broker_answered() {
    let mut h = synced(vec![]);
    let mut cursor = h.log.len();
    let (conn, _) = ws_subscriber(&mut h, None);
    let request = h.http("POST", "/api/events", &job_progress(10).to_string());
    assert!(
        h.take_reply(request).is_none(),
        "not answered before the broker"
    );
    assert!(
        seen(&mut h, conn).is_empty(),
        "not delivered before the broker"
    );
    let [BrokerCommand::Publish { batch, events, .. }] = &commands(&mut h, &mut cursor)[..] else {
        panic!("one publish command");
    };
    assert_eq!(&*events[0].channel, "jobs");
    assert!(!events[0].body.contains("\"offset\""), "{}", events[0].body);
    h.input(Input::BrokerPublished {
        batch: *batch,
        positions: vec![Position {
            offset: 41,
            epoch: "e7".to_string(),
        }],
    });
    let (status, reply) = h.reply_json(request);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["events"][0]["offset"], 41);
    // Offset 41 of a new epoch: the node lacks 1..40 and reads them.
    let reads = commands(&mut h, &mut cursor);
    assert!(
        matches!(&reads[..], [BrokerCommand::ReadHistory { after: 0, .. }]),
        "{reads:?}"
    );
    assert!(seen(&mut h, conn).is_empty(), "held until the gap is read");
}

#[test]
fn the_pub_sub_copy_and_the_acknowledgement_deliver_once_whichever_comes_first() {
    let mut h = synced(vec![]);
    let mut cursor = h.log.len();
    let (watcher, _) = ws_subscriber(&mut h, None);
    let (sender, _) = ws_subscriber(&mut h, None);
    // A client's own event: everyone but the sender gets it.
    h.ws_send(sender, job_progress(5));
    let [BrokerCommand::Publish { batch, .. }] = &commands(&mut h, &mut cursor)[..] else {
        panic!("one publish command");
    };
    let batch = *batch;
    let mut copy = event("jobs", "e0", 1, 5);
    copy.origin = Some(EventOrigin {
        node: NODE.into(),
        batch,
        index: 0,
    });
    h.input(Input::BrokerEvents { events: vec![copy] });
    h.input(Input::BrokerPublished {
        batch,
        positions: vec![Position {
            offset: 1,
            epoch: "e0".to_string(),
        }],
    });
    assert_eq!(seen(&mut h, watcher), [1]);
    let frames = h.take_frames(sender);
    assert_eq!(frames.len(), 1, "only `published`: {frames:?}");
    assert_eq!(frames[0]["type"], "published");
    assert_eq!(frames[0]["offset"], 1);
    // Another node's events: applied once each, in order.
    let again = event("jobs", "e0", 1, 5);
    h.input(Input::BrokerEvents {
        events: vec![again, event("jobs", "e0", 2, 6)],
    });
    assert_eq!(seen(&mut h, watcher), [2]);
    assert_eq!(seen(&mut h, sender), [2]);
    let metrics = metrics_text(&mut h);
    assert!(
        metrics.contains("livebridge_broker_duplicates_total 2"),
        "{metrics}"
    );
    assert!(metrics.contains("livebridge_broker_up 1"), "{metrics}");
}

fn metrics_text(h: &mut Harness) -> String {
    let request = h.http("GET", "/metrics", "");
    h.take_reply(request).unwrap().body
}

#[test]
fn a_gap_is_held_and_read_and_a_gap_the_broker_no_longer_has_is_reported_as_dropped() {
    let mut h = synced(vec![]);
    let mut cursor = h.log.len();
    let (conn, _) = ws_subscriber(&mut h, None);
    h.input(Input::BrokerEvents {
        events: vec![event("jobs", "e0", 1, 1), event("jobs", "e0", 3, 3)],
    });
    assert_eq!(seen(&mut h, conn), [1]);
    let reads = commands(&mut h, &mut cursor);
    assert!(
        matches!(&reads[..], [BrokerCommand::ReadHistory { after: 1, .. }]),
        "{reads:?}"
    );
    h.input(Input::HistoryRead {
        channel: "jobs".into(),
        head: ChannelHead {
            channel: "jobs".into(),
            epoch: "e0".into(),
            latest: 3,
        },
        events: vec![event("jobs", "e0", 2, 2), event("jobs", "e0", 3, 3)],
    });
    assert_eq!(seen(&mut h, conn), [2, 3]);
    // 4 and 5 are gone from the broker when 6 arrives: reported, never skipped silently.
    h.input(Input::BrokerEvents {
        events: vec![event("jobs", "e0", 6, 6)],
    });
    assert_eq!(commands(&mut h, &mut cursor).len(), 1);
    h.input(Input::HistoryRead {
        channel: "jobs".into(),
        head: ChannelHead {
            channel: "jobs".into(),
            epoch: "e0".into(),
            latest: 6,
        },
        events: vec![event("jobs", "e0", 6, 6)],
    });
    assert_eq!(seen(&mut h, conn), [-2, 6]);
    // A client that saw 3 cannot recover 4 and 5.
    let (_, reply) = ws_subscriber(&mut h, Some(json!({"offset": 3, "epoch": "e0"})));
    assert_eq!(reply["recovered"]["jobs"], false);
    let (_, reply) = ws_subscriber(&mut h, Some(json!({"offset": 5, "epoch": "e0"})));
    assert_eq!(reply["recovered"]["jobs"], true);
    let metrics = metrics_text(&mut h);
    assert!(
        metrics.contains("livebridge_broker_gaps_filled_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("livebridge_broker_gaps_unfilled_total 1"),
        "{metrics}"
    );
}

#[test]
fn a_new_epoch_is_reported_to_subscribers_and_old_positions_do_not_recover() {
    let mut h = synced(vec![]);
    let (conn, _) = ws_subscriber(&mut h, None);
    h.input(Input::BrokerEvents {
        events: vec![event("jobs", "e0", 1, 1), event("jobs", "e0", 2, 2)],
    });
    assert_eq!(seen(&mut h, conn), [1, 2]);
    h.input(Input::BrokerEvents {
        events: vec![event("jobs", "e1", 1, 9)],
    });
    assert_eq!(seen(&mut h, conn), [-1, 1]);
    let (_, reply) = ws_subscriber(&mut h, Some(json!({"offset": 2, "epoch": "e0"})));
    assert_eq!(reply["recovered"]["jobs"], false);
    assert_eq!(reply["positions"]["jobs"]["epoch"], "e1");
}

#[test]
fn a_broker_that_lost_a_channel_starts_it_over_at_the_sync() {
    let mut h = synced(vec![]);
    let (conn, _) = ws_subscriber(&mut h, None);
    h.input(Input::BrokerEvents {
        events: vec![event("jobs", "e0", 1, 1)],
    });
    assert_eq!(seen(&mut h, conn), [1]);
    h.input(Input::BrokerLost {
        error: "connection refused".to_string(),
    });
    h.input(Input::BrokerSynced {
        node: NODE.to_string(),
        node_tag: 1,
        epoch: "fresh".to_string(),
        heads: vec![],
    });
    assert_eq!(seen(&mut h, conn), [-1]);
    let (_, reply) = ws_subscriber(&mut h, Some(json!({"offset": 1, "epoch": "e0"})));
    assert_eq!(reply["recovered"]["jobs"], false);
    assert_eq!(
        reply["positions"]["jobs"],
        json!({"offset": 0, "epoch": "fresh"})
    );
}

#[test]
fn while_the_broker_is_lost_publishes_get_503_and_health_says_degraded() {
    let mut h = synced(vec![]);
    let mut cursor = h.log.len();
    let client = h.handshake("gui");
    h.input(Input::BrokerLost {
        error: "connection refused".to_string(),
    });
    let (status, reply) = h.call("POST", "/api/events", &job_progress(1).to_string());
    assert_eq!(status, 503);
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{reply}"
    );
    let broadcast = json!({"message": {"type": "note"}});
    let (status, _) = h.call("POST", "/ws/broadcast", &broadcast.to_string());
    assert_eq!(status, 503);
    assert!(commands(&mut h, &mut cursor).is_empty(), "nothing sent");
    // Sessions go on.
    assert_eq!(h.poll(client)["success"], true);
    let (status, health) = h.call("GET", "/api/system/health", "");
    assert_eq!((status, health["status"].as_str()), (200, Some("degraded")));
    assert!(
        health["broker"]["error"]
            .as_str()
            .unwrap()
            .contains("connection refused")
    );
    let metrics = metrics_text(&mut h);
    assert!(metrics.contains("livebridge_broker_up 0"), "{metrics}");
    assert!(
        metrics.contains("livebridge_broker_disconnects_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("livebridge_broker_publishes_refused_total 2"),
        "{metrics}"
    );
}

#[test]
fn a_publish_the_broker_failed_is_refused_with_whether_it_may_have_happened() {
    let mut h = synced(vec![]);
    let mut cursor = h.log.len();
    let request = h.http("POST", "/api/events", &job_progress(1).to_string());
    let [BrokerCommand::Publish { batch, .. }] = &commands(&mut h, &mut cursor)[..] else {
        panic!("one publish command");
    };
    h.input(Input::BrokerPublishFailed {
        batch: *batch,
        error: BrokerError {
            outcome_unknown: true,
            message: "connection reset".to_string(),
        },
    });
    let (status, reply) = h.reply_json(request);
    assert_eq!(status, 503);
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("may have been published")
    );
    // Refused by Redis before anything was written.
    let request = h.http("POST", "/api/events", &job_progress(2).to_string());
    let [BrokerCommand::Publish { batch, .. }] = &commands(&mut h, &mut cursor)[..] else {
        panic!("one publish command");
    };
    h.input(Input::BrokerPublishFailed {
        batch: *batch,
        error: BrokerError {
            outcome_unknown: false,
            message: "Redis refused it: OOM".to_string(),
        },
    });
    let (status, reply) = h.reply_json(request);
    assert_eq!(status, 503);
    let error = reply["error"].as_str().unwrap();
    assert!(
        error.contains("OOM") && error.contains("nothing was published"),
        "{error}"
    );
}

#[test]
fn a_broadcast_outside_channels_is_delivered_when_its_copy_comes_back_from_the_broker() {
    let mut h = synced(vec![]);
    let mut cursor = h.log.len();
    let (conn, _) = h.ws_open();
    let body = json!({"message": {"type": "note", "text": "hi"}});
    let request = h.http("POST", "/ws/broadcast", &body.to_string());
    let [
        BrokerCommand::Direct {
            batch,
            audience,
            frame,
        },
    ] = &commands(&mut h, &mut cursor)[..]
    else {
        panic!("one direct command");
    };
    assert!(h.take_frames(conn).is_empty());
    h.input(Input::BrokerDirect {
        audience: audience.clone(),
        frame: Arc::clone(frame),
    });
    h.input(Input::BrokerPublished {
        batch: *batch,
        positions: vec![],
    });
    assert_eq!(h.reply_json(request).0, 200);
    let frames = h.take_frames(conn);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0]["text"], "hi");
}

#[test]
fn a_client_ahead_of_a_lagging_node_recovers_and_is_not_sent_what_it_has() {
    let mut h = synced(vec![]);
    h.input(Input::BrokerEvents {
        events: vec![event("jobs", "e0", 1, 1)],
    });
    // It saw 3 on another node; this one has only 1 so far.
    let (conn, reply) = ws_subscriber(&mut h, Some(json!({"offset": 3, "epoch": "e0"})));
    assert_eq!(reply["recovered"]["jobs"], true);
    assert_eq!(
        reply["positions"]["jobs"]["offset"], 3,
        "its own position, not the node's 1"
    );
    h.input(Input::BrokerEvents {
        events: (2..=5).map(|o| event("jobs", "e0", o, o as u32)).collect(),
    });
    assert_eq!(seen(&mut h, conn), [4, 5]);
}

#[test]
fn the_sync_reads_what_the_node_lacks_and_the_node_is_ready_once_it_has_it() {
    let mut h = clustered();
    let mut cursor = h.log.len();
    h.input(Input::BrokerSynced {
        node: NODE.to_string(),
        node_tag: 1,
        epoch: "e0".to_string(),
        heads: vec![ChannelHead {
            channel: "jobs".into(),
            epoch: "e5".into(),
            latest: 2,
        }],
    });
    let reads = commands(&mut h, &mut cursor);
    assert!(
        matches!(&reads[..], [BrokerCommand::ReadHistory { after: 0, .. }]),
        "{reads:?}"
    );
    let (status, _) = h.call("GET", "/api/system/health", "");
    assert_eq!(status, 503, "not ready before the read");
    h.input(Input::HistoryRead {
        channel: "jobs".into(),
        head: ChannelHead {
            channel: "jobs".into(),
            epoch: "e5".into(),
            latest: 2,
        },
        events: vec![event("jobs", "e5", 1, 1), event("jobs", "e5", 2, 2)],
    });
    let (status, _) = h.call("GET", "/api/system/health", "");
    assert_eq!(status, 200);
    let (_, history) = h.call("GET", "/api/history/jobs", "");
    assert_eq!(history["offset"], 2);
    assert_eq!(history["epoch"], "e5");
    assert_eq!(history["events"].as_array().unwrap().len(), 2);
}

/// One arrival at the node, in the property test.
#[derive(Clone, Debug)]
enum Arrival {
    /// The Pub/Sub copy of this offset (may repeat, may come out of order).
    Copy(u64),
    /// The broker trims its history up to this offset.
    Trim(u64),
    /// The node answers its pending history read.
    AnswerRead,
}

fn arrivals() -> impl Strategy<Value = Vec<Arrival>> {
    prop::collection::vec(
        prop_oneof![
            6 => (1u64..=30).prop_map(Arrival::Copy),
            1 => (1u64..=30).prop_map(Arrival::Trim),
            3 => Just(Arrival::AnswerRead),
        ],
        0..60,
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct("proptest-regressions/broker.txt"),
        )),
        ..ProptestConfig::default()
    })]

    /// Whatever order, duplication and trimming the broker's events come in, a subscriber gets
    /// each offset at most once, in increasing order, and every offset it does not get is
    /// reported as dropped before a later one arrives: received + reported = the head.
    #[test]
    fn subscribers_get_each_offset_once_in_order_or_are_told_what_they_missed(
        script in arrivals()
    ) {
        let mut h = synced(vec![]);
        let mut cursor = h.log.len();
        let (conn, _) = ws_subscriber(&mut h, None);
        let published = 30u64;
        let mut trimmed_through = 0u64;
        let mut reads: Vec<u64> = Vec::new();
        let answer = |h: &mut Harness, after: u64, trimmed_through: u64| {
            let from = after.max(trimmed_through) + 1;
            let events = (from..=published).map(|o| event("jobs", "e0", o, o as u32)).collect();
            h.input(Input::HistoryRead {
                channel: "jobs".into(),
                head: ChannelHead { channel: "jobs".into(), epoch: "e0".into(), latest: published },
                events,
            });
        };
        for arrival in script {
            match arrival {
                Arrival::Copy(offset) => h.input(Input::BrokerEvents {
                    events: vec![event("jobs", "e0", offset, offset as u32)],
                }),
                Arrival::Trim(offset) => trimmed_through = trimmed_through.max(offset),
                Arrival::AnswerRead => {
                    if !reads.is_empty() {
                        let after = reads.remove(0);
                        answer(&mut h, after, trimmed_through);
                    }
                }
            }
            for command in commands(&mut h, &mut cursor) {
                if let BrokerCommand::ReadHistory { after, .. } = command {
                    reads.push(after);
                }
            }
        }
        // Every copy arrives in the end, and reads are answered until none is asked for.
        for offset in 1..=published {
            h.input(Input::BrokerEvents { events: vec![event("jobs", "e0", offset, offset as u32)] });
        }
        loop {
            for command in commands(&mut h, &mut cursor) {
                if let BrokerCommand::ReadHistory { after, .. } = command {
                    reads.push(after);
                }
            }
            if reads.is_empty() { break; }
            let after = reads.remove(0);
            answer(&mut h, after, trimmed_through);
        }
        let got = seen(&mut h, conn);
        let mut last = 0i64;
        let mut accounted = 0i64;
        for item in &got {
            if *item < 0 {
                accounted += -item;
            } else {
                prop_assert!(*item > last, "out of order or twice: {:?}", got);
                prop_assert_eq!(accounted, *item - 1, "a silent gap before {}: {:?}", item, got);
                last = *item;
                accounted += 1;
            }
        }
        prop_assert_eq!(accounted, published as i64, "received + reported dropped: {:?}", got);
    }
}

#[test]
fn requests_naming_another_nodes_session_are_forwarded_once_and_answered_here_if_it_is_gone() {
    let mut h = synced(vec![]);
    let mine = h.handshake("gui");
    assert_eq!(mine.node_tag(), 1, "ids made here carry this node's tag");
    // A session of node 7.
    let theirs = livebridge_core::ClientId::from_random_bytes_on_node([9; 16], 7);
    let poll = format!("/ws/poll?client_id={theirs}");
    let request = h.http("GET", &poll, "");
    let forwarded = h.log.iter().rev().find_map(|(_, output)| match output {
        Output::Forward {
            request: r,
            node,
            http,
        } if *r == request => Some((*node, http.clone())),
        _ => None,
    });
    let (node, http) = forwarded.expect("forwarded to the owner");
    assert_eq!(node, 7);
    assert!(h.take_reply(request).is_none(), "the owner answers");
    // The owner unreachable: answered here as an unknown session.
    h.input(Input::ForwardFailed {
        request,
        http,
        error: "connection refused".to_string(),
    });
    assert_eq!(h.reply_json(request).0, 404);
    // A request another node forwarded here is answered here, never forwarded again.
    let mut again = livebridge_core::HttpRequest::new("GET", &poll, "")
        .with_host("localhost:5100")
        .with_peer("127.0.0.1");
    again.forwarded = true;
    let before = h.log.len();
    h.input(Input::Http {
        request: livebridge_core::RequestId(9_000),
        http: again,
    });
    assert!(
        !h.log[before..]
            .iter()
            .any(|(_, o)| matches!(o, Output::Forward { .. }))
    );
    assert_eq!(h.reply_json(livebridge_core::RequestId(9_000)).0, 404);
    // This node's own sessions are handled here.
    assert_eq!(h.poll(mine)["success"], true);
}

#[test]
fn a_resume_whose_node_is_gone_gets_a_new_session_here() {
    let mut h = synced(vec![]);
    let theirs = livebridge_core::ClientId::from_random_bytes_on_node([3; 16], 9);
    let body = json!({"client_type": "gui", "protocol_version": "1.0",
                      "client_id": theirs.to_string()});
    let request = h.http("POST", "/ws/handshake", &body.to_string());
    let http = h
        .log
        .iter()
        .rev()
        .find_map(|(_, output)| match output {
            Output::Forward { http, .. } => Some(http.clone()),
            _ => None,
        })
        .expect("forwarded");
    h.input(Input::ForwardFailed {
        request,
        http,
        error: "connection refused".to_string(),
    });
    let (status, reply) = h.reply_json(request);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["resumed"], false);
    assert_ne!(reply["client_id"], theirs.to_string());
}

#[test]
fn a_cluster_wide_view_waits_for_the_other_nodes_and_merges_their_answers() {
    let mut h = synced(vec![]);
    h.handshake("gui");
    let request = h.http("GET", "/ws/clients", "");
    assert!(
        h.log
            .iter()
            .any(|(_, o)| matches!(o, Output::Gather { request: r, .. } if *r == request))
    );
    assert!(h.take_reply(request).is_none());
    let other = json!({"success": true, "count": 1, "clients": [
        {"id": "x", "connected_at": "2000-01-01T00:00:00.000Z"}]});
    h.input(Input::Gathered {
        request,
        parts: vec![livebridge_core::NodePart {
            node: 2,
            answer: Ok(other.to_string()),
        }],
        error: None,
    });
    let (status, list) = h.reply_json(request);
    assert_eq!(status, 200);
    assert_eq!(list["count"], 2, "{list}");
    assert_eq!(list["clients"][0]["node"], "0002");
    assert_eq!(list["clients"][1]["node"], "0001");
}
