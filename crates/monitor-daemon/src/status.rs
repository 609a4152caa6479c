//! What the monitor shows over HTTP: `/metrics`, `/health`, and the evidence
//! (`GET /evidence`, `GET /evidence/{epoch}`), served within [`umbra_http::HttpLimits`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use umbra_http::HttpCounters;
use umbra_monitor::{Attribution, EvidenceHash, FaultReason, MonitorStats, Unscored, Verdict};
use umbra_net::metrics::Exposition;

use crate::evidence_store::EvidenceStore;

/// The monitor's state as its HTTP port shows it, updated by the event loop and the report
/// tasks.
pub(crate) struct Status {
    inner: Mutex<Inner>,
    store: Arc<EvidenceStore>,
    http: Arc<HttpCounters>,
}

#[derive(Default)]
struct Inner {
    routes: MonitorStats,
    faults: BTreeMap<&'static str, u64>,
    refused: u64,
    gateways: usize,
    sessions_up: usize,
    measuring: Option<u64>,
    submitting: bool,
    last: Option<LastReport>,
    submissions_ok: u64,
    submissions_failed: u64,
    last_submission: Option<Value>,
}

/// The last epoch's report, as `/health` and `/metrics` show it.
struct LastReport {
    epoch: u64,
    hash: EvidenceHash,
    attribution: Attribution,
}

/// The fault reasons, as metrics labels.
const REASONS: [&str; 3] = ["gateway_down", "starved", "mass_failure"];

/// A fault's reason as a metrics label.
pub(crate) fn reason_label(reason: &FaultReason) -> &'static str {
    match reason {
        FaultReason::GatewayDown { .. } => "gateway_down",
        FaultReason::Starved { .. } => "starved",
        FaultReason::MassFailure { .. } => "mass_failure",
    }
}

fn unscored_label(reason: Unscored) -> &'static str {
    match reason {
        Unscored::NoPackets => "no_packets",
        Unscored::TooFewPackets => "too_few_packets",
        Unscored::AloneInGroup => "alone_in_group",
    }
}

impl Status {
    pub(crate) fn new(store: Arc<EvidenceStore>, submitting: bool) -> Status {
        Status {
            inner: Mutex::new(Inner {
                submitting,
                faults: REASONS.iter().map(|reason| (*reason, 0)).collect(),
                ..Inner::default()
            }),
            store,
            http: Arc::new(HttpCounters::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What the core counted, and the sessions.
    pub(crate) fn update(&self, routes: &MonitorStats, gateways: usize, sessions_up: usize) {
        let mut inner = self.lock();
        inner.routes = routes.clone();
        inner.gateways = gateways;
        inner.sessions_up = sessions_up;
    }

    pub(crate) fn measuring(&self, epoch: u64) {
        self.lock().measuring = Some(epoch);
    }

    pub(crate) fn fault(&self, reason: &'static str) {
        *self.lock().faults.entry(reason).or_default() += 1;
    }

    pub(crate) fn refused(&self) {
        self.lock().refused += 1;
    }

    pub(crate) fn report(&self, epoch: u64, hash: EvidenceHash, attribution: Attribution) {
        let mut inner = self.lock();
        *inner.faults.entry("mass_failure").or_default() += attribution.mass_failures.len() as u64;
        inner.last = Some(LastReport {
            epoch,
            hash,
            attribution,
        });
    }

    pub(crate) fn submitted(&self, epoch: u64, outcome: Result<u64, String>) {
        let mut inner = self.lock();
        let last = match outcome {
            Ok(height) => {
                inner.submissions_ok += 1;
                json!({ "epoch": epoch, "ok": true, "height": height })
            }
            Err(error) => {
                inner.submissions_failed += 1;
                json!({ "epoch": epoch, "ok": false, "error": error })
            }
        };
        inner.last_submission = Some(last);
    }

    fn metrics(&self) -> String {
        let inner = self.lock();
        let mut page = Exposition::new();
        let routes = &inner.routes;
        page.counters(
            "umbra_monitor_routes_total",
            "Test routes, by what became of them (sent; then returned, lost or late; or never sent).",
            "outcome",
            [
                ("planned", routes.planned),
                ("sent", routes.sent),
                ("returned", routes.returned),
                ("lost", routes.lost),
                ("late", routes.late),
                ("unsent", routes.unsent),
            ],
        );
        page.counter(
            "umbra_monitor_test_loops_refused_total",
            "Test routes a client could not send (its topology lacked a node, or no session).",
            inner.refused,
        );
        page.counter(
            "umbra_monitor_idle_slots_total",
            "Slots of the route stream with nothing to test (no epoch measured, no gateway up).",
            routes.idle_slots,
        );
        page.counters(
            "umbra_monitor_faults_total",
            "The monitor's own faults, by reason: routes alive then are not judged.",
            "reason",
            inner.faults.iter().map(|(reason, n)| (*reason, *n)),
        );
        page.gauge(
            "umbra_monitor_gateways",
            "Gateways of the current topology (one client session each).",
            inner.gateways as f64,
        );
        page.gauge(
            "umbra_monitor_sessions_up",
            "Client sessions with a gateway that are open.",
            inner.sessions_up as f64,
        );
        page.counters(
            "umbra_monitor_submissions_total",
            "Scores submitted to the ledger, by result.",
            "result",
            [
                ("ok", inner.submissions_ok),
                ("failed", inner.submissions_failed),
            ],
        );
        if let Some(last) = &inner.last {
            page.gauge(
                "umbra_monitor_last_report_epoch",
                "The epoch of the last report.",
                last.epoch as f64,
            );
            let labels: Vec<(String, f64)> = last
                .attribution
                .nodes
                .iter()
                .filter_map(|node| match node.verdict {
                    Verdict::Scored(score) => Some((node.node.0.to_string(), score.reliability)),
                    Verdict::Unscored(_) => None,
                })
                .collect();
            page.gauges(
                "umbra_monitor_score",
                "Each scored node's reliability in the last report (0 to 1).",
                "node",
                labels.iter().map(|(node, score)| (node.as_str(), *score)),
            );
            page.gauge(
                "umbra_monitor_unattributed_loss",
                "The loss of the last report that no node is blamed for.",
                last.attribution.unattributed_loss,
            );
        }
        page.finish() + &self.http.metrics("umbra")
    }

    fn health(&self) -> (bool, String) {
        let inner = self.lock();
        let healthy = inner.sessions_up > 0;
        let last = inner.last.as_ref().map(|last| {
            let nodes: Vec<Value> = last
                .attribution
                .nodes
                .iter()
                .map(|node| match node.verdict {
                    Verdict::Scored(score) => json!({
                        "node": node.node.0,
                        "group": node.group,
                        "packets": node.packets,
                        "score": score.reliability,
                        "lower": score.lower,
                        "upper": score.upper,
                        "ppm": umbra_monitor::to_ppm(score.reliability),
                    }),
                    Verdict::Unscored(reason) => json!({
                        "node": node.node.0,
                        "group": node.group,
                        "packets": node.packets,
                        "unscored": unscored_label(reason),
                    }),
                })
                .collect();
            json!({
                "epoch": last.epoch,
                "hash": last.hash.to_string(),
                "judged": last.attribution.judged,
                "lost": last.attribution.lost,
                "unattributed_loss": last.attribution.unattributed_loss,
                "evidence": format!("/evidence/{}", last.epoch),
                "nodes": nodes,
            })
        });
        let body = json!({
            "status": if healthy { "ok" } else { "no_gateway_session" },
            "gateways": inner.gateways,
            "sessions_up": inner.sessions_up,
            "measuring_epoch": inner.measuring,
            "submitting": inner.submitting,
            "last_report": last,
            "last_submission": inner.last_submission,
        });
        (healthy, body.to_string())
    }
}

/// The monitor's HTTP routes.
pub(crate) fn router(status: Arc<Status>) -> Router {
    let metrics = Arc::clone(&status);
    let health = Arc::clone(&status);
    let list = Arc::clone(&status);
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
                let (healthy, body) = health.health();
                let code = if healthy {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                async move { (code, [(header::CONTENT_TYPE, "application/json")], body) }
            }),
        )
        .route(
            "/evidence",
            get(move || {
                let epochs: Vec<Value> = list
                    .store
                    .list()
                    .into_iter()
                    .rev()
                    .map(|(epoch, hash)| {
                        json!({
                            "epoch": epoch,
                            "hash": hash.to_string(),
                            "url": format!("/evidence/{epoch}"),
                        })
                    })
                    .collect();
                async move { json_response(StatusCode::OK, Value::Array(epochs).to_string()) }
            }),
        )
        .route(
            "/evidence/{epoch}",
            get(move |Path(epoch): Path<String>| evidence(Arc::clone(&status), epoch)),
        )
}

async fn evidence(status: Arc<Status>, epoch: String) -> Response {
    let error = |code: StatusCode, message: String| {
        json_response(code, json!({ "error": message }).to_string())
    };
    let Ok(number) = epoch.parse::<u64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{epoch:?} is not an epoch number; GET /evidence lists the epochs kept"),
        );
    };
    let store = Arc::clone(&status.store);
    match tokio::task::spawn_blocking(move || store.read(number)).await {
        Ok(Ok(Some(json))) => json_response(StatusCode::OK, json),
        Ok(Ok(None)) => error(
            StatusCode::NOT_FOUND,
            format!("no evidence of epoch {number} is kept; GET /evidence lists the epochs kept"),
        ),
        Ok(Err(failure)) => error(StatusCode::INTERNAL_SERVER_ERROR, failure.to_string()),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "reading the evidence failed".into(),
        ),
    }
}

fn json_response(code: StatusCode, body: String) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

impl Status {
    /// The counters of the HTTP port's limits.
    pub(crate) fn http_counters(&self) -> Arc<HttpCounters> {
        Arc::clone(&self.http)
    }
}
