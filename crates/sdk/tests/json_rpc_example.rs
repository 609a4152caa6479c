//! The JSON-RPC example as a person runs it: one call through an exit service to a local
//! JSON-RPC server, its answer printed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;
#[path = "common/web.rs"]
mod web;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::Network;
use tokio_util::sync::CancellationToken;
use umbra_client::ExitPolicy;
use web::{HttpServer, start_exit};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_rpc_example_submits_a_call_through_an_exit() {
    let network = Network::start("json-rpc-example");
    let stop = CancellationToken::new();
    let exit = start_exit(
        &network,
        "exit",
        ExitPolicy::default().insecure_allow_private(true),
        &stop,
    )
    .await;
    let server = HttpServer::start().await;

    let mut example = Command::new(common::example("json_rpc"))
        .arg("--topology")
        .arg(network.layout.topology_file())
        .args(["--exit", &exit.address.to_string()])
        .args([
            "--url",
            &format!("http://localhost:{}/rpc", server.address.port()),
        ])
        .args(["--method", "eth_blockNumber", "--params", "[]"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // the pipes are read on threads, so that a full pipe cannot stall the example
    let stdout = example.stdout.take().unwrap();
    let stderr = example.stderr.take().unwrap();
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let (stdout, stderr) = (read(Box::new(stdout)), read(Box::new(stderr)));
    let mut waited = Duration::ZERO;
    let status = loop {
        if let Some(status) = example.try_wait().unwrap() {
            break status;
        }
        if waited > Duration::from_secs(120) {
            let _ = example.kill();
            panic!("the example did not finish in 120 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    };
    let (said, complained) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert!(status.success(), "{status}: {complained}\n{said}");
    let answer: serde_json::Value =
        serde_json::from_str(&said[..said.rfind('}').expect("no JSON in the output") + 1]).unwrap();
    assert_eq!(
        answer,
        serde_json::json!({ "jsonrpc": "2.0", "id": 1, "result": "0x2a" })
    );
    assert!(said.contains("took "), "{said}");

    stop.cancel();
    exit.stopped().await;
    network.stop().await;
}
