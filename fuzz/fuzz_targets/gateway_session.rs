//! A gateway's core fed what clients send, whatever the bytes: frames are decoded as the
//! session does, and the valid ones handed to the core, with connections (each with a
//! schedule), disconnections, storage events and time interleaved. Nothing may panic, a
//! session's actions go only to it, and a shaped session's frames are all one size.

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use umbra_gateway::{Action, ClientId, GatewayConfig, GatewayCore, KnownClient};
use umbra_sphinx::NodeAddress;
use umbra_wire::gateway::{ClientFrame, FRAME_LEN, Hello, Schedule, VERSION};

fuzz_target!(|data: &[u8]| {
    let config = GatewayConfig {
        daily_allowance: Some(10_000),
        inbox_max_messages: 4,
        max_unconfirmed: 3,
        ..GatewayConfig::default()
    };
    let clients = [ClientId([1; 32]), ClientId([2; 32])];
    let start = Instant::now();
    let known = KnownClient { client: clients[0], stored: 2, stored_bytes: 20, last_seen_ago: Duration::from_secs(60) };
    let mut core = GatewayCore::new(config, start, [NodeAddress::new([7; 32])], [known], 10, [9; 32]);
    let mut now = start;
    let mut sessions = [None, None];
    let mut shaped = [false, false];
    let mut chunks = data.split(|&b| b == 0xff);
    while let Some(chunk) = chunks.next() {
        let Some((&op, rest)) = chunk.split_first() else { continue };
        let who = usize::from(op >> 7);
        match op % 6 {
            0 => {
                let schedule = match rest.first().copied().unwrap_or(0) % 3 {
                    0 => Schedule::InsecurePush,
                    1 => Schedule::Poisson { mean: Duration::from_micros(u64::from(rest.get(1).copied().unwrap_or(0)) * 100) },
                    _ => Schedule::Constant { interval: Duration::from_micros(u64::from(rest.get(1).copied().unwrap_or(0)) * 100) },
                };
                shaped[who] = schedule.is_shaped();
                sessions[who] = Some(core.client_connected(now, clients[who], Hello { version: VERSION, schedule }));
            }
            1 => {
                if let Some(session) = sessions[who].take() {
                    core.client_disconnected(now, clients[who], session);
                }
            }
            2 | 3 => {
                if let (Some(session), Ok(frame)) = (sessions[who], ClientFrame::decode(rest)) {
                    core.handle_client(now, clients[who], session, frame);
                }
            }
            4 => {
                now += Duration::from_millis(u64::from(rest.first().copied().unwrap_or(0)) * 100);
                core.handle_timeout(now);
                if let Some(due) = core.poll_timeout() {
                    assert!(due > now, "a frame due at once after handle_timeout");
                }
            }
            _ => {
                let id = u64::from(rest.first().copied().unwrap_or(0));
                core.stored(clients[who], id);
                core.removed(clients[who], 1, id);
            }
        }
        while let Some(action) = core.poll_transmit(now) {
            match action {
                Action::ToClient { client, session, frame } => {
                    let i = clients.iter().position(|c| *c == client).unwrap_or(0);
                    assert_eq!(sessions[i], Some(session), "an action for a session that is not current");
                    assert!(!shaped[i] || frame.len() == FRAME_LEN, "a shaped frame of {} bytes", frame.len());
                }
                Action::LoadInbox { client, session, .. } => {
                    let i = clients.iter().position(|c| *c == client).unwrap_or(0);
                    assert_eq!(sessions[i], Some(session), "an action for a session that is not current");
                }
                Action::Store { delivery, .. } => core.stored(clients[0], delivery.id),
                _ => {}
            }
        }
    }
});
