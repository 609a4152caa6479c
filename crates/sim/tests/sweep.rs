//! Sweeps: the file behind docs/anonymity.md loads, and a small sweep writes its tables and
//! plots, with the attack and the receiving side.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use umbra_sim::sweep::{self, Parameter, SweepConfig};

#[test]
fn the_published_sweep_loads() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/anonymity/sweep.toml"
    ))
    .unwrap();
    let config: SweepConfig = toml::from_str(&text).unwrap();
    config.base.validate().unwrap();
    assert_eq!(config.presets.len(), 3);
    let parameters: Vec<Parameter> = config.sweeps.iter().map(|s| s.parameter).collect();
    for wanted in [
        Parameter::SendInterval,
        Parameter::HopDelay,
        Parameter::Clients,
        Parameter::LayerWidth,
        Parameter::CorruptFraction,
    ] {
        assert!(parameters.contains(&wanted), "{wanted:?} is not swept");
    }
    assert!(config.attack_trials > 0 && !config.receiving.is_empty() && config.headline.is_some());
}

#[test]
fn a_small_sweep_writes_its_results() {
    let config: SweepConfig = toml::from_str(
        r#"
presets = ["nym"]
attack_trials = 2
receiving = [0.0]
repeats = 3

[base]
clients = 8
gateways = 2
layer_width = 2
warmup = "1s"
duration = "3s"
cooldown = "1s"

[base.download]
start = "1s"
messages = 20
rate = 40.0
burst = 10

[[sweeps]]
parameter = "hop-delay"
values = [5, 15]
"#,
    )
    .unwrap();
    let mut lines = Vec::new();
    let results = sweep::run(&config, &mut |line| lines.push(line.to_owned())).unwrap();
    assert_eq!(results.sweeps.len(), 1);
    assert_eq!(results.sweeps[0].1.len(), 2);
    assert_eq!(results.attack.len(), 1);
    assert_eq!(results.receiving.len(), 1);
    // the longer delay holds packets longer
    let latency = |i: usize| {
        results.sweeps[0].1[i]
            .results
            .performance
            .latency
            .as_ref()
            .unwrap()
            .median
    };
    assert!(latency(1) > latency(0));
    // each point ran with seeds 1, 2 and 3: the page shows their mean and its interval
    let point = &results.sweeps[0].1[0];
    assert_eq!(point.other_seeds.len(), 2);
    let medians: Vec<f64> = point
        .runs()
        .map(|r| r.performance.latency.as_ref().unwrap().median)
        .collect();
    assert!(
        medians[0] != medians[1] || medians[1] != medians[2],
        "three seeds, one result: {medians:?}"
    );
    let estimate = point
        .estimate(|r| Some(r.performance.latency.as_ref()?.median))
        .unwrap();
    let mean = medians.iter().sum::<f64>() / 3.0;
    let sd = (medians.iter().map(|m| (m - mean).powi(2)).sum::<f64>() / 2.0).sqrt();
    assert!((estimate.mean - mean).abs() < 1e-12);
    // Student's t with 2 degrees of freedom: 4.303
    let half = estimate.half_width.unwrap();
    assert!((half - 4.303 * sd / 3f64.sqrt()).abs() < 1e-12, "{half}");
    let dir = std::env::temp_dir().join(format!("umbra-sweep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let written = sweep::write(&results, &dir).unwrap();
    assert!(written.len() >= 7, "{written:?}");
    let md = std::fs::read_to_string(dir.join("results.md")).unwrap();
    assert!(md.contains("3 runs with seeds 1–3"), "{md}");
    assert!(md.contains(" ± "), "no intervals in\n{md}");
    for section in [
        "Varying the mean delay per mix node",
        "The flow-correlation attack",
        "The receiving side",
    ] {
        assert!(md.contains(section), "no {section} in\n{md}");
    }
    assert!(
        std::fs::read_to_string(dir.join("hop-delay-epsilon.svg"))
            .unwrap()
            .contains("<svg")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_published_results_are_what_their_sweep_json_says() {
    // docs/anonymity/results.md is written from sweep.json: reading it back and writing again
    // gives the same tables (so the page shows what was measured)
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/anonymity");
    let json = std::fs::read_to_string(format!("{dir}/sweep.json")).unwrap();
    let results = sweep::read(&json).unwrap();
    let out = std::env::temp_dir().join(format!("umbra-replot-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    sweep::write(&results, &out).unwrap();
    let published = std::fs::read_to_string(format!("{dir}/results.md")).unwrap();
    let again = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert_eq!(published, again);
    let _ = std::fs::remove_dir_all(&out);
}
