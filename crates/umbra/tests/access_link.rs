//! What an observer of a user's own link to its gateway sees: nothing beyond "connected".
//!
//! A network of `umbra` processes on loopback, with client daemons (`umbra socks5`, `umbra
//! exit`, `umbra client`) whose gateway connections pass through taps: TCP relays in this test
//! that read the WebSocket framing (what an observer of the TCP stream sees: every message's
//! time and length) in each direction. Two phases of equal length, in alternating blocks of a
//! minute: everyone idle, and a SOCKS5 proxy downloading several MiB with curl while the
//! WebSocket client sends a 1 KiB message a second to itself. In one-second windows, per link
//! and direction: messages, bytes, the set of sizes.
//!
//! Shown: every message in a direction has one size; no single-feature threshold classifier
//! (trained on half the windows, tested on the other half, both ways) tells the active
//! windows from the idle ones better than 60 %; two-sample Kolmogorov–Smirnov tests on
//! messages and bytes per second see no difference. A second proxy with
//! `insecure_push_deliveries` on, downloading at the same time, is told apart — so the
//! measurement can see what it is looking for.
//!
//! Why it never flakes. Idle and active windows come from one distribution when the link
//! shows nothing (the gateway's frames come on a fixed grid; the client's in a Poisson
//! stream). With 180 windows a phase, the held-out accuracy of the best threshold on two
//! samples of one distribution has a standard deviation of about 0.029 around 0.5
//! (simulated, 4,000 runs of Poisson counts of mean 110: 99.9th percentile 0.583), so the
//! 0.6 bound is crossed by chance about 2 times in 10,000 per uplink (three are tested: the
//! proxy's, the client's, the exit's); the downlinks' counts are near constant. A KS test's
//! p-value is uniform (or larger, on counts with ties) when there is no difference:
//! asserting p > 0.01 would fail 1 run in 100 per test, so each of the 12 KS tests asserts
//! p > 2e-5 (Bonferroni: all together under 2.4 in 10,000), and the p-values are printed
//! (all above 0.01 in the runs recorded in BENCHMARKS.md). In all, chance alone fails this
//! test less than once in 1,000 runs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Net;
use common::apps::{Daemon, body, curl, curl_command, http_server, sha256, wait_listening};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use umbra::network::{Shape, free_port};
use umbra_sim::metrics::ks_p_value;

/// The phases alternate in blocks (idle, active, idle, …), so that whatever else drifts on
/// the machine over the minutes of the test weighs on both alike.
const BLOCKS: usize = 3;
/// One-second windows per block, after the first few (dropped while things settle): 180
/// windows per phase in all.
const WINDOWS: usize = 60;
const SETTLE: usize = 3;
/// The bound on a threshold classifier's held-out accuracy.
const MAX_ACCURACY: f64 = 0.6;
/// The bound on each KS test's p-value (see the module's documentation).
const MIN_P: f64 = 2e-5;
/// Each download's size.
const DOWNLOAD: usize = 3 << 20;

/// A message on the link: when its last byte passed the tap, and its length on the wire
/// (WebSocket header, mask and payload).
type Seen = (Instant, usize);

/// A relay between client daemons and a gateway that notes every WebSocket message.
struct Tap {
    address: SocketAddr,
    connections: AtomicUsize,
    /// Client → gateway.
    up: Mutex<Vec<Seen>>,
    /// Gateway → client.
    down: Mutex<Vec<Seen>>,
}

impl Tap {
    fn start(gateway: SocketAddr) -> Arc<Tap> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let tap = Arc::new(Tap {
            address: listener.local_addr().unwrap(),
            connections: AtomicUsize::new(0),
            up: Mutex::new(Vec::new()),
            down: Mutex::new(Vec::new()),
        });
        let accepting = Arc::clone(&tap);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(gateway) else {
                    continue;
                };
                accepting.connections.fetch_add(1, Ordering::Relaxed);
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                for (from, to, up) in [
                    (
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                        true,
                    ),
                    (
                        server.try_clone().unwrap(),
                        client.try_clone().unwrap(),
                        false,
                    ),
                ] {
                    let tap = Arc::clone(&accepting);
                    std::thread::spawn(move || tap.relay(from, to, up));
                }
            }
        });
        tap
    }

    fn relay(&self, mut from: TcpStream, mut to: TcpStream, up: bool) {
        let mut parser = WebSocketParser::default();
        let mut buffer = vec![0u8; 1 << 16];
        loop {
            let n = match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let now = Instant::now();
            if to.write_all(&buffer[..n]).is_err() {
                break;
            }
            let seen = parser.feed(&buffer[..n], now);
            let log = if up { &self.up } else { &self.down };
            log.lock().unwrap().extend(seen);
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
    }
}

/// Finds WebSocket messages in a byte stream (after the HTTP upgrade).
#[derive(Default)]
struct WebSocketParser {
    upgraded: bool,
    buffer: Vec<u8>,
}

impl WebSocketParser {
    fn feed(&mut self, bytes: &[u8], now: Instant) -> Vec<Seen> {
        self.buffer.extend_from_slice(bytes);
        let mut seen = Vec::new();
        if !self.upgraded {
            let Some(end) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
                return seen;
            };
            self.buffer.drain(..end + 4);
            self.upgraded = true;
        }
        while let Some(&[_, second]) = self.buffer.get(..2) {
            let masked = second & 0x80 != 0;
            let (extended, len) = match second & 0x7f {
                126 => match self.buffer.get(2..4) {
                    Some(len) => (2, u64::from(u16::from_be_bytes([len[0], len[1]]))),
                    None => break,
                },
                127 => match self.buffer.get(2..10) {
                    Some(len) => (8, u64::from_be_bytes(len.try_into().unwrap())),
                    None => break,
                },
                len => (0, u64::from(len)),
            };
            let total = 2 + extended + if masked { 4 } else { 0 } + len as usize;
            if self.buffer.len() < total {
                break;
            }
            self.buffer.drain(..total);
            seen.push((now, total));
        }
        seen
    }
}

/// Writes a copy of the network's topology in which gateway `gateway` takes its clients at
/// `address` (the tap).
fn topology_through(net: &Net, gateway: usize, address: SocketAddr, name: &str) -> PathBuf {
    let file = net.processes.layout().topology_file();
    let mut topology: Value =
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let id = u64::from(net.gateway(gateway).id.0);
    for node in topology["nodes"].as_array_mut().unwrap() {
        if node["id"] == id {
            node["client_address"] = json!(address.to_string());
        }
    }
    let path = net.dir.join(format!("topology-{name}.json"));
    std::fs::write(&path, topology.to_string()).unwrap();
    path
}

/// A client daemon of gateway `gateway` whose link passes through a new tap, at the
/// low-latency preset (a packet every 10 ms, a frame every 10 ms from the gateway).
fn tapped(
    net: &Net,
    role: &'static str,
    name: &str,
    gateway: usize,
    args: &[&str],
    edit: &[(&str, &str)],
) -> (Daemon, Arc<Tap>) {
    let tap = Tap::start(net.gateway(gateway).client_address.unwrap());
    let topology = topology_through(net, gateway, tap.address, name);
    let mut args = args.to_vec();
    args.extend(["--traffic", "low-latency"]);
    let mut daemon = Daemon::init(net, role, name, &topology, gateway, &args);
    for (from, to) in edit {
        daemon.edit_config(from, to);
    }
    daemon.start();
    (daemon, tap)
}

/// Messages and bytes in each one-second window of the blocks starting at `starts` (the
/// first `SETTLE` of each dropped), and the sizes seen in them.
fn windows(seen: &[Seen], starts: &[Instant]) -> (Vec<f64>, Vec<f64>, BTreeSet<usize>) {
    let mut counts = vec![0.0; WINDOWS * starts.len()];
    let mut bytes = vec![0.0; WINDOWS * starts.len()];
    let mut sizes = BTreeSet::new();
    for (block, start) in starts.iter().enumerate() {
        let from = *start + Duration::from_secs(SETTLE as u64);
        for (at, len) in seen {
            let Some(offset) = at.checked_duration_since(from) else {
                continue;
            };
            let window = offset.as_secs() as usize;
            if window < WINDOWS {
                counts[block * WINDOWS + window] += 1.0;
                bytes[block * WINDOWS + window] += *len as f64;
                sizes.insert(*len);
            }
        }
    }
    (counts, bytes, sizes)
}

/// The held-out accuracy of the best single-threshold classifier: trained on the even
/// windows of each phase and tested on the odd ones, then the other way round.
fn threshold_accuracy(idle: &[f64], active: &[f64]) -> f64 {
    let split = |values: &[f64], fold: usize| -> (Vec<f64>, Vec<f64>) {
        let (mut train, mut test) = (Vec::new(), Vec::new());
        for (i, v) in values.iter().enumerate() {
            if i % 2 == fold {
                train.push(*v)
            } else {
                test.push(*v)
            }
        }
        (train, test)
    };
    let mut correct = 0;
    let mut total = 0;
    for fold in 0..2 {
        let (idle_train, idle_test) = split(idle, fold);
        let (active_train, active_test) = split(active, fold);
        let mut candidates: Vec<f64> = idle_train.iter().chain(&active_train).copied().collect();
        candidates.sort_by(f64::total_cmp);
        candidates.dedup();
        let mut thresholds: Vec<f64> = candidates.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect();
        thresholds.push(candidates[0] - 1.0);
        // (threshold, direction): "active" is above the threshold, or below it
        let score = |t: f64, above: bool, idle: &[f64], active: &[f64]| {
            let says_active = |v: f64| (v > t) == above;
            idle.iter().filter(|v| !says_active(**v)).count()
                + active.iter().filter(|v| says_active(**v)).count()
        };
        let (t, above) = thresholds
            .iter()
            .flat_map(|t| [(*t, true), (*t, false)])
            .max_by_key(|(t, above)| score(*t, *above, &idle_train, &active_train))
            .unwrap();
        correct += score(t, above, &idle_test, &active_test);
        total += idle_test.len() + active_test.len();
    }
    correct as f64 / total as f64
}

/// One link and direction, idle against active.
struct Compared {
    what: String,
    sizes: BTreeSet<usize>,
    mean_idle: f64,
    mean_active: f64,
    accuracy_count: f64,
    accuracy_bytes: f64,
    p_count: f64,
    p_bytes: f64,
}

fn compare(what: String, seen: &[Seen], idle: &[Instant], active: &[Instant]) -> Compared {
    let (idle_counts, idle_bytes, mut sizes) = windows(seen, idle);
    let (active_counts, active_bytes, active_sizes) = windows(seen, active);
    sizes.extend(active_sizes);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let compared = Compared {
        what,
        sizes,
        mean_idle: mean(&idle_bytes),
        mean_active: mean(&active_bytes),
        accuracy_count: threshold_accuracy(&idle_counts, &active_counts),
        accuracy_bytes: threshold_accuracy(&idle_bytes, &active_bytes),
        p_count: ks_p_value(&idle_counts, &active_counts),
        p_bytes: ks_p_value(&idle_bytes, &active_bytes),
    };
    eprintln!(
        "{:<16} sizes {:?}  bytes/s idle {:>9.0} active {:>9.0}  accuracy count {:.3} bytes {:.3}  KS p count {:.4} bytes {:.4}",
        compared.what,
        compared.sizes.iter().take(6).collect::<Vec<_>>(),
        compared.mean_idle,
        compared.mean_active,
        compared.accuracy_count,
        compared.accuracy_bytes,
        compared.p_count,
        compared.p_bytes
    );
    compared
}

/// Downloads `DOWNLOAD` bytes through `proxy` again and again until `until`; the number of
/// downloads that came whole (the one cut at `until` does not count).
fn download_until(proxy: String, http: SocketAddr, files: PathBuf, until: Instant) -> usize {
    let mut whole = 0;
    let expected = sha256(&body(DOWNLOAD, 3));
    let url = format!("http://localhost:{}/data/{DOWNLOAD}/3", http.port());
    while Instant::now() < until {
        let file = files.join(format!("download-{whole}"));
        let mut child: Child = curl_command(&proxy, &url, &file).spawn().unwrap();
        let finished = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() >= until {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        match finished {
            Some(status) if status.success() => {
                assert_eq!(sha256(&std::fs::read(&file).unwrap()), expected);
                whole += 1;
            }
            Some(status) => panic!("a download through {proxy} failed: {status}"),
            None => {}
        }
        let _ = std::fs::remove_file(&file);
    }
    whole
}

async fn next_json<S>(socket: &mut S, kind: &str) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let frame = tokio::time::timeout(common::WAIT, socket.next())
            .await
            .expect("the WebSocket API said nothing")
            .unwrap()
            .unwrap();
        if let Message::Text(text) = frame {
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["type"] == kind {
                return value;
            }
        }
    }
}

fn fetch_once(proxy: &str, http: SocketAddr, file: &Path) {
    let out = curl(
        proxy,
        &format!("http://localhost:{}/data/20000/1", http.port()),
        file,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_link_shows_nothing_beyond_connected() {
    let net = Net::start(
        "access-link",
        Shape {
            mixes_per_layer: 1,
            gateways: 2,
        },
    );
    let http = http_server();
    let (exit, exit_tap) = tapped(&net, "exit", "exit", 1, &["--insecure-allow-private"], &[]);
    let exit_address = exit.address();
    let listen = free_port().unwrap();
    let (_proxy, proxy_tap) = tapped(
        &net,
        "socks5",
        "proxy",
        0,
        &["--listen", &listen.to_string(), "--exit", &exit_address],
        &[],
    );
    let push_listen = free_port().unwrap();
    let (_push, push_tap) = tapped(
        &net,
        "socks5",
        "push-proxy",
        0,
        &[
            "--listen",
            &push_listen.to_string(),
            "--exit",
            &exit_address,
        ],
        &[(
            "insecure_push_deliveries = false",
            "insecure_push_deliveries = true",
        )],
    );
    let api = free_port().unwrap();
    let (_client, client_tap) = tapped(
        &net,
        "client",
        "client",
        0,
        &["--api", &api.to_string()],
        &[],
    );
    wait_listening(listen);
    wait_listening(push_listen);
    wait_listening(api);
    let proxy = format!("socks5h://{listen}");
    let push_proxy = format!("socks5h://{push_listen}");
    let files = net.dir.join("downloads");
    std::fs::create_dir_all(&files).unwrap();

    // everything works before the measurement starts
    fetch_once(&proxy, http, &files.join("first"));
    fetch_once(&push_proxy, http, &files.join("first-push"));
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{api}/"))
        .await
        .unwrap();
    socket
        .send(Message::text(json!({"type": "self_address"}).to_string()))
        .await
        .unwrap();
    let me = next_json(&mut socket, "self_address").await["address"]
        .as_str()
        .unwrap()
        .to_owned();
    let send = |n: usize| {
        Message::text(
            json!({"type": "send", "to": me, "message": format!("{n:04}{}", "x".repeat(1020))})
                .to_string(),
        )
    };
    socket.send(send(0)).await.unwrap();
    next_json(&mut socket, "received").await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let received = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let (mut sink, mut stream) = socket.split();
    let reader = {
        let (received, done) = (Arc::clone(&received), Arc::clone(&done));
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_secs(1), stream.next()).await {
                    Ok(Some(Ok(Message::Text(text)))) if text.contains("\"received\"") => {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Some(Ok(_))) | Err(_) => {}
                    Ok(None | Some(Err(_))) => break,
                }
            }
        })
    };

    let block = Duration::from_secs((WINDOWS + SETTLE) as u64);
    let (mut idle, mut active) = (Vec::new(), Vec::new());
    let (mut downloads, mut push_downloads, mut sent) = (0, 0, 0);
    for _ in 0..BLOCKS {
        // idle
        idle.push(Instant::now());
        tokio::time::sleep(block).await;
        // active: the proxies download, the client sends a message a second to itself
        let start = Instant::now();
        active.push(start);
        let until = start + block;
        let shaped = {
            let (proxy, files) = (proxy.clone(), files.join("shaped"));
            std::fs::create_dir_all(&files).unwrap();
            tokio::task::spawn_blocking(move || download_until(proxy, http, files, until))
        };
        let push = {
            let (proxy, files) = (push_proxy.clone(), files.join("push"));
            std::fs::create_dir_all(&files).unwrap();
            tokio::task::spawn_blocking(move || download_until(proxy, http, files, until))
        };
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        while Instant::now() + Duration::from_secs(1) < until {
            tick.tick().await;
            sent += 1;
            sink.send(send(sent)).await.unwrap();
        }
        downloads += shaped.await.unwrap();
        push_downloads += push.await.unwrap();
    }
    // the last messages may still be on their way
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.load(Ordering::Relaxed) < sent && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done.store(true, Ordering::Relaxed);
    let _ = reader.await;
    eprintln!(
        "active phase: {downloads} × {} MiB through the proxy, {push_downloads} through the push proxy; {sent} messages sent, {} received",
        DOWNLOAD >> 20,
        received.load(Ordering::Relaxed)
    );

    // what crossed each link
    let links = [
        ("proxy", &proxy_tap),
        ("client", &client_tap),
        ("exit", &exit_tap),
        ("push-proxy", &push_tap),
    ];
    let mut results = Vec::new();
    for (name, tap) in links {
        for (direction, log) in [("up", &tap.up), ("down", &tap.down)] {
            let seen = log.lock().unwrap().clone();
            results.push((
                name,
                direction,
                compare(format!("{name} {direction}"), &seen, &idle, &active),
            ));
        }
        assert_eq!(
            tap.connections.load(Ordering::Relaxed),
            1,
            "{name} reconnected: its link showed handshakes"
        );
    }
    assert!(
        downloads >= 2,
        "only {downloads} whole downloads: not several MiB"
    );
    assert_eq!(received.load(Ordering::Relaxed), sent, "messages were lost");
    for (name, _, result) in &results {
        let what = &result.what;
        if *name == "push-proxy" {
            continue;
        }
        assert_eq!(result.sizes.len(), 1, "{what}: sizes {:?}", result.sizes);
        assert!(
            result.accuracy_count <= MAX_ACCURACY,
            "{what}: accuracy {}",
            result.accuracy_count
        );
        assert!(
            result.accuracy_bytes <= MAX_ACCURACY,
            "{what}: accuracy {}",
            result.accuracy_bytes
        );
        assert!(result.p_count > MIN_P, "{what}: KS p {}", result.p_count);
        assert!(result.p_bytes > MIN_P, "{what}: KS p {}", result.p_bytes);
    }
    // the control: with push on, the download shows
    let push_down = &results
        .iter()
        .find(|(name, direction, _)| *name == "push-proxy" && *direction == "down")
        .unwrap()
        .2;
    assert!(push_downloads >= 1, "the push proxy downloaded nothing");
    assert!(
        push_down.sizes.len() > 1,
        "push sizes {:?}",
        push_down.sizes
    );
    assert!(
        push_down.accuracy_bytes >= 0.8,
        "the test cannot see a download on a push link: accuracy {}",
        push_down.accuracy_bytes
    );
    drop(exit);
}
