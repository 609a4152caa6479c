//! Spending bandwidth tickets: when the gateway demands them, the client keeps its credit
//! topped up by itself.
//!
//! The gateway says the session's credit in a [`Record::Credit`] after its welcome (that is
//! how the client learns tickets are demanded) and after each ticket it accepts. The client
//! counts down what its packets take; when the credit falls below a low-water mark (half a
//! ticket's worth, at most 4 MiB) it takes its next ticket from its wallet and sends it in
//! stretches, each in place of a cover packet: the link shows the same frames at the same
//! times whether or not the client is paying. One ticket is under way at a time. A ticket the
//! gateway credited or refused as no good is marked spent in the wallet; one it deferred (not
//! checked) stays in the wallet for later; one under way when the session drops stays too,
//! and presented again is either credited or refused as already spent — never lost unpaid.
//!
//! [`Record::Credit`]: umbra_wire::gateway::Record::Credit

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use umbra_wire::gateway::{Refusal, SpendChunk};

use crate::tickets::TicketWallet;

/// A ticket ready to present: its serial and its encoded bytes.
pub type ReadyTicket = ([u8; 32], Vec<u8>);

/// Where the client's tickets come from (its wallet, [`crate::tickets::TicketWallet`]).
pub trait TicketSource: Send + Sync + std::fmt::Debug {
    /// The next unspent ticket: its serial and its bytes, if any is left.
    fn next_ticket(&self) -> Result<Option<ReadyTicket>, String>;
    /// A ticket is used up (credited, or refused as no good): never present it again.
    fn ticket_spent(&self, serial: &[u8; 32]) -> Result<(), String>;
    /// A ticket taken by [`TicketSource::next_ticket`] was not used (deferred, or its session
    /// ended first): it may be handed out again.
    fn ticket_returned(&self, serial: &[u8; 32]);
}

/// A [`TicketWallet`] shared by the clients of one process (a monitor's, say): each ticket is
/// handed to one client at a time, so two never present the same one.
#[derive(Clone)]
pub struct SharedWallet {
    wallet: TicketWallet,
    taken: Arc<std::sync::Mutex<std::collections::HashSet<[u8; 32]>>>,
}

impl SharedWallet {
    /// Shares `wallet`.
    pub fn new(wallet: TicketWallet) -> SharedWallet {
        SharedWallet {
            wallet,
            taken: Arc::default(),
        }
    }

    /// The wallet.
    pub fn wallet(&self) -> &TicketWallet {
        &self.wallet
    }

    fn taken(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<[u8; 32]>> {
        self.taken
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl std::fmt::Debug for SharedWallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedWallet").finish_non_exhaustive()
    }
}

impl TicketSource for SharedWallet {
    fn next_ticket(&self) -> Result<Option<ReadyTicket>, String> {
        let mut taken = self.taken();
        let next = self
            .wallet
            .first_unspent_except(|serial| taken.contains(&serial.0))
            .map_err(|error| error.to_string())?;
        Ok(next.map(|ticket| {
            taken.insert(ticket.serial.0);
            (ticket.serial.0, ticket.bytes)
        }))
    }

    fn ticket_spent(&self, serial: &[u8; 32]) -> Result<(), String> {
        let marked = self
            .wallet
            .mark_spent(&umbra_tickets::Serial(*serial))
            .map_err(|error| error.to_string());
        self.taken().remove(serial);
        marked
    }

    fn ticket_returned(&self, serial: &[u8; 32]) {
        self.taken().remove(serial);
    }
}

/// The most a low credit may be before a ticket is presented.
const MAX_LOW_WATER: u64 = 4 << 20;
/// After a ticket was deferred (not checked), wait this long before presenting one again.
const DEFERRED_WAIT: Duration = Duration::from_secs(15);
/// After a ticket was refused, wait this long before presenting the next.
const REFUSED_WAIT: Duration = Duration::from_secs(1);

/// What spending did, for the client's status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpendStats {
    /// Tickets sent to the gateway.
    pub presented: u64,
    /// Tickets the gateway credited.
    pub credited: u64,
    /// Tickets the gateway refused as no good.
    pub refused: u64,
    /// Tickets the gateway did not check (kept for later).
    pub deferred: u64,
}

/// A ticket under way.
struct UnderWay {
    serial: [u8; 32],
    /// Stretches not yet sent (none: waiting for the gateway's answer).
    chunks: VecDeque<SpendChunk>,
}

/// What happened that the application should hear of.
#[derive(Debug, PartialEq, Eq)]
pub enum SpendNotice {
    /// Credit is low and the wallet has no ticket left.
    OutOfTickets,
}

/// The client's side of spending tickets on one gateway.
pub(crate) struct Spender {
    source: Option<Arc<dyn TicketSource>>,
    /// The session's credit and the bytes a ticket buys, once the gateway said (tickets are
    /// demanded).
    credit: Option<(u64, u64)>,
    under_way: Option<UnderWay>,
    retry_at: Instant,
    /// The wallet was found empty this session (said once).
    told_empty: bool,
    stats: SpendStats,
}

impl Spender {
    pub(crate) fn new(source: Option<Arc<dyn TicketSource>>, now: Instant) -> Spender {
        Spender {
            source,
            credit: None,
            under_way: None,
            retry_at: now,
            told_empty: false,
            stats: SpendStats::default(),
        }
    }

    pub(crate) fn stats(&self) -> SpendStats {
        self.stats
    }

    /// The credit the gateway last said, less what was sent since (none: not demanded).
    pub(crate) fn credit(&self) -> Option<u64> {
        self.credit.map(|(balance, _)| balance)
    }

    /// A new session: its credit comes with its welcome; a ticket under way stays in the
    /// wallet and goes again.
    pub(crate) fn session_started(&mut self) {
        self.credit = None;
        if let Some(ticket) = self.under_way.take() {
            self.returned(&ticket.serial);
        }
        self.told_empty = false;
    }

    /// The gateway said the session's credit.
    pub(crate) fn credited(&mut self, balance: u64, ticket_bytes: u64) {
        if self
            .under_way
            .as_ref()
            .is_some_and(|ticket| ticket.chunks.is_empty())
            && let Some(ticket) = self.under_way.take()
        {
            self.stats.credited += 1;
            self.spent(&ticket.serial);
        }
        self.credit = Some((balance, ticket_bytes));
    }

    /// The gateway refused something: a ticket's answer, if one waits for it.
    pub(crate) fn refused(&mut self, now: Instant, reason: Refusal) {
        let waiting = self
            .under_way
            .as_ref()
            .is_some_and(|ticket| ticket.chunks.is_empty());
        match reason {
            Refusal::TicketRefused if waiting => {
                if let Some(ticket) = self.under_way.take() {
                    self.stats.refused += 1;
                    self.spent(&ticket.serial);
                }
                self.retry_at = now + REFUSED_WAIT;
            }
            Refusal::TicketDeferred if waiting => {
                if let Some(ticket) = self.under_way.take() {
                    self.returned(&ticket.serial);
                }
                self.stats.deferred += 1;
                self.retry_at = now + DEFERRED_WAIT;
            }
            _ => {}
        }
    }

    /// A packet of `len` bytes went to the gateway.
    pub(crate) fn packet_sent(&mut self, len: u64) {
        if let Some((balance, _)) = &mut self.credit {
            *balance = balance.saturating_sub(len);
        }
    }

    /// The next stretch of a ticket to send in a cover slot, if one is due.
    pub(crate) fn next_chunk(&mut self, now: Instant) -> (Option<SpendChunk>, Option<SpendNotice>) {
        let mut notice = None;
        if self.under_way.is_none()
            && let Some((balance, ticket_bytes)) = self.credit
            && balance < (ticket_bytes / 2).clamp(1, MAX_LOW_WATER)
            && now >= self.retry_at
            && let Some(source) = &self.source
        {
            match source.next_ticket() {
                Ok(Some((serial, bytes))) => {
                    let chunks: VecDeque<SpendChunk> = SpendChunk::split(&bytes).into();
                    if chunks.is_empty() {
                        // cannot be sent: throw it away rather than try it forever
                        self.spent(&serial);
                    } else {
                        self.stats.presented += 1;
                        self.under_way = Some(UnderWay { serial, chunks });
                    }
                }
                Ok(None) => {
                    if !self.told_empty {
                        self.told_empty = true;
                        notice = Some(SpendNotice::OutOfTickets);
                    }
                    self.retry_at = now + DEFERRED_WAIT;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot read the ticket wallet");
                    self.retry_at = now + DEFERRED_WAIT;
                }
            }
        }
        let chunk = self
            .under_way
            .as_mut()
            .and_then(|ticket| ticket.chunks.pop_front());
        (chunk, notice)
    }

    fn returned(&self, serial: &[u8; 32]) {
        if let Some(source) = &self.source {
            source.ticket_returned(serial);
        }
    }

    fn spent(&self, serial: &[u8; 32]) {
        if let Some(source) = &self.source
            && let Err(error) = source.ticket_spent(serial)
        {
            tracing::warn!(%error, "cannot mark a ticket spent in the wallet");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use umbra_wire::gateway::{MAX_SPEND_CHUNK, SpendAssembler};

    #[derive(Debug, Default)]
    struct Wallet {
        unspent: Mutex<Vec<ReadyTicket>>,
        spent: Mutex<Vec<[u8; 32]>>,
    }

    impl TicketSource for Wallet {
        fn next_ticket(&self) -> Result<Option<ReadyTicket>, String> {
            Ok(self.unspent.lock().unwrap().first().cloned())
        }
        fn ticket_spent(&self, serial: &[u8; 32]) -> Result<(), String> {
            self.unspent.lock().unwrap().retain(|(s, _)| s != serial);
            self.spent.lock().unwrap().push(*serial);
            Ok(())
        }
        fn ticket_returned(&self, _: &[u8; 32]) {}
    }

    fn wallet(count: u8) -> Arc<Wallet> {
        let wallet = Wallet::default();
        for n in 0..count {
            wallet
                .unspent
                .lock()
                .unwrap()
                .push(([n; 32], vec![n; MAX_SPEND_CHUNK + 10]));
        }
        Arc::new(wallet)
    }

    #[test]
    fn a_ticket_goes_when_credit_runs_low_and_is_spent_once_credited() {
        let now = Instant::now();
        let wallet = wallet(2);
        let mut spender = Spender::new(Some(wallet.clone()), now);
        // tickets not demanded: nothing goes
        assert_eq!(spender.next_chunk(now), (None, None));
        spender.credited(10_000, 8_000);
        assert_eq!(
            spender.next_chunk(now).0,
            None,
            "credit above half a ticket"
        );
        spender.packet_sent(7_000);
        let mut assembler = SpendAssembler::default();
        let mut whole = None;
        for _ in 0..2 {
            let (chunk, _) = spender.next_chunk(now);
            whole = assembler.push(chunk.unwrap()).unwrap();
        }
        assert_eq!(whole, Some(vec![0; MAX_SPEND_CHUNK + 10]));
        // waiting for the answer: nothing more goes
        assert_eq!(spender.next_chunk(now).0, None);
        spender.credited(11_000, 8_000);
        assert_eq!(*wallet.spent.lock().unwrap(), vec![[0; 32]]);
        assert_eq!(spender.stats().credited, 1);
        assert_eq!(spender.credit(), Some(11_000));
    }

    #[test]
    fn refused_tickets_are_thrown_away_deferred_ones_kept_and_an_empty_wallet_said_once() {
        let now = Instant::now();
        let wallet = wallet(2);
        let mut spender = Spender::new(Some(wallet.clone()), now);
        spender.session_started();
        spender.credited(0, 8_000);
        // deferred: kept, and not presented again for a while
        while spender.next_chunk(now).0.is_some() {}
        spender.refused(now, Refusal::TicketDeferred);
        assert!(wallet.spent.lock().unwrap().is_empty());
        assert_eq!(spender.next_chunk(now + Duration::from_secs(1)).0, None);
        // refused as no good: thrown away, and the next one follows
        let later = now + DEFERRED_WAIT;
        while spender.next_chunk(later).0.is_some() {}
        spender.refused(later, Refusal::TicketRefused);
        assert_eq!(*wallet.spent.lock().unwrap(), vec![[0; 32]]);
        // a refusal of packets (no credit) while a ticket is under way changes nothing
        let later = later + REFUSED_WAIT;
        assert!(spender.next_chunk(later).0.is_some());
        spender.refused(later, Refusal::NoCredit);
        // a session that drops with a ticket under way keeps it in the wallet
        spender.session_started();
        assert_eq!(wallet.unspent.lock().unwrap().len(), 1);
        spender.credited(0, 8_000);
        while spender.next_chunk(later).0.is_some() {}
        spender.credited(8_000, 8_000);
        assert!(wallet.unspent.lock().unwrap().is_empty());
        // out of tickets: said once
        spender.packet_sent(8_000);
        let later = later + DEFERRED_WAIT;
        assert_eq!(
            spender.next_chunk(later),
            (None, Some(SpendNotice::OutOfTickets))
        );
        assert_eq!(spender.next_chunk(later + DEFERRED_WAIT), (None, None));
        // deferred, refused, cut off by the session's end, presented again
        assert_eq!(spender.stats().presented, 4);
    }
}
