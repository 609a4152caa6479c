//! `hyper`'s client through the mixnet, with no SOCKS5 proxy: the SDK's streams and its
//! connector against a local HTTP server, through an exit service, on a network running in
//! this process.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;
#[path = "common/web.rs"]
mod web;

use std::io;
use std::time::Duration;

use bytes::Bytes;
use common::{Network, within};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use umbra_client::ExitPolicy;
use umbra_sdk::http::{ConnectError, MixnetConnector};
use umbra_sdk::{
    MixnetStream, MixnetStreams, OpenError, OpenFailure, StreamConfig, StreamSettings,
};
use web::{BIG, HttpServer, body, connect, start_exit};

type HttpClient = Client<MixnetConnector, Full<Bytes>>;

fn http_client(streams: &MixnetStreams) -> HttpClient {
    Client::builder(TokioExecutor::new()).build(MixnetConnector::new(streams.clone()))
}

/// Gives hyper's client time to put its connection back in the pool.
async fn idle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// A JSON-RPC 2.0 call of `method` with `params` and `id`; the answer, as JSON.
async fn call(
    http: &HttpClient,
    url: &str,
    id: u64,
    method: &str,
    params: serde_json::Value,
) -> serde_json::Value {
    let call =
        serde_json::json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
    let request = hyper::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(call.to_string())))
        .unwrap();
    let response = within(http.request(request)).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = within(response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    serde_json::from_slice(&body).unwrap()
}

/// The connector's error somewhere in the chain of `error`.
fn connect_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> &'a ConnectError {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(found) = error.downcast_ref::<ConnectError>() {
            return found;
        }
        next = error.source();
    }
    panic!("no connector error in {error:?}");
}

/// Sends `GET path` (HTTP/1.0: the server closes after the answer) on `stream`.
async fn get(stream: &mut MixnetStream, path: &str) {
    let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    within(stream.write_all(request.as_bytes())).await.unwrap();
}

/// An HTTP answer's body (after the head).
fn body_of(answer: &[u8]) -> &[u8] {
    let split = answer
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("no HTTP head")
        + 4;
    &answer[split..]
}

/// A server that reads a request's head, then sends a head promising [`BIG`] bytes and only
/// a tenth of them, and cuts the connection: with a FIN (a clean close), or with an RST.
async fn cutting_server(reset: bool) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut connection, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if connection.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n");
                let _ = connection.write_all(answer.as_bytes()).await;
                let _ = connection.write_all(&body(BIG / 10)).await;
                if reset {
                    let _ = connection.set_zero_linger();
                }
                drop(connection);
            });
        }
    });
    port
}

/// Reads `stream` to its end: the bytes, or how it failed.
async fn read_all(stream: &mut MixnetStream) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    within(stream.read_to_end(&mut bytes)).await?;
    Ok(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hyper_over_mixnet_streams_through_an_exit() {
    let network = Network::start("http-connector");
    let stop = CancellationToken::new();
    // one exit allowing loopback (the whole network is here), one with the default policy
    let open_exit = start_exit(
        &network,
        "open-exit",
        ExitPolicy::default().insecure_allow_private(true),
        &stop,
    )
    .await;
    let strict_exit = start_exit(&network, "strict-exit", ExitPolicy::default(), &stop).await;
    let server = HttpServer::start().await;
    let rpc = format!("http://localhost:{}/rpc", server.address.port());

    let (streams, wallet) = connect(&network, "wallet")
        .await
        .into_streams(StreamSettings::new(open_exit.address))
        .unwrap();
    let http = http_client(&streams);

    // a JSON-RPC call, POSTed; the host name is resolved by the exit
    let answer = call(
        &http,
        &rpc,
        7,
        "eth_getBalance",
        serde_json::json!(["0xabc", "latest"]),
    )
    .await;
    assert_eq!(
        answer,
        serde_json::json!({
            "jsonrpc": "2.0",
            "id": 7,
            "result": { "method": "eth_getBalance", "params": ["0xabc", "latest"] },
        })
    );

    // keep-alive: the next requests go over the same stream (one connection at the server).
    // hyper puts a connection back in its pool from a task of its own once the answer is
    // read; the pauses let that happen, so that no request finds the pool empty and connects
    idle().await;
    let before = server.connections();
    let big = format!("http://localhost:{}/big", server.address.port());
    let request = hyper::Request::get(&big).body(Full::default()).unwrap();
    let response = within(http.request(request)).await.unwrap();
    assert_eq!(response.status(), 200);
    let downloaded = within(response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(downloaded.len(), BIG);
    assert_eq!(
        Sha256::digest(&downloaded),
        Sha256::digest(body(BIG)),
        "the 1 MiB body arrived changed"
    );
    idle().await;
    let answer = call(&http, &rpc, 8, "eth_blockNumber", serde_json::json!([])).await;
    assert_eq!(answer["result"], "0x2a");
    assert_eq!(
        server.connections(),
        before,
        "a request after the first opened a new stream instead of reusing the idle one"
    );

    // several requests at once, each answered with its own
    let calls = (100..108).map(|id| {
        let http = http.clone();
        let rpc = rpc.clone();
        tokio::spawn(async move {
            (
                id,
                call(&http, &rpc, id, "net_version", serde_json::json!([id])).await,
            )
        })
    });
    for answered in calls {
        let (id, answer) = within(answered).await.unwrap();
        assert_eq!(answer["id"], id);
        assert_eq!(answer["result"]["params"], serde_json::json!([id]));
    }

    // a server cutting the connection mid-body: the request fails, whether the server closes
    // cleanly (the body is short of its length) or resets (the stream fails)
    for reset in [false, true] {
        let port = cutting_server(reset).await;
        let request = hyper::Request::get(format!("http://127.0.0.1:{port}/"))
            .body(Full::default())
            .unwrap();
        let outcome = within(async {
            let response = http.request(request).await?;
            let body = response.into_body().collect().await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(body.to_bytes())
        })
        .await;
        assert!(
            outcome.is_err(),
            "a body cut at {} of {BIG} bytes (reset: {reset}) was taken as complete",
            BIG / 10
        );
    }
    // and the raw stream: a reset is an error, never an end of data
    let port = cutting_server(true).await;
    let mut stream = within(streams.open("127.0.0.1", port)).await.unwrap();
    get(&mut stream, "/").await;
    let error = read_all(&mut stream).await.unwrap_err();
    assert!(
        matches!(
            error.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
        ),
        "{error:?}"
    );

    // shutdown() is a half-close: the server reads to the end, and its answer still comes
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut connection, _) = echo.accept().await.unwrap();
        let mut got = Vec::new();
        connection.read_to_end(&mut got).await.unwrap();
        connection
            .write_all(&got.to_ascii_uppercase())
            .await
            .unwrap();
    });
    let mut stream = within(streams.open("localhost", echo_port)).await.unwrap();
    within(stream.write_all(b"half closed")).await.unwrap();
    within(stream.shutdown()).await.unwrap();
    assert_eq!(read_all(&mut stream).await.unwrap(), b"HALF CLOSED");

    // a destination the exit's policy refuses: a clear error, through hyper and directly
    let (strict_streams, strict_wallet) = connect(&network, "strict-wallet")
        .await
        .into_streams(StreamSettings::new(strict_exit.address))
        .unwrap();
    let request = hyper::Request::get(&big).body(Full::default()).unwrap();
    let error = within(http_client(&strict_streams).request(request))
        .await
        .unwrap_err();
    assert!(error.is_connect(), "{error:?}");
    let refused = connect_error(&error);
    assert!(
        matches!(
            refused,
            ConnectError::Open(OpenError::Refused(OpenFailure::NotAllowed))
        ),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("policy"), "{refused}");
    let error = within(strict_streams.open("localhost", server.address.port()))
        .await
        .unwrap_err();
    assert_eq!(error, OpenError::Refused(OpenFailure::NotAllowed));

    // a wrong scheme: a clear error, before anything is opened
    let request = hyper::Request::get("https://localhost/")
        .body(Full::default())
        .unwrap();
    let error = within(http.request(request)).await.unwrap_err();
    assert!(matches!(
        connect_error(&error),
        ConnectError::WrongScheme(_)
    ));

    // the driver stops with the client: a stream left open then fails, opens say why
    let mut held = within(streams.open("localhost", server.address.port()))
        .await
        .unwrap();
    drop(http);
    within(wallet.disconnect()).await;
    let error = read_all(&mut held).await.unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::ConnectionAborted, "{error:?}");
    let error = within(streams.open("localhost", server.address.port()))
        .await
        .unwrap_err();
    assert_eq!(error, OpenError::Stopped);

    within(strict_wallet.disconnect()).await;
    stop.cancel();
    open_exit.stopped().await;
    strict_exit.stopped().await;
    network.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_beyond_the_cap_are_refused_and_memory_stays_bounded() {
    const CAP: usize = 3;
    let network = Network::start("http-connector-cap");
    let stop = CancellationToken::new();
    let exit = start_exit(
        &network,
        "exit",
        ExitPolicy::default().insecure_allow_private(true),
        &stop,
    )
    .await;
    let server = HttpServer::start().await;
    let port = server.address.port();
    let settings = StreamSettings {
        max_streams: CAP,
        ..StreamSettings::new(exit.address)
    };
    let (streams, wallet) = connect(&network, "wallet")
        .await
        .into_streams(settings)
        .unwrap();

    // CAP downloads of 1 MiB each, none read: the exit is held back
    let mut held = Vec::new();
    for _ in 0..CAP {
        let mut stream = within(streams.open("localhost", port)).await.unwrap();
        get(&mut stream, "/big").await;
        held.push(stream);
    }
    // one more is refused at once, saying why, directly and through hyper
    let error = within(streams.open("localhost", port)).await.unwrap_err();
    assert_eq!(
        error,
        OpenError::TooManyStreams {
            open: CAP,
            limit: CAP
        }
    );
    assert!(error.to_string().contains("max_streams"), "{error}");
    let http = http_client(&streams);
    let request = hyper::Request::get(format!("http://localhost:{port}/big"))
        .body(Full::default())
        .unwrap();
    let error = within(http.request(request)).await.unwrap_err();
    assert!(
        matches!(
            connect_error(&error),
            ConnectError::Open(OpenError::TooManyStreams { .. })
        ),
        "{error:?}"
    );

    // what the streams hold stays within their windows and buffers, however long the exit
    // has bytes to send; it stops growing once they are full
    let config = StreamConfig::default();
    let bound = CAP
        * (2 * umbra_client_daemons::streams::BUFFER
            + config.receive_window as usize
            + config.send_buffer);
    let mut last = 0;
    let mut steady = 0;
    let filled = within(async {
        while steady < 10 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let status = streams.status().await.unwrap();
            assert!(
                status.buffered <= bound,
                "{} bytes held, more than {bound}",
                status.buffered
            );
            if status.buffered == last && last > 0 {
                steady += 1;
            } else {
                steady = 0;
            }
            last = status.buffered;
        }
        last
    })
    .await;
    assert!(
        filled < CAP * BIG,
        "the streams took whole bodies: no backpressure"
    );

    // reading lets the rest come, intact
    let answer = read_all(&mut held[0]).await.unwrap();
    assert_eq!(
        Sha256::digest(body_of(&answer)),
        Sha256::digest(body(BIG)),
        "the body arrived changed"
    );

    // dropped streams are reset and leave room: a new request goes through
    drop(held);
    within(async {
        while streams.status().await.unwrap().open > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let request = hyper::Request::get(format!("http://localhost:{port}/big"))
        .body(Full::default())
        .unwrap();
    let response = within(http.request(request)).await.unwrap();
    let downloaded = within(response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(downloaded.len(), BIG);

    drop(http);
    within(wallet.disconnect()).await;
    stop.cancel();
    exit.stopped().await;
    network.stop().await;
}
