//! Each page's HTML, from its view model. Tables carry each cell's exact figure in
//! `data-value` (µUMB, ppm), so a script can sort them and a test can compare them with the
//! ledger's.

use std::fmt::Write;

use umbra_ledger::{Amount, NodeKind, PPM, Ppm};

use super::chart::{self, Bars, Line, Scale};
use super::html::{
    self, Freshness, Section, duration, escape, full_key, percent, ppm, ppm_percent, short_key,
    time, umb,
};
use crate::model::account::{AccountPage, AccountPending};
use crate::model::epochs::{EpochRow, EpochsPage};
use umbra_monitor::Group;

use crate::model::evidence::{
    EVIDENCE_EPOCHS, EvidenceProblem, EvidenceSection, EvidenceStatus, Hop, MonitorEvidence,
    NodeEvidence, VerdictView, Void,
};
use crate::model::guide::{GuidePage, Step};
use crate::model::node::{NodePage, PendingChange, ScoreView};
use crate::model::nodes::{NodeTable, SortKey};
use crate::model::overview::Overview;
use crate::model::{NodeRef, NodeSummary};

/// Seconds until a page should reload itself: just after the epoch's end, so that a new
/// epoch shows without a script; at least 5 s, at most 10 min.
pub fn refresh_after(remaining_ms: u64) -> u64 {
    (remaining_ms / 1000 + 3).clamp(5, 600)
}

fn percent_scale() -> Scale {
    Scale {
        min: 0.0,
        max: 100.0,
        label: |value| format!("{value:.0}%"),
    }
}

fn umb_scale() -> Scale {
    Scale {
        min: 0.0,
        max: 0.0,
        label: |value| {
            if value >= 100.0 {
                format!("{value:.0}")
            } else {
                format!("{value:.2}")
            }
        },
    }
}

fn to_umb(amount: Amount) -> f64 {
    amount.0 as f64 / 1_000_000.0
}

fn node_link(node: &NodeRef) -> String {
    let name = if node.moniker.is_empty() {
        format!("node {}", node.id)
    } else {
        format!("{} ({})", node.moniker, node.id)
    };
    format!("<a href=\"/nodes/{}\">{}</a>", node.id, escape(&name))
}

fn account_link(key: &umbra_ledger::PublicKey) -> String {
    format!("<a href=\"/accounts/{key}\">{}</a>", short_key(key))
}

fn card(out: &mut String, label: &str, value: &str, test_id: &str) {
    let _ = write!(
        out,
        "<div class=\"card\"><div class=\"label\">{}</div><div class=\"value\" data-test=\"{test_id}\">{value}</div></div>",
        escape(label)
    );
}

/// The overview.
pub fn overview(view: &Overview, freshness: &Freshness, now_ms: u64) -> String {
    let mut body = String::new();
    body.push_str("<div class=\"cards\">");
    let countdown = format!(
        "<span data-ends-ms=\"{}\" data-now-ms=\"{now_ms}\">{}</span>",
        view.epoch.end_ms,
        duration(view.epoch.remaining_ms)
    );
    card(&mut body, "Epoch", &view.epoch.number.to_string(), "epoch");
    card(&mut body, "Ends in", &countdown, "countdown");
    card(
        &mut body,
        "Block height",
        &view.height.to_string(),
        "height",
    );
    card(
        &mut body,
        "Total stake",
        &umb(view.total_stake),
        "total-stake",
    );
    card(
        &mut body,
        "Stake / staking supply",
        &percent(view.stake_share),
        "stake-share",
    );
    card(
        &mut body,
        "Saturation point (a node)",
        &umb(view.saturation_point),
        "saturation-point",
    );
    if let Some(last) = &view.last_rewards {
        card(
            &mut body,
            &format!("Rewards paid in epoch {}", last.epoch),
            &umb(last.total),
            "last-rewards",
        );
    }
    card(&mut body, "Reward pool", &umb(view.reward_pool), "pool");
    card(
        &mut body,
        "Nodes",
        &format!(
            "{} mix · {} gateways · {} active",
            view.counts.mix_nodes, view.counts.gateways, view.counts.active
        ),
        "nodes",
    );
    body.push_str("</div>");

    body.push_str("<h2>The active set</h2><div class=\"layers\">");
    let groups = view
        .active_set
        .layers
        .iter()
        .enumerate()
        .map(|(index, nodes)| (format!("Layer {}", index + 1), nodes))
        .chain(std::iter::once((
            "Gateways".to_owned(),
            &view.active_set.gateways,
        )));
    for (label, nodes) in groups {
        let _ = write!(
            body,
            "<div class=\"card\"><div class=\"label\">{label}</div>"
        );
        if nodes.is_empty() {
            body.push_str("<div class=\"muted\">none</div>");
        }
        for node in nodes {
            let _ = write!(body, "<div>{}</div>", node_link(node));
        }
        body.push_str("</div>");
    }
    body.push_str("</div>");

    body.push_str("<h2>Reliability measured by the monitors</h2>");
    let mean: Vec<(f64, f64)> = view
        .reliability
        .iter()
        .filter_map(|point| Some((point.epoch as f64, ppm_percent(point.mean_performance?))))
        .collect();
    let worst: Vec<(f64, f64)> = view
        .reliability
        .iter()
        .filter_map(|point| Some((point.epoch as f64, ppm_percent(point.worst_performance?))))
        .collect();
    if mean.is_empty() {
        body.push_str("<p class=\"muted\">No epoch has been measured by a monitor yet.</p>");
    }
    body.push_str(&chart::line_chart(
        "Mean and lowest performance of the measured active nodes, per epoch",
        &[
            Line {
                name: "mean".into(),
                class: "s1",
                points: mean,
            },
            Line {
                name: "lowest".into(),
                class: "s3",
                points: worst,
            },
        ],
        percent_scale(),
    ));

    body.push_str("<h2>Validators</h2><div class=\"scroll\"><table><thead><tr><th>Name</th><th>Key</th><th class=\"num\">Power</th><th>Signed the current topology</th></tr></thead><tbody>");
    for validator in &view.validators {
        let signed = match validator.signed_topology {
            Some(true) => "yes",
            Some(false) => "<span class=\"bad\">no</span>",
            None => "<span class=\"muted\">no topology certified yet</span>",
        };
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{signed}</td></tr>",
            escape(&validator.name),
            short_key(&validator.key),
            validator.power
        );
    }
    body.push_str("</tbody></table></div>");

    body.push_str("<h2>Monitors</h2>");
    if view.monitors.is_empty() {
        body.push_str(
            "<p class=\"muted\">Genesis names no monitor: every node keeps its performance.</p>",
        );
    } else {
        body.push_str("<div class=\"scroll\"><table><thead><tr><th>Account</th><th>Submitted this epoch</th><th>Last evidence on the ledger</th><th>Evidence published at</th></tr></thead><tbody>");
        for monitor in &view.monitors {
            let last = monitor.last_evidence.map_or_else(
                || "<span class=\"muted\">none yet</span>".to_owned(),
                |(epoch, hash)| format!("epoch {epoch}: {}", short_key(&hash)),
            );
            let base = monitor.evidence_base.as_ref().map_or_else(
                || "<span class=\"muted\">not configured</span>".to_owned(),
                |base| {
                    format!(
                        "<a href=\"{0}/evidence\">{0}</a>",
                        escape(base.trim_end_matches('/'))
                    )
                },
            );
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{last}</td><td>{base}</td></tr>",
                short_key(&monitor.account),
                if monitor.submitted_this_epoch {
                    "yes"
                } else {
                    "not yet"
                }
            );
        }
        body.push_str("</tbody></table></div>");
    }
    let _ = write!(
        body,
        "<p class=\"muted\">Chain <code>{}</code>, last block at {}. Epoch {} started {} and may end at {}; its budget is {}.</p>",
        escape(&view.chain_id),
        time(view.block_time_ms),
        view.epoch.number,
        time(view.epoch.start_ms),
        time(view.epoch.end_ms),
        umb(view.epoch.budget)
    );
    html::page(
        "Overview",
        Section::Overview,
        freshness,
        Some(refresh_after(view.epoch.remaining_ms)),
        "/api/overview",
        &body,
    )
}

/// The mix node or gateway table.
pub fn node_table(table: &NodeTable, freshness: &Freshness, remaining_ms: u64) -> String {
    let (title, path, section) = match table.kind {
        NodeKind::Mix => ("Mix nodes", "/mixnodes", Section::MixNodes),
        NodeKind::Gateway => ("Gateways", "/gateways", Section::Gateways),
    };
    let query = &table.query;
    let mut body = String::new();
    let _ = write!(
        body,
        "<p>Which node to delegate to: each one's stake against the saturation point ({}: stake beyond it earns nothing more), its margin and cost, its performance, and what <strong>1,000 UMB</strong> delegated to it earned per epoch, on average over the last {} epochs (epochs it sat out count as nothing). Click a column to sort.</p>",
        umb(table.saturation_point),
        table.recent_epochs
    );
    // filters: a plain GET form, so they work without a script
    let _ = write!(
        body,
        "<form class=\"filters\" method=\"get\" action=\"{path}\"><input type=\"hidden\" name=\"sort\" value=\"{}\"><input type=\"hidden\" name=\"dir\" value=\"{}\">",
        query.sort.name(),
        query.dir.name()
    );
    if table.kind == NodeKind::Mix {
        body.push_str("<label>Layer<select name=\"layer\"><option value=\"\">any</option>");
        for layer in 1..=3u8 {
            let selected = if query.layer == Some(layer) {
                " selected"
            } else {
                ""
            };
            let _ = write!(body, "<option value=\"{layer}\"{selected}>{layer}</option>");
        }
        body.push_str("</select></label>");
    }
    body.push_str("<label>Active<select name=\"active\">");
    for (value, label, chosen) in [
        ("", "any", query.active.is_none()),
        ("yes", "active", query.active == Some(true)),
        ("no", "not active", query.active == Some(false)),
    ] {
        let selected = if chosen { " selected" } else { "" };
        let _ = write!(body, "<option value=\"{value}\"{selected}>{label}</option>");
    }
    let _ = write!(
        body,
        "</select></label><label>Search<input name=\"q\" value=\"{}\" placeholder=\"moniker, number, key\"></label><button>Filter</button></form>",
        escape(&query.search)
    );
    let _ = write!(
        body,
        "<p class=\"muted\" data-test=\"count\">{} of {} shown.</p>",
        table.rows.len(),
        table.total
    );
    body.push_str("<div class=\"scroll\"><table data-sortable><thead><tr>");
    for (key, label) in columns(table.kind) {
        let link = query.sorted_by(key);
        let sort = if query.sort == key {
            match query.dir {
                crate::model::nodes::Direction::Asc => " aria-sort=\"ascending\"",
                crate::model::nodes::Direction::Desc => " aria-sort=\"descending\"",
            }
        } else {
            ""
        };
        let class = if matches!(key, SortKey::Moniker | SortKey::Layer) {
            ""
        } else {
            " class=\"num\""
        };
        let _ = write!(
            body,
            "<th{class}><a href=\"{path}?{}\" data-sort=\"{}\" data-first=\"{}\"{sort}>{label}</a></th>",
            escape(&link.to_query_string()),
            key.name(),
            key.natural_direction().name()
        );
    }
    body.push_str("<th>Identity</th></tr></thead><tbody>");
    for row in &table.rows {
        node_row(&mut body, row, table.kind);
    }
    body.push_str("</tbody></table></div>");
    let api = format!("/api{path}?{}", query.to_query_string());
    html::page(
        title,
        section,
        freshness,
        Some(refresh_after(remaining_ms)),
        &api,
        &body,
    )
}

fn columns(kind: NodeKind) -> Vec<(SortKey, &'static str)> {
    let mut columns = vec![(SortKey::Id, "#"), (SortKey::Moniker, "Moniker")];
    if kind == NodeKind::Mix {
        columns.push((SortKey::Layer, "Layer"));
    }
    columns.extend([
        (SortKey::Pledge, "Pledge"),
        (SortKey::Delegations, "Delegations"),
        (SortKey::Saturation, "Saturation"),
        (SortKey::Margin, "Margin"),
        (SortKey::Cost, "Cost / interval"),
        (SortKey::Performance, "Performance"),
        (SortKey::Earnings, "1,000 UMB earned / epoch"),
    ]);
    columns
}

fn node_row(body: &mut String, row: &NodeSummary, kind: NodeKind) {
    let _ = write!(
        body,
        "<tr data-id=\"{0}\"><td class=\"num\" data-value=\"{0}\"><a href=\"/nodes/{0}\">{0}</a></td><td data-value=\"{1}\"><a href=\"/nodes/{0}\">{1}</a>{2}</td>",
        row.id,
        escape(&row.moniker),
        if row.unbonding {
            " <span class=\"tag\">leaving</span>"
        } else {
            ""
        }
    );
    if kind == NodeKind::Mix {
        let (value, label) = match (row.active, row.layer) {
            (true, Some(layer)) => (u32::from(layer), layer.to_string()),
            _ => (9, "<span class=\"muted\">inactive</span>".to_owned()),
        };
        let _ = write!(body, "<td data-value=\"{value}\">{label}</td>");
    }
    let earnings = match row.earnings_per_thousand {
        Some(amount) => format!(
            "<td class=\"num\" data-value=\"{}\" title=\"active in {} of the last {} epochs\">{}</td>",
            amount.0,
            row.recent_active_epochs,
            row.recent_epochs,
            umb(amount)
        ),
        None => {
            "<td class=\"num\" data-value=\"-1\"><span class=\"muted\">no epoch yet</span></td>"
                .to_owned()
        }
    };
    let saturation_class = if row.saturation > u64::from(PPM.0) {
        " bad"
    } else {
        ""
    };
    let _ = write!(
        body,
        "<td class=\"num\" data-value=\"{}\">{}</td><td class=\"num\" data-value=\"{}\">{}</td><td class=\"num{saturation_class}\" data-value=\"{}\">{}</td><td class=\"num\" data-value=\"{}\">{}</td><td class=\"num\" data-value=\"{}\">{}</td><td class=\"num\" data-value=\"{}\">{}</td>{earnings}<td>{}</td></tr>",
        row.pledge.0,
        umb(row.pledge),
        row.delegations.0,
        umb(row.delegations),
        row.saturation,
        percent(row.saturation),
        row.profit_margin.0,
        ppm(row.profit_margin),
        row.operating_cost.0,
        umb(row.operating_cost),
        row.performance.0,
        ppm(row.performance),
        short_key(&row.identity)
    );
}

fn scores(scores: &[ScoreView]) -> String {
    if scores.is_empty() {
        return "<span class=\"muted\">none</span>".to_owned();
    }
    scores
        .iter()
        .map(|score| {
            let evidence = match (&score.evidence, &score.evidence_url) {
                (Some(hash), Some(url)) => format!(
                    " · evidence <a href=\"{}\">{}</a>",
                    escape(url),
                    short_key(hash)
                ),
                (Some(hash), None) => format!(" · evidence {}", short_key(hash)),
                _ => String::new(),
            };
            format!(
                "<div>{}: <strong>{}</strong>{evidence}</div>",
                short_key(&score.monitor),
                ppm(score.score)
            )
        })
        .collect()
}

/// The "why this score" section: each monitor's evidence of the node's latest finished epoch.
fn evidence_section(body: &mut String, section: &EvidenceSection, threshold: Ppm) {
    body.push_str("<h2 id=\"evidence\">Why this score: the monitors' evidence</h2>");
    let Some(epoch) = section.epoch else {
        let _ = write!(
            body,
            "<p class=\"muted\" data-test=\"evidence-none\">It was not in the active set of any of the last {EVIDENCE_EPOCHS} finished epochs, so no monitor tested it.</p>"
        );
        return;
    };
    let _ = write!(
        body,
        "<p>Epoch {epoch}: the routes each monitor sent through it, what came back, and how the monitor judged it (computed here from the monitor's published evidence, checked against the hash it submitted to the ledger).</p>"
    );
    if section.monitors.is_empty() {
        body.push_str(
            "<p class=\"muted\">No monitor submitted scores for that epoch: its last performance was kept.</p>",
        );
    }
    for monitor in &section.monitors {
        monitor_evidence(body, monitor, threshold);
    }
}

/// One monitor's part of the evidence section.
fn monitor_evidence(body: &mut String, monitor: &MonitorEvidence, threshold: Ppm) {
    let score = monitor.score.map_or_else(
        || "no score for it".to_owned(),
        |score| format!("scored it {}", ppm(score)),
    );
    let raw = match &monitor.evidence_url {
        Some(url) => format!(
            " · <a href=\"{}\">raw evidence</a> ({})",
            escape(url),
            short_key(&monitor.evidence)
        ),
        None => format!(" · evidence {}", short_key(&monitor.evidence)),
    };
    let _ = write!(
        body,
        "<h3>Monitor {}: {score}</h3><p class=\"muted\">{}</p>",
        short_key(&monitor.monitor),
        raw.trim_start_matches(" · ")
    );
    match &monitor.status {
        EvidenceStatus::Shown { summary } => node_evidence(body, summary, threshold),
        EvidenceStatus::NoUrl => body.push_str(
            "<p class=\"muted\" data-test=\"evidence-status\">The explorer does not know where this monitor publishes its evidence (no <code>[[monitors]]</code> entry for it in the explorer's <code>config.toml</code>).</p>",
        ),
        EvidenceStatus::NotFetched => body.push_str(
            "<p class=\"muted\" data-test=\"evidence-status\">Not fetched yet: the explorer fetches each monitor's evidence in the background after the epoch ends.</p>",
        ),
        EvidenceStatus::NotListed => body.push_str(
            "<p class=\"muted\" data-test=\"evidence-status\">This monitor's evidence does not list the node.</p>",
        ),
        EvidenceStatus::Failed {
            problem,
            attempts,
            retry_ms,
        } => {
            let class = if matches!(problem, EvidenceProblem::Mismatch { .. }) {
                "bad"
            } else {
                "muted"
            };
            let _ = write!(
                body,
                "<p class=\"{class}\" data-test=\"evidence-status\">Not shown: {} (tried {attempts} time{}; next try at {}).</p>",
                escape(&problem.to_string()),
                if *attempts == 1 { "" } else { "s" },
                time(*retry_ms)
            );
        }
    }
}

/// What one monitor's evidence says about the node: counts, verdict, lost routes (hops
/// scored below `threshold` stand out).
fn node_evidence(body: &mut String, summary: &NodeEvidence, threshold: Ppm) {
    let [entry, .., exit] = summary.by_hop;
    let place = match summary.group {
        Group::Layer1 => "a mix node of layer 1".to_owned(),
        Group::Layer2 => "a mix node of layer 2".to_owned(),
        Group::Layer3 => "a mix node of layer 3".to_owned(),
        Group::Gateway => format!("a gateway ({entry} as entry, {exit} as exit)"),
    };
    let _ = write!(
        body,
        "<p data-test=\"evidence-counts\">Tested as {place} on <strong>{}</strong> routes: <strong>{}</strong> came back, <strong>{}</strong> were lost.",
        summary.routes, summary.received, summary.lost
    );
    let voided = summary.voided;
    let left_out = voided.gateway_down + voided.starved + voided.mass_failure;
    if left_out > 0 {
        let _ = write!(
            body,
            " {left_out} of them count toward no score, as the monitor's own fault ({} with a gateway session down, {} while it was starved, {} in a mass failure).",
            voided.gateway_down, voided.starved, voided.mass_failure
        );
    }
    let _ = write!(
        body,
        " The {} judged routes ({} lost) carried {} of its packets; the monitor's estimate is that it dropped {:.1} of them, and puts the rest of the loss on the routes' other hops or on the loss common to every route ({} this epoch, which no node is blamed for).</p>",
        summary.judged,
        summary.judged_lost,
        summary.packets,
        summary.dropped,
        ppm(summary.unattributed_loss)
    );
    let verdict = match summary.verdict {
        VerdictView::Scored {
            score,
            lower,
            upper,
        } => format!(
            "Its score: <strong>{}</strong> of the best node of its group (confidence interval {} to {}).",
            ppm(score),
            ppm(lower),
            ppm(upper)
        ),
        VerdictView::NoPackets => {
            "No score: no judged route crossed it, so the ledger kept its last performance.".into()
        }
        VerdictView::TooFewPackets => format!(
            "No score: fewer than {} judged packets crossed it, so the ledger kept its last performance.",
            summary.min_packets
        ),
        VerdictView::AloneInGroup => "No score: no other node of its group was measured, so its loss cannot be told from the rest; the ledger kept its last performance.".into(),
    };
    let _ = write!(body, "<p data-test=\"evidence-verdict\">{verdict}</p>");
    if summary.lost_routes.is_empty() {
        return;
    }
    let shown = summary.lost_routes.len();
    let _ = write!(
        body,
        "<p>{} lost route{}{}. A lost packet is not blamed on one hop (nobody learns which node dropped it): each hop shows its own score in this evidence, so a loss next to a low-scoring node is likely that node's.</p>",
        if shown as u64 == summary.lost {
            "Its".to_owned()
        } else {
            format!("The latest {shown} of its {}", summary.lost)
        },
        if summary.lost == 1 { "" } else { "s" },
        if shown as u64 == summary.lost {
            ""
        } else {
            ", newest first"
        },
    );
    body.push_str("<div class=\"scroll\"><table data-test=\"lost-routes\"><thead><tr><th class=\"num\">Route</th><th class=\"num\">Sent (into the epoch)</th><th>Entry</th><th>Layer 1</th><th>Layer 2</th><th>Layer 3</th><th>Exit</th><th>Counted toward scores</th></tr></thead><tbody>");
    for route in &summary.lost_routes {
        let _ = write!(
            body,
            "<tr><td class=\"num\">{}</td><td class=\"num\" data-value=\"{}\">{}</td>",
            route.id,
            route.sent_ms,
            duration(route.sent_ms)
        );
        for hop in &route.hops {
            let _ = write!(body, "<td>{}</td>", hop_cell(hop, threshold));
        }
        let counted = match route.voided {
            None => "yes",
            Some(Void::GatewayDown) => "no: gateway session down",
            Some(Void::Starved) => "no: monitor starved",
            Some(Void::MassFailure) => "no: mass failure",
        };
        let _ = write!(body, "<td>{counted}</td></tr>");
    }
    body.push_str("</tbody></table></div>");
}

/// A hop of a lost route: its node, linked, and its score in the same evidence (marked when
/// below `threshold`).
fn hop_cell(hop: &Hop, threshold: Ppm) -> String {
    let score = hop.score.map_or_else(
        || "<span class=\"muted\">unscored</span>".to_owned(),
        |score| {
            let class = if score < threshold { "bad" } else { "muted" };
            format!("<span class=\"{class}\">{}</span>", ppm(score))
        },
    );
    format!("{} {score}", node_link(&hop.node))
}

/// A node's page.
pub fn node(view: &NodePage, freshness: &Freshness, remaining_ms: u64) -> String {
    let summary = &view.summary;
    let title = if summary.moniker.is_empty() {
        format!("Node {}", summary.id)
    } else {
        format!("{} (node {})", summary.moniker, summary.id)
    };
    let mut body = String::new();
    let status = match (summary.active, summary.layer, summary.kind) {
        (true, Some(layer), _) => format!("active in layer {layer}"),
        (true, None, _) => "active".to_owned(),
        (false, ..) => "not in the active set this epoch".to_owned(),
    };
    let kind = match summary.kind {
        NodeKind::Mix => "mix node",
        NodeKind::Gateway => "gateway",
    };
    body.push_str("<div class=\"cards\">");
    card(&mut body, "Status", &format!("{kind}, {status}"), "status");
    card(
        &mut body,
        "Performance now",
        &ppm(summary.performance),
        "performance",
    );
    card(&mut body, "Stake", &umb(summary.stake), "stake");
    card(
        &mut body,
        "Saturation",
        &percent(summary.saturation),
        "saturation",
    );
    card(
        &mut body,
        "1,000 UMB delegated earned / epoch lately",
        &summary
            .earnings_per_thousand
            .map_or_else(|| "no epoch yet".to_owned(), umb),
        "earnings",
    );
    body.push_str("</div>");
    if summary.performance < view.threshold {
        let _ = write!(
            body,
            "<p class=\"bad\">Its performance is below the threshold of {}: it is left out of the active set (unless a layer would be empty) and regains some performance each epoch out.</p>",
            ppm(view.threshold)
        );
    }

    body.push_str("<h2>Keys and addresses</h2><dl class=\"facts\">");
    let mut fact = |label: &str, value: String| {
        let _ = write!(body, "<dt>{}</dt><dd>{value}</dd>", escape(label));
    };
    fact(
        "Owner",
        format!(
            "<a href=\"/accounts/{0}\">{1}</a>",
            summary.owner,
            full_key(&summary.owner)
        ),
    );
    fact("Identity key", full_key(&summary.identity));
    fact("Noise key", full_key(&view.noise_key));
    for (rotation, key) in &view.sphinx_keys {
        fact(&format!("Sphinx key, rotation {rotation}"), full_key(key));
    }
    fact(
        "Mix address",
        format!("<code>{}</code>", escape(&view.mix_address)),
    );
    if let Some(address) = &view.client_address {
        fact(
            "Client address",
            format!("<code>{}</code>", escape(address)),
        );
    }
    fact("Pledge", umb(summary.pledge));
    fact("Delegations", umb(summary.delegations));
    fact("Profit margin", ppm(summary.profit_margin));
    fact("Operating cost per interval", umb(summary.operating_cost));
    body.push_str("</dl>");
    let _ = write!(
        body,
        "<p><a href=\"/guide?node={}\">How to delegate to this node</a></p>",
        summary.id
    );

    let oldest_first: Vec<_> = view.history.iter().rev().collect();
    body.push_str("<h2>Performance</h2>");
    let mut lines = vec![Line {
        name: "performance".into(),
        class: "s1",
        points: oldest_first
            .iter()
            .map(|row| (row.epoch as f64, ppm_percent(row.performance)))
            .collect(),
    }];
    if let (Some(first), Some(last)) = (oldest_first.first(), oldest_first.last()) {
        lines.push(Line {
            name: "threshold".into(),
            class: "s3",
            points: vec![
                (first.epoch as f64, ppm_percent(view.threshold)),
                (last.epoch as f64, ppm_percent(view.threshold)),
            ],
        });
    }
    body.push_str(&chart::line_chart(
        "The performance its rewards used, per epoch",
        &lines,
        percent_scale(),
    ));
    let _ = write!(
        body,
        "<p>Scores submitted so far this epoch: {}</p>",
        scores(&view.current_scores)
    );
    evidence_section(&mut body, &view.evidence, view.threshold);

    body.push_str("<h2>Rewards</h2>");
    let labels: Vec<u64> = oldest_first.iter().map(|row| row.epoch).collect();
    body.push_str(&chart::bar_chart(
        "Rewards per epoch, in UMB",
        &labels,
        &[
            Bars {
                name: "operator".into(),
                class: "s1",
                values: oldest_first
                    .iter()
                    .map(|row| to_umb(row.operator_reward))
                    .collect(),
            },
            Bars {
                name: "delegators".into(),
                class: "s2",
                values: oldest_first
                    .iter()
                    .map(|row| to_umb(row.delegator_reward))
                    .collect(),
            },
        ],
        umb_scale(),
    ));

    body.push_str("<h2>Epoch by epoch</h2>");
    if view.history.is_empty() {
        body.push_str("<p class=\"muted\">It has not been in the active set of an epoch the ledger still reports.</p>");
    } else {
        body.push_str("<div class=\"scroll\"><table><thead><tr><th class=\"num\">Epoch</th><th>Layer</th><th class=\"num\">Performance</th><th class=\"num\">Stake</th><th class=\"num\">Operator</th><th class=\"num\">Delegators</th><th class=\"num\">1,000 UMB earned</th><th>Monitors' scores and evidence</th></tr></thead><tbody>");
        for row in &view.history {
            let layer = row
                .layer
                .map_or("gateway".to_owned(), |layer| layer.to_string());
            let measured = if row.measured {
                ""
            } else {
                " <span class=\"tag\" title=\"no monitor scored it: its last performance was used\">kept</span>"
            };
            let _ = write!(
                body,
                "<tr><td class=\"num\">{}</td><td>{layer}</td><td class=\"num\" data-value=\"{}\">{}{measured}</td><td class=\"num\" data-value=\"{}\">{}</td><td class=\"num\" data-value=\"{}\">{}</td><td class=\"num\" data-value=\"{}\">{}</td><td class=\"num\" data-value=\"{}\">{}</td><td>{}</td></tr>",
                row.epoch,
                row.performance.0,
                ppm(row.performance),
                row.stake.0,
                umb(row.stake),
                row.operator_reward.0,
                umb(row.operator_reward),
                row.delegator_reward.0,
                umb(row.delegator_reward),
                row.per_thousand.0,
                umb(row.per_thousand),
                scores(&row.scores)
            );
        }
        body.push_str("</tbody></table></div>");
    }

    body.push_str("<h2>Delegations</h2>");
    if view.delegations.is_empty() {
        body.push_str("<p class=\"muted\">None yet.</p>");
    } else {
        body.push_str("<div class=\"scroll\"><table><thead><tr><th>Delegator</th><th class=\"num\">Delegated</th><th class=\"num\">Worth now</th><th class=\"num\">Rewards</th></tr></thead><tbody>");
        for row in &view.delegations {
            let _ = write!(
                body,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                account_link(&row.delegator),
                umb(row.amount),
                umb(row.value),
                umb(row.rewards)
            );
        }
        body.push_str("</tbody></table></div>");
    }
    if !view.pending.is_empty() {
        body.push_str("<h2>At the end of this epoch</h2><ul>");
        for change in &view.pending {
            let text = match change {
                PendingChange::Delegate { delegator, amount } => {
                    format!("{} delegated by {}", umb(*amount), account_link(delegator))
                }
                PendingChange::Undelegate { delegator } => {
                    format!("{} withdraws its delegation", account_link(delegator))
                }
                PendingChange::Unbond => {
                    "the node leaves; its pledge and delegations return".to_owned()
                }
            };
            let _ = write!(body, "<li>{text}</li>");
        }
        body.push_str("</ul>");
    }
    html::page(
        &title,
        Section::Other,
        freshness,
        Some(refresh_after(remaining_ms)),
        &format!("/api/nodes/{}", summary.id),
        &body,
    )
}

/// An account's page.
pub fn account(view: &AccountPage, freshness: &Freshness, live_error: Option<&str>) -> String {
    let mut body = String::new();
    let _ = write!(body, "<p>{}</p>", full_key(&view.address));
    if let Some(error) = live_error {
        let _ = write!(
            body,
            "<p class=\"bad\">The balance could not be read: {}</p>",
            escape(error)
        );
    }
    body.push_str("<div class=\"cards\">");
    card(
        &mut body,
        "Balance",
        &view.balance.map_or_else(|| "unknown".to_owned(), umb),
        "balance",
    );
    card(
        &mut body,
        "Delegations worth",
        &umb(view.delegated_value),
        "delegated",
    );
    card(
        &mut body,
        "Rewards earned by them",
        &umb(view.delegation_rewards),
        "rewards",
    );
    body.push_str("</div><h2>Delegations</h2>");
    if view.delegations.is_empty() {
        body.push_str("<p class=\"muted\">None.</p>");
    } else {
        body.push_str("<div class=\"scroll\"><table><thead><tr><th>Node</th><th class=\"num\">Delegated</th><th class=\"num\">Worth now</th><th class=\"num\">Rewards</th></tr></thead><tbody>");
        for row in &view.delegations {
            let _ = write!(
                body,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                node_link(&row.node),
                umb(row.amount),
                umb(row.value),
                umb(row.rewards)
            );
        }
        body.push_str("</tbody></table></div>");
    }
    body.push_str("<h2>Nodes owned</h2>");
    if view.nodes.is_empty() {
        body.push_str("<p class=\"muted\">None.</p>");
    } else {
        body.push_str("<div class=\"scroll\"><table><thead><tr><th>Node</th><th class=\"num\">Pledge</th><th class=\"num\">Stake</th><th>Active</th></tr></thead><tbody>");
        for node in &view.nodes {
            let _ = write!(
                body,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                node_link(&node.node),
                umb(node.pledge),
                umb(node.stake),
                if node.active { "yes" } else { "no" }
            );
        }
        body.push_str("</tbody></table></div>");
    }
    if !view.pending.is_empty() {
        body.push_str("<h2>At the end of this epoch</h2><ul>");
        for change in &view.pending {
            let text = match change {
                AccountPending::Delegate { node, amount } => format!(
                    "{} joins <a href=\"/nodes/{node}\">node {node}</a>'s stake",
                    umb(*amount)
                ),
                AccountPending::Undelegate { node } => format!(
                    "the delegation to <a href=\"/nodes/{node}\">node {node}</a> returns to the balance"
                ),
            };
            let _ = write!(body, "<li>{text}</li>");
        }
        body.push_str("</ul>");
    }
    html::page(
        "Account",
        Section::Other,
        freshness,
        None,
        &format!("/api/accounts/{}", view.address),
        &body,
    )
}

fn ids(nodes: &[umbra_ledger::NodeId]) -> String {
    if nodes.is_empty() {
        return "<span class=\"muted\">none</span>".to_owned();
    }
    nodes
        .iter()
        .map(|id| format!("<a href=\"/nodes/{id}\">{id}</a>"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn epoch_row(body: &mut String, row: &EpochRow, current: bool) {
    let seed = row.seed.map_or_else(
        || "<span class=\"muted\">not seen</span>".to_owned(),
        |seed| short_key(&seed),
    );
    let signers = match &row.signers {
        Some(signers) if !signers.is_empty() => signers
            .iter()
            .map(|signer| {
                if signer.name.is_empty() {
                    short_key(&signer.key)
                } else {
                    escape(&signer.name)
                }
            })
            .collect::<Vec<_>>()
            .join(", "),
        _ => "<span class=\"muted\">not seen</span>".to_owned(),
    };
    let rewards = if current {
        "<span class=\"muted\">at its end</span>".to_owned()
    } else {
        format!(
            "{} <span class=\"muted\">({} operators, {} delegators)</span>",
            umb(row.operator_rewards + row.delegator_rewards),
            umb(row.operator_rewards),
            umb(row.delegator_rewards)
        )
    };
    let monitors = if current {
        String::new()
    } else if row.monitors.is_empty() {
        "<span class=\"muted\">none</span>".to_owned()
    } else {
        row.monitors
            .iter()
            .map(|submission| {
                let hash = short_key(&submission.evidence);
                let hash = match &submission.evidence_url {
                    Some(url) => format!("<a href=\"{}\">{hash}</a>", escape(url)),
                    None => hash,
                };
                format!(
                    "<div>{}: {} nodes, evidence {hash}</div>",
                    short_key(&submission.monitor),
                    submission.scored
                )
            })
            .collect()
    };
    let _ = write!(
        body,
        "<tr><td class=\"num\">{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{rewards}</td><td>{monitors}</td><td>{seed}</td><td>{signers}</td></tr>",
        row.epoch,
        if current {
            " <span class=\"tag\">now</span>"
        } else {
            ""
        },
        ids(&row.layers[0]),
        ids(&row.layers[1]),
        ids(&row.layers[2]),
        ids(&row.gateways),
        umb(row.budget)
    );
}

/// The epochs page.
pub fn epochs(view: &EpochsPage, freshness: &Freshness, remaining_ms: u64) -> String {
    let mut body = String::new();
    body.push_str("<p>Each epoch's active set, the seed it was drawn with (the validators' beacon), what it paid, the monitors' submissions, and the validators whose signatures certified its topology. The ledger keeps each past epoch's rewards; the seed and signatures are what this explorer saw while the epoch was current.</p>");
    body.push_str("<div class=\"scroll\"><table><thead><tr><th class=\"num\">Epoch</th><th>Layer 1</th><th>Layer 2</th><th>Layer 3</th><th>Gateways</th><th class=\"num\">Budget</th><th>Rewards paid</th><th>Monitors</th><th>Seed</th><th>Topology signed by</th></tr></thead><tbody>");
    epoch_row(&mut body, &view.current, true);
    for row in &view.past {
        epoch_row(&mut body, row, false);
    }
    body.push_str("</tbody></table></div>");
    pager(&mut body, view);
    let api = if view.page > 1 {
        format!("/api/epochs?page={}", view.page)
    } else {
        "/api/epochs".to_owned()
    };
    html::page(
        "Epochs",
        Section::Epochs,
        freshness,
        Some(refresh_after(remaining_ms)),
        &api,
        &body,
    )
}

/// Links to the newer and older pages of past epochs, and where this one is.
fn pager(body: &mut String, view: &EpochsPage) {
    if view.pages <= 1 {
        return;
    }
    body.push_str("<nav class=\"pager\" data-test=\"pager\">");
    if view.page > 1 {
        let _ = write!(
            body,
            "<a href=\"/epochs?page={}\" rel=\"prev\">Newer epochs</a> ",
            view.page - 1
        );
    }
    let _ = write!(
        body,
        "<span class=\"muted\">page {} of {} ({} past epochs)</span>",
        view.page, view.pages, view.total_past
    );
    if view.page < view.pages {
        let _ = write!(
            body,
            " <a href=\"/epochs?page={}\" rel=\"next\">Older epochs</a>",
            view.page + 1
        );
    }
    body.push_str("</nav>");
}

fn steps(body: &mut String, steps: &[Step]) {
    body.push_str("<ol>");
    for step in steps {
        let _ = write!(
            body,
            "<li><p>{}</p><pre><code>{}</code></pre></li>",
            escape(&step.what),
            escape(&step.command)
        );
    }
    body.push_str("</ol>");
}

/// How to delegate and run a node.
pub fn guide(view: &GuidePage, freshness: &Freshness) -> String {
    let mut body = String::new();
    body.push_str("<h2>Delegate</h2>");
    let _ = write!(
        body,
        "<p>Delegating puts your tokens behind a node: they earn a share of its rewards, in proportion to the stake, after its operating cost and profit margin. Choose a node on the <a href=\"/mixnodes?sort=earnings\">mix nodes</a> or <a href=\"/gateways?sort=earnings\">gateways</a> table{}. Amounts are in UMB; the commands talk to the validator at <code>{}</code>.</p>",
        view.node
            .as_ref()
            .map(|node| format!(" — the commands below name {}", node_link(node)))
            .unwrap_or_default(),
        escape(&view.validator)
    );
    steps(&mut body, &view.delegate);
    body.push_str("<h2>Run a mix node</h2>");
    let _ = write!(
        body,
        "<p>A node needs a pledge of at least {}. A new node's operating cost is {} per interval and its margin {}; epochs last {}. Gateways are made the same way with <code>umbra gateway</code> (<code>register</code> also takes <code>--client-address</code>). See docs/operators.md.</p>",
        umb(view.minimum_pledge),
        umb(view.default_operating_cost),
        ppm(view.default_profit_margin),
        duration(view.epoch_length_ms)
    );
    steps(&mut body, &view.run_node);
    html::page(
        "Delegate · run a node",
        Section::Guide,
        freshness,
        None,
        &view.node.as_ref().map_or("/api/guide".to_owned(), |node| {
            format!("/api/guide?node={}", node.id)
        }),
        &body,
    )
}

/// The page shown when nothing was ever fetched: the banner and nothing else.
pub fn nothing_yet(freshness: &Freshness) -> String {
    html::page(
        "Waiting for the validator",
        Section::Other,
        freshness,
        Some(5),
        "/api/overview",
        "<p>The explorer has no data from the ledger yet. This page reloads itself until it has.</p>",
    )
}

/// A page for something that is not there.
pub fn not_found(freshness: &Freshness, what: &str) -> String {
    html::page(
        "Not found",
        Section::Other,
        freshness,
        None,
        "/api/overview",
        &format!(
            "<p>{}</p><p><a href=\"/\">The overview</a></p>",
            escape(what)
        ),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::Links;
    use crate::model::fixture;
    use crate::model::nodes::TableQuery;

    fn fresh() -> Freshness {
        Freshness {
            validator: "http://127.0.0.1:7000".into(),
            last_answer_ms: Some(1_130_500),
            failing: None,
        }
    }

    #[test]
    fn every_page_renders_with_its_figures_and_charts() {
        let snapshot = fixture::snapshot();
        let links = Links::default();
        let now = 1_150_000;
        let page = overview(&Overview::build(&snapshot, &links, now), &fresh(), now);
        assert!(page.contains("<polyline"), "the reliability chart draws");
        assert!(page.contains("data-test=\"epoch\">3<"));
        assert!(page.contains("<meta http-equiv=\"refresh\" content=\"33\">"));
        let table = NodeTable::build(&snapshot, NodeKind::Mix, TableQuery::default());
        let page = node_table(&table, &fresh(), 30_000);
        assert!(page.contains("data-value=\"309060000\">309.06 UMB"));
        assert!(page.contains("href=\"/mixnodes?sort=performance&amp;dir=desc\""));
        let node_page = NodePage::build(&snapshot, &links, umbra_ledger::NodeId(1)).unwrap();
        let page = node(&node_page, &fresh(), 30_000);
        assert!(page.contains("<polyline") && page.contains("<rect class=\"s2\""));
        let page = epochs(&EpochsPage::build(&snapshot, &links, 1), &fresh(), 30_000);
        assert!(page.contains("<span class=\"tag\">now</span>"));
        let page = guide(&GuidePage::build(&snapshot, &links, None), &fresh());
        assert!(page.contains("delegate --node"));
        let account_page = AccountPage::build(&snapshot, fixture::delegator(), None);
        let page = account(&account_page, &fresh(), Some("connection refused"));
        assert!(page.contains("connection refused"));
        let mut failing = fresh();
        failing.failing = Some("connection refused".into());
        assert!(nothing_yet(&failing).contains("class=\"banner\""));
    }

    #[test]
    fn the_evidence_section_says_what_the_monitor_saw_or_why_nothing() {
        use crate::model::evidence::{Evidences, Examined, Fetched};
        let snapshot = fixture::snapshot();
        let [m1, _] = fixture::monitors();
        let links = Links {
            monitors: [(m1, "http://127.0.0.1:8090".to_owned())].into(),
            validator: String::new(),
        };
        let carol = umbra_ledger::NodeId(3);
        // nothing fetched yet
        let view = NodePage::build(&snapshot, &links, carol).unwrap();
        let page = node(&view, &fresh(), 30_000);
        assert!(page.contains("Not fetched yet"), "{page}");
        // a mismatch is said, in red
        let evidence = fixture::evidence();
        let recorded = umbra_ledger::Hash(evidence.hash().0);
        let mut changed = evidence.clone();
        changed.routes[0].latency_us = None;
        let problem = Examined::examine(&changed.to_json(), 2, &recorded).unwrap_err();
        let evidences = Evidences::from([(
            (m1, 2),
            Fetched::Failed {
                problem,
                attempts: 1,
                retry_ms: 0,
            },
        )]);
        let view = NodePage::build_with(&snapshot, &links, &evidences, carol).unwrap();
        let page = node(&view, &fresh(), 30_000);
        assert!(
            page.contains("<p class=\"bad\" data-test=\"evidence-status\">Not shown: the evidence the monitor serves does not match what it submitted"),
            "{page}"
        );
        // shown: counts, verdict, lost routes with each hop's score (carol's below the
        // threshold stands out)
        let examined = Examined::examine(&evidence.to_json(), 2, &recorded).unwrap();
        let evidences = Evidences::from([((m1, 2), Fetched::Examined(Arc::new(examined)))]);
        let view = NodePage::build_with(&snapshot, &links, &evidences, carol).unwrap();
        let page = node(&view, &fresh(), 30_000);
        assert!(page.contains("Tested as a mix node of layer 3 on <strong>400</strong> routes"));
        assert!(page.contains("Its score: <strong>"), "{page}");
        assert!(page.contains("<a href=\"/nodes/3\">carol (3)</a> <span class=\"bad\">"));
        assert!(page.contains("<a href=\"/nodes/9\">node 9</a>"));
        assert!(page.contains("<div class=\"scroll\"><table data-test=\"lost-routes\">"));
        // a gateway
        let view =
            NodePage::build_with(&snapshot, &links, &evidences, umbra_ledger::NodeId(5)).unwrap();
        let page = node(&view, &fresh(), 30_000);
        assert!(
            page.contains("Tested as a gateway (800 as entry, 800 as exit)"),
            "{page}"
        );
        // a node active in none of the latest epochs
        let view =
            NodePage::build_with(&snapshot, &links, &evidences, umbra_ledger::NodeId(4)).unwrap();
        assert!(node(&view, &fresh(), 30_000).contains("data-test=\"evidence-none\""));
    }
}
