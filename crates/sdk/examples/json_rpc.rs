//! One JSON-RPC 2.0 call over HTTP through the mixnet, as a wallet would submit it: `hyper`'s
//! client on streams to an exit service, inside this process (no SOCKS5 proxy to run). The
//! server sees the exit's address, not yours; the exit sees the call, not who made it.
//!
//! Start a network (`cargo run --release -- localnet`). It prints the validator's API address,
//! the genesis file and the address of its exit service, which may reach this machine's own
//! services too (`umbra exit address --data-dir localnet/exit` prints it again). Then, with a
//! JSON-RPC server on this machine (an Ethereum node on port 8545, say):
//!
//! ```text
//! cargo run --release -p umbra-sdk --example json_rpc -- \
//!     --validator http://<validator API> --genesis localnet/genesis.json \
//!     --exit <exit address> --url http://127.0.0.1:8545/ --method eth_blockNumber \
//!     --storage my-wallet --account localnet/operators/tickets.key
//! ```
//!
//! localnet's gateways demand bandwidth tickets: add `--storage my-wallet --account
//! localnet/operators/tickets.key` to buy two into the client's wallet first (`--tickets N` for
//! more). (`--topology FILE` reads a static topology file instead of asking validators, for private
//! test networks; `--params '[...]'` gives the call's parameters, `[]` by default.) It prints
//! the server's answer and how long the call took.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use umbra_sdk::http::MixnetConnector;
use umbra_sdk::{ClientAddress, ClientBuilder, StreamSettings};

#[derive(Parser)]
#[command(about = "Submit one JSON-RPC 2.0 call over HTTP through the Umbra mixnet")]
struct Args {
    /// A validator's API (http://host:port); give --genesis too.
    #[arg(long, requires = "genesis")]
    validator: Vec<umbra_sdk::ValidatorUrl>,
    /// The network's genesis file: the validator set every topology is checked against.
    #[arg(long)]
    genesis: Option<PathBuf>,
    /// A static topology file instead of a ledger (private test networks).
    #[arg(long, conflicts_with = "validator")]
    topology: Option<PathBuf>,
    /// The exit service's address (`umbra exit address --data-dir DIR` prints it).
    #[arg(long)]
    exit: ClientAddress,
    /// The JSON-RPC server's URL (http:// only; the exit resolves its host name).
    #[arg(long)]
    url: hyper::Uri,
    /// The method to call.
    #[arg(long)]
    method: String,
    /// The call's parameters, as JSON.
    #[arg(long, default_value = "[]")]
    params: String,
    /// Where the client keeps its keys and ticket wallet (a network that demands bandwidth
    /// tickets, as localnet's does, needs one).
    #[arg(long)]
    storage: Option<PathBuf>,
    /// Buy --tickets bandwidth tickets into the wallet in --storage first, paid by this
    /// account (localnet's: localnet/operators/tickets.key).
    #[arg(long, requires_all = ["storage", "genesis"])]
    account: Option<PathBuf>,
    /// How many tickets to buy with --account.
    #[arg(long, default_value_t = 2)]
    tickets: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let params: serde_json::Value =
        serde_json::from_str(&args.params).context("--params is not JSON")?;
    let call = serde_json::json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": args.method,
        "params": params,
    });
    let builder = match (&args.topology, &args.genesis) {
        (Some(topology), _) => ClientBuilder::from_topology_file(topology)?,
        (None, Some(genesis)) => ClientBuilder::from_ledger(args.validator.clone(), genesis)?,
        (None, None) => anyhow::bail!("give --validator URL --genesis FILE, or --topology FILE"),
    };
    let builder = match &args.storage {
        Some(dir) => builder.storage(dir),
        None => builder,
    };
    if let (Some(account), Some(dir), Some(genesis)) = (&args.account, &args.storage, &args.genesis)
    {
        let account = umbra_sdk::account_key(account)?;
        let bought =
            umbra_sdk::buy_tickets_into(dir, &args.validator, genesis, &account, args.tickets)
                .await?;
        eprintln!("bought {} bandwidth tickets", bought.count);
    }
    let client = builder.connect().await?;
    let (streams, client) = client.into_streams(StreamSettings::new(args.exit))?;
    let http = Client::builder(TokioExecutor::new()).build(MixnetConnector::new(streams));

    let started = Instant::now();
    let request = hyper::Request::post(args.url)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(&call)?)))?;
    let answered = async {
        let response = http.request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    }
    .await;
    let took = started.elapsed();
    // the connection goes before the client, so its stream is reset rather than lost
    drop(http);
    client.disconnect().await;

    let (status, body) = answered.context("the call through the mixnet failed")?;
    if !status.is_success() {
        anyhow::bail!(
            "the server answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let answer: serde_json::Value =
        serde_json::from_slice(&body).context("the server's answer is not JSON")?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    println!("took {} ms through the mixnet", took.as_millis());
    Ok(())
}
