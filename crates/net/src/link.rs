//! Links between nodes: one long-lived outbound Noise link per peer, fed by a bounded queue,
//! and a listener that accepts links only from nodes the topology lists.
//!
//! An outbound link connects as soon as it is created and reconnects with exponential
//! backoff; while it is down, frames wait in its queue, and when the queue is full the sender
//! is told at once (and counts the drop): a slow or dead peer never stalls the node. A link
//! carries frames one way, so the reading half of an outbound link only watches for the peer
//! closing it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use umbra_topology::NoiseKey;
use umbra_wire::frame::Frame;

use crate::err::LinkError;
use crate::metrics::Exposition;
use crate::noise::{self, NoiseKeypair};

/// How a node's links behave. Defaults are Nym's where Nym has one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkConfig {
    /// Frames waiting per outbound link; more are dropped and counted (Nym: 2000).
    pub queue_len: usize,
    /// First wait before reconnecting a failed link (Nym: 10 s); doubled per failure.
    #[serde(with = "humantime_serde")]
    pub reconnect_initial: Duration,
    /// Longest wait between reconnection attempts (Nym: 5 min).
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// How long a Noise handshake may take.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Inbound links open at once; more are refused.
    pub max_inbound: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            queue_len: 2000,
            reconnect_initial: Duration::from_secs(10),
            reconnect_max: Duration::from_secs(300),
            handshake_timeout: Duration::from_secs(5),
            max_inbound: 1024,
        }
    }
}

/// What happened on a node's links.
#[derive(Debug, Default)]
pub struct LinkCounters {
    /// Frames read from inbound links.
    pub frames_received: AtomicU64,
    /// Frames written to outbound links.
    pub frames_sent: AtomicU64,
    /// Frames lost in a write that failed.
    pub frames_lost: AtomicU64,
    /// Inbound links accepted.
    pub inbound_accepted: AtomicU64,
    /// Outbound links established.
    pub outbound_connected: AtomicU64,
    events: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl LinkCounters {
    /// Counts one event of `kind` (a metric label) for `reason`.
    pub fn event(&self, kind: &'static str, reason: &'static str) {
        *self
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((kind, reason))
            .or_default() += 1;
    }

    /// How often `kind` (`inbound_refused`, `inbound_closed`, `outbound_failed`) happened for
    /// `reason`.
    pub fn events(&self, kind: &str, reason: &str) -> u64 {
        let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        events
            .iter()
            .filter(|((k, r), _)| *k == kind && *r == reason)
            .map(|(_, count)| *count)
            .sum()
    }

    /// Adds the link metrics to a page.
    pub fn render(&self, page: &mut Exposition) {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        page.counter(
            "umbra_link_frames_received_total",
            "Frames read from inbound links.",
            load(&self.frames_received),
        );
        page.counter(
            "umbra_link_frames_sent_total",
            "Frames written to outbound links.",
            load(&self.frames_sent),
        );
        page.counter(
            "umbra_link_frames_lost_total",
            "Frames lost in a write that failed.",
            load(&self.frames_lost),
        );
        page.counter(
            "umbra_link_inbound_accepted_total",
            "Inbound links accepted.",
            load(&self.inbound_accepted),
        );
        page.counter(
            "umbra_link_outbound_connected_total",
            "Outbound links established.",
            load(&self.outbound_connected),
        );
        let events = self
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for (kind, help) in [
            (
                "inbound_refused",
                "Inbound links refused before they carried anything, by reason.",
            ),
            (
                "inbound_closed",
                "Inbound links closed after they were accepted, by reason.",
            ),
            (
                "outbound_failed",
                "Outbound link failures (connecting, handshake, writing), by reason.",
            ),
        ] {
            page.counters(
                &format!("umbra_link_{kind}_total"),
                help,
                "reason",
                events
                    .iter()
                    .filter(|((k, _), _)| *k == kind)
                    .map(|((_, r), count)| (*r, *count)),
            );
        }
    }
}

/// A node to keep an outbound link to.
#[derive(Clone, Debug)]
pub struct Peer {
    /// Where it listens.
    pub address: SocketAddr,
    /// Its static Noise key.
    pub noise_key: NoiseKey,
    /// How logs name it ("node 7").
    pub name: String,
}

/// The sending end of an outbound link (a copy sends into the same queue).
#[derive(Clone, Debug)]
pub struct PeerLink {
    sender: mpsc::Sender<Frame>,
    connected: Arc<AtomicBool>,
}

impl PeerLink {
    /// Starts the link to `peer`: a task that connects, reconnects, and sends what is queued.
    /// The task ends when every sender is gone and the queue is empty.
    pub fn spawn(
        peer: Peer,
        keys: Arc<NoiseKeypair>,
        config: &LinkConfig,
        counters: Arc<LinkCounters>,
    ) -> (PeerLink, JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(config.queue_len.max(1));
        let connected = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(drive(
            peer,
            keys,
            config.clone(),
            counters,
            receiver,
            Arc::clone(&connected),
        ));
        (PeerLink { sender, connected }, task)
    }

    /// Queues `frame`; a full queue hands it back at once.
    pub fn try_send(&self, frame: Frame) -> Result<(), mpsc::error::TrySendError<Frame>> {
        self.sender.try_send(frame)
    }

    /// Queues `frame`, waiting for room.
    pub async fn send(&self, frame: Frame) -> Result<(), mpsc::error::SendError<Frame>> {
        self.sender.send(frame).await
    }

    /// Whether the link is up.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Frames waiting in the queue.
    pub fn queued(&self) -> usize {
        self.sender.max_capacity() - self.sender.capacity()
    }

    /// A view of the link for metrics, which does not keep its queue open.
    pub fn status(&self) -> PeerStatus {
        PeerStatus {
            connected: Arc::clone(&self.connected),
            queue: self.sender.downgrade(),
        }
    }
}

/// What metrics show of an outbound link.
#[derive(Clone, Debug)]
pub struct PeerStatus {
    connected: Arc<AtomicBool>,
    queue: mpsc::WeakSender<Frame>,
}

impl PeerStatus {
    /// Whether the link is up.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Frames waiting in the link's queue (0 once its senders are gone).
    pub fn queued(&self) -> usize {
        self.queue
            .upgrade()
            .map_or(0, |sender| sender.max_capacity() - sender.capacity())
    }
}

async fn drive(
    peer: Peer,
    keys: Arc<NoiseKeypair>,
    config: LinkConfig,
    counters: Arc<LinkCounters>,
    mut queue: mpsc::Receiver<Frame>,
    connected: Arc<AtomicBool>,
) {
    let mut backoff = config.reconnect_initial;
    loop {
        let link = async {
            let stream = TcpStream::connect(peer.address).await?;
            stream.set_nodelay(true)?;
            noise::initiate(stream, &keys, &peer.noise_key, config.handshake_timeout).await
        };
        match link.await {
            Ok((reader, writer)) => {
                backoff = config.reconnect_initial;
                connected.store(true, Ordering::Relaxed);
                counters.outbound_connected.fetch_add(1, Ordering::Relaxed);
                info!(peer = %peer.name, "link up");
                let ended = pump(&mut queue, reader, writer, &counters).await;
                connected.store(false, Ordering::Relaxed);
                match ended {
                    Ok(Ended::QueueClosed) => return,
                    // what a peer does when it stops or restarts: nothing was lost
                    Ok(Ended::ByPeer) => {
                        counters.event("outbound_failed", "closed");
                        info!(peer = %peer.name, "link closed by the peer; reconnecting");
                    }
                    Err(error) => {
                        counters.event("outbound_failed", error.reason());
                        warn!(peer = %peer.name, %error, "link down; reconnecting");
                    }
                }
            }
            Err(error) => {
                counters.event("outbound_failed", error.reason());
                debug!(peer = %peer.name, %error, retry_in = ?backoff, "cannot connect");
                if queue.is_closed() {
                    // the node is stopping and the peer is gone: what is queued cannot go
                    let dropped = queue.len() as u64;
                    counters.frames_lost.fetch_add(dropped, Ordering::Relaxed);
                    if dropped > 0 {
                        info!(peer = %peer.name, dropped, "stopping with the peer unreachable: its frames are dropped");
                    }
                    return;
                }
                // wait out the backoff, but try once more at once if the node starts stopping
                let retry = tokio::time::Instant::now() + backoff;
                while !queue.is_closed() && tokio::time::Instant::now() < retry {
                    tokio::time::sleep_until(
                        retry.min(tokio::time::Instant::now() + Duration::from_millis(100)),
                    )
                    .await;
                }
                backoff = (backoff * 2).min(config.reconnect_max);
            }
        }
    }
}

/// How a link ended without an error.
enum Ended {
    /// Its queue closed: the node needs it no more.
    QueueClosed,
    /// The peer closed it cleanly, between frames.
    ByPeer,
}

/// Sends what the queue yields until it closes, the peer closes the link, or the link fails.
async fn pump<R, W>(
    queue: &mut mpsc::Receiver<Frame>,
    mut reader: noise::LinkReader<R>,
    mut writer: noise::LinkWriter<W>,
    counters: &LinkCounters,
) -> Result<Ended, LinkError>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut batch: Vec<Frame> = Vec::new();
    loop {
        tokio::select! {
            received = queue.recv_many(&mut batch, 256) => {
                if received == 0 {
                    let _ = writer.shutdown().await;
                    return Ok(Ended::QueueClosed);
                }
                let written = async {
                    for frame in &batch {
                        writer.push(frame).await?;
                    }
                    writer.flush().await
                };
                match written.await {
                    Ok(()) => counters.frames_sent.fetch_add(batch.len() as u64, Ordering::Relaxed),
                    Err(error) => {
                        counters.frames_lost.fetch_add(batch.len() as u64, Ordering::Relaxed);
                        return Err(error);
                    }
                };
                batch.clear();
            }
            // the peer sends nothing on this link: anything, even its closing it, ends it
            closed = reader.next_frame() => {
                return match closed {
                    Ok(None) => Ok(Ended::ByPeer),
                    Ok(Some(_)) => Err(LinkError::Truncated),
                    Err(error) => Err(error),
                };
            }
        }
    }
}

/// Decides whether to take a link from the node holding a static key; gives a name for logs.
pub type Admission = Arc<dyn Fn(&NoiseKey) -> Option<String> + Send + Sync>;

/// Accepts inbound links on `listener` until `shutdown`, handing every frame to `deliver`.
/// A link from a key `admit` refuses, one that fails its handshake or sends anything but
/// frames is closed and counted; the listener goes on.
pub async fn serve_inbound<F>(
    listener: TcpListener,
    keys: Arc<NoiseKeypair>,
    config: LinkConfig,
    admit: Admission,
    deliver: F,
    counters: Arc<LinkCounters>,
    shutdown: CancellationToken,
) where
    F: Fn(Frame) + Clone + Send + Sync + 'static,
{
    let permits = Arc::new(Semaphore::new(config.max_inbound));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => return,
        };
        let (stream, from) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // out of file descriptors and the like: wait a little rather than spin
                warn!(%error, "accepting a link failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            counters.event("inbound_refused", "too_many");
            continue;
        };
        let (keys, config, admit, deliver, counters, shutdown) = (
            Arc::clone(&keys),
            config.clone(),
            Arc::clone(&admit),
            deliver.clone(),
            Arc::clone(&counters),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            let (remote, (mut reader, _writer)) =
                match noise::respond(stream, &keys, config.handshake_timeout).await {
                    Ok(link) => link,
                    Err(error) => {
                        counters.event("inbound_refused", error.reason());
                        debug!(%from, %error, "inbound link refused");
                        return;
                    }
                };
            let Some(name) = admit(&remote) else {
                counters.event("inbound_refused", LinkError::UnknownPeer(remote).reason());
                debug!(%from, key = %remote, "inbound link from a key not in the topology");
                return;
            };
            counters.inbound_accepted.fetch_add(1, Ordering::Relaxed);
            debug!(peer = %name, "inbound link up");
            loop {
                let frame = tokio::select! {
                    frame = reader.next_frame() => frame,
                    () = shutdown.cancelled() => return,
                };
                match frame {
                    Ok(Some(frame)) => {
                        counters.frames_received.fetch_add(1, Ordering::Relaxed);
                        deliver(frame);
                    }
                    Ok(None) => {
                        counters.event("inbound_closed", "closed");
                        return;
                    }
                    Err(error) => {
                        counters.event("inbound_closed", error.reason());
                        warn!(peer = %name, %error, "inbound link closed");
                        return;
                    }
                }
            }
        });
    }
}
