//! Channel history and recovery: offsets without holes, epochs, `since` on subscribe and on
//! every resume path, `recovered: false` when history cannot cover what was missed, the history
//! endpoint, and the durable path (nothing delivered or acknowledged before the store holds it;
//! a store failure refuses and gives the offsets again).

mod support;

use livebridge_core::{
    Config, ConnId, HttpRequest, Input, Output, StoreError, StoreErrorKind, StoredChannel,
    StoredEvent,
};
use serde_json::{Value, json};
use std::time::Duration;
use support::{Harness, job_progress};

fn progress_of(frames: &[Value]) -> Vec<f64> {
    frames
        .iter()
        .filter(|f| f["type"] == "job_progress")
        .map(|f| f["progress"].as_f64().unwrap())
        .collect()
}

fn offsets_of(frames: &[Value]) -> Vec<u64> {
    frames.iter().filter_map(|f| f["offset"].as_u64()).collect()
}

/// A WebSocket client subscribed to `jobs`; returns its connection and the epoch.
fn subscriber(h: &mut Harness) -> (ConnId, String) {
    let (conn, _) = h.ws_open();
    h.ws_send(conn, json!({"type": "subscribe", "channels": ["jobs"]}));
    let reply = h.take_frames(conn).remove(0);
    assert_eq!(reply["type"], "subscribed");
    let epoch = reply["positions"]["jobs"]["epoch"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(reply["positions"]["jobs"]["offset"], 0);
    (conn, epoch)
}

fn since(epoch: &str, offset: u64) -> Value {
    json!({"jobs": {"offset": offset, "epoch": epoch}})
}

#[test]
fn channel_messages_carry_channel_offset_and_epoch_and_offsets_have_no_holes() {
    let mut h = Harness::default();
    let (conn, epoch) = subscriber(&mut h);
    let (sender, _) = subscriber(&mut h);
    // Three ways onto the channel: a batch of events, a channel broadcast, a client's event.
    let reply = h.publish(json!([job_progress(1), job_progress(2)]));
    assert_eq!(reply["events"][0]["offset"], 1);
    assert_eq!(reply["events"][1]["offset"], 2);
    let (_, broadcast) = h.call(
        "POST",
        "/ws/broadcast",
        &json!({"channel": "jobs", "message": {"type": "note", "offset": 99}}).to_string(),
    );
    assert_eq!(broadcast["offset"], 3);
    h.ws_send(sender, job_progress(4));
    let published = h.take_frames(sender).pop().unwrap();
    assert_eq!(published["type"], "published");
    assert_eq!(
        (published["offset"].clone(), published["epoch"].clone()),
        (json!(4), json!(epoch))
    );
    let frames = h.take_frames(conn);
    assert_eq!(offsets_of(&frames), [1, 2, 3, 4]);
    for frame in &frames {
        assert_eq!(frame["channel"], "jobs");
        assert_eq!(frame["epoch"], epoch.as_str());
    }
    assert_eq!(
        frames[2]["type"], "note",
        "a broadcast's own `offset` is replaced"
    );
    // Messages to one client or one client type stay outside channels.
    h.call(
        "POST",
        "/ws/broadcast",
        &json!({"channel": "jobs", "client_type": "unknown", "message": {"type": "t"}}).to_string(),
    );
    h.call(
        "POST",
        "/ws/broadcast",
        &json!({"message": {"type": "all"}}).to_string(),
    );
    let frames = h.take_frames(conn);
    assert_eq!(frames.len(), 2);
    assert!(
        frames.iter().all(|f| f.get("offset").is_none()),
        "{frames:?}"
    );
    // The next channel event continues without a hole.
    h.publish(job_progress(5));
    assert_eq!(offsets_of(&h.take_frames(conn)), [5]);
}

#[test]
fn a_websocket_client_that_lost_its_session_recovers_everything_it_missed_in_order() {
    let mut h = Harness::default();
    let (conn, epoch) = subscriber(&mut h);
    h.publish(job_progress(1));
    assert_eq!(offsets_of(&h.take_frames(conn)), [1]);
    h.client_closes(conn, Some(1000));
    for p in 2..=6 {
        h.publish(job_progress(p));
    }
    let (conn, _) = h.ws_open();
    h.ws_send(
        conn,
        json!({"type": "subscribe", "channels": ["jobs"], "since": since(&epoch, 1)}),
    );
    h.publish(job_progress(7));
    let frames = h.take_frames(conn);
    assert_eq!(frames[0]["type"], "subscribed");
    assert_eq!(frames[0]["recovered"], json!({"jobs": true}));
    assert_eq!(frames[0]["positions"]["jobs"]["offset"], 6);
    assert_eq!(progress_of(&frames[1..]), [2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
    assert_eq!(offsets_of(&frames[1..]), [2, 3, 4, 5, 6, 7]);
}

#[test]
fn a_polling_client_recovers_in_its_next_poll() {
    let mut h = Harness::default();
    let id = h.handshake("lightroom");
    h.subscribe(id, &["jobs"]);
    h.poll(id);
    h.publish(job_progress(1));
    let epoch = h.poll(id)["messages"][0]["epoch"]
        .as_str()
        .unwrap()
        .to_string();
    h.call(
        "POST",
        "/ws/disconnect",
        &json!({"client_id": id}).to_string(),
    );
    h.publish(job_progress(2));
    h.publish(job_progress(3));
    let id = h.handshake("lightroom");
    h.poll(id);
    let (status, reply) = h.send(
        id,
        json!({"type": "subscribe", "channels": ["jobs"], "since": since(&epoch, 1)}),
    );
    assert_eq!(status, 200);
    assert_eq!(reply["response"]["recovered"]["jobs"], true);
    let messages = h.poll(id)["messages"].as_array().unwrap().clone();
    assert_eq!(offsets_of(&messages), [2, 3]);
}

#[test]
fn nothing_is_replayed_and_recovered_is_false_when_history_cannot_cover_the_gap() {
    let mut h = Harness::new(Config {
        history_size: 3,
        recovery_max: 4,
        ..Config::default()
    });
    let (conn, epoch) = subscriber(&mut h);
    for p in 1..=6 {
        h.publish(job_progress(p));
    }
    h.take_frames(conn);
    let cases = [
        (since(&epoch, 1), "events 2 and 3 are no longer kept"),
        (since("another-epoch", 5), "the history was lost since"),
        (since(&epoch, 7), "ahead of the channel"),
    ];
    for (position, why) in cases {
        h.ws_send(
            conn,
            json!({"type": "subscribe", "channels": ["jobs"], "since": position}),
        );
        let frames = h.take_frames(conn);
        assert_eq!(frames.len(), 1, "{why}: nothing replayed: {frames:?}");
        assert_eq!(frames[0]["recovered"]["jobs"], false, "{why}");
        assert_eq!(frames[0]["positions"]["jobs"]["offset"], 6);
    }
    // Within history: recovered.
    h.ws_send(
        conn,
        json!({"type": "subscribe", "channels": ["jobs"], "since": since(&epoch, 4)}),
    );
    let frames = h.take_frames(conn);
    assert_eq!(frames[0]["recovered"]["jobs"], true);
    assert_eq!(offsets_of(&frames[1..]), [5, 6]);
    // More than recovery_max missed: refused even though history would reach.
    let mut h = Harness::new(Config {
        recovery_max: 2,
        ..Config::default()
    });
    let (conn, epoch) = subscriber(&mut h);
    for p in 1..=3 {
        h.publish(job_progress(p));
    }
    h.take_frames(conn);
    h.ws_send(
        conn,
        json!({"type": "subscribe", "channels": ["jobs"], "since": since(&epoch, 0)}),
    );
    assert_eq!(h.take_frames(conn)[0]["recovered"]["jobs"], false);
}

#[test]
fn a_bad_since_is_refused_and_changes_nothing() {
    let mut h = Harness::default();
    let (conn, _) = subscriber(&mut h);
    for bad in [
        json!("x"),
        json!({"jobs": 3}),
        json!({"jobs": {"offset": -1, "epoch": "e"}}),
        json!({"photos": {"offset": 1, "epoch": "e"}}),
    ] {
        h.ws_send(
            conn,
            json!({"type": "subscribe", "channels": ["jobs"], "since": bad}),
        );
        let frames = h.take_frames(conn);
        assert_eq!(frames[0]["type"], "error", "{bad}");
        assert!(frames[0]["error"].as_str().unwrap().contains("since"));
    }
}

#[test]
fn an_overflowed_client_gets_what_it_lost_by_subscribing_again_with_its_position() {
    let mut h = Harness::new(Config {
        queue_limit: 2,
        ws_write_window: 1,
        ..Config::default()
    });
    let (conn, epoch) = subscriber(&mut h);
    h.stalled.insert(conn);
    for p in 1..=8 {
        h.publish(job_progress(p));
    }
    h.unstall(conn);
    let frames = h.take_frames(conn);
    // 1 was in the window, 7 and 8 in the queue; 2 to 6 were dropped and reported.
    assert_eq!(offsets_of(&frames), [1, 7, 8]);
    let notice = frames
        .iter()
        .find(|f| f["type"] == "messages_dropped")
        .unwrap();
    assert_eq!(notice["dropped"], 5);
    h.ws_send(
        conn,
        json!({"type": "subscribe", "channels": ["jobs"], "since": since(&epoch, 1)}),
    );
    let frames = h.take_frames(conn);
    assert_eq!(frames[0]["recovered"]["jobs"], true);
    assert_eq!(offsets_of(&frames[1..]), [2, 3, 4, 5, 6, 7, 8]);
}

#[test]
fn a_replay_longer_than_the_queue_is_delivered_whole() {
    let mut h = Harness::new(Config {
        queue_limit: 3,
        ws_write_window: 2,
        ..Config::default()
    });
    let (conn, epoch) = subscriber(&mut h);
    h.client_closes(conn, None);
    for p in 1..=40 {
        h.publish(job_progress(p % 100));
    }
    let (conn, _) = h.ws_open();
    h.ws_send(
        conn,
        json!({"type": "subscribe", "channels": ["jobs"], "since": since(&epoch, 0)}),
    );
    let frames = h.take_frames(conn);
    assert_eq!(offsets_of(&frames), (1..=40).collect::<Vec<_>>());
    assert!(frames.iter().all(|f| f["type"] != "messages_dropped"));
}

#[test]
fn a_resume_with_positions_replays_what_died_in_the_old_socket_without_duplicates() {
    for path in ["register", "url", "handshake"] {
        let mut h = Harness::default();
        let (conn, epoch) = subscriber(&mut h);
        let id = h.engine.sessions()[0].client_id;
        h.publish(job_progress(1));
        assert_eq!(offsets_of(&h.take_frames(conn)), [1]);
        // 2 and 3 are handed to the socket, which dies before writing them; 4 is queued.
        h.stalled.insert(conn);
        for p in 2..=4 {
            h.publish(job_progress(p));
        }
        h.client_closes(conn, None);
        let positions = since(&epoch, 1);
        let received = match path {
            "register" => {
                let (conn, _) = h.ws_open();
                h.ws_send(
                    conn,
                    json!({"type": "register", "client_id": id, "since": positions}),
                );
                h.take_frames(conn)
            }
            "url" => {
                let conn = ConnId(77);
                let target = format!("/ws?client_id={id}&since={positions}");
                let target = target
                    .replace('{', "%7B")
                    .replace('}', "%7D")
                    .replace('"', "%22");
                h.open_websocket(
                    conn,
                    HttpRequest::new("GET", &target, "")
                        .with_host("localhost:5100")
                        .with_peer("127.0.0.1"),
                )
                .expect("upgrade accepted");
                h.take_frames(conn)
            }
            _ => {
                let body = json!({"client_type": "gui", "client_id": id, "since": positions});
                let (_, reply) = h.call("POST", "/ws/handshake", &body.to_string());
                assert_eq!(reply["resumed"], true);
                assert_eq!(reply["recovered"]["jobs"], true, "{reply}");
                h.poll(id)["messages"].as_array().unwrap().clone()
            }
        };
        if path != "handshake" {
            assert_eq!(received[0]["resumed"], true, "{path}");
            assert_eq!(received[0]["recovered"]["jobs"], true, "{path}");
            assert_eq!(received[0]["positions"]["jobs"]["offset"], 4, "{path}");
        }
        assert_eq!(
            offsets_of(&received),
            [2, 3, 4],
            "{path}: once each, in order"
        );
    }
}

#[test]
fn history_is_read_by_operators_oldest_first_and_says_when_it_is_incomplete() {
    let mut h = Harness::new(Config {
        history_size: 3,
        ..Config::default()
    });
    for p in 1..=5 {
        h.publish(job_progress(p));
    }
    let (status, reply) = h.call("GET", "/api/history/jobs?since=2&limit=2", "");
    assert_eq!(status, 200);
    assert_eq!(reply["offset"], 5);
    assert_eq!(reply["complete"], true);
    assert_eq!(offsets_of(reply["events"].as_array().unwrap()), [3, 4]);
    let (_, reply) = h.call("GET", "/api/history/jobs", "");
    assert_eq!(reply["complete"], false, "1 and 2 are gone");
    assert_eq!(offsets_of(reply["events"].as_array().unwrap()), [3, 4, 5]);
    let (_, quiet) = h.call("GET", "/api/history/never-used", "");
    assert_eq!(
        (quiet["offset"].clone(), quiet["complete"].clone()),
        (json!(0), json!(true))
    );
    assert_eq!(h.call("GET", "/api/history/bad%20name", "").0, 400);
    assert_eq!(h.call("GET", "/api/history/jobs?since=x", "").0, 400);
    let mut guarded = Harness::new(Config {
        admin_token: Some("t".to_string()),
        ..Config::default()
    });
    assert_eq!(guarded.call("GET", "/api/history/jobs", "").0, 401);
}

#[test]
fn history_ages_out_after_its_ttl() {
    let mut h = Harness::new(Config {
        history_ttl: Duration::from_secs(60),
        ..Config::default()
    });
    let (conn, epoch) = subscriber(&mut h);
    h.publish(job_progress(1));
    h.advance(Duration::from_secs(30));
    h.publish(job_progress(2));
    h.advance(Duration::from_secs(40));
    h.take_frames(conn);
    h.ws_send(
        conn,
        json!({"type": "subscribe", "channels": ["jobs"], "since": since(&epoch, 0)}),
    );
    assert_eq!(
        h.take_frames(conn)[0]["recovered"]["jobs"],
        false,
        "1 aged out"
    );
    h.ws_send(
        conn,
        json!({"type": "subscribe", "channels": ["jobs"], "since": since(&epoch, 1)}),
    );
    let frames = h.take_frames(conn);
    assert_eq!(frames[0]["recovered"]["jobs"], true);
    assert_eq!(offsets_of(&frames[1..]), [2]);
}

fn durable() -> Harness {
    let mut h = Harness::new(Config {
        durable: true,
        ..Config::default()
    });
    h.store_instantly = false;
    h
}

/// A batch the engine asked to store: its offsets and what the store may trim.
type StoreRequest = (livebridge_core::BatchId, Vec<u64>, Vec<(String, u64)>);

fn persisted(h: &Harness) -> Vec<StoreRequest> {
    h.log
        .iter()
        .filter_map(|(_, output)| match output {
            Output::Persist(persist) => Some((
                persist.batch,
                persist.events.iter().map(|e| e.offset).collect(),
                persist
                    .keep_from
                    .iter()
                    .map(|(c, from)| (c.to_string(), *from))
                    .collect(),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn with_durable_history_nothing_is_delivered_or_acknowledged_before_the_store_holds_it() {
    let mut h = durable();
    let (conn, _) = subscriber(&mut h);
    let request = h.http("POST", "/api/events", &job_progress(1).to_string());
    assert!(h.take_reply(request).is_none(), "not acknowledged yet");
    assert!(h.take_frames(conn).is_empty(), "not delivered yet");
    let stored = persisted(&h);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].1, [1]);
    assert_eq!(stored[0].2, [("jobs".to_string(), 1)]);
    let batch = h.unstored.remove(0);
    h.input(Input::Persisted { batch });
    let (status, reply) = h.reply_json(request);
    assert_eq!(
        (status, reply["events"][0]["offset"].clone()),
        (200, json!(1))
    );
    assert_eq!(offsets_of(&h.take_frames(conn)), [1]);
}

#[test]
fn a_store_failure_refuses_that_publish_and_those_after_it_and_their_offsets_are_given_again() {
    let mut h = durable();
    let (conn, _) = subscriber(&mut h);
    let first = h.http("POST", "/api/events", &job_progress(1).to_string());
    let batch = h.unstored.remove(0);
    h.input(Input::Persisted { batch });
    assert_eq!(h.reply_json(first).0, 200);
    let second = h.http("POST", "/api/events", &job_progress(2).to_string());
    let third = h.http("POST", "/api/events", &job_progress(3).to_string());
    let failed = h.unstored.remove(0);
    h.unstored.clear();
    h.input(Input::PersistFailed {
        batch: failed,
        error: StoreError {
            kind: StoreErrorKind::Full,
            message: "/data: No space left on device".to_string(),
        },
    });
    for request in [second, third] {
        let (status, reply) = h.reply_json(request);
        assert_eq!(status, 507);
        assert!(reply["error"].as_str().unwrap().contains("No space left"));
    }
    let fourth = h.http("POST", "/api/events", &job_progress(4).to_string());
    let (_, offsets, _) = persisted(&h).pop().unwrap();
    assert_eq!(offsets, [2], "offset 2 is given again: no hole");
    let batch = h.unstored.remove(0);
    h.input(Input::Persisted { batch });
    assert_eq!(h.reply_json(fourth).1["events"][0]["offset"], 2);
    assert_eq!(offsets_of(&h.take_frames(conn)), [1, 2]);
    assert_eq!(progress_of(&h.take_frames(conn)), [] as [f64; 0]);
}

#[test]
fn a_client_event_over_the_socket_is_answered_once_stored_and_refused_if_not() {
    let mut h = durable();
    let (reader, _) = subscriber(&mut h);
    let (writer, _) = subscriber(&mut h);
    h.ws_send(writer, job_progress(1));
    assert!(h.take_frames(writer).is_empty());
    let batch = h.unstored.remove(0);
    h.input(Input::Persisted { batch });
    assert_eq!(h.take_frames(writer)[0]["type"], "published");
    assert_eq!(offsets_of(&h.take_frames(reader)), [1]);
    h.ws_send(writer, job_progress(2));
    let batch = h.unstored.remove(0);
    h.input(Input::PersistFailed {
        batch,
        error: StoreError {
            kind: StoreErrorKind::Failed,
            message: "I/O error".to_string(),
        },
    });
    let frames = h.take_frames(writer);
    assert_eq!(frames[0]["type"], "error");
    assert!(h.take_frames(reader).is_empty());
}

#[test]
fn loaded_history_continues_its_offsets_and_keeps_its_epoch() {
    let mut h = Harness::default();
    let stored = |offset: u64| {
        StoredEvent {
        channel: "jobs".into(),
        epoch: "kept".into(),
        offset,
        unix_millis: support::ANCHOR_UNIX_MILLIS - 1_000,
        frame: format!(
            r#"{{"type":"job_progress","progress":{offset}.0,"channel":"jobs","offset":{offset},"epoch":"kept"}}"#
        )
        .into(),
    }
    };
    h.input(Input::HistoryLoaded {
        epoch: Some("fresh".to_string()),
        channels: vec![StoredChannel {
            name: "jobs".to_string(),
            epoch: "kept".to_string(),
            latest: 12,
            events: (10..=12).map(stored).collect(),
        }],
    });
    let (conn, _) = h.ws_open();
    h.ws_send(
        conn,
        json!({"type": "subscribe", "channels": ["jobs", "photos"], "since": since("kept", 9)}),
    );
    let frames = h.take_frames(conn);
    assert_eq!(
        frames[0]["positions"]["jobs"],
        json!({"offset": 12, "epoch": "kept"})
    );
    assert_eq!(
        frames[0]["positions"]["photos"],
        json!({"offset": 0, "epoch": "fresh"})
    );
    assert_eq!(offsets_of(&frames[1..]), [10, 11, 12]);
    h.publish(job_progress(13));
    let live = h.take_frames(conn);
    assert_eq!(offsets_of(&live), [13]);
    assert_eq!(live[0]["epoch"], "kept");
}
