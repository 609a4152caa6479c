//! The explorer's server time per page, and its memory, with 1,000 nodes and 100 epochs of
//! history in the ledger.
//!
//! The ledger is built by its own state machine, transaction by transaction: 1,000 nodes
//! (900 mix nodes, 100 gateways) registered, bonded and configured by 700 operators, about
//! 4,000 delegations from distinct accounts, then 100 epochs, each with three monitors'
//! scores for the active set, three or four validators' signatures on its topology, new
//! delegations and undelegations, and Sphinx keys announced before every key rotation. The
//! validator API's answers are then made as the validator makes them (`StatusView::of`,
//! `NodeView::all`, `DelegationView::all`, `EpochView::of`, the state's history, the certified
//! topology), and the snapshot as the poller makes it.
//!
//! Each page is built as its route builds it (`server.rs`): the view model from the snapshot,
//! then the HTML renderer or the JSON twin. The account page's balance, which the route reads
//! live from the validator, is given.
//!
//! Memory: the bench runs itself again in a child process that only reads the API answers
//! (as JSON, as the poller gets them) into a snapshot, and reports its resident memory
//! (`VmRSS`) before and after, and after building every page once.
//!
//! A whole explorer: the bench runs itself once more as an explorer (`Explorer::run_with` on
//! a multi-threaded runtime, as `umbra explorer run`), reading a fake validator that serves
//! the same answers over HTTP; it reports that process's resident memory and each page's
//! time over HTTP on loopback (one connection per request, the account page reading the
//! balance from the fake validator as the route does).
//!
//! Run: `cargo bench -p umbra-explorer --bench pages` (about three minutes: the ledger takes a
//! few seconds to build, then every benchmark warms up 1 s and measures 2 s).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub
)]

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group};
use umbra_explorer::model::Links;
use umbra_explorer::model::account::AccountPage;
use umbra_explorer::model::epochs::EpochsPage;
use umbra_explorer::model::guide::GuidePage;
use umbra_explorer::model::node::NodePage;
use umbra_explorer::model::nodes::{NodeTable, TableQuery};
use umbra_explorer::model::overview::Overview;
use umbra_explorer::poller::record;
use umbra_explorer::render::html::Freshness;
use umbra_explorer::render::pages;
use umbra_explorer::server::twin_json;
use umbra_explorer::{EpochSeen, Explorer, ExplorerConfig, LedgerData, MonitorLink, Snapshot};
use umbra_ledger::api::{AccountView, DelegationView, EpochView, NodeView, StatusView};
use umbra_ledger::state::EpochReport;
use umbra_ledger::{
    Action, Block, Genesis, GenesisAccount, GenesisValidator, Hash, Key32, NodeId, NodeInfo,
    NodeKind, Params, Ppm, PublicKey, SignedTopology, SigningKey, State, Transaction, UNIT,
    registration_message, sphinx_key_message,
};
use umbra_net::directory::{LedgerConfig, ValidatorUrl};

const CHAIN: &str = "umbra-bench";
const NODES: u32 = 1_000;
/// Operators: node `n` belongs to operator `n % OPERATORS`, so 300 operators run two nodes.
const OPERATORS: u32 = 700;
/// Accounts that delegate: the first [`EARLY_DELEGATORS`] at the start, the rest a few per
/// epoch.
const DELEGATORS: u32 = 3_000;
const EARLY_DELEGATORS: u32 = 2_500;
const MONITORS: u32 = 3;
const VALIDATORS: u32 = 4;
/// Epochs run to their end with the whole network registered.
const EPOCHS: u64 = 100;
/// Transactions per block at most.
const BLOCK_SIZE: usize = 500;
/// Time between blocks within an epoch.
const BLOCK_MS: u64 = 5_000;
/// The environment variable that makes the bench the memory-measuring child, reading the API
/// answers from the directory it names.
const MEMORY_CHILD: &str = "UMBRA_EXPLORER_BENCH_MEMORY";
/// The environment variable that makes the bench a whole explorer (poller and HTTP server, as
/// `umbra explorer run` runs them) reading the validator at the address it holds, with the
/// genesis file named by [`GENESIS_FILE`].
const SERVE_CHILD: &str = "UMBRA_EXPLORER_BENCH_SERVE";
const GENESIS_FILE: &str = "UMBRA_EXPLORER_BENCH_GENESIS";
/// Requests per route when the whole explorer is measured over HTTP.
const REQUESTS: usize = 15;

/// A deterministic pseudo-random sequence (SplitMix64): the same ledger on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound`.
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// A key seed: `index` in key family `family`.
fn seed(family: u8, index: u32) -> [u8; 32] {
    let mut seed = [family; 32];
    seed[..4].copy_from_slice(&index.to_le_bytes());
    seed
}

/// A signing key with its public key computed once.
struct Signer {
    key: SigningKey,
    public: PublicKey,
}

impl Signer {
    fn new(family: u8, index: u32) -> Signer {
        let key = SigningKey::from_seed(seed(family, index));
        Signer {
            public: key.public(),
            key,
        }
    }

    fn family(family: u8, count: u32) -> Vec<Signer> {
        (0..count).map(|index| Signer::new(family, index)).collect()
    }
}

/// Everyone who signs something on the bench's chain.
struct People {
    operators: Vec<Signer>,
    /// The nodes' identity keys.
    identities: Vec<Signer>,
    delegators: Vec<Signer>,
    monitors: Vec<Signer>,
    validators: Vec<Signer>,
    /// Whoever ends the epochs.
    keeper: Signer,
}

impl People {
    fn new() -> People {
        People {
            operators: Signer::family(1, OPERATORS),
            identities: Signer::family(2, NODES),
            delegators: Signer::family(3, DELEGATORS),
            monitors: Signer::family(4, MONITORS),
            validators: Signer::family(5, VALIDATORS),
            keeper: Signer::new(6, 0),
        }
    }
}

/// Node `n`'s kind: every tenth is a gateway.
fn kind(n: u32) -> NodeKind {
    if n % 10 == 9 {
        NodeKind::Gateway
    } else {
        NodeKind::Mix
    }
}

/// Node `n`'s id on the ledger (nodes are registered in order).
fn node_id(n: u32) -> NodeId {
    NodeId(n + 1)
}

/// Node `n`'s Sphinx public key for key rotation `rotation`.
fn sphinx_key(n: u32, rotation: u32) -> Key32 {
    let family = 10 + u8::try_from(rotation).unwrap();
    Key32(
        *umbra_sphinx::PrivateKey::from_bytes(seed(family, n))
            .public_key()
            .as_bytes(),
    )
}

/// Node `n`'s moniker: varied lengths, one that needs escaping, some not ASCII.
fn moniker(n: u32) -> String {
    const NAMES: [&str; 8] = [
        "nebula",
        "umbra-eu-west",
        "shadowhost",
        "mixmaster",
        "quiet-relay",
        "nœud-sombre",
        "darkfiber-ams",
        "tor-refugee",
    ];
    if n == 42 {
        return "<b>bold</b> & \"quoted\"".into();
    }
    format!("{}-{n}", NAMES[(n % 8) as usize])
}

/// What node `n` registers.
fn node_info(people: &People, n: u32) -> NodeInfo {
    let gateway = kind(n) == NodeKind::Gateway;
    let address = |base: u32, port: u16| {
        SocketAddr::from((Ipv4Addr::from(0x0a00_0000 + base * 65_536 + n), port))
    };
    NodeInfo {
        kind: kind(n),
        identity_key: people.identities[n as usize].public,
        sphinx_key: sphinx_key(n, 0),
        noise_key: Key32(seed(7, n)),
        mix_address: address(1, 1789),
        client_address: gateway.then(|| address(2, 9000)),
        moniker: moniker(n),
    }
}

/// How reliable node `n` is (ppm): most nodes nearly always forward, a few are flaky.
fn reliability(rng: &mut Rng) -> u32 {
    match rng.below(100) {
        0..=89 => 970_000 + rng.below(30_001) as u32,
        90..=97 => 850_000 + rng.below(120_000) as u32,
        _ => 300_000 + rng.below(500_000) as u32,
    }
}

/// The chain being built, and what a poller would have noted along the way.
struct Chain {
    genesis: Genesis,
    state: State,
    /// Each signer's next nonce.
    nonces: HashMap<PublicKey, u64>,
    seen: BTreeMap<u64, EpochSeen>,
    /// The last certified topology (what the validator's `GET /topology` serves).
    certified: Option<SignedTopology>,
}

impl Chain {
    fn new(genesis: Genesis) -> Chain {
        let state = State::genesis(&genesis).unwrap();
        Chain {
            genesis,
            state,
            nonces: HashMap::new(),
            seen: BTreeMap::new(),
            certified: None,
        }
    }

    /// `signer`'s next transaction.
    fn tx(&mut self, signer: &Signer, action: Action) -> Transaction {
        let nonce = self.nonces.entry(signer.public).or_insert(0);
        let transaction = Transaction::sign(CHAIN, &signer.key, *nonce, action);
        *nonce += 1;
        transaction
    }

    /// Commits `transactions` in blocks at `BLOCK_MS` intervals; each must apply.
    fn commit(&mut self, transactions: Vec<Transaction>) {
        for chunk in transactions.chunks(BLOCK_SIZE) {
            self.block(self.state.time_ms() + BLOCK_MS, chunk.to_vec());
        }
    }

    fn block(&mut self, time_ms: u64, transactions: Vec<Transaction>) {
        let block = Block {
            height: self.state.height() + 1,
            time_ms,
            parent: self.state.last_block(),
            transactions,
        };
        for (index, outcome) in self.state.apply_block(&block).unwrap().iter().enumerate() {
            assert_eq!(
                *outcome,
                Ok(()),
                "{:?} refused",
                block.transactions[index].action
            );
        }
    }

    /// Ends the epoch at its end time.
    fn advance(&mut self, keeper: &Signer) {
        let transaction = self.tx(keeper, Action::AdvanceEpoch);
        self.block(self.state.epoch().end_ms, vec![transaction]);
    }

    /// Validators `signers` sign the epoch's topology; what is certified then, and the
    /// epoch's seed, are noted as the poller notes them.
    fn sign_topology(&mut self, signers: &[&Signer]) {
        let epoch = self.state.epoch().number;
        let message = self
            .state
            .signed_topology_document()
            .document
            .signing_message();
        let transactions = signers
            .iter()
            .map(|validator| {
                let signature = validator.key.sign(&message);
                self.tx(validator, Action::SignTopology { epoch, signature })
            })
            .collect();
        self.commit(transactions);
        let signed = self.state.signed_topology_document();
        if signed.verify(CHAIN, &self.genesis.validator_keys()).is_ok() {
            self.certified = Some(signed);
        }
        record(
            &mut self.seen,
            &EpochView::of(&self.state),
            self.certified.as_ref(),
            &self.genesis,
        );
    }
}

/// The bench's genesis: Nym's parameters but for an active set of 3 × 80 mix nodes and 50
/// gateways (290) and a staking supply that makes the largest nodes nearly saturated.
fn genesis(people: &People) -> Genesis {
    let params = Params {
        mixes_per_layer: 80,
        active_gateways: 50,
        staking_supply: 300_000_000 * UNIT,
        ..Params::default()
    };
    assert!(u64::from(params.history_epochs) > EPOCHS, "history is kept");
    let accounts = people
        .operators
        .iter()
        .map(|operator| (operator.public, 1_000_000 * UNIT))
        .chain(
            people
                .delegators
                .iter()
                .map(|delegator| (delegator.public, 100_000 * UNIT)),
        )
        .map(|(address, balance)| GenesisAccount { address, balance })
        .collect();
    Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: 1_767_225_600_000,
        params,
        reward_pool: 250_000_000 * UNIT,
        accounts,
        validators: people
            .validators
            .iter()
            .enumerate()
            .map(|(index, validator)| GenesisValidator {
                key: validator.public,
                power: 1,
                beacon_commitment: Hash::of(&[b"commitment", &[index as u8]]),
                name: format!("validator-{index}"),
            })
            .collect(),
        monitors: people
            .monitors
            .iter()
            .map(|monitor| monitor.public)
            .collect(),
        nodes: Vec::new(),
    }
}

/// Registers, bonds and configures every node: a spread of small pledges, and one node in 50
/// with a large one.
fn register_nodes(chain: &mut Chain, people: &People, rng: &mut Rng) {
    let mut transactions = Vec::new();
    for n in 0..NODES {
        let operator = &people.operators[(n % OPERATORS) as usize];
        let node = node_info(people, n);
        let node_signature = people.identities[n as usize]
            .key
            .sign(&registration_message(CHAIN, &operator.public, &node));
        transactions.push(chain.tx(
            operator,
            Action::RegisterNode {
                node,
                node_signature,
            },
        ));
        let pledge = if n % 50 == 1 || n % 50 == 9 {
            150_000 + rng.below(150_000)
        } else {
            100 + rng.below(5_000)
        };
        transactions.push(chain.tx(
            operator,
            Action::Bond {
                node: node_id(n),
                amount: pledge * UNIT,
            },
        ));
        if rng.below(10) < 6 {
            transactions.push(chain.tx(
                operator,
                Action::UpdateNode {
                    node: node_id(n),
                    operating_cost: (20 + 20 * rng.below(4)) * UNIT,
                    profit_margin: Ppm(
                        [0, 50_000, 100_000, 200_000, 300_000][rng.below(5) as usize]
                    ),
                },
            ));
        }
    }
    chain.commit(transactions);
}

/// The delegations in force, as `(node index, delegator)`: what may be undelegated.
type Delegations = Vec<(u32, PublicKey)>;

/// A delegation of 100 to 20,000 UMB from `signer` to a random node (one time in three, one
/// of the large ones).
fn delegate(
    chain: &mut Chain,
    signer: &Signer,
    rng: &mut Rng,
    live: &mut Delegations,
) -> Transaction {
    let n = if rng.below(3) == 0 {
        50 * rng.below(u64::from(NODES / 50)) as u32 + 1
    } else {
        rng.below(u64::from(NODES)) as u32
    };
    if !live.contains(&(n, signer.public)) {
        live.push((n, signer.public));
    }
    chain.tx(
        signer,
        Action::Delegate {
            node: node_id(n),
            amount: (100 + rng.below(19_900)) * UNIT,
        },
    )
}

/// The first delegations: each early delegator to one node, half of them to a second; the
/// first 50 operators to three nodes each.
fn first_delegations(chain: &mut Chain, people: &People, rng: &mut Rng) -> Delegations {
    let mut live = Vec::new();
    let mut transactions = Vec::new();
    for delegator in &people.delegators[..EARLY_DELEGATORS as usize] {
        transactions.push(delegate(chain, delegator, rng, &mut live));
        if rng.below(2) == 0 {
            transactions.push(delegate(chain, delegator, rng, &mut live));
        }
    }
    for operator in &people.operators[..50] {
        for _ in 0..3 {
            transactions.push(delegate(chain, operator, rng, &mut live));
        }
    }
    chain.commit(transactions);
    live
}

/// One epoch's stake changes: 3 undelegations, 5 newcomers, 5 top-ups or second delegations.
fn churn(
    chain: &mut Chain,
    people: &People,
    rng: &mut Rng,
    live: &mut Delegations,
    newcomers: &mut impl Iterator<Item = u32>,
) {
    let mut transactions = Vec::new();
    // first, so that only delegations already in force (settled) are withdrawn
    for _ in 0..3 {
        let (n, delegator) = live.swap_remove(rng.below(live.len() as u64) as usize);
        let signer = people
            .delegators
            .iter()
            .chain(&people.operators)
            .find(|signer| signer.public == delegator)
            .unwrap();
        transactions.push(chain.tx(signer, Action::Undelegate { node: node_id(n) }));
    }
    for index in newcomers.take(5) {
        transactions.push(delegate(
            chain,
            &people.delegators[index as usize],
            rng,
            live,
        ));
    }
    for _ in 0..5 {
        let index = rng.below(u64::from(EARLY_DELEGATORS)) as usize;
        transactions.push(delegate(chain, &people.delegators[index], rng, live));
    }
    chain.commit(transactions);
}

/// Monitors `monitors` submit their scores for the active set: each node's reliability, give
/// or take a point.
fn submit_scores(
    chain: &mut Chain,
    people: &People,
    monitors: &[u32],
    reliabilities: &[u32],
    rng: &mut Rng,
) {
    let epoch = chain.state.epoch().number;
    let active: Vec<NodeId> = chain
        .state
        .epoch()
        .active
        .members()
        .map(|(id, _)| id)
        .collect();
    let mut transactions = Vec::new();
    for &monitor in monitors {
        let scores = active
            .iter()
            .map(|&id| {
                let truth = reliabilities[(id.0 - 1) as usize];
                let score = (truth + rng.below(20_001) as u32).saturating_sub(10_000);
                (id, Ppm(score.min(1_000_000)))
            })
            .collect();
        let evidence = Hash::of(&[b"evidence", &epoch.to_le_bytes(), &[monitor as u8]]);
        transactions.push(chain.tx(
            &people.monitors[monitor as usize],
            Action::SubmitPerformance {
                epoch,
                scores,
                evidence,
            },
        ));
    }
    chain.commit(transactions);
}

/// Before the last epoch of a key rotation, every node announces its key for the next one.
fn announce_keys(chain: &mut Chain, people: &People) {
    let rotation = chain.state.epoch().rotation + 1;
    let transactions = (0..NODES)
        .map(|n| {
            let key = sphinx_key(n, rotation);
            let identity = &people.identities[n as usize];
            let node_signature =
                identity
                    .key
                    .sign(&sphinx_key_message(CHAIN, node_id(n), rotation, &key));
            chain.tx(
                identity,
                Action::AnnounceSphinxKey {
                    node: node_id(n),
                    rotation,
                    sphinx_key: key,
                    node_signature,
                },
            )
        })
        .collect();
    chain.commit(transactions);
}

/// The validators that sign epoch `epoch`'s topology: three of four, the fourth every other
/// epoch.
fn signers(people: &People, epoch: u64) -> Vec<&Signer> {
    let count = if epoch % 2 == 1 { 4 } else { 3 };
    people.validators.iter().take(count).collect()
}

/// The ledger after `EPOCHS` epochs, in the middle of the next.
fn build_chain(people: &People) -> Chain {
    let mut rng = Rng(2026);
    let mut chain = Chain::new(genesis(people));
    chain.sign_topology(&signers(people, 0));
    register_nodes(&mut chain, people, &mut rng);
    let mut live = first_delegations(&mut chain, people, &mut rng);
    let reliabilities: Vec<u32> = (0..NODES).map(|_| reliability(&mut rng)).collect();
    let mut newcomers = EARLY_DELEGATORS..DELEGATORS;
    let rotation_epochs = u64::from(chain.genesis.params.rotation_epochs);
    // epoch 0 had no node yet; epochs 1..=EPOCHS run to their end, the next is half over
    for epoch in 0..=EPOCHS {
        if (epoch + 1) % rotation_epochs == 0 {
            announce_keys(&mut chain, people);
        }
        chain.advance(&people.keeper);
        let epoch = epoch + 1;
        chain.sign_topology(&signers(people, epoch));
        let monitors: &[u32] = if epoch > EPOCHS {
            &[0]
        } else if epoch % 10 == 0 {
            &[0, 1]
        } else {
            &[0, 1, 2]
        };
        submit_scores(&mut chain, people, monitors, &reliabilities, &mut rng);
        churn(&mut chain, people, &mut rng, &mut live, &mut newcomers);
    }
    chain
}

/// The validator API's answers, made as the validator makes them (`crates/validator/src/api.rs`).
fn answers(chain: &Chain) -> LedgerData {
    let state = &chain.state;
    LedgerData {
        status: StatusView::of(state),
        nodes: NodeView::all(state),
        delegations: DelegationView::all(state),
        epoch: EpochView::of(state),
        history: state.history().cloned().collect(),
        topology: chain.certified.clone(),
    }
}

/// The API answers as JSON, as the poller downloads them: `(route, body)`.
fn answers_json(data: &LedgerData) -> Vec<(&'static str, String)> {
    vec![
        ("/status", serde_json::to_string(&data.status).unwrap()),
        ("/nodes", serde_json::to_string(&data.nodes).unwrap()),
        (
            "/delegations",
            serde_json::to_string(&data.delegations).unwrap(),
        ),
        ("/epoch", serde_json::to_string(&data.epoch).unwrap()),
        ("/epochs", serde_json::to_string(&data.history).unwrap()),
        ("/topology", serde_json::to_string(&data.topology).unwrap()),
    ]
}

/// `answers_json` read back, as the poller reads each answer.
fn parse_answers(json: &[(&'static str, String)]) -> LedgerData {
    let body = |route: &str| &json.iter().find(|(name, _)| *name == route).unwrap().1;
    LedgerData {
        status: serde_json::from_str(body("/status")).unwrap(),
        nodes: serde_json::from_str(body("/nodes")).unwrap(),
        delegations: serde_json::from_str(body("/delegations")).unwrap(),
        epoch: serde_json::from_str(body("/epoch")).unwrap(),
        history: serde_json::from_str::<Vec<EpochReport>>(body("/epochs")).unwrap(),
        topology: serde_json::from_str(body("/topology")).unwrap(),
    }
}

/// What the pages need besides the snapshot.
struct Context {
    snapshot: Snapshot,
    links: Links,
    freshness: Freshness,
    /// The time the pages are drawn at: a minute after the last block.
    now_ms: u64,
    /// A node with a full record: active in every epoch.
    node: NodeId,
    /// An operator owning a node who also delegates, with the validator's answer about it.
    account: AccountView,
}

impl Context {
    /// `GET /mixnodes` or `/gateways` with `query`: the route's query parsing, then the model.
    fn table(&self, kind: NodeKind, query: &str) -> NodeTable {
        let pairs = umbra_explorer::query::parse(query);
        let query = TableQuery::from_pairs(
            pairs
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
        );
        NodeTable::build(&self.snapshot, kind, query)
    }

    /// What the server's `remaining` says: the time left in the epoch.
    fn remaining(&self) -> u64 {
        self.snapshot.data.epoch.end_ms.saturating_sub(self.now_ms)
    }

    fn twin<T: serde::Serialize>(&self, page: T) -> String {
        twin_json(&self.snapshot, &self.freshness, page).unwrap()
    }
}

/// A page: its name, its route, and how the route builds its HTML and its JSON twin.
struct Page {
    name: &'static str,
    route: String,
    html: fn(&Context) -> String,
    json: fn(&Context) -> String,
}

/// Every page the bench times, each as its route handler builds it.
fn every_page(context: &Context) -> Vec<Page> {
    vec![
        Page {
            name: "overview",
            route: "/".into(),
            html: |c| {
                pages::overview(
                    &Overview::build(&c.snapshot, &c.links, c.now_ms),
                    &c.freshness,
                    c.now_ms,
                )
            },
            json: |c| c.twin(Overview::build(&c.snapshot, &c.links, c.now_ms)),
        },
        Page {
            name: "mix nodes",
            route: "/mixnodes".into(),
            html: |c| pages::node_table(&c.table(NodeKind::Mix, ""), &c.freshness, c.remaining()),
            json: |c| c.twin(c.table(NodeKind::Mix, "")),
        },
        Page {
            name: "mix nodes, layer 2 by performance",
            route: "/mixnodes?sort=performance&layer=2".into(),
            html: |c| {
                pages::node_table(
                    &c.table(NodeKind::Mix, "sort=performance&layer=2"),
                    &c.freshness,
                    c.remaining(),
                )
            },
            json: |c| c.twin(c.table(NodeKind::Mix, "sort=performance&layer=2")),
        },
        Page {
            name: "mix nodes, searched",
            route: "/mixnodes?q=nebula".into(),
            html: |c| {
                pages::node_table(
                    &c.table(NodeKind::Mix, "q=nebula"),
                    &c.freshness,
                    c.remaining(),
                )
            },
            json: |c| c.twin(c.table(NodeKind::Mix, "q=nebula")),
        },
        Page {
            name: "gateways",
            route: "/gateways".into(),
            html: |c| {
                pages::node_table(&c.table(NodeKind::Gateway, ""), &c.freshness, c.remaining())
            },
            json: |c| c.twin(c.table(NodeKind::Gateway, "")),
        },
        Page {
            name: "node",
            route: format!("/nodes/{}", context.node),
            html: |c| {
                let view = NodePage::build(&c.snapshot, &c.links, c.node).unwrap();
                pages::node(&view, &c.freshness, c.remaining())
            },
            json: |c| c.twin(NodePage::build(&c.snapshot, &c.links, c.node).unwrap()),
        },
        Page {
            name: "account",
            route: format!("/accounts/{}", context.account.address),
            html: |c| {
                let view = AccountPage::build(&c.snapshot, c.account.address, Some(&c.account));
                pages::account(&view, &c.freshness, None)
            },
            json: |c| {
                c.twin(AccountPage::build(
                    &c.snapshot,
                    c.account.address,
                    Some(&c.account),
                ))
            },
        },
        Page {
            name: "epochs",
            route: "/epochs".into(),
            html: |c| {
                pages::epochs(
                    &EpochsPage::build(&c.snapshot, &c.links, 1),
                    &c.freshness,
                    c.remaining(),
                )
            },
            json: |c| c.twin(EpochsPage::build(&c.snapshot, &c.links, 1)),
        },
        Page {
            name: "guide",
            route: "/guide".into(),
            html: |c| pages::guide(&GuidePage::build(&c.snapshot, &c.links, None), &c.freshness),
            json: |c| c.twin(GuidePage::build(&c.snapshot, &c.links, None)),
        },
    ]
}

/// The links an explorer is configured with: every monitor's evidence, and a validator.
fn links(genesis: &Genesis) -> Links {
    Links {
        monitors: genesis
            .monitors
            .iter()
            .enumerate()
            .map(|(index, monitor)| (*monitor, format!("http://10.1.0.{}:8090", index + 1)))
            .collect(),
        validator: "http://10.0.0.1:7000".into(),
    }
}

/// The snapshot the poller makes of `data`, fetched a second after the last block.
fn snapshot(genesis: &Arc<Genesis>, data: LedgerData, seen: &BTreeMap<u64, EpochSeen>) -> Snapshot {
    let fetched_ms = data.status.time_ms + 1_000;
    Snapshot::new(
        Arc::clone(genesis),
        data,
        seen.clone(),
        fetched_ms,
        "http://10.0.0.1:7000".into(),
    )
}

/// How many nodes of each kind were active in every epoch.
fn full_records(snapshot: &Snapshot) -> (usize, usize) {
    let full = |kind: NodeKind| {
        snapshot
            .data
            .nodes
            .iter()
            .filter(|node| node.info.kind == kind)
            .filter(|node| snapshot.history_of(node.id).count() as u64 == EPOCHS)
            .count()
    };
    (full(NodeKind::Mix), full(NodeKind::Gateway))
}

/// The node with the longest record (a mix node, if several are as long).
fn node_with_full_history(snapshot: &Snapshot) -> NodeId {
    let node = snapshot
        .data
        .nodes
        .iter()
        .max_by_key(|node| {
            (
                snapshot.history_of(node.id).count(),
                node.info.kind == NodeKind::Mix,
            )
        })
        .unwrap();
    let epochs = snapshot.history_of(node.id).count();
    assert_eq!(
        epochs as u64, EPOCHS,
        "node {} was active in every epoch",
        node.id
    );
    node.id
}

/// The operator of node 1, who owns two nodes and delegates to three.
fn operator_account(chain: &Chain, snapshot: &Snapshot) -> AccountView {
    let owner = snapshot.node(NodeId(1)).unwrap().owner;
    let next_nonce = chain.state.account(&owner).nonce;
    AccountView::of(&chain.state, owner, next_nonce)
}

/// This process's resident memory and its peak, in KiB (`/proc/self/status`).
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The memory child: reads the API answers and the genesis from `dir` as the poller would,
/// makes the snapshot, and prints its resident memory at each step.
fn memory_child(dir: &Path) {
    let (start, _) = memory_kib();
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let genesis: Arc<Genesis> = Arc::new(serde_json::from_str(&read("genesis.json")).unwrap());
    let seen: BTreeMap<u64, EpochSeen> = serde_json::from_str(&read("seen.json")).unwrap();
    let (baseline, _) = memory_kib();
    let data = LedgerData {
        status: serde_json::from_str(&read("status.json")).unwrap(),
        nodes: serde_json::from_str(&read("nodes.json")).unwrap(),
        delegations: serde_json::from_str(&read("delegations.json")).unwrap(),
        epoch: serde_json::from_str(&read("epoch.json")).unwrap(),
        history: serde_json::from_str(&read("epochs.json")).unwrap(),
        topology: serde_json::from_str(&read("topology.json")).unwrap(),
    };
    let snapshot = Snapshot::new(genesis, data, seen, 0, "http://10.0.0.1:7000".into());
    let (with_snapshot, peak_reading) = memory_kib();
    println!(
        "memory: at start {:.1} MiB RSS; genesis read {:.1} MiB",
        mib(start),
        mib(baseline)
    );
    println!(
        "memory: with the snapshot {:.1} MiB RSS (+{:.1} MiB for the snapshot; peak while reading {:.1} MiB)",
        mib(with_snapshot),
        mib(with_snapshot - baseline),
        mib(peak_reading),
    );
    let context = Context {
        node: node_with_full_history(&snapshot),
        account: AccountView {
            address: snapshot.node(NodeId(1)).unwrap().owner,
            account: umbra_ledger::Account::default(),
            next_nonce: 0,
            delegations: Vec::new(),
        },
        links: links(&snapshot.genesis),
        snapshot,
        freshness: Freshness::default(),
        now_ms: 0,
    };
    let mut bytes = 0;
    for page in every_page(&context) {
        bytes += (page.html)(&context).len() + (page.json)(&context).len();
    }
    let (after_pages, peak) = memory_kib();
    println!(
        "memory: after building every page once ({:.1} MiB of output, dropped) {:.1} MiB RSS, peak {:.1} MiB",
        bytes as f64 / 1_048_576.0,
        mib(after_pages),
        mib(peak)
    );
    drop(context);
}

/// Writes the genesis, what was seen and the API answers to a fresh directory, runs the memory
/// child on it and prints what it says.
fn measure_memory(
    genesis: &Genesis,
    seen: &BTreeMap<u64, EpochSeen>,
    json: &[(&'static str, String)],
) {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("umbra-explorer-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("genesis.json"),
        serde_json::to_string(genesis).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("seen.json"), serde_json::to_string(seen).unwrap()).unwrap();
    for (route, body) in json {
        std::fs::write(
            dir.join(format!("{}.json", route.trim_start_matches('/'))),
            body,
        )
        .unwrap();
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .env(MEMORY_CHILD, &dir)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eprint!("{}", String::from_utf8_lossy(&output.stdout));
}

/// The serve child: an explorer as `umbra explorer run` runs it (the same multi-threaded
/// runtime, `Explorer::run_with`), printing its address, until its standard input closes.
fn serve_child(validator: &str, genesis: &Path) {
    let genesis = Genesis::from_json(&std::fs::read_to_string(genesis).unwrap()).unwrap();
    let validator: SocketAddr = validator.parse().unwrap();
    let mut config = ExplorerConfig::new(LedgerConfig {
        validators: vec![ValidatorUrl::from_address(validator)],
        genesis: "genesis.json".into(),
    });
    config.monitors = links(&genesis)
        .monitors
        .into_iter()
        .map(|(account, evidence_url)| MonitorLink {
            account,
            evidence_url,
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap());
        let stdin_closed = async {
            let _ = tokio::task::spawn_blocking(|| {
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new())
            })
            .await;
        };
        Explorer::new(Path::new("."), config, genesis)
            .run_with(listener, stdin_closed)
            .await
            .unwrap();
    });
}

/// A validator API answering with `json` (and `account` for any account), on a runtime of
/// its own; its address.
fn fake_validator(
    runtime: &tokio::runtime::Runtime,
    json: &[(&'static str, String)],
    account: &AccountView,
) -> SocketAddr {
    let answer = |body: String| {
        move || {
            let body = body.clone();
            async move { ([("content-type", "application/json")], body) }
        }
    };
    let mut router = axum::Router::new().route(
        "/accounts/{key}",
        axum::routing::get(answer(serde_json::to_string(account).unwrap())),
    );
    for (route, body) in json {
        router = router.route(route, axum::routing::get(answer(body.clone())));
    }
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(umbra_http::serve_router(
            listener,
            router,
            umbra_http::HttpLimits::default(),
            Arc::new(umbra_http::HttpCounters::default()),
            tokio_util::sync::CancellationToken::new(),
        ));
        address
    })
}

/// `GET path` over a new connection: the status line's code and the body's length.
fn http_get(address: SocketAddr, path: &str) -> (u16, usize) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .find("\r\n\r\n")
        .map_or(0, |end| response.len() - end - 4);
    (status, body)
}

/// Resident memory and its peak of process `pid`, in KiB.
fn memory_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A whole explorer in a child process, reading a fake validator that serves the bench's
/// answers: its memory once it holds the snapshot, each page's time over HTTP (median of
/// [`REQUESTS`], one connection each), and its memory after.
fn measure_explorer(
    genesis: &Genesis,
    json: &[(&'static str, String)],
    account: &AccountView,
    routes: &[String],
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let validator = fake_validator(&runtime, json, account);
    let genesis_path = std::env::temp_dir().join(format!(
        "umbra-explorer-bench-{}-genesis.json",
        std::process::id()
    ));
    std::fs::write(&genesis_path, genesis.to_json()).unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env(SERVE_CHILD, validator.to_string())
        .env(GENESIS_FILE, &genesis_path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let explorer: SocketAddr = line.trim().parse().unwrap();
    let waited = Instant::now();
    while http_get(explorer, "/health").0 != 200 {
        assert!(
            waited.elapsed() < Duration::from_secs(30),
            "the explorer never read the ledger"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let (loaded, loaded_peak) = memory_of(child.id());
    eprintln!(
        "explorer process: {:.1} MiB RSS with its first snapshot (peak {:.1} MiB), {:.0} ms after start",
        mib(loaded),
        mib(loaded_peak),
        waited.elapsed().as_secs_f64() * 1000.0
    );
    for route in routes {
        for path in [
            route.clone(),
            format!("/api{}", if route == "/" { "/overview" } else { route }),
        ] {
            let mut times: Vec<Duration> = (0..REQUESTS)
                .map(|_| {
                    let start = Instant::now();
                    let (status, _) = http_get(explorer, &path);
                    assert_eq!(status, 200, "{path}");
                    start.elapsed()
                })
                .collect();
            times.sort();
            let (_, bytes) = http_get(explorer, &path);
            eprintln!(
                "over HTTP: {path:<52} median {:>7.2} ms, {bytes:>8} bytes",
                times[REQUESTS / 2].as_secs_f64() * 1000.0
            );
        }
    }
    let (served, served_peak) = memory_of(child.id());
    eprintln!(
        "explorer process: {:.1} MiB RSS after serving every page {REQUESTS} times (peak {:.1} MiB)",
        mib(served),
        mib(served_peak)
    );
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    assert!(status.success());
    std::fs::remove_file(&genesis_path).unwrap();
    drop(runtime);
}

fn pages_bench(c: &mut Criterion) {
    let started = Instant::now();
    let people = People::new();
    let chain = build_chain(&people);
    let built = started.elapsed();
    let data = answers(&chain);
    let genesis = Arc::new(chain.genesis.clone());
    let history_entries: usize = data.history.iter().map(|report| report.nodes.len()).sum();
    eprintln!(
        "ledger: {} nodes, {} delegations, {} accounts, {} epoch reports ({history_entries} node entries), height {}, built in {:.1} s",
        data.nodes.len(),
        data.delegations.len(),
        chain.state.accounts().len(),
        data.history.len(),
        data.status.height,
        built.as_secs_f64()
    );
    let json = answers_json(&data);
    for (route, body) in &json {
        eprintln!("API answer {route}: {} bytes of JSON", body.len());
    }
    measure_memory(&genesis, &chain.seen, &json);

    let context = Context {
        snapshot: snapshot(&genesis, data.clone(), &chain.seen),
        links: links(&genesis),
        freshness: Freshness {
            validator: "http://10.0.0.1:7000".into(),
            last_answer_ms: Some(data.status.time_ms + 1_000),
            failing: None,
        },
        now_ms: data.status.time_ms + 60_000,
        node: NodeId(0),
        account: AccountView {
            address: PublicKey([0; 32]),
            account: umbra_ledger::Account::default(),
            next_nonce: 0,
            delegations: Vec::new(),
        },
    };
    let context = Context {
        node: node_with_full_history(&context.snapshot),
        account: operator_account(&chain, &context.snapshot),
        ..context
    };
    let (mixes, gateways) = full_records(&context.snapshot);
    eprintln!(
        "active in all {EPOCHS} epochs: {mixes} mix nodes, {gateways} gateways; node page of node {}, account page of {} ({} delegations)",
        context.node,
        context.account.address,
        context.account.delegations.len()
    );
    let routes: Vec<String> = every_page(&context)
        .into_iter()
        .map(|page| page.route)
        .collect();
    measure_explorer(&genesis, &json, &context.account, &routes);
    assert!(context.account.delegations.len() >= 2 && !context.account.account.balance.is_zero());
    drop(chain);

    let mut group = c.benchmark_group("explorer, 1000 nodes, 100 epochs");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    group.bench_function(
        "poller: parse /status /nodes /delegations /epoch /topology",
        |b| {
            let refresh: Vec<_> = json
                .iter()
                .filter(|(route, _)| *route != "/epochs")
                .cloned()
                .collect();
            b.iter(|| {
                let body =
                    |route: &str| &refresh.iter().find(|(name, _)| *name == route).unwrap().1;
                (
                    serde_json::from_str::<StatusView>(body("/status")).unwrap(),
                    serde_json::from_str::<Vec<NodeView>>(body("/nodes")).unwrap(),
                    serde_json::from_str::<Vec<DelegationView>>(body("/delegations")).unwrap(),
                    serde_json::from_str::<EpochView>(body("/epoch")).unwrap(),
                    serde_json::from_str::<Option<SignedTopology>>(body("/topology")).unwrap(),
                )
            })
        },
    );
    group.bench_function("poller: verify the topology's certificate", |b| {
        let topology = data.topology.as_ref().unwrap();
        let keys = genesis.validator_keys();
        b.iter(|| topology.verify(CHAIN, &keys).unwrap())
    });
    group.bench_function("poller: parse /epochs (at each epoch's end)", |b| {
        let body = &json
            .iter()
            .find(|(route, _)| *route == "/epochs")
            .unwrap()
            .1;
        b.iter(|| serde_json::from_str::<Vec<EpochReport>>(body).unwrap())
    });
    group.bench_function("poller: Snapshot::new", |b| {
        b.iter_batched(
            || data.clone(),
            |data| snapshot(&genesis, data, &context.snapshot.seen),
            BatchSize::LargeInput,
        )
    });
    assert_eq!(parse_answers(&json).nodes, data.nodes);

    for page in every_page(&context) {
        let html = (page.html)(&context);
        let twin = (page.json)(&context);
        eprintln!(
            "page {:<36} {:<48} HTML {:>9} bytes, JSON {:>9} bytes",
            page.name,
            page.route,
            html.len(),
            twin.len()
        );
        group.bench_function(format!("{} (HTML)", page.name), |b| {
            b.iter(|| (page.html)(black_box(&context)))
        });
        group.bench_function(format!("{} (JSON)", page.name), |b| {
            b.iter(|| (page.json)(black_box(&context)))
        });
    }
    group.finish();
}

criterion_group!(benches, pages_bench);

fn main() {
    if let Some(dir) = std::env::var_os(MEMORY_CHILD) {
        memory_child(Path::new(&dir));
        return;
    }
    if let (Ok(validator), Some(genesis)) =
        (std::env::var(SERVE_CHILD), std::env::var_os(GENESIS_FILE))
    {
        serve_child(&validator, Path::new(&genesis));
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
