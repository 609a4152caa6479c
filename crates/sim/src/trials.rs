//! The flow-correlation attack against the real cores: many runs of a network in which the
//! exit (client 0) relays a download to one client drawn from the seed, and the attack of
//! [`crate::attack`] ranking the other clients from what a global observer sees.
//!
//! What the adversary is given: every client's access link (both directions, time and size of
//! each frame), and the exit's connection to the server the download comes from — the times
//! the exit's application received each message of it. The exit's own mixnet link is covered
//! like any client's, so the server side is where the flow shows.

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::attack::{self, Accuracy, AttackConfig, DelayModel, LinkRecorder, TrialOutcome};
use crate::config::SimConfig;
use crate::engine::Sim;
use crate::err::SimError;
use crate::par;
use crate::trace::Place;

/// Stands for the exit's server-side connection in the adversary's records.
const SERVER_SIDE: u32 = u32::MAX;

/// The adversary's settings for a network run with `config`: its delay model (the links, the
/// wait for a slot of the client's stream, three exponential hops of the configured mean) and
/// bins of one mean hop delay.
pub fn attack_config(config: &SimConfig) -> AttackConfig {
    let traffic = config.client_config().traffic;
    let hop = if traffic.insecure_zero_delays {
        0.0
    } else {
        traffic.mean_hop_delay.as_secs_f64()
    };
    let fixed = 5.0 * config.link_latency.as_secs_f64() + traffic.mean_send_interval.as_secs_f64();
    AttackConfig {
        delay: DelayModel::three_hops(hop.max(1e-4), fixed),
        bin_width: (hop * 2.0).clamp(0.005, 0.1),
    }
}

/// One run of `config` (which must have a download) and the attack on it.
pub fn trial(config: &SimConfig) -> Result<TrialOutcome, SimError> {
    let mut sim = Sim::new(config.clone())?;
    let target = sim.download_target().ok_or(SimError::Config {
        field: "download",
        why: "the attack needs a download; add a [download] section".into(),
    })?;
    let mut recorder = LinkRecorder::new(SERVER_SIDE, 1..config.clients);
    let end = (config.warmup + config.duration + config.cooldown).as_secs_f64();
    sim.run_until(end, &mut recorder, &mut |_| {});
    for &at in sim.download_sends() {
        recorder.record(
            at,
            at,
            Place::Client(SERVER_SIDE),
            Place::Gateway(0),
            config.message_size as u32,
        );
    }
    let mut rng = ChaCha20Rng::seed_from_u64(config.seed ^ 0x5eed);
    let ranking = attack::rank(&recorder, &attack_config(config), &mut rng)
        .map_err(|error| SimError::Setup(format!("the attack: {error}")))?;
    ranking
        .outcome(target)
        .ok_or_else(|| SimError::Setup("the target was not among the candidates".into()))
}

/// `trials` runs of `config` with seeds `seed`, `seed + 1`, …, the attack on each (on every
/// core: the runs are independent), and its top-1 accuracy with a 95 % interval; `progress`
/// gets the share done.
pub fn trials(
    config: &SimConfig,
    trials: u32,
    progress: &mut dyn FnMut(f64),
) -> Result<Accuracy, SimError> {
    let configs: Vec<SimConfig> = (0..trials)
        .map(|i| SimConfig {
            seed: config.seed.wrapping_add(u64::from(i)),
            ..config.clone()
        })
        .collect();
    let mut finished = 0u32;
    let outcomes = par::map(&configs, par::default_threads(), trial, &mut |_| {
        finished += 1;
        progress(f64::from(finished) / f64::from(trials.max(1)));
    });
    let outcomes = outcomes.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok(attack::aggregate(&outcomes, 0.95))
}
