//! `treecast sim`: run the overlay simulator and write its report.

use std::time::Instant;

use anyhow::{Context, Result};
use treecast_relay::sim::{self, SimConfig};

use crate::cli::SimArgs;

/// The simulator configuration for these flags.
pub fn config(a: &SimArgs) -> Result<SimConfig> {
    let cfg = SimConfig {
        seed: a.seed,
        peers: a.peers,
        scenario: a.scenario,
        duration: a.duration,
        buffer: a.buffer,
        origin_capacity: a.origin_capacity,
        ..SimConfig::default()
    };
    cfg.validate()?;
    Ok(cfg)
}

pub fn run(a: &SimArgs) -> Result<()> {
    let cfg = config(a)?;
    let started = Instant::now();
    let total = cfg.duration.as_secs_f64();
    let outcome = sim::run_with_progress(cfg, &mut |t, alive, pending| {
        eprintln!(
            "  {t:>5.0} / {total:.0} s virtual, {alive} peers, {pending} events pending, {:.0} s wall",
            started.elapsed().as_secs_f64()
        );
    });
    let wall = started.elapsed();
    sim::report::write(&outcome, &a.out)
        .with_context(|| format!("cannot write the report to {}", a.out.display()))?;
    println!(
        "{}: N = {}, median stretch {:.3}, continuity {:.5}, {} stalls ({} after a parent or grandparent crash), {} cycles, {} detached",
        a.scenario,
        a.peers,
        outcome.stretch.clone().summary().p50,
        outcome.continuity_index(),
        outcome.stalls.iter().sum::<u64>(),
        outcome.stalls_after_near_crash(),
        outcome.invariants.cycles,
        outcome.invariants.detached
    );
    // Wall time and memory vary from run to run: reported here, not in the report.
    eprintln!(
        "simulated {:.0} s in {:.1} s of wall time; report in {}",
        a.duration.as_secs_f64(),
        wall.as_secs_f64(),
        a.out.join("results.md").display()
    );
    Ok(())
}
