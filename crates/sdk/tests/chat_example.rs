//! The chat example as a person runs it: Ctrl-C ends it while it waits for a line (it used to
//! wait for Enter first).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Network;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_example_leaves_on_ctrl_c_while_waiting_for_a_line() {
    let network = Network::start("chat-example");
    let mut chat = Command::new(common::example("chat"))
        .arg("--topology")
        .arg(network.layout.topology_file())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // stdin stays open and silent: the chat waits for a line
    let _stdin = chat.stdin.take().unwrap();
    let stdout = chat.stdout.take().unwrap();
    // read all it prints (a closed pipe would end it), saying when it is ready
    let (ready_in, ready) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut ready_in = Some(ready_in);
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line.starts_with("your address: ")
                && let Some(ready_in) = ready_in.take()
            {
                let _ = ready_in.send(());
            }
        }
    });
    common::within(ready)
        .await
        .expect("the chat never said its address");

    let interrupted = Command::new("kill")
        .args(["-INT", &chat.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let mut waited = Duration::ZERO;
    let status = loop {
        if let Some(status) = chat.try_wait().unwrap() {
            break status;
        }
        if waited > Duration::from_secs(30) {
            let _ = chat.kill();
            panic!("the chat ignored Ctrl-C for 30 s (waiting for a line)");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    };
    let mut said = String::new();
    std::io::Read::read_to_string(&mut chat.stderr.take().unwrap(), &mut said).unwrap();
    assert!(status.success(), "{status}: {said}");
    network.stop().await;
}
