//! The monitor's state machine: a Poisson stream of test routes, their outcomes, the
//! monitor's own faults, and at each epoch's report time the evidence and the scores.
//!
//! Sans-IO: the shell tells it the epochs ([`Monitor::handle_epoch`]), its gateway sessions
//! ([`Monitor::handle_gateway_up`] / [`Monitor::handle_gateway_down`]), when each test packet
//! left ([`Monitor::handle_sent`]) and came back ([`Monitor::handle_received`]); it drains
//! routes to send ([`Monitor::poll_transmit`]) and events ([`Monitor::poll_event`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use umbra_topology::NodeId;

use crate::config::{MonitorConfig, millis};
use crate::err::{ConfigError, EpochError};
use crate::evidence::{
    EVIDENCE_VERSION, Evidence, EvidenceNode, Fault, FaultReason, RouteOutcome, Rules,
};
use crate::plan::{Planner, Roster};
use crate::report::EpochReport;

/// A test route's number, unique in a monitor's run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteId(pub u64);

impl fmt::Display for RouteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "route {}", self.0)
    }
}

/// A route to send one test packet over, as a loop back to the monitor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestRoute {
    /// Its number: report it with [`Monitor::handle_sent`] and [`Monitor::handle_received`].
    pub id: RouteId,
    /// The epoch whose topology it was drawn from.
    pub epoch: u64,
    /// Entry gateway (the session to send on), the mix nodes of layers 1, 2, 3, and the exit
    /// gateway (the session the packet comes back on).
    pub hops: [NodeId; 5],
    /// When it was due to be sent (lateness against this is the monitor starving).
    pub due: Instant,
}

impl TestRoute {
    /// The gateway to send through.
    pub fn entry(&self) -> NodeId {
        self.hops[0]
    }

    /// The mix nodes of layers 1, 2 and 3.
    pub fn mixes(&self) -> [NodeId; 3] {
        [self.hops[1], self.hops[2], self.hops[3]]
    }

    /// The gateway the loop comes back through.
    pub fn exit(&self) -> NodeId {
        self.hops[4]
    }
}

/// An epoch to measure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochSchedule {
    /// Its number.
    pub number: u64,
    /// Its active nodes.
    pub roster: Roster,
    /// When it started.
    pub start: Instant,
    /// When it is due to end.
    pub end: Instant,
}

/// What the monitor reports.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// An epoch's evidence, due `submit_margin` before the epoch's end: compute the scores
    /// ([`EpochReport::attribute`], off the event loop), submit them
    /// ([`crate::Attribution::performance`]) and publish the evidence.
    Report(Box<EpochReport>),
    /// The monitor found a fault of its own (for logs and health; the report lists them).
    Fault {
        /// The epoch it affects.
        epoch: u64,
        /// The fault.
        fault: Fault,
    },
}

/// What the monitor counts over its run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MonitorStats {
    /// Routes handed out.
    pub planned: u64,
    /// Routes the shell reported sent.
    pub sent: u64,
    /// Test packets back in time.
    pub returned: u64,
    /// Test packets not back by their deadline.
    pub lost: u64,
    /// Test packets back after their deadline (still lost).
    pub late: u64,
    /// Routes handed out but never reported sent.
    pub unsent: u64,
    /// Reports of routes the monitor does not know (or twice).
    pub unknown: u64,
    /// Slots of the stream with no route to give (no epoch measuring, no gateway up).
    pub idle_slots: u64,
}

/// The monitor's core. See the crate documentation for the driver's loop.
pub struct Monitor {
    config: MonitorConfig,
    rules: Rules,
    rng: ChaCha20Rng,
    epochs: BTreeMap<u64, EpochState>,
    /// Gateways whose session is up.
    up: BTreeSet<NodeId>,
    next_id: u64,
    /// The stream's next slot, while an epoch is still to be measured.
    next_slot: Option<Instant>,
    /// Loss deadlines of sent routes and give-up times of unsent ones.
    deadlines: BTreeSet<(Instant, RouteId)>,
    ready: VecDeque<TestRoute>,
    events: VecDeque<Event>,
    stats: MonitorStats,
}

struct EpochState {
    start: Instant,
    /// Routes are drawn until then.
    measure_until: Instant,
    /// The report is due then.
    report_at: Instant,
    roster: Roster,
    planner: Planner,
    routes: BTreeMap<RouteId, RouteState>,
    faults: Vec<Fault>,
    /// Gateways whose session is down, since when.
    down_since: BTreeMap<NodeId, Instant>,
}

#[derive(Clone, Copy)]
struct RouteState {
    hops: [NodeId; 5],
    due: Instant,
    progress: Progress,
}

#[derive(Clone, Copy)]
enum Progress {
    Planned,
    Sent(Instant),
    Returned(Instant, Duration),
    Lost(Instant),
}

impl Monitor {
    /// A monitor with these settings and random seed.
    pub fn new(config: MonitorConfig, seed: [u8; 32]) -> Result<Monitor, ConfigError> {
        config.validate()?;
        Ok(Monitor {
            rules: config.rules(),
            config,
            rng: ChaCha20Rng::from_seed(seed),
            epochs: BTreeMap::new(),
            up: BTreeSet::new(),
            next_id: 0,
            next_slot: None,
            deadlines: BTreeSet::new(),
            ready: VecDeque::new(),
            events: VecDeque::new(),
            stats: MonitorStats::default(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &MonitorConfig {
        &self.config
    }

    /// What it has counted.
    pub fn stats(&self) -> &MonitorStats {
        &self.stats
    }

    /// Starts measuring an epoch: routes are drawn from its roster from `now` (or its start)
    /// until `loss_deadline + submit_margin` before its end; its report comes
    /// `submit_margin` before its end. An older epoch still open finishes as planned.
    pub fn handle_epoch(&mut self, now: Instant, epoch: EpochSchedule) -> Result<(), EpochError> {
        let number = epoch.number;
        if let Some((&newest, _)) = self.epochs.last_key_value()
            && newest >= number
        {
            return Err(EpochError::NotNewer {
                epoch: number,
                newest,
            });
        }
        if let Some(layer) =
            (1..=3u8).find(|&l| epoch.roster.layers()[usize::from(l) - 1].is_empty())
        {
            return Err(EpochError::EmptyLayer {
                epoch: number,
                layer,
            });
        }
        if epoch.roster.gateways().is_empty() {
            return Err(EpochError::NoGateway { epoch: number });
        }
        let report_at = epoch.end.checked_sub(self.config.submit_margin);
        let measure_until = report_at.and_then(|at| at.checked_sub(self.config.loss_deadline));
        let (Some(report_at), Some(measure_until)) = (report_at, measure_until) else {
            return Err(EpochError::TooShort {
                epoch: number,
                left: epoch.end.saturating_duration_since(now),
            });
        };
        if measure_until <= now.max(epoch.start) {
            return Err(EpochError::TooShort {
                epoch: number,
                left: epoch.end.saturating_duration_since(now),
            });
        }
        let down_since = epoch
            .roster
            .gateways()
            .iter()
            .filter(|gateway| !self.up.contains(gateway))
            .map(|&gateway| (gateway, now.max(epoch.start)))
            .collect();
        self.epochs.insert(
            number,
            EpochState {
                start: epoch.start,
                measure_until,
                report_at,
                planner: Planner::new(&epoch.roster),
                roster: epoch.roster,
                routes: BTreeMap::new(),
                faults: Vec::new(),
                down_since,
            },
        );
        if self.next_slot.is_none() {
            self.next_slot = Some(now.max(epoch.start) + self.interval());
        }
        Ok(())
    }

    /// The monitor's session with `gateway` is up: routes may use it.
    pub fn handle_gateway_up(&mut self, now: Instant, gateway: NodeId) {
        self.up.insert(gateway);
        for (&number, epoch) in &mut self.epochs {
            if let Some(since) = epoch.down_since.remove(&gateway) {
                let fault =
                    epoch.fault(since, now, FaultReason::GatewayDown { gateway: gateway.0 });
                self.events.push_back(Event::Fault {
                    epoch: number,
                    fault,
                });
            }
        }
    }

    /// The monitor's session with `gateway` is down: no route uses it, and no route through
    /// it that was alive while it was down is judged.
    pub fn handle_gateway_down(&mut self, now: Instant, gateway: NodeId) {
        if !self.up.remove(&gateway) {
            return;
        }
        for epoch in self.epochs.values_mut() {
            if epoch.roster.gateways().contains(&gateway) {
                epoch.down_since.entry(gateway).or_insert(now);
            }
        }
    }

    /// The packet of route `id` left at `now` (handed to the entry gateway's session).
    pub fn handle_sent(&mut self, now: Instant, id: RouteId) {
        let Some((_, route)) = self.route_mut(id) else {
            self.stats.unknown += 1;
            return;
        };
        let Progress::Planned = route.progress else {
            self.stats.unknown += 1;
            return;
        };
        route.progress = Progress::Sent(now);
        let due = route.due;
        self.deadlines
            .remove(&(due + self.config.loss_deadline, id));
        self.deadlines.insert((now + self.config.loss_deadline, id));
        self.stats.sent += 1;
        self.check_lateness(due, now);
    }

    /// The packet of route `id` came back at `now`.
    pub fn handle_received(&mut self, now: Instant, id: RouteId) {
        let deadline = self.config.loss_deadline;
        let Some((_, route)) = self.route_mut(id) else {
            self.stats.unknown += 1;
            return;
        };
        match route.progress {
            Progress::Sent(sent) if now.saturating_duration_since(sent) <= deadline => {
                route.progress = Progress::Returned(sent, now.saturating_duration_since(sent));
                self.deadlines.remove(&(sent + deadline, id));
                self.stats.returned += 1;
            }
            Progress::Sent(_) | Progress::Lost(_) => self.stats.late += 1,
            Progress::Planned | Progress::Returned(..) => self.stats.unknown += 1,
        }
    }

    /// Fires every timer due by `now`: the stream's slots, loss deadlines, reports.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.run_timers(now);
    }

    /// The next route to send a test packet over, if one is due.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<TestRoute> {
        self.run_timers(now);
        self.ready.pop_front()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The earliest of the stream's next slot, the loss deadlines and the reports due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let reports = self.epochs.values().map(|epoch| epoch.report_at).min();
        let deadlines = self.deadlines.first().map(|(at, _)| *at);
        [self.next_slot, reports, deadlines]
            .into_iter()
            .flatten()
            .min()
    }

    fn run_timers(&mut self, now: Instant) {
        // a timer fired well after it was due: the process was starved
        if let Some(due) = self.poll_timeout().filter(|due| *due <= now) {
            self.check_lateness(due, now);
        }
        while let Some(slot) = self.next_slot.filter(|slot| *slot <= now) {
            self.next_slot = if self.epochs.values().any(|e| e.measure_until > slot) {
                // a stream far behind (the process slept) restarts from now, as a client's
                let base = if now.saturating_duration_since(slot) > Duration::from_secs(1) {
                    now
                } else {
                    slot
                };
                Some(base + self.interval())
            } else {
                None
            };
            self.plan(slot);
        }
        while let Some(&(at, id)) = self.deadlines.first().filter(|(at, _)| *at <= now) {
            self.deadlines.remove(&(at, id));
            if let Some((_, route)) = self.route_mut(id) {
                match route.progress {
                    Progress::Sent(sent) => {
                        route.progress = Progress::Lost(sent);
                        self.stats.lost += 1;
                    }
                    Progress::Planned => self.stats.unsent += 1,
                    Progress::Returned(..) | Progress::Lost(_) => {}
                }
            }
        }
        while let Some((&number, _)) = self.epochs.iter().find(|(_, epoch)| epoch.report_at <= now)
        {
            if let Some(epoch) = self.epochs.remove(&number) {
                let report = self.report(number, epoch);
                self.events.push_back(Event::Report(Box::new(report)));
            }
        }
    }

    /// Draws the route of the slot at `slot`, if an epoch is measuring and a gateway is up.
    fn plan(&mut self, slot: Instant) {
        let up = &self.up;
        let Some((&number, epoch)) = self
            .epochs
            .iter_mut()
            .rev()
            .find(|(_, epoch)| epoch.start <= slot && slot < epoch.measure_until)
        else {
            self.stats.idle_slots += 1;
            return;
        };
        let Some(hops) = epoch
            .planner
            .draw(&mut self.rng, |gateway| up.contains(&gateway))
        else {
            self.stats.idle_slots += 1;
            return;
        };
        let id = RouteId(self.next_id);
        self.next_id += 1;
        epoch.routes.insert(
            id,
            RouteState {
                hops,
                due: slot,
                progress: Progress::Planned,
            },
        );
        self.deadlines
            .insert((slot + self.config.loss_deadline, id));
        self.stats.planned += 1;
        self.ready.push_back(TestRoute {
            id,
            epoch: number,
            hops,
            due: slot,
        });
    }

    /// Records starvation if something due at `due` happened at `now`, too late.
    fn check_lateness(&mut self, due: Instant, now: Instant) {
        let late = now.saturating_duration_since(due);
        if late <= self.config.max_lateness {
            return;
        }
        // epochs that had started by then (a next one may be known before it starts)
        for (&number, epoch) in self.epochs.iter_mut().filter(|(_, e)| e.start <= now) {
            let fault = epoch.fault(
                due,
                now,
                FaultReason::Starved {
                    late_ms: millis(late),
                },
            );
            self.events.push_back(Event::Fault {
                epoch: number,
                fault,
            });
        }
    }

    fn route_mut(&mut self, id: RouteId) -> Option<(u64, &mut RouteState)> {
        self.epochs
            .iter_mut()
            .find_map(|(&number, epoch)| epoch.routes.get_mut(&id).map(|route| (number, route)))
    }

    fn report(&mut self, number: u64, mut epoch: EpochState) -> EpochReport {
        let now = epoch.report_at;
        for (gateway, since) in std::mem::take(&mut epoch.down_since) {
            epoch.fault(since, now, FaultReason::GatewayDown { gateway: gateway.0 });
        }
        let deadline = self.config.loss_deadline;
        let ms = |at: Instant| millis(at.saturating_duration_since(epoch.start));
        // only routes whose deadline passed: which are judged does not depend on outcomes
        let routes = epoch
            .routes
            .iter()
            .filter_map(|(id, route)| {
                self.deadlines.remove(&(route.due + deadline, *id));
                let (sent, latency) = match route.progress {
                    Progress::Planned => {
                        self.stats.unsent += 1;
                        return None;
                    }
                    Progress::Sent(sent) => {
                        self.deadlines.remove(&(sent + deadline, *id));
                        (sent, None)
                    }
                    Progress::Lost(sent) => (sent, None),
                    Progress::Returned(sent, latency) => (sent, Some(latency)),
                };
                (sent + deadline <= now).then(|| RouteOutcome {
                    id: id.0,
                    hops: route.hops.map(|hop| hop.0),
                    sent_ms: ms(sent),
                    latency_us: latency
                        .map(|latency| u64::try_from(latency.as_micros()).unwrap_or(u64::MAX)),
                })
            })
            .collect();
        let evidence = Evidence {
            version: EVIDENCE_VERSION,
            epoch: number,
            rules: self.rules,
            nodes: epoch
                .roster
                .nodes()
                .map(|(node, group)| EvidenceNode { id: node.0, group })
                .collect(),
            routes,
            faults: epoch.faults,
        };
        EpochReport::new(evidence)
    }

    /// An exponentially distributed gap of mean `mean_route_interval`.
    fn interval(&mut self) -> Duration {
        // uniform in (0, 1]: the top 53 bits of a u64
        let uniform = ((self.rng.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        self.config.mean_route_interval.mul_f64(-uniform.ln())
    }
}

impl EpochState {
    /// Records a fault from `from` to `to` (clamped to the epoch) and returns it.
    fn fault(&mut self, from: Instant, to: Instant, reason: FaultReason) -> Fault {
        let ms = |at: Instant| millis(at.saturating_duration_since(self.start));
        let fault = Fault {
            from_ms: ms(from),
            to_ms: ms(to),
            reason,
        };
        self.faults.push(fault);
        fault
    }
}

impl umbra_core::Core for Monitor {
    type Transmit = TestRoute;
    type Event = Event;

    fn handle_timeout(&mut self, now: Instant) {
        Monitor::handle_timeout(self, now);
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<TestRoute> {
        Monitor::poll_transmit(self, now)
    }

    fn poll_event(&mut self) -> Option<Event> {
        Monitor::poll_event(self)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Monitor::poll_timeout(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::roster;

    const MINUTE: Duration = Duration::from_secs(60);

    fn monitor(now: Instant) -> Monitor {
        let mut monitor = Monitor::new(MonitorConfig::default(), [1; 32]).expect("valid");
        for &gateway in roster(2, 3).gateways() {
            monitor.handle_gateway_up(now, gateway);
        }
        monitor
    }

    fn epoch(number: u64, start: Instant, length: Duration) -> EpochSchedule {
        EpochSchedule {
            number,
            roster: roster(2, 3),
            start,
            end: start + length,
        }
    }

    /// Runs the monitor alone until `until`, sending every route at once and handing each
    /// to `outcome` (which says whether and when it comes back).
    fn drive(
        monitor: &mut Monitor,
        mut now: Instant,
        until: Instant,
        mut outcome: impl FnMut(&TestRoute) -> Option<Duration>,
    ) -> Vec<Event> {
        let mut returns: BTreeSet<(Instant, RouteId)> = BTreeSet::new();
        let mut events = Vec::new();
        loop {
            monitor.handle_timeout(now);
            while let Some(route) = monitor.poll_transmit(now) {
                monitor.handle_sent(now, route.id);
                if let Some(after) = outcome(&route) {
                    returns.insert((now + after, route.id));
                }
            }
            while let Some((at, id)) = returns.first().copied().filter(|(at, _)| *at <= now) {
                returns.remove(&(at, id));
                monitor.handle_received(now, id);
            }
            events.extend(std::iter::from_fn(|| monitor.poll_event()));
            let next = [monitor.poll_timeout(), returns.first().map(|(at, _)| *at)]
                .into_iter()
                .flatten()
                .min();
            match next.filter(|next| *next <= until) {
                Some(next) => {
                    assert!(next > now || returns.first().is_some_and(|(at, _)| *at <= now));
                    now = next;
                }
                None => return events,
            }
        }
    }

    #[test]
    fn epochs_that_cannot_work_are_refused() {
        let now = Instant::now();
        let mut monitor = monitor(now);
        // 80 s of margins (20 s deadline, 60 s submit margin) in a 70 s epoch
        assert!(matches!(
            monitor.handle_epoch(now, epoch(1, now, Duration::from_secs(70))),
            Err(EpochError::TooShort { epoch: 1, .. })
        ));
        let mut empty = epoch(1, now, 10 * MINUTE);
        empty.roster = Roster::new([vec![NodeId(1)], vec![], vec![NodeId(3)]], vec![NodeId(9)]);
        assert_eq!(
            monitor.handle_epoch(now, empty),
            Err(EpochError::EmptyLayer { epoch: 1, layer: 2 })
        );
        monitor
            .handle_epoch(now, epoch(2, now, 10 * MINUTE))
            .expect("accepted");
        assert_eq!(
            monitor.handle_epoch(now, epoch(2, now, 10 * MINUTE)),
            Err(EpochError::NotNewer {
                epoch: 2,
                newest: 2
            })
        );
    }

    #[test]
    fn routes_stop_in_time_for_the_report_and_the_report_is_due_before_the_end() {
        let start = Instant::now();
        let mut monitor = monitor(start);
        monitor
            .handle_epoch(start, epoch(1, start, 5 * MINUTE))
            .expect("accepted");
        let mut last_due = start;
        let events = drive(&mut monitor, start, start + 5 * MINUTE, |route| {
            last_due = last_due.max(route.due);
            Some(Duration::from_millis(200))
        });
        // routes until 5 min − 60 s − 20 s; the report at 5 min − 60 s
        assert!(last_due < start + 5 * MINUTE - Duration::from_secs(80));
        assert!(last_due > start + 5 * MINUTE - Duration::from_secs(90));
        let [Event::Report(report)] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(report.epoch, 1);
        assert!(
            report
                .evidence
                .routes
                .iter()
                .all(|r| r.latency_us == Some(200_000))
        );
        assert_eq!(monitor.poll_timeout(), None);
    }

    #[test]
    fn unsent_routes_are_not_evidence_and_late_returns_stay_lost() {
        let start = Instant::now();
        let mut monitor = monitor(start);
        monitor
            .handle_epoch(start, epoch(1, start, 3 * MINUTE))
            .expect("accepted");
        let mut now = start;
        let mut routes = Vec::new();
        while routes.len() < 3 {
            now = monitor.poll_timeout().expect("a slot");
            monitor.handle_timeout(now);
            routes.extend(std::iter::from_fn(|| monitor.poll_transmit(now)));
        }
        // the first is never sent; the second comes back 21 s after it left; the third twice
        monitor.handle_sent(now, routes[1].id);
        monitor.handle_sent(now, routes[2].id);
        monitor.handle_received(now + Duration::from_secs(1), routes[2].id);
        monitor.handle_received(now + Duration::from_secs(1), routes[2].id);
        monitor.handle_timeout(now + Duration::from_secs(20));
        monitor.handle_received(now + Duration::from_secs(21), routes[1].id);
        monitor.handle_received(now, RouteId(u64::MAX));
        let stats = monitor.stats().clone();
        assert_eq!((stats.returned, stats.lost, stats.late), (1, 1, 1));
        assert_eq!(stats.unknown, 2);
        // (the timer that ran 20 s late counts as starvation: not what this test is about)
        let events = drive(
            &mut monitor,
            now + Duration::from_secs(21),
            start + 3 * MINUTE,
            |_| None,
        );
        let Some(Event::Report(report)) = events.last() else {
            panic!("no report")
        };
        let first = report
            .evidence
            .routes
            .iter()
            .find(|r| r.id == routes[0].id.0);
        assert_eq!(first, None, "a route never sent is no evidence");
        let second = report
            .evidence
            .routes
            .iter()
            .find(|r| r.id == routes[1].id.0);
        assert_eq!(second.map(|r| r.latency_us), Some(None));
        assert!(monitor.stats().unsent >= 1);
    }

    #[test]
    fn a_gateway_never_up_is_never_used_and_says_so() {
        let start = Instant::now();
        let mut monitor = Monitor::new(MonitorConfig::default(), [2; 32]).expect("valid");
        monitor.handle_gateway_up(start, NodeId(900));
        monitor.handle_gateway_up(start, NodeId(901));
        monitor
            .handle_epoch(start, epoch(1, start, 5 * MINUTE))
            .expect("accepted");
        let events = drive(&mut monitor, start, start + 5 * MINUTE, |route| {
            assert!(!route.hops.contains(&NodeId(902)));
            Some(Duration::from_millis(100))
        });
        let Some(Event::Report(report)) = events.last() else {
            panic!("no report")
        };
        assert!(
            report
                .evidence
                .faults
                .iter()
                .any(|f| f.reason == FaultReason::GatewayDown { gateway: 902 })
        );
        let attribution = report.attribute();
        let unmeasured = attribution
            .nodes
            .iter()
            .find(|n| n.node == NodeId(902))
            .expect("listed");
        assert_eq!(
            unmeasured.verdict,
            crate::Verdict::Unscored(crate::Unscored::NoPackets)
        );
        assert!(
            !attribution
                .performance()
                .iter()
                .any(|&(node, _)| node == 902)
        );
    }

    #[test]
    fn the_next_epoch_is_measured_with_its_own_roster() {
        let start = Instant::now();
        let mut monitor = monitor(start);
        monitor
            .handle_epoch(start, epoch(1, start, 3 * MINUTE))
            .expect("accepted");
        let mut next = epoch(2, start + 3 * MINUTE, 3 * MINUTE);
        next.roster = Roster::new(
            [
                vec![NodeId(110), NodeId(111)],
                vec![NodeId(210), NodeId(211)],
                vec![NodeId(310), NodeId(311)],
            ],
            roster(2, 3).gateways().to_vec(),
        );
        monitor.handle_epoch(start, next).expect("accepted");
        let mut epochs = BTreeSet::new();
        let events = drive(&mut monitor, start, start + 6 * MINUTE, |route| {
            let new = route.hops[1].0 >= 110;
            assert_eq!(new, route.epoch == 2, "{route:?}");
            assert_eq!(new, route.due >= start + 3 * MINUTE);
            epochs.insert(route.epoch);
            Some(Duration::from_millis(100))
        });
        assert_eq!(epochs, BTreeSet::from([1, 2]));
        let reports: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                Event::Report(report) => Some(report.epoch),
                Event::Fault { .. } => None,
            })
            .collect();
        assert_eq!(reports, vec![1, 2]);
    }
}
