//! Cluster mode's broker adapter (`--broker redis://…`): one task owns the Redis connections
//! and carries out the engine's `Output::Broker` commands, and feeds what Redis says back as
//! inputs — channel events from Pub/Sub, publish results, history reads, "lost" and "synced".
//! No protocol rule lives here; the engine decides what to do with each.
//!
//! Redis keys (prefix `P`, `--broker-prefix`): `P:epoch` (the epoch of channels without
//! events), `P:runid` (the Redis process that last held the data), `P:channels` (a sorted set
//! of channels by last publish), per channel `P:ch:<name>:meta` (hash: `e` epoch, `s` latest
//! offset) and `P:ch:<name>:log` (a stream whose entry ids are the offsets, trimmed to the
//! history size, expiring after the history TTL). Pub/Sub channels: `P:events` (every channel
//! event, `<channel>\n<epoch>\n<offset>\n<unix ms>\n<origin>\n<body>`) and `P:direct`
//! (messages outside channels, JSON). A publish is one Lua script (`broker/publish.lua`): the
//! offsets, the history and the Pub/Sub copies happen at once, and the publisher is answered
//! only after Redis answered.
//!
//! Connection loop: connect (timeout [`BrokerSettings::timeout`]), subscribe, check whether
//! Redis restarted (`broker/restart.lua`), read every channel's head, report
//! `Input::BrokerSynced`; then serve commands and Pub/Sub messages, pinging the Pub/Sub
//! connection every [`PING_INTERVAL`]. Any failure reports `Input::BrokerLost` and the task
//! reconnects after a backoff that doubles from [`BrokerSettings::reconnect_min`] to
//! [`BrokerSettings::reconnect_max`]. Subscribing before reading the heads means an event
//! published in between is seen twice, never missed; the engine drops the duplicate.

use async_channel::{Receiver, Sender};
use futures_lite::StreamExt;
use futures_lite::future::or;
use livebridge_core::{
    BatchId, BrokerCommand, BrokerError, BrokerEvent, ChannelHead, DirectAudience, EventOrigin,
    IdSource, Input, OutgoingEvent, Position,
};
use livebridge_runtime_support::OsRandomIds;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Pub/Sub connection liveness check: a ping that gets no answer within
/// [`BrokerSettings::timeout`] counts as a lost connection (a half-dead TCP connection would
/// otherwise stop events silently).
pub const PING_INTERVAL: Duration = Duration::from_secs(5);

const PUBLISH_SCRIPT: &str = include_str!("broker/publish.lua");
const RESTART_SCRIPT: &str = include_str!("broker/restart.lua");
/// Deletes a registry entry only while it still names the given address (a node never
/// removes an entry another node has taken since).
const FORGET_SCRIPT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    return redis.call('DEL', KEYS[1]) end return 0";

/// Where the broker is and how to talk to it.
#[derive(Clone, Debug)]
pub struct BrokerSettings {
    /// `redis://HOST:PORT[/DB]`.
    pub url: String,
    /// Prefix of every key and Pub/Sub channel, so several clusters can share one Redis.
    /// Default `livebridge`.
    pub prefix: String,
    /// Longest wait for a connection or an answer from Redis. Default 2 s.
    pub timeout: Duration,
    /// The first reconnection delay; it doubles at each failed attempt. Default 100 ms.
    pub reconnect_min: Duration,
    /// Longest delay between reconnection attempts. Default 5 s.
    pub reconnect_max: Duration,
    /// Whether Redis keeps everything it acknowledged across a restart (AOF with
    /// `appendfsync always`): then channels keep their epochs when it restarts. Default off.
    pub durable: bool,
    /// Events kept per channel (the engine's `history_size`).
    pub history_size: usize,
    /// Oldest event kept (the engine's `history_ttl`).
    pub history_ttl: Duration,
    /// Where other nodes reach this one (`HOST:PORT`), for requests naming its sessions.
    /// Default: the address it listens on.
    pub advertise: Option<String>,
}

/// What the broker task learns that the rest of the runtime needs: the cluster's key, which
/// a forwarded request must carry to be trusted.
pub struct ClusterIdentity {
    key: Mutex<Option<String>>,
    /// This node's tag, once claimed (`u32::MAX` before).
    tag: std::sync::atomic::AtomicU32,
    /// Set when the node stops gracefully and has left the registry: its entry is no longer
    /// refreshed nor claimed again.
    leaving: std::sync::atomic::AtomicBool,
}

impl Default for ClusterIdentity {
    fn default() -> Self {
        ClusterIdentity {
            key: Mutex::new(None),
            tag: std::sync::atomic::AtomicU32::new(u32::MAX),
            leaving: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl ClusterIdentity {
    /// This node's tag, once claimed in Redis.
    pub fn tag(&self) -> Option<u16> {
        u16::try_from(self.tag.load(std::sync::atomic::Ordering::SeqCst)).ok()
    }

    /// The cluster's key, once read from Redis.
    pub fn key(&self) -> Option<String> {
        self.key
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn set_key(&self, key: String) {
        *self
            .key
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(key);
    }

    /// Whether `presented` is the cluster's key (compared in constant time).
    pub fn trusts(&self, presented: &str) -> bool {
        let Some(key) = self.key() else {
            return false;
        };
        let (a, b) = (key.as_bytes(), presented.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl BrokerSettings {
    /// Checks the URL: a `redis://` URL the client library accepts.
    pub fn check(&self) -> Result<(), String> {
        if !self.url.starts_with("redis://") {
            return Err(format!(
                "--broker {:?}: expected redis://HOST:PORT[/DB]",
                self.url
            ));
        }
        redis::Client::open(self.url.as_str())
            .map(|_| ())
            .map_err(|e| format!("--broker {:?}: {e}", self.url))?;
        if self.prefix.is_empty() || self.prefix.contains(char::is_whitespace) {
            return Err(format!(
                "--broker-prefix {:?}: must be non-empty, without spaces",
                self.prefix
            ));
        }
        Ok(())
    }
}

/// What the broker task is asked to do: the engine's commands, and the runtime's look-ups
/// of other nodes' addresses.
enum Job {
    Engine(BrokerCommand),
    Lookup(u16, Sender<Option<String>>),
    Peers(Sender<Result<Vec<(u16, String)>, String>>),
    /// A graceful stop: remove this node's registry entry, then answer.
    Leave(Sender<Result<(), String>>),
}

/// The way to the broker task.
#[derive(Clone)]
pub struct BrokerHandle {
    commands: Sender<Job>,
}

impl BrokerHandle {
    /// Queues a command; the task answers through the hub's input.
    pub fn send(&self, command: BrokerCommand) {
        // The task runs as long as the server does.
        let _ = self.commands.try_send(Job::Engine(command));
    }

    /// The address (`HOST:PORT`) of the node with this tag, from the registry in Redis;
    /// `None` when it is not registered or Redis is unreachable.
    pub async fn lookup(&self, node: u16) -> Option<String> {
        let (answer, answered) = async_channel::bounded(1);
        self.commands.try_send(Job::Lookup(node, answer)).ok()?;
        answered.recv().await.ok().flatten()
    }

    /// A graceful stop: removes this node's entry from the registry (so the other nodes stop
    /// listing and asking it at once, not when the entry expires) and stops refreshing it.
    /// Gives up after `wait` (the entry then expires by itself).
    pub async fn leave(&self, wait: Duration) -> Result<(), String> {
        let (answer, answered) = async_channel::bounded(1);
        self.commands
            .try_send(Job::Leave(answer))
            .map_err(|_| "the broker task stopped".to_string())?;
        or(
            async {
                answered
                    .recv()
                    .await
                    .unwrap_or_else(|_| Err("the broker task stopped".to_string()))
            },
            async {
                smol::Timer::after(wait).await;
                Err(format!("Redis did not answer within {wait:?}"))
            },
        )
        .await
    }

    /// Every registered node (tag, address), this one included.
    pub async fn nodes(&self) -> Result<Vec<(u16, String)>, String> {
        let (answer, answered) = async_channel::bounded(1);
        self.commands
            .try_send(Job::Peers(answer))
            .map_err(|_| "the broker task stopped".to_string())?;
        answered
            .recv()
            .await
            .unwrap_or_else(|_| Err("the broker task stopped".to_string()))
    }
}

/// Starts the broker task on `executor`; `report` feeds the hub, `identity` gets the
/// cluster's key.
pub fn spawn(
    executor: &smol::Executor<'static>,
    settings: BrokerSettings,
    identity: Arc<ClusterIdentity>,
    report: impl Fn(Input) + Send + Sync + 'static,
) -> BrokerHandle {
    let (commands, receiver) = async_channel::unbounded();
    executor
        .spawn(run(settings, receiver, identity, Arc::new(report)))
        .detach();
    BrokerHandle { commands }
}

/// How long a node's registry entry lives without a refresh (refreshed every
/// [`PING_INTERVAL`]); a killed node's entry is gone after it.
pub const NODE_ENTRY_TTL: Duration = Duration::from_secs(15);

type Report = Arc<dyn Fn(Input) + Send + Sync>;

async fn run(
    settings: BrokerSettings,
    commands: Receiver<Job>,
    identity: Arc<ClusterIdentity>,
    report: Report,
) {
    let node = random_hex();
    // Chosen at the first connection and kept: the sessions made here carry it.
    let mut tag: Option<u16> = None;
    let first_delay = settings.reconnect_min.max(Duration::from_millis(1));
    let mut delay = first_delay;
    let mut logged_down = false;
    loop {
        let mut synced = false;
        let link = Link {
            settings: &settings,
            node: &node,
            commands: &commands,
            identity: &identity,
            report: &report,
        };
        let error = link.connected(&mut tag, &mut synced).await;
        if synced {
            delay = first_delay;
            logged_down = false;
        }
        if commands.is_closed() {
            return;
        }
        if !logged_down {
            warn!(%error, url = %settings.url, "broker (Redis) lost; publishes are refused until it is back");
            logged_down = true;
        }
        report(Input::BrokerLost {
            error: error.clone(),
        });
        // Commands that arrive meanwhile fail at once: nothing was sent.
        let until = Instant::now() + jitter(delay);
        loop {
            let next = or(async { Some(commands.recv().await) }, async {
                smol::Timer::at(until).await;
                None
            })
            .await;
            match next {
                Some(Ok(Job::Engine(command))) => fail(&report, command, false, "not connected"),
                Some(Ok(Job::Lookup(_, answer))) => {
                    let _ = answer.try_send(None);
                }
                Some(Ok(Job::Peers(answer))) => {
                    let _ = answer.try_send(Err(format!("Redis is unreachable: {error}")));
                }
                Some(Ok(Job::Leave(answer))) => {
                    identity
                        .leaving
                        .store(true, std::sync::atomic::Ordering::SeqCst);
                    let _ = answer.try_send(Err(format!("Redis is unreachable: {error}")));
                }
                Some(Err(_)) => return,
                None => break,
            }
        }
        delay = (delay * 2).min(settings.reconnect_max.max(first_delay));
    }
}

/// What one connection's life needs.
struct Link<'a> {
    settings: &'a BrokerSettings,
    node: &'a str,
    commands: &'a Receiver<Job>,
    identity: &'a ClusterIdentity,
    report: &'a Report,
}

impl Link<'_> {
    /// One connection's life: returns why it ended.
    async fn connected(&self, tag: &mut Option<u16>, synced: &mut bool) -> String {
        let (settings, node, commands, report) =
            (self.settings, self.node, self.commands, self.report);
        let client = match redis::Client::open(settings.url.as_str()) {
            Ok(client) => client,
            Err(error) => return error.to_string(),
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout));
        let mut conn = match client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(conn) => conn,
            Err(error) => return format!("cannot connect: {error}"),
        };
        let pubsub = match with_timeout(settings.timeout, client.get_async_pubsub()).await {
            Ok(pubsub) => pubsub,
            Err(error) => return format!("cannot open the Pub/Sub connection: {error}"),
        };
        let (mut sink, mut stream) = pubsub.split();
        let keys = Keys::new(&settings.prefix);
        for channel in [&keys.events, &keys.direct] {
            if let Err(error) =
                with_timeout(settings.timeout, sink.subscribe(channel.as_str())).await
            {
                return format!("cannot subscribe: {error}");
            }
        }
        let (epoch, heads) = match sync(settings, &keys, &mut conn).await {
            Ok(synced) => synced,
            Err(error) => return format!("cannot read the channels: {error}"),
        };
        let node_tag = match register(settings, &keys, &mut conn, *tag).await {
            Ok((node_tag, key)) => {
                self.identity.set_key(key);
                self.identity
                    .tag
                    .store(u32::from(node_tag), std::sync::atomic::Ordering::SeqCst);
                node_tag
            }
            Err(error) => return format!("cannot register the node: {error}"),
        };
        *tag = Some(node_tag);
        if self
            .identity
            .leaving
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            // Stopping: reconnected only to finish what is queued, not to be listed again.
            if let Err(error) = forget(&mut conn, &keys.node(node_tag), &advertised(settings)).await
            {
                return format!("cannot leave the registry: {error}");
            }
        }
        info!(url = %settings.url, channels = heads.len(), node_tag = format!("{node_tag:04x}"), "broker (Redis) connected");
        report(Input::BrokerSynced {
            node: node.to_string(),
            node_tag,
            epoch,
            heads,
        });
        *synced = true;
        let publish = redis::Script::new(PUBLISH_SCRIPT);
        let mut next_ping = Instant::now() + PING_INTERVAL;
        loop {
            enum Event {
                Message(Option<redis::Msg>),
                Command(Option<Job>),
                Ping,
            }
            let event = or(
                async { Event::Message(stream.next().await) },
                or(
                    async { Event::Command(commands.recv().await.ok()) },
                    async {
                        smol::Timer::at(next_ping).await;
                        Event::Ping
                    },
                ),
            )
            .await;
            match event {
                Event::Message(None) => return "the Pub/Sub connection closed".to_string(),
                Event::Message(Some(message)) => {
                    if let Some(input) = parse_message(&keys, &message) {
                        report(input);
                    }
                }
                Event::Command(None) => return "the server is stopping".to_string(),
                Event::Command(Some(Job::Engine(command))) => {
                    if let Err(error) =
                        execute(settings, &keys, node, &publish, &mut conn, report, command).await
                    {
                        return error;
                    }
                }
                Event::Command(Some(Job::Lookup(node_tag, answer))) => {
                    let address: redis::RedisResult<Option<String>> = redis::cmd("GET")
                        .arg(keys.node(node_tag))
                        .query_async(&mut conn)
                        .await;
                    match address {
                        Ok(address) => {
                            let _ = answer.try_send(address);
                        }
                        Err(error) => {
                            let _ = answer.try_send(None);
                            if is_lost(&error) {
                                return error.to_string();
                            }
                        }
                    }
                }
                Event::Command(Some(Job::Peers(answer))) => {
                    match registered_nodes(&keys, &mut conn).await {
                        Ok(nodes) => {
                            let _ = answer.try_send(Ok(nodes));
                        }
                        Err(error) => {
                            let _ = answer.try_send(Err(error.to_string()));
                            if is_lost(&error) {
                                return error.to_string();
                            }
                        }
                    }
                }
                Event::Command(Some(Job::Leave(answer))) => {
                    self.identity
                        .leaving
                        .store(true, std::sync::atomic::Ordering::SeqCst);
                    let left = forget(&mut conn, &keys.node(node_tag), &advertised(settings)).await;
                    let _ = answer.try_send(left.map(|_| ()).map_err(|e| e.to_string()));
                    info!(
                        node_tag = format!("{node_tag:04x}"),
                        "left the cluster's registry"
                    );
                }
                Event::Ping
                    if self
                        .identity
                        .leaving
                        .load(std::sync::atomic::Ordering::SeqCst) =>
                {
                    next_ping = Instant::now() + PING_INTERVAL;
                }
                Event::Ping => {
                    next_ping = Instant::now() + PING_INTERVAL;
                    let ping = with_timeout(settings.timeout, sink.ping::<redis::Value>()).await;
                    if let Err(error) = ping {
                        return format!("the Pub/Sub connection does not answer: {error}");
                    }
                    if let Err(error) = refresh(settings, &keys, &mut conn, node_tag).await {
                        return format!("cannot refresh the node's registry entry: {error}");
                    }
                }
            }
        }
    }
}

/// This node's address in the registry.
fn advertised(settings: &BrokerSettings) -> String {
    settings.advertise.clone().unwrap_or_default()
}

/// Claims a node tag (a free random one at the first connection, the same one afterwards)
/// and reads the cluster's key (created by the first node).
async fn register(
    settings: &BrokerSettings,
    keys: &Keys,
    conn: &mut MultiplexedConnection,
    tag: Option<u16>,
) -> redis::RedisResult<(u16, String)> {
    let ttl = u64::try_from(NODE_ENTRY_TTL.as_millis()).unwrap_or(u64::MAX);
    let address = advertised(settings);
    let tag = match tag {
        Some(tag) => {
            let previous: Option<String> = redis::cmd("SET")
                .arg(keys.node(tag))
                .arg(&address)
                .arg("PX")
                .arg(ttl)
                .arg("GET")
                .query_async(conn)
                .await?;
            if previous.as_ref().is_some_and(|p| *p != address) {
                warn!(
                    tag = format!("{tag:04x}"),
                    ?previous,
                    "another node registered this node's tag meanwhile; taking it back"
                );
            }
            tag
        }
        None => loop {
            let bytes = OsRandomIds.next_id_bytes();
            let candidate = u16::from_be_bytes([bytes[0], bytes[1]]);
            let claimed: Option<String> = redis::cmd("SET")
                .arg(keys.node(candidate))
                .arg(&address)
                .arg("NX")
                .arg("PX")
                .arg(ttl)
                .query_async(conn)
                .await?;
            if claimed.is_some() {
                break candidate;
            }
        },
    };
    // A node restarted on the same address has a new tag: the entries its earlier process
    // left name this address too, and would be listed (and its clients counted) twice until
    // they expire. Only one process can listen on an address, so they are stale.
    for (other, other_address) in registered_nodes(keys, conn).await? {
        if other != tag && other_address == address {
            let removed = forget(conn, &keys.node(other), &address).await?;
            if removed {
                info!(
                    tag = format!("{other:04x}"),
                    %address,
                    "removed the registry entry an earlier process on this address left"
                );
            }
        }
    }
    let () = redis::cmd("SET")
        .arg(&keys.key)
        .arg(random_hex())
        .arg("NX")
        .query_async::<Option<String>>(conn)
        .await
        .map(|_| ())?;
    let key: String = redis::cmd("GET").arg(&keys.key).query_async(conn).await?;
    Ok((tag, key))
}

/// Deletes `entry` if it still names `address`; whether it did.
async fn forget(
    conn: &mut MultiplexedConnection,
    entry: &str,
    address: &str,
) -> redis::RedisResult<bool> {
    let removed: i64 = redis::Script::new(FORGET_SCRIPT)
        .key(entry)
        .arg(address)
        .invoke_async(conn)
        .await?;
    Ok(removed == 1)
}

/// Every node of the registry: `SCAN` for `P:node:*`, then their addresses.
async fn registered_nodes(
    keys: &Keys,
    conn: &mut MultiplexedConnection,
) -> redis::RedisResult<Vec<(u16, String)>> {
    let pattern = format!("{}:node:*", keys.prefix);
    let mut cursor: u64 = 0;
    let mut names: Vec<String> = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(500)
            .query_async(conn)
            .await?;
        names.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let addresses: Vec<Option<String>> = redis::cmd("MGET").arg(&names).query_async(conn).await?;
    Ok(names
        .iter()
        .zip(addresses)
        .filter_map(|(name, address)| {
            let tag = u16::from_str_radix(name.rsplit(':').next()?, 16).ok()?;
            Some((tag, address?))
        })
        .collect())
}

async fn refresh(
    settings: &BrokerSettings,
    keys: &Keys,
    conn: &mut MultiplexedConnection,
    tag: u16,
) -> redis::RedisResult<()> {
    let ttl = u64::try_from(NODE_ENTRY_TTL.as_millis()).unwrap_or(u64::MAX);
    redis::cmd("SET")
        .arg(keys.node(tag))
        .arg(advertised(settings))
        .arg("PX")
        .arg(ttl)
        .query_async::<Option<String>>(conn)
        .await
        .map(|_| ())
}

/// Key and channel names under the prefix.
struct Keys {
    prefix: String,
    epoch: String,
    runid: String,
    channels: String,
    events: String,
    direct: String,
    key: String,
}

impl Keys {
    fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_string(),
            epoch: format!("{prefix}:epoch"),
            runid: format!("{prefix}:runid"),
            channels: format!("{prefix}:channels"),
            events: format!("{prefix}:events"),
            direct: format!("{prefix}:direct"),
            key: format!("{prefix}:key"),
        }
    }

    fn meta(&self, channel: &str) -> String {
        format!("{}:ch:{channel}:meta", self.prefix)
    }

    fn node(&self, tag: u16) -> String {
        format!("{}:node:{tag:04x}", self.prefix)
    }

    fn log(&self, channel: &str) -> String {
        format!("{}:ch:{channel}:log", self.prefix)
    }
}

/// After (re)connecting: the restart check, the default epoch and every channel's head.
async fn sync(
    settings: &BrokerSettings,
    keys: &Keys,
    conn: &mut MultiplexedConnection,
) -> redis::RedisResult<(String, Vec<ChannelHead>)> {
    let info: String = redis::cmd("INFO").arg("server").query_async(conn).await?;
    let run_id = info
        .lines()
        .find_map(|line| line.strip_prefix("run_id:"))
        .unwrap_or("unknown")
        .trim()
        .to_string();
    let outcome: i64 = redis::Script::new(RESTART_SCRIPT)
        .key(&keys.runid)
        .key(&keys.epoch)
        .key(&keys.channels)
        .arg(&run_id)
        .arg(random_hex())
        .arg(if settings.durable { "1" } else { "0" })
        .arg(&keys.prefix)
        .invoke_async(conn)
        .await?;
    if outcome == 2 {
        warn!(%run_id, "Redis restarted and may have lost events: every channel starts a new epoch (clients get recovered: false)");
    }
    let epoch: String = redis::cmd("GET").arg(&keys.epoch).query_async(conn).await?;
    let channels: Vec<String> = redis::cmd("ZRANGE")
        .arg(&keys.channels)
        .arg(0)
        .arg(-1)
        .query_async(conn)
        .await?;
    let mut heads = Vec::with_capacity(channels.len());
    for chunk in channels.chunks(500) {
        let mut pipe = redis::pipe();
        for channel in chunk {
            pipe.cmd("HMGET").arg(keys.meta(channel)).arg("e").arg("s");
        }
        let metas: Vec<(Option<String>, Option<u64>)> = pipe.query_async(conn).await?;
        for (channel, (epoch, latest)) in chunk.iter().zip(metas) {
            if let (Some(epoch), Some(latest)) = (epoch, latest) {
                heads.push(ChannelHead {
                    channel: channel.as_str().into(),
                    epoch: epoch.into(),
                    latest,
                });
            }
        }
    }
    Ok((epoch, heads))
}

/// Carries out one command; `Err` when the connection is to be considered lost.
async fn execute(
    settings: &BrokerSettings,
    keys: &Keys,
    node: &str,
    publish: &redis::Script,
    conn: &mut MultiplexedConnection,
    report: &Report,
    command: BrokerCommand,
) -> Result<(), String> {
    match command {
        BrokerCommand::Publish {
            batch,
            unix_millis,
            events,
        } => {
            let mut invocation = publish.key(&keys.epoch);
            invocation.key(&keys.channels);
            for event in &events {
                invocation.key(keys.meta(&event.channel));
                invocation.key(keys.log(&event.channel));
            }
            invocation
                .arg(&keys.events)
                .arg(random_hex())
                .arg(unix_millis)
                .arg(settings.history_size)
                .arg(u64::try_from(settings.history_ttl.as_millis()).unwrap_or(u64::MAX))
                .arg(format!("{node}:{}", batch.0))
                .arg(events.len());
            for OutgoingEvent { channel, body } in &events {
                invocation.arg(&**channel).arg(&**body);
            }
            let answer: redis::RedisResult<Vec<redis::Value>> = invocation.invoke_async(conn).await;
            match answer.map(|values| positions(&values)) {
                Ok(Some(positions)) => {
                    report(Input::BrokerPublished { batch, positions });
                    Ok(())
                }
                Ok(None) => {
                    fail_batch(
                        report,
                        batch,
                        true,
                        "unexpected answer from the publish script",
                    );
                    Ok(())
                }
                Err(error) if is_lost(&error) => {
                    fail_batch(report, batch, true, &error.to_string());
                    Err(error.to_string())
                }
                Err(error) => {
                    // Redis answered with an error (OOM, say). It refuses a script at its
                    // first write that may grow memory, so a one-event publish changed nothing
                    // (checked on Redis 7.0 with --maxmemory); in a batch, the events before
                    // the refused one may have been published.
                    let refused = format!("Redis refused it: {error}");
                    fail_batch(report, batch, events.len() > 1, &refused);
                    Ok(())
                }
            }
        }
        BrokerCommand::Direct {
            batch,
            audience,
            frame,
        } => {
            let message = serde_json::json!({
                "channel": audience.channel,
                "client_type": audience.client_type,
                "frame": &*frame,
            })
            .to_string();
            let answer: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                .arg(&keys.direct)
                .arg(message)
                .query_async(conn)
                .await;
            match answer {
                Ok(_) => {
                    report(Input::BrokerPublished {
                        batch,
                        positions: Vec::new(),
                    });
                    Ok(())
                }
                Err(error) if is_lost(&error) => {
                    fail_batch(report, batch, true, &error.to_string());
                    Err(error.to_string())
                }
                Err(error) => {
                    fail_batch(report, batch, false, &format!("Redis refused it: {error}"));
                    Ok(())
                }
            }
        }
        BrokerCommand::ReadHistory {
            channel,
            after,
            limit,
        } => {
            // One transaction, so the head and the events agree.
            let answer: redis::RedisResult<HistoryAnswer> = redis::pipe()
                .atomic()
                .cmd("GET")
                .arg(&keys.epoch)
                .cmd("HMGET")
                .arg(keys.meta(&channel))
                .arg("e")
                .arg("s")
                .cmd("XRANGE")
                .arg(keys.log(&channel))
                .arg(format!("{}-0", after.saturating_add(1)))
                .arg("+")
                .arg("COUNT")
                .arg(limit)
                .query_async(conn)
                .await;
            match answer {
                Ok((default_epoch, (epoch, latest), entries)) => {
                    let (epoch, latest) = match (epoch, latest) {
                        (Some(epoch), Some(latest)) => (epoch, latest),
                        _ => (default_epoch.unwrap_or_default(), 0),
                    };
                    let epoch: Arc<str> = epoch.into();
                    let events = entries
                        .into_iter()
                        .filter_map(|(id, fields)| stream_entry(&channel, &epoch, &id, &fields))
                        .collect();
                    report(Input::HistoryRead {
                        channel: Arc::clone(&channel),
                        head: ChannelHead {
                            channel,
                            epoch,
                            latest,
                        },
                        events,
                    });
                    Ok(())
                }
                Err(error) if is_lost(&error) => Err(error.to_string()),
                Err(error) => {
                    warn!(%error, %channel, "cannot read a channel's history from Redis");
                    Err(format!("cannot read history: {error}"))
                }
            }
        }
    }
}

/// The default epoch, the channel's meta (`e`, `s`) and its stream entries (id, fields).
type HistoryAnswer = (
    Option<String>,
    (Option<String>, Option<u64>),
    Vec<(String, Vec<String>)>,
);

fn is_lost(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_unrecoverable_error()
}

/// `{offset, epoch, offset, epoch, …}` from the publish script.
fn positions(values: &[redis::Value]) -> Option<Vec<Position>> {
    if !values.len().is_multiple_of(2) {
        return None;
    }
    values
        .chunks(2)
        .map(|pair| {
            let offset: u64 = redis::from_redis_value_ref(&pair[0]).ok()?;
            let epoch: String = redis::from_redis_value_ref(&pair[1]).ok()?;
            Some(Position { offset, epoch })
        })
        .collect()
}

/// One stream entry (`<offset>-0`, fields `t`, `o`, `d`) as a channel event.
fn stream_entry(
    channel: &Arc<str>,
    epoch: &Arc<str>,
    id: &str,
    fields: &[String],
) -> Option<BrokerEvent> {
    let offset: u64 = id.split('-').next()?.parse().ok()?;
    let mut unix_millis = 0;
    let mut origin = None;
    let mut body = None;
    for pair in fields.chunks(2) {
        let [name, value] = pair else { continue };
        match name.as_str() {
            "t" => unix_millis = value.parse().unwrap_or(0),
            "o" => origin = parse_origin(value),
            "d" => body = Some(value.as_str()),
            _ => {}
        }
    }
    Some(BrokerEvent {
        channel: Arc::clone(channel),
        epoch: Arc::clone(epoch),
        offset,
        unix_millis,
        origin,
        body: body?.into(),
    })
}

/// `<node>:<batch>:<index>`.
fn parse_origin(text: &str) -> Option<EventOrigin> {
    let mut parts = text.rsplitn(3, ':');
    let index = parts.next()?.parse().ok()?;
    let batch = parts.next()?.parse().ok()?;
    let node = parts.next()?;
    Some(EventOrigin {
        node: node.into(),
        batch: BatchId(batch),
        index,
    })
}

/// A Pub/Sub message as an input; `None` (logged) when it is not one of ours.
fn parse_message(keys: &Keys, message: &redis::Msg) -> Option<Input> {
    let payload = std::str::from_utf8(message.get_payload_bytes()).ok();
    let input = if message.get_channel_name() == keys.events {
        payload
            .and_then(parse_event)
            .map(|event| Input::BrokerEvents {
                events: vec![event],
            })
    } else if message.get_channel_name() == keys.direct {
        payload.and_then(parse_direct)
    } else {
        None
    };
    if input.is_none() {
        warn!(
            channel = message.get_channel_name(),
            "ignoring a malformed broker message"
        );
    }
    input
}

/// `<channel>\n<epoch>\n<offset>\n<unix ms>\n<origin>\n<body>`.
fn parse_event(text: &str) -> Option<BrokerEvent> {
    let mut parts = text.splitn(6, '\n');
    let channel = parts.next()?;
    let epoch = parts.next()?;
    let offset = parts.next()?.parse().ok()?;
    let unix_millis = parts.next()?.parse().ok()?;
    let origin = parse_origin(parts.next()?);
    let body = parts.next()?;
    Some(BrokerEvent {
        channel: channel.into(),
        epoch: epoch.into(),
        offset,
        unix_millis,
        origin,
        body: body.into(),
    })
}

fn parse_direct(text: &str) -> Option<Input> {
    #[derive(serde::Deserialize)]
    struct Direct {
        channel: Option<String>,
        client_type: Option<String>,
        frame: String,
    }
    let direct: Direct = serde_json::from_str(text).ok()?;
    Some(Input::BrokerDirect {
        audience: DirectAudience {
            channel: direct.channel,
            client_type: direct.client_type,
        },
        frame: direct.frame.into(),
    })
}

fn fail(report: &Report, command: BrokerCommand, outcome_unknown: bool, why: &str) {
    match command {
        BrokerCommand::Publish { batch, .. } | BrokerCommand::Direct { batch, .. } => {
            fail_batch(report, batch, outcome_unknown, why)
        }
        // The engine reads again after the next sync.
        BrokerCommand::ReadHistory { .. } => {}
    }
}

fn fail_batch(report: &Report, batch: BatchId, outcome_unknown: bool, why: &str) {
    report(Input::BrokerPublishFailed {
        batch,
        error: BrokerError {
            outcome_unknown,
            message: why.to_string(),
        },
    });
}

async fn with_timeout<T>(
    timeout: Duration,
    work: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    or(async { work.await.map_err(|e| e.to_string()) }, async {
        smol::Timer::after(timeout).await;
        Err(format!("no answer within {timeout:?}"))
    })
    .await
}

/// 16 hex digits from the OS generator: epochs and the node's name.
fn random_hex() -> String {
    OsRandomIds.next_id_bytes()[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// ±20 %, so that nodes do not reconnect in lockstep.
fn jitter(delay: Duration) -> Duration {
    let byte = OsRandomIds.next_id_bytes()[0];
    let factor = 0.8 + 0.4 * f64::from(byte) / 255.0;
    delay.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pub_sub_events_and_origins_parse_and_malformed_ones_do_not() {
        let event = parse_event("jobs\nab12\n7\n1700000000000\nn1:3:0\n{\"type\":\"x\"}").unwrap();
        assert_eq!(&*event.channel, "jobs");
        assert_eq!(event.offset, 7);
        assert_eq!(event.origin.unwrap().batch, BatchId(3));
        assert_eq!(&*event.body, "{\"type\":\"x\"}");
        assert!(parse_event("jobs\nab12\nseven\n0\n\n{}").is_none());
        assert!(parse_event("jobs").is_none());
        assert_eq!(parse_origin(""), None);
        assert!(parse_direct("{\"frame\":\"{}\"}").is_some());
        assert!(parse_direct("not json").is_none());
    }

    #[test]
    fn forwarded_requests_are_trusted_only_with_the_clusters_key() {
        let identity = ClusterIdentity::default();
        assert!(!identity.trusts(""), "no key read yet: nothing is trusted");
        identity.set_key("0123456789abcdef".to_string());
        assert!(identity.trusts("0123456789abcdef"));
        assert!(!identity.trusts("0123456789abcdee"));
        assert!(!identity.trusts("0123456789abcdef0"));
        assert!(!identity.trusts(""));
    }
}
