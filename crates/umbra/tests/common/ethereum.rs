//! The Ethereum example (`examples/ethereum`) as tests and benchmarks run it: its npm packages,
//! a ganache chain on a free port, and `send.mjs`.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The example's folder.
pub fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/ethereum")
}

/// Installs the example's packages (ethers, socks-proxy-agent, ganache) unless they are.
pub fn npm_install() {
    let dir = example_dir();
    if dir.join("node_modules/.bin/ganache").exists() && dir.join("node_modules/ethers").exists() {
        return;
    }
    let installed = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status()
        .unwrap_or_else(|error| {
            panic!("this test needs Node.js 18+ and npm (to run ganache and ethers): {error}")
        });
    assert!(installed.success(), "npm ci in {} failed", dir.display());
}

/// A ganache chain on a free port, whose one account (`KEY`) holds 100 ETH.
pub struct Ganache {
    child: Child,
    pub address: SocketAddr,
}

/// The sender's private key (a test key: any 32 bytes below the curve's order).
pub const KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";

impl Ganache {
    pub fn start() -> Ganache {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(example_dir().join("node_modules/.bin/ganache"))
            .args([
                "--wallet.accounts",
                &format!("{KEY},100000000000000000000"),
                "--chain.chainId",
                "1337",
                "--server.host",
                "127.0.0.1",
                "--server.port",
                &port.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // it says so once it listens
        let stdout = child.stdout.take().unwrap();
        let (ready_in, ready) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains("RPC Listening on") {
                    let _ = ready_in.send(());
                }
            }
        });
        ready
            .recv_timeout(Duration::from_secs(60))
            .expect("ganache did not start within 60 s");
        Ganache {
            child,
            address: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// A JSON-RPC call straight to the node (the test's own view of the chain).
    pub fn call(&self, method: &str, params: Value) -> Value {
        let body =
            serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let answer = runtime
            .block_on(umbra_net::http_client::request(
                self.address,
                hyper::Method::POST,
                "/",
                Some(serde_json::to_vec(&body).unwrap()),
                umbra_net::http_client::Limits::default(),
            ))
            .unwrap();
        let answer: Value = serde_json::from_slice(&answer.body).unwrap();
        answer["result"].clone()
    }
}

impl Drop for Ganache {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `send.mjs` did: one JSON object per transfer, and its pid.
pub struct Sent {
    pub transfers: Vec<Value>,
    pub pid: u32,
}

/// Runs `send.mjs` against `rpc` (through `proxy` if given): `repeat` transfers of `value` ETH
/// from `KEY`'s account to a fresh address. Panics with its output if it fails.
pub fn send(rpc: SocketAddr, proxy: Option<&str>, value: &str, repeat: usize) -> Sent {
    let mut command = Command::new("node");
    command
        .arg(example_dir().join("send.mjs"))
        .args(["--rpc", &format!("http://{rpc}")])
        .args(["--key", KEY, "--value", value])
        .args(["--repeat", &repeat.to_string()]);
    if let Some(proxy) = proxy {
        command.args(["--proxy", proxy]);
    }
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("this needs Node.js 18+ (`node`)");
    let pid = child.id();
    let output = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "send.mjs failed: {said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let transfers = said
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    Sent { transfers, pid }
}
