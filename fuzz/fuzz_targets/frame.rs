//! The node-to-node codecs: a stream of frames is read the way a link reads it, every frame
//! read must encode back to exactly its bytes, and no input may panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use umbra_sphinx::NodeAddress;
use umbra_wire::frame::{self, Decoded};
use umbra_wire::{address, link};

fuzz_target!(|data: &[u8]| {
    let mut at = 0;
    while at < data.len() {
        match frame::decode(&data[at..]) {
            Ok(Decoded::Frame { frame, len }) => {
                assert_eq!(len, frame.header.frame_len());
                let mut again = Vec::new();
                frame::encode(frame.header, &frame.packet, &mut again);
                assert_eq!(again.as_slice(), &data[at..at + len], "a frame re-encodes to its bytes");
                at += len;
            }
            Ok(Decoded::Incomplete { needed }) => {
                assert!(needed > 0);
                break;
            }
            Err(_) => break,
        }
    }
    let _ = link::decode(data);
    if let Some(bytes) = data.first_chunk::<2>() {
        let _ = link::message_len(*bytes);
    }
    if let Some(bytes) = data.first_chunk::<32>() {
        if let Ok(socket) = address::decode(&NodeAddress::new(*bytes)) {
            assert_eq!(address::encode(socket).as_bytes(), bytes, "an address re-encodes to its bytes");
        }
    }
});
