//! Downloads through the SOCKS5 proxy and the exit service of a whole `umbra localnet`
//! (9 mix nodes, 2 gateways, the exit, the proxy and a client, each its own process):
//!
//! 1. the CPU the proxy and the exit use while idle (their cover traffic);
//! 2. for 1 MiB (a few times) and 10 MiB (once): the time to open the connection, the time to
//!    the first byte of the body after the request, the total time and the throughput, with
//!    the CPU the proxy and the exit used meanwhile.
//!
//! Each traffic preset gets a network of its own (`--traffic` applies when the proxy and the
//! exit are created). The bodies come from an HTTP/1.1 server in this process on 127.0.0.1;
//! the SOCKS5 client is written out here so that each step can be timed.
//!
//! A preset whose warm-up takes over a minute (an overloaded machine) gets one measured 1 MiB
//! run and no 10 MiB run; a download that fails or passes its time limit is a row of the table,
//! not the end of the benchmark.
//!
//! `cargo bench -p umbra --bench socks5`; `UMBRA_BENCH_PRESETS=nym,bulk` picks the presets
//! (default `nym,low-latency,bulk`), `UMBRA_BENCH_KEEP=1` keeps the networks' folders (and
//! logs).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark: failing loudly is the point

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a network may take to start (it waits for an epoch: 30–45 s when the machine is
/// quiet).
const STARTUP_LIMIT: Duration = Duration::from_secs(120);
/// How long one download may take.
const DOWNLOAD_LIMIT: Duration = Duration::from_secs(600);
/// How long the idle CPU is measured.
const IDLE: Duration = Duration::from_secs(10);
/// Runs of 1 MiB measured per preset, after one warm-up.
const SMALL_RUNS: usize = 3;
/// A warm-up slower than this means the machine cannot keep up with the preset.
const SLOW_WARM_UP: Duration = Duration::from_secs(60);
const MIB: usize = 1 << 20;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benchmarks; there is nothing to list
    }
    let presets =
        std::env::var("UMBRA_BENCH_PRESETS").unwrap_or_else(|_| "nym,low-latency,bulk".to_owned());
    let server = BodyServer::start();
    println!(
        "bodies served from http://localhost:{}/ by this process",
        server.port
    );
    let mut rows = Vec::new();
    let mut idle_rows = Vec::new();
    for preset in presets.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let net = Localnet::start(preset);
        println!(
            "[{preset}] network up in {:.0} s; proxy at {} (pid {}), exit pid {}",
            net.started_in.as_secs_f64(),
            net.proxy,
            net.proxy_pid,
            net.exit_pid
        );
        std::thread::sleep(Duration::from_secs(5)); // let the start-up settle
        let before = net.cpu();
        let started = Instant::now();
        std::thread::sleep(IDLE);
        let idle = net.cpu().since(&before, started.elapsed());
        println!(
            "[{preset}] idle over {:.0} s: proxy {:.1}% of a core, exit {:.1}%, the whole localnet {:.1}%",
            IDLE.as_secs_f64(),
            idle.proxy_percent(),
            idle.exit_percent(),
            idle.all_percent()
        );
        idle_rows.push((preset.to_owned(), idle));

        let warm_up = download(&net, server.port, MIB);
        println!("[{preset}] warm-up 1 MiB: {}", line(&warm_up));
        let slow = warm_up
            .as_ref()
            .map_or(true, |d| d.open + d.total > SLOW_WARM_UP);
        let sizes: Vec<usize> = if slow {
            println!(
                "[{preset}] the warm-up took over {SLOW_WARM_UP:?} (or failed): one more 1 MiB run, no 10 MiB"
            );
            vec![MIB]
        } else {
            std::iter::repeat_n(MIB, SMALL_RUNS)
                .chain([10 * MIB])
                .collect()
        };
        for (run, size) in sizes.into_iter().enumerate() {
            let result = download(&net, server.port, size);
            println!(
                "[{preset}] run {} ({} MiB): {}",
                run + 1,
                size / MIB,
                line(&result)
            );
            rows.push((preset.to_owned(), size, result));
        }
        net.report_warnings();
        drop(net);
    }

    println!();
    println!("| preset | proxy idle | exit idle | whole localnet idle |");
    println!("|---|---:|---:|---:|");
    for (preset, idle) in &idle_rows {
        println!(
            "| {preset} | {:.1}% | {:.1}% | {:.0}% |",
            idle.proxy_percent(),
            idle.exit_percent(),
            idle.all_percent()
        );
    }
    println!();
    println!(
        "| preset | size | open | first byte | total | throughput | proxy CPU | exit CPU | whole localnet |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (preset, size, r) in &rows {
        let r = match r {
            Ok(r) => r,
            Err(error) => {
                println!(
                    "| {preset} | {} MiB | failed: {error} | | | | | | |",
                    size / MIB
                );
                continue;
            }
        };
        println!(
            "| {preset} | {} MiB | {:.2} s | {:.2} s | {:.1} s | {:.3} MiB/s | {:.1} s ({:.0}%) | {:.1} s ({:.0}%) | {:.0}% |",
            size / MIB,
            r.open.as_secs_f64(),
            r.first_byte.as_secs_f64(),
            r.total.as_secs_f64(),
            r.mib_per_second(),
            r.cpu.proxy,
            r.cpu.proxy_percent(),
            r.cpu.exit,
            r.cpu.exit_percent(),
            r.cpu.all_percent()
        );
    }
}

/// A deterministic body of `size` bytes (an LCG, so no two MiB are alike).
fn body(size: usize) -> Vec<u8> {
    let mut state: u64 = size as u64;
    (0..size)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 56) as u8
        })
        .collect()
}

/// Serves `GET /<n>` with a body of n MiB, one thread per connection.
struct BodyServer {
    port: u16,
}

impl BodyServer {
    fn start() -> BodyServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let bodies: std::sync::Arc<Vec<(usize, Vec<u8>)>> =
            std::sync::Arc::new([1, 10].iter().map(|&n| (n, body(n * MIB))).collect());
        std::thread::spawn(move || {
            for connection in listener.incoming().flatten() {
                let bodies = bodies.clone();
                std::thread::spawn(move || serve(connection, &bodies));
            }
        });
        BodyServer { port }
    }
}

fn serve(connection: TcpStream, bodies: &[(usize, Vec<u8>)]) {
    let mut reader = BufReader::new(connection.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => return,
            Ok(_) if header == "\r\n" => break,
            Ok(_) => {}
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let found = path
        .trim_start_matches('/')
        .parse::<usize>()
        .ok()
        .and_then(|n| bodies.iter().find(|(size, _)| *size == n));
    let mut connection = connection;
    let _ = match found {
        Some((_, body)) => connection
            .write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            )
            .and_then(|()| connection.write_all(body)),
        None => connection
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    };
}

/// CPU seconds so far of the proxy, the exit and every process of the localnet.
#[derive(Clone, Copy)]
struct Cpu {
    proxy: f64,
    exit: f64,
    all: f64,
    /// The wall-clock time a difference covers (zero for a reading).
    over: f64,
}

impl Cpu {
    fn since(&self, before: &Cpu, over: Duration) -> Cpu {
        Cpu {
            proxy: self.proxy - before.proxy,
            exit: self.exit - before.exit,
            all: self.all - before.all,
            over: over.as_secs_f64(),
        }
    }
    fn proxy_percent(&self) -> f64 {
        self.proxy / self.over * 100.0
    }
    fn exit_percent(&self) -> f64 {
        self.exit / self.over * 100.0
    }
    fn all_percent(&self) -> f64 {
        self.all / self.over * 100.0
    }
}

/// CPU time of process `pid` so far, in seconds.
fn cpu_of(pid: u32) -> f64 {
    common::cpu_seconds(&pid.to_string())
}

/// Every process's pid and arguments.
fn processes() -> Vec<(u32, Vec<String>)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args = cmdline
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Some((pid, args))
        })
        .collect()
}

/// A running `umbra localnet` in a fresh folder; stopped with SIGINT when dropped.
struct Localnet {
    child: Child,
    root: PathBuf,
    dir: PathBuf,
    proxy: SocketAddr,
    proxy_pid: u32,
    exit_pid: u32,
    started_in: Duration,
}

impl Localnet {
    fn start(preset: &str) -> Localnet {
        let root = std::env::temp_dir().join(format!(
            "umbra-bench-socks5-{}-{preset}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let dir = root.join("net");
        let stderr = std::fs::File::create(root.join("localnet.stderr")).unwrap();
        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_umbra"))
            .args(["localnet", "--dir", dir.to_str().unwrap(), "--no-demo"])
            .args(["--traffic", preset])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if lines.send(line).is_err() {
                    return; // found what we wanted; the rest of stdout is drained by the pipe closing
                }
            }
        });
        let mut net = Localnet {
            child,
            root,
            dir,
            proxy: "0.0.0.0:0".parse().unwrap(),
            proxy_pid: 0,
            exit_pid: 0,
            started_in: Duration::ZERO,
        };
        loop {
            let left = STARTUP_LIMIT.saturating_sub(started.elapsed());
            match received.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("SOCKS5 proxy: socks5h://") {
                        let address = rest.split_whitespace().next().unwrap();
                        net.proxy = address.parse().unwrap();
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "the localnet ({preset}) did not print its SOCKS5 proxy within {STARTUP_LIMIT:?}; see {}",
                    net.root.join("localnet.stderr").display()
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                    "the localnet ({preset}) stopped before its SOCKS5 proxy was up: {}",
                    std::fs::read_to_string(net.root.join("localnet.stderr")).unwrap_or_default()
                ),
            }
        }
        net.started_in = started.elapsed();
        // keep reading stdout so the localnet never blocks on a full pipe
        std::thread::spawn(move || while received.recv().is_ok() {});
        net.proxy_pid = net.daemon_pid("socks5");
        net.exit_pid = net.daemon_pid("exit");
        net
    }

    /// The pid of `umbra <role> run --data-dir <dir>/<role>`.
    fn daemon_pid(&self, role: &str) -> u32 {
        let data_dir = self.dir.join(role);
        processes()
            .into_iter()
            .find(|(_, args)| {
                args.len() >= 5
                    && args[1..4] == [role, "run", "--data-dir"]
                    && Path::new(&args[4]) == data_dir
            })
            .map(|(pid, _)| pid)
            .unwrap_or_else(|| panic!("no `{role} run` process for {}", data_dir.display()))
    }

    fn cpu(&self) -> Cpu {
        let dir = self.dir.to_str().unwrap();
        let all = processes()
            .into_iter()
            .filter(|(pid, args)| *pid == self.child.id() || args.iter().any(|a| a.contains(dir)))
            .map(|(pid, _)| cpu_of(pid))
            .sum();
        Cpu {
            proxy: cpu_of(self.proxy_pid),
            exit: cpu_of(self.exit_pid),
            all,
            over: 0.0,
        }
    }

    /// Prints the WARN and ERROR lines of the proxy's and the exit's logs.
    fn report_warnings(&self) {
        for name in ["socks5", "exit"] {
            let path = self.dir.join("logs").join(format!("{name}.log"));
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let bad: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .collect();
            println!("   {name}.log: {} WARN/ERROR lines", bad.len());
            for line in bad.iter().take(5) {
                println!("     {line}");
            }
        }
    }
}

impl Drop for Localnet {
    fn drop(&mut self) {
        // Ctrl-C: the localnet stops its daemons and nodes in order
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                _ => {
                    eprintln!(
                        "the localnet did not stop within 60 s of SIGINT; killing it (its nodes may outlive it)"
                    );
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
            }
        }
        if std::env::var_os("UMBRA_BENCH_KEEP").is_some() {
            println!("   kept {}", self.root.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// One download's timings and the CPU spent meanwhile.
struct Download {
    /// From connecting to the proxy to its CONNECT reply: the stream opened at the exit.
    open: Duration,
    /// From sending the request to the first byte of the body.
    first_byte: Duration,
    /// From sending the request to the last byte of the body.
    total: Duration,
    size: usize,
    cpu: Cpu,
}

fn line(download: &Result<Download, String>) -> String {
    match download {
        Ok(d) => d.line(),
        Err(error) => format!("FAILED: {error}"),
    }
}

impl Download {
    fn mib_per_second(&self) -> f64 {
        self.size as f64 / MIB as f64 / self.total.as_secs_f64()
    }
    fn line(&self) -> String {
        format!(
            "open {:.2} s, first byte {:.2} s, total {:.1} s, {:.3} MiB/s; proxy {:.1} s CPU ({:.0}%), exit {:.1} s ({:.0}%), whole localnet {:.0}%",
            self.open.as_secs_f64(),
            self.first_byte.as_secs_f64(),
            self.total.as_secs_f64(),
            self.mib_per_second(),
            self.cpu.proxy,
            self.cpu.proxy_percent(),
            self.cpu.exit,
            self.cpu.exit_percent(),
            self.cpu.all_percent()
        )
    }
}

/// Reads exactly `buf.len()` bytes, unless `deadline` passes or the stream ends first.
fn read_exact_by(
    stream: &mut TcpStream,
    buf: &mut [u8],
    deadline: Instant,
    what: &str,
) -> Result<(), String> {
    let mut filled = 0;
    while filled < buf.len() {
        filled += read_some(stream, &mut buf[filled..], deadline, what)?;
    }
    Ok(())
}

/// Reads at least one byte, unless `deadline` passes or the stream ends first.
fn read_some(
    stream: &mut TcpStream,
    buf: &mut [u8],
    deadline: Instant,
    what: &str,
) -> Result<usize, String> {
    loop {
        match stream.read(buf) {
            Ok(0) => return Err(format!("the connection closed while {what}")),
            Ok(n) => return Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if Instant::now() >= deadline {
                    return Err(format!("gave up after {DOWNLOAD_LIMIT:?} while {what}"));
                }
            }
            Err(e) => return Err(format!("{what}: {e}")),
        }
    }
}

/// Downloads `size` bytes through the proxy: SOCKS5 greeting, CONNECT to localhost:`port` by
/// name, then `GET`; checks the body byte for byte.
fn download(net: &Localnet, port: u16, size: usize) -> Result<Download, String> {
    let deadline = Instant::now() + DOWNLOAD_LIMIT;
    let cpu_before = net.cpu();
    let opening = Instant::now();
    let io = |what: &'static str| move |e: std::io::Error| format!("{what}: {e}");
    let mut stream = TcpStream::connect(net.proxy).map_err(io("connecting to the proxy"))?;
    stream.set_nodelay(true).map_err(io("TCP_NODELAY"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(io("setting a read timeout"))?;
    // greeting: version 5, one method, no authentication
    stream
        .write_all(&[5, 1, 0])
        .map_err(io("greeting the proxy"))?;
    let mut chosen = [0u8; 2];
    read_exact_by(&mut stream, &mut chosen, deadline, "greeting the proxy")?;
    if chosen != [5, 0] {
        return Err(format!("the proxy answered the greeting with {chosen:?}"));
    }
    // CONNECT localhost:port, by name
    let host = b"localhost";
    let mut request = vec![5, 1, 0, 3, host.len() as u8];
    request.extend_from_slice(host);
    request.extend_from_slice(&port.to_be_bytes());
    stream.write_all(&request).map_err(io("sending CONNECT"))?;
    let mut reply = [0u8; 4];
    read_exact_by(&mut stream, &mut reply, deadline, "waiting for CONNECT")?;
    if reply[1] != 0 {
        return Err(format!("CONNECT failed: SOCKS5 reply {}", reply[1]));
    }
    let bound = match reply[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut len = [0u8; 1];
            read_exact_by(&mut stream, &mut len, deadline, "reading CONNECT's reply")?;
            usize::from(len[0]) + 2
        }
        other => return Err(format!("CONNECT reply with address type {other}")),
    };
    let mut skip = vec![0u8; bound];
    read_exact_by(&mut stream, &mut skip, deadline, "reading CONNECT's reply")?;
    let open = opening.elapsed();

    let sent = Instant::now();
    stream
        .write_all(
            format!(
                "GET /{} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n",
                size / MIB
            )
            .as_bytes(),
        )
        .map_err(io("sending the request"))?;
    // the head, then the body; the first read that holds a byte of the body times it
    let mut received = Vec::with_capacity(size + 1024);
    let mut buf = vec![0u8; 64 * 1024];
    let mut first_byte = None;
    let mut body_start = None;
    loop {
        let n = read_some(&mut stream, &mut buf, deadline, "downloading")?;
        received.extend_from_slice(&buf[..n]);
        if body_start.is_none()
            && let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n")
        {
            let head = String::from_utf8_lossy(&received[..end]).into_owned();
            if !head.starts_with("HTTP/1.1 200") {
                return Err(format!("the server said: {head}"));
            }
            body_start = Some(end + 4);
        }
        if let Some(start) = body_start {
            if first_byte.is_none() && received.len() > start {
                first_byte = Some(sent.elapsed());
            }
            if received.len() >= start + size {
                break;
            }
        }
    }
    let total = sent.elapsed();
    let cpu = net.cpu().since(&cpu_before, opening.elapsed());
    let (Some(start), Some(first_byte)) = (body_start, first_byte) else {
        unreachable!("the loop ends only after the body's last byte");
    };
    if received[start..] != body(size)[..] {
        return Err(format!(
            "the body arrived altered ({} bytes, {size} expected)",
            received.len() - start
        ));
    }
    Ok(Download {
        open,
        first_byte,
        total,
        size,
        cpu,
    })
}
