//! Key files: one key per file, its 32 bytes in base58 on one line, readable only by the owner.

use std::io::Write;
use std::path::Path;

use crate::err::NodeError;

/// Reads the key in `path`.
pub fn read_key(path: &Path) -> Result<[u8; 32], NodeError> {
    let text = std::fs::read_to_string(path).map_err(|source| NodeError::Read {
        path: path.to_owned(),
        source,
    })?;
    let bytes = bs58::decode(text.trim()).into_vec().map_err(|_| {
        NodeError::invalid(
            path,
            "not a key file: a key file holds one key, in base58, on one line",
        )
    })?;
    let len = bytes.len();
    bytes
        .try_into()
        .map_err(|_| NodeError::invalid(path, format!("holds {len} bytes; a key is 32 bytes")))
}

/// Writes `key` to a new file at `path` (never over an existing one), readable only by the
/// owner.
pub fn write_new_key(path: &Path, key: &[u8; 32]) -> Result<(), NodeError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let write = |source| NodeError::Write {
        path: path.to_owned(),
        source,
    };
    let mut file = options.open(path).map_err(write)?;
    writeln!(file, "{}", bs58::encode(key).into_string()).map_err(write)?;
    file.sync_all().map_err(write)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_bad_files_are_named() {
        let dir = std::env::temp_dir().join(format!("umbra-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.key");
        let _ = std::fs::remove_file(&path);
        write_new_key(&path, &[7; 32]).unwrap();
        assert_eq!(read_key(&path).unwrap(), [7; 32]);
        assert!(
            write_new_key(&path, &[8; 32]).is_err(),
            "never overwrites a key"
        );

        let missing = read_key(&dir.join("missing.key")).unwrap_err().to_string();
        assert!(missing.contains("missing.key"), "{missing}");
        std::fs::write(dir.join("garbled.key"), "not base58 0OIl\n").unwrap();
        let garbled = read_key(&dir.join("garbled.key")).unwrap_err().to_string();
        assert!(
            garbled.contains("garbled.key") && garbled.contains("base58"),
            "{garbled}"
        );
        std::fs::write(dir.join("short.key"), "abc\n").unwrap();
        let short = read_key(&dir.join("short.key")).unwrap_err().to_string();
        assert!(short.contains("a key is 32 bytes"), "{short}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
