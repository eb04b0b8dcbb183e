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
