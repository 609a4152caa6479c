//! Two stream multiplexers on a virtual clock, joined by a simulated mixnet link that delays
//! every message by a random 50–600 ms (so messages overtake each other) and, in most tests,
//! drops 1 % of them. That loss stands for the rare message the real client gives up on after
//! its own packet retransmissions fail; the stream layer must recover from it by itself.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::time::{Duration, Instant};

use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use umbra_client::stream::{
    Destination, Frame, Host, Mux, OpenFailure, StreamConfig, StreamError, StreamEvent, StreamId,
    WireId, decode_message, encode_message,
};

const TICK: Duration = Duration::from_millis(10);

fn config() -> StreamConfig {
    StreamConfig {
        retransmit_after: Duration::from_secs(2),
        open_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(30),
        ..StreamConfig::default()
    }
}

fn destination() -> Destination {
    Destination::new(Host::Name("example.org".into()), 443).unwrap()
}

/// Two multiplexers and the link between them.
struct Pair {
    now: Instant,
    start: Instant,
    mux: [Mux; 2],
    /// Messages in flight: when they arrive, to which side, the bytes.
    flight: Vec<(Instant, usize, Vec<u8>)>,
    rng: ChaCha20Rng,
    /// Drop one message in this many (0: none).
    drop_one_in: u64,
    /// Messages from side 0 are lost (a peer that never answers).
    blackhole: bool,
    sent: [u64; 2],
    dropped: u64,
    /// Events per side, as they came.
    events: [Vec<StreamEvent>; 2],
}

impl Pair {
    fn new(config: StreamConfig, seed: u8, drop_one_in: u64) -> Self {
        let now = Instant::now();
        Pair {
            now,
            start: now,
            mux: [Mux::new(config.clone()).unwrap(), Mux::new(config).unwrap()],
            flight: Vec::new(),
            rng: ChaCha20Rng::from_seed([seed; 32]),
            drop_one_in,
            blackhole: false,
            sent: [0; 2],
            dropped: 0,
            events: [Vec::new(), Vec::new()],
        }
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Advances one tick: arrivals, timers, transmissions; returns the new events per side.
    fn step(&mut self) -> [Vec<StreamEvent>; 2] {
        self.now += TICK;
        let now = self.now;
        let mut arrived: Vec<_> = Vec::new();
        self.flight.retain(|(at, to, bytes)| {
            if *at <= now {
                arrived.push((*at, *to, bytes.clone()));
                false
            } else {
                true
            }
        });
        arrived.sort_by_key(|(at, _, _)| *at);
        for (_, to, bytes) in arrived {
            self.mux[to].handle_message(now, &bytes);
        }
        for side in 0..2 {
            if self.mux[side].next_timeout().is_some_and(|t| t <= now) {
                self.mux[side].handle_timeout(now);
            }
            while let Some(message) = self.mux[side].poll_transmit(now) {
                assert!(
                    message.len() <= 16 << 10,
                    "a message beyond max_message_size"
                );
                self.sent[side] += 1;
                if (side == 0 && self.blackhole)
                    || (self.drop_one_in > 0
                        && self.rng.next_u64().is_multiple_of(self.drop_one_in))
                {
                    self.dropped += 1;
                    continue;
                }
                let delay = Duration::from_millis(50 + self.rng.next_u64() % 551);
                self.flight.push((now + delay, 1 - side, message));
            }
        }
        let mut out = [Vec::new(), Vec::new()];
        for (side, events) in out.iter_mut().enumerate() {
            while let Some(event) = self.mux[side].poll_event() {
                self.events[side].push(event.clone());
                events.push(event);
            }
        }
        out
    }

    /// Opens a stream from side 0 and accepts it on side 1.
    fn connect(&mut self) -> (StreamId, StreamId) {
        let a = self.mux[0].open(self.now, destination()).unwrap();
        let mut b = None;
        let mut opened = false;
        for _ in 0..2000 {
            let [e0, e1] = self.step();
            for event in e1 {
                if let StreamEvent::Incoming { id, destination: d } = event {
                    assert_eq!(d, destination());
                    self.mux[1].accept(self.now, id).unwrap();
                    b = Some(id);
                }
            }
            opened |= e0.contains(&StreamEvent::Opened(a));
            if opened && let Some(b) = b {
                return (a, b);
            }
        }
        panic!("the stream did not open");
    }
}

/// One direction of a transfer: what is to be written, and what has been read.
struct Transfer {
    data: Vec<u8>,
    written: usize,
    closed: bool,
    read: Vec<u8>,
}

impl Transfer {
    fn new(len: usize, seed: u8) -> Self {
        let mut data = vec![0; len];
        ChaCha20Rng::from_seed([seed; 32]).fill_bytes(&mut data);
        Transfer {
            data,
            written: 0,
            closed: false,
            read: Vec::new(),
        }
    }

    /// Writes what fits from `from`, closes when all is written, reads what arrived at `to`.
    fn pump(&mut self, pair: &mut Pair, from: (usize, StreamId), to: (usize, StreamId)) {
        let now = pair.now;
        if self.written < self.data.len() {
            self.written += pair.mux[from.0]
                .write(now, from.1, &self.data[self.written..])
                .unwrap();
        } else if !self.closed {
            pair.mux[from.0].close_write(now, from.1).unwrap();
            self.closed = true;
        }
        if let Ok(bytes) = pair.mux[to.0].read(now, to.1, usize::MAX) {
            self.read.extend_from_slice(&bytes);
        }
    }
}

#[test]
fn ten_mib_each_way_at_once_arrives_intact() {
    let mut pair = Pair::new(config(), 1, 100);
    let (a, b) = pair.connect();
    let mut up = Transfer::new(10 << 20, 2);
    let mut down = Transfer::new(10 << 20, 3);
    let bound = config().receive_window as usize + config().send_buffer;
    while pair.events[0].iter().all(|e| *e != StreamEvent::Closed(a))
        || pair.events[1].iter().all(|e| *e != StreamEvent::Closed(b))
    {
        assert!(
            pair.elapsed() < Duration::from_secs(600),
            "the transfer stalled"
        );
        up.pump(&mut pair, (0, a), (1, b));
        down.pump(&mut pair, (1, b), (0, a));
        assert!(pair.mux[0].buffered(a) <= bound && pair.mux[1].buffered(b) <= bound);
        pair.step();
    }
    assert!(up.read == up.data, "the upload arrived changed");
    assert!(down.read == down.data, "the download arrived changed");
    assert!(
        pair.dropped > 0,
        "the link dropped nothing: the test proves no recovery"
    );
    assert!(pair.mux[0].stats().retransmitted_bytes + pair.mux[1].stats().retransmitted_bytes > 0);
    assert!(pair.events[0].contains(&StreamEvent::PeerFinished(a)));
    assert_eq!(pair.mux[0].stream_count() + pair.mux[1].stream_count(), 0);
    for side in 0..2 {
        assert!(
            !pair.events[side]
                .iter()
                .any(|e| matches!(e, StreamEvent::Failed { .. })),
            "a stream failed"
        );
    }
}

#[test]
fn twenty_streams_all_complete() {
    let mut pair = Pair::new(config(), 4, 100);
    let mut opened = Vec::new();
    for _ in 0..20 {
        opened.push(pair.mux[0].open(pair.now, destination()).unwrap());
    }
    // (side-0 id, side-1 id, request, response)
    let mut streams: Vec<(StreamId, Option<StreamId>, Transfer, Transfer)> = opened
        .iter()
        .enumerate()
        .map(|(i, &a)| {
            let n = i as u8;
            (
                a,
                None,
                Transfer::new(1000 + 5000 * i, n),
                Transfer::new(200_000 + 7000 * i, 100 + n),
            )
        })
        .collect();
    let mut incoming = Vec::new();
    loop {
        assert!(pair.elapsed() < Duration::from_secs(300), "streams stalled");
        let [_, e1] = pair.step();
        for event in e1 {
            if let StreamEvent::Incoming { id, .. } = event {
                pair.mux[1].accept(pair.now, id).unwrap();
                incoming.push(id);
            }
        }
        for (a, b, request, response) in &mut streams {
            if b.is_none() {
                // Streams are numbered in the order they were opened on both sides.
                *b = incoming
                    .iter()
                    .copied()
                    .find(|id| id.number() == a.number());
            }
            let Some(b) = *b else { continue };
            request.pump(&mut pair, (0, *a), (1, b));
            response.pump(&mut pair, (1, b), (0, *a));
        }
        let closed = |side: usize| {
            pair.events[side]
                .iter()
                .filter(|e| matches!(e, StreamEvent::Closed(_)))
                .count()
        };
        if closed(0) == 20 && closed(1) == 20 {
            break;
        }
    }
    for (_, _, request, response) in &streams {
        assert!(request.read == request.data);
        assert!(response.read == response.data);
    }
    assert_eq!(pair.mux[0].stream_count() + pair.mux[1].stream_count(), 0);
}

#[test]
fn a_receiver_that_does_not_read_stops_the_sender() {
    let config = StreamConfig {
        idle_timeout: Duration::from_secs(120),
        ..config()
    };
    let window = config.receive_window as usize;
    let send_buffer = config.send_buffer;
    let mut pair = Pair::new(config, 5, 0);
    let (a, b) = pair.connect();
    let chunk = vec![7u8; 64 << 10];
    let mut accepted = 0;
    for _ in 0..3000 {
        accepted += pair.mux[0].write(pair.now, a, &chunk).unwrap();
        pair.step();
        assert!(pair.mux[0].buffered(a) <= send_buffer);
        assert!(pair.mux[1].buffered(b) <= window);
        assert!(pair.mux[1].total_buffered() <= window);
    }
    // 30 s of a writer that never stops: it got exactly the window and its own buffer in.
    assert_eq!(accepted, window + send_buffer);
    assert_eq!(pair.mux[1].buffered(b), window);
    assert_eq!(pair.mux[0].write(pair.now, a, &chunk).unwrap(), 0);
    // The receiver reads; the sender hears it may write again, and does.
    let got = pair.mux[1].read(pair.now, b, usize::MAX).unwrap();
    assert_eq!(got.len(), window);
    let mut writable = false;
    for _ in 0..500 {
        let [e0, _] = pair.step();
        if e0.contains(&StreamEvent::Writable(a)) {
            writable = true;
            break;
        }
    }
    assert!(writable, "the sender was never told it may write again");
    assert!(pair.mux[0].write(pair.now, a, &chunk).unwrap() > 0);
}

#[test]
fn half_close_leaves_the_other_direction_open() {
    let mut pair = Pair::new(config(), 6, 100);
    let (a, b) = pair.connect();
    pair.mux[0]
        .write(pair.now, a, b"GET / HTTP/1.0\r\n\r\n")
        .unwrap();
    pair.mux[0].close_write(pair.now, a).unwrap();
    assert!(matches!(
        pair.mux[0].write(pair.now, a, b"more"),
        Err(StreamError::WrongState { .. })
    ));
    let mut request = Vec::new();
    let mut finished = false;
    while !finished {
        assert!(pair.elapsed() < Duration::from_secs(60));
        let [_, e1] = pair.step();
        request.extend(pair.mux[1].read(pair.now, b, usize::MAX).unwrap());
        finished = e1.contains(&StreamEvent::PeerFinished(b));
    }
    assert_eq!(request, b"GET / HTTP/1.0\r\n\r\n");
    // The side that finished reading still writes a long answer, which arrives whole.
    let mut response = Transfer::new(1 << 20, 7);
    while !pair.events[0].contains(&StreamEvent::Closed(a))
        || !pair.events[1].contains(&StreamEvent::Closed(b))
    {
        assert!(
            pair.elapsed() < Duration::from_secs(120),
            "half-closed stream stalled"
        );
        response.pump(&mut pair, (1, b), (0, a));
        pair.step();
    }
    assert!(response.read == response.data);
}

#[test]
fn an_idle_stream_times_out_on_both_sides() {
    let mut pair = Pair::new(config(), 8, 0);
    let (a, b) = pair.connect();
    pair.mux[0].write(pair.now, a, b"hello").unwrap();
    let mut last_progress = pair.now;
    let mut failed = [None, None];
    while failed.iter().any(Option::is_none) {
        assert!(pair.elapsed() < Duration::from_secs(120), "no idle timeout");
        let events = pair.step();
        if let Ok(bytes) = pair.mux[1].read(pair.now, b, usize::MAX)
            && !bytes.is_empty()
        {
            last_progress = pair.now;
        }
        for (side, events) in events.into_iter().enumerate() {
            for event in events {
                if let StreamEvent::Failed { error, .. } = event {
                    failed[side] = Some((pair.now, error));
                }
            }
        }
    }
    for (side, failure) in failed.into_iter().enumerate() {
        let (at, error) = failure.unwrap();
        assert_eq!(error, StreamError::TimedOut, "side {side}");
        assert!(at >= last_progress + config().idle_timeout - Duration::from_secs(1));
        assert!(at <= last_progress + config().idle_timeout + Duration::from_secs(2));
    }
    assert!(matches!(
        pair.mux[0].write(pair.now, a, b"late"),
        Err(StreamError::NoSuchStream(_))
    ));
}

#[test]
fn a_reset_reaches_the_other_side() {
    let mut pair = Pair::new(config(), 9, 0);
    let (a, b) = pair.connect();
    pair.mux[1].write(pair.now, b, &[1; 5000]).unwrap();
    pair.mux[0].reset(pair.now, a).unwrap();
    let mut error = None;
    for _ in 0..200 {
        let [_, e1] = pair.step();
        for event in e1 {
            if let StreamEvent::Failed { id, error: e } = event {
                assert_eq!(id, b);
                error = Some(e);
            }
        }
    }
    assert_eq!(error, Some(StreamError::ResetByPeer));
    assert_eq!(pair.mux[0].stream_count() + pair.mux[1].stream_count(), 0);
    assert!(
        !pair.events[0]
            .iter()
            .any(|e| matches!(e, StreamEvent::Failed { .. }))
    );
}

#[test]
fn a_frame_for_an_unknown_stream_is_answered_with_a_reset() {
    let mut pair = Pair::new(config(), 10, 0);
    let (a, _) = pair.connect();
    // Side 1 never heard of stream 42 from side 0.
    let stray = encode_message(&[Frame::Data {
        stream: WireId {
            number: 42,
            from_opener: true,
        },
        offset: 0,
        bytes: vec![1, 2, 3],
    }]);
    pair.mux[1].handle_message(pair.now, &stray);
    assert_eq!(pair.mux[1].stats().unknown_stream_frames, 1);
    let reply = decode_message(&pair.mux[1].poll_transmit(pair.now).unwrap()).unwrap();
    assert!(
        reply
            .iter()
            .any(|f| matches!(f, Frame::Reset { stream, .. } if stream.number == 42))
    );
    // A stream side 0 has: its peer resetting it as unknown gives a clear error.
    let unknown = encode_message(&[Frame::Reset {
        stream: WireId {
            number: a.number(),
            from_opener: false,
        },
        reason: umbra_client::stream::ResetReason::UnknownStream,
    }]);
    pair.mux[0].handle_message(pair.now, &unknown);
    assert_eq!(
        pair.mux[0].poll_event(),
        Some(StreamEvent::Failed {
            id: a,
            error: StreamError::UnknownToPeer
        })
    );
}

#[test]
fn opening_to_a_silent_peer_times_out() {
    let mut pair = Pair::new(config(), 11, 0);
    pair.blackhole = true;
    let a = pair.mux[0].open(pair.now, destination()).unwrap();
    let mut failed = None;
    while failed.is_none() {
        assert!(
            pair.elapsed() < Duration::from_secs(60),
            "the open never failed"
        );
        for event in pair.step()[0].clone() {
            if let StreamEvent::OpenFailed { id, reason } = event {
                assert_eq!(id, a);
                failed = Some((pair.elapsed(), reason));
            }
        }
    }
    let (at, reason) = failed.unwrap();
    assert_eq!(reason, OpenFailure::TtlExpired);
    assert_eq!(reason.socks5_reply(), 0x06);
    assert!(at >= config().open_timeout && at < config().open_timeout + Duration::from_secs(1));
    assert!(
        pair.sent[0] >= 3,
        "the open was not sent again ({})",
        pair.sent[0]
    );
    assert_eq!(pair.mux[0].stream_count(), 0);
}

#[test]
fn a_refused_open_reports_the_reason() {
    let mut pair = Pair::new(config(), 12, 0);
    let a = pair.mux[0].open(pair.now, destination()).unwrap();
    let mut reason = None;
    for _ in 0..500 {
        let [e0, e1] = pair.step();
        for event in e1 {
            if let StreamEvent::Incoming { id, .. } = event {
                pair.mux[1]
                    .refuse(pair.now, id, OpenFailure::NotAllowed)
                    .unwrap();
            }
        }
        for event in e0 {
            if let StreamEvent::OpenFailed { id, reason: r } = event {
                assert_eq!(id, a);
                reason = Some(r);
            }
        }
    }
    assert_eq!(reason, Some(OpenFailure::NotAllowed));
    assert_eq!(OpenFailure::NotAllowed.socks5_reply(), 0x02);
    assert_eq!(pair.mux[0].stream_count() + pair.mux[1].stream_count(), 0);
}

#[test]
fn many_small_writes_share_messages() {
    let mut pair = Pair::new(config(), 13, 0);
    let (a, b) = pair.connect();
    let before = pair.sent[0];
    for _ in 0..500 {
        pair.mux[0].write(pair.now, a, b"0123456789").unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..200 {
        pair.step();
        got.extend(pair.mux[1].read(pair.now, b, usize::MAX).unwrap());
    }
    assert_eq!(got.len(), 5000);
    // 5000 bytes in 500 writes went out in one message (plus acks), not 500.
    assert!(
        pair.sent[0] - before <= 3,
        "{} messages",
        pair.sent[0] - before
    );
}

fn wire_id() -> impl Strategy<Value = WireId> {
    (0u32..(1 << 31), any::<bool>()).prop_map(|(number, from_opener)| WireId {
        number,
        from_opener,
    })
}

fn frame() -> impl Strategy<Value = Frame> {
    use umbra_client::stream::ResetReason;
    let host = prop_oneof![
        any::<[u8; 4]>().prop_map(|b| Host::Ip(std::net::IpAddr::from(b))),
        any::<[u8; 16]>().prop_map(|b| Host::Ip(std::net::IpAddr::from(b))),
        "[a-z0-9.-]{1,255}".prop_map(Host::Name),
    ];
    let failure = prop_oneof![
        Just(OpenFailure::Refused),
        Just(OpenFailure::Unreachable),
        Just(OpenFailure::NotAllowed),
        Just(OpenFailure::TtlExpired),
        Just(OpenFailure::General),
    ];
    let reason = prop_oneof![
        Just(ResetReason::Application),
        Just(ResetReason::TimedOut),
        Just(ResetReason::UnknownStream),
        Just(ResetReason::ProtocolViolation),
    ];
    prop_oneof![
        (0u32..(1 << 31), any::<u32>(), host, any::<u16>()).prop_map(|(n, window, h, port)| {
            Frame::Open {
                stream: WireId {
                    number: n,
                    from_opener: true,
                },
                window,
                destination: Destination::new(h, port).unwrap(),
            }
        }),
        (0u32..(1 << 31), any::<u32>()).prop_map(|(n, window)| Frame::OpenOk {
            stream: WireId {
                number: n,
                from_opener: false
            },
            window
        }),
        (0u32..(1 << 31), failure).prop_map(|(n, reason)| Frame::OpenFailed {
            stream: WireId {
                number: n,
                from_opener: false
            },
            reason
        }),
        (
            wire_id(),
            0u64..(1 << 60),
            proptest::collection::vec(any::<u8>(), 0..300)
        )
            .prop_map(|(stream, offset, bytes)| Frame::Data {
                stream,
                offset,
                bytes
            }),
        (wire_id(), any::<u64>(), any::<u64>(), any::<bool>()).prop_map(
            |(stream, a, b, finished)| Frame::Ack {
                stream,
                received: a.min(b),
                limit: a.max(b),
                finished
            }
        ),
        (wire_id(), any::<u64>()).prop_map(|(stream, end)| Frame::CloseWrite { stream, end }),
        (wire_id(), reason).prop_map(|(stream, reason)| Frame::Reset { stream, reason }),
    ]
}

proptest! {
    #[test]
    fn frames_round_trip(frames in proptest::collection::vec(frame(), 1..20)) {
        let bytes = encode_message(&frames);
        prop_assert_eq!(decode_message(&bytes).unwrap(), frames);
    }

    #[test]
    fn garbage_is_refused_and_counted_never_a_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let now = Instant::now();
        let mut mux = Mux::new(config()).unwrap();
        let valid = decode_message(&bytes).is_ok();
        mux.handle_message(now, &bytes);
        prop_assert_eq!(mux.stats().refused_messages, u64::from(!valid));
        while mux.poll_transmit(now).is_some() {}
        mux.handle_timeout(now + Duration::from_secs(1000));
    }

    #[test]
    fn damaged_messages_never_panic_a_busy_mux(
        frames in proptest::collection::vec(frame(), 1..10),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        cut in any::<usize>(),
    ) {
        let mut pair = Pair::new(config(), 14, 0);
        let (a, _) = pair.connect();
        pair.mux[0].write(pair.now, a, &[9; 1000]).unwrap();
        let mut bytes = encode_message(&frames);
        for (at, value) in flips {
            let len = bytes.len();
            bytes[at % len] ^= value;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        let valid = decode_message(&bytes).is_ok();
        for side in 0..2 {
            pair.mux[side].handle_message(pair.now, &bytes);
            prop_assert_eq!(pair.mux[side].stats().refused_messages, u64::from(!valid));
        }
        for _ in 0..50 {
            pair.step();
        }
    }
}

#[test]
fn a_late_ack_of_a_close_write_sent_again_is_accepted() {
    let now = Instant::now();
    let mut mux = Mux::new(config()).unwrap();
    let a = mux.open(now, destination()).unwrap();
    let to_us = WireId {
        number: a.number(),
        from_opener: false,
    };
    mux.handle_message(
        now,
        &encode_message(&[Frame::OpenOk {
            stream: to_us,
            window: 1000,
        }]),
    );
    assert_eq!(mux.poll_event(), Some(StreamEvent::Opened(a)));
    mux.close_write(now, a).unwrap();
    let sent = decode_message(&mux.poll_transmit(now).unwrap()).unwrap();
    assert!(
        sent.iter()
            .any(|f| matches!(f, Frame::CloseWrite { end: 0, .. }))
    );
    // No ack in time: the close-write is due again when the ack of the first one arrives.
    let later = now + config().retransmit_after;
    mux.handle_timeout(later);
    mux.handle_message(
        later,
        &encode_message(&[
            Frame::Ack {
                stream: to_us,
                received: 0,
                limit: 1000,
                finished: true,
            },
            Frame::CloseWrite {
                stream: to_us,
                end: 0,
            },
        ]),
    );
    assert_eq!(mux.stats().bad_frames, 0);
    assert_eq!(mux.poll_event(), Some(StreamEvent::PeerFinished(a)));
    // Its ack of the peer's close goes out, and then the stream is closed cleanly.
    let sent = decode_message(&mux.poll_transmit(later).unwrap()).unwrap();
    assert!(
        sent.iter()
            .any(|f| matches!(f, Frame::Ack { finished: true, .. }))
    );
    assert_eq!(mux.poll_event(), Some(StreamEvent::Closed(a)));
    assert_eq!(mux.stream_count(), 0);
}

#[test]
fn a_peer_that_lost_its_streams_is_found_out_by_the_keepalive() {
    let mut pair = Pair::new(config(), 13, 0);
    let (a, b) = pair.connect();
    pair.mux[1].write(pair.now, b, b"first bytes").unwrap();
    while pair.mux[0]
        .read(pair.now, a, usize::MAX)
        .unwrap()
        .is_empty()
    {
        pair.step();
    }
    for _ in 0..200 {
        pair.step(); // the window update and its way: all settled
    }
    // Side 1 restarts: a fresh multiplexer that never heard of the stream. Side 0 waits for
    // more bytes and has nothing of its own to send.
    pair.mux[1] = Mux::new(config()).unwrap();
    let restarted = pair.now;
    let failed = loop {
        assert!(
            pair.elapsed() < Duration::from_secs(120),
            "the waiting side never learned"
        );
        let [e0, _] = pair.step();
        if let Some(error) = e0.into_iter().find_map(|e| match e {
            StreamEvent::Failed { id, error } if id == a => Some(error),
            _ => None,
        }) {
            break (pair.now - restarted, error);
        }
    };
    assert_eq!(failed.1, StreamError::UnknownToPeer);
    let keepalive = config().keepalive;
    assert!(
        failed.0 <= keepalive + Duration::from_millis(1300),
        "learned after {:?}, keepalive {keepalive:?}",
        failed.0
    );
    assert!(failed.0 < config().idle_timeout / 2);
    assert!(pair.mux[0].stats().keepalives >= 1);
}

#[test]
fn a_live_quiet_peer_takes_keepalives_silently() {
    let mut pair = Pair::new(config(), 14, 0);
    let (a, b) = pair.connect();
    pair.mux[0].write(pair.now, a, b"ping").unwrap();
    while pair.mux[1]
        .read(pair.now, b, usize::MAX)
        .unwrap()
        .is_empty()
    {
        pair.step();
    }
    for _ in 0..20 {
        pair.step(); // the last acknowledgements
    }
    let sent = pair.sent;
    // 25 s of silence, under the 30 s idle timeout.
    let quiet_from = pair.now;
    while pair.now - quiet_from < Duration::from_secs(25) {
        let events = pair.step();
        assert!(
            events
                .iter()
                .flatten()
                .all(|e| !matches!(e, StreamEvent::Failed { .. })),
            "{events:?}"
        );
    }
    let keepalive_messages = pair.sent[0] + pair.sent[1] - sent[0] - sent[1];
    // One side's keep-alive resets the other's quiet clock: about one message per 15 s,
    // never an exchange.
    assert!(
        (1..=3).contains(&keepalive_messages),
        "{keepalive_messages} messages in 25 s of silence"
    );
    assert_eq!(pair.mux[0].stream_count(), 1);
    assert_eq!(pair.mux[1].stream_count(), 1);
    // The streams still carry bytes afterwards.
    pair.mux[1].write(pair.now, b, b"pong").unwrap();
    let mut got = Vec::new();
    for _ in 0..200 {
        pair.step();
        got.extend(pair.mux[0].read(pair.now, a, usize::MAX).unwrap());
    }
    assert_eq!(got, b"pong");
}
