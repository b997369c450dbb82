//! `floor-server`: the floor a STOMP server's fan-out is measured against. A minimal
//! WebSocket broadcast server with no STOMP at all, built like Herald's WebSocket
//! transport: tokio-websockets on a plain TCP socket, one task per connection, a
//! per-connection outbox (short mutex + notify) that senders push into and never
//! wait on, and a connection task that drains everything pending, feeds one
//! WebSocket message per queued payload and flushes once.
//!
//! Protocol: every connection gets the text message `READY` once it is registered;
//! any text or binary message a connection sends is forwarded verbatim to every
//! *other* connection. The bench's `--raw` mode publishes MESSAGE-shaped frames with
//! the same headers Herald would deliver, so subscribers receive byte-for-byte the
//! same amount and parse it the same way.
//!
//! The server exits by itself after `--max-seconds`, so a forgotten one cannot linger.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_websockets::{Message, ServerBuilder};

#[derive(Args, Debug, Clone)]
pub(crate) struct FloorArgs {
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:18090")]
    pub addr: String,
    /// Exit after this many seconds.
    #[arg(long, default_value_t = 3600.0)]
    pub max_seconds: f64,
    /// Bytes that may wait for one connection before it is closed as a slow
    /// consumer (Herald's default `stomp.outbound_queue`).
    #[arg(long, default_value_t = 1024 * 1024)]
    pub outbound_queue: usize,
}

/// One connection's outbox: pushed to by any task, drained by the connection's own.
struct Conn {
    queue: Mutex<Outbox>,
    notify: Notify,
    closed: AtomicBool,
}

#[derive(Default)]
struct Outbox {
    frames: Vec<Bytes>,
    bytes: usize,
}

struct Hub {
    conns: RwLock<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    limit: usize,
    open: AtomicUsize,
}

impl Hub {
    /// Queues `payload` for every connection but `from`; never waits.
    fn broadcast(&self, from: u64, payload: &Bytes) {
        let conns = self.conns.read().unwrap();
        for (id, c) in conns.iter() {
            if *id == from || c.closed.load(Relaxed) {
                continue;
            }
            let mut q = c.queue.lock().unwrap();
            if q.bytes + payload.len() > self.limit {
                drop(q);
                c.closed.store(true, Relaxed);
                c.notify.notify_one();
                continue;
            }
            let was_empty = q.frames.is_empty();
            q.frames.push(payload.clone());
            q.bytes += payload.len();
            drop(q);
            if was_empty {
                c.notify.notify_one();
            }
        }
    }
}

pub(crate) async fn run(a: &FloorArgs) -> Result<()> {
    let addr: std::net::SocketAddr = a.addr.parse().context("--addr")?;
    if !addr.ip().is_loopback() {
        bail!("refusing to listen on {addr}: the floor server is loopback only");
    }
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let hub = Arc::new(Hub {
        conns: RwLock::new(HashMap::new()),
        next_id: AtomicU64::new(0),
        limit: a.outbound_queue,
        open: AtomicUsize::new(0),
    });
    println!("floor-server listening on ws://{}/", listener.local_addr()?);
    let deadline = tokio::time::sleep(Duration::from_secs_f64(a.max_seconds));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => {
                eprintln!("floor-server: --max-seconds reached, exiting");
                return Ok(());
            }
            _ = tokio::signal::ctrl_c() => return Ok(()),
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    let hub = hub.clone();
                    tokio::spawn(async move {
                        let _ = serve(hub, stream).await;
                    });
                }
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    eprintln!("floor-server: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}

async fn serve(hub: Arc<Hub>, stream: TcpStream) -> Result<()> {
    stream.set_nodelay(true)?;
    let (_req, mut ws) = ServerBuilder::new().accept(stream).await?;
    let id = hub.next_id.fetch_add(1, Relaxed);
    let conn = Arc::new(Conn {
        queue: Mutex::new(Outbox::default()),
        notify: Notify::new(),
        closed: AtomicBool::new(false),
    });
    hub.conns.write().unwrap().insert(id, conn.clone());
    hub.open.fetch_add(1, Relaxed);
    let r = drive(&hub, id, &conn, &mut ws).await;
    hub.conns.write().unwrap().remove(&id);
    hub.open.fetch_sub(1, Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close()).await;
    r
}

async fn drive(
    hub: &Hub,
    id: u64,
    conn: &Conn,
    ws: &mut tokio_websockets::WebSocketStream<TcpStream>,
) -> Result<()> {
    ws.send(Message::text(Bytes::from_static(b"READY"))).await?;
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            _ = conn.notify.notified() => {
                if conn.closed.load(Relaxed) {
                    bail!("slow consumer");
                }
                {
                    let mut q = conn.queue.lock().unwrap();
                    std::mem::swap(&mut batch, &mut q.frames);
                    q.bytes = 0;
                }
                for b in batch.drain(..) {
                    ws.feed(Message::text(b)).await?;
                }
                ws.flush().await?;
            }
            m = ws.next() => match m {
                None | Some(Err(_)) => return Ok(()),
                Some(Ok(m)) if m.is_text() || m.is_binary() => {
                    let payload: Bytes = m.into_payload().into();
                    hub.broadcast(id, &payload);
                }
                Some(Ok(m)) if m.is_close() => return Ok(()),
                Some(Ok(_)) => {}
            }
        }
    }
}
