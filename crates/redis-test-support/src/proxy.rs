//! A TCP proxy in front of a test server that injects network faults on demand.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

#[derive(Debug)]
struct State {
    upstream: SocketAddr,
    latency_ms: AtomicU64,
    blackhole: AtomicBool,
    refuse: AtomicBool,
    /// Bumped to close every open connection.
    resets: watch::Sender<u64>,
}

/// Listens on a free loopback port and forwards to `127.0.0.1:<upstream>`, with switches for
/// latency, a blackhole (bytes vanish, nothing answers), refusing new connections and resetting
/// open ones. Stops on drop.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts forwarding to `127.0.0.1:<upstream_port>`.
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub async fn start(upstream_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("proxy bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("proxy addr: {e}"));
        let state = Arc::new(State {
            upstream: SocketAddr::from(([127, 0, 0, 1], upstream_port)),
            latency_ms: AtomicU64::new(0),
            blackhole: AtomicBool::new(false),
            refuse: AtomicBool::new(false),
            resets: watch::channel(0).0,
        });
        let accept_state = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if accept_state.refuse.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                tokio::spawn(serve(client, accept_state.clone()));
            }
        });
        Self {
            addr,
            state,
            accept,
        }
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `redis://127.0.0.1:<proxy port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.addr.port())
    }

    /// Delays every chunk forwarded in either direction.
    pub fn set_latency(&self, latency: Duration) {
        self.state
            .latency_ms
            .store(latency.as_millis() as u64, Ordering::SeqCst);
    }

    /// While on, bytes are read and dropped in both directions: connections stay open but nothing
    /// is answered (a partition, or a server stuck in a long pause).
    pub fn set_blackhole(&self, on: bool) {
        self.state.blackhole.store(on, Ordering::SeqCst);
    }

    /// While on, new connections are accepted and closed at once.
    pub fn set_refuse_new(&self, on: bool) {
        self.state.refuse.store(on, Ordering::SeqCst);
    }

    /// Closes every open connection now.
    pub fn reset_all(&self) {
        self.state.resets.send_modify(|n| *n += 1);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.reset_all();
    }
}

async fn serve(client: TcpStream, state: Arc<State>) {
    let Ok(upstream) = TcpStream::connect(state.upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    let mut resets = state.resets.subscribe();
    resets.mark_unchanged();
    tokio::select! {
        _ = pump(client_read, upstream_write, &state) => {}
        _ = pump(upstream_read, client_write, &state) => {}
        _ = resets.changed() => {}
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    state: &State,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if state.blackhole.load(Ordering::SeqCst) {
            continue;
        }
        let latency = state.latency_ms.load(Ordering::SeqCst);
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
