//! The explorer's HTTP routes: each page, its JSON twin under `/api/`, the embedded assets,
//! `/metrics` and `/health`. Every page is built from the cached snapshot; only an account's
//! balance is read from the validator when asked for, a few at a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::sync::Semaphore;
use umbra_http::HttpCounters;
use umbra_ledger::{NodeId, NodeKind, PublicKey};
use umbra_net::metrics::Exposition;

use crate::model::Links;
use crate::model::account::AccountPage;
use crate::model::epochs::EpochsPage;
use crate::model::guide::GuidePage;
use crate::model::node::NodePage;
use crate::model::nodes::{NodeTable, TableQuery};
use crate::model::overview::Overview;
use crate::monitors::EvidenceCache;
use crate::poller::{Cache, now_ms};
use crate::render::html::Freshness;
use crate::render::{html, pages};
use crate::snapshot::Snapshot;

/// Account reads from the validator at once, at most: pages are served from the cache, and
/// the explorer must not multiply its readers' requests onto the validator.
const ACCOUNT_READS: usize = 8;
/// How long an account read may take before the page is shown without the balance.
const ACCOUNT_TIMEOUT: Duration = Duration::from_secs(3);

/// What the routes share.
pub struct Shared {
    /// The latest snapshot.
    pub cache: Arc<Cache>,
    /// Evidence URLs and the validator named in commands.
    pub links: Links,
    /// The monitors' evidence fetched so far.
    pub evidence: Arc<EvidenceCache>,
    /// What the HTTP limits cut.
    pub http: Arc<HttpCounters>,
    accounts: Semaphore,
    pages: AtomicU64,
}

impl Shared {
    /// Routes serving `cache`, with no monitor's evidence.
    pub fn new(cache: Arc<Cache>, links: Links) -> Shared {
        Shared::with_evidence(cache, links, Arc::default())
    }

    /// Routes serving `cache` and the monitors' evidence in `evidence`.
    pub fn with_evidence(cache: Arc<Cache>, links: Links, evidence: Arc<EvidenceCache>) -> Shared {
        Shared {
            cache,
            links,
            evidence,
            http: Arc::new(HttpCounters::default()),
            accounts: Semaphore::new(ACCOUNT_READS),
            pages: AtomicU64::new(0),
        }
    }
}

type Shared_ = State<Arc<Shared>>;

/// The router.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/mixnodes", get(mix_nodes))
        .route("/gateways", get(gateways))
        .route("/nodes/{id}", get(node))
        .route("/accounts/{address}", get(account))
        .route("/epochs", get(epochs))
        .route("/guide", get(guide))
        .route("/find", get(find))
        .route("/api/overview", get(api_overview))
        .route("/api/mixnodes", get(api_mix_nodes))
        .route("/api/gateways", get(api_gateways))
        .route("/api/nodes/{id}", get(api_node))
        .route("/api/accounts/{address}", get(api_account))
        .route("/api/epochs", get(api_epochs))
        .route("/api/guide", get(api_guide))
        .route("/assets/style.css", get(style))
        .route("/assets/explorer.js", get(script))
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .with_state(shared)
}

/// The JSON twin of a page: the view model, and where and when its data came from.
#[derive(Serialize)]
struct Twin<'a, T> {
    source: Source<'a>,
    page: T,
}

/// Where a page's data came from.
#[derive(Serialize)]
struct Source<'a> {
    validator: &'a str,
    height: u64,
    fetched_ms: u64,
    /// Why the validator is not answering now, if it is not: the page is the last snapshot.
    failing: Option<&'a str>,
}

fn html_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_string(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

fn json_error(status: StatusCode, message: &str) -> Response {
    json_response(status, &serde_json::json!({ "error": message }))
}

/// The body of a page's JSON twin: `page`, with where and when its data came from.
pub fn twin_json<T: Serialize>(
    snapshot: &Snapshot,
    freshness: &Freshness,
    page: T,
) -> serde_json::Result<String> {
    serde_json::to_string(&Twin {
        source: Source {
            validator: &snapshot.validator,
            height: snapshot.data.status.height,
            fetched_ms: snapshot.fetched_ms,
            failing: freshness.failing.as_deref(),
        },
        page,
    })
}

fn twin<T: Serialize>(snapshot: &Snapshot, freshness: &Freshness, page: T) -> Response {
    match twin_json(snapshot, freshness, page) {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

/// The snapshot, or the banner-only page (HTML) / a 503 (JSON) when there is none yet.
fn snapshot_or_wait(
    shared: &Shared,
    json: bool,
) -> Result<(Arc<Snapshot>, Freshness), Box<Response>> {
    shared.pages.fetch_add(1, Ordering::Relaxed);
    match shared.cache.current() {
        (Some(snapshot), freshness) => Ok((snapshot, freshness)),
        (None, mut freshness) => {
            if freshness.failing.is_none() {
                freshness.failing = Some("the explorer has just started".into());
            }
            Err(Box::new(if json {
                json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!(
                        "no data from the ledger yet: the validator at {} has not answered ({})",
                        freshness.validator,
                        freshness.failing.unwrap_or_default()
                    ),
                )
            } else {
                html_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    pages::nothing_yet(&freshness),
                )
            }))
        }
    }
}

fn remaining(snapshot: &Snapshot) -> u64 {
    snapshot.data.epoch.end_ms.saturating_sub(now_ms())
}

fn table_query(uri: &Uri) -> TableQuery {
    let pairs = crate::query::parse(uri.query().unwrap_or(""));
    TableQuery::from_pairs(
        pairs
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str())),
    )
}

async fn overview(State(shared): Shared_) -> Response {
    let (snapshot, freshness) = match snapshot_or_wait(&shared, false) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let now = now_ms();
    let view = Overview::build(&snapshot, &shared.links, now);
    html_response(StatusCode::OK, pages::overview(&view, &freshness, now))
}

async fn api_overview(State(shared): Shared_) -> Response {
    let (snapshot, freshness) = match snapshot_or_wait(&shared, true) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    twin(
        &snapshot,
        &freshness,
        Overview::build(&snapshot, &shared.links, now_ms()),
    )
}

fn table(shared: &Shared, kind: NodeKind, uri: &Uri, json: bool) -> Response {
    let (snapshot, freshness) = match snapshot_or_wait(shared, json) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let view = NodeTable::build(&snapshot, kind, table_query(uri));
    if json {
        twin(&snapshot, &freshness, view)
    } else {
        html_response(
            StatusCode::OK,
            pages::node_table(&view, &freshness, remaining(&snapshot)),
        )
    }
}

async fn mix_nodes(State(shared): Shared_, uri: Uri) -> Response {
    table(&shared, NodeKind::Mix, &uri, false)
}

async fn gateways(State(shared): Shared_, uri: Uri) -> Response {
    table(&shared, NodeKind::Gateway, &uri, false)
}

async fn api_mix_nodes(State(shared): Shared_, uri: Uri) -> Response {
    table(&shared, NodeKind::Mix, &uri, true)
}

async fn api_gateways(State(shared): Shared_, uri: Uri) -> Response {
    table(&shared, NodeKind::Gateway, &uri, true)
}

fn node_page(shared: &Shared, id: &str, json: bool) -> Response {
    let (snapshot, freshness) = match snapshot_or_wait(shared, json) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let view = id
        .parse::<NodeId>()
        .ok()
        .and_then(|id| NodePage::build_with(&snapshot, &shared.links, &shared.evidence.view(), id));
    match (view, json) {
        (Some(view), true) => twin(&snapshot, &freshness, view),
        (Some(view), false) => html_response(
            StatusCode::OK,
            pages::node(&view, &freshness, remaining(&snapshot)),
        ),
        (None, true) => json_error(StatusCode::NOT_FOUND, &format!("there is no node {id:?}")),
        (None, false) => html_response(
            StatusCode::NOT_FOUND,
            pages::not_found(
                &freshness,
                &format!("There is no node {id:?} on the ledger."),
            ),
        ),
    }
}

async fn node(State(shared): Shared_, Path(id): Path<String>) -> Response {
    node_page(&shared, &id, false)
}

async fn api_node(State(shared): Shared_, Path(id): Path<String>) -> Response {
    node_page(&shared, &id, true)
}

async fn account_page(shared: &Shared, address: &str, json: bool) -> Response {
    let (snapshot, freshness) = match snapshot_or_wait(shared, json) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let Ok(key) = address.parse::<PublicKey>() else {
        let message =
            format!("{address:?} is not an account address (a base58 ed25519 public key)");
        return if json {
            json_error(StatusCode::BAD_REQUEST, &message)
        } else {
            html_response(
                StatusCode::BAD_REQUEST,
                pages::not_found(&freshness, &message),
            )
        };
    };
    let (live, live_error) = read_account(shared, &key).await;
    let view = AccountPage::build(&snapshot, key, live.as_ref());
    if json {
        twin(&snapshot, &freshness, view)
    } else {
        html_response(
            StatusCode::OK,
            pages::account(&view, &freshness, live_error.as_deref()),
        )
    }
}

/// The account's balance from the validator that answered last, within a bound on reads at
/// once and on time.
async fn read_account(
    shared: &Shared,
    key: &PublicKey,
) -> (Option<umbra_ledger::api::AccountView>, Option<String>) {
    let Some(client) = shared.cache.answering() else {
        return (None, Some("no validator has answered yet".into()));
    };
    let Ok(_permit) = shared.accounts.try_acquire() else {
        return (
            None,
            Some("too many account pages are being read at once; try again".into()),
        );
    };
    match tokio::time::timeout(ACCOUNT_TIMEOUT, client.account(key)).await {
        Ok(Ok(view)) => (Some(view), None),
        Ok(Err(error)) => (None, Some(error.to_string())),
        Err(_) => (
            None,
            Some(format!(
                "the validator did not answer within {ACCOUNT_TIMEOUT:?}"
            )),
        ),
    }
}

async fn account(State(shared): Shared_, Path(address): Path<String>) -> Response {
    account_page(&shared, &address, false).await
}

async fn api_account(State(shared): Shared_, Path(address): Path<String>) -> Response {
    account_page(&shared, &address, true).await
}

/// The `page` a query asks for (1 if none, or not a number).
fn page_number(uri: &Uri) -> usize {
    crate::query::parse(uri.query().unwrap_or(""))
        .into_iter()
        .find(|(name, _)| name == "page")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(1)
}

async fn epochs(State(shared): Shared_, uri: Uri) -> Response {
    let (snapshot, freshness) = match snapshot_or_wait(&shared, false) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let view = EpochsPage::build(&snapshot, &shared.links, page_number(&uri));
    html_response(
        StatusCode::OK,
        pages::epochs(&view, &freshness, remaining(&snapshot)),
    )
}

async fn api_epochs(State(shared): Shared_, uri: Uri) -> Response {
    let (snapshot, freshness) = match snapshot_or_wait(&shared, true) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    twin(
        &snapshot,
        &freshness,
        EpochsPage::build(&snapshot, &shared.links, page_number(&uri)),
    )
}

fn guide_node(uri: &Uri) -> Option<NodeId> {
    crate::query::parse(uri.query().unwrap_or(""))
        .into_iter()
        .find(|(name, _)| name == "node")
        .and_then(|(_, value)| value.parse().ok())
}

async fn guide(State(shared): Shared_, uri: Uri) -> Response {
    let (snapshot, freshness) = match snapshot_or_wait(&shared, false) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let view = GuidePage::build(&snapshot, &shared.links, guide_node(&uri));
    html_response(StatusCode::OK, pages::guide(&view, &freshness))
}

async fn api_guide(State(shared): Shared_, uri: Uri) -> Response {
    let (snapshot, freshness) = match snapshot_or_wait(&shared, true) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let view = GuidePage::build(&snapshot, &shared.links, guide_node(&uri));
    twin(&snapshot, &freshness, view)
}

/// The search box: a node number goes to the node, anything else to the account.
async fn find(uri: Uri) -> Response {
    let query = crate::query::parse(uri.query().unwrap_or(""))
        .into_iter()
        .find(|(name, _)| name == "q")
        .map(|(_, value)| value.trim().to_owned())
        .unwrap_or_default();
    if query.is_empty() {
        return Redirect::to("/").into_response();
    }
    let target = if query.parse::<u32>().is_ok() {
        format!("/nodes/{query}")
    } else {
        format!("/accounts/{}", crate::query::encode(&query))
    };
    Redirect::to(&target).into_response()
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        html::STYLE,
    )
        .into_response()
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        html::SCRIPT,
    )
        .into_response()
}

async fn metrics(State(shared): Shared_) -> Response {
    let (snapshot, freshness) = shared.cache.current();
    let mut page = Exposition::new();
    page.counters(
        "umbra_explorer_refreshes_total",
        "Reads of the ledger, by result.",
        "result",
        [
            ("ok", shared.cache.refreshes_ok.load(Ordering::Relaxed)),
            (
                "failed",
                shared.cache.refreshes_failed.load(Ordering::Relaxed),
            ),
        ],
    );
    page.counters(
        "umbra_explorer_evidence_fetches_total",
        "Fetches of a monitor's evidence, by result (mismatch: not what the monitor submitted).",
        "result",
        [
            ("ok", shared.evidence.fetched_ok.load(Ordering::Relaxed)),
            (
                "failed",
                shared.evidence.fetched_failed.load(Ordering::Relaxed),
            ),
            (
                "mismatch",
                shared.evidence.fetched_mismatch.load(Ordering::Relaxed),
            ),
        ],
    );
    page.counter(
        "umbra_explorer_pages_total",
        "Pages and JSON twins served from the cache.",
        shared.pages.load(Ordering::Relaxed),
    );
    page.gauge(
        "umbra_explorer_validator_answering",
        "Whether the last read of the ledger succeeded.",
        if freshness.failing.is_none() && snapshot.is_some() {
            1.0
        } else {
            0.0
        },
    );
    if let Some(snapshot) = &snapshot {
        page.gauge(
            "umbra_explorer_height",
            "The height of the snapshot the pages show.",
            snapshot.data.status.height as f64,
        );
        page.gauge(
            "umbra_explorer_epoch",
            "The current epoch of the snapshot.",
            snapshot.data.epoch.epoch as f64,
        );
        page.gauge(
            "umbra_explorer_snapshot_age_seconds",
            "How old the data behind the pages is.",
            now_ms().saturating_sub(freshness.last_answer_ms.unwrap_or(snapshot.fetched_ms)) as f64
                / 1000.0,
        );
    }
    let body = page.finish() + &shared.http.metrics("umbra_explorer");
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

async fn health(State(shared): Shared_) -> Response {
    let (snapshot, freshness) = shared.cache.current();
    let healthy = snapshot.is_some() && freshness.failing.is_none();
    let body = serde_json::json!({
        "healthy": healthy,
        "validator": freshness.validator,
        "height": snapshot.as_ref().map(|snapshot| snapshot.data.status.height),
        "last_answer_ms": freshness.last_answer_ms,
        "failing": freshness.failing,
    });
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, &body)
}
