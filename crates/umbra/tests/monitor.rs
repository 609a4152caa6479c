//! The network monitor in a whole local network of processes (`umbra localnet`, short
//! epochs): it scores the nodes, the ledger records exactly what it submitted, and the
//! evidence it serves recomputes to exactly those scores. With `--monitors 3`, genesis names
//! all three and each submits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::localnet::{
    Localnet, SMALL, account_of, address_after, addresses_after, pid_of, poll, signal, temp_dir,
};
use umbra::network::get;
use umbra_monitor::{Evidence, attribute};

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
    let root = temp_dir("monitor-init");
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
    let _one = one_network();
    let dir = temp_dir("monitor-localnet");
    let mut net = Localnet::start(&dir, &SMALL);
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
    // a healthy network: every score at least 95 %
    for (node, ppm) in &scores {
        assert!(*ppm >= 950_000, "node {node} at {ppm} ppm: {scores:?}");
    }
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
    let _one = one_network();
    let dir = temp_dir("monitor-three");
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

/// One local network at a time in this binary: two on two cores would starve each other's
/// monitors (which then, rightly, judge nothing).
static ONE_NETWORK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_network() -> std::sync::MutexGuard<'static, ()> {
    ONE_NETWORK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The validator's JSON answer to `path`.
fn ledger(validator: SocketAddr, path: &str) -> serde_json::Value {
    serde_json::from_str(&get(validator, path).unwrap_or_else(|| panic!("GET {path}"))).unwrap()
}

/// The ledger's report of `epoch`, once that epoch has ended (within `within`).
fn epoch_report(validator: SocketAddr, epoch: u64, within: Duration) -> serde_json::Value {
    poll(validator, "/epochs", within, |epochs| {
        epochs
            .as_array()?
            .iter()
            .find(|report| report["epoch"].as_u64() == Some(epoch))
            .cloned()
    })
}

/// A node's entry in an epoch report.
fn entry(report: &serde_json::Value, node: u64) -> Option<&serde_json::Value> {
    report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["node"].as_u64() == Some(node))
}

/// What a monitor submitted in an epoch report: its scores by node.
fn submission(report: &serde_json::Value, monitor: &str) -> Option<BTreeMap<u64, u64>> {
    let found = report["monitors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["monitor"] == monitor)?;
    Some(
        found["scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| (pair[0].as_u64().unwrap(), pair[1].as_u64().unwrap()))
            .collect(),
    )
}

/// The reward the formula gives for an epoch report's entry (the ledger's own inputs, the
/// performance the monitors measured).
fn formula(report: &serde_json::Value, node: &serde_json::Value) -> umbra_ledger::rewards::Payout {
    use umbra_ledger::rewards::{RewardInputs, node_reward};
    use umbra_ledger::{Amount, Fixed, Ppm};
    let amount = |value: &serde_json::Value| Amount(value.as_u64().unwrap());
    let fraction = |value: &serde_json::Value| {
        Fixed::from_ppm(Ppm(u32::try_from(value.as_u64().unwrap()).unwrap()))
    };
    node_reward(&RewardInputs {
        budget: amount(&report["budget"]),
        active_set_size: report["active_set_size"].as_u64().unwrap(),
        saturation: amount(&report["saturation"]),
        sybil_resistance: fraction(&report["sybil_resistance"]),
        pledge: amount(&node["pledge"]),
        delegations: amount(&node["delegations"]),
        performance: fraction(&node["performance"]),
        operating_cost: amount(&node["operating_cost"]),
        profit_margin: fraction(&node["profit_margin"]),
    })
}

/// Signs and submits `scores` for `epoch` in the name of the monitor whose key is `key`.
fn submit_as(
    validator: SocketAddr,
    key: &umbra_ledger::SigningKey,
    epoch: u64,
    scores: Vec<(u32, u32)>,
) {
    use umbra_ledger::{Action, Hash, NodeId, Ppm, Transaction};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = umbra_net::ledger::LedgerClient::new(validator);
        let chain_id = client.chain_id().await.unwrap();
        let nonce = client.account(&key.public()).await.unwrap().next_nonce;
        let transaction = Transaction::sign(
            &chain_id,
            key,
            nonce,
            Action::SubmitPerformance {
                epoch,
                scores: scores
                    .into_iter()
                    .map(|(node, ppm)| (NodeId(node), Ppm(ppm)))
                    .collect(),
                // evidence it never published
                evidence: Hash([0x1e; 32]),
            },
        );
        let hash = client.submit(&transaction).await.unwrap();
        client
            .wait_for(&hash, Duration::from_secs(10))
            .await
            .unwrap();
    });
}

#[test]
fn a_node_dropping_half_is_caught_paid_its_score_and_left_out_while_the_monitors_faults_and_a_liar_move_nothing()
 {
    let _one = one_network();
    let dir = temp_dir("monitor-faults");
    // the network is made first, so that one mix node can be made faulty before it starts
    umbra::network::Layout::create_or_open_with_ledger(
        &dir,
        &umbra::network::Shape {
            mixes_per_layer: 2,
            gateways: 2,
        },
        1,
        3,
    )
    .unwrap();
    let bad_name = "mix-2-1";
    let config = dir.join(bad_name).join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("insecure_drop_fraction = 0.5\n{text}")).unwrap();
    let mut net = Localnet::start(&dir, &["--no-demo", "--epoch-length", "20s"]);
    let output = net.wait_for("Ctrl-C stops everything.");
    let validator = address_after(&output, "validator-1 (solo)  API http://");
    let monitors: Vec<SocketAddr> = output
        .match_indices("evidence of each epoch at http://")
        .map(|(at, prefix)| address_after(&output[at..], prefix))
        .collect();
    assert_eq!(monitors.len(), 3, "{output}");
    // monitor 3 lies: its process is stopped, and the test submits in its name
    let liar_key = umbra_ledger::SigningKey::from_seed(
        umbra_net::keys::read_key(&dir.join("operators").join("monitor-3.key")).unwrap(),
    );
    let liar_pid = pid_of(&dir.join("monitor-3"));
    signal(liar_pid, "-STOP");
    let honest: Vec<String> = ["monitor.key", "monitor-2.key"]
        .iter()
        .map(|file| {
            umbra_ledger::SigningKey::from_seed(
                umbra_net::keys::read_key(&dir.join("operators").join(file)).unwrap(),
            )
            .public()
            .to_string()
        })
        .collect();

    let ids: BTreeMap<String, u64> = ledger(validator, "/nodes")
        .as_array()
        .unwrap()
        .iter()
        .map(|node| {
            (
                node["info"]["moniker"].as_str().unwrap().to_owned(),
                node["id"].as_u64().unwrap(),
            )
        })
        .collect();
    let bad = ids[bad_name];
    let slandered = ids["mix-1-1"];

    // each epoch from now, the liar says the healthy mix-1-1 lost everything and the faulty
    // node nothing
    let liar_epochs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let stop_lying = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let liar = std::thread::spawn({
        let liar_epochs = std::sync::Arc::clone(&liar_epochs);
        let stop_lying = std::sync::Arc::clone(&stop_lying);
        move || {
            let mut last = None;
            while !stop_lying.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(epoch) = get(validator, "/epoch")
                    .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok())
                    .and_then(|epoch| epoch["epoch"].as_u64())
                    && last != Some(epoch)
                    && epoch > 0
                {
                    submit_as(
                        validator,
                        &liar_key,
                        epoch,
                        vec![(slandered as u32, 0), (bad as u32, 1_000_000)],
                    );
                    liar_epochs.lock().unwrap().push(epoch);
                    last = Some(epoch);
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        }
    });

    // the first epoch both honest monitors scored, and the ledger's report of it
    let first = poll(monitors[1], "/health", Duration::from_secs(90), |health| {
        let submission = health.get("last_submission")?;
        (submission["ok"] == true).then(|| submission["epoch"].as_u64().unwrap())
    });
    // the faulty node's score falls to at most 60 % within two epochs, every other node's
    // stays at least 95 %
    let mut caught = None;
    for epoch in [first, first + 1] {
        let report = epoch_report(validator, epoch, Duration::from_secs(60));
        let Some(node) = entry(&report, bad).filter(|node| node["measured"] == true) else {
            continue;
        };
        if honest
            .iter()
            .any(|monitor| submission(&report, monitor).is_none())
        {
            continue;
        }
        if node["performance"].as_u64().unwrap() <= 600_000 {
            caught = Some(report);
            break;
        }
    }
    let report = caught.unwrap_or_else(|| panic!("node {bad} kept a score above 60 %"));
    let epoch = report["epoch"].as_u64().unwrap();
    eprintln!("epoch {epoch}: {report}");
    for node in report["nodes"].as_array().unwrap() {
        let id = node["node"].as_u64().unwrap();
        let performance = node["performance"].as_u64().unwrap();
        if id != bad {
            assert!(
                performance >= 950_000,
                "node {id} at {performance} ppm in epoch {epoch}: {report}"
            );
        }
        // every payout is the formula's for the measured performance
        let payout = formula(&report, node);
        assert_eq!(
            (
                node["payout"]["operator"].as_u64().unwrap(),
                node["payout"]["delegators"].as_u64().unwrap()
            ),
            (payout.operator.0, payout.delegators.0),
            "node {id} in epoch {epoch}"
        );
    }
    // the liar moved nothing: the slandered node has the lower of the honest scores, and the
    // faulty node the higher of theirs (the lower median of three)
    assert!(liar_epochs.lock().unwrap().contains(&epoch));
    let said: Vec<BTreeMap<u64, u64>> = honest
        .iter()
        .map(|monitor| submission(&report, monitor).expect("both honest monitors submitted"))
        .collect();
    let honest_scores =
        |node: u64| -> Vec<u64> { said.iter().map(|scores| scores[&node]).collect() };
    let recorded = |node: u64| {
        entry(&report, node).unwrap()["performance"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(
        recorded(slandered),
        *honest_scores(slandered).iter().min().unwrap()
    );
    assert_eq!(recorded(bad), *honest_scores(bad).iter().max().unwrap());
    // each honest monitor's evidence is the one whose hash the ledger recorded, and
    // recomputes to what it submitted
    for (address, monitor) in monitors.iter().zip(&honest) {
        let json = get(*address, &format!("/evidence/{epoch}")).expect("the evidence is served");
        let evidence = Evidence::from_json(&json).unwrap();
        let recorded_hash = report["monitors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["monitor"] == monitor.as_str())
            .unwrap()["evidence"]
            .clone();
        assert_eq!(recorded_hash, evidence.hash().to_string());
        let scores: BTreeMap<u64, u64> = attribute(&evidence)
            .performance()
            .into_iter()
            .map(|(node, ppm)| (u64::from(node), u64::from(ppm)))
            .collect();
        assert_eq!(Some(scores), submission(&report, monitor));
    }
    // it is left out of the next epoch's active set, and its record says why
    let next = epoch + 1;
    let performance = poll(
        validator,
        &format!("/nodes/{bad}/performance"),
        Duration::from_secs(30),
        |view| {
            let newest = view["epochs"].as_array()?.first()?;
            (newest["epoch"].as_u64() == Some(epoch)).then(|| view.clone())
        },
    );
    assert_eq!(performance["active"], false, "{performance}");
    assert!(performance["performance"].as_u64().unwrap() <= 600_000);
    assert_eq!(
        performance["epochs"][0]["scores"].as_array().unwrap().len(),
        3,
        "{performance}"
    );

    // the monitors' own fault: kill gateway-1 (every monitor's client of it) mid-epoch; no
    // mix node's score falls
    let now = ledger(validator, "/epoch");
    assert_eq!(now["epoch"].as_u64(), Some(next), "{now}");
    std::thread::sleep(Duration::from_secs(5));
    signal(pid_of(&dir.join("gateway-1")), "-KILL");
    net.wait_for("gateway-1 started again");
    let report = epoch_report(validator, next, Duration::from_secs(60));
    eprintln!("epoch {next} (gateway-1 killed): {report}");
    for node in report["nodes"].as_array().unwrap() {
        let id = node["node"].as_u64().unwrap();
        if node["layer"].is_null() {
            continue;
        }
        assert!(
            node["performance"].as_u64().unwrap() >= 950_000,
            "mix node {id} fell in epoch {next}: {report}"
        );
    }
    assert!(
        entry(&report, bad).is_none(),
        "node {bad} was active: {report}"
    );
    // and the monitors said why they judged less
    for address in &monitors[..2] {
        let json = get(*address, &format!("/evidence/{next}")).expect("the evidence is served");
        let evidence = Evidence::from_json(&json).unwrap();
        let lost = evidence
            .routes
            .iter()
            .filter(|route| route.latency_us.is_none())
            .count();
        eprintln!(
            "epoch {next} at {address}: {} routes, {lost} lost, faults {:?}",
            evidence.routes.len(),
            evidence.faults
        );
        assert!(
            !evidence.faults.is_empty(),
            "no fault of its own in epoch {next}: {json}"
        );
    }

    stop_lying.store(true, std::sync::atomic::Ordering::Relaxed);
    liar.join().unwrap();
    signal(liar_pid, "-CONT");
    let (status, output) = net.interrupt();
    assert!(status.success(), "localnet exited with {status}:\n{output}");
    std::fs::remove_dir_all(&dir).unwrap();
}
