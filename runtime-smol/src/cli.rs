//! Command-line flags and `LIVEBRIDGE_*` environment variables for every setting.

use crate::ServerConfig;
use clap::{Args, Parser, Subcommand, ValueEnum};
use livebridge_core::client_types::{self, Target};
use livebridge_core::{Catalogue, Config, RateLimit, SlowConsumerPolicy};
use livebridge_runtime_support::linger::LingerSettings;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// livebridge: a real-time event hub for WebSocket and HTTP long-poll clients.
#[derive(Debug, Parser)]
#[command(name = "livebridge", version, about, long_about = None)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(Box<ServeArgs>),
    /// Print a client token signed with the server's client token secret.
    Token(TokenArgs),
    /// Print the settings `serve` would run with (the same flags, variables and
    /// configuration file), each with where its value came from; secrets masked.
    Config(Box<ConfigArgs>),
    /// Print the event catalogue as a JSON Schema, or as the clients' event types rendered
    /// from it (TypeScript, Python, the Lua README's field table); with --catalogue, for the
    /// catalogue `serve --catalogue` would run with.
    Catalogue(CatalogueArgs),
}

/// Settings of `livebridge catalogue`.
#[derive(Clone, Debug, Args)]
pub struct CatalogueArgs {
    /// What to print.
    #[arg(long, value_enum)]
    pub format: CatalogueFormat,
    /// A JSON file of event types added to the built-in catalogue, as `serve --catalogue`
    /// takes it. (No environment variable: the script that regenerates the committed client
    /// types must not pick up a developer's own catalogue.)
    #[arg(long)]
    pub catalogue: Option<PathBuf>,
    /// Write into FILE instead of printing: the whole file, or for `lua-table` the lines
    /// between FILE's `<!-- catalogue-fields:begin -->` and `<!-- catalogue-fields:end -->`.
    #[arg(long, value_name = "FILE")]
    pub write: Option<PathBuf>,
}

/// What `livebridge catalogue` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CatalogueFormat {
    /// JSON Schema (draft 2020-12) of every event as delivered.
    Schema,
    /// TypeScript declarations: an interface per event, `CatalogueEvent`, `CatalogueEvents`.
    Typescript,
    /// Python `TypedDict`s and the `CatalogueEvent` union.
    Python,
    /// The Markdown table of event fields of the Lua client's README.
    LuaTable,
}

impl CatalogueArgs {
    /// The rendered text; when `--write` names a file, that file written with it (and
    /// `None` returned), else the text to print.
    pub fn run(&self) -> Result<Option<String>, String> {
        let catalogue = match &self.catalogue {
            Some(path) => load_catalogue(path)?,
            None => Catalogue::builtin(),
        };
        let target = match self.format {
            CatalogueFormat::Schema => Target::Schema,
            CatalogueFormat::Typescript => Target::TypeScript,
            CatalogueFormat::Python => Target::Python,
            CatalogueFormat::LuaTable => Target::LuaTable,
        };
        let text = client_types::render(&catalogue, target);
        let Some(path) = &self.write else {
            return Ok(Some(text));
        };
        let problem = |what: String| format!("{}: {what}", path.display());
        let text = if target == Target::LuaTable {
            let document = std::fs::read_to_string(path).map_err(|e| problem(e.to_string()))?;
            client_types::splice(&document, &text).map_err(problem)?
        } else {
            text
        };
        std::fs::write(path, text).map_err(|e| problem(e.to_string()))?;
        Ok(None)
    }
}

/// Settings of `livebridge config`.
#[derive(Clone, Debug, Args)]
pub struct ConfigArgs {
    /// The settings, as `serve` takes them.
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Print the Markdown table of every setting (key, flag, variable, default) instead, as
    /// docs/operations.md has it.
    #[arg(long)]
    pub reference: bool,
}

/// Settings of `livebridge token`.
#[derive(Clone, Debug, Args)]
pub struct TokenArgs {
    /// The secret the server checks tokens with (its --client-token-secret).
    #[arg(long, env = "LIVEBRIDGE_CLIENT_TOKEN_SECRET", hide_env_values = true)]
    pub secret: String,
    /// Who the client is (the token's `sub`).
    #[arg(long)]
    pub sub: String,
    /// How long the token is valid.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub ttl: Duration,
    /// Channels the client may subscribe to (default: any).
    #[arg(long, value_delimiter = ',')]
    pub channels: Option<Vec<String>>,
    /// The client type the client must use (default: any).
    #[arg(long)]
    pub client_type: Option<String>,
}

impl TokenArgs {
    /// The signed token, valid from `now_unix_seconds` for the TTL.
    pub fn token(&self, now_unix_seconds: u64) -> String {
        let claims = livebridge_core::ClientClaims {
            sub: self.sub.clone(),
            exp: now_unix_seconds.saturating_add(self.ttl.as_secs()),
            channels: self.channels.clone(),
            client_type: self.client_type.clone(),
        };
        livebridge_core::sign_client_token(self.secret.as_bytes(), &claims)
    }
}

/// What a slow WebSocket client gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SlowConsumer {
    /// Drop its oldest queued messages and tell it how many.
    DropOldest,
    /// Close its socket with 1008; it may resume.
    Disconnect,
}

/// Settings of `livebridge serve`. Durations take units (`250ms`, `3s`, `5m`); sizes take
/// `B`, `KiB` or `MiB`.
#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    /// A TOML file of settings, keyed like the `LIVEBRIDGE_*` variables without the prefix,
    /// in lower case (`stale_after = "5m"`); flags and variables override it.
    #[arg(long, env = "LIVEBRIDGE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on, `HOST:PORT` (an IP address or a name such as `localhost`). Keep it
    /// on loopback unless clients are remote.
    #[arg(long, env = "LIVEBRIDGE_BIND", default_value = "127.0.0.1:5100", value_parser = parse_bind)]
    pub bind: SocketAddr,
    /// Messages a client may have waiting; beyond it the oldest is dropped (and reported).
    #[arg(long, env = "LIVEBRIDGE_QUEUE_LIMIT", default_value = "100")]
    pub queue_limit: usize,
    /// Idle time after which a session is evicted.
    #[arg(long, env = "LIVEBRIDGE_STALE_AFTER", default_value = "5m", value_parser = parse_duration)]
    pub stale_after: Duration,
    /// Longest wait a long poll may ask for.
    #[arg(long, env = "LIVEBRIDGE_LONG_POLL_MAX", default_value = "30s", value_parser = parse_duration)]
    pub long_poll_max: Duration,
    /// Silence after which a WebSocket client is pinged.
    #[arg(long, env = "LIVEBRIDGE_PING_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub ping_interval: Duration,
    /// Frames handed to a WebSocket writer before the session queue takes over.
    #[arg(long, env = "LIVEBRIDGE_WS_WRITE_WINDOW", default_value = "64")]
    pub ws_write_window: usize,
    /// What happens to a WebSocket client that cannot keep up.
    #[arg(
        long,
        env = "LIVEBRIDGE_SLOW_CONSUMER",
        value_enum,
        default_value = "drop-oldest"
    )]
    pub slow_consumer: SlowConsumer,
    /// Largest HTTP request body.
    #[arg(long, env = "LIVEBRIDGE_MAX_BODY", default_value = "64KiB", value_parser = parse_size)]
    pub max_body: usize,
    /// Largest WebSocket message.
    #[arg(long, env = "LIVEBRIDGE_MAX_FRAME", default_value = "64KiB", value_parser = parse_size)]
    pub max_frame: usize,
    /// Largest HTTP request head (request line and headers).
    #[arg(long, env = "LIVEBRIDGE_MAX_HEAD", default_value = "16KiB", value_parser = parse_size)]
    pub max_head: usize,
    /// Sessions held at once.
    #[arg(long, env = "LIVEBRIDGE_MAX_CLIENTS", default_value = "10000")]
    pub max_clients: usize,
    /// Deepest nesting of arrays and objects accepted in JSON bodies and messages.
    #[arg(long, env = "LIVEBRIDGE_MAX_JSON_DEPTH", default_value = "32")]
    pub max_json_depth: usize,
    /// Channels one client may subscribe to.
    #[arg(long, env = "LIVEBRIDGE_MAX_SUBSCRIPTIONS", default_value = "64")]
    pub max_subscriptions: usize,
    /// Longest channel name, in bytes.
    #[arg(long, env = "LIVEBRIDGE_MAX_CHANNEL_NAME", default_value = "64")]
    pub max_channel_name: usize,
    /// Events in one POST /api/events.
    #[arg(long, env = "LIVEBRIDGE_MAX_BATCH_EVENTS", default_value = "1000")]
    pub max_batch_events: usize,
    /// Messages per second one client may send (WebSocket frames and /ws/send).
    #[arg(long, env = "LIVEBRIDGE_MESSAGE_RATE", default_value = "50")]
    pub message_rate: f64,
    /// Messages a client may send at once after a quiet period.
    #[arg(long, env = "LIVEBRIDGE_MESSAGE_BURST", default_value = "200")]
    pub message_burst: u32,
    /// Handshakes and WebSocket upgrades per second from one remote address.
    #[arg(long, env = "LIVEBRIDGE_HANDSHAKE_RATE", default_value = "200")]
    pub handshake_rate: f64,
    /// Handshakes one address may make at once after a quiet period.
    #[arg(long, env = "LIVEBRIDGE_HANDSHAKE_BURST", default_value = "1000")]
    pub handshake_burst: u32,
    /// Require clients to present an HS256 token signed with this secret (see
    /// `livebridge token`). Default: no client authentication.
    #[arg(long, env = "LIVEBRIDGE_CLIENT_TOKEN_SECRET", hide_env_values = true)]
    pub client_token_secret: Option<String>,
    /// Require `Authorization: Bearer <token>` on broadcast, notify, publish, cleanup and
    /// management endpoints. Mandatory when binding beyond loopback.
    #[arg(long, env = "LIVEBRIDGE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// A browser origin (`scheme://host:port`) allowed to use the hub; repeat for more, `*`
    /// for any. Requests without an Origin header (native clients) are always allowed.
    #[arg(
        long = "allowed-origin",
        env = "LIVEBRIDGE_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,
    /// A host name accepted in the Host header besides localhost, 127.0.0.1 and `[::1]`;
    /// repeat for more, `*` for any. Needed when clients reach the hub by another name.
    #[arg(
        long = "allowed-host",
        env = "LIVEBRIDGE_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,
    /// Events kept per channel for recovery and `GET /api/history` (0 keeps none).
    #[arg(long, env = "LIVEBRIDGE_HISTORY_SIZE", default_value = "1000")]
    pub history_size: usize,
    /// Oldest event kept per channel (0 keeps none).
    #[arg(long, env = "LIVEBRIDGE_HISTORY_TTL", default_value = "10m", value_parser = parse_duration)]
    pub history_ttl: Duration,
    /// Most events one recovery replays; a client that missed more is told `recovered: false`.
    #[arg(long, env = "LIVEBRIDGE_RECOVERY_MAX", default_value = "1000")]
    pub recovery_max: usize,
    /// Store channel history in this directory (created if missing), so it survives restarts
    /// and crashes: a publish is acknowledged only once it is on disk. Default: in memory
    /// only.
    #[arg(long, env = "LIVEBRIDGE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Largest the data dir's database and its write-ahead log may grow together (`512MiB`;
    /// the log gets half); beyond it publishes fail with 507, as on a full disk. Default: the
    /// disk is the limit.
    #[arg(long, env = "LIVEBRIDGE_DATA_MAX_SIZE", value_parser = parse_size)]
    pub data_max_size: Option<usize>,
    /// Cluster mode: share channels with every livebridge node on this Redis,
    /// `redis://HOST:PORT[/DB]`. Channel offsets, epochs and history then live in Redis, and
    /// publishes are refused with 503 while it is unreachable. Not with --data-dir. Default:
    /// none (a single node that needs nothing but this binary).
    #[arg(long, env = "LIVEBRIDGE_BROKER")]
    pub broker: Option<String>,
    /// Prefix of every Redis key and Pub/Sub channel of this cluster (so several clusters can
    /// share one Redis).
    #[arg(long, env = "LIVEBRIDGE_BROKER_PREFIX", default_value = "livebridge")]
    pub broker_prefix: String,
    /// Longest wait for a connection to Redis or an answer from it; beyond it the broker
    /// counts as lost.
    #[arg(long, env = "LIVEBRIDGE_BROKER_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub broker_timeout: Duration,
    /// First delay before reconnecting to Redis after it was lost (it doubles at each failed
    /// attempt, ±20 % jitter).
    #[arg(long, env = "LIVEBRIDGE_BROKER_RECONNECT_MIN", default_value = "100ms", value_parser = parse_duration)]
    pub broker_reconnect_min: Duration,
    /// Longest delay between attempts to reconnect to Redis.
    #[arg(long, env = "LIVEBRIDGE_BROKER_RECONNECT_MAX", default_value = "5s", value_parser = parse_duration)]
    pub broker_reconnect_max: Duration,
    /// Redis keeps everything it acknowledged across restarts (`appendonly yes`,
    /// `appendfsync always`): channels then keep their epochs when Redis restarts. Without
    /// it, a Redis restart starts every channel over (clients get `recovered: false`).
    #[arg(long, env = "LIVEBRIDGE_BROKER_DURABLE")]
    pub broker_durable: bool,
    /// Cluster mode: where the other nodes reach this one, `HOST:PORT` (requests naming this
    /// node's sessions are forwarded there). Default: the address it listens on, which must
    /// then not be a wildcard such as 0.0.0.0.
    #[arg(long, env = "LIVEBRIDGE_ADVERTISE")]
    pub advertise: Option<String>,
    /// A JSON file of event types to add to the built-in catalogue, or to replace ones of
    /// the same type: `{"events": [{"type", "channel", "fields": [{"name", "type",
    /// "required"}]}]}` (see docs/protocol.md, "Event catalogue").
    #[arg(long, env = "LIVEBRIDGE_CATALOGUE")]
    pub catalogue: Option<PathBuf>,
    /// Executor threads (default: one per core).
    #[arg(long, env = "LIVEBRIDGE_THREADS")]
    pub threads: Option<usize>,
    /// How long shutdown waits for connections to close.
    #[arg(long, env = "LIVEBRIDGE_SHUTDOWN_GRACE", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// How long a closing WebSocket may take to write what is left and exchange close
    /// frames before the socket is dropped.
    #[arg(long, env = "LIVEBRIDGE_CLOSE_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub close_timeout: Duration,
    /// How long a client may take to send a whole request, from its first byte (or from
    /// connecting, for the first request); slower clients get 408 and are disconnected.
    #[arg(long, env = "LIVEBRIDGE_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// How long a connection may stay idle between requests before it is closed.
    #[arg(long, env = "LIVEBRIDGE_KEEP_ALIVE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub keep_alive_timeout: Duration,
    /// How long a connection keeps reading (and discarding) what the client still sends
    /// after a reply sent before its body was read (413, 431, 411, 400), so the client reads
    /// the reply instead of a reset; 0 closes at once.
    #[arg(long, env = "LIVEBRIDGE_LINGER_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub linger_timeout: Duration,
    /// Connections lingering so at once; beyond it a connection closes at once.
    #[arg(long, env = "LIVEBRIDGE_MAX_LINGERING", default_value = "256")]
    pub max_lingering: usize,
    /// Log level or filter (`error`, `warn`, `info`, `debug`, `trace`, or a tracing filter).
    #[arg(long, env = "LIVEBRIDGE_LOG", default_value = "info")]
    pub log: String,
}

impl ServeArgs {
    /// The settings with every flag at its default (environment variables apply).
    pub fn defaults() -> ServeArgs {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            args: ServeArgs,
        }
        Only::parse_from(["livebridge"]).args
    }

    /// Refuses settings that would expose operators' endpoints to the network.
    pub fn check(&self) -> Result<(), String> {
        if self.broker.is_some() && self.data_dir.is_some() {
            return Err(
                "--data-dir and --broker cannot be used together: in cluster mode channel \
                 history lives in Redis"
                    .to_string(),
            );
        }
        if let Some(settings) = self.server_config().ok().and_then(|c| c.broker) {
            settings.check()?;
            if settings.advertise.is_none() && self.bind.ip().is_unspecified() {
                return Err(format!(
                    "--broker with --bind {}: give --advertise HOST:PORT, the address other \
                     nodes reach this one at",
                    self.bind
                ));
            }
        }
        let config = self.server_config()?;
        config
            .engine
            .check_exposure(self.bind.ip())
            .map_err(|problem| problem.to_string())?;
        Ok(())
    }

    /// The server configuration these flags describe; fails when the catalogue file cannot
    /// be read or is not a valid catalogue (the message names the file).
    pub fn server_config(&self) -> Result<ServerConfig, String> {
        let defaults = ServerConfig::default();
        let catalogue = match &self.catalogue {
            Some(path) => load_catalogue(path)?,
            None => Catalogue::builtin(),
        };
        Ok(ServerConfig {
            bind: self.bind,
            engine: Config {
                queue_limit: self.queue_limit,
                stale_after: self.stale_after,
                long_poll_max: self.long_poll_max,
                ping_interval: self.ping_interval,
                ws_write_window: self.ws_write_window,
                slow_consumer: match self.slow_consumer {
                    SlowConsumer::DropOldest => SlowConsumerPolicy::DropOldest,
                    SlowConsumer::Disconnect => SlowConsumerPolicy::Disconnect,
                },
                max_body_bytes: self.max_body,
                max_frame_bytes: self.max_frame,
                max_json_depth: self.max_json_depth,
                max_subscriptions: self.max_subscriptions,
                max_channel_name_bytes: self.max_channel_name,
                max_clients: self.max_clients,
                max_batch_events: self.max_batch_events,
                client_message_rate: RateLimit {
                    per_second: self.message_rate,
                    burst: self.message_burst,
                },
                handshake_rate: RateLimit {
                    per_second: self.handshake_rate,
                    burst: self.handshake_burst,
                },
                client_token_secret: self.client_token_secret.clone(),
                admin_token: self.admin_token.clone(),
                allowed_origins: self.allowed_origins.clone(),
                allowed_hosts: self.allowed_hosts.clone(),
                history_size: self.history_size,
                history_ttl: self.history_ttl,
                recovery_max: self.recovery_max,
                durable: false,
                clustered: self.broker.is_some(),
                catalogue,
            },
            max_head_bytes: self.max_head,
            threads: self.threads.unwrap_or(defaults.threads),
            shutdown_grace: self.shutdown_grace,
            close_timeout: self.close_timeout,
            header_timeout: self.header_timeout,
            keep_alive_timeout: self.keep_alive_timeout,
            data_dir: self.data_dir.clone(),
            data_max_bytes: self.data_max_size.map(|size| size as u64),
            linger: LingerSettings {
                timeout: self.linger_timeout,
                max_connections: self.max_lingering,
            },
            broker: self
                .broker
                .as_ref()
                .map(|url| crate::broker::BrokerSettings {
                    url: url.clone(),
                    prefix: self.broker_prefix.clone(),
                    timeout: self.broker_timeout,
                    reconnect_min: self.broker_reconnect_min,
                    reconnect_max: self.broker_reconnect_max,
                    durable: self.broker_durable,
                    history_size: self.history_size,
                    history_ttl: self.history_ttl,
                    advertise: self.advertise.clone(),
                }),
        })
    }
}

/// The built-in catalogue extended with the event types of a `--catalogue` file.
fn load_catalogue(path: &std::path::Path) -> Result<Catalogue, String> {
    let problem = |what: String| format!("catalogue file {}: {what}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| problem(e.to_string()))?;
    Catalogue::builtin()
        .extended_by_file(&text)
        .map_err(problem)
}

/// `127.0.0.1:5100`, `[::1]:5100` or `localhost:5100`: a name is resolved, and its first IPv4
/// address is used (its first address when it has no IPv4 one).
pub fn parse_bind(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    if !text.contains(':') {
        return Err(format!(
            "{text:?} has no port; use HOST:PORT, e.g. 127.0.0.1:5100"
        ));
    }
    let addrs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(text)
        .map_err(|e| format!("cannot resolve {text:?}: {e} (use HOST:PORT, e.g. 127.0.0.1:5100)"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("{text:?} resolves to no address"))
}

/// `250ms`, `3s`, `5m`, `1h 30m`...
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (examples: 250ms, 3s, 5m)"))
}

/// `65536`, `64KiB`, `1MiB` (also `KB`/`K` and `MB`/`M`, as powers of 1024).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (examples: 65536, 64KiB, 1MiB)"))?;
    let multiplier = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        other => return Err(format!("unknown size unit {other:?} (use B, KiB or MiB)")),
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_defaults_are_the_documented_engine_defaults() {
        let args = ServeArgs::defaults();
        let config = args.server_config().unwrap();
        assert_eq!(config.engine, Config::default());
        let server = ServerConfig::default();
        assert_eq!(config.bind, server.bind);
        assert_eq!(config.max_head_bytes, server.max_head_bytes);
        assert_eq!(config.shutdown_grace, server.shutdown_grace);
        assert_eq!(config.close_timeout, server.close_timeout);
        assert_eq!(config.header_timeout, server.header_timeout);
        assert_eq!(config.keep_alive_timeout, server.keep_alive_timeout);
        assert_eq!(config.linger, server.linger);
    }

    #[test]
    fn bind_takes_addresses_and_host_names() {
        assert_eq!(
            parse_bind("127.0.0.1:5100"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 5100)))
        );
        let named = parse_bind("localhost:5101").unwrap();
        assert!(named.ip().is_loopback() && named.port() == 5101, "{named}");
        assert!(parse_bind("localhost").unwrap_err().contains("no port"));
        assert!(
            parse_bind("no-such-host.invalid:1")
                .unwrap_err()
                .contains("resolve")
        );
    }

    #[test]
    fn durations_and_sizes_parse_with_units() {
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert!(parse_size("12 parsecs").is_err());
    }

    #[test]
    fn flags_override_defaults() {
        let cli = Cli::parse_from([
            "livebridge",
            "serve",
            "--queue-limit",
            "5",
            "--stale-after",
            "3s",
            "--slow-consumer",
            "disconnect",
            "--max-frame",
            "1KiB",
        ]);
        let Some(Command::Serve(args)) = cli.command else {
            panic!("serve")
        };
        let config = args.server_config().unwrap();
        assert_eq!(config.engine.queue_limit, 5);
        assert_eq!(config.engine.stale_after, Duration::from_secs(3));
        assert_eq!(config.engine.slow_consumer, SlowConsumerPolicy::Disconnect);
        assert_eq!(config.engine.max_frame_bytes, 1024);
    }
}
