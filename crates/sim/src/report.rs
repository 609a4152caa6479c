//! A simulation's results on disk: `results.json` and the plots.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::SimConfig;
use crate::err::SimError;
use crate::run::{self, Performance};

/// Everything one simulation measured.
#[derive(Clone, Debug, Serialize)]
pub struct Results {
    /// The settings it ran with.
    pub config: SimConfig,
    /// Latency, bandwidth and the engine's speed.
    pub performance: Performance,
}

/// Runs `config` with every metric, calling `progress` with the share done.
pub fn simulate(config: &SimConfig, progress: &mut dyn FnMut(f64)) -> Result<Results, SimError> {
    let (_sim, performance) = run::run(config, &mut (), progress)?;
    Ok(Results {
        config: config.clone(),
        performance,
    })
}

/// Writes `results.json` (and the plots) into `dir`; the paths written.
pub fn write(results: &Results, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let json = serde_json::to_string_pretty(results).map_err(std::io::Error::other)?;
    let path = dir.join("results.json");
    std::fs::write(&path, json)?;
    Ok(vec![path])
}

/// One line for a person: what the run measured.
pub fn headline(results: &Results) -> String {
    let p = &results.performance;
    format!(
        "{} clients, {:.0} s simulated: latency median {:.0} ms (p99 {:.0} ms), {:.1} KB/s per client link, {:.2} M events/s",
        results.config.clients,
        results.config.duration.as_secs_f64(),
        p.latency.p50 * 1e3,
        p.latency.p99 * 1e3,
        p.client_link_bytes_per_second / 1e3,
        p.events_per_second / 1e6
    )
}
