//! Rules 4–6: the catalogue on the wire, targeting (all, channel, client, client type), the
//! bounded queue with drop-oldest and `dropped`, and the WebSocket write window.

mod support;

use livebridge_core::{Catalogue, Config, Output, SlowConsumerPolicy, close_code};
use serde_json::{Value, json};
use support::{Harness, job_progress, types};

/// One valid example of every catalogue event.
fn catalogue_examples() -> Vec<Value> {
    vec![
        json!({"type": "job_created", "job_id": "j1", "photo_id": 7, "priority": "high"}),
        json!({"type": "job_started", "job_id": "j1", "photo_id": 7}),
        json!({"type": "job_progress", "job_id": "j1", "stage": "analyzing", "progress": 45.5, "message": "half"}),
        json!({"type": "job_completed", "job_id": "j1", "photo_id": 7, "result": {"ok": true}}),
        json!({"type": "job_failed", "job_id": "j1", "photo_id": 7, "error_message": "boom"}),
        json!({"type": "photo_imported", "photo_id": 7, "session_id": 12, "file_name": "a.raw", "file_path": "/p/a.raw"}),
        json!({"type": "photo_analyzed", "photo_id": 7, "ai_score": 4.5, "analysis_results": {"faces": 2}}),
        json!({"type": "photo_selected", "photo_id": 7, "context_tag": "portrait", "selected_preset": "WhiteLayer"}),
        json!({"type": "photo_approved", "photo_id": 789, "session_id": 12}),
        json!({"type": "photo_rejected", "photo_id": 789, "session_id": 12, "reason": "blurry"}),
        json!({"type": "session_created", "session_id": 12, "session_name": "Wedding", "import_folder": "/in"}),
        json!({"type": "session_updated", "session_id": 12, "total_photos": 100, "processed_photos": 45, "status": "processing"}),
        json!({"type": "session_completed", "session_id": 12, "session_name": "Wedding", "total_photos": 100, "approved_photos": 80}),
        json!({"type": "system_status", "status": {"cpu_usage": 45.2, "gpu_temp": 62}}),
        json!({"type": "resource_warning", "resource_type": "gpu_temp", "current_value": 85.0, "threshold": 80.0}),
        json!({"type": "error_occurred", "error_type": "io", "error_message": "disk full", "job_id": "j1"}),
        json!({"type": "queue_status", "pending_count": 3, "processing_count": 1, "completed_count": 9, "failed_count": 0}),
        json!({"type": "priority_changed", "job_id": "j1", "old_priority": 1, "new_priority": 5}),
        json!({"type": "approval_queue_updated", "queue_count": 4, "session_id": 12}),
        json!({"type": "export_started", "photo_id": 7, "preset_name": "Web", "destination": "/out"}),
        json!({"type": "export_completed", "photo_id": 7, "preset_name": "Web", "output_path": "/out/a.jpg", "file_size": 1234}),
        json!({"type": "export_failed", "photo_id": 7, "preset_name": "Web", "error_message": "no space"}),
    ]
}

#[test]
fn every_catalogue_event_reaches_only_its_channel_with_type_and_millisecond_timestamp() {
    let mut h = Harness::default();
    let examples = catalogue_examples();
    let catalogue = Catalogue::builtin();
    assert_eq!(examples.len(), catalogue.events().len());
    let channels = [
        "jobs", "photos", "sessions", "system", "queue", "approval", "export",
    ];
    let clients: Vec<_> = channels
        .iter()
        .map(|channel| {
            let id = h.handshake("gui");
            h.subscribe(id, &[channel]);
            h.poll(id);
            (*channel, id)
        })
        .collect();
    for (example, spec) in examples.iter().zip(catalogue.events()) {
        let (name, channel) = (&spec.name, &spec.channel);
        assert_eq!(example["type"], *name);
        h.publish(example.clone());
        for (subscribed, id) in &clients {
            let messages = h.poll(*id)["messages"].clone();
            if subscribed == channel {
                assert_eq!(
                    types(&messages),
                    std::slice::from_ref(name),
                    "{name} on {channel}"
                );
                let message = &messages[0];
                let timestamp = message["timestamp"].as_str().unwrap();
                assert_eq!(
                    timestamp.len(),
                    "2026-11-25T12:00:00.000Z".len(),
                    "{timestamp}"
                );
                assert!(timestamp.ends_with('Z'));
                for (field, value) in example.as_object().unwrap() {
                    assert_eq!(&message[field], value, "{name}.{field}");
                }
            } else {
                assert!(types(&messages).is_empty(), "{name} leaked to {subscribed}");
            }
        }
    }
}

#[test]
fn session_updated_carries_progress_percent() {
    let mut h = Harness::default();
    let id = h.handshake("web");
    h.subscribe(id, &["sessions"]);
    h.poll(id);
    h.publish(catalogue_examples()[11].clone());
    assert_eq!(h.poll(id)["messages"][0]["progress_percent"], 45.0);
}

#[test]
fn a_batch_of_events_is_all_or_nothing_and_the_error_names_index_and_field() {
    let mut h = Harness::default();
    let id = h.handshake("web");
    h.subscribe(id, &["jobs"]);
    h.poll(id);
    let batch = json!([job_progress(1), {"type": "job_started", "job_id": "j"}]);
    let (status, reply) = h.call("POST", "/api/events", &batch.to_string());
    assert_eq!(status, 400);
    assert_eq!(
        reply["error"],
        "events[1]: job_started: missing field `photo_id`"
    );
    assert!(
        h.poll_types(id).is_empty(),
        "nothing of a rejected batch is published"
    );
    let batch = json!([job_progress(1), job_progress(2)]);
    let (status, reply) = h.call("POST", "/api/events", &batch.to_string());
    assert_eq!(status, 200);
    assert_eq!(reply["events"][1]["recipients"], 1);
    assert_eq!(h.poll_types(id), ["job_progress", "job_progress"]);
    let (status, reply) = h.call("POST", "/api/events", r#"{"type":"party"}"#);
    assert_eq!(status, 400);
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("unknown event type")
    );
}

#[test]
fn broadcast_targets_everyone_a_channel_a_client_type_or_both() {
    let mut h = Harness::default();
    let lightroom = h.handshake("lightroom");
    let gui = h.handshake("gui");
    let web = h.handshake("web");
    h.subscribe(gui, &["system"]);
    h.subscribe(lightroom, &["system"]);
    for id in [lightroom, gui, web] {
        h.poll(id);
    }
    let received = |h: &mut Harness| -> Vec<usize> {
        [lightroom, gui, web]
            .iter()
            .map(|id| h.poll_types(*id).len())
            .collect()
    };
    let message = json!({"type": "notification", "message": "Hello"});
    let (_, reply) = h.call(
        "POST",
        "/ws/broadcast",
        &json!({"message": message}).to_string(),
    );
    assert_eq!(reply["recipients"], 3);
    assert_eq!(received(&mut h), [1, 1, 1]);
    h.call(
        "POST",
        "/ws/broadcast",
        &json!({"message": message, "channel": "system"}).to_string(),
    );
    assert_eq!(received(&mut h), [1, 1, 0]);
    h.call(
        "POST",
        "/websocket/broadcast",
        &json!({"message": message, "client_type": "lightroom"}).to_string(),
    );
    assert_eq!(received(&mut h), [1, 0, 0]);
    h.call(
        "POST",
        "/api/websocket/broadcast",
        &json!({"message": message, "channel": "system", "client_type": "gui"}).to_string(),
    );
    assert_eq!(received(&mut h), [0, 1, 0]);
    let (status, reply) = h.call(
        "POST",
        &format!("/ws/send/{web}"),
        &json!({"message": {"type": "reload_config", "config": {}}}).to_string(),
    );
    assert_eq!((status, reply["recipients"].clone()), (200, json!(1)));
    assert_eq!(received(&mut h), [0, 0, 1]);
    let unknown = "/ws/send/0b7c2f4e-8a55-4d7e-9a44-0f3e1f2d3c4b";
    assert_eq!(h.call("POST", unknown, r#"{"type":"x"}"#).0, 404);
}

#[test]
fn broadcast_stamps_plain_messages_and_validates_catalogue_ones() {
    let mut h = Harness::default();
    let id = h.handshake("gui");
    h.poll(id);
    h.call(
        "POST",
        "/ws/broadcast",
        r#"{"message":{"type":"notice","text":"hi"}}"#,
    );
    let message = h.poll(id)["messages"][0].clone();
    assert_eq!(message["text"], "hi");
    assert_eq!(message["timestamp"], "2026-11-25T12:00:00.000Z");
    let (status, reply) = h.call(
        "POST",
        "/ws/broadcast",
        r#"{"message":{"type":"job_progress","job_id":1}}"#,
    );
    assert_eq!(status, 400);
    assert!(reply["error"].as_str().unwrap().contains("stage"));
    assert_eq!(
        h.call("POST", "/ws/broadcast", r#"{"message":{"text":"no type"}}"#)
            .0,
        400
    );
}

#[test]
fn a_full_queue_drops_the_oldest_and_the_next_poll_reports_how_many() {
    let mut h = Harness::new(Config {
        queue_limit: 3,
        ..Config::default()
    });
    let id = h.handshake("lightroom");
    h.subscribe(id, &["jobs"]);
    h.poll(id);
    for progress in 1..=5 {
        h.publish(job_progress(progress));
    }
    let poll = h.poll(id);
    assert_eq!(poll["dropped"], 2);
    let progress: Vec<_> = poll["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["progress"].as_f64().unwrap())
        .collect();
    assert_eq!(progress, [3.0, 4.0, 5.0], "the newest are kept, in order");
    assert_eq!(h.poll(id)["dropped"], 0, "drops are reported once");
}

#[test]
fn websocket_clients_get_events_as_frames_and_see_polling_clients() {
    let mut h = Harness::default();
    let (conn, ws_id) = h.ws_open();
    h.ws_send(
        conn,
        json!({"type": "register", "client_type": "gui", "client_name": "Desktop"}),
    );
    h.ws_send(conn, json!({"type": "subscribe", "channels": ["jobs"]}));
    assert_eq!(h.frame_types(conn), ["registered", "subscribed"]);
    let plugin = h.handshake("lightroom");
    h.subscribe(plugin, &["jobs"]);
    h.poll(plugin);
    h.send(plugin, job_progress(30));
    let frames = h.take_frames(conn);
    assert_eq!(types(&Value::Array(frames.clone())), ["job_progress"]);
    assert_eq!(frames[0]["progress"], 30.0);
    h.ws_send(conn, job_progress(60));
    assert_eq!(h.frame_types(conn), ["published"]);
    assert_eq!(h.poll(plugin)["messages"][0]["progress"], 60.0);
    assert_eq!(h.engine.session(&ws_id).unwrap().client_type, "gui");
}

#[test]
fn one_publish_shares_one_encoded_frame_among_all_websocket_recipients() {
    let mut h = Harness::default();
    let conns: Vec<_> = (0..3).map(|_| h.ws_open().0).collect();
    for conn in &conns {
        h.ws_send(*conn, json!({"type": "subscribe", "channels": ["jobs"]}));
    }
    let start = h.log.len();
    h.publish(job_progress(5));
    let frames: Vec<_> = h.log[start..]
        .iter()
        .filter_map(|(_, output)| match output {
            Output::WsFrame { frame, .. } => Some(frame.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(frames.len(), 3);
    assert!(
        frames
            .windows(2)
            .all(|w| std::sync::Arc::ptr_eq(&w[0], &w[1]))
    );
}

#[test]
fn websocket_frames_are_handed_out_within_the_write_window() {
    let mut h = Harness::new(Config {
        ws_write_window: 2,
        queue_limit: 10,
        ..Config::default()
    });
    let (conn, id) = h.ws_open();
    h.ws_send(conn, json!({"type": "subscribe", "channels": ["jobs"]}));
    h.take_frames(conn);
    h.stalled.insert(conn);
    for progress in 1..=5 {
        h.publish(job_progress(progress));
    }
    assert_eq!(h.take_frames(conn).len(), 2, "only the window goes out");
    assert_eq!(h.engine.session(&id).unwrap().queued, 3);
    h.unstall(conn);
    let progress: Vec<_> = h
        .take_frames(conn)
        .iter()
        .map(|f| f["progress"].as_f64().unwrap())
        .collect();
    assert_eq!(progress, [3.0, 4.0, 5.0]);
}

#[test]
fn a_slow_websocket_loses_the_oldest_and_is_told_how_many() {
    let mut h = Harness::new(Config {
        ws_write_window: 1,
        queue_limit: 2,
        ..Config::default()
    });
    let (conn, _) = h.ws_open();
    h.ws_send(conn, json!({"type": "subscribe", "channels": ["jobs"]}));
    h.take_frames(conn);
    h.stalled.insert(conn);
    for progress in 1..=6 {
        h.publish(job_progress(progress));
    }
    // 1 is in the window; 2, 3 and 4 were pushed out of the queue by 5 and 6.
    assert_eq!(h.take_frames(conn)[0]["progress"], 1.0);
    h.unstall(conn);
    let frames = h.take_frames(conn);
    assert_eq!(frames[0]["type"], "messages_dropped");
    assert_eq!(frames[0]["dropped"], 3);
    let progress: Vec<_> = frames[1..]
        .iter()
        .map(|f| f["progress"].as_f64().unwrap())
        .collect();
    assert_eq!(progress, [5.0, 6.0]);
}

#[test]
fn with_the_disconnect_policy_a_slow_websocket_is_closed_and_can_resume() {
    let mut h = Harness::new(Config {
        ws_write_window: 1,
        queue_limit: 2,
        slow_consumer: SlowConsumerPolicy::Disconnect,
        ..Config::default()
    });
    let (conn, id) = h.ws_open();
    h.ws_send(conn, json!({"type": "subscribe", "channels": ["jobs"]}));
    h.take_frames(conn);
    h.stalled.insert(conn);
    for progress in 1..=4 {
        h.publish(job_progress(progress));
    }
    assert_eq!(h.closed[&conn].0, close_code::SLOW_CONSUMER);
    // The closed socket had not written 1; 2 was pushed out of the queue by 4.
    let session = h.engine.session(&id).expect("the session stays resumable");
    assert_eq!((session.queued, session.unreported_drops), (2, 2));
    let (conn2, _) = h.ws_open();
    h.ws_send(
        conn2,
        json!({"type": "register", "client_id": id.to_string()}),
    );
    let frames = h.take_frames(conn2);
    assert_eq!(
        types(&Value::Array(frames.clone())),
        [
            "registered",
            "messages_dropped",
            "job_progress",
            "job_progress"
        ]
    );
    assert_eq!(frames[0]["resumed"], true);
    assert_eq!(frames[1]["dropped"], 2);
}
