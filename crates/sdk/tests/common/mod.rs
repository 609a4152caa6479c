//! A network running in this process for the SDK's tests: one mix node per layer and one
//! gateway on loopback, from a topology file.

use std::path::PathBuf;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use umbra::network::{Kind, Layout, Shape};
use umbra_net::NodeError;
use umbra_node::gateway::Gateway;
use umbra_node::mixnode::Mixnode;

/// Fails the test if `future` takes more than a minute.
pub(crate) async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .expect("timed out")
}

/// The binary of the SDK's example `name`, which `cargo test` builds next to the tests.
#[allow(dead_code)] // only the tests that run an example use it
pub(crate) fn example(name: &str) -> PathBuf {
    let test = std::env::current_exe().unwrap();
    let profile = test.parent().and_then(|deps| deps.parent()).unwrap();
    let example = profile
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        example.exists(),
        "{} is missing: `cargo test -p umbra-sdk` builds it, or `cargo build -p umbra-sdk --example {name}`",
        example.display()
    );
    example
}

/// The running network.
pub(crate) struct Network {
    /// Its folder (clients keep their storage in it too).
    pub(crate) dir: PathBuf,
    /// What is where.
    pub(crate) layout: Layout,
    stop: CancellationToken,
    nodes: Vec<JoinHandle<Result<(), NodeError>>>,
}

impl Network {
    /// Makes and starts a network in a fresh folder named after `name`.
    pub(crate) fn start(name: &str) -> Network {
        let dir = std::env::temp_dir().join(format!("umbra-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let layout = Layout::create_or_open(
            &dir,
            &Shape {
                mixes_per_layer: 1,
                gateways: 1,
            },
        )
        .unwrap();
        let stop = CancellationToken::new();
        let nodes = layout
            .nodes
            .iter()
            .map(|node| {
                let node_dir = layout.node_dir(node);
                let shutdown = stop.clone().cancelled_owned();
                match node.kind {
                    Kind::Mix => tokio::spawn(Mixnode::load(&node_dir).unwrap().run(shutdown)),
                    Kind::Gateway => tokio::spawn(Gateway::load(&node_dir).unwrap().run(shutdown)),
                }
            })
            .collect();
        Network {
            dir,
            layout,
            stop,
            nodes,
        }
    }

    /// Stops every node (each must stop cleanly) and removes the folder.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        for node in self.nodes {
            within(node).await.unwrap().unwrap();
        }
        std::fs::remove_dir_all(&self.dir).unwrap();
    }
}
