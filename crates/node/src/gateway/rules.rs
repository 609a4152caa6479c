//! Whether the network demands bandwidth tickets, and the keys to check them with: read from
//! the validators (`GET /tickets` and `GET /tickets/issuers`) at start and every
//! [`REFRESH_EVERY`], and handed to the core as [`TicketRules`].
//!
//! A ticket is checked as the ledger will check it when the gateway redeems it
//! ([`IssuersView::verify`]): signatures of validators holding more than 2/3 of all voting
//! power, by keys announced for the current key period or the one before, on this chain.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use umbra_gateway::{AcceptedTicket, TicketRules};
use umbra_ledger::api::{IssuersView, TicketStatsView};
use umbra_net::directory::Directory;
use umbra_tickets::{ChainTag, Ticket};

/// How often the rules are read again (keys rotate by key period, many epochs long).
pub(crate) const REFRESH_EVERY: Duration = Duration::from_secs(30);

/// What the validators say about tickets now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Fetched {
    stats: TicketStatsView,
    issuers: IssuersView,
}

impl Fetched {
    /// The core's rules: `None` when the network gives a free allowance instead.
    pub(crate) fn rules(&self, chain_id: &str) -> Option<TicketRules> {
        if !self.stats.tickets_required {
            return None;
        }
        let issuers = self.issuers.clone();
        let chain = ChainTag::of(chain_id);
        Some(TicketRules {
            ticket_bytes: self.stats.bytes,
            verify: Box::new(move |bytes: &[u8]| {
                let serial = issuers.verify(bytes, chain).map_err(|e| e.to_string())?;
                let period = Ticket::from_bytes(bytes)
                    .map(|ticket| ticket.input.period)
                    .map_err(|e| e.to_string())?;
                Ok(AcceptedTicket {
                    serial: serial.0,
                    period,
                })
            }),
        })
    }

    /// The current key period.
    pub(crate) fn current_period(&self) -> u64 {
        self.issuers.current_period
    }
}

/// Reads the rules from any validator that answers.
pub(crate) async fn fetch(directory: &Directory) -> Result<Fetched, String> {
    let client = directory
        .any_validator()
        .await
        .map_err(|error| error.to_string())?;
    let stats: TicketStatsView = client
        .get("/tickets")
        .await
        .map_err(|error| error.to_string())?;
    let issuers: IssuersView = client
        .get("/tickets/issuers")
        .await
        .map_err(|error| error.to_string())?;
    Ok(Fetched { stats, issuers })
}

/// What became of rules handed to the core.
pub(crate) enum Handed {
    /// The core has them.
    Taken,
    /// The core's queue is full: they go again next time.
    Busy,
    /// The core is gone.
    Closed,
}

/// Reads the rules every [`REFRESH_EVERY`] until `stop`, passing each change to `apply`.
pub(crate) async fn follow(
    directory: Arc<Directory>,
    mut last: Option<Fetched>,
    stop: CancellationToken,
    apply: impl Fn(Fetched) -> Handed,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(REFRESH_EVERY) => {}
        }
        match fetch(&directory).await {
            Ok(fetched) if last.as_ref() != Some(&fetched) => {
                if last.as_ref().map(|l| l.stats.tickets_required)
                    != Some(fetched.stats.tickets_required)
                {
                    info!(
                        required = fetched.stats.tickets_required,
                        "the network changed whether it demands bandwidth tickets"
                    );
                }
                debug!(period = fetched.current_period(), "ticket keys read again");
                match apply(fetched.clone()) {
                    Handed::Taken => last = Some(fetched),
                    Handed::Busy => {}
                    Handed::Closed => return,
                }
            }
            Ok(_) => {}
            Err(error) => {
                warn!(%error, "cannot read the ticket rules from the validators; keeping the last ones")
            }
        }
    }
}
