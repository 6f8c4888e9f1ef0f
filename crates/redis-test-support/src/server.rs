//! Real `redis-server` processes on free loopback ports, killed on drop.

use std::{
    io,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use redis::ConnectionLike as _;

/// Environment variable naming the `redis-server` binary (default: `redis-server` on `PATH`).
pub const SERVER_BIN_ENV: &str = "REDIS_SERVER_BIN";

/// How to get the binary this crate needs.
pub(crate) const INSTALL_HINT: &str = "install it (Debian/Ubuntu: `apt-get install redis-server redis-tools`, \
     macOS: `brew install redis`) or point REDIS_SERVER_BIN at the binary";

/// Time allowed for a server to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The `redis-server` binary to run.
pub fn server_bin() -> PathBuf {
    std::env::var_os(SERVER_BIN_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("redis-server"))
}

/// A loopback port that is free now, and whose cluster bus port (`port + 10000`) is free too.
///
/// Another process may take it before the server binds it; [`TestServer`] retries on a new port
/// when that happens.
pub fn free_port() -> u16 {
    for _ in 0..200 {
        let Ok(listener) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(addr) = listener.local_addr() else {
            continue;
        };
        let port = addr.port();
        if port > 55_535 {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port pair found after 200 tries");
}

/// A `redis-server` child process on `127.0.0.1:<port>`, with its own working directory.
/// Dropping it kills the process and removes the directory.
#[derive(Debug)]
pub struct TestServer {
    port: u16,
    config_file: Option<PathBuf>,
    args: Vec<String>,
    password: Option<String>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// Options for [`TestServer::builder`].
#[derive(Debug, Default, Clone)]
#[must_use]
pub struct TestServerBuilder {
    config_file: Option<PathBuf>,
    args: Vec<String>,
    password: Option<String>,
}

impl TestServerBuilder {
    /// Adds raw `redis-server` arguments (`["--maxmemory", "10mb"]`).
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Starts from this config file (it must be writable: sentinels rewrite theirs).
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    /// Requires this password (`--requirepass`); [`TestServer::url`] includes it.
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_owned());
        self.args
            .extend(["--requirepass".to_owned(), password.to_owned()]);
        self
    }

    /// Starts the server and waits until it answers.
    ///
    /// # Panics
    /// When `redis-server` is missing or the server does not start; the message says why and
    /// includes the server log.
    pub fn spawn(self) -> TestServer {
        TestServer::spawn_with(self.config_file, self.args, self.password)
    }
}

impl TestServer {
    /// Starts a plain standalone server.
    ///
    /// # Panics
    /// As [`TestServerBuilder::spawn`].
    pub fn spawn() -> Self {
        Self::builder().spawn()
    }

    /// A server with extra arguments.
    pub fn builder() -> TestServerBuilder {
        TestServerBuilder::default()
    }

    /// Starts a replica of `master` and waits until its link to the master is up.
    ///
    /// # Panics
    /// As [`TestServerBuilder::spawn`], and when the link is not up within 30 s (with both logs).
    pub fn spawn_replica_of(master: &Self) -> Self {
        let replica = Self::builder()
            .args(["--replicaof", "127.0.0.1", &master.port().to_string()])
            .spawn();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !replica.replica_in_sync() {
            assert!(
                std::time::Instant::now() < deadline,
                "replica {} did not sync with {} within 30 s\n--- master ---\n{}\n--- replica ---\n{}",
                replica.port(),
                master.port(),
                master.log(),
                replica.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        replica
    }

    /// Whether this server is a replica whose link to its master is up
    /// (`master_link_status:up` in `INFO replication`).
    pub fn replica_in_sync(&self) -> bool {
        self.cmd::<String>(redis::cmd("INFO").arg("replication"))
            .is_ok_and(|info| info.contains("master_link_status:up"))
    }

    fn spawn_with(
        config_file: Option<PathBuf>,
        args: Vec<String>,
        password: Option<String>,
    ) -> Self {
        let mut last_error = String::new();
        for _ in 0..5 {
            let mut server = Self {
                port: free_port(),
                config_file: config_file.clone(),
                args: args.clone(),
                password: password.clone(),
                dir: tempfile::Builder::new()
                    .prefix("redis-test-")
                    .tempdir()
                    .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}")),
                child: None,
            };
            match server.start() {
                Ok(()) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("redis-server did not start after 5 tries: {last_error}");
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://[:password@]127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(pw) => format!("redis://:{pw}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// The working directory (logs, cluster config).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// Whether the process is running (as far as this handle knows).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills the process at once (SIGKILL): no goodbye to clients, like a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (with empty data), waiting until it answers.
    ///
    /// # Panics
    /// When it does not come back.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.start() {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("restart failed: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Runs a command synchronously (for set-up and fault injection, not for the code under test).
    ///
    /// # Panics
    /// When the server cannot be reached.
    pub fn cmd<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        let mut conn = self.sync_connection()?;
        cmd.query(&mut conn)
    }

    pub(crate) fn sync_connection(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(self.url())?.get_connection_with_timeout(Duration::from_secs(2))
    }

    fn start(&mut self) -> Result<(), String> {
        let log = self.dir.path().join("redis.log");
        let mut command = Command::new(server_bin());
        if let Some(config) = &self.config_file {
            command.arg(config);
        }
        command
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--protected-mode", "no", "--loglevel", "notice"])
            .arg("--logfile")
            .arg(&log)
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command.spawn().map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                panic!("`{}` was not found: {INSTALL_HINT}", server_bin().display());
            }
            format!("cannot run {}: {e}", server_bin().display())
        })?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if !self.is_running() {
                let log = self.log();
                self.child = None;
                return Err(format!("redis-server exited early; log:\n{log}"));
            }
            if self.answers() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = self.log();
                self.kill();
                return Err(format!(
                    "redis-server did not answer within {START_TIMEOUT:?}; log:\n{log}"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Connected, authenticated and not loading.
    fn answers(&self) -> bool {
        let Ok(mut conn) = self.sync_connection() else {
            return false;
        };
        conn.req_command(&redis::cmd("PING")).is_ok()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Several independent masters (for Redlock).
#[derive(Debug)]
pub struct TestMasters {
    servers: Vec<TestServer>,
}

impl TestMasters {
    /// Starts `n` standalone servers.
    ///
    /// # Panics
    /// As [`TestServer::spawn`].
    pub fn spawn(n: usize) -> Self {
        Self {
            servers: (0..n).map(|_| TestServer::spawn()).collect(),
        }
    }

    /// The servers, to kill or restart one.
    pub fn servers(&mut self) -> &mut [TestServer] {
        &mut self.servers
    }

    /// One URL per master.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(TestServer::url).collect()
    }
}
