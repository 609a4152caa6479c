//! The randomness beacon that picks each epoch's active set.
//!
//! The choice of nodes and layers must not be something one party can steer: if the block
//! proposer could pick the seed (a block hash, a timestamp, its own random number), it could try
//! seeds until its own nodes are chosen, or until one layer holds only nodes it runs.
//!
//! Umbra uses hash chains that every validator commits to in genesis. A validator draws a secret
//! `s` and publishes `H^N(s)` (N = [`CHAIN_LENGTH`]) as its `beacon_commitment`. In each epoch it
//! reveals the next value down its chain — the preimage of the value it revealed last — with a
//! [`crate::Action::RevealBeacon`] transaction. Because each value is fixed by the commitment
//! made at genesis, a validator has exactly one valid reveal per epoch: it cannot pick it, only
//! withhold it. At the epoch boundary the seed of the next epoch is
//! `H(previous seed ‖ epoch ‖ every reveal of this epoch in validator order)`, so it is
//! unpredictable as long as one validator that reveals is honest.
//!
//! What remains: the last validator to reveal knows the others' values and can choose between
//! revealing and withholding — one bit of influence per withholding validator, and a visible one
//! (missing reveals are public on the ledger). A verifiable delay function or threshold
//! signatures would close that; we note it and move on.

use crate::keys::Hash;

/// The number of values in a validator's hash chain: 2^20 epochs is over a century of 1-hour
/// epochs.
pub const CHAIN_LENGTH: u64 = 1 << 20;

/// One step down the chain: `H("umbra-beacon" ‖ value)`.
pub fn step(value: &Hash) -> Hash {
    Hash::of(&[b"umbra-beacon-v1", &value.0])
}

/// A validator's secret hash chain.
pub struct BeaconChain {
    secret: Hash,
}

impl BeaconChain {
    /// The chain starting from `secret`.
    pub fn new(secret: [u8; 32]) -> BeaconChain {
        BeaconChain {
            secret: Hash(secret),
        }
    }

    /// The value published in genesis: `H^N(secret)`.
    pub fn commitment(&self) -> Hash {
        self.value(CHAIN_LENGTH)
    }

    /// The value to reveal after `revealed` earlier reveals (the first reveal is `H^(N-1)`), or
    /// none once the chain is used up.
    pub fn reveal(&self, revealed: u64) -> Option<Hash> {
        CHAIN_LENGTH
            .checked_sub(revealed + 1)
            .map(|steps| self.value(steps))
    }

    fn value(&self, steps: u64) -> Hash {
        let mut value = self.secret;
        for _ in 0..steps {
            value = step(&value);
        }
        value
    }
}

impl Drop for BeaconChain {
    fn drop(&mut self) {
        self.secret.0 = [0; 32];
    }
}

/// Deterministic draws from a seed: SHA-256 in counter mode, so every validator draws the same
/// numbers on every machine and for every version of every library.
pub struct Draw {
    seed: Hash,
    counter: u64,
}

impl Draw {
    /// Draws from `seed`.
    pub fn new(seed: Hash) -> Draw {
        Draw { seed, counter: 0 }
    }

    fn next_u128(&mut self) -> u128 {
        let block = Hash::of(&[&self.seed.0, &self.counter.to_le_bytes()]);
        self.counter += 1;
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&block.0[..16]);
        u128::from_le_bytes(bytes)
    }

    /// A uniform number below `bound` (zero when `bound` is zero), without modulo bias.
    pub fn below(&mut self, bound: u128) -> u128 {
        if bound == 0 {
            return 0;
        }
        let zone = u128::MAX - (u128::MAX % bound + 1) % bound;
        loop {
            let value = self.next_u128();
            if value <= zone {
                return value % bound;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reveals_walk_down_the_chain() {
        let chain = BeaconChain::new([7; 32]);
        let commitment = chain.commitment();
        let first = chain.reveal(0).unwrap();
        assert_eq!(step(&first), commitment);
        let second = chain.reveal(1).unwrap();
        assert_eq!(step(&second), first);
        assert!(chain.reveal(CHAIN_LENGTH).is_none());
    }

    #[test]
    fn draws_are_uniform_enough_and_bounded() {
        let mut draw = Draw::new(Hash([1; 32]));
        let mut counts = [0u32; 3];
        for _ in 0..3000 {
            counts[draw.below(3) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&count| (900..1100).contains(&count)),
            "{counts:?}"
        );
        assert_eq!(draw.below(0), 0);
        assert_eq!(draw.below(1), 0);
    }
}
