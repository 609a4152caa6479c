//! The bandwidth ticket's wire format: no input may panic, and every ticket read encodes back
//! to exactly its bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use umbra_tickets::Ticket;

fuzz_target!(|data: &[u8]| {
    if let Ok(ticket) = Ticket::from_bytes(data) {
        assert_eq!(ticket.to_bytes(), data, "a ticket re-encodes to its bytes");
        assert_eq!(ticket.encoded_len(), data.len());
    }
});
