//! `umbra monitor run`: the monitor core driven by one loop. It follows the epochs from the
//! validators, keeps a client of every gateway of the topology, feeds the core what they say,
//! sends the core's test routes as test loops through them, and hands each epoch's report
//! to a task that stores the evidence, computes the scores and submits them.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use umbra_client::TestLoop;
use umbra_client_daemons::client::ClientEvent;
use umbra_client_daemons::daemon::TICKETS_FILE;
use umbra_client_daemons::spending::{SharedWallet, TicketSource};
use umbra_client_daemons::tickets::TicketWallet;
use umbra_ledger::{Genesis, PublicKey, SigningKey};
use umbra_monitor::{EpochSchedule, Event, Monitor, Roster, RouteId, TestRoute};
use umbra_net::NodeError;

use crate::error::MonitorError;
use umbra_net::directory::{self, Current, Directory, Refresh, TrustRoot};
use umbra_net::keys::read_key;
use umbra_topology::NodeId;

use crate::config::{ACCOUNT_KEY_FILE, CONFIG_FILE, EVIDENCE_DIR, MonitorDaemonConfig};
use crate::evidence_store::EvidenceStore;
use crate::report::Reporter;
use crate::sessions::{Session, Tagged};
use crate::status::{Status, reason_label, router};

/// A monitor read from its data directory, ready to run.
pub struct MonitorDaemon {
    data_dir: PathBuf,
    config: MonitorDaemonConfig,
    account: SigningKey,
    directory: Arc<Directory>,
    /// The accounts genesis names as monitors.
    monitors: Vec<PublicKey>,
}

impl MonitorDaemon {
    /// Reads the monitor in `data_dir`; every error names the file and what is wrong.
    pub fn load(data_dir: &Path) -> Result<MonitorDaemon, MonitorError> {
        let config_path = data_dir.join(CONFIG_FILE);
        umbra_net::config::require_config(&config_path, data_dir, "monitor")?;
        let config = MonitorDaemonConfig::load(&config_path)?;
        let account = SigningKey::from_seed(read_key(&data_dir.join(ACCOUNT_KEY_FILE))?);
        let genesis_path = data_dir.join(&config.ledger.genesis);
        let text = std::fs::read_to_string(&genesis_path).map_err(|source| NodeError::Read {
            path: genesis_path.clone(),
            source,
        })?;
        let genesis = Genesis::from_json(&text).map_err(|problem| {
            NodeError::invalid(&genesis_path, format!("not a genesis file: {problem}"))
        })?;
        let directory = Directory::new(
            config.ledger.validators.clone(),
            TrustRoot::from_genesis(&genesis),
        );
        Ok(MonitorDaemon {
            data_dir: data_dir.to_owned(),
            config,
            account,
            directory: Arc::new(directory),
            monitors: genesis.monitors,
        })
    }

    /// The account that signs the scores (genesis names it in `monitors`).
    pub fn account(&self) -> PublicKey {
        self.account.public()
    }

    /// Whether genesis names the account as a monitor: otherwise the ledger refuses its
    /// scores, and the monitor only publishes its evidence.
    pub fn is_named_in_genesis(&self) -> bool {
        self.monitors.contains(&self.account())
    }

    /// The configuration.
    pub fn config(&self) -> &MonitorDaemonConfig {
        &self.config
    }

    /// Where `/metrics`, `/health` and the evidence are served.
    pub fn http_address(&self) -> SocketAddr {
        self.config.http.listen_address
    }

    /// Binds the HTTP port and runs until `shutdown`.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), MonitorError> {
        let address = self.http_address();
        let listener = TcpListener::bind(address).await.map_err(|source| {
            if source.kind() == std::io::ErrorKind::AddrInUse {
                MonitorError::PortTaken {
                    address,
                    config: self.data_dir.join(CONFIG_FILE),
                }
            } else {
                NodeError::Bind { address, source }.into()
            }
        })?;
        self.run_with(listener, shutdown).await
    }

    /// Runs with its HTTP port on `listener` until `shutdown`: serves the evidence kept from
    /// before at once, fetches the topology (retrying while no validator answers), then
    /// measures every epoch, closing its sessions when it stops.
    pub async fn run_with(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), MonitorError> {
        let mut shutdown = std::pin::pin!(shutdown);
        let stop = CancellationToken::new();
        let store = Arc::new(EvidenceStore::open(
            &self.data_dir.join(EVIDENCE_DIR),
            self.config.evidence.keep_epochs,
        )?);
        let submitting = self.is_named_in_genesis();
        let status = Arc::new(Status::new(Arc::clone(&store), submitting));
        let http = tokio::spawn(umbra_http::serve_router(
            listener,
            router(Arc::clone(&status)),
            self.config.http.limits,
            status.http_counters(),
            stop.clone(),
        ));
        let account = self.account();
        if submitting {
            info!(%account, "the monitor's account is named in genesis: its scores go to the ledger");
        } else {
            warn!(
                %account,
                "genesis does not name this monitor's account in `monitors`: the ledger would refuse its scores, so it only publishes its evidence"
            );
        }
        let outcome = tokio::select! {
            outcome = self.measure(Arc::clone(&store), Arc::clone(&status), stop.clone(), submitting) => outcome,
            () = &mut shutdown => Ok(()),
        };
        info!("stopping");
        stop.cancel();
        let _ = http.await;
        outcome
    }

    /// Fetches the first topology, then runs the loop until `stop`.
    async fn measure(
        self,
        store: Arc<EvidenceStore>,
        status: Arc<Status>,
        stop: CancellationToken,
        submitting: bool,
    ) -> Result<(), MonitorError> {
        let first = self.directory.first(&stop).await?;
        let refresh = Refresh::client(self.directory.trust());
        let (topologies, follower) =
            directory::follow(Arc::clone(&self.directory), first, refresh, stop.clone());
        let core = Monitor::new(self.config.monitor.clone(), rand::random()).map_err(|error| {
            NodeError::invalid(
                self.data_dir.join(CONFIG_FILE),
                format!("in [monitor]: {error}"),
            )
        })?;
        let reporter = Arc::new(Reporter {
            store,
            status: Arc::clone(&status),
            directory: Arc::clone(&self.directory),
            account: self.account,
            submitting,
            margin: self.config.monitor.submit_margin,
        });
        let (events_in, events) = mpsc::channel(1024);
        // the monitor pays gateways that demand tickets like any client (a gateway must not
        // tell its sessions from users'); its clients share its wallet
        let wallet = TicketWallet::open(&self.data_dir.join(TICKETS_FILE))?;
        let mut driver = Driver {
            core,
            wallet: Arc::new(SharedWallet::new(wallet)),
            data_dir: self.data_dir,
            config: self.config,
            sessions: BTreeMap::new(),
            events_in,
            topologies,
            status,
            reporter,
            reports: tokio::task::JoinSet::new(),
            stop: stop.clone(),
        };
        info!(account = %driver.reporter.account.public(), "monitor running");
        let outcome = driver.run(events).await;
        for (_, session) in std::mem::take(&mut driver.sessions) {
            session.stop().await;
        }
        // a report under way has until its submission's timeout
        driver.reports.abort_all();
        let _ = follower.await;
        outcome
    }
}

/// The loop's state.
struct Driver {
    core: Monitor,
    /// Bandwidth tickets, shared by the monitor's clients.
    wallet: Arc<SharedWallet>,
    data_dir: PathBuf,
    config: MonitorDaemonConfig,
    /// A client of each gateway of the current topology, by the gateway's id.
    sessions: BTreeMap<NodeId, Session>,
    events_in: mpsc::Sender<Tagged>,
    topologies: watch::Receiver<Arc<Current>>,
    status: Arc<Status>,
    reporter: Arc<Reporter>,
    reports: tokio::task::JoinSet<()>,
    stop: CancellationToken,
}

impl Driver {
    /// Feeds the core, fires its timers and carries out its output until `stop`.
    async fn run(&mut self, mut events: mpsc::Receiver<Tagged>) -> Result<(), MonitorError> {
        let first = Arc::clone(&self.topologies.borrow_and_update());
        self.epoch(&first)?;
        loop {
            let wake = self.core.poll_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                biased;
                () = self.stop.cancelled() => return Ok(()),
                changed = self.topologies.changed() => match changed {
                    Ok(()) => {
                        let current = Arc::clone(&self.topologies.borrow_and_update());
                        self.epoch(&current)?;
                    }
                    // the follower stopped: only at `stop`
                    Err(_) => return Ok(()),
                },
                Some((gateway, event)) = events.recv() => self.client_event(gateway, event),
                () = sleep_until(wake) => {}
                // reports done: reap them
                Some(_) = self.reports.join_next(), if !self.reports.is_empty() => {}
            }
            let now = now();
            self.core.handle_timeout(now);
            while let Some(route) = self.core.poll_transmit(now) {
                self.send(route).await;
            }
            while let Some(event) = self.core.poll_event() {
                self.event(event);
            }
            let up = self.sessions.values().filter(|session| session.up).count();
            self.status
                .update(self.core.stats(), self.sessions.len(), up);
        }
    }

    /// A new epoch's topology: clients for its gateways, and the epoch to the core.
    fn epoch(&mut self, current: &Current) -> Result<(), MonitorError> {
        self.sync_sessions(current)?;
        let Some(epoch) = current.epoch else {
            return Ok(());
        };
        let (now, wall) = (now(), directory::now_ms());
        // the document's wall-clock times, on the loop's clock
        let at = |ms: u64| {
            if ms >= wall {
                now + Duration::from_millis(ms - wall)
            } else {
                now.checked_sub(Duration::from_millis(wall - ms))
                    .unwrap_or(now)
            }
        };
        let roster = Roster::from_topology(&current.topology);
        let (mixes, gateways) = (
            roster.layers().iter().map(Vec::len).sum::<usize>(),
            roster.gateways().len(),
        );
        let schedule = EpochSchedule {
            number: epoch.number,
            roster,
            start: at(epoch.start_ms),
            end: at(epoch.end_ms),
        };
        match self.core.handle_epoch(now, schedule) {
            Ok(()) => {
                info!(
                    epoch = epoch.number,
                    mix_nodes = mixes,
                    gateways,
                    ends_in_ms = epoch.end_ms.saturating_sub(wall),
                    "measuring the epoch"
                );
                self.status.measuring(epoch.number);
            }
            Err(error) => warn!(%error, "not measuring this epoch"),
        }
        Ok(())
    }

    /// Starts a client for each gateway of the topology that has none, and stops those of
    /// gateways it no longer lists.
    fn sync_sessions(&mut self, current: &Current) -> Result<(), MonitorError> {
        let gateways: BTreeMap<NodeId, _> = current
            .topology
            .gateways()
            .filter(|gateway| gateway.client_address.is_some())
            .map(|gateway| (gateway.id, gateway))
            .collect();
        let gone: Vec<NodeId> = self
            .sessions
            .iter()
            .filter(|(id, session)| {
                gateways
                    .get(id)
                    .is_none_or(|gateway| gateway.noise_key != session.noise_key)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            if let Some(session) = self.sessions.remove(&id) {
                info!(gateway = %id, "the gateway left the topology; closing its client");
                self.core.handle_gateway_down(now(), id);
                tokio::spawn(session.stop());
            }
        }
        for (id, gateway) in gateways {
            if self.sessions.contains_key(&id) {
                continue;
            }
            let session = Session::start(
                &self.data_dir,
                &self.config,
                gateway,
                &current.topology,
                (
                    self.topologies.clone(),
                    Arc::clone(&self.wallet) as Arc<dyn TicketSource>,
                ),
                self.events_in.clone(),
                self.stop.child_token(),
            )?;
            info!(gateway = %id, address = %session.handle.address(), "a client of the gateway started");
            self.sessions.insert(id, session);
        }
        Ok(())
    }

    fn client_event(&mut self, gateway: NodeId, event: ClientEvent) {
        let now = now();
        let Some(session) = self.sessions.get_mut(&gateway) else {
            return;
        };
        match event {
            ClientEvent::TestLoopSent(id) => self.core.handle_sent(now, RouteId(id)),
            ClientEvent::TestLoopArrived(id) => self.core.handle_received(now, RouteId(id)),
            ClientEvent::Connected { .. } => {
                session.up = true;
                self.core.handle_gateway_up(now, gateway);
            }
            ClientEvent::Disconnected { reason } => {
                session.up = false;
                info!(gateway = %gateway, %reason, "the session with the gateway dropped: routes through it are not judged until it is back");
                self.core.handle_gateway_down(now, gateway);
            }
            // a gateway that demands tickets forwards nothing without credit: routes through
            // it are not judged while the monitor's credit there is gone (its packets would
            // be refused, not lost by the mix nodes)
            ClientEvent::Credit { balance } => {
                if balance == 0 && session.up {
                    session.up = false;
                    info!(gateway = %gateway, "no bandwidth credit at the gateway yet: routes through it wait for a ticket to be credited");
                    self.core.handle_gateway_down(now, gateway);
                } else if balance > 0 && !session.up {
                    session.up = true;
                    self.core.handle_gateway_up(now, gateway);
                }
            }
            ClientEvent::OutOfTickets => {
                warn!(gateway = %gateway, "the monitor's ticket wallet is empty: routes through this gateway are not judged once its credit is gone; buy tickets with `umbra client buy --account KEY --tickets N <monitor dir>`");
                if session.up {
                    session.up = false;
                    self.core.handle_gateway_down(now, gateway);
                }
            }
            // (the client shell logs it)
            ClientEvent::Refused { count, detail } => {
                debug!(gateway = %gateway, count, %detail, "the gateway refused the monitor's packets");
            }
            // nobody sends the monitor messages; a stranger's are dropped
            ClientEvent::Received { .. }
            | ClientEvent::Reply { .. }
            | ClientEvent::Sent(_)
            | ClientEvent::Failed { .. } => {}
        }
    }

    /// Sends a route's test loop: queued on the entry gateway's client, addressed to the
    /// monitor's client at the exit gateway, which is told to expect it.
    async fn send(&mut self, route: TestRoute) {
        let (Some(entry), Some(exit)) = (
            self.sessions.get(&route.entry()),
            self.sessions.get(&route.exit()),
        ) else {
            self.status.refused();
            return;
        };
        let test = TestLoop {
            id: route.id.0,
            mixes: route.mixes(),
            to: exit.handle.address(),
        };
        match entry.handle.queue_test_loop(test).await {
            Ok(fragment) => {
                if exit
                    .handle
                    .expect_test_loop(fragment, route.id.0)
                    .await
                    .is_err()
                {
                    self.status.refused();
                }
            }
            Err(error) => {
                debug!(%error, route = %route.id, "the client refused a test loop");
                self.status.refused();
            }
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Report(report) => {
                let reporter = Arc::clone(&self.reporter);
                self.reports.spawn(reporter.report(report));
            }
            Event::Fault { epoch, fault } => {
                info!(
                    epoch,
                    reason = ?fault.reason,
                    from_ms = fault.from_ms,
                    to_ms = fault.to_ms,
                    "the monitor's own fault: routes alive then are not judged"
                );
                self.status.fault(reason_label(&fault.reason));
            }
        }
    }
}

/// Now, by tokio's clock (which a test may pause): the core's time and the loop's timers are
/// then one clock.
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// Sleeps until `deadline`; forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
