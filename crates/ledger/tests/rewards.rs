//! A worked rewards example: four nodes, two delegators, two monitors, one epoch; every payout
//! computed by hand below and matched to the µUMB.

mod common;

use common::{Chain, genesis, key, register, submit_scores};
use umbra_ledger::{Action, Amount, NodeId, NodeKind, Params, Ppm, UNIT};

#[test]
fn a_worked_epoch_of_rewards() {
    // k = 3 mix slots + 1 gateway slot = 4. Saturation = staking supply / k = 4000 / 4 = 1000 UMB.
    // Pool 50 000 UMB; 2 % per interval of 10 epochs: budget = 50 000 × 0.02 / 10 = 100 UMB
    // per epoch = 100 000 000 µUMB. α = 0.3.
    let params = Params {
        epoch_length_ms: 1_000,
        epochs_per_interval: 10,
        mixes_per_layer: 1,
        active_gateways: 1,
        staking_supply: 4_000 * UNIT,
        ..Params::default()
    };
    let mut chain = Chain::new(genesis(params, 10, 10_000 * UNIT, 1));
    let (a, b, c, g) = (key(1), key(2), key(3), key(4));
    let (d1, d2) = (key(5), key(6));
    // epoch 0: register and bond; nodes get ids 1 (A), 2 (B), 3 (C), 4 (G)
    for (owner, n, kind, pledge) in [
        (&a, 1, NodeKind::Mix, 1_000),
        (&b, 2, NodeKind::Mix, 200),
        (&c, 3, NodeKind::Mix, 2_000),
        (&g, 4, NodeKind::Gateway, 500),
    ] {
        chain
            .act(owner, register(&owner.public(), n, kind))
            .unwrap();
        let node = NodeId(u32::from(n));
        chain
            .act(
                owner,
                Action::Bond {
                    node,
                    amount: pledge * UNIT,
                },
            )
            .unwrap();
    }
    // A and C: no operating cost, no margin. B: 10 UMB per interval (1 UMB per epoch), 10 %.
    // G: no cost, 20 % margin.
    for (owner, node, cost, margin) in [
        (&a, 1, Amount::ZERO, 0),
        (&b, 2, 10 * UNIT, 100_000),
        (&c, 3, Amount::ZERO, 0),
        (&g, 4, Amount::ZERO, 200_000),
    ] {
        chain
            .act(
                owner,
                Action::UpdateNode {
                    node: NodeId(node),
                    operating_cost: cost,
                    profit_margin: Ppm(margin),
                },
            )
            .unwrap();
    }
    // D1 delegates 200 UMB and D2 100 UMB to B: from the boundary on, B's stake is 500 UMB.
    chain
        .act(
            &d1,
            Action::Delegate {
                node: NodeId(2),
                amount: 200 * UNIT,
            },
        )
        .unwrap();
    chain
        .act(
            &d2,
            Action::Delegate {
                node: NodeId(2),
                amount: 100 * UNIT,
            },
        )
        .unwrap();
    assert_eq!(
        chain.state.node(NodeId(2)).unwrap().delegations,
        Amount::ZERO,
        "delegations wait for the boundary"
    );

    // epoch 0 had no active nodes, so it pays nothing; epoch 1 has all four
    chain.advance();
    let active = &chain.state.epoch().active;
    assert_eq!(active.gateways, vec![NodeId(4)]);
    let mut mixes: Vec<NodeId> = active.layers.iter().flatten().copied().collect();
    mixes.sort();
    assert_eq!(mixes, vec![NodeId(1), NodeId(2), NodeId(3)]);
    assert_eq!(chain.state.node(NodeId(2)).unwrap().delegations, 300 * UNIT);

    // epoch 1: the monitors' scores. B gets 0.90 and 0.95: the lower median is 0.90.
    let epoch = 1;
    chain
        .act(
            &key(50),
            Action::SubmitPerformance {
                epoch,
                scores: scores([1_000_000, 900_000, 0, 1_000_000]),
                evidence: umbra_ledger::Hash([7; 32]),
            },
        )
        .unwrap();
    chain
        .act(
            &key(51),
            Action::SubmitPerformance {
                epoch,
                scores: scores([1_000_000, 950_000, 0, 1_000_000]),
                evidence: umbra_ledger::Hash([7; 32]),
            },
        )
        .unwrap();
    let pool_before = chain.state.pool();
    chain.advance();

    // reward = budget × P × σ × (1 + α·λ) / (k · (1 + α))
    //
    // A: pledge 1000 (σ = λ = 1), P = 1:
    //    100 000 000 × 1 × 1 × 1.3 / (4 × 1.3) = 25 000 000, all to the operator.
    // B: pledge 200, delegations 300 → σ = 0.5, λ = 0.2, P = 0.9:
    //    100 000 000 × 0.9 × 0.5 × 1.06 / 5.2 = 47 700 000 / 5.2 = 9 173 076.92 → 9 173 076.
    //    operating cost 1 000 000 × 0.9 = 900 000; rest 8 273 076;
    //    margin 10 %: 827 307 (827 307.6); shared 7 445 769;
    //    pledge share 7 445 769 × 200/500 = 2 978 307 (2 978 307.6); delegators 4 467 462.
    //    operator: 900 000 + 827 307 + 2 978 307 = 4 705 614.
    // C: P = 0 → nothing.
    // G: pledge 500 → σ = λ = 0.5, P = 1:
    //    100 000 000 × 0.5 × 1.15 / 5.2 = 11 057 692.3 → 11 057 692; no cost; margin 20 % =
    //    2 211 538, the rest 8 846 154 is the pledge's share (no delegators): all 11 057 692 to
    //    the operator.
    let report = chain.state.history().last().unwrap();
    assert_eq!(report.epoch, 1);
    assert_eq!(report.budget, Amount(100_000_000));
    let payout = |node: u32| {
        report
            .nodes
            .iter()
            .find(|entry| entry.node == NodeId(node))
            .unwrap()
            .payout
    };
    assert_eq!(split(payout(1)), (25_000_000, 0));
    assert_eq!(split(payout(2)), (4_705_614, 4_467_462));
    assert_eq!(split(payout(3)), (0, 0));
    assert_eq!(split(payout(4)), (11_057_692, 0));
    let b_report = report
        .nodes
        .iter()
        .find(|entry| entry.node == NodeId(2))
        .unwrap();
    assert_eq!(
        (b_report.performance, b_report.measured, b_report.stake),
        (Ppm(900_000), true, 500 * UNIT)
    );

    // rewards compound: pledges grew, and the pool paid exactly the sum
    assert_eq!(
        chain.state.node(NodeId(1)).unwrap().pledge,
        Amount(1_025_000_000)
    );
    assert_eq!(
        chain.state.node(NodeId(2)).unwrap().pledge,
        Amount(204_705_614)
    );
    assert_eq!(
        chain.state.node(NodeId(4)).unwrap().pledge,
        Amount(511_057_692)
    );
    assert_eq!(
        pool_before - chain.state.pool(),
        Amount(25_000_000 + 9_173_076 + 11_057_692)
    );

    // delegators' shares through the per-unit ratio: growth = 4 467 462 / 300 000 000
    // = 0.01489154 exactly; D1's 200 UMB are worth 200 000 000 × 1.01489154 = 202 978 308 and
    // D2's 100 UMB 101 489 154 (2/3 and 1/3 of 4 467 462, as their stakes)
    let value = |delegator: &umbra_ledger::PublicKey| {
        chain
            .state
            .delegations()
            .find(|entry| entry.1 == *delegator)
            .unwrap()
            .3
    };
    assert_eq!(value(&d1.public()), Amount(202_978_308));
    assert_eq!(value(&d2.public()), Amount(101_489_154));
    assert_eq!(
        chain.state.node(NodeId(2)).unwrap().delegations,
        Amount(304_467_462)
    );

    // C measured 0: weight 0, so it is not drawn for epoch 2
    let active: Vec<NodeId> = chain
        .state
        .epoch()
        .active
        .layers
        .iter()
        .flatten()
        .copied()
        .collect();
    assert!(!active.contains(&NodeId(3)), "{active:?}");

    // D1 undelegates: at the boundary it gets its value (plus its share of epoch 2) back
    let balance_before = chain.state.account(&d1.public()).balance;
    chain
        .act(&d1, Action::Undelegate { node: NodeId(2) })
        .unwrap();
    chain.advance();
    let epoch_2 = chain.state.history().last().unwrap();
    let b_payout = epoch_2
        .nodes
        .iter()
        .find(|entry| entry.node == NodeId(2))
        .unwrap()
        .payout;
    let received = chain.state.account(&d1.public()).balance - balance_before;
    // D1 held 202 978 308 of 304 467 462 when epoch 2's delegator reward was paid
    let expected_share =
        umbra_ledger::mul_div(u128::from(b_payout.delegators), 202_978_308, 304_467_462);
    assert!(
        received.0.abs_diff(202_978_308 + expected_share as u64) <= 1,
        "{received:?}"
    );
    assert_eq!(
        chain.state.accounted_tokens(),
        u128::from(chain.state.supply())
    );
}

/// The monitors' scores of nodes 1 to 4.
fn scores(ppm: [u32; 4]) -> Vec<(NodeId, Ppm)> {
    (1..)
        .zip(ppm)
        .map(|(id, score)| (NodeId(id), Ppm(score)))
        .collect()
}

/// A payout as (operator, delegators) in µUMB.
fn split(payout: umbra_ledger::rewards::Payout) -> (u64, u64) {
    (payout.operator.0, payout.delegators.0)
}

#[test]
fn the_report_says_who_scored_what_a_lying_monitor_is_outvoted_and_payouts_follow_the_formula() {
    use umbra_ledger::rewards::{RewardInputs, node_reward};
    use umbra_ledger::state::MonitorSubmission;
    use umbra_ledger::{Fixed, Hash};

    let params = Params {
        epoch_length_ms: 1_000,
        epochs_per_interval: 10,
        mixes_per_layer: 1,
        active_gateways: 1,
        staking_supply: 4_000 * UNIT,
        ..Params::default()
    };
    let mut genesis = genesis(params, 10, 10_000 * UNIT, 1);
    genesis.monitors.push(key(52).public());
    let mut chain = Chain::new(genesis);
    for (n, kind, pledge) in [
        (1, NodeKind::Mix, 1_000),
        (2, NodeKind::Mix, 700),
        (3, NodeKind::Mix, 400),
        (4, NodeKind::Gateway, 500),
    ] {
        let owner = key(n);
        chain
            .act(&owner, register(&owner.public(), n, kind))
            .unwrap();
        chain
            .act(
                &owner,
                Action::Bond {
                    node: NodeId(u32::from(n)),
                    amount: pledge * UNIT,
                },
            )
            .unwrap();
    }
    chain
        .act(
            &key(2),
            Action::UpdateNode {
                node: NodeId(2),
                operating_cost: 10 * UNIT,
                profit_margin: Ppm(150_000),
            },
        )
        .unwrap();
    chain.advance();
    let epoch = chain.state.epoch().number;
    // monitor 52 first submits honestly for nodes 1 and 2, then replaces that with a lie
    // about node 2 alone: only its last submission counts
    submit_scores(
        &mut chain,
        52,
        scores([990_000, 970_000, 980_000, 1_000_000]),
    );
    submit_scores(
        &mut chain,
        50,
        scores([1_000_000, 970_000, 960_000, 1_000_000]),
    );
    submit_scores(&mut chain, 51, scores([990_000, 960_000, 980_000, 990_000]));
    submit_scores(&mut chain, 52, vec![(NodeId(2), Ppm(0))]);
    chain.advance();
    let report = chain.state.history().last().unwrap().clone();
    assert_eq!(report.epoch, epoch);
    let node = |id: u32| {
        report
            .nodes
            .iter()
            .find(|entry| entry.node == NodeId(id))
            .unwrap()
    };
    // node 2: lower median of {970 000, 960 000, 0} is 960 000, the lower honest score
    assert_eq!(node(2).performance, Ppm(960_000));
    // nodes 1, 3 and 4: only the two honest monitors scored them since 52's replacement; the
    // silent monitor votes for what the node had (100 %): the median of the three
    assert_eq!(node(1).performance, Ppm(1_000_000));
    assert_eq!(node(3).performance, Ppm(980_000));
    assert_eq!(node(4).performance, Ppm(1_000_000));
    // each monitor's last submission, with its evidence hash, is on record
    let submission = |monitor: u8, scores: Vec<(NodeId, Ppm)>| MonitorSubmission {
        monitor: key(monitor).public(),
        evidence: Hash::of(&[b"evidence", &[monitor]]),
        scores,
    };
    assert_eq!(
        report.monitors,
        vec![
            submission(50, scores([1_000_000, 970_000, 960_000, 1_000_000])),
            submission(51, scores([990_000, 960_000, 980_000, 990_000])),
            submission(52, vec![(NodeId(2), Ppm(0))]),
        ]
    );
    // every payout is the formula's for the report's inputs and recorded performance
    for entry in &report.nodes {
        let inputs = RewardInputs {
            budget: report.budget,
            active_set_size: report.active_set_size,
            saturation: report.saturation,
            sybil_resistance: Fixed::from_ppm(report.sybil_resistance),
            pledge: entry.pledge,
            delegations: entry.delegations,
            performance: Fixed::from_ppm(entry.performance),
            operating_cost: entry.operating_cost,
            profit_margin: Fixed::from_ppm(entry.profit_margin),
        };
        assert!(entry.payout.total() > Amount::ZERO);
        assert_eq!(node_reward(&inputs), entry.payout, "node {}", entry.node);
    }
    // the node's history, as the validator API serves it, names each monitor's score and
    // evidence
    let view = umbra_ledger::api::NodePerformanceView::of(&chain.state, NodeId(2)).unwrap();
    assert_eq!(
        (view.performance, view.threshold, view.active),
        (Ppm(960_000), Ppm(800_000), true)
    );
    assert!(view.current.is_empty());
    assert_eq!(view.epochs.len(), 1);
    let past = &view.epochs[0];
    assert_eq!(
        (past.epoch, past.performance, past.measured, past.payout),
        (epoch, Ppm(960_000), true, node(2).payout)
    );
    let said: Vec<(umbra_ledger::PublicKey, Ppm, Hash)> = past
        .scores
        .iter()
        .map(|score| (score.monitor, score.score, score.evidence))
        .collect();
    assert_eq!(
        said,
        [(50, 970_000), (51, 960_000), (52, 0)]
            .map(|(monitor, score)| (
                key(monitor).public(),
                Ppm(score),
                Hash::of(&[b"evidence", &[monitor]])
            ))
            .to_vec()
    );
    submit_scores(&mut chain, 51, vec![(NodeId(2), Ppm(940_000))]);
    let view = umbra_ledger::api::NodePerformanceView::of(&chain.state, NodeId(2)).unwrap();
    assert_eq!(view.current.len(), 1);
    assert_eq!(view.current[0].score, Ppm(940_000));
    assert!(umbra_ledger::api::NodePerformanceView::of(&chain.state, NodeId(99)).is_none());
    assert_eq!(node(2).operating_cost, UNIT);
    assert_eq!(node(2).profit_margin, Ppm(150_000));
    assert_eq!(node(2).pledge, 700 * UNIT);
}

#[test]
fn a_monitor_alone_cannot_move_a_node_when_the_others_are_silent_about_it() {
    let params = Params {
        epoch_length_ms: 1_000,
        mixes_per_layer: 1,
        active_gateways: 1,
        ..Params::default()
    };
    let mut genesis = genesis(params, 10, 10_000 * UNIT, 1);
    genesis.monitors.push(key(52).public());
    let mut chain = Chain::new(genesis);
    for (n, kind) in [
        (1, NodeKind::Mix),
        (2, NodeKind::Mix),
        (3, NodeKind::Mix),
        (4, NodeKind::Gateway),
    ] {
        let owner = key(n);
        chain
            .act(&owner, register(&owner.public(), n, kind))
            .unwrap();
        chain
            .act(
                &owner,
                Action::Bond {
                    node: NodeId(u32::from(n)),
                    amount: 1_000 * UNIT,
                },
            )
            .unwrap();
    }
    chain.advance();
    // the honest monitors could not score node 1 (say, alone in its layer); the liar says 0
    submit_scores(&mut chain, 50, vec![(NodeId(2), Ppm(990_000))]);
    submit_scores(&mut chain, 51, vec![(NodeId(2), Ppm(980_000))]);
    submit_scores(
        &mut chain,
        52,
        vec![(NodeId(1), Ppm(0)), (NodeId(2), Ppm(0))],
    );
    chain.advance();
    let performance = |chain: &Chain, id: u32| chain.state.node(NodeId(id)).unwrap().performance;
    assert_eq!(performance(&chain, 1), Ppm(1_000_000));
    assert_eq!(performance(&chain, 2), Ppm(980_000));
    // two that agree move it; the third, silent, votes for what it had
    submit_scores(&mut chain, 50, vec![(NodeId(3), Ppm(500_000))]);
    submit_scores(&mut chain, 51, vec![(NodeId(3), Ppm(400_000))]);
    chain.advance();
    assert_eq!(performance(&chain, 3), Ppm(500_000));
}
