//! What every role's configuration does alike: the file's name, reading it with errors that
//! name the file and the setting, refusing to overwrite a data directory, and saying where the
//! topology comes from (the ledger, or a static file for private test networks).

use std::path::Path;

use umbra_topology::Topology;

use crate::directory::LedgerConfig;
use crate::err::NodeError;

/// The configuration file in a data directory.
pub const CONFIG_FILE: &str = "config.toml";
/// A static topology file's usual name (private test networks without validators).
pub const TOPOLOGY_FILE: &str = "topology.json";

/// Refuses a directory that already holds any of `files`; creates it (or makes it) readable
/// only by its owner.
pub fn ensure_new(data_dir: &Path, files: &[&str]) -> Result<(), NodeError> {
    for file in files {
        let existing = data_dir.join(file);
        if existing.exists() {
            return Err(NodeError::AlreadyInitialised {
                dir: data_dir.to_owned(),
                existing,
            });
        }
    }
    crate::files::create_private_dir(data_dir)
}

/// Refuses a data directory without its configuration file, saying how to create it.
pub fn require_config(config: &Path, data_dir: &Path, role: &str) -> Result<(), NodeError> {
    if config.exists() {
        return Ok(());
    }
    Err(NodeError::invalid(
        config,
        format!(
            "missing; create the node first with `umbra {role} init --data-dir {}`",
            data_dir.display()
        ),
    ))
}

/// Reads a topology file.
pub fn read_topology(path: &Path) -> Result<Topology, NodeError> {
    let json = std::fs::read_to_string(path).map_err(|source| NodeError::Read {
        path: path.to_owned(),
        source,
    })?;
    Topology::from_json(&json).map_err(|error| NodeError::invalid(path, error.to_string()))
}

/// Reads a TOML configuration file; an error names the file and the setting.
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, NodeError> {
    let text = std::fs::read_to_string(path).map_err(|source| NodeError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|error| NodeError::invalid(path, error.to_string()))
}

/// What is wrong with where a configuration says its topology comes from.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// Both a static file and a ledger.
    #[error(
        "both `topology` and `[ledger]` are set: a node follows the ledger, or (private test networks) a static topology file; delete one"
    )]
    Both,
    /// Neither.
    #[error(
        "neither `[ledger]` nor `topology` is set: add a [ledger] section with `validators` and `genesis` (see the template `umbra mixnode init` or `umbra gateway init` writes)"
    )]
    Neither,
    /// A `[ledger]` section without validators.
    #[error(
        "setting `ledger.validators`: lists no validator; give at least one, e.g. [\"http://127.0.0.1:7000\"]"
    )]
    NoValidators,
}

/// Checks that a configuration says where its topology comes from, once.
pub fn validate_source(
    topology: Option<&Path>,
    ledger: Option<&LedgerConfig>,
) -> Result<(), SourceError> {
    match (topology, ledger) {
        (Some(_), Some(_)) => Err(SourceError::Both),
        (None, None) => Err(SourceError::Neither),
        (None, Some(ledger)) => ledger.validate(),
        (Some(_), None) => Ok(()),
    }
}

/// The part of a configuration template saying where the topology comes from.
pub fn source_template(ledger: Option<&LedgerConfig>) -> String {
    match ledger {
        Some(ledger) => {
            let validators: Vec<String> = ledger
                .validators
                .iter()
                .map(|url| format!("\"{url}\""))
                .collect();
            format!(
                "# Where the ledger is. Each epoch's topology (the active nodes, their layers and keys) is\n\
                 # fetched from the first validator that serves one whose signatures verify against the\n\
                 # validator set in the genesis file, the node's trust root: get it from the network's\n\
                 # operators. For a private test network without validators, delete this section and set\n\
                 # `topology = \"topology.json\"` (a static file: no epochs, no key rotation).\n\
                 [ledger]\n\
                 validators = [{}]\n\
                 genesis = \"{}\"\n",
                validators.join(", "),
                ledger.genesis.display()
            )
        }
        None => "# A static topology file, for a private test network without validators (no epochs, no\n\
                 # key rotation). To follow a ledger instead, delete this line and add a [ledger] section\n\
                 # with `validators = [\"http://host:port\"]` and `genesis = \"genesis.json\"`.\n\
                 topology = \"topology.json\"\n"
            .to_owned(),
    }
}
