//! The HTTP side of a daemon: `/metrics` and `/health`.

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What a daemon shows over HTTP.
pub trait Status: Send + Sync + 'static {
    /// The metrics page (Prometheus text).
    fn metrics(&self) -> String;
    /// Whether the daemon is healthy, and a one-line JSON description.
    fn health(&self) -> (bool, String);
}

/// Serves `/metrics` and `/health` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    status: Arc<dyn Status>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let metrics = Arc::clone(&status);
    let router =
        Router::new()
            .route(
                "/metrics",
                get(move || {
                    let page = metrics.metrics();
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
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
