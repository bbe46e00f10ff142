//! The retry storm after a 55-minute outage, at a sixteenth of the rate the defaults absorb,
//! on both sides of docs/capacity.md's formula: T ≥ R · 61 / (61 − D), sized with a margin of
//! half again.

use std::time::Duration;

use pns_cdr_dev::sim::storm::{run, Storm};

const RATE: f64 = 0.2;
const OUTAGE: u32 = 55;

/// The least throttle that clears the backlog in time, by the formula.
fn formula() -> f64 {
    RATE * 61.0 / f64::from(61 - OUTAGE)
}

fn storm(throttle_rate: f64) -> Storm {
    Storm {
        rate: RATE,
        outage_minutes: OUTAGE,
        before_minutes: 1,
        throttle_rate,
        // Two seconds of the rate, as the template's defaults.
        throttle_burst: (2.0 * throttle_rate).round(),
        minute: Duration::from_millis(500),
        seed: 7,
    }
}

#[tokio::test]
async fn the_throttle_the_formula_asks_for_loses_nothing() {
    let report = run(&storm(1.5 * formula())).await.unwrap();
    println!("{report}");
    assert!(report.backlog > 500, "the outage made a backlog: {report}");
    assert!(report.throttled > 0, "the throttle was tested: {report}");
    assert_eq!(report.lost, 0, "{report}");
}

#[tokio::test]
async fn a_throttle_below_the_formula_loses_pushes() {
    let report = run(&storm(0.6 * formula())).await.unwrap();
    println!("{report}");
    assert!(report.lost > 0, "{report}");
}
