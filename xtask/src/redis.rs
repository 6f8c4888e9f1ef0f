//! Choosing a Redis for tests, benches and the demo, and stopping what we started.

use std::{
    env,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The Docker image used when `REDIS_IMAGE` is unset or empty.
const DEFAULT_IMAGE: &str = "redis:7";

/// The Docker image to start: `REDIS_IMAGE` (e.g. `redis:7.2`, `valkey/valkey:8`), else
/// [`DEFAULT_IMAGE`].
fn docker_image() -> String {
    env::var("REDIS_IMAGE")
        .ok()
        .map(|image| image.trim().to_owned())
        .filter(|image| !image.is_empty())
        .unwrap_or_else(|| DEFAULT_IMAGE.to_owned())
}

/// A server to test against; whatever this process started is stopped on drop.
pub(crate) struct Server {
    url: String,
    kind: Kind,
}

enum Kind {
    External,
    Docker { container: String, image: String },
    Local { child: Child, _dir: TempDir },
}

impl Server {
    /// `REDIS_URL` if set, else Docker when an engine answers and the image is there or pullable,
    /// else a local `redis-server`.
    pub(crate) fn pick() -> Result<Self, String> {
        if let Ok(url) = env::var("REDIS_URL")
            && !url.trim().is_empty()
        {
            println!("Redis: REDIS_URL={url} (not started by xtask, never flushed)");
            return Ok(Self {
                url,
                kind: Kind::External,
            });
        }
        match Self::docker() {
            Ok(server) => return Ok(server),
            Err(why) => println!("Redis: no Docker ({why}); trying a local redis-server"),
        }
        Self::local()
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn describe(&self) -> String {
        match &self.kind {
            Kind::External => format!("REDIS_URL {}", self.url),
            Kind::Docker { image, .. } => format!("docker {image} at {}", self.url),
            Kind::Local { .. } => format!("local redis-server at {}", self.url),
        }
    }

    fn docker() -> Result<Self, String> {
        let image = docker_image();
        if !quiet_ok(Command::new("docker").arg("info"), Duration::from_secs(10)) {
            return Err("`docker info` failed: no engine".to_owned());
        }
        let have_image = quiet_ok(
            Command::new("docker").args(["image", "inspect", &image]),
            Duration::from_secs(10),
        );
        if !have_image
            && !quiet_ok(
                Command::new("docker").args(["pull", &image]),
                Duration::from_secs(120),
            )
        {
            return Err(format!("image {image} is not present and cannot be pulled"));
        }
        let port = free_port()?;
        let output = Command::new("docker")
            .args(["run", "-d", "--rm", "-p"])
            .arg(format!("127.0.0.1:{port}:6379"))
            .arg(&image)
            // Options only: the image's entrypoint starts its own server binary with them
            // (`redis-server` in redis images, `valkey-server` in valkey ones).
            .args(["--save", "", "--appendonly", "no"])
            .output()
            .map_err(|e| format!("docker run: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "docker run failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        let container = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let server = Self {
            url: format!("redis://127.0.0.1:{port}"),
            kind: Kind::Docker {
                container,
                image: image.clone(),
            },
        };
        wait_ready(port)?;
        println!("Redis: docker {image} on 127.0.0.1:{port}");
        Ok(server)
    }

    fn local() -> Result<Self, String> {
        let bin = env::var_os("REDIS_SERVER_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("redis-server"));
        let dir = TempDir::new()?;
        let port = free_port()?;
        let child = Command::new(&bin)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&dir.0)
            .arg("--logfile")
            .arg(dir.0.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "no Redis available: REDIS_URL is not set, Docker is not usable, and `{}` cannot be run ({e}).\n\
                     Install one: `apt-get install redis-server redis-tools` (Debian/Ubuntu), `brew install redis` (macOS), \
                     or start Docker, or set REDIS_URL",
                    bin.display()
                )
            })?;
        let server = Self {
            url: format!("redis://127.0.0.1:{port}"),
            kind: Kind::Local { child, _dir: dir },
        };
        wait_ready(port)?;
        println!("Redis: local {} on 127.0.0.1:{port}", bin.display());
        Ok(server)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        match &mut self.kind {
            Kind::External => {}
            Kind::Docker { container, .. } => {
                let _ = Command::new("docker")
                    .args(["stop", container.as_str()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            Kind::Local { child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Runs a command with no output; true if it exits 0 within `timeout`.
fn quiet_ok(cmd: &mut Command, timeout: Duration) -> bool {
    let Ok(mut child) = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("local_addr: {e}"))
}

/// Waits until `PING` is answered with `+PONG`.
fn wait_ready(port: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
            let mut reply = [0u8; 7];
            if stream.write_all(b"PING\r\n").is_ok()
                && stream.read_exact(&mut reply).is_ok()
                && &reply == b"+PONG\r\n"
            {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!(
        "Redis on port {port} did not answer PING within 30 s"
    ))
}

/// A temporary directory removed on drop (std only).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = env::temp_dir().join(format!("xtask-redis-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
