//! A gateway's core fed what clients send, whatever the bytes: messages are decoded as the
//! session does, and the valid ones handed to the core, with connections, disconnections and
//! storage events interleaved. Nothing may panic, and a session's actions go only to it.

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use umbra_gateway::{Action, ClientId, GatewayConfig, GatewayCore};
use umbra_sphinx::NodeAddress;
use umbra_wire::gateway::ClientMessage;

fuzz_target!(|data: &[u8]| {
    let config = GatewayConfig {
        daily_allowance: Some(10_000),
        inbox_max_messages: 4,
        max_unconfirmed: 3,
        ..GatewayConfig::default()
    };
    let clients = [ClientId([1; 32]), ClientId([2; 32])];
    let mut core = GatewayCore::new(config, [NodeAddress::new([7; 32])], [(clients[0], 2, 20)], 10);
    let start = Instant::now();
    let mut now = start;
    let mut sessions = [None, None];
    let mut chunks = data.split(|&b| b == 0xff);
    while let Some(chunk) = chunks.next() {
        let Some((&op, rest)) = chunk.split_first() else { continue };
        let who = usize::from(op >> 7);
        match op % 6 {
            0 => sessions[who] = Some(core.client_connected(now, clients[who])),
            1 => {
                if let Some(session) = sessions[who].take() {
                    core.client_disconnected(clients[who], session);
                }
            }
            2 | 3 => {
                if let (Some(session), Ok(message)) = (sessions[who], ClientMessage::decode(rest)) {
                    core.handle_client(now, clients[who], session, message);
                }
            }
            4 => now += Duration::from_secs(u64::from(rest.first().copied().unwrap_or(0)) * 600),
            _ => {
                let id = u64::from(rest.first().copied().unwrap_or(0));
                core.stored(clients[who], id);
                core.removed(clients[who], 1, id);
            }
        }
        while let Some(action) = core.poll_action() {
            match action {
                Action::ToClient { client, session, .. } | Action::LoadInbox { client, session, .. } => {
                    let i = clients.iter().position(|c| *c == client).unwrap_or(0);
                    assert_eq!(sessions[i], Some(session), "an action for a session that is not current");
                }
                Action::Store { delivery, .. } => core.stored(clients[0], delivery.id),
                _ => {}
            }
        }
    }
});
