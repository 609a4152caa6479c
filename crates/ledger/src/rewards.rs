//! Nym's rewards formula, in fixed point.
//!
//! For a node in the active set of size k, with saturation point `S = staking supply / k`:
//!
//! ```text
//! σ (stake saturation)  = min(1, (pledge + delegations) / S)
//! λ (pledge saturation) = min(1, pledge / S)
//! reward                = budget × performance × σ × (ω + α·λ/k) / (1 + α),   ω = 1/k
//! ```
//!
//! The reward is split: first the operating cost (per epoch, scaled by performance, at most the
//! reward), then the profit margin of what remains; what is left after that is shared between
//! the operator and the delegators in proportion to pledge and delegations. The operator's part
//! compounds into the pledge, the delegators' part into the node's delegations (tracked per
//! delegator with a cumulative per-unit ratio, see [`crate::state`]).
//!
//! Every step rounds down to whole µUMB; what rounding leaves stays in the pool.

use serde::{Deserialize, Serialize};

use crate::fixed::{Amount, Fixed, mul_div};

/// What one node's reward depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RewardInputs {
    /// The epoch's budget.
    pub budget: Amount,
    /// The active set size k.
    pub active_set_size: u64,
    /// The saturation point S.
    pub saturation: Amount,
    /// α.
    pub sybil_resistance: Fixed,
    /// The node's pledge.
    pub pledge: Amount,
    /// The delegations to the node (with their compounded rewards).
    pub delegations: Amount,
    /// The node's performance in the epoch, 0 to 1.
    pub performance: Fixed,
    /// The node's operating cost for one epoch (the interval's cost divided by its epochs).
    pub operating_cost: Amount,
    /// The node's profit margin, 0 to 1.
    pub profit_margin: Fixed,
}

/// A node's reward for an epoch, split.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payout {
    /// To the operator (operating cost + margin + the pledge's share): added to the pledge.
    pub operator: Amount,
    /// To the delegators together: added to the delegations.
    pub delegators: Amount,
}

impl Payout {
    /// The whole reward.
    pub fn total(&self) -> Amount {
        self.operator + self.delegators
    }
}

/// The node's reward for the epoch and its split.
pub fn node_reward(inputs: &RewardInputs) -> Payout {
    let stake = u128::from(inputs.pledge) + u128::from(inputs.delegations);
    let saturation = u128::from(inputs.saturation);
    let stake_saturation = Fixed::ratio(stake, saturation).at_most_one();
    let pledge_saturation = Fixed::ratio(u128::from(inputs.pledge), saturation).at_most_one();
    let k = u128::from(inputs.active_set_size.max(1));
    // (ω + α·λ/k) / (1 + α) with ω = 1/k is (1 + α·λ) / (k·(1 + α))
    let factor = inputs
        .performance
        .times(stake_saturation)
        .times(Fixed::ONE.plus(inputs.sybil_resistance.times(pledge_saturation)))
        .over(Fixed::ONE.plus(inputs.sybil_resistance));
    let reward = factor.of(u128::from(inputs.budget)) / k;
    let cost = inputs
        .performance
        .of(u128::from(inputs.operating_cost))
        .min(reward);
    let rest = reward - cost;
    let profit = inputs.profit_margin.at_most_one().of(rest);
    let shared = rest - profit;
    let pledge_share = mul_div(shared, u128::from(inputs.pledge), stake);
    let delegators = shared - pledge_share;
    Payout {
        operator: to_amount(cost + profit + pledge_share),
        delegators: to_amount(delegators),
    }
}

fn to_amount(value: u128) -> Amount {
    // a reward never exceeds the budget, which is an Amount
    Amount::try_from(value).unwrap_or(Amount::MAX)
}
