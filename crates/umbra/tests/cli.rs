//! The `umbra` command as a person uses it: real processes, real files, real signals.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use umbra_sphinx::PublicKey;
use umbra_topology::{Layer, NodeDescriptor, NodeId, NoiseKey, Role, Topology};

fn umbra(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_umbra"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("umbra-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn init(dir: &Path, listen: SocketAddr, http: SocketAddr) -> Output {
    umbra(&[
        "mixnode",
        "init",
        "--data-dir",
        dir.to_str().unwrap(),
        "--listen",
        &listen.to_string(),
        "--http",
        &http.to_string(),
    ])
}

/// The node's public keys, from the entry `init` printed.
fn keys_from(output: &Output) -> (PublicKey, NoiseKey) {
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |name: &str| {
        let start = text.find(&format!("\"{name}\": \"")).unwrap() + name.len() + 5;
        let end = start + text[start..].find('"').unwrap();
        let bytes: [u8; 32] = bs58_decode(&text[start..end]);
        bytes
    };
    (
        PublicKey::from_bytes(field("sphinx_key")).unwrap(),
        NoiseKey(field("noise_key")),
    )
}

/// Every file under `dir` is 0600 and every folder 0700, `dir` included.
#[cfg(unix)]
fn assert_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_private(&path);
        } else {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
}

fn bs58_decode(text: &str) -> [u8; 32] {
    bs58::decode(text).into_vec().unwrap().try_into().unwrap()
}

#[test]
fn help_lists_the_commands() {
    let output = umbra(&["--help"]);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("mixnode"));
    let output = umbra(&["mixnode", "run"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("--data-dir"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn init_makes_a_node_once_and_run_names_what_is_missing() {
    let dir = temp_dir("init");
    let output = init(&dir, free_port(), free_port());
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        printed.contains("\"role\": \"mix\"") && printed.contains("umbra mixnode run"),
        "{printed}"
    );
    for file in ["config.toml", "sphinx.key", "noise.key"] {
        assert!(dir.join(file).exists(), "{file} not created");
    }
    #[cfg(unix)]
    assert_private(&dir);

    let again = init(&dir, free_port(), free_port());
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already holds a node"),
        "{}",
        stderr(&again)
    );

    let run = |dir: &Path| umbra(&["mixnode", "run", "--data-dir", dir.to_str().unwrap()]);
    let missing_topology = run(&dir);
    assert_eq!(missing_topology.status.code(), Some(1));
    assert!(
        stderr(&missing_topology).contains("topology.json"),
        "{}",
        stderr(&missing_topology)
    );

    let empty = temp_dir("empty");
    let missing_config = run(&empty);
    assert!(
        stderr(&missing_config).contains("config.toml")
            && stderr(&missing_config).contains("umbra mixnode init")
    );

    std::fs::write(
        dir.join("config.toml"),
        "listen_address = \"127.0.0.1:1\"\n[mixing]\nmax_delay = 5\n",
    )
    .unwrap();
    let garbled = run(&dir);
    assert!(
        stderr(&garbled).contains("config.toml") && stderr(&garbled).contains("max_delay"),
        "{}",
        stderr(&garbled)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_running_node_stops_cleanly_on_sigterm() {
    let dir = temp_dir("sigterm");
    let (listen, http) = (free_port(), free_port());
    let output = init(&dir, listen, http);
    assert!(output.status.success());
    let (sphinx_key, noise_key) = keys_from(&output);
    let me = NodeDescriptor {
        id: NodeId(1),
        role: Role::Mix(Layer::LAST),
        mix_address: listen,
        client_address: None,
        sphinx_key,
        noise_key,
    };
    std::fs::write(
        dir.join("topology.json"),
        Topology::new(1, vec![me]).unwrap().to_json(),
    )
    .unwrap();
    // a small replay filter: the default one takes 539 MB
    let config = std::fs::read_to_string(dir.join("config.toml"))
        .unwrap()
        .replace(
            "expected_packets_per_second = 2000",
            "expected_packets_per_second = 10",
        );
    std::fs::write(dir.join("config.toml"), config).unwrap();

    let mut node = Command::new(env!("CARGO_BIN_EXE_umbra"))
        .args(["mixnode", "run", "--data-dir", dir.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let health = loop {
        if let Ok(mut stream) = TcpStream::connect(http) {
            stream
                .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).unwrap();
            break response;
        }
        assert!(Instant::now() < deadline, "the node never answered");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        health.contains("200 OK") && health.contains("\"status\":\"ok\""),
        "{health}"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &node.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = node.wait().unwrap();
    let mut log = String::new();
    node.stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(status.success(), "exit {status:?}\n{log}");
    assert!(log.contains("mix node stopped"), "{log}");
    assert!(
        dir.join("replay/rotation-1.bloom").exists(),
        "replay filter not saved"
    );
    #[cfg(unix)]
    assert_private(&dir.join("replay"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn client_init_says_when_its_api_port_is_taken() {
    let root = temp_dir("client-port");
    std::fs::create_dir_all(&root).unwrap();
    let gateway = NodeDescriptor {
        id: NodeId(10),
        role: Role::Gateway,
        mix_address: free_port(),
        client_address: Some(free_port()),
        sphinx_key: umbra_sphinx::PrivateKey::from_bytes([3; 32]).public_key(),
        noise_key: NoiseKey([4; 32]),
    };
    let topology = root.join("topology.json");
    std::fs::write(
        &topology,
        Topology::new(1, vec![gateway]).unwrap().to_json(),
    )
    .unwrap();
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap().to_string();
    let init = |name: &str, api: &str| {
        umbra(&[
            "client",
            "init",
            "--data-dir",
            root.join(name).to_str().unwrap(),
            "--topology",
            topology.to_str().unwrap(),
            "--gateway",
            "10",
            "--api",
            api,
        ])
    };
    let refused = init("a", &taken);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains(&taken) && stderr(&refused).contains("--api 127.0.0.1:0"),
        "{}",
        stderr(&refused)
    );
    assert!(!root.join("a/config.toml").exists(), "nothing made");

    let made = init("b", "127.0.0.1:0");
    assert!(made.status.success(), "{}", stderr(&made));
    let config = std::fs::read_to_string(root.join("b/config.toml")).unwrap();
    let printed = String::from_utf8_lossy(&made.stdout);
    let listen = config
        .lines()
        .find_map(|line| line.strip_prefix("listen_address = "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    assert!(!listen.ends_with(":0"), "{config}");
    assert!(printed.contains(&format!("ws://{listen}")), "{printed}");
    #[cfg(unix)]
    assert_private(&root.join("b"));
    drop(held);
    std::fs::remove_dir_all(&root).unwrap();
}

/// Runs `umbra localnet` until `until` appears on its output, then SIGTERM; returns the output.
fn localnet_until(dir: &Path, extra: &[&str], until: &str) -> String {
    localnet_until_then(dir, extra, until, |_| {})
}

/// Like [`localnet_until`], calling `then` with the output so far before stopping it.
fn localnet_until_then(dir: &Path, extra: &[&str], until: &str, then: impl FnOnce(&str)) -> String {
    use std::io::BufRead;
    let mut run = Command::new(env!("CARGO_BIN_EXE_umbra"))
        .arg("localnet")
        .arg("--dir")
        .arg(dir)
        .args(["--mixes-per-layer", "1", "--gateways", "2"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines_in, lines) = std::sync::mpsc::channel();
    let stdout = run.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_in.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut output = String::new();
    while !output.contains(until) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                output.push_str(&line);
                output.push('\n');
            }
            Err(_) => {
                let _ = run.kill();
                panic!("no {until:?} from localnet; it said:\n{output}");
            }
        }
    }
    let during = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| then(&output)));
    if let Err(panic) = during {
        let _ = Command::new("kill")
            .args(["-TERM", &run.id().to_string()])
            .status();
        let _ = run.wait();
        std::panic::resume_unwind(panic);
    }
    let killed = Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = run.wait().unwrap();
    reader.join().unwrap();
    output.extend(lines.try_iter().map(|line| line + "\n"));
    assert!(status.success(), "localnet exited with {status}:\n{output}");
    output
}

#[test]
fn localnet_with_four_bft_validators_carries_traffic() {
    let dir = temp_dir("localnet-bft");
    let output = localnet_until(
        &dir,
        &["--validators", "4", "--demo-interval", "300ms"],
        "through a SURB",
    );
    for n in 1..=4 {
        assert!(
            output.contains(&format!("validator-{n} (BFT, 1 of 4)")),
            "{output}"
        );
    }
    assert!(output.contains("\" arrived in"), "{output}");
    assert!(output.contains("Stopped cleanly"), "{output}");
    // each validator ran the BFT sequencer, as its own process with its own log
    for n in 1..=4 {
        let log = std::fs::read_to_string(dir.join("logs").join(format!("validator-{n}.log")))
            .unwrap_or_default();
        assert!(log.contains("sequencer=\"bft\""), "validator-{n}: {log}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn localnet_runs_a_network_with_demo_traffic_and_stops_it_cleanly() {
    let dir = temp_dir("localnet");
    let output = localnet_until(&dir, &["--demo-interval", "300ms"], "through a SURB");
    assert!(output.contains("Created the network"), "{output}");
    assert!(
        output.contains("mix-2-1") && output.contains("gateway-2"),
        "{output}"
    );
    // (the first question may need a retransmission while the links of the new epoch come up)
    assert!(output.contains("\" arrived in"), "{output}");
    assert!(output.contains("validator-1 (solo)"), "{output}");
    assert!(output.contains("Stopped cleanly"), "{output}");
    let address = output
        .lines()
        .find_map(|line| line.strip_prefix("Its address: "))
        .unwrap()
        .to_owned();
    // every node's ports are free again: nothing was left running
    let layout: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("localnet.json")).unwrap()).unwrap();
    for node in layout["nodes"].as_array().unwrap() {
        let listen = node["listen"].as_str().unwrap();
        TcpListener::bind(listen).unwrap_or_else(|e| panic!("{listen} still taken: {e}"));
    }

    // the next run reuses the folder: same nodes, same keys, same client address; an
    // application reaches a server on this machine through the SOCKS5 proxy it prints
    let page: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let server_port = server.local_addr().unwrap().port();
    let served = page.clone();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for connection in server.incoming() {
            let Ok(mut connection) = connection else {
                continue;
            };
            let mut request = [0; 1024];
            let _ = connection.read(&mut request);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                served.len()
            );
            let _ = connection.write_all(head.as_bytes());
            let _ = connection.write_all(&served);
        }
    });
    let fetched = dir.join("fetched");
    let again = localnet_until_then(&dir, &["--no-demo"], "Ctrl-C stops everything.", |output| {
        let proxy = output
            .lines()
            .find_map(|line| line.strip_prefix("SOCKS5 proxy: "))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no proxy address printed:\n{output}"))
            .to_owned();
        assert!(proxy.starts_with("socks5h://127.0.0.1:"), "{proxy}");
        let curl = Command::new("curl")
            .args([
                "--silent",
                "--show-error",
                "--max-time",
                "60",
                "-x",
                &proxy,
                "-o",
            ])
            .arg(&fetched)
            .arg(format!("http://localhost:{server_port}/"))
            .output()
            .expect("curl is needed (.ci/run installs it)");
        assert!(curl.status.success(), "curl: {}", stderr(&curl));
        assert_eq!(std::fs::read(&fetched).unwrap(), page);
    });
    assert!(again.contains("Reusing the network"), "{again}");
    assert!(again.contains(&address), "{again}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `umbra localnet` running, its output read line by line.
struct Running {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    output: String,
}

impl Running {
    fn start(dir: &Path, extra: &[&str]) -> Running {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_umbra"))
            .arg("localnet")
            .arg("--dir")
            .arg(dir)
            .args(["--mixes-per-layer", "1", "--gateways", "2", "--no-demo"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (lines_in, lines) = std::sync::mpsc::channel();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines_in = lines_in.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if lines_in.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Running {
            child,
            lines,
            output: String::new(),
        }
    }

    /// Reads the output until `text` appears (within 90 s); the output so far.
    fn wait_for(&mut self, text: &str) -> &str {
        let deadline = Instant::now() + Duration::from_secs(90);
        while !self.output.contains(text) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.output.push_str(&line);
                    self.output.push('\n');
                }
                // (dropping it then stops the network with Ctrl-C, nodes and all)
                Err(_) => panic!("no {text:?} from localnet; it said:\n{}", self.output),
            }
        }
        &self.output
    }

    /// Waits until it exits by itself; how, and everything it said.
    fn wait(mut self) -> (std::process::ExitStatus, String) {
        let status = self.child.wait().unwrap();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.output.push_str(&line);
            self.output.push('\n');
        }
        (status, std::mem::take(&mut self.output))
    }

    /// Ctrl-C, as a person would; how it ended, and everything it said.
    fn interrupt(self) -> (std::process::ExitStatus, String) {
        let sent = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        self.wait()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-INT", &self.child.id().to_string()])
                .status();
            let _ = self.child.wait();
        }
    }
}

/// The process running the node, daemon or validator in `data_dir`.
fn pid_running(data_dir: &Path) -> Option<u32> {
    let wanted = format!("--data-dir\0{}\0", data_dir.display());
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline)
                .contains(&wanted)
                .then_some(pid)
        })
}

/// What every log in `dir/logs` holds now, by file.
fn log_sizes(dir: &Path) -> Vec<(PathBuf, u64)> {
    std::fs::read_dir(dir.join("logs"))
        .unwrap()
        .flatten()
        .map(|entry| (entry.path(), entry.metadata().unwrap().len()))
        .collect()
}

/// The lines written to the logs since `sizes`.
fn logged_since(sizes: &[(PathBuf, u64)]) -> String {
    sizes
        .iter()
        .map(|(path, size)| {
            let text = std::fs::read(path).unwrap();
            let new = String::from_utf8_lossy(&text[(*size as usize).min(text.len())..]);
            new.lines()
                .map(|line| format!("{}: {line}\n", path.display()))
                .collect::<String>()
        })
        .collect()
}

fn port_in(line_prefix: &str, output: &str) -> SocketAddr {
    output
        .lines()
        .find_map(|line| line.split_once(line_prefix))
        .and_then(|(_, rest)| rest.split([' ', '/']).next())
        .unwrap_or_else(|| panic!("no {line_prefix:?} in:\n{output}"))
        .parse()
        .unwrap()
}

/// Issue 13 (5, 6, 7, 13 and the quiet stop): a killed node is reported at once and started
/// again; a network whose nodes deleted their registered Sphinx keys starts again; a client and proxy whose ports
/// another program took move to free ones; Ctrl-C stops the nodes in order without a link
/// warning; a process that keeps dying stops the network, naming it and its log.
#[test]
fn localnet_heals_restarts_after_rotation_moves_off_taken_ports_and_gives_up_on_a_broken_node() {
    let dir = temp_dir("localnet-heal");
    let mix = dir.join("mix-1-1");
    let mut first = Running::start(&dir, &["--epoch-length", "2s", "--rotation-epochs", "1"]);
    let output = first.wait_for("Ctrl-C stops everything.").to_owned();
    let client_api = port_in("serves applications at ws://", &output);
    let proxy = port_in("SOCKS5 proxy: socks5h://", &output);
    // the chat commands it prints work as printed: a release build, bob's storage, his address,
    // tickets bought with localnet's account (its gateways demand them)
    let chat: Vec<&str> = output
        .lines()
        .filter(|line| line.contains("--example chat"))
        .collect();
    assert!(
        chat.len() == 2
            && chat
                .iter()
                .all(|line| line.contains("cargo run --release") && line.contains("--account "))
            && chat[0].contains("--storage")
            && chat[1].contains("--to <bob's address>"),
        "{output}"
    );

    // a mix node killed is reported, started again and serves again
    let pid = pid_running(&mix).expect("mix-1-1 is not running");
    assert!(
        Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    first.wait_for("[net] mix-1-1 stopped unexpectedly (signal: 9");
    first.wait_for("[net] mix-1-1 started again");
    let deadline = Instant::now() + Duration::from_secs(30);
    let restarted = loop {
        if let Some(restarted) = pid_running(&mix) {
            break restarted;
        }
        assert!(
            Instant::now() < deadline,
            "mix-1-1 was not started again: {}",
            first.output
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_ne!(restarted, pid);
    let layout: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("localnet.json")).unwrap()).unwrap();
    let http: SocketAddr = layout["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|node| node["name"] == "mix-1-1")
        .and_then(|node| node["http"].as_str()?.parse().ok())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while umbra::network::get(http, "/health").is_none() {
        assert!(Instant::now() < deadline, "mix-1-1 did not serve again");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Ctrl-C: the nodes stop in order, none waiting on or warning about a stopped peer
    let sizes = log_sizes(&dir);
    let (status, output) = first.interrupt();
    assert!(status.success(), "{output}");
    assert!(output.contains("Stopped cleanly"), "{output}");
    let logged = logged_since(&sizes);
    assert!(
        !logged.contains("link down") && !logged.contains("still down"),
        "{logged}"
    );
    assert!(pid_running(&mix).is_none());
    // every node's registered Sphinx key is gone, as after a rotation (when it is retired
    // depends on where the first epochs fell; here it is certain)
    for node in ["mix-1-1", "mix-2-1", "mix-3-1", "gateway-1", "gateway-2"] {
        let _ = std::fs::remove_file(dir.join(node).join("sphinx.key"));
    }

    // another program takes the client's and the proxy's ports; the network starts again
    let _taken = [client_api, proxy].map(|address| TcpListener::bind(address).unwrap());
    let mut second = Running::start(&dir, &[]);
    let output = second.wait_for("Ctrl-C stops everything.").to_owned();
    assert!(output.contains("Reusing the network"), "{output}");
    for (taken, name) in [(client_api, "client"), (proxy, "socks5")] {
        assert!(
            output.contains(&format!(
                "{taken} is taken by another program: {name} listens on"
            )),
            "{output}"
        );
    }
    let moved = port_in("serves applications at ws://", &output);
    assert_ne!(moved, client_api);
    TcpStream::connect(moved).unwrap_or_else(|e| panic!("nothing serves at {moved}: {e}"));
    let config = std::fs::read_to_string(dir.join("client").join("config.toml")).unwrap();
    assert!(config.contains(&moved.to_string()), "{config}");

    // a node that cannot start any more: the network stops, naming it and its log
    std::fs::write(mix.join("config.toml"), "garbage = \n").unwrap();
    let pid = pid_running(&mix).expect("mix-1-1 is not running");
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    let (status, output) = second.wait();
    assert!(!status.success(), "{output}");
    assert!(
        output.contains("mix-1-1 stopped 5 times within 60 s")
            && output.contains(&dir.join("logs").join("mix-1-1.log").display().to_string()),
        "{output}"
    );
    for name in ["validator-1", "gateway-1", "mix-2-1", "client"] {
        assert!(
            pid_running(&dir.join(name)).is_none(),
            "{name} outlived the network"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn client_buy_explains_bad_arguments_and_a_client_without_a_ledger() {
    let root = temp_dir("client-buy");
    std::fs::create_dir_all(&root).unwrap();
    let buy = |dir: &Path, account: &Path, tickets: &str| {
        umbra(&[
            "client",
            "buy",
            "--data-dir",
            dir.to_str().unwrap(),
            "--account",
            account.to_str().unwrap(),
            "--tickets",
            tickets,
        ])
    };
    let missing = root.join("missing.key");
    for count in ["0", "4097", "many"] {
        let refused = buy(&root, &missing, count);
        assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
        assert!(
            stderr(&refused).contains("--tickets"),
            "{}",
            stderr(&refused)
        );
    }
    let refused = buy(&root, &missing, "3");
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("--account") && stderr(&refused).contains("umbra account new"),
        "{}",
        stderr(&refused)
    );

    // a client with a fixed topology file has no ledger to buy on
    let gateway = NodeDescriptor {
        id: NodeId(10),
        role: Role::Gateway,
        mix_address: free_port(),
        client_address: Some(free_port()),
        sphinx_key: umbra_sphinx::PrivateKey::from_bytes([3; 32]).public_key(),
        noise_key: NoiseKey([4; 32]),
    };
    let topology = root.join("topology.json");
    std::fs::write(
        &topology,
        Topology::new(1, vec![gateway]).unwrap().to_json(),
    )
    .unwrap();
    let client = root.join("client");
    let made = umbra(&[
        "client",
        "init",
        "--data-dir",
        client.to_str().unwrap(),
        "--topology",
        topology.to_str().unwrap(),
        "--gateway",
        "10",
        "--api",
        "127.0.0.1:0",
    ]);
    assert!(made.status.success(), "{}", stderr(&made));
    let account = root.join("account.key");
    let made = umbra(&["account", "new", "--out", account.to_str().unwrap()]);
    assert!(made.status.success(), "{}", stderr(&made));
    let refused = buy(&client, &account, "3");
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("no [ledger] section"),
        "{}",
        stderr(&refused)
    );
    assert!(!client.join("tickets.redb").exists(), "no wallet made");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn sim_runs_a_config_and_writes_its_results() {
    let dir = temp_dir("sim");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("sim.toml");
    std::fs::write(
        &config,
        "clients = 12\ngateways = 2\nlayer_width = 2\nduration = \"4s\"\nwarmup = \"1s\"\npreset = \"nym\"\n",
    )
    .unwrap();
    let out = dir.join("out");
    let output = umbra(&[
        "sim",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("sender of a message"), "{stdout}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["config"]["clients"], 12);
    assert!(results["performance"]["messages_sent"].as_u64().unwrap() > 10);
    assert!(
        results["anonymity"]["senders"]["senders"]["entropy"]["mean"]
            .as_f64()
            .unwrap()
            > 1.0
    );
    let svg = std::fs::read_to_string(out.join("latency.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") || svg.starts_with("<?xml"),
        "{svg:.80}"
    );

    // a mistyped setting names itself and where to look
    std::fs::write(&config, "clinets = 12\n").unwrap();
    let output = umbra(&["sim", "--config", config.to_str().unwrap(), "--quiet"]);
    assert!(!output.status.success());
    let error = stderr(&output);
    assert!(
        error.contains("clinets") && error.contains("sim.example.toml"),
        "{error}"
    );
    // a setting that cannot work says what would
    std::fs::write(&config, "clients = 1\n").unwrap();
    let output = umbra(&["sim", "--config", config.to_str().unwrap(), "--quiet"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("at least 2"),
        "{}",
        stderr(&output)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
