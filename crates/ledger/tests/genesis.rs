//! A genesis that cannot start a chain is refused with an error that names the field and says
//! what it must be.

#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

mod common;

use common::{genesis, key, node_info};
use umbra_ledger::{
    Amount, Genesis, GenesisAccount, GenesisError, GenesisNode, NodeKind, Params, Ppm, State,
    TxError, UNIT,
};

fn refusal(genesis: &Genesis) -> GenesisError {
    match Genesis::from_json(&genesis.to_json()) {
        Err(error) => error,
        Ok(genesis) => State::genesis(&genesis).unwrap_err(),
    }
}

#[test]
fn parameters_say_which_is_wrong() {
    let zero = genesis(
        Params {
            rotation_epochs: 0,
            ..Params::default()
        },
        1,
        UNIT,
        1,
    );
    let error = refusal(&zero);
    assert!(matches!(
        error,
        GenesisError::ZeroParam {
            name: "rotation_epochs"
        }
    ));
    assert_eq!(
        error.to_string(),
        "params.rotation_epochs must be more than 0"
    );

    let above_one = genesis(
        Params {
            sybil_resistance: Ppm(1_000_001),
            ..Params::default()
        },
        1,
        UNIT,
        1,
    );
    assert_eq!(
        refusal(&above_one).to_string(),
        "params.sybil_resistance is 1000001 ppm; it is a fraction, at most 1000000 (100 %)"
    );
}

#[test]
fn validators_are_needed_with_power() {
    let mut none = genesis(Params::default(), 1, UNIT, 1);
    none.validators.clear();
    assert!(matches!(refusal(&none), GenesisError::NoValidators));

    let mut powerless = genesis(Params::default(), 1, UNIT, 2);
    powerless.validators[1].power = 0;
    let error = refusal(&powerless);
    assert!(matches!(error, GenesisError::ZeroPower { .. }));
    let message = error.to_string();
    assert!(message.contains("\"validator 1\""), "{message}");
    assert!(message.contains("every validator needs a voting power above 0"));
}

#[test]
fn malformed_json_says_where() {
    let error = Genesis::from_json(r#"{"chain_id": "x", "genesis_time_ms": 0}"#).unwrap_err();
    assert!(matches!(error, GenesisError::Json(_)));
    assert!(error.to_string().contains("missing field"), "{error}");
}

#[test]
fn balances_and_nodes_are_checked_as_the_state_is_built() {
    let mut overflowing = genesis(Params::default(), 1, Amount::MAX, 1);
    overflowing.accounts.push(GenesisAccount {
        address: key(1).public(),
        balance: Amount(1),
    });
    let error = State::genesis(&overflowing).unwrap_err();
    assert!(
        matches!(error, GenesisError::BalanceOverflow { account } if account == key(1).public())
    );
    assert!(error.to_string().contains("lower them"));

    let too_much = genesis(Params::default(), 2, Amount::MAX, 1);
    assert!(matches!(
        State::genesis(&too_much),
        Err(GenesisError::SupplyOverflow)
    ));

    let mut cheap = genesis(Params::default(), 1, UNIT, 1);
    let (_, node) = node_info(1, NodeKind::Mix);
    cheap.nodes.push(GenesisNode {
        owner: key(1).public(),
        pledge: 99 * UNIT,
        node,
    });
    assert_eq!(
        State::genesis(&cheap).unwrap_err().to_string(),
        "genesis node \"node-1\": pledge 99000000 is below the minimum pledge 100000000 \
         (params.minimum_pledge); both are in µUMB"
    );

    let mut gateway_without_address = genesis(Params::default(), 1, UNIT, 1);
    let (_, mut node) = node_info(2, NodeKind::Gateway);
    node.client_address = None;
    gateway_without_address.nodes.push(GenesisNode {
        owner: key(1).public(),
        pledge: 100 * UNIT,
        node,
    });
    let error = State::genesis(&gateway_without_address).unwrap_err();
    assert!(matches!(
        &error,
        GenesisError::BadNode {
            refusal: TxError::BadNode { .. },
            ..
        }
    ));
    assert_eq!(
        error.to_string(),
        "genesis node \"node-2\": bad node registration: a gateway needs a client address"
    );
}

#[test]
fn keys_say_what_is_wrong_with_them() {
    let error = "0OIl".parse::<umbra_ledger::PublicKey>().unwrap_err();
    assert!(matches!(error, umbra_ledger::Base58Error::NotBase58 { .. }));
    assert!(error.to_string().starts_with("\"0OIl\" is not base58: "));
    let short = bs58::encode([7u8; 31]).into_string();
    let error = short.parse::<umbra_ledger::PublicKey>().unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{short:?} is 31 bytes, but an ed25519 public key is 32; copy it whole, as it was printed"
        )
    );
    let key = key(3).public();
    assert_eq!(key.to_string().parse(), Ok(key));
}
