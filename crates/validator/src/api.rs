//! The validator's HTTP API (JSON). See `docs/ledger.md` for every route with examples.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State as Extract};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use umbra_http::{HttpCounters, HttpLimits};
use umbra_ledger::api::{
    AccountView, ApiError, DelegationView, EpochView, IssuersView, NodePerformanceView, NodeView,
    PurchaseView, StatusView, Submitted, TicketStatsView, TxStatus,
};
use umbra_ledger::{Hash, NodeId, PublicKey, Transaction};

use crate::chain::{Chain, Rejected};
use crate::signing::{SIGN_BODY_LIMIT, SignRequest, Signer, SignerView};

/// Counters the API and the sequencer keep.
#[derive(Default)]
pub struct Counters {
    /// Transactions accepted into the mempool.
    pub accepted: AtomicU64,
    /// Transactions refused at submission.
    pub rejected: AtomicU64,
    /// Transactions committed and applied.
    pub applied: AtomicU64,
    /// Transactions committed and refused by the ledger.
    pub failed: AtomicU64,
    /// Blocks committed.
    pub blocks: AtomicU64,
    /// Transactions other validators relayed here.
    pub relayed: AtomicU64,
    /// Proposed blocks from other validators that could not be decoded (BFT).
    pub malformed_proposals: AtomicU64,
}

/// The answer to `POST /relay`.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct Relayed {
    /// How many of the relayed transactions were new here and accepted.
    pub accepted: usize,
}

#[derive(Clone)]
struct Shared {
    chain: Arc<Chain>,
    counters: Arc<Counters>,
    http: Arc<HttpCounters>,
    signer: Option<Arc<Signer>>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = ApiError {
        error: message.into(),
        refusal: None,
    };
    (status, Json(body)).into_response()
}

fn internal(problem: impl std::fmt::Display) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, problem.to_string())
}

fn ok<T: Serialize>(value: T) -> Response {
    Json(value).into_response()
}

/// Serves the API on `listener` within `limits` (connections, header and request timeouts)
/// until `shutdown`; `POST /tickets/sign` is answered by `signer` (without one, 503).
pub async fn serve(
    listener: TcpListener,
    chain: Arc<Chain>,
    counters: Arc<Counters>,
    signer: Option<Arc<Signer>>,
    limits: HttpLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let http = Arc::new(HttpCounters::default());
    let shared = Shared {
        chain,
        counters,
        http: Arc::clone(&http),
        signer,
    };
    let router = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/genesis", get(genesis))
        .route("/validators", get(validators))
        .route("/accounts/{key}", get(account))
        .route("/nodes", get(nodes))
        .route("/nodes/{id}", get(node))
        .route("/nodes/{id}/performance", get(node_performance))
        .route("/delegations", get(delegations))
        .route("/epoch", get(epoch))
        .route("/epochs", get(epochs))
        .route("/topology", get(topology))
        .route("/blocks/{height}", get(block))
        .route("/tickets", get(tickets))
        .route("/tickets/issuers", get(ticket_issuers))
        .route("/tickets/purchases/{tx}", get(ticket_purchase))
        .route("/tickets/signer", get(ticket_signer))
        .route(
            "/tickets/sign",
            post(sign_tickets).layer(DefaultBodyLimit::max(SIGN_BODY_LIMIT)),
        )
        .route("/tx", post(submit))
        .route("/tx/{hash}", get(transaction))
        .route("/relay", post(relay))
        .with_state(shared);
    umbra_http::serve_router(listener, router, limits, http, shutdown).await
}

async fn health(Extract(shared): Extract<Shared>) -> Response {
    let height = shared.chain.read(|state| state.height());
    ok(json!({ "healthy": true, "height": height }))
}

async fn metrics(Extract(shared): Extract<Shared>) -> Response {
    let (height, epoch, nodes, pool) = shared.chain.read(|state| {
        (
            state.height(),
            state.epoch().number,
            state.nodes().count(),
            state.pool().0,
        )
    });
    let counters = &shared.counters;
    let page = format!(
        "# HELP umbra_validator_height Height of the last committed block.\n\
         # TYPE umbra_validator_height gauge\n\
         umbra_validator_height {height}\n\
         # HELP umbra_validator_epoch The current epoch.\n\
         # TYPE umbra_validator_epoch gauge\n\
         umbra_validator_epoch {epoch}\n\
         # HELP umbra_validator_nodes Registered nodes.\n\
         # TYPE umbra_validator_nodes gauge\n\
         umbra_validator_nodes {nodes}\n\
         # HELP umbra_validator_reward_pool The reward pool in micro-UMB.\n\
         # TYPE umbra_validator_reward_pool gauge\n\
         umbra_validator_reward_pool {pool}\n\
         # HELP umbra_validator_mempool Transactions waiting.\n\
         # TYPE umbra_validator_mempool gauge\n\
         umbra_validator_mempool {queued}\n\
         # HELP umbra_validator_transactions_total Transactions by outcome.\n\
         # TYPE umbra_validator_transactions_total counter\n\
         umbra_validator_transactions_total{{outcome=\"accepted\"}} {accepted}\n\
         umbra_validator_transactions_total{{outcome=\"rejected\"}} {rejected}\n\
         umbra_validator_transactions_total{{outcome=\"applied\"}} {applied}\n\
         umbra_validator_transactions_total{{outcome=\"failed\"}} {failed}\n\
         # HELP umbra_validator_blocks_total Blocks committed since start.\n\
         # TYPE umbra_validator_blocks_total counter\n\
         umbra_validator_blocks_total {blocks}\n\
         # HELP umbra_validator_relayed_total Transactions other validators relayed here and accepted.\n\
         # TYPE umbra_validator_relayed_total counter\n\
         umbra_validator_relayed_total {relayed}\n\
         # HELP umbra_validator_malformed_proposals_total Undecodable proposed blocks dropped.\n\
         # TYPE umbra_validator_malformed_proposals_total counter\n\
         umbra_validator_malformed_proposals_total {malformed}\n",
        queued = shared.chain.queued(),
        accepted = counters.accepted.load(Ordering::Relaxed),
        rejected = counters.rejected.load(Ordering::Relaxed),
        applied = counters.applied.load(Ordering::Relaxed),
        failed = counters.failed.load(Ordering::Relaxed),
        blocks = counters.blocks.load(Ordering::Relaxed),
        relayed = counters.relayed.load(Ordering::Relaxed),
        malformed = counters.malformed_proposals.load(Ordering::Relaxed),
    ) + &shared.http.metrics("umbra_validator");
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], page).into_response()
}

async fn status(Extract(shared): Extract<Shared>) -> Response {
    ok(shared.chain.read(StatusView::of))
}

async fn genesis(Extract(shared): Extract<Shared>) -> Response {
    ok(shared.chain.genesis())
}

async fn validators(Extract(shared): Extract<Shared>) -> Response {
    ok(&shared.chain.genesis().validators)
}

async fn account(Extract(shared): Extract<Shared>, Path(key): Path<String>) -> Response {
    let Ok(address) = key.parse::<PublicKey>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{key:?} is not an account address (a base58 ed25519 public key)"),
        );
    };
    let next_nonce = shared.chain.next_nonce(&address);
    ok(shared
        .chain
        .read(|state| AccountView::of(state, address, next_nonce)))
}

async fn nodes(Extract(shared): Extract<Shared>) -> Response {
    ok(shared.chain.read(NodeView::all))
}

async fn node(Extract(shared): Extract<Shared>, Path(id): Path<String>) -> Response {
    about_node(&shared, &id, |state, id| {
        state.node(id).map(|node| NodeView::of(state, node))
    })
}

/// A node's performance: now, this epoch's scores so far, and the past epochs kept, each with
/// every monitor's score and evidence hash.
async fn node_performance(Extract(shared): Extract<Shared>, Path(id): Path<String>) -> Response {
    about_node(&shared, &id, NodePerformanceView::of)
}

/// What `describe` says of the node numbered `id` (in the path), or why there is nothing.
fn about_node<T: Serialize>(
    shared: &Shared,
    id: &str,
    describe: impl FnOnce(&umbra_ledger::State, NodeId) -> Option<T>,
) -> Response {
    let Ok(id) = id.parse::<NodeId>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{id:?} is not a node number"),
        );
    };
    match shared.chain.read(|state| describe(state, id)) {
        Some(body) => ok(body),
        None => error(StatusCode::NOT_FOUND, format!("there is no node {id}")),
    }
}

async fn delegations(Extract(shared): Extract<Shared>) -> Response {
    ok(shared.chain.read(DelegationView::all))
}

async fn epoch(Extract(shared): Extract<Shared>) -> Response {
    ok(shared.chain.read(EpochView::of))
}

async fn epochs(Extract(shared): Extract<Shared>) -> Response {
    ok(shared
        .chain
        .read(|state| state.history().cloned().collect::<Vec<_>>()))
}

/// The latest certified topology: an epoch's document is served only once its certificate
/// holds, so a client never sees one it must refuse (until then, the previous epoch's).
async fn topology(Extract(shared): Extract<Shared>) -> Response {
    match shared.chain.certified_topology() {
        (Some(signed), _) => ok(signed),
        (None, epoch) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the topology of epoch {epoch} is not certified yet (it lacks the validators' signatures); try again in a moment"
            ),
        ),
    }
}

/// Bandwidth tickets in brief: parameters, counts, the fee pool, recent double spends.
async fn tickets(Extract(shared): Extract<Shared>) -> Response {
    ok(shared.chain.read(TicketStatsView::of))
}

/// The validators' ticket keys of the live key periods.
async fn ticket_issuers(Extract(shared): Extract<Shared>) -> Response {
    ok(shared.chain.read(IssuersView::of))
}

/// The ticket purchase paid by transaction `tx`: what a validator checks before signing.
async fn ticket_purchase(Extract(shared): Extract<Shared>, Path(tx): Path<String>) -> Response {
    let Ok(hash) = tx.parse::<Hash>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{tx:?} is not a transaction hash"),
        );
    };
    match shared.chain.read(|state| PurchaseView::of(state, hash)) {
        Some(purchase) => ok(purchase),
        None => error(
            StatusCode::NOT_FOUND,
            format!(
                "no ticket purchase {hash}: not committed (yet), not a purchase, or its key period expired"
            ),
        ),
    }
}

/// Which validator signs here: a client blinds each purchase for one validator's key, so it
/// must know whose service it is talking to before it sends anything to be signed.
async fn ticket_signer(Extract(shared): Extract<Shared>) -> Response {
    match &shared.signer {
        Some(signer) => ok(SignerView {
            validator_key: signer.validator_key(),
        }),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this validator does not sign tickets",
        ),
    }
}

/// Blind signatures for a paid purchase, once per purchase (the same request again gets the
/// same answer).
async fn sign_tickets(Extract(shared): Extract<Shared>, body: axum::body::Bytes) -> Response {
    let Some(signer) = &shared.signer else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this validator does not sign tickets",
        );
    };
    let request: SignRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(problem) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("not a signing request ({{\"tx\": ..., \"blinded\": [...]}}): {problem}"),
            );
        }
    };
    match signer.sign(&shared.chain, request).await {
        Ok(answer) => ok(answer),
        Err(refused) => error(
            StatusCode::from_u16(refused.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            refused.to_string(),
        ),
    }
}

async fn block(Extract(shared): Extract<Shared>, Path(height): Path<String>) -> Response {
    let Ok(height) = height.parse::<u64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{height:?} is not a block height"),
        );
    };
    match shared.chain.block(height) {
        Ok(Some(block)) => ok(block),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("there is no block {height} yet"),
        ),
        Err(problem) => internal(problem),
    }
}

async fn submit(Extract(shared): Extract<Shared>, body: axum::body::Bytes) -> Response {
    let transaction: Transaction = match serde_json::from_slice(&body) {
        Ok(transaction) => transaction,
        Err(problem) => {
            shared.counters.rejected.fetch_add(1, Ordering::Relaxed);
            return error(
                StatusCode::BAD_REQUEST,
                format!("not a transaction: {problem}"),
            );
        }
    };
    match shared.chain.submit(transaction, crate::now_ms()) {
        Ok(hash) => {
            shared.counters.accepted.fetch_add(1, Ordering::Relaxed);
            (StatusCode::ACCEPTED, Json(Submitted { hash })).into_response()
        }
        Err(rejected) => {
            shared.counters.rejected.fetch_add(1, Ordering::Relaxed);
            let (status, refusal) = match &rejected {
                Rejected::Invalid(refusal) => {
                    (StatusCode::UNPROCESSABLE_ENTITY, Some(refusal.clone()))
                }
                Rejected::Full(_) | Rejected::AccountFull(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, None)
                }
            };
            let body = ApiError {
                error: rejected.to_string(),
                refusal,
            };
            (status, Json(body)).into_response()
        }
    }
}

/// Transactions another validator accepted, for this one's mempool; they are not relayed again.
/// Refusals are not reported back: the validator that accepted them answered their sender.
async fn relay(Extract(shared): Extract<Shared>, body: axum::body::Bytes) -> Response {
    let transactions: Vec<Transaction> = match serde_json::from_slice(&body) {
        Ok(transactions) => transactions,
        Err(problem) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("not a list of transactions: {problem}"),
            );
        }
    };
    let now = crate::now_ms();
    let accepted = transactions
        .into_iter()
        .filter(|transaction| {
            !shared.chain.is_queued(&transaction.hash())
                && shared
                    .chain
                    .submit_relayed(transaction.clone(), now)
                    .is_ok()
        })
        .count();
    shared
        .counters
        .relayed
        .fetch_add(accepted as u64, Ordering::Relaxed);
    ok(Relayed { accepted })
}

async fn transaction(Extract(shared): Extract<Shared>, Path(hash): Path<String>) -> Response {
    let Ok(hash) = hash.parse::<Hash>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{hash:?} is not a transaction hash"),
        );
    };
    // the mempool first: a block stores its receipts before it leaves the mempool, so a
    // transaction that is not waiting any more has its receipt already
    if shared.chain.is_queued(&hash) {
        return ok(TxStatus::Pending);
    }
    match shared.chain.receipt(&hash) {
        Ok(Some(receipt)) => ok(TxStatus::Committed {
            height: receipt.height,
            message: receipt.error.as_ref().map(ToString::to_string),
            error: receipt.error,
        }),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("no transaction {hash} is waiting or committed here"),
        ),
        Err(problem) => internal(problem),
    }
}
