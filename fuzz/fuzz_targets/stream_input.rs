//! The stream multiplexer fed arbitrary messages from a peer (an exit or a proxy that is
//! malicious or broken controls them), with time moving on between them. Nothing may panic,
//! memory stays within the configured bound, every message it sends fits its size limit and
//! decodes again, and whatever the decoder accepts encodes back to the same frames.
//!
//! Input: pieces, each one byte of length (0 = let 30 s pass instead) then that many bytes.

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use umbra_client::stream::{Mux, StreamConfig, StreamEvent, decode_message, encode_message};

fuzz_target!(|data: &[u8]| {
    let config = StreamConfig {
        max_streams: 8,
        receive_window: 4096,
        send_buffer: 4096,
        max_message_size: 1024,
        ..StreamConfig::default()
    };
    let bound = config.max_streams * (config.receive_window as usize + config.send_buffer);
    let Ok(mut mux) = Mux::new(config.clone()) else {
        return;
    };
    let mut now = Instant::now();
    let mut rest = data;
    while let Some((&length, tail)) = rest.split_first() {
        if length == 0 {
            now += Duration::from_secs(30);
            mux.handle_timeout(now);
            rest = tail;
        } else {
            let take = usize::from(length).min(tail.len());
            let (message, tail) = tail.split_at(take);
            if let Ok(frames) = decode_message(message) {
                let again = decode_message(&encode_message(&frames));
                assert_eq!(again.ok(), Some(frames), "a decoded message encodes back");
            }
            mux.handle_message(now, message);
            rest = tail;
        }
        // the application accepts what is offered and answers whatever it can read
        while let Some(event) = mux.poll_event() {
            match event {
                StreamEvent::Incoming { id, .. } => {
                    let _ = mux.accept(now, id);
                }
                StreamEvent::Readable(id) => {
                    if let Ok(bytes) = mux.read(now, id, 4096) {
                        let _ = mux.write(now, id, &bytes);
                    }
                }
                _ => {}
            }
        }
        assert!(mux.total_buffered() <= bound, "{} bytes held", mux.total_buffered());
        while let Some(message) = mux.poll_transmit(now) {
            assert!(message.len() <= config.max_message_size);
            assert!(decode_message(&message).is_ok(), "it sends only what it can read");
        }
    }
});
