//! Bandwidth tickets at the gateway core: credit from tickets, refusals, limits, saving.
//!
//! The verifier here stands in for the shell's (the ledger's issuer keys, tested with real
//! tickets in `umbra-tickets`, the ledger and the processes test): it accepts bytes that start
//! with `good` and names their serial by the byte after.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::time::{Duration, Instant};

use umbra_gateway::{
    AcceptedTicket, Action, CHECKS_PER_MINUTE, ClientId, GatewayConfig, GatewayCore, SessionId,
    TicketRules,
};
use umbra_sphinx::{NodeAddress, Packet, PacketSize};
use umbra_wire::gateway::{
    ClientFrame, DownlinkReader, Hello, Record, Refusal, Schedule, SpendChunk, VERSION,
};

const LAYER1: NodeAddress = NodeAddress::new([1; 32]);
const ALICE: ClientId = ClientId([0xa1; 32]);
const TICKET_BYTES: u64 = 10_000;

fn rules() -> TicketRules {
    TicketRules {
        ticket_bytes: TICKET_BYTES,
        verify: Box::new(|bytes: &[u8]| match bytes {
            [b'g', b'o', b'o', b'd', serial, ..] => Ok(AcceptedTicket {
                serial: [*serial; 32],
                period: 3,
            }),
            _ => Err("no validator signed it".to_owned()),
        }),
    }
}

fn ticket(serial: u8) -> Vec<u8> {
    // longer than a frame's room: it comes in two stretches
    let mut bytes = b"good".to_vec();
    bytes.push(serial);
    bytes.resize(3000, 0);
    bytes
}

struct Test {
    core: GatewayCore,
    now: Instant,
    session: SessionId,
    reader: DownlinkReader,
}

impl Test {
    fn new(config: GatewayConfig) -> Test {
        let now = Instant::now();
        let mut core = GatewayCore::new(config, now, [LAYER1], [], 1, [7; 32]);
        core.set_ticket_rules(Some(rules()));
        let session = core.client_connected(
            now,
            ALICE,
            Hello {
                version: VERSION,
                schedule: Schedule::InsecurePush,
            },
        );
        Test {
            core,
            now,
            session,
            reader: DownlinkReader::new(),
        }
    }

    /// What the core asked since the last call, with the records Alice read.
    fn step(&mut self) -> (Vec<Action>, Vec<Record>) {
        let actions: Vec<Action> =
            std::iter::from_fn(|| self.core.poll_transmit(self.now)).collect();
        let mut records = Vec::new();
        for action in &actions {
            if let Action::ToClient { frame, session, .. } = action
                && *session == self.session
            {
                records.extend(self.reader.read(frame).unwrap());
            }
        }
        (actions, records)
    }

    fn send(&mut self, frame: ClientFrame) {
        self.core
            .handle_client(self.now, ALICE, self.session, frame);
    }

    fn spend(&mut self, ticket: &[u8]) {
        for chunk in SpendChunk::split(ticket) {
            self.send(ClientFrame {
                spend: Some(chunk),
                ..ClientFrame::default()
            });
        }
    }

    fn packet(&mut self) {
        let packet = Packet::from_bytes(vec![0; PacketSize::Regular.packet_len()]).unwrap();
        self.send(ClientFrame {
            forward: Some((LAYER1, packet)),
            ..ClientFrame::default()
        });
    }

    /// The ticket the core asked to record.
    fn recording(actions: &[Action]) -> Option<([u8; 32], u64)> {
        actions.iter().find_map(|action| match action {
            Action::SpendTicket {
                serial,
                credit_after,
                period,
                ..
            } => {
                assert_eq!(*period, 3);
                Some((*serial, *credit_after))
            }
            _ => None,
        })
    }
}

fn refusals(records: &[Record]) -> Vec<(Refusal, String)> {
    records
        .iter()
        .filter_map(|record| match record {
            Record::Refused { reason, detail, .. } => Some((*reason, detail.clone())),
            _ => None,
        })
        .collect()
}

fn forwarded(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Forward { .. }))
        .count()
}

#[test]
fn a_client_without_credit_is_refused_until_a_ticket_is_recorded() {
    let mut t = Test::new(GatewayConfig::default());
    let (_, records) = t.step();
    assert!(matches!(records[0], Record::Welcome { allowance: 0, .. }));
    assert_eq!(
        records[1],
        Record::Credit {
            balance: 0,
            ticket_bytes: TICKET_BYTES
        }
    );
    // no credit: refused, with words that say what to do
    t.packet();
    let (actions, records) = t.step();
    assert_eq!(forwarded(&actions), 0);
    let refused = refusals(&records);
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].0, Refusal::NoCredit);
    assert!(
        refused[0].1.contains("umbra client buy"),
        "{}",
        refused[0].1
    );
    assert_eq!(t.core.counters().refused.get("no_credit"), Some(&1));

    // a ticket: recorded first, credited only once the shell says it is on disk
    t.spend(&ticket(1));
    let (actions, records) = t.step();
    assert_eq!(Test::recording(&actions), Some(([1; 32], TICKET_BYTES)));
    assert!(records.is_empty());
    assert_eq!(t.core.credit(&ALICE), 0);
    t.packet();
    assert_eq!(
        forwarded(&t.step().0),
        0,
        "not credited before it is recorded"
    );
    t.core.ticket_recorded(ALICE, t.session, [1; 32], true);
    let (_, records) = t.step();
    assert_eq!(
        records,
        vec![Record::Credit {
            balance: TICKET_BYTES,
            ticket_bytes: TICKET_BYTES
        }]
    );
    assert_eq!(t.core.counters().tickets_accepted, 1);

    // each packet takes its bytes from the credit, down to the last whole packet
    let len = PacketSize::Regular.packet_len() as u64;
    let fits = TICKET_BYTES / len;
    for _ in 0..fits {
        t.packet();
    }
    assert_eq!(forwarded(&t.step().0) as u64, fits);
    assert_eq!(t.core.credit(&ALICE), TICKET_BYTES - fits * len);
    t.packet();
    let (actions, records) = t.step();
    assert_eq!(forwarded(&actions), 0);
    assert_eq!(refusals(&records)[0].0, Refusal::NoCredit);
}

#[test]
fn a_ticket_spent_here_before_forged_or_sent_too_often_credits_nothing() {
    let mut t = Test::new(GatewayConfig::default());
    t.step();
    // seen before at this gateway (the shell's durable spent set says so)
    t.spend(&ticket(1));
    let (actions, _) = t.step();
    let (serial, _) = Test::recording(&actions).unwrap();
    t.core.ticket_recorded(ALICE, t.session, serial, false);
    let (_, records) = t.step();
    let refused = refusals(&records);
    assert_eq!(refused[0].0, Refusal::TicketRefused);
    assert!(refused[0].1.contains("already spent"), "{}", refused[0].1);
    assert_eq!(t.core.credit(&ALICE), 0);

    // forged: refused before anything is recorded
    let mut forged = ticket(2);
    forged[0] = b'b';
    t.spend(&forged);
    let (actions, records) = t.step();
    assert_eq!(Test::recording(&actions), None);
    let refused = refusals(&records);
    assert_eq!(refused[0].0, Refusal::TicketRefused);
    assert!(refused[0].1.contains("no validator signed it"));

    // stretches out of order: refused, and the next ticket starts clean
    let chunks = SpendChunk::split(&ticket(3));
    t.send(ClientFrame {
        spend: Some(chunks[1].clone()),
        ..ClientFrame::default()
    });
    assert_eq!(refusals(&t.step().1)[0].0, Refusal::TicketRefused);

    // while one is being recorded, the next waits (deferred, not refused: it is still good)
    t.spend(&ticket(4));
    let (actions, _) = t.step();
    let (recording, _) = Test::recording(&actions).unwrap();
    t.spend(&ticket(5));
    let (actions, records) = t.step();
    assert_eq!(Test::recording(&actions), None);
    assert_eq!(refusals(&records)[0].0, Refusal::TicketDeferred);
    t.core.ticket_recorded(ALICE, t.session, recording, true);
    assert_eq!(t.core.credit(&ALICE), TICKET_BYTES);

    // checks are limited per minute: beyond, deferred unchecked; a minute later, checked
    // three checked so far (two tickets recorded, one forged)
    for _ in 3..CHECKS_PER_MINUTE {
        t.spend(&forged);
    }
    let (_, records) = t.step();
    assert!(
        refusals(&records)
            .iter()
            .all(|(r, _)| *r == Refusal::TicketRefused)
    );
    t.spend(&ticket(6));
    let (actions, records) = t.step();
    assert_eq!(Test::recording(&actions), None);
    let refused = refusals(&records);
    assert_eq!(refused[0].0, Refusal::TicketDeferred);
    assert!(refused[0].1.contains("present it again later"));
    t.now += Duration::from_secs(60);
    t.spend(&ticket(6));
    assert_eq!(Test::recording(&t.step().0).map(|(s, _)| s), Some([6; 32]));
    let counted: u64 = t.core.counters().tickets_refused.values().sum();
    assert!(counted >= 5, "{:?}", t.core.counters().tickets_refused);
}

#[test]
fn credits_are_saved_restored_and_kept_from_newcomers_but_not_forever() {
    let config = GatewayConfig {
        max_clients: 2,
        forget_clients_after: Duration::from_secs(7200),
        ..GatewayConfig::default()
    };
    let mut t = Test::new(config.clone());
    t.step();
    t.spend(&ticket(1));
    t.step();
    t.core.ticket_recorded(ALICE, t.session, [1; 32], true);
    t.packet();
    t.step();
    let left = TICKET_BYTES - PacketSize::Regular.packet_len() as u64;
    // changed credits are saved every few seconds
    t.now += Duration::from_secs(11);
    t.core.handle_timeout(t.now);
    let saved: Vec<_> = t
        .step()
        .0
        .into_iter()
        .filter_map(|a| match a {
            Action::SaveCredits { credits } => Some(credits),
            _ => None,
        })
        .collect();
    assert_eq!(saved, vec![vec![(ALICE, left)]]);

    // a gateway restarted with them welcomes Alice with her credit
    let mut restarted = GatewayCore::new(config, t.now, [LAYER1], [], 1, [7; 32]);
    restarted.set_ticket_rules(Some(rules()));
    restarted.restore_credits([(ALICE, left)]);
    restarted.client_disconnected(t.now, ALICE, SessionId(0));
    let session = restarted.client_connected(
        t.now,
        ALICE,
        Hello {
            version: VERSION,
            schedule: Schedule::InsecurePush,
        },
    );
    let mut reader = DownlinkReader::new();
    let mut welcome = Vec::new();
    while let Some(action) = restarted.poll_transmit(t.now) {
        if let Action::ToClient {
            frame, session: s, ..
        } = action
        {
            assert_eq!(s, session);
            welcome.extend(reader.read(&frame).unwrap());
        }
    }
    assert!(matches!(welcome[0], Record::Welcome { allowance, .. } if allowance == left));
    restarted.client_disconnected(t.now, ALICE, session);

    // newcomers beyond the bound do not push out a client with credit
    for n in 0..5u8 {
        let s = restarted.client_connected(
            t.now,
            ClientId([n; 32]),
            Hello {
                version: VERSION,
                schedule: Schedule::InsecurePush,
            },
        );
        restarted.client_disconnected(t.now, ClientId([n; 32]), s);
    }
    assert_eq!(restarted.credit(&ALICE), left);
    assert!(restarted.sizes().known_clients <= 3);
    // but credit unused past `forget_clients_after` goes with the client
    let later = t.now + Duration::from_secs(7200 + 3601);
    restarted.handle_timeout(later);
    assert_eq!(restarted.credit(&ALICE), 0);
    assert_eq!(restarted.sizes().credits, 0);
}

#[test]
fn without_tickets_demanded_the_allowance_applies_and_tickets_are_deferred() {
    let mut t = Test::new(GatewayConfig {
        daily_allowance: Some(5000),
        ..GatewayConfig::default()
    });
    t.core.set_ticket_rules(None);
    t.step();
    t.packet();
    t.packet();
    let (actions, records) = t.step();
    assert_eq!(forwarded(&actions), 2);
    assert!(refusals(&records).is_empty());
    t.packet();
    assert_eq!(refusals(&t.step().1)[0].0, Refusal::AllowanceExhausted);
    t.spend(&ticket(1));
    let (actions, records) = t.step();
    assert_eq!(Test::recording(&actions), None);
    assert_eq!(refusals(&records)[0].0, Refusal::TicketDeferred);
}
