//! Typed commands: an in-process caller gets a typed result or a typed error per command,
//! through Output::CommandDone, with the HTTP status as a method of the error.

use livebridge_core::{
    ClientId, Command, CommandError, CommandResult, Config, Engine, Initiator, Input, Output,
    RequestId, SeededIds, Time,
};
use proptest::prelude::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

struct Caller {
    engine: Engine,
    next: u64,
    answers: BTreeMap<RequestId, Result<CommandResult, CommandError>>,
}

impl Caller {
    fn new() -> Self {
        Caller {
            engine: Engine::new(Config::default(), SeededIds::new(5), Time::ZERO, 0),
            next: 0,
            answers: BTreeMap::new(),
        }
    }

    fn start(&mut self, now: Time, command: Command) -> RequestId {
        self.next += 1;
        let request = RequestId(self.next);
        self.engine
            .handle_input(now, Input::Command { request, command });
        request
    }

    fn done(&mut self, request: RequestId) -> Option<Result<CommandResult, CommandError>> {
        while let Some(output) = self.engine.poll_output() {
            match output {
                Output::CommandDone { request, result } => {
                    assert!(
                        self.answers.insert(request, *result).is_none(),
                        "answered twice"
                    );
                }
                Output::Reply { .. } => panic!("a command is never answered with a Reply"),
                _ => {}
            }
        }
        self.answers.remove(&request)
    }

    fn run(&mut self, command: Command) -> Result<CommandResult, CommandError> {
        let request = self.start(Time::ZERO, command);
        self.done(request).expect("answered at once")
    }

    fn handshake(&mut self) -> ClientId {
        match self.run(Command::Handshake {
            client_type: "embedded".into(),
            protocol_version: "1.0".into(),
            client_id: None,
            client_name: None,
            token: None,
            since: Default::default(),
        }) {
            Ok(CommandResult::Handshake {
                client_id,
                resumed: false,
                queued: 1,
                ..
            }) => client_id,
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_session_driven_by_commands_gets_typed_results() {
    let mut c = Caller::new();
    let id = c.handshake();
    let polled = c.run(Command::Poll {
        client_id: id,
        wait: None,
    });
    let Ok(CommandResult::Poll { messages, dropped }) = polled else {
        panic!("{polled:?}");
    };
    assert_eq!(messages[0]["type"], "connection_established");
    assert_eq!(dropped, 0);
    let sent = c.run(Command::Send {
        client_id: id,
        message: json!({"type": "subscribe", "channels": ["jobs"]}),
    });
    let Ok(CommandResult::Sent { response }) = sent else {
        panic!("{sent:?}");
    };
    assert_eq!(response["type"], "subscribed");
    // A long poll by command is answered later, when the event is published.
    let waiting = c.start(
        Time::ZERO,
        Command::Poll {
            client_id: id,
            wait: Some(Duration::from_secs(20)),
        },
    );
    assert_eq!(c.done(waiting), None);
    let published = c.run(Command::Publish {
        events: vec![json!({"type": "job_progress", "job_id": "j", "stage": "s", "progress": 5})],
    });
    assert!(
        matches!(published, Ok(CommandResult::Delivered { .. })),
        "{published:?}"
    );
    let Some(Ok(CommandResult::Poll { messages, .. })) = c.done(waiting) else {
        panic!("the long poll is answered by the publish");
    };
    assert_eq!(messages[0]["type"], "job_progress");
    assert!(matches!(
        c.run(Command::Metrics),
        Ok(CommandResult::Metrics { text }) if text.contains("livebridge_")
    ));
    assert!(matches!(
        c.run(Command::Disconnect {
            client_id: id,
            initiator: Initiator::Client
        }),
        Ok(CommandResult::Disconnected)
    ));
}

#[test]
fn a_waiting_poll_of_a_session_that_ends_gets_a_typed_gone() {
    let mut c = Caller::new();
    let id = c.handshake();
    c.run(Command::Poll {
        client_id: id,
        wait: None,
    })
    .expect("the welcome is taken");
    let waiting = c.start(
        Time::ZERO,
        Command::Poll {
            client_id: id,
            wait: Some(Duration::from_secs(20)),
        },
    );
    assert_eq!(c.done(waiting), None);
    c.run(Command::Disconnect {
        client_id: id,
        initiator: Initiator::Admin,
    })
    .expect("disconnected");
    match c.done(waiting) {
        Some(Err(gone @ CommandError::Gone(_))) => {
            assert_eq!(gone.http_status(), 410);
            assert!(gone.message().contains("session ended"), "{gone}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn refusals_are_typed_errors_with_their_http_status() {
    let mut c = Caller::new();
    let id = c.handshake();
    let invalid = c
        .run(Command::Send {
            client_id: id,
            message: json!({"type": "teleport"}),
        })
        .unwrap_err();
    assert!(
        matches!(invalid, CommandError::InvalidRequest(_)),
        "{invalid:?}"
    );
    assert_eq!(invalid.http_status(), 400);
    assert!(invalid.to_string().contains("teleport"));
    let version = c
        .run(Command::Handshake {
            client_type: "x".into(),
            protocol_version: "2.0".into(),
            client_id: None,
            client_name: None,
            token: None,
            since: Default::default(),
        })
        .unwrap_err();
    assert!((400..500).contains(&version.http_status()), "{version:?}");
    c.engine.handle_input(Time::ZERO, Input::Shutdown);
    let refused = c.run(Command::Status).unwrap_err();
    assert!(
        matches!(refused, CommandError::Unavailable(_)),
        "{refused:?}"
    );
    assert_eq!(refused.http_status(), 503);
}

fn any_command_on(client_id: ClientId) -> impl Strategy<Value = Command> {
    prop_oneof![
        Just(Command::Poll {
            client_id,
            wait: None
        }),
        Just(Command::Send {
            client_id,
            message: json!({"type": "ping"})
        }),
        Just(Command::SendTo {
            client_id,
            message: json!({"type": "note"})
        }),
        Just(Command::Disconnect {
            client_id,
            initiator: Initiator::Admin
        }),
    ]
}

proptest! {
    /// Every command naming a session that does not exist is refused with UnknownClient, 404.
    #[test]
    fn commands_on_unknown_sessions_are_unknown_client(
        command in any::<[u8; 16]>()
            .prop_map(ClientId::from_random_bytes)
            .prop_flat_map(any_command_on),
    ) {
        let mut c = Caller::new();
        let error = c.run(command).unwrap_err();
        prop_assert!(matches!(error, CommandError::UnknownClient(_)), "{:?}", error);
        prop_assert_eq!(error.http_status(), 404);
    }
}

/// The same steps as commands and as HTTP requests, on two engines from the same seed: every
/// typed answer says what the HTTP reply says (its details are the reply's JSON, its
/// refusals the reply's status and error text), so the two paths cannot drift apart.
#[test]
fn a_typed_answer_says_what_the_http_reply_says() {
    use livebridge_core::HttpRequest;
    use serde_json::Value;

    let mut typed = Caller::new();
    let mut http = Engine::new(Config::default(), SeededIds::new(5), Time::ZERO, 0);
    let mut next = 0;
    let mut call = |method: &str, target: &str, body: &str| -> (u16, Value) {
        next += 1;
        let request = RequestId(next);
        let http_request = HttpRequest::new(method, target, body)
            .with_host("localhost:5100")
            .with_peer("127.0.0.1");
        http.handle_input(
            Time::ZERO,
            Input::Http {
                request,
                http: http_request,
            },
        );
        let mut answer = None;
        while let Some(output) = http.poll_output() {
            if let Output::Reply { request: r, reply } = output
                && r == request
            {
                answer = Some((reply.status, serde_json::from_str(&reply.body).unwrap()));
            }
        }
        answer.expect("answered at once")
    };

    let id = typed.handshake();
    let (status, body) = call(
        "POST",
        "/ws/handshake",
        r#"{"client_type":"embedded","protocol_version":"1.0"}"#,
    );
    assert_eq!(
        (status, body["client_id"].as_str()),
        (200, Some(&*id.to_string()))
    );

    let subscribe = json!({"type": "subscribe", "channels": ["jobs"]});
    let Ok(CommandResult::Sent { response }) = typed.run(Command::Send {
        client_id: id,
        message: subscribe.clone(),
    }) else {
        panic!("subscribe answered")
    };
    let (_, body) = call(
        "POST",
        "/ws/send",
        &json!({"client_id": id, "message": subscribe}).to_string(),
    );
    assert_eq!(response, body["response"]);

    let event =
        json!({"type": "job_progress", "job_id": "j", "stage": "s", "progress": 5, "message": "m"});
    let Ok(CommandResult::Delivered { details }) = typed.run(Command::Publish {
        events: vec![event.clone()],
    }) else {
        panic!("published")
    };
    assert_eq!(details, call("POST", "/api/events", &event.to_string()).1);

    let Ok(CommandResult::Poll { messages, dropped }) = typed.run(Command::Poll {
        client_id: id,
        wait: None,
    }) else {
        panic!("polled")
    };
    let (_, body) = call("GET", &format!("/ws/poll?client_id={id}"), "");
    assert_eq!(Value::from(messages), body["messages"]);
    assert_eq!(Value::from(dropped), body["dropped"]);

    let Ok(CommandResult::Report { report }) = typed.run(Command::History {
        channel: "jobs".into(),
        since: 0,
        limit: 10,
    }) else {
        panic!("history")
    };
    assert_eq!(
        report,
        call("GET", "/api/history/jobs?since=0&limit=10", "").1
    );
    assert_eq!(report["events"].as_array().map(Vec::len), Some(1));

    let Ok(CommandResult::Report { report }) = typed.run(Command::ListClients) else {
        panic!("clients")
    };
    assert_eq!(report, call("GET", "/ws/clients", "").1);

    let Ok(CommandResult::Report { report }) = typed.run(Command::Status) else {
        panic!("status")
    };
    assert_eq!(report, call("GET", "/ws/status", "").1);
    assert_eq!(report["channels"], json!({"jobs": 1}));
    let Ok(CommandResult::Report { report }) = typed.run(Command::Stats) else {
        panic!("stats")
    };
    assert_eq!(report, call("GET", "/api/websocket/stats", "").1);
    assert!(report.get("config").is_none());

    let unknown: ClientId = "00000000-0000-4000-8000-000000000000".parse().unwrap();
    let Err(refusal) = typed.run(Command::Poll {
        client_id: unknown,
        wait: None,
    }) else {
        panic!("an unknown client is refused")
    };
    let (status, body) = call("GET", &format!("/ws/poll?client_id={unknown}"), "");
    assert_eq!(refusal.http_status(), status);
    assert_eq!(Value::from(refusal.message()), body["error"]);
}
