//! A chat over the mixnet.
//!
//! Start a network (`cargo run --release -- localnet`), then in two terminals:
//!
//! ```text
//! cargo run --release -p umbra-sdk --example chat -- --validator http://<validator API> --genesis localnet/genesis.json --account localnet/operators/tickets.key --storage bob
//! cargo run --release -p umbra-sdk --example chat -- --validator http://<validator API> --genesis localnet/genesis.json --account localnet/operators/tickets.key --storage alice --to <bob's address>
//! ```
//!
//! (`umbra localnet` prints both commands with the validator's API address; localnet's
//! gateways demand bandwidth tickets, which `--account` buys into each chatter's `--storage`; `--topology FILE` reads a static
//! topology file instead, for private test networks.) Ctrl-C or the end of input leaves.
//!
//! The second chats with bob by his address and sends SURBs with every line; bob never
//! learns the address he is talking to: his lines go back through the SURBs.

use std::future::Future;
use std::path::PathBuf;
use std::task::Poll;

use clap::Parser;
use umbra_sdk::{ClientAddress, ClientBuilder, Received, SenderTag};

#[derive(Parser)]
#[command(about = "Chat over the Umbra mixnet")]
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
    /// A folder keeping this chatter's keys, so its address stays the same across runs.
    #[arg(long)]
    storage: Option<PathBuf>,
    /// The gateway to connect through (id or Noise key; default: one at random).
    #[arg(long)]
    gateway: Option<String>,
    /// Whom to chat with. Without it, lines go to whoever wrote last, through their SURBs.
    #[arg(long)]
    to: Option<ClientAddress>,
    /// Buy --tickets bandwidth tickets into the wallet in --storage first, paid by this
    /// account: a network whose gateways demand tickets (localnet's do) needs them. localnet's
    /// account for this is localnet/operators/tickets.key.
    #[arg(long, requires_all = ["storage", "genesis"])]
    account: Option<PathBuf>,
    /// How many tickets to buy with --account (50 MB each on localnet).
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
    let mut builder = match (&args.topology, &args.genesis) {
        (Some(topology), _) => ClientBuilder::from_topology_file(topology)?,
        (None, Some(genesis)) => ClientBuilder::from_ledger(args.validator.clone(), genesis)?,
        (None, None) => anyhow::bail!("give --validator URL --genesis FILE, or --topology FILE"),
    };
    if let Some(dir) = &args.storage {
        builder = builder.storage(dir);
    }
    if let (Some(account), Some(dir), Some(genesis)) = (&args.account, &args.storage, &args.genesis)
    {
        let account = umbra_sdk::account_key(account)?;
        let bought =
            umbra_sdk::buy_tickets_into(dir, &args.validator, genesis, &account, args.tickets)
                .await?;
        eprintln!("bought {} bandwidth tickets", bought.count);
    }
    if let Some(gateway) = args.gateway {
        builder = builder.gateway(gateway);
    }
    let mut client = builder.connect().await?;
    // Ctrl-C leaves; its handler is in place (on the first poll) before we say we are ready
    let mut interrupted = std::pin::pin!(tokio::signal::ctrl_c());
    let early = std::future::poll_fn(|cx| Poll::Ready(interrupted.as_mut().poll(cx).is_ready()));
    if early.await {
        client.disconnect().await;
        return Ok(());
    }
    println!("your address: {}", client.address());
    match &args.to {
        Some(to) => println!("chatting with {to}; type a line and press enter"),
        None => println!("waiting for someone to write; your lines then go back to them"),
    }
    let sender = client.sender();
    // stdin is read on a thread of its own: a read cannot be cancelled, and tokio's stdin
    // would keep the runtime (so the chat) from ending on Ctrl-C until Enter is pressed
    let (lines_in, mut lines) = tokio::sync::mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if lines_in.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let mut last: Option<SenderTag> = None;
    loop {
        tokio::select! {
            line = lines.recv() => {
                let Some(line) = line else { break };
                let sent = match (&args.to, last) {
                    (Some(to), _) => sender.send_with_surbs(to, line, 5).await,
                    (None, Some(tag)) => sender.reply(tag, line).await,
                    (None, None) => {
                        println!("(no one to send to yet)");
                        continue;
                    }
                };
                if let Err(error) = sent {
                    println!("(not sent: {error})");
                }
            }
            received = client.receive() => match received {
                Some(Received::Message { data, reply_to }) => {
                    if reply_to.is_some() {
                        last = reply_to;
                    }
                    println!("< {}", String::from_utf8_lossy(&data));
                }
                Some(Received::Reply { data, .. }) => println!("< {}", String::from_utf8_lossy(&data)),
                None => break,
            },
            _ = &mut interrupted => break,
        }
    }
    client.disconnect().await;
    Ok(())
}
