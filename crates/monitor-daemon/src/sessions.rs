//! The monitor's clients: one per gateway, each with its own identity (kept in
//! `clients/<gateway's Noise key>/`, made the first time the monitor meets the gateway), each
//! an ordinary client shell ([`umbra_client_daemons::client`]) whose events come to the
//! monitor's loop tagged with the gateway.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use umbra_client::{Client, ClientKeys};
use umbra_client_daemons::client::{
    self, ClientEvent, ClientHandle, ClientSetup, DEFAULT_MAX_PENDING_BYTES,
};
use umbra_client_daemons::spending::TicketSource;

use crate::error::MonitorError;
use umbra_net::directory::Current;
use umbra_net::files::create_private_dir;
use umbra_net::keys::{read_key, write_new_key};
use umbra_topology::{NodeDescriptor, NodeId, NoiseKey, Topology};

use crate::config::{CLIENTS_DIR, MonitorDaemonConfig};

/// The identity and encryption key files of each client.
const IDENTITY_KEY_FILE: &str = "identity.key";
const ENCRYPTION_KEY_FILE: &str = "encryption.key";

/// A client's event, with the gateway whose client it is.
pub(crate) type Tagged = (NodeId, ClientEvent);

/// A running client of one gateway.
pub(crate) struct Session {
    pub(crate) handle: ClientHandle,
    pub(crate) noise_key: NoiseKey,
    /// Whether its session with the gateway is open.
    pub(crate) up: bool,
    stop: CancellationToken,
    tasks: [JoinHandle<()>; 2],
}

impl Session {
    /// Starts a client of `gateway` routing with `topology` (then each new one
    /// `topologies` publishes) and paying from `tickets`; its events go to `events`, tagged.
    pub(crate) fn start(
        data_dir: &Path,
        config: &MonitorDaemonConfig,
        gateway: &NodeDescriptor,
        topology: &Topology,
        (topologies, tickets): (watch::Receiver<Arc<Current>>, Arc<dyn TicketSource>),
        events: mpsc::Sender<Tagged>,
        stop: CancellationToken,
    ) -> Result<Session, MonitorError> {
        let keys = client_keys(&data_dir.join(CLIENTS_DIR), &gateway.noise_key)?;
        let core = Client::new(
            config.client.clone(),
            keys.clone(),
            gateway.noise_key.0,
            topology.clone(),
            rand::random(),
            tokio::time::Instant::now().into_std(),
        )
        .map_err(|error| MonitorError::Client {
            gateway: gateway.id,
            source: error,
        })?;
        let setup = ClientSetup {
            gateway_address: gateway.client_address.unwrap_or(gateway.mix_address),
            gateway_key: gateway.noise_key,
            connection: config.connection.clone(),
            // test loops are not messages: nothing to keep across a restart
            outbox: None,
            max_pending_bytes: DEFAULT_MAX_PENDING_BYTES,
            topologies: Some(topologies),
            tickets: Some(tickets),
        };
        let (handle, mut from_client, task) = client::start(core, &keys, setup, stop.clone())?;
        let id = gateway.id;
        let forward = tokio::spawn(async move {
            while let Some(event) = from_client.recv().await {
                if events.send((id, event)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Session {
            handle,
            noise_key: gateway.noise_key,
            up: false,
            stop,
            tasks: [task, forward],
        })
    }

    /// Stops the client, closing its session, and waits for it.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// The keys of the monitor's client of the gateway with `noise_key`, made if new.
fn client_keys(clients: &Path, noise_key: &NoiseKey) -> Result<ClientKeys, MonitorError> {
    let dir = clients.join(noise_key.to_string());
    let (identity, encryption) = (dir.join(IDENTITY_KEY_FILE), dir.join(ENCRYPTION_KEY_FILE));
    if !identity.exists() {
        create_private_dir(&dir)?;
        let keys = ClientKeys::generate(&mut rand::rng());
        write_new_key(&identity, keys.identity_secret())?;
        write_new_key(&encryption, keys.encryption_secret())?;
        return Ok(keys);
    }
    Ok(ClientKeys::from_bytes(
        read_key(&identity)?,
        read_key(&encryption)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gateways_client_keeps_its_identity_privately() {
        let root = std::env::temp_dir().join(format!("umbra-monitor-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        create_private_dir(&root).unwrap();
        let clients = root.join(CLIENTS_DIR);
        let made = client_keys(&clients, &NoiseKey([1; 32])).unwrap();
        let again = client_keys(&clients, &NoiseKey([1; 32])).unwrap();
        assert_eq!(made.identity_public(), again.identity_public());
        assert_eq!(made.encryption_public(), again.encryption_public());
        let other = client_keys(&clients, &NoiseKey([2; 32])).unwrap();
        assert_ne!(made.identity_public(), other.identity_public());
        #[cfg(unix)]
        umbra_net::testing::assert_private_tree(&root);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
