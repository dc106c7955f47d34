//! The Performance goals `compare` checks: each ratio's name, its bound, and the
//! summary table of goal, measured and met.
//!
//! ```
//! use zt_benches::goals::{GOALS, met};
//!
//! let handshake = GOALS.iter().find(|g| g.name == "handshake_zt_vs_rustls").unwrap();
//! assert_eq!(met(handshake, 0.98), Some(true));
//! assert_eq!(met(handshake, f64::NAN), None);
//! ```

/// Which side of its bound a ratio must stay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bound {
    /// The ratio must be at least this.
    AtLeast(f64),
    /// The ratio must be at most this.
    AtMost(f64),
}

/// A named ratio and its goal.
#[derive(Clone, Copy, Debug)]
pub struct Goal {
    /// The name printed as `ratio NAME VALUE`.
    pub name: &'static str,
    /// The goal.
    pub bound: Bound,
}

const fn at_most(name: &'static str, bound: f64) -> Goal {
    Goal {
        name,
        bound: Bound::AtMost(bound),
    }
}

/// Every ratio of the Performance goals, in the order printed.
pub const GOALS: [Goal; 10] = [
    Goal {
        name: "handshake_zt_vs_rustls",
        bound: Bound::AtLeast(0.97),
    },
    at_most("cpu_per_req_zt_vs_plain_h1", 1.03),
    at_most("cpu_per_req_zt_vs_plain_h2", 1.03),
    at_most("cpu_per_req_zt_vs_plain", 1.03),
    at_most("cpu_per_req_zt_vs_sidecar", 0.25),
    at_most("p99_zt_vs_plain", 1.10),
    at_most("mem_per_conn_zt_vs_plain", 1.10),
    at_most("client_cpu_per_req_zt_vs_plain", 1.05),
    at_most("decision_10k_vs_10", 1.5),
    at_most("reverify_burst_10k_vs_100_conns", 2.0),
];

/// Whether `value` meets `goal`; `None` when it is not a number.
pub fn met(goal: &Goal, value: f64) -> Option<bool> {
    if !value.is_finite() {
        return None;
    }
    Some(match goal.bound {
        Bound::AtLeast(bound) => value >= bound,
        Bound::AtMost(bound) => value <= bound,
    })
}

/// Prints `ratio NAME VALUE` for every measured ratio, then the table of goal,
/// measured and met for all of them (`measured` by name; a goal without a value
/// is shown as not measured).
pub fn report(measured: &[(&str, f64)]) {
    let value = |name: &str| {
        measured
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, v)| v)
            .filter(|v| v.is_finite())
    };
    for goal in &GOALS {
        if let Some(v) = value(goal.name) {
            println!("ratio {} {v:.3}", goal.name);
        }
    }
    println!();
    println!("| ratio | goal | measured | met |");
    println!("|---|---|---:|---|");
    for goal in &GOALS {
        let bound = match goal.bound {
            Bound::AtLeast(b) => format!("≥ {b:.2}"),
            Bound::AtMost(b) => format!("≤ {b:.2}"),
        };
        match value(goal.name) {
            Some(v) => {
                let ok = if met(goal, v) == Some(true) {
                    "yes"
                } else {
                    "**no**"
                };
                println!("| `{}` | {bound} | {v:.3} | {ok} |", goal.name);
            }
            None => println!("| `{}` | {bound} | not measured | |", goal.name),
        }
    }
}
