//! A SOCKS5 proxy and an exit service, each a mixnet client, carrying a download across a
//! network running in this process; and an exit whose policy refuses the destination.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;
#[path = "common/web.rs"]
mod web;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener};

use common::{Network, within};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use umbra_client::ExitPolicy;
use umbra_client::stream::StreamConfig;
use umbra_client_daemons::exit::ConnectTimeouts;
use umbra_client_daemons::exit::service::{self, ExitLimits, ExitSettings};
use umbra_client_daemons::socks5::{self, ProxySettings};
use umbra_sdk::{ClientBuilder, ClientTask};
use web::{BIG as BODY_LEN, fast};

/// An HTTP/1.0 server that answers every request with `body`, on a thread.
fn serve(body: Vec<u8>) -> SocketAddr {
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for connection in listener.incoming() {
            let Ok(mut connection) = connection else {
                return;
            };
            let mut request = Vec::new();
            let mut byte = [0; 1];
            while !request.ends_with(b"\r\n\r\n") {
                if connection.read(&mut byte).unwrap_or(0) == 0 {
                    break;
                }
                request.push(byte[0]);
            }
            let head = format!(
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
                body.len()
            );
            let _ = connection.write_all(head.as_bytes());
            let _ = connection.write_all(&body);
        }
    });
    address
}

/// A SOCKS5 CONNECT to `host:port` through `proxy`, by hand; the reply code and the
/// connection.
async fn socks5_connect(proxy: SocketAddr, host: &str, port: u16) -> (u8, TcpStream) {
    socks5_connect_as(proxy, None, host, port).await
}

/// [`socks5_connect`] giving `username` (with any password), as an application configured
/// with `socks5h://username:x@proxy` does.
async fn socks5_connect_as(
    proxy: SocketAddr,
    username: Option<&str>,
    host: &str,
    port: u16,
) -> (u8, TcpStream) {
    let mut connection = TcpStream::connect(proxy).await.unwrap();
    let mut choice = [0; 2];
    match username {
        None => {
            connection.write_all(&[5, 1, 0]).await.unwrap();
            connection.read_exact(&mut choice).await.unwrap();
            assert_eq!(choice, [5, 0]);
        }
        Some(username) => {
            connection.write_all(&[5, 1, 2]).await.unwrap();
            connection.read_exact(&mut choice).await.unwrap();
            assert_eq!(choice, [5, 2]);
            let mut auth = vec![1, username.len() as u8];
            auth.extend_from_slice(username.as_bytes());
            auth.extend_from_slice(&[1, b'x']);
            connection.write_all(&auth).await.unwrap();
            connection.read_exact(&mut choice).await.unwrap();
            assert_eq!(choice, [1, 0], "the proxy refused the username");
        }
    }
    let mut request = vec![5, 1, 0, 3, host.len() as u8];
    request.extend_from_slice(host.as_bytes());
    request.extend_from_slice(&port.to_be_bytes());
    connection.write_all(&request).await.unwrap();
    let mut reply = [0; 10]; // an IPv4 bound address
    connection.read_exact(&mut reply).await.unwrap();
    assert_eq!((reply[0], reply[3]), (5, 1));
    (reply[1], connection)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_download_through_proxy_and_exit_and_a_refusal_by_policy() {
    let network = Network::start("socks5-exit");
    let (dir, layout) = (&network.dir, &network.layout);
    // stops the proxies and exits (the network stops its nodes itself)
    let stop = CancellationToken::new();
    let connect = |name: &str| {
        within(
            ClientBuilder::from_topology_file(&layout.topology_file())
                .unwrap()
                .storage(&dir.join(name))
                .traffic(fast())
                .connect(),
        )
    };
    let mut clients: Vec<ClientTask> = Vec::new();
    let mut drivers = Vec::new();

    // three exits: one allowing loopback (the whole network is local), one with the default
    // policy, one allowing loopback but only 2 streams per client
    let mut exits = Vec::new();
    for (name, policy, streams_per_client) in [
        (
            "open-exit",
            ExitPolicy::default().insecure_allow_private(true),
            64,
        ),
        ("strict-exit", ExitPolicy::default(), 64),
        (
            "limited-exit",
            ExitPolicy::default().insecure_allow_private(true),
            2,
        ),
    ] {
        let (handle, events, task) = connect(name).await.unwrap().into_parts();
        exits.push(handle.address());
        clients.push(task);
        let settings = ExitSettings {
            policy,
            timeouts: ConnectTimeouts::default(),
            streams: StreamConfig::default(),
            limits: ExitLimits {
                streams_per_client,
                ..ExitLimits::default()
            },
        };
        let shutdown = stop.clone().cancelled_owned();
        drivers.push(tokio::spawn(async move {
            service::run(handle, events, settings, shutdown)
                .await
                .map_err(|error| error.to_string())
        }));
    }
    // a proxy for each
    let mut proxies = Vec::new();
    for (name, exit) in [
        ("open-proxy", exits[0]),
        ("strict-proxy", exits[1]),
        ("limited-proxy-a", exits[2]),
        ("limited-proxy-b", exits[2]),
    ] {
        let (handle, events, task) = connect(name).await.unwrap().into_parts();
        clients.push(task);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        proxies.push(listener.local_addr().unwrap());
        let shutdown = stop.clone().cancelled_owned();
        drivers.push(tokio::spawn(async move {
            socks5::run(listener, handle, events, ProxySettings::new(exit), shutdown)
                .await
                .map_err(|error| error.to_string())
        }));
    }

    let body = web::body(BODY_LEN);
    let server = serve(body.clone());

    // the download: the request, a half-close, then the whole answer
    let started = std::time::Instant::now();
    let (code, mut connection) =
        within(socks5_connect(proxies[0], "localhost", server.port())).await;
    assert_eq!(code, 0, "the open exit refused the stream");
    connection
        .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    connection.shutdown().await.unwrap();
    let mut answer = Vec::new();
    within(connection.read_to_end(&mut answer)).await.unwrap();
    let split = answer
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("no HTTP head")
        + 4;
    assert!(answer.starts_with(b"HTTP/1.0 200 OK\r\n"));
    assert_eq!(answer.len() - split, BODY_LEN);
    assert_eq!(
        Sha256::digest(&answer[split..]),
        Sha256::digest(&body),
        "the body arrived changed"
    );
    eprintln!("1 MiB through proxy and exit in {:?}", started.elapsed());

    // the strict exit's policy refuses loopback: "not allowed by ruleset"
    let (code, _connection) = within(socks5_connect(proxies[1], "localhost", server.port())).await;
    assert_eq!(code, 0x02);

    // the limited exit: a client's third stream at once is refused (general failure), while
    // another client (another proxy, to the exit another anonymous sender) still gets its own
    let mut held = Vec::new();
    for _ in 0..2 {
        let (code, connection) =
            within(socks5_connect(proxies[2], "localhost", server.port())).await;
        assert_eq!(code, 0, "a stream within the limit was refused");
        held.push(connection);
    }
    let (code, _refused) = within(socks5_connect(proxies[2], "localhost", server.port())).await;
    assert_eq!(code, 0x01, "a third stream of one client was let through");
    let (code, _other) = within(socks5_connect(proxies[3], "localhost", server.port())).await;
    assert_eq!(
        code, 0,
        "another client was refused for the first one's streams"
    );

    // issue 13.4: through the one proxy, each username is a client of its own to the exit
    // (its own sender tag), with its own two streams; one username is one client
    for user in ["wallet", "browser"] {
        for _ in 0..2 {
            let (code, connection) = within(socks5_connect_as(
                proxies[2],
                Some(user),
                "localhost",
                server.port(),
            ))
            .await;
            assert_eq!(code, 0, "{user}: a stream within its own limit was refused");
            held.push(connection);
        }
    }
    let (code, _refused) = within(socks5_connect_as(
        proxies[2],
        Some("wallet"),
        "localhost",
        server.port(),
    ))
    .await;
    assert_eq!(
        code, 0x01,
        "one username got a third stream: two clients at the exit"
    );
    drop(held);

    // issue 13.9: one application holding 100 connections open gets what the proxy grants a
    // username (48, below the exit's 64 per client), the rest refused by the proxy at once;
    // another application, under another username, still connects
    let mut greedy = Vec::new();
    let mut refused = 0;
    for _ in 0..100 {
        let (code, connection) = within(socks5_connect_as(
            proxies[0],
            Some("greedy"),
            "localhost",
            server.port(),
        ))
        .await;
        match code {
            0 => greedy.push(connection),
            0x01 => refused += 1,
            other => panic!("reply {other:#04x}"),
        }
    }
    assert_eq!((greedy.len(), refused), (48, 52));
    let (code, _polite) = within(socks5_connect_as(
        proxies[0],
        Some("polite"),
        "localhost",
        server.port(),
    ))
    .await;
    assert_eq!(code, 0, "one application's connections blocked another's");
    drop(greedy);

    stop.cancel();
    for driver in drivers {
        within(driver).await.unwrap().unwrap();
    }
    for client in clients {
        within(client.disconnect()).await;
    }
    network.stop().await;
}
