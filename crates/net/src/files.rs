//! Data files and directories only their owner can read: mode 0600 for files, 0700 for
//! directories. A daemon's folder holds its keys, its configuration, and (for a client) the
//! messages it has not delivered yet; nobody else on the machine has any business reading them.
//! On other systems than Unix these are plain file operations.

use std::io::Write;
use std::path::Path;

use crate::err::NodeError;

/// The mode of every data file.
#[cfg(unix)]
const FILE_MODE: u32 = 0o600;
/// The mode of every data directory.
#[cfg(unix)]
const DIR_MODE: u32 = 0o700;

fn write_error(path: &Path) -> impl FnOnce(std::io::Error) -> NodeError + '_ {
    move |source| NodeError::Write {
        path: path.to_owned(),
        source,
    }
}

/// Creates `dir` (and its missing parents) readable only by the owner; an existing `dir` is
/// made so too. Parents that exist already are left as they are.
pub fn create_private_dir(dir: &Path) -> Result<(), NodeError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
    builder.create(dir).map_err(write_error(dir))?;
    restrict(dir, true)
}

/// Writes `contents` to `path` (replacing what it held), readable only by the owner.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), NodeError> {
    let mut file = open_private(path, true)?;
    file.write_all(contents).map_err(write_error(path))?;
    file.sync_all().map_err(write_error(path))
}

/// Copies `from` to `to`, the copy readable only by the owner (`std::fs::copy` would keep the
/// source's mode).
pub fn copy_private(from: &Path, to: &Path) -> Result<(), NodeError> {
    let contents = std::fs::read(from).map_err(|source| NodeError::Read {
        path: from.to_owned(),
        source,
    })?;
    write_private(to, &contents)
}

/// Makes sure `path` exists and is readable only by the owner, keeping what it holds: for a
/// database file, before the database opens it (redb takes an existing empty file as new).
pub fn prepare_private_file(path: &Path) -> Result<(), NodeError> {
    open_private(path, false).map(drop)
}

/// Opens `path` for writing, created 0600 if missing and made 0600 if not; `truncate` empties it.
pub fn open_private(path: &Path, truncate: bool) -> Result<std::fs::File, NodeError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(truncate);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, FILE_MODE);
    let file = options.open(path).map_err(write_error(path))?;
    restrict(path, false)?;
    Ok(file)
}

/// Takes away every permission of the group and others on `path` (the mode given at creation
/// does not apply to a file or directory that already existed).
fn restrict(path: &Path, dir: bool) -> Result<(), NodeError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = if dir { DIR_MODE } else { FILE_MODE };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(write_error(path))?;
    }
    #[cfg(not(unix))]
    let _ = (path, dir);
    Ok(())
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::testing::{assert_private_tree, mode};

    #[test]
    fn files_and_directories_are_the_owners_alone() {
        let root = std::env::temp_dir().join(format!("umbra-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir = root.join("a/b");
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);

        // an existing folder and file, made by someone else's umask
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let file = dir.join("config.toml");
        std::fs::write(&file, "old").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        create_private_dir(&dir).unwrap();
        write_private(&file, b"new").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"new");

        let copy = dir.join("copy");
        copy_private(&file, &copy).unwrap();
        assert_eq!(std::fs::read(&copy).unwrap(), b"new");

        let db = dir.join("store.redb");
        prepare_private_file(&db).unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&db, b"kept").unwrap();
        prepare_private_file(&db).unwrap();
        assert_eq!(std::fs::read(&db).unwrap(), b"kept", "not emptied");
        assert_private_tree(&dir);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
