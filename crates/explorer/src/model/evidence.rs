//! Why a node's score is what it is: a monitor's evidence of an epoch, checked against the
//! hash the ledger recorded with its scores, judged exactly as the monitor judged it
//! ([`umbra_monitor::attribute`], [`umbra_monitor::judge_routes`]), and summed up for one
//! node — the routes it was tested on, what came back, what was lost and what the monitor made
//! of it.
//!
//! Nothing here does I/O: the explorer's fetcher (`crate::monitors`) hands in the JSON a
//! monitor serves, and the node page reads what was kept.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use umbra_ledger::{Hash, NodeId, Ppm, PublicKey};
use umbra_monitor::{
    Attribution, Evidence, Group, Unscored, Verdict, VoidReason, attribute, judge_routes, to_ppm,
};

use super::{Links, NodeRef};
use crate::snapshot::Snapshot;

/// How many of the latest finished epochs the explorer fetches evidence for (per monitor).
pub const EVIDENCE_EPOCHS: usize = 3;

/// How many of a node's lost routes the page lists (the latest ones); the counts cover all.
pub const LOST_ROUTES_SHOWN: usize = 50;

/// A monitor's evidence of an epoch, checked against the ledger's record and judged.
#[derive(Debug)]
pub struct Examined {
    /// The evidence.
    pub evidence: Evidence,
    /// The scores as the monitor computed them from it.
    pub attribution: Attribution,
    /// Per route of the evidence (in its order), why attribution left it out, if it did.
    pub voided: Vec<Option<VoidReason>>,
}

/// Why the evidence a monitor serves is not shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum EvidenceProblem {
    /// It could not be fetched (no connection, an HTTP error, too long, too slow).
    Fetch {
        /// What went wrong.
        reason: String,
    },
    /// It is not evidence (`umbra_monitor::Evidence::from_json` refused it).
    Unreadable {
        /// Why.
        reason: String,
    },
    /// It is the evidence of another epoch.
    WrongEpoch {
        /// The epoch it names.
        served: u64,
    },
    /// It does not hash to what the monitor submitted to the ledger with its scores.
    Mismatch {
        /// The hash of what the monitor serves.
        served: Hash,
        /// The hash the ledger recorded.
        recorded: Hash,
    },
}

impl std::fmt::Display for EvidenceProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EvidenceProblem::Fetch { reason } => write!(f, "it could not be fetched: {reason}"),
            EvidenceProblem::Unreadable { reason } => write!(f, "it is not evidence: {reason}"),
            EvidenceProblem::WrongEpoch { served } => {
                write!(
                    f,
                    "the monitor serves the evidence of epoch {served} instead"
                )
            }
            EvidenceProblem::Mismatch { served, recorded } => write!(
                f,
                "the evidence the monitor serves does not match what it submitted: it hashes to {served}, the ledger recorded {recorded}"
            ),
        }
    }
}

impl Examined {
    /// Reads `json` (what the monitor serves as its evidence of `epoch`), checks that it is
    /// that epoch's and hashes to `recorded` (what the ledger recorded with the monitor's
    /// scores), and judges it as the monitor did. Takes as long as the monitor's own scoring
    /// (seconds for a large network): run it off the event loop.
    pub fn examine(json: &str, epoch: u64, recorded: &Hash) -> Result<Examined, EvidenceProblem> {
        let evidence = Evidence::from_json(json).map_err(|error| EvidenceProblem::Unreadable {
            reason: error.to_string(),
        })?;
        if evidence.epoch != epoch {
            return Err(EvidenceProblem::WrongEpoch {
                served: evidence.epoch,
            });
        }
        let served = Hash(evidence.hash().0);
        if served != *recorded {
            return Err(EvidenceProblem::Mismatch {
                served,
                recorded: *recorded,
            });
        }
        let attribution = attribute(&evidence);
        let voided = judge_routes(&evidence).voided;
        Ok(Examined {
            evidence,
            attribution,
            voided,
        })
    }
}

/// What the explorer has of one monitor's evidence of one epoch.
#[derive(Clone, Debug)]
pub enum Fetched {
    /// Fetched, checked and judged.
    Examined(Arc<Examined>),
    /// Not usable (yet): why, after how many attempts, and when it is tried again (ms since
    /// the Unix epoch).
    Failed {
        /// Why.
        problem: EvidenceProblem,
        /// Attempts so far.
        attempts: u32,
        /// The next attempt.
        retry_ms: u64,
    },
}

/// What the explorer has of the monitors' evidence, by monitor and epoch.
pub type Evidences = BTreeMap<(PublicKey, u64), Fetched>;

/// The evidence the explorer wants: the latest [`EVIDENCE_EPOCHS`] finished epochs' submissions
/// of the monitors whose evidence URL it knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// The monitor.
    pub monitor: PublicKey,
    /// The epoch.
    pub epoch: u64,
    /// The hash the ledger recorded with its scores.
    pub recorded: Hash,
    /// Where it is served (`http://host:port`; the path is `/evidence/{epoch}`).
    pub base: String,
}

/// The evidence worth fetching in `snapshot`: newest epoch first. Bounded by the monitors
/// genesis names (the ledger records a submission only from them) times [`EVIDENCE_EPOCHS`].
pub fn wanted(snapshot: &Snapshot, links: &Links) -> Vec<Wanted> {
    snapshot
        .data
        .history
        .iter()
        .rev()
        .take(EVIDENCE_EPOCHS)
        .flat_map(|report| {
            report.monitors.iter().filter_map(|submission| {
                Some(Wanted {
                    monitor: submission.monitor,
                    epoch: report.epoch,
                    recorded: submission.evidence,
                    base: links.monitors.get(&submission.monitor)?.clone(),
                })
            })
        })
        .collect()
}

/// The "why this score" section of a node's page: each monitor's evidence of the latest
/// finished epoch the node was active in that has any (of the latest [`EVIDENCE_EPOCHS`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvidenceSection {
    /// The epoch shown; `None` if the node was active in none of the latest
    /// [`EVIDENCE_EPOCHS`] finished epochs.
    pub epoch: Option<u64>,
    /// Each monitor that submitted scores for that epoch.
    pub monitors: Vec<MonitorEvidence>,
}

/// One monitor's evidence about the node.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MonitorEvidence {
    /// The monitor's account.
    pub monitor: PublicKey,
    /// The score it submitted for the node (none: it could not score it).
    pub score: Option<Ppm>,
    /// The hash of its evidence, as the ledger recorded it.
    pub evidence: Hash,
    /// Where the monitor publishes that evidence, if the explorer knows.
    pub evidence_url: Option<String>,
    /// What the evidence says about the node, or why it is not shown.
    #[serde(flatten)]
    pub status: EvidenceStatus,
}

/// What a monitor's evidence says about the node, or why it is not shown.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum EvidenceStatus {
    /// The summary.
    Shown {
        /// What it says.
        summary: NodeEvidence,
    },
    /// The explorer's `config.toml` does not say where the monitor publishes its evidence.
    NoUrl,
    /// Not fetched yet (the explorer fetches in the background).
    NotFetched,
    /// Fetched but not usable.
    Failed {
        /// Why.
        #[serde(flatten)]
        problem: EvidenceProblem,
        /// Attempts so far.
        attempts: u32,
        /// When it is tried again (ms since the Unix epoch).
        retry_ms: u64,
    },
    /// The evidence does not list the node.
    NotListed,
}

/// Why a route was not judged (it counts toward no score).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Void {
    /// The monitor's session with one of its gateways was down.
    GatewayDown,
    /// The monitor was starved while it was alive.
    Starved,
    /// Sent in a window where nearly every route was lost: the monitor's own network.
    MassFailure,
}

impl From<VoidReason> for Void {
    fn from(reason: VoidReason) -> Void {
        match reason {
            VoidReason::GatewayDown => Void::GatewayDown,
            VoidReason::Starved => Void::Starved,
            VoidReason::MassFailure => Void::MassFailure,
        }
    }
}

/// Routes not judged, by why.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VoidCounts {
    /// The monitor's session with a gateway of the route was down.
    pub gateway_down: u64,
    /// The monitor was starved.
    pub starved: u64,
    /// A mass failure.
    pub mass_failure: u64,
}

/// The monitor's verdict on the node, as its attribution computed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum VerdictView {
    /// A score relative to the best node of its group, with its confidence interval.
    Scored {
        /// The estimate.
        score: Ppm,
        /// The interval's lower end.
        lower: Ppm,
        /// The interval's upper end.
        upper: Ppm,
    },
    /// No judged route crossed it.
    NoPackets,
    /// Fewer judged packets than the rules' minimum.
    TooFewPackets,
    /// No other node of its group was measured.
    AloneInGroup,
}

impl From<Verdict> for VerdictView {
    fn from(verdict: Verdict) -> VerdictView {
        let ppm = |fraction: f64| Ppm(to_ppm(fraction));
        match verdict {
            Verdict::Scored(score) => VerdictView::Scored {
                score: ppm(score.reliability),
                lower: ppm(score.lower),
                upper: ppm(score.upper),
            },
            Verdict::Unscored(Unscored::NoPackets) => VerdictView::NoPackets,
            Verdict::Unscored(Unscored::TooFewPackets) => VerdictView::TooFewPackets,
            Verdict::Unscored(Unscored::AloneInGroup) => VerdictView::AloneInGroup,
        }
    }
}

/// What one monitor's evidence of an epoch says about one node.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeEvidence {
    /// What it was tested as.
    pub group: Group,
    /// Test routes through it (a gateway that was a route's entry and exit counts once).
    pub routes: u64,
    /// Of those, how many had it at each hop: entry gateway, layers 1 to 3, exit gateway.
    pub by_hop: [u64; 5],
    /// Routes through it that came back within the loss deadline.
    pub received: u64,
    /// Routes through it that did not.
    pub lost: u64,
    /// Routes through it that counted toward the scores.
    pub judged: u64,
    /// Of those, lost.
    pub judged_lost: u64,
    /// Routes through it that did not count, as the monitor's own fault.
    pub voided: VoidCounts,
    /// Judged packets through it, as attribution counts them (a route it was entry and exit
    /// of counts twice).
    pub packets: u64,
    /// How many of those packets attribution estimates it dropped (the rest of the loss on
    /// its routes is put on their other hops, or on the loss common to every route).
    pub dropped: f64,
    /// The loss common to every route, which no node is blamed for (the epoch's).
    pub unattributed_loss: Ppm,
    /// Its score, or why it has none.
    pub verdict: VerdictView,
    /// The judged packets a node needs for a score.
    pub min_packets: u32,
    /// Its latest lost routes (at most [`LOST_ROUTES_SHOWN`]), newest first.
    pub lost_routes: Vec<LostRoute>,
}

/// A lost route through the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LostRoute {
    /// The route's number in the evidence.
    pub id: u64,
    /// When it was sent (ms since the epoch's start, as the monitor saw it).
    pub sent_ms: u64,
    /// Entry gateway, the mix nodes of layers 1 to 3, exit gateway.
    pub hops: Vec<Hop>,
    /// Why it counted toward no score, if it did not.
    pub voided: Option<Void>,
}

/// A hop of a lost route, with what the same evidence says of that node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Hop {
    /// The node.
    pub node: NodeRef,
    /// Its score in this evidence (none: unscored).
    pub score: Option<Ppm>,
}

/// What `examined` says about node `id`, if it lists it; hops are named from `snapshot`.
pub fn summarize(examined: &Examined, snapshot: &Snapshot, id: NodeId) -> Option<NodeEvidence> {
    let evidence = &examined.evidence;
    let attribution = &examined.attribution;
    let node = attribution.nodes.iter().find(|node| node.node.0 == id.0)?;
    let scores: BTreeMap<u32, Option<Ppm>> = attribution
        .nodes
        .iter()
        .map(|node| {
            let score = match node.verdict {
                Verdict::Scored(score) => Some(Ppm(to_ppm(score.reliability))),
                Verdict::Unscored(_) => None,
            };
            (node.node.0, score)
        })
        .collect();
    let mut summary = NodeEvidence {
        group: node.group,
        routes: 0,
        by_hop: [0; 5],
        received: 0,
        lost: 0,
        judged: 0,
        judged_lost: 0,
        voided: VoidCounts::default(),
        packets: node.packets,
        dropped: node.dropped,
        unattributed_loss: Ppm(to_ppm(attribution.unattributed_loss)),
        verdict: node.verdict.into(),
        min_packets: evidence.rules.min_packets,
        lost_routes: Vec::new(),
    };
    let mut lost_routes = Vec::new();
    for (route, void) in evidence.routes.iter().zip(&examined.voided) {
        if !route.hops.contains(&id.0) {
            continue;
        }
        summary.routes += 1;
        for (count, hop) in summary.by_hop.iter_mut().zip(route.hops) {
            *count += u64::from(hop == id.0);
        }
        let lost = route.latency_us.is_none();
        if lost {
            summary.lost += 1;
            lost_routes.push((route, *void));
        } else {
            summary.received += 1;
        }
        match void {
            None => {
                summary.judged += 1;
                summary.judged_lost += u64::from(lost);
            }
            Some(VoidReason::GatewayDown) => summary.voided.gateway_down += 1,
            Some(VoidReason::Starved) => summary.voided.starved += 1,
            Some(VoidReason::MassFailure) => summary.voided.mass_failure += 1,
        }
    }
    summary.lost_routes = lost_routes
        .iter()
        .rev()
        .take(LOST_ROUTES_SHOWN)
        .map(|(route, void)| LostRoute {
            id: route.id,
            sent_ms: route.sent_ms,
            hops: route
                .hops
                .iter()
                .map(|&hop| Hop {
                    node: NodeRef::of(snapshot, NodeId(hop)),
                    score: scores.get(&hop).copied().flatten(),
                })
                .collect(),
            voided: void.map(Void::from),
        })
        .collect();
    Some(summary)
}

impl EvidenceSection {
    /// Node `id`'s section: of the latest [`EVIDENCE_EPOCHS`] finished epochs it was active in,
    /// the newest with any monitor's evidence shown, else the newest (saying why nothing is
    /// shown).
    pub fn build(
        snapshot: &Snapshot,
        links: &Links,
        evidences: &Evidences,
        id: NodeId,
    ) -> EvidenceSection {
        let history = &snapshot.data.history;
        let first = history
            .len()
            .checked_sub(EVIDENCE_EPOCHS)
            .and_then(|start| history.get(start))
            .or_else(|| history.first())
            .map_or(u64::MAX, |report| report.epoch);
        let mut fallback = None;
        for (report, _) in snapshot
            .history_of(id)
            .rev()
            .take_while(|(report, _)| report.epoch >= first)
        {
            let monitors: Vec<MonitorEvidence> = report
                .monitors
                .iter()
                .map(|submission| MonitorEvidence {
                    monitor: submission.monitor,
                    score: submission
                        .scores
                        .iter()
                        .find(|(node, _)| *node == id)
                        .map(|&(_, score)| score),
                    evidence: submission.evidence,
                    evidence_url: links.evidence_url(&submission.monitor, report.epoch),
                    status: status(
                        snapshot,
                        links,
                        evidences,
                        (&submission.monitor, report.epoch),
                        id,
                    ),
                })
                .collect();
            let section = EvidenceSection {
                epoch: Some(report.epoch),
                monitors,
            };
            if section
                .monitors
                .iter()
                .any(|monitor| matches!(monitor.status, EvidenceStatus::Shown { .. }))
            {
                return section;
            }
            fallback.get_or_insert(section);
        }
        fallback.unwrap_or(EvidenceSection {
            epoch: None,
            monitors: Vec::new(),
        })
    }
}

/// What `evidences` has of `monitor`'s evidence of `epoch` about node `id`.
fn status(
    snapshot: &Snapshot,
    links: &Links,
    evidences: &Evidences,
    (monitor, epoch): (&PublicKey, u64),
    id: NodeId,
) -> EvidenceStatus {
    if !links.monitors.contains_key(monitor) {
        return EvidenceStatus::NoUrl;
    }
    match evidences.get(&(*monitor, epoch)) {
        None => EvidenceStatus::NotFetched,
        Some(Fetched::Failed {
            problem,
            attempts,
            retry_ms,
        }) => EvidenceStatus::Failed {
            problem: problem.clone(),
            attempts: *attempts,
            retry_ms: *retry_ms,
        },
        Some(Fetched::Examined(examined)) => match summarize(examined, snapshot, id) {
            Some(summary) => EvidenceStatus::Shown { summary },
            None => EvidenceStatus::NotListed,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixture;

    #[test]
    fn a_node_on_a_lost_route() {
        let snapshot = fixture::snapshot();
        let evidence = fixture::evidence();
        let examined = Examined::examine(&evidence.to_json(), 2, &Hash(evidence.hash().0))
            .expect("the evidence the ledger recorded");
        // node 3 (carol, layer 3) drops a quarter of what crosses it
        let carol = summarize(&examined, &snapshot, NodeId(3)).expect("listed");
        assert_eq!(carol.group, Group::Layer3);
        let through: Vec<_> = evidence
            .routes
            .iter()
            .filter(|route| route.hops.contains(&3))
            .collect();
        let lost = through.iter().filter(|r| r.latency_us.is_none()).count() as u64;
        assert_eq!(carol.routes, through.len() as u64);
        assert_eq!(carol.by_hop, [0, 0, 0, carol.routes, 0]);
        assert_eq!(carol.lost, lost);
        assert_eq!(carol.received + carol.lost, carol.routes);
        assert!(carol.lost > 0);
        // every route is judged (no faults in this evidence)
        assert_eq!(carol.judged, carol.routes);
        assert_eq!(carol.judged_lost, carol.lost);
        assert_eq!(carol.voided, VoidCounts::default());
        // the monitor's own figures: attribution's packets, drops and score
        let own = examined
            .attribution
            .nodes
            .iter()
            .find(|node| node.node.0 == 3)
            .unwrap();
        assert_eq!(carol.packets, own.packets);
        assert_eq!(carol.dropped, own.dropped);
        assert_eq!(carol.verdict, VerdictView::from(own.verdict));
        let VerdictView::Scored { score, .. } = carol.verdict else {
            panic!("{:?}", carol.verdict)
        };
        assert!(score.0 < 900_000, "{score:?}");
        // it is blamed for nearly all the loss on its routes
        assert!(carol.dropped > 0.8 * carol.lost as f64, "{carol:?}");
        // the latest lost routes, newest first, hops named
        let shown = carol.lost_routes.len();
        assert_eq!(shown, (lost as usize).min(LOST_ROUTES_SHOWN));
        let newest = through
            .iter()
            .rev()
            .find(|r| r.latency_us.is_none())
            .unwrap();
        assert_eq!(carol.lost_routes[0].id, newest.id);
        assert!(carol.lost_routes[0].sent_ms >= carol.lost_routes[shown - 1].sent_ms);
        assert_eq!(carol.lost_routes[0].hops[3].node.moniker, "carol");
        assert_eq!(carol.lost_routes[0].hops[3].score, Some(score));
        assert_eq!(carol.lost_routes[0].voided, None);
    }

    #[test]
    fn a_node_on_routes_all_received() {
        let snapshot = fixture::snapshot();
        let evidence = fixture::evidence();
        let examined = Examined::examine(&evidence.to_json(), 2, &Hash(evidence.hash().0)).unwrap();
        // node 1 (alice, layer 1) dropped nothing, but routes through it crossed carol
        let alice = summarize(&examined, &snapshot, NodeId(1)).unwrap();
        assert_eq!(alice.group, Group::Layer1);
        assert!(alice.routes > 0);
        assert_eq!(alice.received + alice.lost, alice.routes);
        let VerdictView::Scored { score, .. } = alice.verdict else {
            panic!("{:?}", alice.verdict)
        };
        assert_eq!(score, Ppm(1_000_000));
        assert!(alice.dropped < 1.0, "{alice:?}");
        // its lost routes (all through carol) show carol's score next to her
        for route in &alice.lost_routes {
            assert_eq!(route.hops[3].node.id, NodeId(3));
            assert!(route.hops[3].score.unwrap().0 < 900_000);
        }
        // node 6 (the second layer-1 node), all routes back
        let six = summarize(&examined, &snapshot, NodeId(6)).unwrap();
        assert_eq!(six.lost, 0);
        assert_eq!(six.received, six.routes);
        assert!(six.lost_routes.is_empty());
        // a node the evidence does not list
        assert!(summarize(&examined, &snapshot, NodeId(4)).is_none());
    }

    #[test]
    fn evidence_that_is_not_what_the_ledger_recorded_is_refused() {
        let evidence = fixture::evidence();
        let recorded = Hash(evidence.hash().0);
        let mut changed = evidence.clone();
        changed.routes[0].latency_us = None;
        let served = Hash(changed.hash().0);
        let refused = Examined::examine(&changed.to_json(), 2, &recorded).unwrap_err();
        assert_eq!(refused, EvidenceProblem::Mismatch { served, recorded });
        assert!(
            refused
                .to_string()
                .contains("does not match what it submitted")
        );
        assert_eq!(
            Examined::examine(&evidence.to_json(), 1, &recorded).unwrap_err(),
            EvidenceProblem::WrongEpoch { served: 2 }
        );
        assert!(matches!(
            Examined::examine("{\"version\": 1}", 2, &recorded),
            Err(EvidenceProblem::Unreadable { .. })
        ));
    }

    #[test]
    fn the_section_says_why_nothing_is_shown() {
        let snapshot = fixture::snapshot();
        let [m1, m2] = fixture::monitors();
        let links = Links {
            monitors: [(m1, "http://127.0.0.1:8090".to_owned())].into(),
            validator: String::new(),
        };
        // node 1 was active in epochs 1 and 2; epoch 2's only submission is m1's
        let section = EvidenceSection::build(&snapshot, &links, &Evidences::new(), NodeId(1));
        assert_eq!(section.epoch, Some(2));
        assert_eq!(section.monitors.len(), 1);
        assert_eq!(section.monitors[0].status, EvidenceStatus::NotFetched);
        assert_eq!(section.monitors[0].score, None);
        // a failed fetch, and a monitor without a URL
        let problem = EvidenceProblem::Fetch {
            reason: "cannot connect".into(),
        };
        let failed = Fetched::Failed {
            problem: problem.clone(),
            attempts: 2,
            retry_ms: 5,
        };
        let evidences = Evidences::from([((m1, 2), failed)]);
        let section = EvidenceSection::build(&snapshot, &links, &evidences, NodeId(1));
        assert_eq!(
            section.monitors[0].status,
            EvidenceStatus::Failed {
                problem,
                attempts: 2,
                retry_ms: 5
            }
        );
        // evidence shown for an older epoch wins over none for a newer one
        let evidence = fixture::evidence_of(1);
        let examined = Examined::examine(&evidence.to_json(), 1, &Hash(evidence.hash().0)).unwrap();
        let evidences = Evidences::from([((m1, 1), Fetched::Examined(Arc::new(examined)))]);
        let section = EvidenceSection::build(&snapshot, &links, &evidences, NodeId(1));
        assert_eq!(section.epoch, Some(1));
        assert!(matches!(
            section.monitors[0].status,
            EvidenceStatus::Shown { .. }
        ));
        assert_eq!(section.monitors[1].monitor, m2);
        assert_eq!(section.monitors[1].status, EvidenceStatus::NoUrl);
        // a node not active lately
        let dave = EvidenceSection::build(&snapshot, &links, &evidences, NodeId(4));
        assert_eq!(dave.epoch, None);
        // what to fetch: each submission of a monitor with a URL, newest epoch first
        let wanted = wanted(&snapshot, &links);
        let keys: Vec<_> = wanted
            .iter()
            .map(|want| (want.monitor, want.epoch))
            .collect();
        assert_eq!(keys, [(m1, 2), (m1, 1)]);
        assert_eq!(wanted[0].recorded, Hash(fixture::evidence().hash().0));
    }
}
