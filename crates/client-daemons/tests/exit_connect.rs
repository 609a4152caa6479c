//! The exit's outbound connections, on loopback: the policy is checked before any connection,
//! and every failure maps to the open failure a stream reports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use umbra_client::stream::{Destination, Host, OpenFailure};
use umbra_client::{ExitPolicy, ExitPolicyConfig};
use umbra_client_daemons::exit::{ConnectTimeouts, connect, load_policy};
use umbra_net::NodeError;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Short enough that the timeout test takes a fraction of a second.
fn short_timeouts() -> ConnectTimeouts {
    ConnectTimeouts {
        resolve: Duration::from_secs(2),
        attempt: Duration::from_millis(300),
        overall: Duration::from_secs(2),
    }
}

fn to(host: Host, port: u16) -> Destination {
    Destination::new(host, port).unwrap()
}

fn allowing_loopback() -> ExitPolicy {
    ExitPolicy::default().insecure_allow_private(true)
}

/// Asserts the first connection the listener has queued is `marker`'s: nothing connected
/// before it. (The accept queue is first in, first out.)
async fn assert_nothing_arrived_before(listener: &TcpListener) {
    let marker = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (_accepted, peer) = listener.accept().await.unwrap();
    assert_eq!(
        peer,
        marker.local_addr().unwrap(),
        "a connection reached the listener before the marker"
    );
}

#[tokio::test]
async fn reaches_a_listener_when_the_policy_allows_loopback() {
    let listener = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let address = listener.local_addr().unwrap();
    let stream = connect(
        &to(Host::Ip(LOOPBACK), address.port()),
        &allowing_loopback(),
        short_timeouts(),
    )
    .await
    .unwrap();
    let (_accepted, peer) = listener.accept().await.unwrap();
    assert_eq!(peer, stream.local_addr().unwrap());
}

#[tokio::test]
async fn loopback_is_not_allowed_by_default_and_never_connected_to() {
    let listener = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let error = connect(
        &to(Host::Ip(LOOPBACK), port),
        &ExitPolicy::default(),
        short_timeouts(),
    )
    .await
    .unwrap_err();
    assert_eq!(error.reason(), OpenFailure::NotAllowed);
    assert!(!error.to_string().contains("127.0.0.1"), "{error}");
    assert_nothing_arrived_before(&listener).await;
}

#[tokio::test]
async fn localhost_is_resolved_at_the_exit_and_refused_by_default() {
    let listener = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let error = connect(
        &to(Host::Name("localhost".into()), port),
        &ExitPolicy::default(),
        short_timeouts(),
    )
    .await
    .unwrap_err();
    assert_eq!(error.reason(), OpenFailure::NotAllowed, "{error:?}");
    assert_nothing_arrived_before(&listener).await;
}

#[tokio::test]
async fn localhost_is_reached_when_the_policy_allows_loopback() {
    // localhost may resolve to ::1 first, where nothing listens: the next address is tried.
    let listener = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stream = connect(
        &to(Host::Name("localhost".into()), port),
        &allowing_loopback(),
        short_timeouts(),
    )
    .await
    .unwrap();
    let (_accepted, peer) = listener.accept().await.unwrap();
    assert_eq!(peer, stream.local_addr().unwrap());
}

#[tokio::test]
async fn a_closed_port_is_refused() {
    let port = {
        let listener = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let error = connect(
        &to(Host::Ip(LOOPBACK), port),
        &allowing_loopback(),
        short_timeouts(),
    )
    .await
    .unwrap_err();
    assert_eq!(error.reason(), OpenFailure::Refused, "{error:?}");
}

/// A listener whose accept queue is full drops further SYNs, so a connection to it hangs:
/// a blackhole on loopback. (10.255.255.1 cannot serve here: this sandbox answers every
/// outbound connection, so it connects at once.)
#[tokio::test]
async fn a_blackholed_address_times_out_as_ttl_expired() {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(LOOPBACK, 0)).unwrap();
    let listener = socket.listen(1).unwrap();
    let address = listener.local_addr().unwrap();
    // Fill the accept queue until a connection no longer completes.
    let mut queued = Vec::new();
    let mut full = false;
    for _ in 0..64 {
        match tokio::time::timeout(Duration::from_millis(100), TcpStream::connect(address)).await {
            Ok(stream) => queued.push(stream.unwrap()),
            Err(_elapsed) => {
                full = true;
                break;
            }
        }
    }
    assert!(full, "the accept queue never filled");
    let error = connect(
        &to(Host::Ip(LOOPBACK), address.port()),
        &allowing_loopback(),
        short_timeouts(),
    )
    .await
    .unwrap_err();
    assert_eq!(error.reason(), OpenFailure::TtlExpired, "{error:?}");
}

#[test]
fn the_policy_loader_names_the_file_and_the_bad_line() {
    let dir = std::env::temp_dir().join(format!("umbra-net-exit-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("exit-policy"),
        "# web only\naccept *:443\nallow *:80\nreject *:*\n",
    )
    .unwrap();
    let config = ExitPolicyConfig {
        file: Some("exit-policy".into()),
        insecure_allow_private: false,
    };
    let error = load_policy(&config, &dir).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, NodeError::Invalid { .. }), "{error:?}");
    assert!(message.contains("exit-policy"), "{message}");
    assert!(message.contains("line 3"), "{message}");

    std::fs::write(dir.join("exit-policy"), "accept *:443\n").unwrap();
    let policy = load_policy(&config, &dir).unwrap();
    assert_eq!(policy.rules().len(), 1);
    let missing = ExitPolicyConfig {
        file: Some("no-such-file".into()),
        ..config
    };
    let error = load_policy(&missing, &dir).unwrap_err();
    assert!(error.to_string().contains("no-such-file"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn without_a_file_the_default_policy_applies() {
    let config = ExitPolicyConfig::default();
    let policy = load_policy(&config, std::path::Path::new("/nonexistent")).unwrap();
    assert_eq!(policy, ExitPolicy::default());
    let allowing = ExitPolicyConfig {
        insecure_allow_private: true,
        ..config
    };
    let policy = load_policy(&allowing, std::path::Path::new("/nonexistent")).unwrap();
    assert!(policy.check(SocketAddr::new(LOOPBACK, 80)).is_ok());
}
