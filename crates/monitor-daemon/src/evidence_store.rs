//! The evidence of the last epochs on disk: `evidence/<epoch>.json`, each exactly
//! [`Evidence::to_json`] of the report, readable only by the owner, the newest `keep` kept.
//! Reopened after a restart, it serves what it held.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use tracing::warn;
use umbra_monitor::{Evidence, EvidenceHash};
use umbra_net::NodeError;
use umbra_net::files::{create_private_dir, write_private};

/// The kept evidence, and the hash of each.
#[derive(Debug)]
pub struct EvidenceStore {
    dir: PathBuf,
    keep: usize,
    index: Mutex<BTreeMap<u64, EvidenceHash>>,
}

impl EvidenceStore {
    /// Opens (or makes) the folder `dir`, reading the hash of every evidence file in it; files
    /// that are not evidence are left alone, and beyond `keep` the oldest are deleted.
    pub fn open(dir: &Path, keep: usize) -> Result<EvidenceStore, NodeError> {
        create_private_dir(dir)?;
        let mut index = BTreeMap::new();
        let entries = std::fs::read_dir(dir).map_err(|source| NodeError::Read {
            path: dir.to_owned(),
            source,
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(epoch) = epoch_of(&path) else {
                continue;
            };
            let read = std::fs::read_to_string(&path)
                .map_err(|error| error.to_string())
                .and_then(|json| Evidence::from_json(&json).map_err(|error| error.to_string()));
            match read {
                Ok(evidence) if evidence.epoch == epoch => {
                    index.insert(epoch, evidence.hash());
                }
                Ok(evidence) => warn!(
                    file = %path.display(),
                    holds = evidence.epoch,
                    "an evidence file holds another epoch's evidence; not served"
                ),
                Err(error) => {
                    warn!(file = %path.display(), %error, "an evidence file cannot be read; not served");
                }
            }
        }
        let store = EvidenceStore {
            dir: dir.to_owned(),
            keep: keep.max(1),
            index: Mutex::new(index),
        };
        store.prune();
        Ok(store)
    }

    /// Writes an epoch's evidence (replacing what was kept for it), then deletes the oldest
    /// beyond `keep`. Blocking: call it off the event loop.
    pub fn put(&self, evidence: &Evidence, hash: EvidenceHash) -> Result<(), NodeError> {
        let path = self.path(evidence.epoch);
        // written aside and renamed: a crash leaves the old file or the new, never half
        let partial = path.with_extension("json.partial");
        write_private(&partial, evidence.to_json().as_bytes())?;
        std::fs::rename(&partial, &path).map_err(|source| NodeError::Write {
            path: path.clone(),
            source,
        })?;
        self.lock().insert(evidence.epoch, hash);
        self.prune();
        Ok(())
    }

    /// The epochs kept, oldest first, with their evidence's hash.
    pub fn list(&self) -> Vec<(u64, EvidenceHash)> {
        self.lock()
            .iter()
            .map(|(&epoch, &hash)| (epoch, hash))
            .collect()
    }

    /// The evidence of `epoch` as published (JSON), if kept. Blocking.
    pub fn read(&self, epoch: u64) -> Result<Option<String>, NodeError> {
        if !self.lock().contains_key(&epoch) {
            return Ok(None);
        }
        let path = self.path(epoch);
        match std::fs::read_to_string(&path) {
            Ok(json) => Ok(Some(json)),
            // deleted by a prune since
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(NodeError::Read { path, source }),
        }
    }

    /// The file of `epoch`'s evidence.
    pub fn path(&self, epoch: u64) -> PathBuf {
        self.dir.join(format!("{epoch}.json"))
    }

    fn prune(&self) {
        let mut index = self.lock();
        while index.len() > self.keep {
            let Some((epoch, _)) = index.pop_first() else {
                break;
            };
            let path = self.path(epoch);
            if let Err(error) = std::fs::remove_file(&path) {
                warn!(file = %path.display(), %error, "cannot delete old evidence");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, EvidenceHash>> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The epoch of an evidence file's name (`<epoch>.json`).
fn epoch_of(path: &Path) -> Option<u64> {
    if path.extension()? != "json" {
        return None;
    }
    path.file_stem()?.to_str()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use umbra_monitor::{EVIDENCE_VERSION, EvidenceNode, Group, MonitorConfig, RouteOutcome};

    use super::*;

    fn evidence(epoch: u64) -> Evidence {
        Evidence {
            version: EVIDENCE_VERSION,
            epoch,
            rules: MonitorConfig::default().rules(),
            nodes: vec![
                EvidenceNode {
                    id: 1,
                    group: Group::Layer1,
                },
                EvidenceNode {
                    id: 2,
                    group: Group::Layer2,
                },
                EvidenceNode {
                    id: 3,
                    group: Group::Layer3,
                },
                EvidenceNode {
                    id: 4,
                    group: Group::Gateway,
                },
            ],
            routes: vec![RouteOutcome {
                id: epoch,
                hops: [4, 1, 2, 3, 4],
                sent_ms: 10,
                latency_us: Some(12_345),
            }],
            faults: Vec::new(),
        }
    }

    #[test]
    fn the_newest_are_kept_private_and_survive_a_reopen() {
        let root = std::env::temp_dir().join(format!("umbra-evidence-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir = root.join("evidence");
        let store = EvidenceStore::open(&dir, 3).unwrap();
        assert!(store.list().is_empty());
        for epoch in 1..=5 {
            let evidence = evidence(epoch);
            store.put(&evidence, evidence.hash()).unwrap();
        }
        let kept: Vec<u64> = store.list().iter().map(|(epoch, _)| *epoch).collect();
        assert_eq!(kept, [3, 4, 5]);
        assert_eq!(store.read(2).unwrap(), None);
        assert!(!store.path(2).exists());
        let json = store.read(4).unwrap().unwrap();
        assert_eq!(json, evidence(4).to_json(), "served exactly as published");
        #[cfg(unix)]
        umbra_net::testing::assert_private_tree(&root);

        // a stray file and a garbled one are not served; the rest is, as before
        std::fs::write(dir.join("notes.txt"), "hello").unwrap();
        std::fs::write(dir.join("9.json"), "{not evidence").unwrap();
        std::fs::write(dir.join("8.json"), evidence(7).to_json()).unwrap();
        drop(store);
        let again = EvidenceStore::open(&dir, 3).unwrap();
        assert_eq!(
            again.list(),
            [3, 4, 5]
                .map(|epoch| (epoch, evidence(epoch).hash()))
                .to_vec()
        );
        assert_eq!(again.read(9).unwrap(), None);
        assert_eq!(
            Evidence::from_json(&again.read(5).unwrap().unwrap()).unwrap(),
            evidence(5)
        );

        // a smaller `keep` at the next start deletes the oldest
        drop(again);
        let fewer = EvidenceStore::open(&dir, 1).unwrap();
        assert_eq!(fewer.list(), vec![(5, evidence(5).hash())]);
        assert!(!fewer.path(4).exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
