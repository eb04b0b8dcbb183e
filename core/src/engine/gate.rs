//! The gate every HTTP request and WebSocket upgrade passes before the engine acts on it:
//! where it comes from (Host, Origin), whether the server still takes work, the admin token
//! of operator routes, and the per-address handshake budget. Owns the budgets.

use crate::access;
use crate::auth;
use crate::config::Config;
use crate::http_api::Routed;
use crate::input::HttpRequest;
use crate::output::Reply;
use crate::rate::KeyedBuckets;
use crate::time::Time;

/// The handshake budget shared by every request that came without a peer address. Peer
/// addresses are IPs, so this key cannot collide with a real one.
const UNKNOWN_PEER: &str = "unknown";

#[derive(Debug, Default)]
pub(super) struct Gate {
    /// Handshakes and upgrades still allowed per remote address.
    handshake_budgets: KeyedBuckets,
}

/// What the gate decided about an HTTP request.
#[derive(Debug)]
pub(super) enum Verdict {
    /// Run the request.
    Pass,
    /// A CORS preflight from an allowed origin: answer it with [`access::preflight`].
    Preflight,
    /// Refuse it with this reply.
    Refuse(Reply),
}

impl Gate {
    /// Checks an HTTP request, in order: Host and Origin, a preflight, the server stopping,
    /// the admin token of an operator route. Returns the allowed browser origin (its replies
    /// get CORS headers, refusals included) and the verdict. A handshake that passes spends
    /// from its address's budget with [`Gate::spend_handshake`] once the engine knows it will
    /// run here (in cluster mode a resume may be forwarded to the node holding the session).
    pub(super) fn check_request<'a>(
        config: &Config,
        http: &'a HttpRequest,
        routed: &Routed,
        shutting_down: bool,
    ) -> (Option<&'a str>, Verdict) {
        let origin = match access::admit(config, http) {
            Ok(origin) => origin,
            Err(refusal) => return (None, Verdict::Refuse(refusal)),
        };
        let verdict = if http.method == "OPTIONS" && origin.is_some() {
            Verdict::Preflight
        } else if shutting_down {
            Verdict::Refuse(super::shutting_down().to_reply())
        } else if let Some(admin_token) = &config.admin_token
            && routed.admin
            && !auth::is_admin(admin_token, http.authorization.as_deref())
        {
            Verdict::Refuse(Reply::error(
                401,
                "this endpoint needs the admin token: send Authorization: Bearer <token>",
            ))
        } else {
            Verdict::Pass
        };
        (origin, verdict)
    }

    /// Checks where a WebSocket upgrade comes from and whether the server still takes work;
    /// the upgrade's own checks follow, then [`Gate::spend_handshake`].
    pub(super) fn check_upgrade(
        config: &Config,
        upgrade: &HttpRequest,
        shutting_down: bool,
    ) -> Result<(), Reply> {
        access::admit(config, upgrade)?;
        if shutting_down {
            return Err(super::shutting_down().to_reply());
        }
        Ok(())
    }

    /// Counts one handshake or upgrade against the remote address's budget. Requests whose
    /// peer is unknown fail closed: they all share one budget, [`UNKNOWN_PEER`], so leaving
    /// the address out never lifts the limit.
    pub(super) fn spend_handshake(
        &mut self,
        config: &Config,
        now: Time,
        peer: Option<&str>,
    ) -> Result<(), Reply> {
        let key = peer.unwrap_or(UNKNOWN_PEER);
        let limit = config.handshake_rate;
        if self.handshake_budgets.take(key, limit, now) {
            return Ok(());
        }
        let from = peer.map_or_else(|| "clients of unknown address".to_string(), str::to_string);
        Err(Reply::error(
            429,
            &format!(
                "too many handshakes from {from}: at most {} per second (bursts of {})",
                limit.per_second, limit.burst
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate::RateLimit;

    fn config() -> Config {
        Config {
            handshake_rate: RateLimit {
                per_second: 0.001,
                burst: 2,
            },
            ..Config::default()
        }
    }

    fn request(method: &str, target: &str, body: &str) -> HttpRequest {
        HttpRequest::new(method, target, body)
            .with_host("localhost:5100")
            .with_peer("127.0.0.1")
    }

    #[test]
    fn requests_without_a_peer_share_one_budget_and_never_escape_it() {
        let (mut gate, config) = (Gate::default(), config());
        for _ in 0..2 {
            assert!(gate.spend_handshake(&config, Time::ZERO, None).is_ok());
        }
        let refused = gate.spend_handshake(&config, Time::ZERO, None).unwrap_err();
        assert_eq!(refused.status, 429);
        assert!(refused.body.contains("unknown address"), "{}", refused.body);
        // A real address has its own budget.
        assert!(
            gate.spend_handshake(&config, Time::ZERO, Some("10.0.0.1"))
                .is_ok()
        );
    }

    #[test]
    fn where_a_request_comes_from_is_checked_before_anything_else() {
        let config = Config {
            admin_token: Some("s3cret".into()),
            ..config()
        };
        let http = request("GET", "/ws/clients", "").with_origin("http://evil.example");
        let routed = crate::http_api::route(&http, &config);
        // Refused for its origin, not for stopping or for the missing admin token.
        let (origin, verdict) = Gate::check_request(&config, &http, &routed, true);
        assert!(origin.is_none());
        assert!(matches!(verdict, Verdict::Refuse(ref reply) if reply.status == 403));
        let http = request("GET", "/ws/clients", "");
        let (_, verdict) = Gate::check_request(&config, &http, &routed, true);
        assert!(matches!(verdict, Verdict::Refuse(ref reply) if reply.status == 503));
        let (_, verdict) = Gate::check_request(&config, &http, &routed, false);
        assert!(matches!(verdict, Verdict::Refuse(ref reply) if reply.status == 401));
        let http = http.with_authorization("Bearer s3cret");
        let (_, verdict) = Gate::check_request(&config, &http, &routed, false);
        assert!(matches!(verdict, Verdict::Pass));
    }
}
