//! What the HTTP tests share: an exit service on the test network, and a local HTTP server
//! with a JSON-RPC endpoint. Included by the tests that use it, with
//! `#[path = "common/web.rs"] mod web;`.

#![allow(dead_code)] // each test uses part of it

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use umbra_client::ExitPolicy;
use umbra_client::stream::StreamConfig;
use umbra_client_daemons::exit::ConnectTimeouts;
use umbra_client_daemons::exit::service::{self, ExitLimits, ExitSettings};
use umbra_sdk::{ClientAddress, ClientBuilder, ClientTask, MixnetClient, TrafficConfig};

use crate::common::{Network, within};

/// The size of `/big`'s body.
pub(crate) const BIG: usize = 1 << 20;

/// No mixing delays and no cover: this measures nothing and hides nothing, it only has to be
/// quick.
pub(crate) fn fast() -> TrafficConfig {
    TrafficConfig {
        mean_hop_delay: Duration::from_millis(1),
        mean_ack_delay: Duration::from_millis(1),
        mean_send_interval: Duration::from_millis(1),
        mean_loop_interval: Duration::from_millis(100),
        insecure_no_cover: true,
        insecure_zero_delays: true,
        receive_interval: Duration::from_millis(1),
        ..TrafficConfig::default()
    }
}

/// A client of `network`, keeping its keys in a folder named `name`.
pub(crate) async fn connect(network: &Network, name: &str) -> MixnetClient {
    within(
        ClientBuilder::from_topology_file(&network.layout.topology_file())
            .unwrap()
            .storage(&network.dir.join(name))
            .traffic(fast())
            .connect(),
    )
    .await
    .unwrap()
}

/// An exit service running until `stop`: its address, its client and its driver.
pub(crate) struct Exit {
    pub(crate) address: ClientAddress,
    pub(crate) client: ClientTask,
    pub(crate) driver: JoinHandle<Result<(), String>>,
}

/// Starts an exit under `policy` on `network`.
pub(crate) async fn start_exit(
    network: &Network,
    name: &str,
    policy: ExitPolicy,
    stop: &CancellationToken,
) -> Exit {
    let (handle, events, client) = connect(network, name).await.into_parts();
    let address = handle.address();
    let settings = ExitSettings {
        policy,
        timeouts: ConnectTimeouts::default(),
        streams: StreamConfig::default(),
        limits: ExitLimits::default(),
    };
    let shutdown = stop.clone().cancelled_owned();
    let driver = tokio::spawn(async move {
        service::run(handle, events, settings, shutdown)
            .await
            .map_err(|error| error.to_string())
    });
    Exit {
        address,
        client,
        driver,
    }
}

impl Exit {
    /// Waits for the exit to stop (after `stop`), which it must do cleanly.
    pub(crate) async fn stopped(self) {
        within(self.driver).await.unwrap().unwrap();
        within(self.client.disconnect()).await;
    }
}

/// A deterministic body of `len` bytes, not all one byte.
pub(crate) fn body(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A local HTTP/1.1 server (keep-alive on) that counts the connections it accepted:
/// `POST /rpc` answers a JSON-RPC 2.0 call (`eth_blockNumber` with `"0x2a"`, any other method
/// with its name and parameters), `GET /big` sends [`BIG`] bytes of [`body`].
pub(crate) struct HttpServer {
    pub(crate) address: SocketAddr,
    pub(crate) connections: Arc<AtomicUsize>,
}

impl HttpServer {
    pub(crate) async fn start() -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&connections);
        let big = Bytes::from(body(BIG));
        tokio::spawn(async move {
            loop {
                let Ok((connection, _)) = listener.accept().await else {
                    return;
                };
                counted.fetch_add(1, Ordering::SeqCst);
                let big = big.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let big = big.clone();
                        async move { Ok::<_, Infallible>(answer(request, big).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(connection), service)
                        .await;
                });
            }
        });
        HttpServer {
            address,
            connections,
        }
    }

    /// Connections accepted so far.
    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn answer(request: Request<Incoming>, big: Bytes) -> Response<Full<Bytes>> {
    match (request.method().clone(), request.uri().path()) {
        (Method::POST, "/rpc") => {
            let Ok(body) = request.into_body().collect().await else {
                return status(StatusCode::BAD_REQUEST);
            };
            let Ok(call) = serde_json::from_slice::<serde_json::Value>(&body.to_bytes()) else {
                return status(StatusCode::BAD_REQUEST);
            };
            let result = match call["method"].as_str() {
                Some("eth_blockNumber") => serde_json::json!("0x2a"),
                _ => serde_json::json!({ "method": call["method"], "params": call["params"] }),
            };
            let answer =
                serde_json::json!({ "jsonrpc": "2.0", "id": call["id"], "result": result });
            Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(answer.to_string())))
                .unwrap()
        }
        (Method::GET, "/big") => Response::new(Full::new(big)),
        _ => status(StatusCode::NOT_FOUND),
    }
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .body(Full::new(Bytes::new()))
        .unwrap()
}
