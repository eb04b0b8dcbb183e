//! Cluster test helpers: a real `redis-server` on a free loopback port (its own directory, no
//! persistence), and `livebridge` nodes — the real binary — on it, each on its own loopback
//! port. Every test gets its own Redis, so tests run in parallel.
//!
//! Without `redis-server` on `PATH` the tests fail with a message saying how to install it
//! (`scripts/install-test-deps.sh`): they are part of `cargo test`, and skipping them silently
//! would hide that cluster mode went untested.

#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a node or Redis may take to come up, or a condition to become true.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// A `redis-server` process; killed when dropped.
pub struct Redis {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// Extra `redis-server` arguments.
    extra: Vec<String>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_with(&[])
    }

    /// With extra `redis-server` arguments (`--maxmemory 3mb`...).
    pub fn start_with(extra: &[&str]) -> Redis {
        let port = free_port();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("redis-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut redis = Redis {
            port,
            dir,
            child: None,
            extra: extra.iter().map(|a| a.to_string()).collect(),
        };
        redis.launch();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start redis-server ({error}): the cluster tests need Redis on PATH; \
                     install it with scripts/install-test-deps.sh (Debian package redis-server)"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not answer PING", self.port);
    }

    fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut answer = [0u8; 7];
        stream.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
    }

    /// Runs one command; returns the reply's text (a status, an integer or a bulk string).
    pub fn command(&self, args: &[&str]) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let mut first = String::new();
        reader.read_line(&mut first).unwrap();
        match first.as_bytes().first() {
            Some(b'$') => {
                let length: usize = first[1..].trim().parse().unwrap();
                let mut body = vec![0; length + 2];
                reader.read_exact(&mut body).unwrap();
                String::from_utf8_lossy(&body[..length]).into_owned()
            }
            _ => first[1..].trim().to_string(),
        }
    }

    /// The ids of the Pub/Sub connections, oldest first.
    pub fn pubsub_clients(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .command(&["CLIENT", "LIST"])
            .lines()
            .filter(|line| {
                line.split(' ')
                    .any(|f| f.starts_with("sub=") && f != "sub=0")
            })
            .filter_map(|line| {
                line.split(' ')
                    .find_map(|f| f.strip_prefix("id=")?.parse().ok())
            })
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Kills the server (SIGKILL: what it held in memory is gone).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(self.dir.join("dump.rdb"));
        self.launch();
    }

    /// Stops it with `SHUTDOWN SAVE` (a snapshot of everything, as an RDB file) and starts it
    /// again from that snapshot: the data survives, the process (its `run_id`) does not.
    pub fn restart_from_snapshot(&mut self) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        stream.write_all(b"SHUTDOWN SAVE\r\n").expect("SHUTDOWN");
        if let Some(mut child) = self.child.take() {
            crate::support::wait_child(&mut child, "redis-server after SHUTDOWN SAVE", PATIENCE);
        }
        assert!(self.dir.join("dump.rdb").exists(), "redis saved a snapshot");
        self.launch();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `livebridge serve --broker …` process; killed (SIGKILL) when dropped.
pub struct Node {
    pub addr: String,
    child: Option<Child>,
    agent: ureq::Agent,
}

impl Node {
    /// Starts a node on `redis` and waits until it is ready (health 200).
    pub fn start(redis: &Redis, extra: &[&str]) -> Node {
        Node::start_at(redis, "127.0.0.1:0", extra)
    }

    /// Starts a node listening on `bind` (`127.0.0.1:0`: any free port) and waits until it is
    /// ready.
    pub fn start_at(redis: &Redis, bind: &str, extra: &[&str]) -> Node {
        let broker = ["--broker", &redis.url(), "--broker-reconnect-max", "500ms"];
        let mut child = Command::new(env!("CARGO_BIN_EXE_livebridge"))
            .args(["serve", "--bind", bind, "--log", "warn"])
            .args(broker.iter().chain(extra))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start livebridge");
        let addr = crate::support::announced_address(&mut child);
        let node = Node {
            addr,
            child: Some(child),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(10)))
                .build()
                .new_agent(),
        };
        node.wait_for_health("healthy");
        node
    }

    pub fn socket_addr(&self) -> std::net::SocketAddr {
        self.addr.parse().unwrap()
    }

    /// Status and JSON body; `None` when the node did not answer.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Option<(u16, Value)> {
        let url = format!("http://{}{path}", self.addr);
        let response = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            (_, Some(body)) => self.agent.post(&url).send(body.to_string()),
            (_, None) => self.agent.post(&url).send_empty(),
        };
        let mut response = response.ok()?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().ok()?;
        Some((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None).expect("the node answers")
    }

    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(&body))
            .expect("the node answers")
    }

    pub fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.addr);
        let mut response = self.agent.get(&url).call().expect("metrics");
        response.body_mut().read_to_string().expect("metrics text")
    }

    /// Waits until `/api/system/health` says `status`; panics with the last answer if it does
    /// not within [`PATIENCE`].
    pub fn wait_for_health(&self, status: &str) -> Value {
        let deadline = Instant::now() + PATIENCE;
        let mut last = None;
        while Instant::now() < deadline {
            if let Some((_, health)) = self.call("GET", "/api/system/health", None) {
                if health["status"] == status {
                    return health;
                }
                last = Some(health);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "node {} never said {status}: last health {last:?}",
            self.addr
        );
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` (`STOP`, `CONT`, `TERM`…) to the process with `kill(1)`.
    pub fn signal(&self, signal: &str) {
        let pid = self.pid().expect("the node runs");
        let status = crate::support::output_within(
            Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(pid.to_string()),
            "kill(1)",
            PATIENCE,
        )
        .status;
        assert!(status.success(), "kill -{signal} {pid}: {status}");
    }

    /// A graceful stop (SIGTERM); returns its exit status once it has exited (within
    /// [`PATIENCE`], or the test fails).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        let mut child = self.child.take().expect("the node runs");
        crate::support::wait_child(&mut child, "livebridge after SIGTERM", PATIENCE)
    }

    /// `kill -9`, then the node started again on the same address with the same arguments
    /// (`extra`); waits until it is ready.
    pub fn restart(&mut self, redis: &Redis, extra: &[&str]) {
        self.kill();
        let again = Node::start_at(redis, &self.addr, extra);
        *self = again;
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A round-robin TCP proxy on a loopback port: each accepted connection goes to the next
/// backend (skipping one that refuses), bytes copied both ways by two threads. With one
/// connection per request, requests are spread over the backends like a plain load balancer
/// without sticky sessions would.
pub struct Proxy {
    pub addr: std::net::SocketAddr,
}

impl Proxy {
    pub fn start(backends: Vec<String>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy port");
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut next = 0usize;
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let mut upstream = None;
                for _ in 0..backends.len() {
                    let backend = &backends[next % backends.len()];
                    next += 1;
                    if let Ok(stream) = TcpStream::connect(backend) {
                        upstream = Some(stream);
                        break;
                    }
                }
                let Some(upstream) = upstream else { continue };
                let pipe = |mut from: TcpStream, mut to: TcpStream| {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                        let _ = from.shutdown(std::net::Shutdown::Both);
                    });
                };
                pipe(client.try_clone().unwrap(), upstream.try_clone().unwrap());
                pipe(upstream, client);
            }
        });
        Proxy { addr }
    }

    /// An HTTP client that opens a new connection for every request (so each one may land
    /// on another node).
    pub fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_idle_connections(0)
            .timeout_global(Some(Duration::from_secs(20)))
            .build()
            .new_agent()
    }

    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let agent = Proxy::agent();
        let url = format!("http://{}{path}", self.addr);
        let response = match (method, body) {
            ("GET", _) => agent.get(&url).call(),
            (_, Some(body)) => agent.post(&url).send(body.to_string()),
            (_, None) => agent.post(&url).send_empty(),
        };
        let mut response = response.expect("the proxy answers");
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}
