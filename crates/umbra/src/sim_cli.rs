//! `umbra sim --config FILE`: a simulated network and its anonymity (docs/anonymity.md).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use umbra_sim::config::SimConfig;

#[derive(Args)]
pub(crate) struct SimArgs {
    /// The simulation's settings (TOML; see crates/sim/sim.example.toml, every field
    /// commented). Without it, the defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Run a sweep instead (see docs/anonymity/sweep.toml): one setting varied at a time for
    /// each preset; writes results.md, sweep.json and the plots.
    #[arg(long, conflicts_with = "config")]
    sweep: Option<PathBuf>,
    /// Write a sweep's tables and plots again from the sweep.json it wrote, without running
    /// it (e.g. after changing how they are drawn).
    #[arg(long, conflicts_with_all = ["config", "sweep"])]
    replot: Option<PathBuf>,
    /// Where to write results.json and the plots (created if missing).
    #[arg(long, default_value = "sim-results")]
    out: PathBuf,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

pub(crate) fn sim(args: SimArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.replot {
        let json = std::fs::read_to_string(path)
            .with_context(|| format!("reading the sweep's results {}", path.display()))?;
        let results = umbra_sim::sweep::read(&json).with_context(|| {
            format!(
                "{} is not a sweep.json written by `umbra sim --sweep`",
                path.display()
            )
        })?;
        std::fs::create_dir_all(&args.out)
            .with_context(|| format!("creating {}", args.out.display()))?;
        for path in umbra_sim::sweep::write(&results, &args.out)
            .with_context(|| format!("writing results into {}", args.out.display()))?
        {
            println!("wrote {}", path.display());
        }
        return Ok(());
    }
    if let Some(path) = &args.sweep {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the sweep {}", path.display()))?;
        let sweep: umbra_sim::sweep::SweepConfig = toml::from_str(&text).with_context(|| {
            format!(
                "{} is not a valid sweep (see docs/anonymity/sweep.toml)",
                path.display()
            )
        })?;
        std::fs::create_dir_all(&args.out)
            .with_context(|| format!("creating {}", args.out.display()))?;
        let started = std::time::Instant::now();
        let quiet = args.quiet;
        let results = umbra_sim::sweep::run(&sweep, &mut |line| {
            if !quiet {
                eprintln!("[{:6.0} s] {line}", started.elapsed().as_secs_f64());
            }
        })?;
        for path in umbra_sim::sweep::write(&results, &args.out)
            .with_context(|| format!("writing results into {}", args.out.display()))?
        {
            println!("wrote {}", path.display());
        }
        return Ok(());
    }
    let config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the simulation's settings {}", path.display()))?;
            toml::from_str::<SimConfig>(&text).with_context(|| {
                format!(
                    "{} is not a valid simulation config (see crates/sim/sim.example.toml)",
                    path.display()
                )
            })?
        }
        None => SimConfig::default(),
    };
    config.validate()?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let quiet = args.quiet;
    let started = std::time::Instant::now();
    let mut progress = |done: f64| {
        if quiet {
            return;
        }
        let width = 40;
        let filled = ((done.clamp(0.0, 1.0)) * width as f64) as usize;
        eprint!(
            "\r[{}{}] {:5.1}%  {:.0} s",
            "#".repeat(filled),
            " ".repeat(width - filled),
            done * 100.0,
            started.elapsed().as_secs_f64()
        );
        let _ = std::io::stderr().flush();
    };
    let (results, latencies) = umbra_sim::report::simulate(&config, &mut progress)?;
    if !quiet {
        eprintln!();
    }
    let written = umbra_sim::report::write(&results, &latencies, &args.out)
        .with_context(|| format!("writing results into {}", args.out.display()))?;
    println!("{}", umbra_sim::report::headline(&results));
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(())
}
