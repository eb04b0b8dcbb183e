//! Engine settings: every limit and interval the protocol rules use, with its default.
//!
//! `docs/protocol.md` lists the same defaults; the runtime exposes each as a flag and a
//! `LIVEBRIDGE_*` environment variable.

use crate::catalogue::Catalogue;
use crate::rate::RateLimit;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What to do when a WebSocket client reads too slowly to keep up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlowConsumerPolicy {
    /// Keep the newest `queue_limit` messages, drop the oldest and tell the client how many
    /// were lost (`messages_dropped` frame).
    DropOldest,
    /// Close the WebSocket (code 1008); the session stays resumable with its queue until it
    /// goes stale, and the count of dropped messages is reported after resume.
    Disconnect,
}

/// Engine settings. `Config::default()` gives the documented defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Messages a session may hold for delivery; when full, the oldest is dropped. Default 100.
    pub queue_limit: usize,
    /// A session with no activity for this long is evicted. Default 5 minutes.
    #[serde(with = "crate::time::millis")]
    pub stale_after: Duration,
    /// The longest a long poll (`wait`) may be held open. Default 30 seconds.
    #[serde(with = "crate::time::millis")]
    pub long_poll_max: Duration,
    /// A WebSocket with no frame from its client for this long is sent a ping. Default 30 s.
    #[serde(with = "crate::time::millis")]
    pub ping_interval: Duration,
    /// Frames handed to a WebSocket's writer and not yet reported written; beyond this the
    /// session queue (and its `queue_limit`) takes over. Default 64.
    pub ws_write_window: usize,
    /// What happens to a WebSocket client that cannot keep up. Default: drop oldest.
    pub slow_consumer: SlowConsumerPolicy,
    /// Largest HTTP request body, in bytes. Default 64 KiB.
    pub max_body_bytes: usize,
    /// Largest WebSocket message, in bytes. Default 64 KiB.
    pub max_frame_bytes: usize,
    /// Deepest nesting of arrays and objects accepted in a JSON body or message. Default 32.
    pub max_json_depth: usize,
    /// Channels one client may subscribe to. Default 64.
    pub max_subscriptions: usize,
    /// Longest channel name, in bytes. Default 64.
    pub max_channel_name_bytes: usize,
    /// Sessions the engine holds at once; handshakes beyond it get 503. Default 10 000.
    pub max_clients: usize,
    /// Events in one `POST /api/events` batch. Default 1 000.
    pub max_batch_events: usize,
    /// Messages one client may send (WebSocket frames and `/ws/send`). Default 50 per second,
    /// bursts of 200; beyond it a message is refused (429 or an `error` frame).
    pub client_message_rate: RateLimit,
    /// Handshakes and WebSocket upgrades from one remote address. Default 200 per second,
    /// bursts of 1 000; beyond it they get 429.
    pub handshake_rate: RateLimit,
    /// Secret for HS256 client tokens. When set, every handshake and WebSocket must present
    /// a valid token (`token` in the handshake body, `?token=` on `/ws`, or
    /// `Authorization: Bearer`). Default: none (no client authentication).
    pub client_token_secret: Option<String>,
    /// Token guarding broadcast, notify, publish, cleanup and management endpoints
    /// (`Authorization: Bearer <token>`). Default: none (open, for loopback use).
    pub admin_token: Option<String>,
    /// Browser origins (`scheme://host:port`) allowed to use the hub; `*` allows any.
    /// Requests without an `Origin` header (native clients) are always allowed. Default: none.
    pub allowed_origins: Vec<String>,
    /// Host names accepted in `Host` besides `localhost`, `127.0.0.1` and `[::1]`; `*` allows
    /// any. Default: none.
    pub allowed_hosts: Vec<String>,
    /// Events kept per channel for recovery and `GET /api/history`; 0 keeps none (offsets are
    /// still given). Default 1 000.
    pub history_size: usize,
    /// Oldest event kept per channel; zero keeps none. Default 10 minutes.
    #[serde(with = "crate::time::millis")]
    pub history_ttl: Duration,
    /// Most events one recovery replays; a client that missed more is told
    /// `recovered: false`. Default 1 000.
    pub recovery_max: usize,
    /// Whether channel events are stored before they are delivered and acknowledged: the
    /// engine emits [`crate::Output::Persist`] and waits for [`crate::Input::Persisted`]. The
    /// runtime sets it when it has a store (`--data-dir`). Default: off.
    pub durable: bool,
    /// Whether this engine is one node of a cluster sharing a broker (`--broker`): channel
    /// offsets, epochs and history come from the broker ([`crate::Output::Broker`],
    /// [`crate::Input::BrokerEvents`]), publishes are refused with 503 while it is
    /// unreachable, and handshakes until it first answered. Not with `durable`. Default: off.
    pub clustered: bool,
    /// The event types publishers may send. Default: the seeds' 22 events
    /// ([`Catalogue::builtin`]).
    #[serde(skip_serializing_if = "is_builtin")]
    pub catalogue: Catalogue,
}

fn is_builtin(catalogue: &Catalogue) -> bool {
    *catalogue == Catalogue::builtin()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            queue_limit: 100,
            stale_after: Duration::from_secs(5 * 60),
            long_poll_max: Duration::from_secs(30),
            ping_interval: Duration::from_secs(30),
            ws_write_window: 64,
            slow_consumer: SlowConsumerPolicy::DropOldest,
            max_body_bytes: 64 * 1024,
            max_frame_bytes: 64 * 1024,
            max_json_depth: 32,
            max_subscriptions: 64,
            max_channel_name_bytes: 64,
            max_clients: 10_000,
            max_batch_events: 1_000,
            client_message_rate: RateLimit {
                per_second: 50.0,
                burst: 200,
            },
            handshake_rate: RateLimit {
                per_second: 200.0,
                burst: 1_000,
            },
            client_token_secret: None,
            admin_token: None,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            history_size: 1_000,
            history_ttl: Duration::from_secs(10 * 60),
            recovery_max: 1_000,
            durable: false,
            clustered: false,
            catalogue: Catalogue::builtin(),
        }
    }
}

/// Settings a hub must not serve with: each variant names the setting and says what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A secret is set but empty (an unset shell variable, say): an empty admin token or
    /// client token secret would open what it guards to anyone. Give a value, or leave the
    /// setting out.
    EmptySecret {
        /// The setting, as its flag: `--admin-token` or `--client-token-secret`.
        flag: &'static str,
    },
    /// Listening beyond loopback without an admin token: anyone who can reach the port could
    /// broadcast, publish and disconnect clients. Set an admin token, or listen on loopback.
    ExposedWithoutAdminToken {
        /// The address the hub would listen on.
        listen: core::net::IpAddr,
    },
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::EmptySecret { flag } => write!(
                f,
                "{flag} is empty (an unset shell variable?): an empty secret would open what it \
                 guards to anyone; give a value, or leave the flag out"
            ),
            ConfigError::ExposedWithoutAdminToken { listen } => write!(
                f,
                "refusing to listen on {listen} without --admin-token: beyond loopback, anyone \
                 who can reach the port could broadcast, publish and disconnect clients"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Checks that these settings are safe to serve on `listen`: no empty secret, and an
    /// admin token whenever the address is not loopback. Both runtimes' servers refuse to
    /// start otherwise; an embedder that owns its listener should call it too.
    pub fn check_exposure(&self, listen: core::net::IpAddr) -> Result<(), ConfigError> {
        for (flag, value) in [
            ("--admin-token", &self.admin_token),
            ("--client-token-secret", &self.client_token_secret),
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err(ConfigError::EmptySecret { flag });
            }
        }
        if !listen.is_loopback() && self.admin_token.is_none() {
            return Err(ConfigError::ExposedWithoutAdminToken { listen });
        }
        Ok(())
    }
}

#[cfg(test)]
mod exposure_tests {
    use super::*;
    use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const EVERYWHERE: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

    #[test]
    fn loopback_needs_no_token_and_beyond_it_an_admin_token_is_required() {
        let open = Config::default();
        assert_eq!(open.check_exposure(LOOPBACK), Ok(()));
        assert_eq!(open.check_exposure(IpAddr::V6(Ipv6Addr::LOCALHOST)), Ok(()));
        assert_eq!(
            open.check_exposure(EVERYWHERE),
            Err(ConfigError::ExposedWithoutAdminToken { listen: EVERYWHERE })
        );
        let guarded = Config {
            admin_token: Some("t0ken".into()),
            ..Config::default()
        };
        assert_eq!(guarded.check_exposure(EVERYWHERE), Ok(()));
    }

    #[test]
    fn an_empty_secret_is_refused_wherever_the_hub_listens() {
        for (config, flag) in [
            (
                Config {
                    admin_token: Some(String::new()),
                    ..Config::default()
                },
                "--admin-token",
            ),
            (
                Config {
                    client_token_secret: Some("  ".into()),
                    ..Config::default()
                },
                "--client-token-secret",
            ),
        ] {
            for listen in [LOOPBACK, EVERYWHERE] {
                assert_eq!(
                    config.check_exposure(listen),
                    Err(ConfigError::EmptySecret { flag })
                );
            }
        }
    }
}
