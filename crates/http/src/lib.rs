//! The HTTP side of a daemon: `/metrics` and `/health`; and [`serve_router`], which every HTTP
//! port (these, the validator's API) is served with.
//!
//! `axum::serve` neither caps connections nor times out a request's headers, so a client
//! sending a byte a second holds its connection, and its memory, for ever; thousands of them
//! exhaust the process. [`serve_router`] serves HTTP/1 with hyper directly: at most
//! `max_connections` at once (more are closed as they come), headers that take longer than
//! `header_timeout` close the connection (an idle keep-alive connection too), and a request
//! that takes longer than `request_timeout` in all, its body included, is answered 408.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

/// What a daemon shows over HTTP.
pub trait Status: Send + Sync + 'static {
    /// The metrics page (Prometheus text).
    fn metrics(&self) -> String;
    /// Whether the daemon is healthy, and a one-line JSON description.
    fn health(&self) -> (bool, String);
}

/// Limits on an HTTP port's connections, so that slow or idle ones cannot pile up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpLimits {
    /// Connections open at once, at most; beyond it, new ones are closed as they come.
    pub max_connections: usize,
    /// How long a request's headers may take to arrive; also how long an idle connection
    /// stays open.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// How long a request may take in all, reading its body included.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl HttpLimits {
    /// The limits of a node's `/metrics` and `/health` port: a scraper and a health check or
    /// two need few connections.
    pub fn status_port() -> HttpLimits {
        HttpLimits {
            max_connections: 64,
            ..HttpLimits::default()
        }
    }
}

/// What an HTTP port cut or turned away.
#[derive(Debug, Default)]
pub struct HttpCounters {
    /// Connections closed at once because `max_connections` were open.
    pub too_many: AtomicU64,
    /// Connections closed because a request's headers did not come within `header_timeout`.
    pub header_timeouts: AtomicU64,
    /// Requests answered 408 because they took longer than `request_timeout`.
    pub request_timeouts: AtomicU64,
}

impl HttpCounters {
    /// The counters as Prometheus text, named `{prefix}_http_...`.
    pub fn metrics(&self, prefix: &str) -> String {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        format!(
            "# HELP {prefix}_http_connections_cut_total HTTP connections closed by a limit.\n\
             # TYPE {prefix}_http_connections_cut_total counter\n\
             {prefix}_http_connections_cut_total{{reason=\"too_many\"}} {}\n\
             {prefix}_http_connections_cut_total{{reason=\"header_timeout\"}} {}\n\
             # HELP {prefix}_http_request_timeouts_total HTTP requests answered 408.\n\
             # TYPE {prefix}_http_request_timeouts_total counter\n\
             {prefix}_http_request_timeouts_total {}\n",
            load(&self.too_many),
            load(&self.header_timeouts),
            load(&self.request_timeouts),
        )
    }
}

/// Serves `/metrics` and `/health` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    status: Arc<dyn Status>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let counters = Arc::new(HttpCounters::default());
    let metrics = Arc::clone(&status);
    let http_counters = Arc::clone(&counters);
    let router =
        Router::new()
            .route(
                "/metrics",
                get(move || {
                    let page = metrics.metrics() + &http_counters.metrics("umbra");
                    async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], page) }
                }),
            )
            .route(
                "/health",
                get(move || {
                    let (healthy, body) = status.health();
                    let code = if healthy {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    async move {
                        (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
                    }
                }),
            );
    serve_router(
        listener,
        router,
        HttpLimits::status_port(),
        counters,
        shutdown,
    )
    .await
}

/// Serves `router` (HTTP/1) on `listener` within `limits` until `shutdown`, counting what the
/// limits cut in `counters`; then lets requests under way finish, for at most
/// `request_timeout`.
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    counters: Arc<HttpCounters>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let timeout = (limits.request_timeout, Arc::clone(&counters));
    let router = router.layer(axum::middleware::from_fn_with_state(timeout, time_limit));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                warn!(%error, "accepting an HTTP connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            counters.too_many.fetch_add(1, Ordering::Relaxed);
            debug!(
                max = limits.max_connections,
                "too many HTTP connections; one is closed"
            );
            continue;
        };
        let connection = builder.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
        );
        let (stop, counters) = (shutdown.clone(), Arc::clone(&counters));
        connections.spawn(async move {
            let _permit = permit;
            let mut connection = pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = served {
                if error.is_timeout() {
                    counters.header_timeouts.fetch_add(1, Ordering::Relaxed);
                }
                debug!(%error, "an HTTP connection ended");
            }
        });
    }
    connections.close();
    let _ = tokio::time::timeout(limits.request_timeout, connections.wait()).await;
    Ok(())
}

/// Answers 408 to a request that takes longer than the limit, reading its body included.
async fn time_limit(
    axum::extract::State((limit, counters)): axum::extract::State<(Duration, Arc<HttpCounters>)>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            counters.request_timeouts.fetch_add(1, Ordering::Relaxed);
            (
                StatusCode::REQUEST_TIMEOUT,
                format!("the request took longer than {limit:?}; send it again, all at once"),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::time::Instant;

    use super::*;
    use umbra_net::testing::{connect, tick_finely, trickle};

    struct Healthy;

    impl Status for Healthy {
        fn metrics(&self) -> String {
            "up 1\n".into()
        }

        fn health(&self) -> (bool, String) {
            (true, "{\"status\":\"ok\"}".into())
        }
    }

    /// Sends a whole request at once and reads the answer.
    async fn get(address: SocketAddr, path: &str) -> String {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer).await;
        answer
    }

    const SLOW_REQUEST: &[u8] =
        b"GET /health HTTP/1.1\r\nHost: a-host-name-that-takes-a-while\r\nAccept: */*\r\n\r\n";

    #[tokio::test(start_paused = true)]
    async fn slow_connections_are_cut_after_the_header_timeout_and_good_ones_answered() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let _ticks = tick_finely();
        let server = tokio::spawn(serve(listener, Arc::new(Healthy), stop.clone()));
        let limit = HttpLimits::status_port().header_timeout;
        assert!(SLOW_REQUEST.len() as u64 > limit.as_secs() + 5);

        // more slow connections than the port takes at once
        let slow: Vec<_> = connect(address, 200)
            .await
            .into_iter()
            .map(|stream| trickle(stream, SLOW_REQUEST))
            .collect();
        let mut longest = Duration::ZERO;
        for connection in slow {
            longest = longest.max(connection.await.unwrap());
        }
        assert!(
            longest <= limit + Duration::from_secs(2),
            "held {longest:?}"
        );

        let health = get(address, "/health").await;
        assert!(health.contains("200 OK"), "{health}");
        let metrics = get(address, "/metrics").await;
        assert!(
            metrics.contains("umbra_http_connections_cut_total{reason=\"header_timeout\"} 64")
                && metrics.contains("umbra_http_connections_cut_total{reason=\"too_many\"} 136"),
            "{metrics}"
        );
        stop.cancel();
        server.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn below_the_cap_a_good_request_is_answered_while_slow_ones_hang_on() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let _ticks = tick_finely();
        let counters = Arc::new(HttpCounters::default());
        let limits = HttpLimits {
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        };
        let router = Router::new()
            .route("/health", axum::routing::get(|| async { "ok" }))
            .route(
                "/echo",
                axum::routing::post(|body: axum::body::Bytes| async move { body }),
            );
        let server = tokio::spawn(serve_router(
            listener,
            router,
            limits,
            Arc::clone(&counters),
            stop.clone(),
        ));
        let slow: Vec<_> = connect(address, 200)
            .await
            .into_iter()
            .map(|stream| trickle(stream, SLOW_REQUEST))
            .collect();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let health = get(address, "/health").await;
        assert!(health.contains("200 OK"), "{health}");
        for connection in slow {
            let held = connection.await.unwrap();
            assert!(
                held <= limits.header_timeout + Duration::from_secs(2),
                "held {held:?}"
            );
        }
        assert_eq!(counters.header_timeouts.load(Ordering::Relaxed), 200);

        // headers on time, then the body a byte a second: answered 408 at the request timeout
        let start = Instant::now();
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
            .await
            .unwrap();
        let (mut reader, mut writer) = stream.into_split();
        let writing = tokio::spawn(async move {
            while writer.write_all(b"x").await.is_ok() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let mut answer = vec![0; 1024];
        let read = reader.read(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer[..read]).into_owned();
        writing.abort();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(start.elapsed() <= limits.request_timeout + Duration::from_secs(2));
        assert_eq!(counters.request_timeouts.load(Ordering::Relaxed), 1);
        stop.cancel();
        server.await.unwrap().unwrap();
    }
}
