//! Bandwidth tickets at the gateway: a client's credit comes from the tickets it spends.
//!
//! A ticket arrives in stretches ([`SpendChunk`]s) riding in the client's cover slots. Whole,
//! it is checked with public keys only ([`TicketRules::verify`]: the signatures of validators
//! holding more than 2/3 of the voting power, a live key period, this chain), then handed to
//! the shell to record durably with the client's new credit ([`Action::SpendTicket`]); only
//! once it is on disk is the session credited ([`GatewayCore::ticket_recorded`]) — a gateway
//! killed in between has the ticket to redeem and the client's credit on disk. A serial seen
//! before at this gateway is refused and credits nothing; one spent at another gateway is
//! caught when redeemed (the ledger pays the first redeemer only).
//!
//! One ticket is checked at a time per session, and at most [`CHECKS_PER_MINUTE`] a minute:
//! checking costs a few RSA verifications, and anyone can send bytes that look like tickets.
//! A ticket beyond that is deferred (not checked, not lost: the client presents it again).

use std::time::{Duration, Instant};

use umbra_wire::gateway::{Record, Refusal, SpendChunk};

use super::{Action, ClientId, GatewayCore, SessionId};

/// How often changed credits are saved (they are also saved with every ticket recorded).
pub(crate) const SAVE_CREDITS_EVERY: Duration = Duration::from_secs(10);
/// Tickets a session may have checked per minute.
pub const CHECKS_PER_MINUTE: u32 = 12;

/// A ticket that checked out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcceptedTicket {
    /// Its serial (what the gateway and the ledger remember as spent).
    pub serial: [u8; 32],
    /// Its key period.
    pub period: u64,
}

/// Checks a ticket's bytes: what it is, or why it is refused (in words for the client).
pub type TicketVerifier = Box<dyn Fn(&[u8]) -> Result<AcceptedTicket, String> + Send + Sync>;

/// How a gateway that demands tickets checks and values them.
pub struct TicketRules {
    /// Bytes of packets one ticket buys.
    pub ticket_bytes: u64,
    /// Checks a ticket (the shell builds it from the ledger's announced issuer keys).
    pub verify: TicketVerifier,
}

impl std::fmt::Debug for TicketRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketRules")
            .field("ticket_bytes", &self.ticket_bytes)
            .finish_non_exhaustive()
    }
}

/// Where a session's ticket spending stands.
#[derive(Debug)]
pub(crate) enum SpendState {
    /// Ready for a ticket; `window` is when the current minute of checks started and `checks`
    /// how many it has had.
    Idle { window: Instant, checks: u32 },
    /// A ticket checked out and is being recorded.
    Recording {
        serial: [u8; 32],
        window: Instant,
        checks: u32,
    },
}

impl SpendState {
    pub(crate) fn new(now: Instant) -> SpendState {
        SpendState::Idle {
            window: now,
            checks: 0,
        }
    }
}

impl GatewayCore {
    /// Makes the gateway demand tickets (checked with `rules`) instead of the daily allowance,
    /// or, with `None`, stop demanding them. Connected sessions hear their credit.
    pub fn set_ticket_rules(&mut self, rules: Option<TicketRules>) {
        let was = self.tickets.as_ref().map(|r| r.ticket_bytes);
        self.tickets = rules;
        let now_bytes = self.tickets.as_ref().map(|r| r.ticket_bytes);
        if let Some(ticket_bytes) = now_bytes
            && was != now_bytes
        {
            let clients: Vec<ClientId> = self.sessions.keys().copied().collect();
            for client in clients {
                let balance = self.credits.get(&client).copied().unwrap_or(0);
                if let Some(session) = self.sessions.get_mut(&client) {
                    session.writer.push(&Record::Credit {
                        balance,
                        ticket_bytes,
                    });
                }
                self.flush_push(client);
            }
        }
    }

    /// Whether the gateway demands tickets.
    pub fn demands_tickets(&self) -> bool {
        self.tickets.is_some()
    }

    /// Credits remembered from before a restart (the shell's saved credits).
    pub fn restore_credits(&mut self, credits: impl IntoIterator<Item = (ClientId, u64)>) {
        for (client, credit) in credits {
            if credit > 0 {
                self.credits.insert(client, credit);
            }
        }
    }

    /// A client's credit in bytes (0 when it has none).
    pub fn credit(&self, client: &ClientId) -> u64 {
        self.credits.get(client).copied().unwrap_or(0)
    }

    /// Takes `len` bytes from `client`'s credit; whether it had them.
    pub(super) fn charge(&mut self, client: ClientId, len: u64) -> bool {
        let Some(credit) = self.credits.get_mut(&client) else {
            return false;
        };
        if *credit < len {
            return false;
        }
        *credit -= len;
        if *credit == 0 {
            self.credits.remove(&client);
        }
        self.credits_dirty.insert(client);
        true
    }

    /// Asks the shell to save the credits changed since the last time.
    pub(super) fn save_credits(&mut self) {
        if self.credits_dirty.is_empty() {
            return;
        }
        let credits = std::mem::take(&mut self.credits_dirty)
            .into_iter()
            .map(|client| (client, self.credit(&client)))
            .collect();
        self.actions.push_back(Action::SaveCredits { credits });
    }

    /// A stretch of a ticket from a client's session.
    pub(super) fn spend_chunk(&mut self, now: Instant, client: ClientId, chunk: SpendChunk) {
        let Some(session) = self.sessions.get_mut(&client) else {
            return;
        };
        let whole = match session.spend.push(chunk) {
            Ok(Some(ticket)) => ticket,
            Ok(None) => return,
            Err(error) => {
                session.spend.clear();
                let detail = format!(
                    "the ticket's stretches did not add up ({error}); nothing was credited"
                );
                return self.refuse_ticket(client, Refusal::TicketRefused, "malformed", detail);
            }
        };
        let Some(rules) = &self.tickets else {
            let detail = "this gateway does not take tickets: it gives every client a daily allowance; the ticket was not used".to_owned();
            return self.refuse_ticket(client, Refusal::TicketDeferred, "not_demanded", detail);
        };
        let (window, checks) = match session.spend_state {
            SpendState::Idle { window, checks } => {
                if now.saturating_duration_since(window) >= Duration::from_secs(60) {
                    (now, 0)
                } else {
                    (window, checks)
                }
            }
            SpendState::Recording { .. } => {
                let detail =
                    "a ticket is still being recorded; present the next one once it is credited"
                        .to_owned();
                return self.refuse_ticket(client, Refusal::TicketDeferred, "busy", detail);
            }
        };
        if checks >= CHECKS_PER_MINUTE {
            let detail = format!(
                "more than {CHECKS_PER_MINUTE} tickets in a minute; this one was not checked: present it again later"
            );
            return self.refuse_ticket(client, Refusal::TicketDeferred, "rate", detail);
        }
        let checks = checks + 1;
        match (rules.verify)(&whole) {
            Ok(accepted) => {
                let credit = self.credits.get(&client).copied().unwrap_or(0);
                let credit_after = credit.saturating_add(rules.ticket_bytes);
                session.spend_state = SpendState::Recording {
                    serial: accepted.serial,
                    window,
                    checks,
                };
                let session = session.id;
                self.actions.push_back(Action::SpendTicket {
                    client,
                    session,
                    serial: accepted.serial,
                    period: accepted.period,
                    ticket: whole,
                    credit_after,
                });
            }
            Err(reason) => {
                session.spend_state = SpendState::Idle { window, checks };
                let detail = format!("ticket refused, nothing credited: {reason}");
                self.refuse_ticket(client, Refusal::TicketRefused, "invalid", detail);
            }
        }
    }

    /// The shell recorded a ticket: `fresh` if its serial was new here. A fresh one credits
    /// the client (whatever became of the session meanwhile); a serial seen before credits
    /// nothing and is refused.
    pub fn ticket_recorded(
        &mut self,
        client: ClientId,
        session: SessionId,
        serial: [u8; 32],
        fresh: bool,
    ) {
        self.end_recording(client, session, serial);
        let Some(ticket_bytes) = self.tickets.as_ref().map(|r| r.ticket_bytes) else {
            // no longer demanded (the network went back to the allowance meanwhile): the
            // ticket is recorded and will be redeemed; there is no credit to keep
            return;
        };
        if !fresh {
            let detail =
                "ticket refused, nothing credited: it was already spent at this gateway".to_owned();
            return self.refuse_ticket(client, Refusal::TicketRefused, "spent", detail);
        }
        let credit = self.credits.entry(client).or_default();
        *credit = credit.saturating_add(ticket_bytes);
        let balance = *credit;
        self.credits_dirty.insert(client);
        self.counters.tickets_accepted += 1;
        self.counters.credited_bytes = self.counters.credited_bytes.saturating_add(ticket_bytes);
        if let Some(current) = self.sessions.get_mut(&client).filter(|s| s.id == session) {
            current.writer.push(&Record::Credit {
                balance,
                ticket_bytes,
            });
            self.flush_push(client);
        }
    }

    /// The shell could not record a ticket (storage failed): nothing is credited, and the
    /// client may present it again.
    pub fn ticket_not_recorded(&mut self, client: ClientId, session: SessionId, serial: [u8; 32]) {
        self.end_recording(client, session, serial);
        let detail =
            "the gateway could not record the ticket; nothing was credited: present it again later"
                .to_owned();
        self.refuse_ticket(client, Refusal::TicketDeferred, "storage", detail);
    }

    fn end_recording(&mut self, client: ClientId, session: SessionId, serial: [u8; 32]) {
        if let Some(current) = self.sessions.get_mut(&client).filter(|s| s.id == session)
            && let SpendState::Recording {
                serial: recording,
                window,
                checks,
            } = current.spend_state
            && recording == serial
        {
            current.spend_state = SpendState::Idle { window, checks };
        }
    }

    fn refuse_ticket(
        &mut self,
        client: ClientId,
        reason: Refusal,
        name: &'static str,
        detail: String,
    ) {
        *self.counters.tickets_refused.entry(name).or_default() += 1;
        if let Some(session) = self.sessions.get_mut(&client) {
            let told = session.refusals.entry(reason).or_insert((0, String::new()));
            told.0 = told.0.saturating_add(1);
            told.1 = detail;
        }
        self.flush_push(client);
    }
}
