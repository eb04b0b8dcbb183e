//! Messages from clients, whichever transport carried them: ping, register, subscribe,
//! unsubscribe and catalogue events.

use super::lifecycle;
use super::*;
use crate::history::parse_since;

/// How a client message arrived, which decides how its reply travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Via {
    Http,
    WebSocket,
}

pub(super) fn optional_str<'a>(
    map: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, String> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(format!("field `{field}` must be a string")),
    }
}

/// Why a client message was refused. Over HTTP an invalid message is a 400 and one the
/// client's token does not allow a 403 (the same rule as the handshake); over a WebSocket both
/// are an `error` frame.
#[derive(Debug)]
pub(super) enum Refusal {
    Invalid(String),
    Forbidden(String),
}

impl Refusal {
    pub(super) fn text(&self) -> &str {
        match self {
            Refusal::Invalid(text) | Refusal::Forbidden(text) => text,
        }
    }
}

impl From<Refusal> for CommandError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Invalid(text) => CommandError::InvalidRequest(text),
            Refusal::Forbidden(text) => CommandError::Forbidden(text),
        }
    }
}

impl From<String> for Refusal {
    fn from(problem: String) -> Self {
        Refusal::Invalid(problem)
    }
}

/// What a client message gets: its reply now (none for an event, answered once delivered),
/// and the replays of a recovery, started after the reply.
#[derive(Default)]
pub(super) struct Answer {
    pub(super) reply: Option<String>,
    pub(super) replays: Vec<crate::queue::Replay>,
}

impl Answer {
    fn reply(reply: String) -> Answer {
        Answer {
            reply: Some(reply),
            replays: Vec::new(),
        }
    }
}

/// Client types and similar labels: 1 to 64 printable characters.
pub(super) fn validate_label(field: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > 64 || value.chars().any(char::is_control) {
        return Err(format!(
            "field `{field}` must be 1 to 64 printable characters"
        ));
    }
    Ok(())
}

/// The `channels` list of a subscribe or unsubscribe message.
pub(super) fn channel_list(map: &Map<String, Value>) -> Result<Vec<String>, String> {
    let Some(Value::Array(items)) = map.get("channels") else {
        return Err("field `channels` must be a list of channel names".to_string());
    };
    items
        .iter()
        .map(|item| {
            item.as_str()
                .map(str::to_string)
                .ok_or_else(|| "field `channels` must be a list of channel names".to_string())
        })
        .collect()
}

impl Engine {
    /// Handles one message from a client: its reply, to send now (an event's `published`
    /// reply comes once it is delivered), and the replays a recovery starts after the reply.
    pub(super) fn client_message(
        &mut self,
        now: Time,
        key: SessionKey,
        message: Value,
        via: Via,
        request: Option<(RequestId, Option<&'static str>)>,
    ) -> Result<Answer, Refusal> {
        let not_a_message = || {
            Refusal::Invalid(
                "a message must be a JSON object with a string field `type`".to_string(),
            )
        };
        let Value::Object(map) = message else {
            return Err(not_a_message());
        };
        let Some(message_type) = map.get("type").and_then(Value::as_str) else {
            return Err(not_a_message());
        };
        let timestamp = self.timestamp(now);
        match message_type {
            "ping" => Ok(Answer::reply(
                json!({"type": "pong", "timestamp": timestamp}).to_string(),
            )),
            "register" => self.register(now, key, &map, via).map(Answer::reply),
            "subscribe" => {
                let channels = channel_list(&map)?;
                let since = parse_since(map.get("since"), Some(&channels))?;
                self.change_subscriptions(key, &channels, true)?;
                let recovery = self.plan_recovery(now, key, &since);
                let session = self.sessions.get(key).expect("live session");
                let mut reply = json!({
                    "type": "subscribed",
                    "channels": channels,
                    "subscriptions": session.subscriptions,
                    "positions": self.positions_json(key, channels.iter().cloned()),
                });
                if !since.is_empty() {
                    reply["recovered"] = json!(recovery.recovered);
                }
                reply["timestamp"] = Value::from(timestamp);
                Ok(Answer {
                    reply: Some(reply.to_string()),
                    replays: recovery.replays,
                })
            }
            "unsubscribe" => {
                let channels = channel_list(&map)?;
                self.change_subscriptions(key, &channels, false)?;
                let session = self.sessions.get(key).expect("live session");
                Ok(Answer::reply(
                    json!({
                        "type": "unsubscribed",
                        "channels": channels,
                        "subscriptions": session.subscriptions,
                        "timestamp": timestamp,
                    })
                    .to_string(),
                ))
            }
            _ => {
                self.client_event_message(now, key, &map, via, request)?;
                Ok(Answer::default())
            }
        }
    }

    /// `register`: sets type and name. Over a WebSocket, a `client_id` naming another live
    /// session resumes it (see [`Engine::resume_over_websocket`], handled before this).
    pub(super) fn register(
        &mut self,
        now: Time,
        key: SessionKey,
        map: &Map<String, Value>,
        via: Via,
    ) -> Result<String, Refusal> {
        let client_type = optional_str(map, "client_type")?;
        let client_name = optional_str(map, "client_name")?;
        let requested_id = optional_str(map, "client_id")?;
        if let Some(client_type) = client_type {
            validate_label("client_type", client_type)?;
        }
        let session = self.sessions.get_mut(key).expect("live session");
        if let (Some(wanted), Some(allowed)) = (
            client_type,
            session
                .claims
                .as_ref()
                .and_then(|c| c.client_type.as_deref()),
        ) && wanted != allowed
        {
            return Err(Refusal::Forbidden(format!(
                "the token allows client_type {allowed:?}, not {wanted:?}"
            )));
        }
        let own_id = session.id.to_string();
        if via == Via::Http && requested_id.is_some_and(|id| id != own_id) {
            return Err(Refusal::Invalid(
                "to resume another session over HTTP, send its client_id to /ws/handshake"
                    .to_string(),
            ));
        }
        if let Some(client_type) = client_type {
            session.client_type = client_type.to_string().into();
        }
        if let Some(client_name) = client_name {
            session.client_name = Some(client_name.to_string());
        }
        let refused = requested_id.filter(|id| *id != own_id);
        Ok(self.registered_json(now, key, false, refused).to_string())
    }

    /// The `registered` reply. `refused_resume` is the id the client asked to resume when that
    /// was not possible (it says why, as the WebSocket welcome does).
    pub(super) fn registered_json(
        &self,
        now: Time,
        key: SessionKey,
        resumed: bool,
        refused_resume: Option<&str>,
    ) -> Value {
        let session = self.sessions.get(key).expect("live session");
        let mut registered = json!({
            "type": "registered",
            "client_id": session.id,
            "client_type": session.client_type,
            "client_name": session.client_name,
            "resumed": resumed,
            "subscriptions": session.subscriptions,
        });
        if let Some(requested) = refused_resume {
            registered["reason"] = Value::from(lifecycle::resume_refusal(requested));
        }
        registered["timestamp"] = Value::from(self.timestamp(now));
        registered
    }

    pub(super) fn change_subscriptions(
        &mut self,
        key: SessionKey,
        channels: &[String],
        subscribe: bool,
    ) -> Result<(), Refusal> {
        for channel in channels {
            validate_channel_name(channel, self.config.max_channel_name_bytes)?;
        }
        let session = self.sessions.get_mut(key).expect("live session");
        if subscribe
            && let Some(claims) = &session.claims
            && let Some(denied) = channels.iter().find(|c| !claims.allows_channel(c))
        {
            return Err(Refusal::Forbidden(format!(
                "the token does not allow channel {denied:?}"
            )));
        }
        if subscribe {
            let added = channels
                .iter()
                .filter(|c| !session.subscriptions.contains(c))
                .collect::<BTreeSet<_>>()
                .len();
            let total = session.subscriptions.len() + added;
            if total > self.config.max_subscriptions {
                return Err(Refusal::Invalid(format!(
                    "subscribing would make {total} subscriptions; the limit is {}",
                    self.config.max_subscriptions
                )));
            }
            for channel in channels {
                if !session.subscriptions.contains(channel) {
                    let name = self.channels.subscribe(channel, key);
                    session.subscriptions.insert(name);
                }
            }
        } else {
            for channel in channels {
                if session.subscriptions.remove(channel) {
                    self.channels.unsubscribe(channel, key);
                }
            }
        }
        Ok(())
    }
}
