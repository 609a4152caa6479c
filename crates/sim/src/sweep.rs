//! Sweeps: the same network with one setting varied, for each traffic preset, and what each
//! value buys and costs — the anonymity–latency–bandwidth trade-off as tables and plots.
//!
//! `umbra sim --sweep docs/anonymity/sweep.toml --out docs/anonymity` regenerates the results
//! section of docs/anonymity.md (`results.md`, the plots, `sweep.json`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use umbra_client::TrafficPreset;

use crate::attack::Accuracy;
use crate::config::{MetricSettings, SimConfig};
use crate::err::SimError;
use crate::par;
use crate::plot::{LinePlot, Series};
use crate::report::{self, Results};
use crate::trials;

/// A sweep file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepConfig {
    /// The network every point starts from (its preset is replaced by each preset's).
    pub base: SimConfig,
    /// The presets compared.
    pub presets: Vec<TrafficPreset>,
    /// The settings varied, one at a time.
    pub sweeps: Vec<Sweep>,
    /// The flow-correlation attack, with cover and without, for each preset: runs per case.
    pub attack_trials: u32,
    /// The receiving side: each preset with the gateway's shaped downlink and with Nym's
    /// push, with the adversary holding each of these shares of the mix nodes (none: skip).
    pub receiving: Vec<f64>,
    /// The defaults, stated for users: one large run at the first preset.
    pub headline: Option<Headline>,
    /// Runs of every point of the sweeps, with seeds `base.seed`, `base.seed + 1`, …: the
    /// tables and plots show their mean and its 95 % confidence interval.
    #[serde(default = "one_run")]
    pub repeats: u32,
}

fn one_run() -> u32 {
    1
}

/// One setting varied.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sweep {
    /// What is varied.
    pub parameter: Parameter,
    /// Its values (milliseconds for times, a share for `corrupt-fraction`, counts otherwise).
    pub values: Vec<f64>,
}

/// A setting a sweep varies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Parameter {
    /// The mean time between a client's packets, ms (λ = 1/it); the gateway's frames follow.
    SendInterval,
    /// The mean delay at each mix node, ms (1/µ).
    HopDelay,
    /// The number of clients.
    Clients,
    /// Mix nodes per layer.
    LayerWidth,
    /// The share of mix nodes the adversary controls.
    CorruptFraction,
}

impl Parameter {
    fn label(self) -> &'static str {
        match self {
            Parameter::SendInterval => "mean time between a client's packets, 1/λ (ms)",
            Parameter::HopDelay => "mean delay per mix node, 1/µ (ms)",
            Parameter::Clients => "clients",
            Parameter::LayerWidth => "mix nodes per layer",
            Parameter::CorruptFraction => "share of mix nodes the adversary controls",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Parameter::SendInterval => "send-interval",
            Parameter::HopDelay => "hop-delay",
            Parameter::Clients => "clients",
            Parameter::LayerWidth => "layer-width",
            Parameter::CorruptFraction => "corrupt-fraction",
        }
    }

    /// `base` at `preset` with this parameter set to `value`.
    fn apply(self, base: &SimConfig, preset: TrafficPreset, value: f64) -> SimConfig {
        let mut config = at_preset(base, preset);
        let ms = Duration::from_secs_f64(value.max(0.0) / 1e3);
        match self {
            Parameter::SendInterval => {
                config.client.traffic.mean_send_interval = ms;
                config.client.traffic.receive_interval = ms;
            }
            Parameter::HopDelay => {
                config.client.traffic.mean_hop_delay = ms;
                config.client.traffic.mean_ack_delay = ms;
            }
            Parameter::Clients => config.clients = value as u32,
            Parameter::LayerWidth => config.layer_width = value as u32,
            Parameter::CorruptFraction => config.corrupt_fraction = value,
        }
        config
    }
}

/// A large run stated plainly for users.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Headline {
    /// Clients.
    pub clients: u32,
    /// Gateways.
    pub gateways: u32,
    /// Mix nodes per layer.
    pub layer_width: u32,
    /// Simulated time measured.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}

/// `base` with `preset`'s traffic written out (so a sweep can change one of its settings),
/// keeping the `insecure_*` switches.
fn at_preset(base: &SimConfig, preset: TrafficPreset) -> SimConfig {
    let mut config = SimConfig {
        preset: Some(preset),
        ..base.clone()
    };
    config.client = config.client_config();
    config.preset = None;
    config
}

/// One point of a sweep.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Point {
    /// The preset.
    pub preset: TrafficPreset,
    /// The value of the parameter.
    pub value: f64,
    /// What the run with the base seed measured.
    pub results: Results,
    /// What the runs with the following seeds measured (`repeats − 1` of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_seeds: Vec<Results>,
}

impl Point {
    /// Every run of this point.
    pub fn runs(&self) -> impl Iterator<Item = &Results> {
        std::iter::once(&self.results).chain(&self.other_seeds)
    }

    /// `metric` over the runs: its mean, and the half-width of its 95 % confidence interval
    /// (Student's t over the runs; none from a single run).
    pub fn estimate(&self, metric: fn(&Results) -> Option<f64>) -> Option<Estimate> {
        Estimate::of(&self.runs().filter_map(metric).collect::<Vec<f64>>())
    }
}

/// A figure over runs with different seeds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// The mean over the runs.
    pub mean: f64,
    /// The half-width of the mean's 95 % confidence interval; `None` from one run.
    pub half_width: Option<f64>,
}

impl Estimate {
    /// The estimate from `values` (none from no values).
    pub fn of(values: &[f64]) -> Option<Estimate> {
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let half_width = (values.len() > 1).then(|| {
            let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
            t_975(values.len() - 1) * (variance / n).sqrt()
        });
        Some(Estimate { mean, half_width })
    }
}

/// Student's t distribution's 97.5th percentile with `df` degrees of freedom (so that mean
/// ± t·s/√n is a two-sided 95 % interval); above 30, the value at 30, which overstates the
/// interval by under 5 %.
pub fn t_975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    T[df.clamp(1, 30) - 1]
}

/// Everything a sweep measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SweepResults {
    /// The sweep file.
    pub config: SweepConfig,
    /// Each sweep's points, in the order of the file.
    pub sweeps: Vec<(Parameter, Vec<Point>)>,
    /// The attack per preset: with cover and shaped downlinks; with cover and deliveries
    /// pushed (Nym's way); without cover, pushed.
    pub attack: Vec<(TrafficPreset, Accuracy, Accuracy, Accuracy)>,
    /// The receiving side: per preset and share of corrupt mix nodes, shaped and pushed.
    pub receiving: Vec<(TrafficPreset, f64, Results, Results)>,
    /// The large run, if asked for.
    pub headline: Option<Results>,
}

/// Runs every point of `config`, calling `progress` with a line per point.
pub fn run(config: &SweepConfig, progress: &mut dyn FnMut(&str)) -> Result<SweepResults, SimError> {
    config.base.validate()?;
    let mut results = SweepResults {
        config: config.clone(),
        sweeps: Vec::new(),
        attack: Vec::new(),
        receiving: Vec::new(),
        headline: None,
    };
    let repeats = config.repeats.max(1) as usize;
    // every run of every sweep, on every core: (sweep, preset, value, config), the seeds of a
    // point one after another
    let mut jobs = Vec::new();
    for (s, sweep) in config.sweeps.iter().enumerate() {
        for &preset in &config.presets {
            for &value in &sweep.values {
                for r in 0..repeats {
                    let mut point = sweep.parameter.apply(&config.base, preset, value);
                    point.seed = point.seed.wrapping_add(r as u64);
                    jobs.push((s, preset, value, point));
                }
            }
        }
    }
    let mut finished = 0;
    let runs = par::map(
        &jobs,
        par::default_threads(),
        |(_, _, _, point)| report::simulate(point, &mut |_| {}).map(|(run, _)| run),
        &mut |index| {
            finished += 1;
            let (s, preset, value, point) = &jobs[index];
            progress(&format!(
                "{} = {value} at {preset:?}, seed {} ({finished}/{})",
                config.sweeps[*s].parameter.slug(),
                point.seed,
                jobs.len()
            ));
        },
    );
    let mut runs = runs
        .into_iter()
        .collect::<Result<Vec<Results>, _>>()?
        .into_iter();
    results.sweeps = config
        .sweeps
        .iter()
        .map(|sweep| (sweep.parameter, Vec::new()))
        .collect();
    for (s, preset, value, _) in jobs.iter().step_by(repeats) {
        let Some(first) = runs.next() else {
            break;
        };
        results.sweeps[*s].1.push(Point {
            preset: *preset,
            value: *value,
            results: first,
            other_seeds: runs.by_ref().take(repeats - 1).collect(),
        });
    }
    if config.attack_trials > 0 {
        for &preset in &config.presets {
            progress(&format!("attack at {preset:?}"));
            // a small network, so that many runs fit: 10 clients, the download and a little
            // after it
            let mut base = at_preset(&config.base, preset);
            let download = base.download.clone().unwrap_or_default();
            let lasts = f64::from(download.messages) / download.rate * 2.0;
            base.clients = 10;
            base.gateways = 2;
            base.layer_width = 2;
            base.warmup = Duration::from_secs(1);
            base.duration = download.start + Duration::from_secs_f64(lasts + 1.0);
            base.cooldown = Duration::from_secs(1);
            base.download = Some(download);
            base.metrics = MetricSettings::none();
            let covered = trials::trials(&base, config.attack_trials, &mut |_| {})?;
            base.client.traffic.insecure_push_deliveries = true;
            let pushed = trials::trials(&base, config.attack_trials, &mut |_| {})?;
            base.client.traffic.insecure_no_cover = true;
            let bare = trials::trials(&base, config.attack_trials, &mut |_| {})?;
            results.attack.push((preset, covered, pushed, bare));
        }
    }
    let mut receiving = Vec::new();
    for &preset in &config.presets {
        for &corrupt in &config.receiving {
            let shaped = SimConfig {
                corrupt_fraction: corrupt,
                ..at_preset(&config.base, preset)
            };
            let mut pushed = shaped.clone();
            pushed.client.traffic.insecure_push_deliveries = true;
            receiving.push((preset, corrupt, shaped));
            receiving.push((preset, corrupt, pushed));
        }
    }
    let runs = par::map(
        &receiving,
        par::default_threads(),
        |(_, _, config)| report::simulate(config, &mut |_| {}).map(|(run, _)| run),
        &mut |index| {
            let (preset, corrupt, config) = &receiving[index];
            let how = if config.client.traffic.insecure_push_deliveries {
                "pushed"
            } else {
                "shaped"
            };
            progress(&format!(
                "receiving side at {preset:?}, {corrupt} corrupt, {how}"
            ));
        },
    );
    let mut runs = receiving.iter().zip(runs);
    while let (Some(((preset, corrupt, _), shaped)), Some((_, pushed))) = (runs.next(), runs.next())
    {
        results
            .receiving
            .push((*preset, *corrupt, shaped?, pushed?));
    }
    if let (Some(headline), Some(&preset)) = (&config.headline, config.presets.first()) {
        progress(&format!("{} clients at {preset:?}", headline.clients));
        let big = SimConfig {
            clients: headline.clients,
            gateways: headline.gateways,
            layer_width: headline.layer_width,
            duration: headline.duration,
            ..at_preset(&config.base, preset)
        };
        results.headline = Some(report::simulate(&big, &mut |_| {})?.0);
    }
    Ok(results)
}

/// A figure read from a run's results.
type Metric = fn(&Results) -> Option<f64>;

fn sender_entropy(results: &Results) -> Option<f64> {
    Some(
        results
            .anonymity
            .senders
            .as_ref()?
            .senders
            .as_ref()?
            .entropy
            .mean,
    )
}

fn sender_guess(results: &Results) -> Option<f64> {
    Some(
        results
            .anonymity
            .senders
            .as_ref()?
            .senders
            .as_ref()?
            .top_guess_right,
    )
}

fn target_entropy(results: &Results) -> Option<f64> {
    Some(results.anonymity.targets.as_ref()?.entropy.as_ref()?.mean)
}

fn receiver_guess(results: &Results) -> Option<f64> {
    Some(
        results
            .anonymity
            .targets
            .as_ref()?
            .recipients
            .as_ref()?
            .top_guess_right,
    )
}

fn epsilon(results: &Results) -> Option<f64> {
    results.anonymity.challenge.as_ref()?.epsilon_mean
}

fn latency_ms(results: &Results) -> Option<f64> {
    Some(results.performance.latency.as_ref()?.median * 1e3)
}

fn bandwidth_kbs(results: &Results) -> Option<f64> {
    Some(results.performance.client_link_bytes_per_second / 1e3)
}

fn cell(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "–".into(), |v| format!("{v:.digits$}"))
}

/// A point's figure: its mean over the seeds, ± its interval's half-width when there are
/// several.
fn estimate_cell(point: &Point, metric: Metric, digits: usize) -> String {
    match point.estimate(metric) {
        None => "–".into(),
        Some(Estimate {
            mean,
            half_width: None,
        }) => format!("{mean:.digits$}"),
        Some(Estimate {
            mean,
            half_width: Some(half),
        }) => format!("{mean:.digits$} ± {half:.digits$}"),
    }
}

/// How the runs of a point were seeded, for the page.
fn seeds(first: u64, repeats: u32) -> String {
    if repeats <= 1 {
        return format!("seed {first}");
    }
    format!(
        "{repeats} runs with seeds {first}–{}, each figure their mean ± the half-width of its 95 % confidence interval (Student's t over the runs; the plots' bars show the same interval)",
        first + u64::from(repeats) - 1
    )
}

/// Reads the `sweep.json` a sweep wrote, to write its tables and plots again without
/// running it ([`write`]).
pub fn read(json: &str) -> Result<SweepResults, serde_json::Error> {
    serde_json::from_str(json)
}

/// Writes `results.md`, `sweep.json` and the plots into `dir`; the paths written.
pub fn write(results: &SweepResults, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let json = serde_json::to_string_pretty(results).map_err(std::io::Error::other)?;
    let path = dir.join("sweep.json");
    std::fs::write(&path, json)?;
    written.push(path);
    let base = &results.config.base;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "<!-- generated by `umbra sim --sweep docs/anonymity/sweep.toml --out docs/anonymity`; do not edit -->\n"
    );
    let _ = writeln!(
        md,
        "Every point: {} clients over {} gateways, {} mix nodes per layer, {:.0} s measured after {:.0} s of warm-up, {} message(s) per client per second, links of {:?}; {}. A point varies one setting of this network at one preset.\n",
        base.clients,
        base.gateways,
        base.layer_width,
        base.duration.as_secs_f64(),
        base.warmup.as_secs_f64(),
        base.messages_per_second,
        base.link_latency,
        seeds(base.seed, results.config.repeats)
    );
    for (parameter, points) in &results.sweeps {
        let _ = writeln!(md, "### Varying the {}\n", parameter.label());
        if *parameter == Parameter::SendInterval {
            let _ = writeln!(
                md,
                "The bulk preset differs from nym only in its send interval: with that set here, its rows repeat nym's.\n"
            );
        }
        let _ = writeln!(
            md,
            "| preset | value | sender entropy (bits) | best guess of sender | entropy (a) (bits) | recipient guessed | ε | latency median (ms) | client link (KB/s) |\n|---|---|---|---|---|---|---|---|---|"
        );
        for point in points {
            let _ = writeln!(
                md,
                "| {:?} | {} | {} | {} | {} | {} | {} | {} | {} |",
                point.preset,
                point.value,
                estimate_cell(point, sender_entropy, 2),
                estimate_cell(point, sender_guess, 3),
                estimate_cell(point, target_entropy, 2),
                estimate_cell(point, receiver_guess, 3),
                estimate_cell(point, epsilon, 3),
                estimate_cell(point, latency_ms, 0),
                estimate_cell(point, bandwidth_kbs, 1),
            );
        }
        let plots: [(&str, &str, Metric); 5] = [
            ("sender", "entropy over senders (bits)", sender_entropy),
            (
                "entropy",
                "entropy (a) over the last layer's output (bits)",
                target_entropy,
            ),
            ("epsilon", "ε between two senders, |mean ln ratio|", epsilon),
            ("latency", "median end-to-end latency (ms)", latency_ms),
            (
                "bandwidth",
                "bytes per second on a client's link (KB/s)",
                bandwidth_kbs,
            ),
        ];
        let mut links = Vec::new();
        for (name, y_label, metric) in plots {
            let series = results
                .config
                .presets
                .iter()
                .map(|&preset| {
                    let estimates: Vec<(f64, Estimate)> = points
                        .iter()
                        .filter(|p| p.preset == preset)
                        .filter_map(|p| Some((p.value, p.estimate(metric)?)))
                        .collect();
                    let errors = estimates
                        .iter()
                        .map(|(_, e)| {
                            let half = e.half_width.unwrap_or(f64::NAN);
                            (e.mean - half, e.mean + half)
                        })
                        .collect();
                    Series {
                        name: format!("{preset:?}"),
                        points: estimates.iter().map(|(x, e)| (*x, e.mean)).collect(),
                        errors: (results.config.repeats > 1).then_some(errors),
                    }
                })
                .collect();
            let plot = LinePlot {
                title: format!("{y_label} against the {}", parameter.label()),
                x_label: parameter.label().into(),
                y_label: y_label.into(),
                log_x: false,
                series,
            };
            let file = format!("{}-{name}.svg", parameter.slug());
            let path = dir.join(&file);
            std::fs::write(&path, plot.to_svg())?;
            written.push(path);
            links.push(format!("[{name}]({file})"));
        }
        let _ = writeln!(md, "\nPlots: {}\n", links.join(", "));
    }
    if !results.attack.is_empty() {
        let _ = writeln!(
            md,
            "### The flow-correlation attack\n\nIn a network of 10 clients (2 gateways, 2 mix nodes per layer), client 0 relays a download ({} messages in bursts) to a client drawn at random; the adversary sees every client's link and the times the download reached client 0, and ranks the other 9 clients. Top-1 accuracy over the runs, with its 95 % interval, against chance. With shaped downlinks every client's downlink is the same stream of equal frames, every score ties and the guess is the tie-break's (seeded per run, so the same runs give the same guesses at every preset).\n\n| preset | cover, shaped downlinks (Umbra) | cover, deliveries pushed (Nym) | no cover, pushed | chance |\n|---|---|---|---|---|",
            base.download.clone().unwrap_or_default().messages,
        );
        let show = |a: &Accuracy| {
            format!(
                "{}/{} = {:.2} ({:.2}–{:.2})",
                a.hits, a.trials, a.accuracy, a.low, a.high
            )
        };
        for (preset, covered, pushed, bare) in &results.attack {
            let _ = writeln!(
                md,
                "| {preset:?} | {} | {} | {} | {:.3} |",
                show(covered),
                show(pushed),
                show(bare),
                covered.chance
            );
        }
        let _ = writeln!(md);
    }
    if !results.receiving.is_empty() {
        let _ = writeln!(
            md,
            "### The receiving side\n\nThe gateway's shaped downlink (a frame of one size at every tick, padded) against Nym's push (each delivery at once): how often the adversary's best guess of a message's recipient is right (chance: 1/{}), with none and with some of the mix nodes in its hands, and what each costs on the client's link.\n\n| preset | corrupt mix nodes | recipient guessed, shaped | recipient guessed, pushed | link KB/s shaped | link KB/s pushed | idle frames, shaped |\n|---|---|---|---|---|---|---|",
            base.clients
        );
        for (preset, corrupt, shaped, pushed) in &results.receiving {
            let _ = writeln!(
                md,
                "| {preset:?} | {corrupt} | {} | {} | {} | {} | {:.0} % |",
                cell(receiver_guess(shaped), 3),
                cell(receiver_guess(pushed), 3),
                cell(bandwidth_kbs(shaped), 1),
                cell(bandwidth_kbs(pushed), 1),
                shaped.performance.idle_frame_share * 100.0
            );
        }
        let _ = writeln!(md);
    }
    if let Some(headline) = &results.headline {
        let _ = writeln!(md, "### The defaults, for users\n");
        let c = &headline.config;
        let _ = writeln!(
            md,
            "{} clients, {} gateways, {} mix nodes per layer, Nym's traffic settings, {:.0} s measured:\n",
            c.clients,
            c.gateways,
            c.layer_width,
            c.duration.as_secs_f64()
        );
        if let Some(senders) = headline
            .anonymity
            .senders
            .as_ref()
            .and_then(|s| s.senders.as_ref())
        {
            let _ = writeln!(
                md,
                "- An observer of every link who controls no node gives the true sender of a message probability **{:.4}** on average (chance: {:.4}; at most {:.4} for any of {} messages); its distribution over senders has {:.2} bits of entropy (log2 of {} clients = {:.2}). Its best guess is right at most {:.4} of the time (an upper bound: {} of the clients were labelled, the rest taken as equally likely).",
                senders.truth_probability.mean,
                1.0 / f64::from(c.clients),
                senders.truth_probability.max,
                senders.truth_probability.count,
                senders.entropy.mean,
                c.clients,
                f64::from(c.clients).log2(),
                senders.top_guess_right,
                c.metrics.sampled_senders.min(c.clients)
            );
        }
        if let Some(guess) = receiver_guess(headline) {
            let _ = writeln!(
                md,
                "- It guesses the recipient of a message with probability **{guess:.4}**."
            );
        }
        if let Some(latency) = &headline.performance.latency {
            let _ = writeln!(
                md,
                "- For this, a message takes {:.0} ms (median; 99 % within {:.0} ms), and each client's link carries {:.1} KB/s whatever the client does.",
                latency.median * 1e3,
                latency.p99 * 1e3,
                headline.performance.client_link_bytes_per_second / 1e3
            );
        }
        let _ = writeln!(md);
    }
    let path = dir.join("results.md");
    std::fs::write(&path, md)?;
    written.push(path);
    Ok(written)
}
