//! The network monitor in a whole local network of processes (`umbra localnet`, short
//! epochs): it scores the nodes, the ledger records exactly what it submitted, and the
//! evidence it serves recomputes to exactly those scores. With `--monitors 3`, genesis names
//! all three and each submits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use umbra::network::get;
use umbra_monitor::{Evidence, attribute};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("umbra-monitor-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `umbra localnet` running, its output read line by line; Ctrl-C when dropped.
struct Localnet {
    child: Child,
    lines: Receiver<String>,
    output: String,
}

impl Localnet {
    fn start(dir: &std::path::Path, extra: &[&str]) -> Localnet {
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
    fn wait_for(&mut self, text: &str) -> String {
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
    fn interrupt(mut self) -> (std::process::ExitStatus, String) {
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
fn address_after(output: &str, prefix: &str) -> SocketAddr {
    let start = output
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix:?} in:\n{output}"))
        + prefix.len();
    let rest = &output[start..];
    let end = rest.find(['/', ' ', '\n']).unwrap_or(rest.len());
    rest[..end].parse().unwrap()
}

/// Every address after `prefix` in `output`'s lines, in order, with the line.
fn addresses_after<'a>(output: &'a str, prefix: &str) -> Vec<(SocketAddr, &'a str)> {
    output
        .lines()
        .filter(|line| line.contains(prefix))
        .map(|line| (address_after(line, prefix), line))
        .collect()
}

/// The public key of the account whose key file is `path`.
fn account_of(path: &std::path::Path) -> String {
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
fn poll<T>(
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

/// Every file under `dir` is 0600 and every folder 0700, `dir` included.
#[cfg(unix)]
fn assert_private(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
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

fn umbra(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_umbra"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn monitor_init_makes_a_private_monitor_once_and_run_names_what_is_missing() {
    let root = temp_dir("init");
    let validator = root.join("validator");
    let made = umbra(&[
        "validator",
        "init",
        "--data-dir",
        validator.to_str().unwrap(),
    ]);
    assert!(made.status.success(), "{made:?}");
    let genesis = validator.join("genesis.json");
    let dir = root.join("monitor");
    let init = |genesis: &std::path::Path| {
        umbra(&[
            "monitor",
            "init",
            "--data-dir",
            dir.to_str().unwrap(),
            "--validator",
            "http://127.0.0.1:7000",
            "--genesis",
            genesis.to_str().unwrap(),
            "--http",
            "127.0.0.1:0",
        ])
    };
    let missing = init(&root.join("nowhere.json"));
    assert!(!missing.status.success());
    let said = String::from_utf8_lossy(&missing.stderr);
    assert!(
        said.contains("nowhere.json") && said.contains("genesis"),
        "{said}"
    );

    let output = init(&genesis);
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{printed}{output:?}");
    // the account it prints is the key it keeps
    let account = printed
        .lines()
        .skip_while(|line| !line.starts_with("Its account"))
        .nth(1)
        .unwrap()
        .trim()
        .to_owned();
    let seed: [u8; 32] = bs58::decode(
        std::fs::read_to_string(dir.join("account.key"))
            .unwrap()
            .trim(),
    )
    .into_vec()
    .unwrap()
    .try_into()
    .unwrap();
    assert_eq!(
        umbra_ledger::SigningKey::from_seed(seed)
            .public()
            .to_string(),
        account
    );
    assert!(
        printed.contains("umbra monitor run --data-dir"),
        "{printed}"
    );
    #[cfg(unix)]
    assert_private(&dir);

    let again = init(&genesis);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already holds"),
        "{again:?}"
    );
    let nothing = root.join("nothing");
    let run = umbra(&["monitor", "run", "--data-dir", nothing.to_str().unwrap()]);
    assert!(!run.status.success());
    let said = String::from_utf8_lossy(&run.stderr);
    assert!(said.contains("umbra monitor init --data-dir"), "{said}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn the_monitor_scores_every_node_and_its_evidence_recomputes_what_the_ledger_recorded() {
    let dir = temp_dir("localnet");
    let mut net = Localnet::start(
        &dir,
        &[
            "--mixes-per-layer",
            "2",
            "--gateways",
            "2",
            "--no-demo",
            "--epoch-length",
            "20s",
        ],
    );
    let output = net.wait_for("Ctrl-C stops everything.");
    let validator = address_after(&output, "validator-1 (solo)  API http://");
    let monitor = address_after(&output, "evidence of each epoch at http://");

    // the first epoch the monitor submitted scores for
    let epoch = poll(monitor, "/health", Duration::from_secs(90), |health| {
        let submission = health.get("last_submission")?;
        (submission["ok"] == true).then(|| submission["epoch"].as_u64().unwrap())
    });
    // the ledger's record of that epoch, once it ended
    let recorded: BTreeMap<u64, (u64, bool)> =
        poll(validator, "/epochs", Duration::from_secs(40), |epochs| {
            let report = epochs
                .as_array()?
                .iter()
                .find(|report| report["epoch"].as_u64() == Some(epoch))?;
            Some(
                report["nodes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|node| {
                        (
                            node["node"].as_u64().unwrap(),
                            (
                                node["performance"].as_u64().unwrap(),
                                node["measured"].as_bool().unwrap(),
                            ),
                        )
                    })
                    .collect(),
            )
        });

    // the evidence, as anyone fetches it, recomputes to exactly the recorded scores
    let json = get(monitor, &format!("/evidence/{epoch}")).expect("the evidence is served");
    let evidence = Evidence::from_json(&json).unwrap();
    assert_eq!(evidence.epoch, epoch);
    let scores = attribute(&evidence).performance();
    assert!(!scores.is_empty(), "no node was scored: {json}");
    eprintln!(
        "epoch {epoch}: {} routes judged, scores {scores:?}",
        evidence.routes.len()
    );
    for (node, ppm) in &scores {
        assert_eq!(
            recorded.get(&u64::from(*node)),
            Some(&(u64::from(*ppm), true)),
            "node {node}: the ledger recorded {:?}, the evidence gives {ppm} ppm",
            recorded.get(&u64::from(*node))
        );
    }
    // a node the evidence does not score was not measured: the ledger kept its performance
    let scored: Vec<u64> = scores.iter().map(|(node, _)| u64::from(*node)).collect();
    for (node, (_, measured)) in &recorded {
        assert_eq!(*measured, scored.contains(node), "node {node}");
    }
    // the list names the epoch with the evidence's hash
    let list: serde_json::Value =
        serde_json::from_str(&get(monitor, "/evidence").unwrap()).unwrap();
    let listed = list
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["epoch"].as_u64() == Some(epoch))
        .unwrap_or_else(|| panic!("epoch {epoch} not listed: {list}"));
    assert_eq!(listed["hash"], evidence.hash().to_string());
    // and the monitor's metrics count what it sent and submitted
    let metrics = get(monitor, "/metrics").unwrap();
    let sample = |series: &str| umbra_net::metrics::sample(&metrics, series).unwrap_or(0.0);
    assert!(
        sample("umbra_monitor_routes_total{outcome=\"returned\"}") > 0.0,
        "{metrics}"
    );
    assert!(
        sample("umbra_monitor_submissions_total{result=\"ok\"}") >= 1.0,
        "{metrics}"
    );

    let (status, output) = net.interrupt();
    assert!(status.success(), "localnet exited with {status}:\n{output}");
    assert!(output.contains("Stopped cleanly"), "{output}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn localnet_runs_three_monitors_that_genesis_names_and_each_submits() {
    let dir = temp_dir("three");
    let mut net = Localnet::start(
        &dir,
        &[
            "--monitors",
            "3",
            "--mixes-per-layer",
            "2",
            "--gateways",
            "2",
            "--no-demo",
            "--epoch-length",
            "20s",
        ],
    );
    let output = net.wait_for("Ctrl-C stops everything.");
    let validator = address_after(&output, "validator-1 (solo)  API http://");
    let monitors = addresses_after(&output, "evidence of each epoch at http://");
    assert_eq!(monitors.len(), 3, "{output}");
    let names = ["monitor", "monitor-2", "monitor-3"];
    for ((_, line), name) in monitors.iter().zip(names) {
        let folder = dir.join(name);
        assert!(
            line.starts_with(&format!("Network monitor ({}):", folder.display())),
            "{line}"
        );
    }
    let addresses: std::collections::BTreeSet<SocketAddr> =
        monitors.iter().map(|(address, _)| *address).collect();
    assert_eq!(addresses.len(), 3, "{output}");

    // genesis names exactly the three accounts whose keys localnet made
    let genesis: serde_json::Value =
        serde_json::from_str(&get(validator, "/genesis").unwrap()).unwrap();
    let named: Vec<String> = genesis["monitors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key.as_str().unwrap().to_owned())
        .collect();
    let made: Vec<String> = names
        .iter()
        .map(|name| account_of(&dir.join("operators").join(format!("{name}.key"))))
        .collect();
    assert_eq!(named, made);

    // each monitor measures an epoch and the ledger takes its scores
    for (address, line) in &monitors {
        let epoch = poll(*address, "/health", Duration::from_secs(90), |health| {
            let submission = health.get("last_submission")?;
            (submission["ok"] == true).then(|| submission["epoch"].as_u64().unwrap())
        });
        eprintln!("{line}: submitted epoch {epoch}");
    }
    // the report says what the ledger recorded from the three
    net.wait_for("the lower median of 3 monitors' scores: ");

    let (status, output) = net.interrupt();
    assert!(status.success(), "localnet exited with {status}:\n{output}");
    assert!(output.contains("Stopped cleanly"), "{output}");

    // genesis fixed the monitors: run again, the network keeps its three and says so
    let mut again = Localnet::start(&dir, &["--monitors", "1", "--no-demo"]);
    again.wait_for(
        "This network was made with 3 monitor(s); --monitors 1 applies to a new network only",
    );
    drop(again);
    std::fs::remove_dir_all(&dir).unwrap();
}
