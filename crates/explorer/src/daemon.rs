//! `umbra explorer run`: the poller keeping the snapshot fresh, and the HTTP server showing it.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;
use umbra_ledger::Genesis;
use umbra_net::NodeError;

use crate::config::{CONFIG_FILE, ExplorerConfig};
use crate::err::ExplorerError;
use crate::model::Links;
use crate::monitors::{EvidenceCache, fetch_evidence};
use crate::poller::{Cache, poll};
use crate::server::{Shared, router};

/// An explorer read from its data directory, ready to run.
pub struct Explorer {
    data_dir: PathBuf,
    config: ExplorerConfig,
    genesis: Arc<Genesis>,
}

impl Explorer {
    /// Reads the explorer in `data_dir`; every error names the file and what is wrong.
    pub fn load(data_dir: &Path) -> Result<Explorer, ExplorerError> {
        let config_path = data_dir.join(CONFIG_FILE);
        umbra_net::config::require_config(&config_path, data_dir, "explorer")?;
        let config = ExplorerConfig::load(&config_path)?;
        let genesis_path = data_dir.join(&config.ledger.genesis);
        let text = std::fs::read_to_string(&genesis_path).map_err(|source| NodeError::Read {
            path: genesis_path.clone(),
            source,
        })?;
        let genesis = Genesis::from_json(&text).map_err(|problem| {
            NodeError::invalid(&genesis_path, format!("not a genesis file: {problem}"))
        })?;
        Ok(Explorer {
            data_dir: data_dir.to_owned(),
            config,
            genesis: Arc::new(genesis),
        })
    }

    /// An explorer with `config`, following the chain of `genesis` (for tests and localnet).
    pub fn new(data_dir: &Path, config: ExplorerConfig, genesis: Genesis) -> Explorer {
        Explorer {
            data_dir: data_dir.to_owned(),
            config,
            genesis: Arc::new(genesis),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ExplorerConfig {
        &self.config
    }

    /// Where the pages are served.
    pub fn http_address(&self) -> SocketAddr {
        self.config.http.listen_address
    }

    /// Binds the HTTP port and runs until `shutdown`.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ExplorerError> {
        let address = self.http_address();
        let listener = TcpListener::bind(address).await.map_err(|source| {
            if source.kind() == std::io::ErrorKind::AddrInUse {
                ExplorerError::PortTaken {
                    address,
                    config: self.data_dir.join(CONFIG_FILE),
                }
            } else {
                NodeError::Bind { address, source }.into()
            }
        })?;
        self.run_with(listener, shutdown).await
    }

    /// Runs with its HTTP port on `listener` until `shutdown`: serves pages at once (a
    /// banner until the ledger first answers) while reading the ledger.
    pub async fn run_with(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ExplorerError> {
        let stop = CancellationToken::new();
        let cache = Arc::new(Cache::default());
        let links = Links {
            monitors: self
                .config
                .monitors
                .iter()
                .map(|monitor| (monitor.account, monitor.evidence_url.clone()))
                .collect(),
            validator: self
                .config
                .ledger
                .validators
                .first()
                .map(ToString::to_string)
                .unwrap_or_default(),
        };
        let evidence = Arc::new(EvidenceCache::default());
        let shared = Arc::new(Shared::with_evidence(
            Arc::clone(&cache),
            links.clone(),
            Arc::clone(&evidence),
        ));
        let address = listener.local_addr().ok();
        let http = tokio::spawn(umbra_http::serve_router(
            listener,
            router(Arc::clone(&shared)),
            self.config.http.limits,
            Arc::clone(&shared.http),
            stop.clone(),
        ));
        let fetcher = tokio::spawn(fetch_evidence(
            Arc::clone(&cache),
            evidence,
            links,
            self.config.refresh.interval,
            stop.clone(),
        ));
        let poller = tokio::spawn(poll(
            self.config.ledger.validators.clone(),
            Arc::clone(&self.genesis),
            self.config.refresh.interval,
            cache,
            stop.clone(),
        ));
        if let Some(address) = address {
            info!(%address, chain = %self.genesis.chain_id, "explorer serving http://{address}/");
        }
        shutdown.await;
        info!("stopping");
        stop.cancel();
        let _ = poller.await;
        let _ = fetcher.await;
        let _ = http.await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::Router;
    use axum::routing::get;
    use umbra_http::{HttpCounters, HttpLimits};
    use umbra_net::directory::{LedgerConfig, ValidatorUrl};
    use umbra_net::http_client::{self, Limits};

    use super::*;
    use crate::model::fixture;

    /// A validator API serving the fixture's answers on `listener` until `stop`.
    fn fake_validator(listener: TcpListener, stop: CancellationToken) {
        let data = fixture::data();
        let json = |value: String| {
            move || {
                let value = value.clone();
                async move { ([("content-type", "application/json")], value) }
            }
        };
        let to = |value: &dyn erased::Json| value.json();
        let router = Router::new()
            .route("/status", get(json(to(&data.status))))
            .route("/nodes", get(json(to(&data.nodes))))
            .route("/delegations", get(json(to(&data.delegations))))
            .route("/epoch", get(json(to(&data.epoch))))
            .route("/epochs", get(json(to(&data.history))))
            .route("/topology", get(json(to(&data.topology))));
        tokio::spawn(umbra_http::serve_router(
            listener,
            router,
            HttpLimits::default(),
            Arc::new(HttpCounters::default()),
            stop,
        ));
    }

    mod erased {
        pub(super) trait Json {
            fn json(&self) -> String;
        }
        impl<T: serde::Serialize> Json for T {
            fn json(&self) -> String {
                serde_json::to_string(self).unwrap()
            }
        }
    }

    async fn fetch(address: SocketAddr, path: &str) -> (u16, String) {
        let limits = Limits {
            timeout: Duration::from_secs(5),
            max_body: 1 << 20,
        };
        let response = http_client::get(address, path, limits).await.unwrap();
        (response.status, String::from_utf8(response.body).unwrap())
    }

    async fn until(address: SocketAddr, path: &str, check: impl Fn(u16, &str) -> bool) -> String {
        for _ in 0..100 {
            let (status, body) = fetch(address, path).await;
            if check(status, &body) {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{path} never became what the test waits for");
    }

    /// A monitor serving the fixture's evidence of every epoch at `/evidence/{epoch}` (epoch
    /// 2's is what the ledger recorded; epoch 1's is not) on `listener` until `stop`.
    fn fake_monitor(listener: TcpListener, stop: CancellationToken) {
        let router = Router::new().route(
            "/evidence/{epoch}",
            get(
                |axum::extract::Path(epoch): axum::extract::Path<u64>| async move {
                    (
                        [("content-type", "application/json")],
                        fixture::evidence_of(epoch).to_json(),
                    )
                },
            ),
        );
        tokio::spawn(umbra_http::serve_router(
            listener,
            router,
            HttpLimits::default(),
            Arc::new(HttpCounters::default()),
            stop,
        ));
    }

    #[tokio::test]
    async fn a_nodes_page_shows_the_monitors_evidence() {
        let stop = CancellationToken::new();
        let validator_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let validator = validator_listener.local_addr().unwrap();
        fake_validator(validator_listener, stop.clone());
        let monitor_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let monitor = monitor_listener.local_addr().unwrap();
        fake_monitor(monitor_listener, stop.clone());
        let mut config = ExplorerConfig::new(LedgerConfig {
            validators: vec![ValidatorUrl::from_address(validator)],
            genesis: "genesis.json".into(),
        });
        config.refresh.interval = Duration::from_millis(100);
        config.monitors = vec![crate::MonitorLink {
            account: fixture::monitors()[0],
            evidence_url: format!("http://{monitor}"),
        }];
        let explorer = Explorer::new(Path::new("."), config, fixture::genesis());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let running = tokio::spawn(explorer.run_with(listener, stop.clone().cancelled_owned()));

        // carol (node 3) lost every fourth route through her in epoch 2
        let json = until(address, "/api/nodes/3", |status, body| {
            status == 200 && body.contains("\"status\":\"shown\"")
        })
        .await;
        let json: serde_json::Value = serde_json::from_str(&json).unwrap();
        let section = &json["page"]["evidence"];
        assert_eq!(section["epoch"], 2);
        let shown = &section["monitors"][0];
        assert_eq!(shown["monitor"], fixture::monitors()[0].to_string());
        assert_eq!(
            shown["evidence_url"],
            format!("http://{monitor}/evidence/2")
        );
        let summary = &shown["summary"];
        assert_eq!(summary["group"], "layer3");
        assert_eq!(summary["routes"], 400);
        assert_eq!(summary["lost"], 100);
        assert_eq!(summary["received"], 300);
        assert_eq!(summary["verdict"]["verdict"], "scored");
        assert_eq!(summary["lost_routes"].as_array().unwrap().len(), 50);
        assert_eq!(
            summary["lost_routes"][0]["hops"][3]["node"]["moniker"],
            "carol"
        );

        // the page: the counts, the verdict and the lost routes, linked to their nodes
        let (status, page) = fetch(address, "/nodes/3").await;
        assert_eq!(status, 200);
        assert!(page.contains("Why this score"), "{page}");
        assert!(
            page.contains("on <strong>400</strong> routes: <strong>300</strong> came back, <strong>100</strong> were lost"),
            "{page}"
        );
        assert!(page.contains("data-test=\"lost-routes\""));
        assert!(page.contains("The latest 50 of its 100 lost routes"));
        assert!(page.contains("<a href=\"/nodes/3\">carol (3)</a>"));
        assert!(page.contains(&format!("href=\"http://{monitor}/evidence/2\"")));

        // epoch 1's evidence is not what monitor 1 submitted: counted, never shown
        until(address, "/metrics", |_, body| {
            body.contains("umbra_explorer_evidence_fetches_total{result=\"mismatch\"} 1")
        })
        .await;
        let (_, metrics) = fetch(address, "/metrics").await;
        assert!(
            metrics.contains("umbra_explorer_evidence_fetches_total{result=\"ok\"} 1"),
            "{metrics}"
        );

        stop.cancel();
        running.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn pages_survive_the_validator_going_away_and_recover() {
        let validator_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let validator = validator_listener.local_addr().unwrap();
        let mut config = ExplorerConfig::new(LedgerConfig {
            validators: vec![ValidatorUrl::from_address(validator)],
            genesis: "genesis.json".into(),
        });
        config.refresh.interval = Duration::from_millis(100);
        let explorer = Explorer::new(Path::new("."), config, fixture::genesis());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(explorer.run_with(listener, async {
            let _ = stop_rx.await;
        }));

        // nothing fetched yet (the validator is not up): a banner, not an error page
        let (status, body) = fetch(address, "/").await;
        assert_eq!(status, 503);
        assert!(body.contains("class=\"banner\""), "{body}");
        assert_eq!(fetch(address, "/api/overview").await.0, 503);

        let validator_stop = CancellationToken::new();
        fake_validator(validator_listener, validator_stop.clone());
        let page = until(address, "/", |status, _| status == 200).await;
        assert!(page.contains("alice") && !page.contains("class=\"banner\""));
        for path in [
            "/mixnodes?sort=performance&dir=asc&layer=2",
            "/gateways",
            "/nodes/1",
            "/epochs",
            "/guide?node=3",
            "/assets/style.css",
        ] {
            let (status, body) = fetch(address, path).await;
            assert_eq!(status, 200, "{path}: {body}");
        }
        let (_, json) = fetch(address, "/api/mixnodes?sort=stake").await;
        let json: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(json["page"]["rows"][0]["id"], 1);
        assert_eq!(json["page"]["rows"][0]["stake"], 1_309_060_000u64);
        assert_eq!(json["source"]["height"], 120);
        assert_eq!(fetch(address, "/health").await.0, 200);
        assert!(
            fetch(address, "/metrics")
                .await
                .1
                .contains("umbra_explorer_height 120")
        );
        assert_eq!(fetch(address, "/nodes/77").await.0, 404);

        // the validator stops: the last snapshot, with a banner naming it
        validator_stop.cancel();
        let page = until(address, "/nodes/1", |_, body| {
            body.contains("class=\"banner\"")
        })
        .await;
        assert!(page.contains(&format!(
            "The validator at http://{validator} has not answered since"
        )));
        assert!(page.contains("alice"));
        assert_eq!(fetch(address, "/health").await.0, 503);

        // and back
        let again = TcpListener::bind(validator).await.unwrap();
        fake_validator(again, CancellationToken::new());
        until(address, "/nodes/1", |status, body| {
            status == 200 && !body.contains("class=\"banner\"")
        })
        .await;

        let _ = stop_tx.send(());
        running.await.unwrap().unwrap();
    }
}
