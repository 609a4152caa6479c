//! Ordinary applications through the mixnet: `curl` through `umbra socks5` and `umbra exit`,
//! each its own process made by its `init` command, over a network of `umbra` node processes
//! on loopback, to an HTTP server in this test.
//!
//! `curl` is the application (CI installs it; see `.ci/run`): `-x socks5h://` hands it the
//! proxy with names resolved at the exit, as a browser or wallet would be configured.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::Net;
use common::apps::{
    Daemon, UMBRA, assert_fetched, body, curl, curl_command, http_server, wait_listening,
};
use umbra::network::{Shape, free_port};

/// `umbra <role> init` on the network's topology with `args`, made fast for tests, then started.
fn create(net: &Net, role: &'static str, name: &str, gateway: usize, args: &[&str]) -> Daemon {
    let topology = net.processes.layout().topology_file();
    let mut daemon = Daemon::init(net, role, name, &topology, gateway, args);
    fast(&daemon.config());
    daemon.start();
    daemon
}

/// Test speeds: a packet every 2 ms, 2 ms per hop, quick acknowledgements, a 2 s keep-alive.
fn fast(config: &Path) {
    let text = std::fs::read_to_string(config).unwrap();
    let mut fast = text.clone();
    for (from, to) in [
        ("mean_hop_delay = \"15ms\"", "mean_hop_delay = \"2ms\""),
        ("mean_ack_delay = \"15ms\"", "mean_ack_delay = \"2ms\""),
        (
            "mean_send_interval = \"20ms\"",
            "mean_send_interval = \"2ms\"",
        ),
        ("receive_interval = \"20ms\"", "receive_interval = \"2ms\""),
        (
            "mean_loop_interval = \"200ms\"",
            "mean_loop_interval = \"100ms\"",
        ),
        ("extra_wait = \"1500ms\"", "extra_wait = \"1s\""),
        ("reply_wait = \"5s\"", "reply_wait = \"2s\""),
        ("keepalive = \"15s\"", "keepalive = \"2s\""),
        ("reconnect_max = \"30s\"", "reconnect_max = \"500ms\""),
    ] {
        if text.contains(from) {
            fast = fast.replace(from, to);
        } else {
            assert!(
                !from.starts_with("keepalive"),
                "the template changed: {from}"
            );
        }
    }
    std::fs::write(config, fast).unwrap();
}

/// The tests' networks run one at a time: on a 2-core machine two of them, each with clients
/// sending a packet every 2 ms, would starve each other's mix nodes.
fn one_network_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static NETWORK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    NETWORK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn curl_through_the_proxy_and_exit() {
    let _alone = one_network_at_a_time();
    let net = Net::start(
        "socks5",
        Shape {
            mixes_per_layer: 1,
            gateways: 2,
        },
    );
    let http = http_server();
    let refused_port = free_port().unwrap().port();
    let policy = net.dir.join("rules.txt");
    std::fs::write(
        &policy,
        format!("# the test refuses one port\nreject *:{refused_port}\naccept *:*\n"),
    )
    .unwrap();
    let mut exit = create(
        &net,
        "exit",
        "exit",
        1,
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--insecure-allow-private",
        ],
    );
    let exit_address = exit.address();
    let listen = free_port().unwrap();
    let proxy_daemon = create(
        &net,
        "socks5",
        "proxy",
        0,
        &["--listen", &listen.to_string(), "--exit", &exit_address],
    );
    wait_listening(listen);
    let proxy = format!("socks5h://{listen}");
    let files = net.dir.join("downloads");
    std::fs::create_dir_all(&files).unwrap();

    // pages, by name resolved at the exit
    for seed in 1..=3 {
        let file = files.join(format!("page{seed}"));
        let started = Instant::now();
        let out = curl(
            &proxy,
            &format!("http://localhost:{}/data/20000/{seed}", http.port()),
            &file,
        );
        assert_fetched(&out, &file, &body(20000, seed), "a page");
        eprintln!("page {seed}: {:?}", started.elapsed());
    }
    // SOCKS4a, the same way
    let file = files.join("page4a");
    let out = curl(
        &format!("socks4a://{listen}"),
        &format!("http://localhost:{}/data/5000/4", http.port()),
        &file,
    );
    assert_fetched(&out, &file, &body(5000, 4), "a page over SOCKS4a");

    // 10 MiB, intact
    let file = files.join("big");
    let started = Instant::now();
    let out = curl(
        &proxy,
        &format!("http://127.0.0.1:{}/data/10485760/7", http.port()),
        &file,
    );
    assert_fetched(&out, &file, &body(10 << 20, 7), "10 MiB");
    eprintln!("10 MiB: {:?}", started.elapsed());

    // 20 connections at once
    let started = Instant::now();
    let fetches: Vec<_> = (0..20u8)
        .map(|i| {
            let file = files.join(format!("many{i}"));
            let url = format!("http://localhost:{}/data/200000/{}", http.port(), 100 + i);
            let child = curl_command(&proxy, &url, &file).spawn().unwrap();
            (i, file, child)
        })
        .collect();
    for (i, file, child) in fetches {
        let out = child.wait_with_output().unwrap();
        assert_fetched(
            &out,
            &file,
            &body(200_000, 100 + i),
            &format!("connection {i} of 20"),
        );
    }
    eprintln!("20 connections: {:?}", started.elapsed());

    // usernames keep applications apart (issue 13.4): each is a client of its own to the
    // exit, and the same username the same client
    let clients = |exit: &Daemon| exit.log().matches("a new anonymous client").count();
    let before = clients(&exit);
    for (user, seed) in [("wallet", 21), ("browser", 22), ("wallet", 23)] {
        let file = files.join(format!("{user}{seed}"));
        let out = curl(
            &format!("socks5h://{user}:x@{listen}"),
            &format!("http://localhost:{}/data/3000/{seed}", http.port()),
            &file,
        );
        assert_fetched(&out, &file, &body(3000, seed), user);
    }
    assert_eq!(clients(&exit) - before, 2, "{}", exit.log());

    // a port the policy refuses: SOCKS5 reply 2, "connection not allowed by ruleset"
    let out = curl(
        &proxy,
        &format!("http://localhost:{refused_port}/"),
        &files.join("refused"),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("(2)") || stderr.contains("not allowed"),
        "curl should report SOCKS5 reply 2: {stderr}"
    );
    // a port where nothing listens: reply 5, "connection refused"
    let closed = free_port().unwrap().port();
    let out = curl(
        &proxy,
        &format!("http://localhost:{closed}/"),
        &files.join("closed"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && (stderr.contains("(5)") || stderr.contains("refused")),
        "curl should report SOCKS5 reply 5: {stderr}"
    );

    // The exit dies mid-download and comes back: the download fails with an error (a reset,
    // never a clean end that would pass a truncated body off as whole), and new connections
    // work.
    let file = files.join("endless");
    let url = format!("http://localhost:{}/endless", http.port());
    let endless = curl_command(&proxy, &url, &file).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&file).map_or(0, |m| m.len()) < 200_000 {
        assert!(
            Instant::now() < deadline,
            "the endless download did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    exit.kill();
    let killed = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    exit.start();
    let out = endless.wait_with_output().unwrap();
    let took = killed.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("the download ended {took:?} after the kill: {stderr}");
    // a reset (56), neither a clean end (0) nor curl giving up on a connection left hanging
    // (28, after its --max-time): the proxy learned of the exit's restart from the stream
    // keep-alive and reset the connection
    assert_eq!(
        out.status.code(),
        Some(56),
        "curl should fail receiving (56, connection reset), not end cleanly: {stderr}"
    );
    let file = files.join("after");
    let out = curl(
        &proxy,
        &format!("http://localhost:{}/data/30000/11", http.port()),
        &file,
    );
    assert_fetched(
        &out,
        &file,
        &body(30000, 11),
        "a page after the exit restarted",
    );
    assert!(
        proxy_daemon.log().contains("SOCKS5 proxy listening"),
        "{}",
        proxy_daemon.log()
    );
    // nothing about destinations at info level
    for log in [proxy_daemon.log(), exit.log()] {
        for line in log
            .lines()
            .filter(|l| l.contains(" INFO ") || l.contains(" WARN "))
        {
            assert!(
                !line.contains("localhost") && !line.contains(&http.port().to_string()),
                "a destination logged: {line}"
            );
        }
    }
    drop(net);
}

#[test]
fn a_proxy_with_a_password_refuses_applications_without_it() {
    let _alone = one_network_at_a_time();
    let net = Net::start(
        "socks5-auth",
        Shape {
            mixes_per_layer: 1,
            gateways: 1,
        },
    );
    let http = http_server();
    let exit = create(&net, "exit", "exit", 0, &["--insecure-allow-private"]);
    let listen = free_port().unwrap();
    let proxy = create(
        &net,
        "socks5",
        "proxy",
        0,
        &["--listen", &listen.to_string(), "--exit", &exit.address()],
    );
    drop(proxy);
    // set the credentials in its config.toml and start it again
    let config = net.dir.join("proxy/config.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("# username = \"me\"", "username = \"me\"")
        .replace(
            "# password = \"a long secret\"",
            "password = \"a long secret\"",
        );
    std::fs::write(&config, text).unwrap();
    let mut proxy = Daemon {
        role: "socks5",
        dir: net.dir.join("proxy"),
        child: None,
    };
    proxy.start();
    wait_listening(listen);
    let url = format!("http://localhost:{}/data/1000/5", http.port());
    let file = net.dir.join("page");
    for (what, proxy_url) in [
        ("no credentials", format!("socks5h://{listen}")),
        ("a wrong password", format!("socks5h://me:guess@{listen}")),
        ("SOCKS4a", format!("socks4a://{listen}")),
    ] {
        let out = curl(&proxy_url, &url, &file);
        assert!(!out.status.success(), "{what} was let in");
    }
    let out = curl(
        &format!("socks5h://me:a%20long%20secret@{listen}"),
        &url,
        &file,
    );
    assert_fetched(&out, &file, &body(1000, 5), "with the password");
    drop(net);
}

/// Runs `umbra` with `args`.
fn umbra(args: &[&str]) -> Output {
    Command::new(UMBRA).args(args).output().unwrap()
}

#[test]
fn mistakes_in_commands_and_configs_are_explained() {
    use umbra::network::Layout;
    let dir = std::env::temp_dir().join(format!("umbra-socks5-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let layout = Layout::create_or_open(
        &dir.join("net"),
        &Shape {
            mixes_per_layer: 1,
            gateways: 1,
        },
    )
    .unwrap();
    let topology = layout.topology_file();
    let topology = topology.to_str().unwrap();
    let gateway = layout
        .topology()
        .unwrap()
        .gateways()
        .next()
        .unwrap()
        .id
        .0
        .to_string();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let common = |name: &str| {
        vec![
            "--data-dir".to_owned(),
            path(name),
            "--topology".to_owned(),
            topology.to_owned(),
            "--gateway".to_owned(),
            gateway.clone(),
        ]
    };
    let stderr = |out: &Output| String::from_utf8_lossy(&out.stderr).into_owned();

    // an exit address mistyped
    let mut args = vec!["socks5".to_owned(), "init".to_owned()];
    args.extend(common("proxy"));
    args.extend(["--exit".to_owned(), "not-an-address".to_owned()]);
    let out = umbra(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is not a client address")
            && stderr(&out).contains("umbra exit address"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.join("proxy/config.toml").exists(), "nothing is made");

    // a policy file with a mistake: the line and the fix are named, nothing is made
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("rules.txt"), "accept *:80\nallow *:443\n").unwrap();
    let mut args = vec!["exit".to_owned(), "init".to_owned()];
    args.extend(common("exit"));
    args.extend(["--policy".to_owned(), path("rules.txt")]);
    let out = umbra(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("rules.txt") && stderr(&out).contains("line 2"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.join("exit/config.toml").exists(), "nothing is made");

    // a good exit and proxy
    let mut args = vec!["exit".to_owned(), "init".to_owned()];
    args.extend(common("exit"));
    let out = umbra(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", stderr(&out));
    let exit_address = umbra(&["exit", "address", "--data-dir", &path("exit")]);
    let exit_address = String::from_utf8(exit_address.stdout)
        .unwrap()
        .trim()
        .to_owned();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&exit_address),
        "init prints the exit's address"
    );
    let mut args = vec!["socks5".to_owned(), "init".to_owned()];
    args.extend(common("proxy"));
    args.extend(["--exit".to_owned(), exit_address]);
    let out = umbra(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("socks5h://127.0.0.1:1080"));

    // a directory never made, and the wrong command for a directory, say what to run
    let out = umbra(&["socks5", "run", "--data-dir", &path("nothing")]);
    assert!(
        stderr(&out).contains("umbra socks5 init --data-dir"),
        "{}",
        stderr(&out)
    );
    let out = umbra(&["client", "run", "--data-dir", &path("proxy")]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("a SOCKS5 proxy") && stderr(&out).contains("umbra socks5 run"),
        "{}",
        stderr(&out)
    );
    let out = umbra(&["socks5", "run", "--data-dir", &path("exit")]);
    assert!(
        stderr(&out).contains("an exit service") && stderr(&out).contains("umbra exit run"),
        "{}",
        stderr(&out)
    );

    // config mistakes are named with their file and section
    let config = dir.join("proxy/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("# username = \"me\"", "username = \"me\""),
    )
    .unwrap();
    let out = umbra(&["socks5", "run", "--data-dir", &path("proxy")]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("config.toml")
            && stderr(&out).contains("[socks5]")
            && stderr(&out).contains("`password`"),
        "{}",
        stderr(&out)
    );
    std::fs::write(
        &config,
        text.replace(
            "listen_address = \"127.0.0.1:1080\"",
            "listen_address = \"0.0.0.0:1080\"",
        ),
    )
    .unwrap();
    let out = umbra(&["socks5", "run", "--data-dir", &path("proxy")]);
    assert!(stderr(&out).contains("not on loopback"), "{}", stderr(&out));
    let exit_config = dir.join("exit/config.toml");
    let text = std::fs::read_to_string(&exit_config).unwrap();
    std::fs::write(
        &exit_config,
        text.replace("keepalive = \"15s\"", "keepalive = \"10m\""),
    )
    .unwrap();
    let out = umbra(&["exit", "run", "--data-dir", &path("exit")]);
    assert!(
        stderr(&out).contains("[exit]") && stderr(&out).contains("keepalive"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
