//! What can go wrong at a hop.

use std::io;

/// A setting that cannot work, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("setting `{setting}`: {problem}")]
pub struct ConfigError {
    /// The setting, as written in the configuration file.
    pub setting: &'static str,
    /// What is wrong and how to fix it.
    pub problem: String,
}

impl ConfigError {
    /// A problem with `setting`.
    pub fn new(setting: &'static str, problem: impl Into<String>) -> Self {
        ConfigError {
            setting,
            problem: problem.into(),
        }
    }
}

/// Why a saved replay filter could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayFilterError {
    /// The file ends early: cut off while being written, or truncated since.
    #[error("the file is too short (cut off while it was written?)")]
    TooShort,
    /// Reading failed.
    #[error("reading failed: {0}")]
    Io(#[source] io::Error),
    /// The file does not start like a replay filter.
    #[error("this is not a replay filter file")]
    NotAFilter,
    /// A format this version does not know.
    #[error("unknown file format {version} (written by a newer Umbra?)")]
    UnknownFormat {
        /// The format number found.
        version: u32,
    },
    /// The contents do not add up.
    #[error("the file is garbled: {0}")]
    Garbled(&'static str),
}

impl ReplayFilterError {
    pub(crate) fn read(error: io::Error) -> Self {
        if error.kind() == io::ErrorKind::UnexpectedEof {
            ReplayFilterError::TooShort
        } else {
            ReplayFilterError::Io(error)
        }
    }
}
