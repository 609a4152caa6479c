//! `umbra mixnode register` and `umbra gateway register`: a node onto the ledger, bonded.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use umbra_ledger::{Amount, NodeKind, SigningKey};
use umbra_net::directory::ValidatorUrl;
use umbra_net::keys::read_key;
use umbra_net::socks5::Socks5Proxy;
use umbra_node::registration::{self, Registration};

/// What registering needs beyond the node's own files.
#[derive(Args)]
pub(crate) struct RegisterArgs {
    /// The node's directory (`umbra mixnode init` / `umbra gateway init` made it).
    #[arg(long)]
    pub(crate) data_dir: PathBuf,
    /// A validator's API.
    #[arg(long, default_value = "http://127.0.0.1:7000")]
    pub(crate) validator: ValidatorUrl,
    /// The key file of the account that owns the node and pays its pledge.
    #[arg(long)]
    pub(crate) account: PathBuf,
    /// The pledge to bond, in UMB (at least the network's minimum pledge).
    #[arg(long)]
    pub(crate) pledge: Amount,
    /// The address other nodes reach this node at (default: `listen_address` in its
    /// config.toml, which must then not be 0.0.0.0).
    #[arg(long)]
    pub(crate) mix_address: Option<SocketAddr>,
    /// A name for people (at most 64 bytes).
    #[arg(long, default_value = "")]
    pub(crate) moniker: String,
    /// Register through a SOCKS5 proxy (the mixnet's), so that the validator does not learn
    /// the owner's address.
    #[arg(long, value_name = "socks5h://HOST:PORT")]
    pub(crate) proxy: Option<Socks5Proxy>,
}

/// Registers and bonds the node; prints its number.
pub(crate) fn register(
    args: RegisterArgs,
    kind: NodeKind,
    listen: SocketAddr,
    client_address: Option<SocketAddr>,
) -> anyhow::Result<()> {
    let owner = load_account(&args.account)?;
    let registration = Registration {
        kind,
        mix_address: args.mix_address.unwrap_or(listen),
        client_address,
        moniker: args.moniker,
        pledge: args.pledge,
    };
    crate::runtime()?.block_on(async {
        let client = crate::ledger_cli::ledger_client(&args.validator, args.proxy.as_ref()).await?;
        let done = registration::register(&args.data_dir, &client, &owner, &registration)
            .await
            .with_context(|| format!("registering the node in {}", args.data_dir.display()))?;
        let role = match kind {
            NodeKind::Mix => "mix node",
            NodeKind::Gateway => "gateway",
        };
        match (done.already_registered, done.bonded) {
            (false, bonded) => println!(
                "Registered the {role} as node {} and bonded {bonded}.",
                done.node
            ),
            (true, Amount::ZERO) => println!(
                "The {role} is already registered as node {} and bonded; nothing to do.",
                done.node
            ),
            (true, bonded) => println!(
                "The {role} was registered as node {}; bonded {bonded} now.",
                done.node
            ),
        }
        println!(
            "It can be drawn into the active set from the next epoch boundary. Run it: umbra {} run --data-dir {}",
            match kind {
                NodeKind::Mix => "mixnode",
                NodeKind::Gateway => "gateway",
            },
            args.data_dir.display()
        );
        Ok(())
    })
}

fn load_account(path: &Path) -> anyhow::Result<SigningKey> {
    Ok(SigningKey::from_seed(read_key(path).with_context(
        || "--account: the owner's account key file (`umbra account new --out FILE` makes one)",
    )?))
}
