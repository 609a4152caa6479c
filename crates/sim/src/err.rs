//! What can go wrong in a simulation.

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// A setting cannot work.
    #[error("simulation setting `{field}`: {why}")]
    Config {
        /// The setting.
        field: &'static str,
        /// What is wrong, and what would work.
        why: String,
    },
    /// A core refused to start.
    #[error("setting up the simulated network: {0}")]
    Setup(String),
}
