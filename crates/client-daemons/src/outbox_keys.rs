//! The keys that seal the outbox's messages, so that a message done with leaves nothing
//! readable on disk.
//!
//! redb never overwrites a page in place: a value removed from the outbox stays in the file's
//! free pages until something else happens to be written there (compaction does not clear
//! them either). So each message is written to the outbox sealed (ChaCha20-Poly1305) under a
//! key of its own, kept in a small file of fixed-size records next to it; once the message is
//! delivered or given up on, its record is overwritten with zeros in place, and what remains
//! of the message in the outbox's free pages can no longer be read by anyone.
//!
//! A record is the message's id (8 bytes, big-endian; 0 marks a free slot) and its key (32).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use zeroize::Zeroizing;

use umbra_net::NodeError;

const RECORD: usize = 40;

/// One key per message in the outbox, on disk.
pub(crate) struct OutboxKeys {
    file: File,
    path: PathBuf,
    /// Each message's slot and key.
    keys: HashMap<u64, (u64, Zeroizing<[u8; 32]>)>,
    /// Slots free for reuse.
    free: Vec<u64>,
    /// Slots the file has.
    slots: u64,
}

impl OutboxKeys {
    /// Opens (or creates) the key file at `path`.
    pub(crate) fn open(path: &Path) -> Result<OutboxKeys, NodeError> {
        umbra_net::files::prepare_private_file(path)?;
        let read_error = |source| NodeError::Read {
            path: path.to_owned(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(read_error)?;
        let mut bytes = Zeroizing::new(Vec::new());
        file.read_to_end(&mut bytes).map_err(read_error)?;
        let mut keys = OutboxKeys {
            file,
            path: path.to_owned(),
            keys: HashMap::new(),
            free: Vec::new(),
            slots: (bytes.len() / RECORD) as u64,
        };
        for (slot, record) in (0..).zip(bytes.chunks_exact(RECORD)) {
            let (id, key) = record.split_at(8);
            let id = u64::from_be_bytes(id.try_into().unwrap_or_default());
            match <[u8; 32]>::try_from(key) {
                Ok(key) if id != 0 && !keys.keys.contains_key(&id) => {
                    keys.keys.insert(id, (slot, Zeroizing::new(key)));
                }
                _ => keys.free.push(slot),
            }
        }
        Ok(keys)
    }

    /// The ids that have a key.
    pub(crate) fn ids(&self) -> Vec<u64> {
        self.keys.keys().copied().collect()
    }

    /// Seals `plaintext` for message `id` under a fresh key, which is on disk when this returns.
    pub(crate) fn seal(&mut self, id: u64, plaintext: &[u8]) -> Result<Vec<u8>, NodeError> {
        self.erase(id)?;
        let mut key = Zeroizing::new([0u8; 32]);
        rand::fill(&mut key[..]);
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots += 1;
            self.slots - 1
        });
        let mut record = Zeroizing::new([0u8; RECORD]);
        record[..8].copy_from_slice(&id.to_be_bytes());
        record[8..].copy_from_slice(&key[..]);
        if let Err(error) = self.write_record(slot, &record[..]) {
            self.free.push(slot);
            return Err(error);
        }
        let sealed = cipher(&key)
            .encrypt(
                &Nonce::default(),
                Payload {
                    msg: plaintext,
                    aad: &id.to_be_bytes(),
                },
            )
            .map_err(|_| NodeError::Seal("an outbox entry"))?;
        self.keys.insert(id, (slot, key));
        Ok(sealed)
    }

    /// What message `id` was sealed into `sealed`, if its key is still here and it is intact.
    pub(crate) fn open_sealed(&self, id: u64, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let (_, key) = self.keys.get(&id)?;
        cipher(key)
            .decrypt(
                &Nonce::default(),
                Payload {
                    msg: sealed,
                    aad: &id.to_be_bytes(),
                },
            )
            .ok()
            .map(Zeroizing::new)
    }

    /// Overwrites message `id`'s key on disk with zeros: what was sealed under it is unreadable
    /// from then on.
    pub(crate) fn erase(&mut self, id: u64) -> Result<(), NodeError> {
        let Some((slot, _)) = self.keys.remove(&id) else {
            return Ok(());
        };
        self.write_record(slot, &[0; RECORD])?;
        self.free.push(slot);
        Ok(())
    }

    fn write_record(&mut self, slot: u64, record: &[u8]) -> Result<(), NodeError> {
        let write_error = |source| NodeError::Write {
            path: self.path.clone(),
            source,
        };
        self.file
            .seek(SeekFrom::Start(slot * RECORD as u64))
            .map_err(write_error)?;
        self.file.write_all(record).map_err(write_error)?;
        self.file.sync_data().map_err(write_error)
    }
}

fn cipher(key: &[u8; 32]) -> ChaCha20Poly1305 {
    ChaCha20Poly1305::new(key.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_a_restart_and_an_erased_one_is_zeros_on_disk() {
        let dir = std::env::temp_dir().join(format!("umbra-outbox-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("outbox.keys");
        let mut keys = OutboxKeys::open(&path).unwrap();
        let one = keys.seal(1, b"first").unwrap();
        let two = keys.seal(2, b"second").unwrap();
        assert!(keys.open_sealed(2, &one).is_none(), "bound to its id");

        let mut keys = OutboxKeys::open(&path).unwrap();
        assert_eq!(keys.open_sealed(1, &one).unwrap().as_slice(), b"first");
        assert_eq!(keys.open_sealed(2, &two).unwrap().as_slice(), b"second");
        keys.erase(1).unwrap();
        assert!(keys.open_sealed(1, &one).is_none());
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(on_disk.len(), 2 * RECORD);
        assert!(on_disk[..RECORD].iter().all(|&b| b == 0), "slot 0 wiped");

        // the free slot is taken again; the file does not grow
        keys.seal(3, b"third").unwrap();
        assert_eq!(std::fs::read(&path).unwrap().len(), 2 * RECORD);
        let mut ids = OutboxKeys::open(&path).unwrap().ids();
        ids.sort_unstable();
        assert_eq!(ids, vec![2, 3]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
