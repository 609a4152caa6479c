//! The processes of a local network — validators, nodes, the user's daemons — watched while
//! the network runs: one that exits is reported at once and started again after a backoff, so
//! the network heals by itself; one that keeps exiting stops the network with a message naming
//! it and its log. At the end they are stopped in order (see [`Stage`]).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// Exits within [`Restarts::WINDOW`] after which a process is given up on.
const GIVE_UP_AFTER: usize = 5;

/// When a process is stopped, first to last: the user's daemons (the traffic's sources), then,
/// once the packets they sent last have left the mix nodes, the gateways (nothing enters the
/// network any more), then the mix layers in the order packets cross them (each hands what it
/// holds to a layer still up), then the validators. No node waits on a link to a stopped peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Stage {
    /// The exit, the SOCKS5 proxy, the user's client.
    Daemons,
    /// Every gateway.
    Gateways,
    /// The mix nodes of this layer in the current epoch (1 to 3; 0: not in the active set).
    Layer(u8),
    /// Every validator.
    Validators,
}

/// How long the packets the daemons sent last may take to leave the mix nodes (three hops
/// of a few tens of milliseconds each, with a wide margin).
const SETTLE: Duration = Duration::from_millis(500);

/// How often a process has exited lately, and what to do about the latest exit.
#[derive(Debug, Default)]
pub(crate) struct Restarts {
    exits: VecDeque<Instant>,
}

/// What to do after a process exits.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Start it again after this long.
    RestartIn(Duration),
    /// It exited this many times within [`Restarts::WINDOW`]: stop the network.
    GiveUp(usize),
}

impl Restarts {
    /// The span in which [`GIVE_UP_AFTER`] exits give up on a process.
    pub(crate) const WINDOW: Duration = Duration::from_secs(60);
    /// The wait before the first restart; doubled for each exit within the window (so at
    /// most 2 s before a process is given up on).
    const FIRST_BACKOFF: Duration = Duration::from_millis(250);

    /// Records an exit at `now`.
    pub(crate) fn exited(&mut self, now: Instant) -> Verdict {
        while self
            .exits
            .front()
            .is_some_and(|&at| now.saturating_duration_since(at) >= Self::WINDOW)
        {
            self.exits.pop_front();
        }
        self.exits.push_back(now);
        let recent = self.exits.len();
        if recent >= GIVE_UP_AFTER {
            return Verdict::GiveUp(recent);
        }
        let doublings = u32::try_from(recent - 1).unwrap_or(u32::MAX).min(16);
        Verdict::RestartIn(Self::FIRST_BACKOFF * 2u32.pow(doublings))
    }
}

/// Makes the command that starts a process (its output going to its log).
pub(crate) type Launch = Box<dyn Fn() -> anyhow::Result<Command> + Send>;

/// One process of the network.
struct Supervised {
    name: String,
    stage: Stage,
    log: PathBuf,
    launch: Launch,
    /// None while it waits to be started again.
    child: Option<Child>,
    restart_at: Option<Instant>,
    restarts: Restarts,
}

/// What the supervisor noticed.
#[derive(Debug)]
pub(crate) enum Event {
    /// A process exited; it is started again after `restart_in`.
    Exited {
        name: String,
        status: String,
        log: PathBuf,
        restart_in: Duration,
    },
    /// A process was started again.
    Restarted { name: String },
    /// A process exited `times` times within [`Restarts::WINDOW`]: the network must stop.
    GaveUp {
        name: String,
        status: String,
        times: usize,
        log: PathBuf,
    },
}

/// Every process of the network.
#[derive(Default)]
pub(crate) struct Supervisor {
    processes: Vec<Supervised>,
}

impl Supervisor {
    /// Starts a process and watches it from now on.
    pub(crate) fn start(
        &mut self,
        name: &str,
        stage: Stage,
        log: PathBuf,
        launch: Launch,
    ) -> anyhow::Result<()> {
        let child = spawn(name, &launch)?;
        self.processes.push(Supervised {
            name: name.to_owned(),
            stage,
            log,
            launch,
            child: Some(child),
            restart_at: None,
            restarts: Restarts::default(),
        });
        Ok(())
    }

    /// A process that has exited (while the network starts, which is fatal), with how.
    pub(crate) fn exited(&mut self) -> Option<(String, ExitStatus)> {
        self.processes.iter_mut().find_map(|process| {
            let status = process.child.as_mut()?.try_wait().ok()??;
            process.child = None;
            Some((process.name.clone(), status))
        })
    }

    /// Notices exits and carries out due restarts, at `now`.
    pub(crate) fn poll(&mut self, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        for process in &mut self.processes {
            if let Some(child) = process.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                process.child = None;
                events.push(process.exited(now, status.to_string()));
            }
            if process.child.is_none() && process.restart_at.is_some_and(|at| at <= now) {
                process.restart_at = None;
                match spawn(&process.name, &process.launch) {
                    Ok(child) => {
                        process.child = Some(child);
                        events.push(Event::Restarted {
                            name: process.name.clone(),
                        });
                    }
                    Err(error) => events.push(process.exited(now, format!("{error:#}"))),
                }
            }
        }
        events
    }

    /// Stops every process, stage by stage (`stage_of` may place a process otherwise than it
    /// was started, e.g. a mix node by its layer now); in each stage every process is asked to
    /// stop (SIGTERM) at once, and killed if it has not after `grace`. How each ended.
    pub(crate) fn stop(
        &mut self,
        grace: Duration,
        stage_of: impl Fn(&str, Stage) -> Stage,
    ) -> Vec<(String, ExitStatus)> {
        let mut running: Vec<(Stage, String, Child)> = self
            .processes
            .iter_mut()
            .filter_map(|process| {
                process.restart_at = None;
                let child = process.child.take()?;
                Some((
                    stage_of(&process.name, process.stage),
                    process.name.clone(),
                    child,
                ))
            })
            .collect();
        running.sort_by_key(|(stage, _, _)| *stage);
        let mut ended = Vec::new();
        while let Some((stage, _, _)) = running.first() {
            let stage = *stage;
            let count = running.iter().take_while(|(s, _, _)| *s == stage).count();
            let mut group: Vec<(Stage, String, Child)> = running.drain(..count).collect();
            for (_, _, child) in &group {
                umbra::network::terminate(child);
            }
            let deadline = Instant::now() + grace;
            for (_, name, child) in &mut group {
                ended.push((name.clone(), wait_or_kill(child, deadline)));
            }
            if stage == Stage::Daemons {
                std::thread::sleep(SETTLE);
            }
        }
        ended
    }
}

impl Supervised {
    fn exited(&mut self, now: Instant, status: String) -> Event {
        match self.restarts.exited(now) {
            Verdict::RestartIn(wait) => {
                self.restart_at = Some(now + wait);
                Event::Exited {
                    name: self.name.clone(),
                    status,
                    log: self.log.clone(),
                    restart_in: wait,
                }
            }
            Verdict::GiveUp(times) => Event::GaveUp {
                name: self.name.clone(),
                status,
                times,
                log: self.log.clone(),
            },
        }
    }
}

impl Drop for Supervisor {
    /// Whatever still runs is killed: no process outlives the network.
    fn drop(&mut self) {
        for process in &mut self.processes {
            if let Some(child) = process.child.as_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn spawn(name: &str, launch: &Launch) -> anyhow::Result<Child> {
    let mut command = launch()?;
    // its own process group: a Ctrl-C in the terminal reaches `umbra localnet` alone, which
    // stops the processes in order
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    command
        .spawn()
        .map_err(|error| anyhow::anyhow!("cannot start {name}: {error}"))
}

/// Waits until `deadline` for the process to end, then kills it.
pub(crate) fn wait_or_kill(child: &mut Child, deadline: Instant) -> ExitStatus {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => {
                let _ = child.kill();
                if let Ok(status) = child.wait() {
                    return status;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_restarted_with_backoff_and_given_up_on_after_5_exits_in_a_minute() {
        let start = Instant::now();
        let at = |seconds: f64| start + Duration::from_secs_f64(seconds);
        let mut restarts = Restarts::default();
        let ms = Duration::from_millis;
        assert_eq!(restarts.exited(at(0.0)), Verdict::RestartIn(ms(250)));
        assert_eq!(restarts.exited(at(1.0)), Verdict::RestartIn(ms(500)));
        assert_eq!(restarts.exited(at(2.0)), Verdict::RestartIn(ms(1000)));
        assert_eq!(restarts.exited(at(4.0)), Verdict::RestartIn(ms(2000)));
        assert_eq!(restarts.exited(at(8.0)), Verdict::GiveUp(5));

        // exits spread over more than a minute never give up, and the backoff stays short
        let mut restarts = Restarts::default();
        for n in 0..20 {
            let verdict = restarts.exited(at(f64::from(n) * 20.0));
            assert!(
                matches!(verdict, Verdict::RestartIn(wait) if wait <= ms(2000)),
                "exit {n}: {verdict:?}"
            );
        }
    }
}
