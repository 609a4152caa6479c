//! How to delegate and how to run a node: the exact commands, with this network's validator,
//! its minimum pledge, and (when the page is asked for a node) that node's number.

use serde::Serialize;
use umbra_ledger::{Amount, NodeId, Ppm};

use super::{EXAMPLE_DELEGATION, Links, NodeRef};
use crate::snapshot::Snapshot;

/// The guide page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GuidePage {
    /// The validator the commands talk to.
    pub validator: String,
    /// The node the delegation commands name: the one asked for, or else the node whose
    /// delegators earned most lately.
    pub node: Option<NodeRef>,
    /// The smallest pledge a node may have.
    pub minimum_pledge: Amount,
    /// A new node's operating cost per interval.
    pub default_operating_cost: Amount,
    /// A new node's profit margin.
    pub default_profit_margin: Ppm,
    /// How long an epoch lasts, in ms.
    pub epoch_length_ms: u64,
    /// Steps to delegate.
    pub delegate: Vec<Step>,
    /// Steps to run a mix node.
    pub run_node: Vec<Step>,
}

/// One step: what it does and the command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    /// What it does, in words.
    pub what: String,
    /// The command to type.
    pub command: String,
}

fn step(what: impl Into<String>, command: impl Into<String>) -> Step {
    Step {
        what: what.into(),
        command: command.into(),
    }
}

/// An amount as `umbra tx` reads it (UMB, up to 6 decimals, no unit).
fn cli_amount(amount: Amount) -> String {
    amount.to_string().trim_end_matches(" UMB").to_owned()
}

impl GuidePage {
    /// The guide for `snapshot`, naming node `node` if it is given and registered.
    pub fn build(snapshot: &Snapshot, links: &Links, node: Option<NodeId>) -> GuidePage {
        let params = &snapshot.genesis.params;
        let chosen = node.filter(|&id| snapshot.node(id).is_some()).or_else(|| {
            snapshot
                .data
                .nodes
                .iter()
                .filter(|node| !node.pledge.is_zero() && !node.unbonding)
                .max_by_key(|node| {
                    (
                        super::delegation_earnings(snapshot, node.id).map(|e| e.average),
                        std::cmp::Reverse(node.id),
                    )
                })
                .map(|node| node.id)
        });
        let validator = &links.validator;
        let id = chosen.map_or("<node>".to_owned(), |id| id.to_string());
        let amount = cli_amount(EXAMPLE_DELEGATION);
        let delegate = vec![
            step(
                "Make an account key (keep the file safe: it is the account), and have tokens sent to the address it prints.",
                "umbra account new --out alice.key",
            ),
            step(
                "See its balance.",
                format!("umbra account show --validator {validator} --key alice.key"),
            ),
            step(
                format!(
                    "Delegate {amount} UMB to node {id}. The tokens leave the balance now and join the node's stake at the end of the epoch; its rewards compound into the delegation."
                ),
                format!(
                    "umbra tx --validator {validator} --key alice.key delegate --node {id} --amount {amount}"
                ),
            ),
            step(
                "Withdraw the delegation with its rewards: it returns to the balance at the end of the epoch.",
                format!("umbra tx --validator {validator} --key alice.key undelegate --node {id}"),
            ),
        ];
        let pledge = cli_amount(params.minimum_pledge);
        let run_node = vec![
            step(
                "Make the node: its keys, a copy of the network's genesis file and a commented config.toml.",
                format!(
                    "umbra mixnode init --data-dir node1 --listen 0.0.0.0:1789 --http 127.0.0.1:8000 --validator {validator} --genesis genesis.json"
                ),
            ),
            step(
                format!(
                    "Register it as your account's and bond its pledge (at least {pledge} UMB); it prints the node's number."
                ),
                format!(
                    "umbra mixnode register --data-dir node1 --validator {validator} --account owner.key --pledge {pledge} --mix-address 203.0.113.7:1789 --moniker my-node"
                ),
            ),
            step("Run it.", "umbra mixnode run --data-dir node1"),
            step(
                "Set its operating cost (UMB per interval) and profit margin (percent).",
                format!(
                    "umbra tx --validator {validator} --key owner.key update-node --node <number> --operating-cost {} --profit-margin {}",
                    cli_amount(params.default_operating_cost),
                    f64::from(params.default_profit_margin.0) / 10_000.0
                ),
            ),
            step(
                "Add to its pledge.",
                format!(
                    "umbra tx --validator {validator} --key owner.key bond --node <number> --amount 100"
                ),
            ),
            step(
                "Take it out at the end of the epoch: the pledge returns to you and every delegation to its delegator.",
                format!("umbra tx --validator {validator} --key owner.key unbond --node <number>"),
            ),
        ];
        GuidePage {
            validator: validator.clone(),
            node: chosen.map(|id| NodeRef::of(snapshot, id)),
            minimum_pledge: params.minimum_pledge,
            default_operating_cost: params.default_operating_cost,
            default_profit_margin: params.default_profit_margin,
            epoch_length_ms: params.epoch_length_ms,
            delegate,
            run_node,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixture;

    #[test]
    fn the_commands_name_the_node_and_the_validator() {
        let snapshot = fixture::snapshot();
        let links = Links {
            validator: "http://10.0.0.1:7000".into(),
            ..Links::default()
        };
        let page = GuidePage::build(&snapshot, &links, Some(NodeId(3)));
        assert_eq!(page.node.as_ref().unwrap().moniker, "carol");
        assert_eq!(
            page.delegate[2].command,
            "umbra tx --validator http://10.0.0.1:7000 --key alice.key delegate --node 3 --amount 1000"
        );
        assert!(page.run_node[1].command.contains("--pledge 100 "));
        assert!(
            page.run_node[3]
                .command
                .ends_with("--operating-cost 40 --profit-margin 20")
        );
        // without a node: the one whose delegators earned most lately
        let page = GuidePage::build(&snapshot, &links, None);
        let best = snapshot
            .data
            .nodes
            .iter()
            .map(|node| {
                crate::model::delegation_earnings(&snapshot, node.id)
                    .unwrap()
                    .average
            })
            .max()
            .unwrap();
        let chosen = page.node.unwrap().id;
        assert_eq!(
            crate::model::delegation_earnings(&snapshot, chosen)
                .unwrap()
                .average,
            best
        );
        assert!(
            GuidePage::build(&snapshot, &links, Some(NodeId(99)))
                .node
                .is_some()
        );
    }
}
