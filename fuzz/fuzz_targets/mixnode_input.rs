//! A mix node's core fed whatever the fuzzer makes up: raw frames, packets built for the node
//! and then damaged, replays, frames of either key rotation, and the clock moving on. Nothing
//! may panic, no packet may leave before it is due or out of order, and every frame received
//! must be accounted for exactly once.

#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use umbra_mixnode::{Dropped, MixConfig, MixCore, ReplayFilter, ReplayFilterConfig, RotationKey, Unwrapper};
use umbra_sphinx::{Delay, Destination, DestinationAddress, Hop, PacketBuilder, PacketSize, PrivateKey, SurbId};
use umbra_wire::frame::{self, Decoded, Frame, FrameHeader, KeyRotation};

struct Keys {
    me: PrivateKey,
    previous: PrivateKey,
    next: (PrivateKey, SocketAddr),
    me_at: SocketAddr,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        me: PrivateKey::from_bytes([1; 32]),
        previous: PrivateKey::from_bytes([2; 32]),
        next: (PrivateKey::from_bytes([3; 32]), "10.0.3.1:1789".parse().unwrap_or(SocketAddr::from(([10, 0, 3, 1], 1789)))),
        me_at: SocketAddr::from(([10, 0, 2, 1], 1789)),
    })
}

fuzz_target!(|data: &[u8]| {
    let keys = keys();
    let replay = ReplayFilterConfig {
        expected_packets_per_second: 10,
        retention: Duration::from_secs(100),
        false_positive_rate: 1e-6,
    };
    let config = MixConfig {
        max_delay: Duration::from_millis(500),
        replay: replay.clone(),
    };
    let (Ok(current), Ok(old)) = (ReplayFilter::new(5, &replay), ReplayFilter::new(4, &replay)) else { return };
    let unwrapper = Unwrapper::new(
        RotationKey::new(keys.me.clone(), Arc::new(current)),
        Some(RotationKey::new(keys.previous.clone(), Arc::new(old))),
    );
    let mut core = MixCore::new(&config, [keys.next.1]);
    let mut rng = ChaCha20Rng::from_seed([data.first().copied().unwrap_or(0); 32]);
    let start = Instant::now();
    let mut now = start;
    let mut last: Option<Frame> = None;
    let mut sent_dues = Vec::new();

    let mut ops = data.iter().skip(1).copied();
    while let Some(op) = ops.next() {
        let arg = ops.next().unwrap_or(0);
        match op % 5 {
            // raw bytes as a frame
            0 => {
                let len = usize::from(arg) * 16;
                let bytes: Vec<u8> = ops.by_ref().take(len).collect();
                match frame::decode(&bytes) {
                    Ok(Decoded::Frame { frame, .. }) => core.handle_unwrapped(now, unwrapper.unwrap(frame)),
                    Ok(Decoded::Incomplete { .. }) => {}
                    Err(error) => core.handle_unwrapped(now, Err(Dropped::BadFrame(error))),
                }
            }
            // a packet built for this node (or its previous key), perhaps damaged
            1 | 2 => {
                let key = if arg & 1 == 0 { &keys.me } else { &keys.previous };
                let hop = |k: &PrivateKey, at: SocketAddr| Hop::new(umbra_wire::address::encode(at), k.public_key());
                let route = [hop(key, keys.me_at), hop(&keys.next.0, keys.next.1)];
                let delays = [Delay::from_millis(u64::from(arg) * 7), Delay::ZERO];
                let destination = Destination::new(DestinationAddress::new([9; 32]), SurbId::default());
                let size = PacketSize::ALL[usize::from(arg >> 5) % PacketSize::ALL.len()];
                let Ok(packet) = PacketBuilder::new(size).build(&mut rng, &route, &delays, &destination, b"x") else {
                    panic!("a valid packet must build");
                };
                let mut bytes = packet.into_bytes();
                if op % 5 == 2 {
                    let at = usize::from(ops.next().unwrap_or(0)) * 131 % bytes.len();
                    bytes[at] ^= ops.next().unwrap_or(1) | 1;
                }
                let Ok(packet) = umbra_sphinx::Packet::from_bytes(bytes) else { panic!("length kept") };
                let rotation = match arg >> 6 {
                    0 => KeyRotation::Unknown,
                    1 => KeyRotation::of(5),
                    2 => KeyRotation::of(4),
                    _ => KeyRotation::Odd,
                };
                let header = match rotation {
                    KeyRotation::Unknown => FrameHeader::v7(size),
                    rotation => FrameHeader::v8(size, rotation),
                };
                let frame = Frame { header, packet };
                last = Some(frame.clone());
                core.handle_unwrapped(now, unwrapper.unwrap(frame));
            }
            // a replay of the last packet
            3 => {
                if let Some(frame) = last.clone() {
                    core.handle_unwrapped(now, unwrapper.unwrap(frame));
                }
            }
            // time passes; whatever is due leaves
            _ => {
                now += Duration::from_millis(u64::from(arg));
                while let Some(transmit) = core.poll_transmit(now) {
                    assert!(transmit.due <= now, "left early");
                    sent_dues.push(transmit.due);
                }
            }
        }
    }
    // let everything out, waking exactly when asked
    while let Some(wakeup) = core.poll_timeout() {
        let wakeup = wakeup.max(now);
        while let Some(transmit) = core.poll_transmit(wakeup) {
            sent_dues.push(transmit.due);
        }
        now = wakeup;
    }
    assert!(sent_dues.windows(2).all(|w| w[0] <= w[1]), "left out of order");
    let c = core.counters();
    let malformed: u64 = c.malformed.values().sum();
    let dropped: u64 = c.dropped.values().sum();
    assert_eq!(c.received, c.forwarded + c.replayed + c.expired + malformed + dropped, "{c:?}");
    assert_eq!(c.forwarded as usize, sent_dues.len());
});
