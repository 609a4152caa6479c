//! The SOCKS handshake fed arbitrary bytes in arbitrary pieces (anyone who can reach the
//! proxy's port controls them). Nothing may panic, the handshake never holds more than
//! `MAX_BUFFERED` bytes nor answers at length, and the outcome does not depend on how the
//! input was split.
//!
//! Input: one byte of configuration, one byte of piece sizes' seed, then the client's bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use umbra_client::socks::{
    Credentials, HandshakeError, MAX_BUFFERED, Progress, SocksConfig, SocksHandshake,
};

type Outcome = (Vec<u8>, Result<Progress, HandshakeError>);

fn run(config: &SocksConfig, chunks: &[&[u8]]) -> Outcome {
    let mut handshake = SocksHandshake::new(config.clone(), Credentials::new(b"user", b"pass"));
    let mut sent = Vec::new();
    let mut last = Ok(Progress::NeedMore);
    for chunk in chunks {
        last = handshake.handle_input(chunk);
        let output = handshake.take_output();
        // The longest answer to one piece: method choice, auth status, a SOCKS5 reply.
        assert!(output.len() <= 2 + 2 + 22, "{} bytes of output", output.len());
        sent.extend(output);
        assert!(handshake.buffered() <= MAX_BUFFERED);
        if !matches!(last, Ok(Progress::NeedMore)) {
            assert_eq!(handshake.buffered(), 0, "an ended handshake holds nothing");
            break;
        }
    }
    (sent, last)
}

fuzz_target!(|data: &[u8]| {
    let [flags, seed, input @ ..] = data else {
        return;
    };
    let config = SocksConfig {
        allow_no_auth: flags & 1 != 0,
        allow_username_password: flags & 2 != 0,
        allow_socks4: flags & 4 != 0,
    };
    let whole = run(&config, &[input]);
    if let Ok(Progress::Finished(request)) = &whole.1 {
        // A finished request is well formed.
        if let umbra_client::socks::Destination::Domain(name) = &request.destination {
            assert!((1..=255).contains(&name.as_str().len()));
        }
    }

    // The same bytes in pieces of pseudo-random sizes (1 to 64), or one byte at a time.
    let mut chunks = Vec::new();
    let mut rest = input;
    let mut state = u32::from(*seed) | 1;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let size = if seed & 0x80 != 0 { 1 } else { (state % 64 + 1) as usize };
        let (chunk, after) = rest.split_at(size.min(rest.len()));
        chunks.push(chunk);
        rest = after;
    }
    let split = run(&config, &chunks);
    // Trailing bytes after a request are not comparable: split at the request's end, the
    // rest is the stream's data.
    if !matches!(whole.1, Err(HandshakeError::TrailingBytes(_))) {
        assert_eq!(split, whole, "the outcome depends on how the input was split");
    }
});
