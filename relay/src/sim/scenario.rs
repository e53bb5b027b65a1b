//! Scenarios: who joins when, and how each session ends.
//!
//! - `steady`: the audience joins over the first 30 s (a third of the run at most) and
//!   stays.
//! - `flash`: the whole audience joins within 10 s (from 5 s on) and stays.
//! - `churn`: an audience of about N throughout. Session lengths are Pareto (α = 1.2,
//!   minimum 20 s: median 36 s, mean 2 min, three in four under a minute, capped at 3 h);
//!   the first N join over 20 s with the residual lifetime of an audience already in
//!   equilibrium, then newcomers arrive as a Poisson process at N / mean session. Four in
//!   five leave in order (handing their children over), one in five crashes.
//! - `mass-failure`: `steady`, then 30% of the peers crash at once at half time.
//! - `origin-children`: `steady`, then every child of the origin crashes at half time.

use std::fmt;
use std::str::FromStr;

use super::world::Rng;

/// Which scenario to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Join, then stay.
    Steady,
    /// Everybody joins within 10 s.
    Flash,
    /// Heavy-tailed sessions, constant audience size.
    Churn,
    /// 30% crash at once.
    MassFailure,
    /// The origin's children crash.
    OriginChildren,
}

impl Scenario {
    /// Every scenario, in a fixed order.
    pub const ALL: [Scenario; 5] = [
        Scenario::Steady,
        Scenario::Flash,
        Scenario::Churn,
        Scenario::MassFailure,
        Scenario::OriginChildren,
    ];

    /// Its command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Steady => "steady",
            Scenario::Flash => "flash",
            Scenario::Churn => "churn",
            Scenario::MassFailure => "mass-failure",
            Scenario::OriginChildren => "origin-children",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown scenario name.
#[derive(Debug, thiserror::Error)]
#[error("unknown scenario {0:?}: use steady, flash, churn, mass-failure or origin-children")]
pub struct UnknownScenario(pub String);

impl FromStr for Scenario {
    type Err = UnknownScenario;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scenario::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| UnknownScenario(s.to_string()))
    }
}

/// How a session ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Still there at the end.
    Stay,
    /// Leaves in order at this time (µs).
    Leave(u64),
    /// Crashes at this time (µs).
    Crash(u64),
}

/// One viewer's session.
#[derive(Clone, Copy, Debug)]
pub struct Session {
    /// Join time, µs.
    pub join: u64,
    /// How it ends.
    pub exit: Exit,
}

const S: u64 = 1_000_000;
const ALPHA: f64 = 1.2;
const XM_S: f64 = 20.0;
const CAP_S: f64 = 3.0 * 3600.0;

fn pareto(rng: &mut Rng) -> f64 {
    let u = 1.0 - rng.unit();
    (XM_S / u.powf(1.0 / ALPHA)).min(CAP_S)
}

/// Residual lifetime of a session in progress (the equilibrium distribution).
fn residual(rng: &mut Rng) -> f64 {
    let u = rng.unit();
    let knee = (ALPHA - 1.0) / ALPHA;
    let x = if u < knee {
        u * ALPHA * XM_S / (ALPHA - 1.0)
    } else {
        XM_S * (ALPHA * (1.0 - u)).max(1e-12).powf(-1.0 / (ALPHA - 1.0))
    };
    x.min(CAP_S)
}

fn uniform_joins(rng: &mut Rng, n: usize, from: u64, span: u64) -> Vec<u64> {
    let mut v: Vec<u64> = (0..n).map(|_| from + rng.below(span.max(1))).collect();
    v.sort_unstable();
    v
}

/// The sessions of `scenario` with an audience of `n` over `duration` µs, in join order,
/// and the time of the scenario's failure event, if any.
pub fn plan(
    scenario: Scenario,
    n: usize,
    duration: u64,
    rng: &mut Rng,
) -> (Vec<Session>, Option<u64>) {
    let ramp = (30 * S).min(duration / 3);
    let half = duration / 2;
    let stay = |join| Session {
        join,
        exit: Exit::Stay,
    };
    match scenario {
        Scenario::Steady => (
            uniform_joins(rng, n, S, ramp)
                .into_iter()
                .map(stay)
                .collect(),
            None,
        ),
        Scenario::Flash => (
            uniform_joins(rng, n, 5 * S, 10 * S)
                .into_iter()
                .map(stay)
                .collect(),
            None,
        ),
        Scenario::MassFailure => {
            let v = uniform_joins(rng, n, S, ramp)
                .into_iter()
                .map(|join| Session {
                    join,
                    exit: if rng.unit() < 0.3 {
                        Exit::Crash(half)
                    } else {
                        Exit::Stay
                    },
                })
                .collect();
            (v, Some(half))
        }
        Scenario::OriginChildren => (
            uniform_joins(rng, n, S, ramp)
                .into_iter()
                .map(stay)
                .collect(),
            Some(half),
        ),
        Scenario::Churn => {
            let mut v = Vec::new();
            let end = |rng: &mut Rng, join: u64, life_s: f64| {
                let at = join + (life_s * S as f64) as u64;
                if at >= duration {
                    Exit::Stay
                } else if rng.unit() < 0.8 {
                    Exit::Leave(at)
                } else {
                    Exit::Crash(at)
                }
            };
            let initial_span = (20 * S).min(duration / 3);
            for join in uniform_joins(rng, n, S, initial_span) {
                let life = residual(rng);
                let exit = end(rng, join, life);
                v.push(Session { join, exit });
            }
            let mean = ALPHA * XM_S / (ALPHA - 1.0);
            let rate = n as f64 / mean; // per second
            let mut t = (S + initial_span) as f64 / S as f64;
            loop {
                t += -(1.0 - rng.unit()).ln() / rate.max(1e-9);
                let join = (t * S as f64) as u64;
                if join >= duration {
                    break;
                }
                let life = pareto(rng);
                let exit = end(rng, join, life);
                v.push(Session { join, exit });
            }
            (v, None)
        }
    }
}
