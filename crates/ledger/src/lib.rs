#![doc = include_str!("../README.md")]

pub mod api;
pub mod beacon;
mod err;
mod fixed;
mod genesis;
mod hex;
mod keys;
pub mod rewards;
pub mod state;
pub mod tickets;
pub mod topology;
mod tx;

pub use err::{AmountError, Base58Error, GenesisError, TicketRefusal, TxError};
pub use fixed::{Amount, Fixed, PPM, Ppm, UNIT, mul_div};
pub use genesis::{Genesis, GenesisAccount, GenesisNode, GenesisValidator, Params, TicketParams};
pub use keys::{Hash, Key32, PublicKey, Signature, SigningKey, canonical};
pub use state::{Account, Block, BlockError, State};
pub use topology::{Certificate, CertificateError, SignedTopology, TopologyDocument, ValidatorKey};
pub use tx::{
    Action, MAX_REDEEM_TICKETS, NodeId, NodeInfo, NodeKind, Transaction, registration_message,
    sphinx_key_message,
};
