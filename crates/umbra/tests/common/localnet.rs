//! `umbra localnet` as a test drives it: started as its own process with its output read line
//! by line, the addresses it prints, and the processes it runs found and signalled.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use umbra::network::get;

/// A fresh folder under the system's temporary folder, named for the test and this process.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("umbra-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `umbra localnet` running, its output read line by line; Ctrl-C when dropped.
pub struct Localnet {
    child: Child,
    lines: Receiver<String>,
    output: String,
}

/// The small network the localnet tests share the shape of: 2 mix nodes a layer, 2 gateways,
/// no demo, 20-second epochs (the least a monitor measures in).
pub const SMALL: [&str; 7] = [
    "--mixes-per-layer",
    "2",
    "--gateways",
    "2",
    "--no-demo",
    "--epoch-length",
    "20s",
];

impl Localnet {
    pub fn start(dir: &std::path::Path, extra: &[&str]) -> Localnet {
        let mut child = Command::new(env!("CARGO_BIN_EXE_umbra"))
            .arg("localnet")
            .arg("--dir")
            .arg(dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (lines_in, lines) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines_in.send(line).is_err() {
                    break;
                }
            }
        });
        Localnet {
            child,
            lines,
            output: String::new(),
        }
    }

    /// Reads the output until `text` appears (within 90 s); the output so far.
    pub fn wait_for(&mut self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(90);
        while !self.output.contains(text) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.output.push_str(&line);
                    self.output.push('\n');
                }
                Err(_) => panic!("no {text:?} from localnet; it said:\n{}", self.output),
            }
        }
        self.output.clone()
    }

    /// Ctrl-C; how it ended, and everything it said.
    pub fn interrupt(mut self) -> (std::process::ExitStatus, String) {
        let sent = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = self.child.wait().unwrap();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.output.push_str(&line);
            self.output.push('\n');
        }
        (status, std::mem::take(&mut self.output))
    }
}

impl Drop for Localnet {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-INT", &self.child.id().to_string()])
                .status();
            let _ = self.child.wait();
        }
    }
}

/// The address after `prefix` in a line of `output`, up to the next `/` or space.
pub fn address_after(output: &str, prefix: &str) -> SocketAddr {
    let start = output
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix:?} in:\n{output}"))
        + prefix.len();
    let rest = &output[start..];
    let end = rest.find(['/', ' ', '\n']).unwrap_or(rest.len());
    rest[..end].parse().unwrap()
}

/// Every address after `prefix` in `output`'s lines, in order, with the line.
pub fn addresses_after<'a>(output: &'a str, prefix: &str) -> Vec<(SocketAddr, &'a str)> {
    output
        .lines()
        .filter(|line| line.contains(prefix))
        .map(|line| (address_after(line, prefix), line))
        .collect()
}

/// The public key of the account whose key file is `path`.
pub fn account_of(path: &std::path::Path) -> String {
    let seed: [u8; 32] = bs58::decode(std::fs::read_to_string(path).unwrap().trim())
        .into_vec()
        .unwrap()
        .try_into()
        .unwrap();
    umbra_ledger::SigningKey::from_seed(seed)
        .public()
        .to_string()
}

/// Asks `address` for `path` every 200 ms until `ready` takes the JSON answer, for up to
/// `within`.
pub fn poll<T>(
    address: SocketAddr,
    path: &str,
    within: Duration,
    mut ready: impl FnMut(&serde_json::Value) -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    let mut last = None;
    loop {
        if let Some(body) = get(address, path) {
            let value: serde_json::Value = serde_json::from_str(&body).unwrap();
            if let Some(found) = ready(&value) {
                return found;
            }
            last = Some(value);
        }
        assert!(
            Instant::now() < deadline,
            "http://{address}{path} not ready within {within:?}; it said: {last:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The pid of the process whose command line names `data_dir` (a node's or a monitor's).
pub fn pid_of(data_dir: &std::path::Path) -> u32 {
    let wanted = data_dir.to_str().unwrap();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline
            .split(|&byte| byte == 0)
            .any(|arg| arg == wanted.as_bytes())
        {
            return pid;
        }
    }
    panic!("no process runs with {wanted}");
}

pub fn signal(pid: u32, signal: &str) {
    let sent = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill {signal} {pid}");
}
