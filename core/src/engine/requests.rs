//! The requests the engine has not answered yet, and the form their answer leaves in: a typed
//! [`Output::CommandDone`] for an in-process command, an [`Output::Reply`] for an HTTP request
//! (with CORS headers when it came from an allowed browser origin).

use crate::command::{Answered, Outcome};
use crate::ids::RequestId;
use crate::output::{Output, Reply};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
pub(super) struct Requests {
    /// Commands not answered yet: their answers are typed, not HTTP replies.
    commands: BTreeSet<RequestId>,
    /// Allowed browser origins of HTTP requests not answered yet.
    cors_origins: BTreeMap<RequestId, String>,
}

impl Requests {
    /// An in-process command arrived.
    pub(super) fn command(&mut self, request: RequestId) {
        self.commands.insert(request);
    }

    /// An HTTP request from an allowed browser `origin` arrived: its reply will let that
    /// origin read it.
    pub(super) fn http_from_origin(&mut self, request: RequestId, origin: &str) {
        self.cors_origins.insert(request, origin.to_string());
    }

    /// The caller gave up on `request`; nothing is kept for it.
    pub(super) fn forget(&mut self, request: RequestId) {
        self.commands.remove(&request);
        self.cors_origins.remove(&request);
    }

    /// The output that answers `request`: typed for a command, rendered as an HTTP reply
    /// otherwise. Also returns the HTTP status, for the request counters (`None` for a
    /// command, which is not an HTTP request).
    pub(super) fn answer(
        &mut self,
        request: RequestId,
        answered: Answered,
    ) -> (Output, Option<u16>) {
        // Most requests are HTTP: skip the lookup while no command is pending.
        if !self.commands.is_empty() && self.commands.remove(&request) {
            let result = Box::new(answered.map(Outcome::into_result));
            return (Output::CommandDone { request, result }, None);
        }
        let reply = match answered {
            Ok(outcome) => outcome.into_reply(),
            Err(refusal) => refusal.to_reply(),
        };
        self.reply(request, reply)
    }

    /// The output that sends `reply` to the HTTP request `request`, and its status.
    pub(super) fn reply(&mut self, request: RequestId, mut reply: Reply) -> (Output, Option<u16>) {
        if let Some(origin) = self.cors_origins.remove(&request) {
            crate::access::add_cors_headers(&mut reply, &origin);
        }
        let status = reply.status;
        (Output::Reply { request, reply }, Some(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CommandError;

    #[test]
    fn commands_get_typed_answers_and_http_requests_replies_with_their_cors_headers() {
        let mut requests = Requests::default();
        requests.command(RequestId(1));
        requests.http_from_origin(RequestId(2), "http://app.example");
        let refusal = || Err(CommandError::UnknownClient("no such session".into()));

        let (output, status) = requests.answer(RequestId(1), refusal());
        assert_eq!(status, None);
        let Output::CommandDone { result, .. } = output else {
            panic!("{output:?}")
        };
        assert_eq!(
            *result,
            Err(CommandError::UnknownClient("no such session".into()))
        );

        let (output, status) = requests.answer(RequestId(2), refusal());
        assert_eq!(status, Some(404));
        let Output::Reply { reply, .. } = output else {
            panic!("{output:?}")
        };
        assert!(reply.headers.contains(&(
            "Access-Control-Allow-Origin".to_string(),
            "http://app.example".to_string()
        )));

        // Each is answered once: a second answer to either is a plain HTTP reply.
        let (output, _) = requests.answer(RequestId(1), refusal());
        assert!(matches!(output, Output::Reply { ref reply, .. } if reply.headers.is_empty()));
    }

    #[test]
    fn a_forgotten_request_keeps_nothing() {
        let mut requests = Requests::default();
        requests.command(RequestId(1));
        requests.http_from_origin(RequestId(2), "http://app.example");
        requests.forget(RequestId(1));
        requests.forget(RequestId(2));
        assert!(requests.commands.is_empty() && requests.cors_origins.is_empty());
    }
}
