//! An account's page: its balance, its delegations with the rewards they earned, the nodes
//! it owns, and what waits for the epoch's end.
//!
//! The snapshot holds every delegation and node but not every balance: the balance comes from
//! `GET /accounts/{address}`, fetched when the page is asked for; without it (the validator
//! did not answer) the page shows the rest.

use serde::Serialize;
use umbra_ledger::api::AccountView;
use umbra_ledger::state::Pending;
use umbra_ledger::{Amount, NodeId, PublicKey};

use super::NodeRef;
use crate::snapshot::Snapshot;

/// An account's page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccountPage {
    /// The account.
    pub address: PublicKey,
    /// Its spendable balance, if the validator answered.
    pub balance: Option<Amount>,
    /// How many of its transactions the ledger applied, if the validator answered.
    pub nonce: Option<u64>,
    /// Its delegations.
    pub delegations: Vec<AccountDelegationRow>,
    /// What its delegations are worth together.
    pub delegated_value: Amount,
    /// The rewards they earned together.
    pub delegation_rewards: Amount,
    /// The nodes it owns.
    pub nodes: Vec<OwnedNode>,
    /// Its delegations and undelegations waiting for the epoch's end.
    pub pending: Vec<AccountPending>,
}

/// One delegation of the account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccountDelegationRow {
    /// The node.
    pub node: NodeRef,
    /// What was delegated.
    pub amount: Amount,
    /// What it is worth now.
    pub value: Amount,
    /// Its rewards so far: value − amount.
    pub rewards: Amount,
}

/// A node the account owns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OwnedNode {
    /// The node.
    pub node: NodeRef,
    /// Its pledge.
    pub pledge: Amount,
    /// Its stake.
    pub stake: Amount,
    /// Whether it is active.
    pub active: bool,
}

/// A change of the account's stake waiting for the epoch's end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum AccountPending {
    /// A delegation joins the node.
    Delegate {
        /// The node.
        node: NodeId,
        /// How much (already gone from the balance).
        amount: Amount,
    },
    /// The delegation to the node returns to the balance.
    Undelegate {
        /// The node.
        node: NodeId,
    },
}

impl AccountPage {
    /// Account `address`'s page; `live` is the validator's answer about it, if it gave one.
    pub fn build(
        snapshot: &Snapshot,
        address: PublicKey,
        live: Option<&AccountView>,
    ) -> AccountPage {
        let delegations: Vec<AccountDelegationRow> = snapshot
            .data
            .delegations
            .iter()
            .filter(|delegation| delegation.delegator == address)
            .map(|delegation| AccountDelegationRow {
                node: NodeRef::of(snapshot, delegation.node),
                amount: delegation.amount,
                value: delegation.value,
                rewards: Amount(delegation.value.0.saturating_sub(delegation.amount.0)),
            })
            .collect();
        let nodes = snapshot
            .data
            .nodes
            .iter()
            .filter(|node| node.owner == address)
            .map(|node| OwnedNode {
                node: NodeRef {
                    id: node.id,
                    moniker: node.info.moniker.clone(),
                },
                pledge: node.pledge,
                stake: node.stake,
                active: node.active.is_some(),
            })
            .collect();
        let pending = snapshot
            .data
            .epoch
            .pending
            .iter()
            .filter_map(|pending| match *pending {
                Pending::Delegate {
                    delegator,
                    node,
                    amount,
                } if delegator == address => Some(AccountPending::Delegate { node, amount }),
                Pending::Undelegate { delegator, node } if delegator == address => {
                    Some(AccountPending::Undelegate { node })
                }
                _ => None,
            })
            .collect();
        AccountPage {
            address,
            balance: live.map(|view| view.account.balance),
            nonce: live.map(|view| view.account.nonce),
            delegated_value: delegations.iter().map(|row| row.value).sum(),
            delegation_rewards: delegations.iter().map(|row| row.rewards).sum(),
            delegations,
            nodes,
            pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use umbra_ledger::Account;

    use super::*;
    use crate::model::fixture::{self, umb};

    #[test]
    fn an_accounts_delegations_nodes_and_balance() {
        let snapshot = fixture::snapshot();
        let live = AccountView {
            address: fixture::delegator(),
            account: Account {
                balance: umb(12),
                nonce: 4,
            },
            next_nonce: 4,
            delegations: Vec::new(),
        };
        let page = AccountPage::build(&snapshot, fixture::delegator(), Some(&live));
        assert_eq!(page.balance, Some(umb(12)));
        assert_eq!(page.nonce, Some(4));
        assert_eq!(page.delegations.len(), 2);
        assert_eq!(page.delegations[0].node.moniker, "alice");
        assert_eq!(page.delegated_value, Amount(309_060_000 + 300_900_000));
        assert_eq!(page.delegation_rewards, Amount(9_060_000 + 900_000));
        assert!(page.nodes.is_empty());
        assert_eq!(
            page.pending,
            [AccountPending::Delegate {
                node: NodeId(2),
                amount: umb(50)
            }]
        );
        // the owner, without the validator's answer
        let page = AccountPage::build(&snapshot, fixture::owner(), None);
        assert_eq!(page.balance, None);
        assert_eq!(page.nodes.len(), 5);
        assert_eq!(page.nodes[0].pledge, umb(1_000));
    }
}
