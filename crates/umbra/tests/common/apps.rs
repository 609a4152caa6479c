//! Applications and client daemons around a test network: `umbra socks5|exit|client`
//! processes, an HTTP server to download from, curl.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::Net;

pub const UMBRA: &str = env!("CARGO_BIN_EXE_umbra");

/// The bytes `/data/<len>/<seed>` serves.
pub fn body(len: usize, seed: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x = u64::from(seed) + 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A small HTTP/1.1 server: `/data/<len>/<seed>` (a body of that length), `/endless` (16 KiB
/// every 10 ms for up to two minutes, no length: it ends only when the connection does).
pub fn http_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for connection in listener.incoming() {
            let Ok(connection) = connection else { continue };
            std::thread::spawn(move || serve(connection));
        }
    });
    address
}

fn serve(mut connection: TcpStream) {
    let mut request = String::new();
    let mut reader = BufReader::new(connection.try_clone().unwrap());
    if reader.read_line(&mut request).is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["data", len, seed] => {
            let bytes = body(len.parse().unwrap(), seed.parse().unwrap());
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                bytes.len()
            );
            let _ = connection.write_all(head.as_bytes());
            let _ = connection.write_all(&bytes);
        }
        ["endless"] => {
            let _ = connection
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n");
            let chunk = body(16 << 10, 9);
            let until = Instant::now() + Duration::from_secs(120);
            while Instant::now() < until && connection.write_all(&chunk).is_ok() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        _ => {
            let _ = connection.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    }
}

/// An `umbra` client daemon process (proxy or exit).
pub struct Daemon {
    pub role: &'static str,
    pub dir: PathBuf,
    pub child: Option<Child>,
}

impl Daemon {
    /// `umbra <role> init` with `args`, on the topology file `topology` and gateway `gateway`
    /// (its index in the network); not started.
    pub fn init(
        net: &Net,
        role: &'static str,
        name: &str,
        topology: &Path,
        gateway: usize,
        args: &[&str],
    ) -> Daemon {
        let dir = net.dir.join(name);
        let gateway = net.gateway(gateway).id.0.to_string();
        let mut command = Command::new(UMBRA);
        command
            .args([role, "init", "--data-dir"])
            .arg(&dir)
            .arg("--topology")
            .arg(topology)
            .args(["--gateway", &gateway])
            .args(args);
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "umbra {role} init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Daemon {
            role,
            dir,
            child: None,
        }
    }

    /// Its configuration file.
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    /// Replaces `from` with `to` in its configuration file; `from` must be there.
    pub fn edit_config(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(self.config()).unwrap();
        assert!(text.contains(from), "the template changed: {from}");
        std::fs::write(self.config(), text.replace(from, to)).unwrap();
    }

    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("log.txt"))
            .unwrap();
        let child = Command::new(UMBRA)
            .args([self.role, "run", "--data-dir"])
            .arg(&self.dir)
            .env(
                "RUST_LOG",
                "info,umbra_net=debug,umbra_client_daemons=debug",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn address(&self) -> String {
        let out = Command::new(UMBRA)
            .args([self.role, "address", "--data-dir"])
            .arg(&self.dir)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log.txt")).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && child.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits until something listens at `address`.
pub fn wait_listening(address: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(address).is_err() {
        assert!(Instant::now() < deadline, "nothing listens at {address}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// curl through `proxy` (a `socks5h://...` URL) for `url`, the body to `out`; its errors
/// piped.
pub fn curl_command(proxy: &str, url: &str, out: &Path) -> Command {
    let mut command = Command::new("curl");
    command
        .args([
            "--silent",
            "--show-error",
            "--max-time",
            "120",
            "-x",
            proxy,
            "-o",
        ])
        .arg(out)
        .arg(url)
        .stderr(Stdio::piped());
    command
}

/// Runs [`curl_command`] to the end.
pub fn curl(proxy: &str, url: &str, out: &Path) -> Output {
    curl_command(proxy, url, out)
        .output()
        .expect("curl is needed (`apt-get install curl`; .ci/run installs it)")
}

pub fn assert_fetched(output: &Output, file: &Path, expected: &[u8], what: &str) {
    assert!(
        output.status.success(),
        "{what}: curl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let got = std::fs::read(file).unwrap();
    assert_eq!(got.len(), expected.len(), "{what}: length");
    assert_eq!(sha256(&got), sha256(expected), "{what}: SHA-256");
}
