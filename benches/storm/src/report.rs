//! What a storm run found: machines finished and lost, and each phase's
//! p50/p99/max over the machines that got through it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::machine::{Outcome, PHASES};

/// The `q` quantile (0..=1) of sorted `xs`, nearest rank.
pub fn quantile(xs: &[Duration], q: f64) -> Duration {
    if xs.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * xs.len() as f64).ceil() as usize;
    xs[rank.clamp(1, xs.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

pub fn summarize(outcomes: &[Outcome], label: &str, offered: Duration, wall: Duration) -> Value {
    let lost: Vec<&Outcome> = outcomes.iter().filter(|o| o.failed.is_some()).collect();
    let mut phases = Vec::new();
    for (i, name) in PHASES.iter().enumerate() {
        let mut xs: Vec<Duration> = outcomes
            .iter()
            .filter_map(|o| o.took.get(i).copied())
            .collect();
        xs.sort_unstable();
        phases.push(json!({
            "phase": name,
            "machines": xs.len(),
            "p50_ms": ms(quantile(&xs, 0.5)),
            "p99_ms": ms(quantile(&xs, 0.99)),
            "max_ms": ms(xs.last().copied().unwrap_or_default()),
        }));
    }
    // Why machines were lost: by phase and the start of the reason.
    let mut why: BTreeMap<(usize, String), u64> = BTreeMap::new();
    for o in &lost {
        if let Some((phase, text)) = &o.failed {
            let short: String = text.chars().take(100).collect();
            *why.entry((*phase, short)).or_default() += 1;
        }
    }
    let mut reasons: Vec<_> = why.into_iter().collect();
    reasons.sort_by_key(|r| std::cmp::Reverse(r.1));
    json!({
        "label": label,
        "machines": outcomes.len(),
        "finished": outcomes.len() - lost.len(),
        "lost": lost.len(),
        "offered_over_s": offered.as_secs_f64(),
        "wall_s": (wall.as_secs_f64() * 100.0).round() / 100.0,
        "retransmits": outcomes.iter().map(|o| u64::from(o.retransmits)).sum::<u64>(),
        "naks": outcomes.iter().map(|o| u64::from(o.naks)).sum::<u64>(),
        "phases": phases,
        "lost_by_reason": reasons.iter().take(12).map(|((phase, text), n)| json!({
            "phase": PHASES.get(*phase).copied().unwrap_or("?"),
            "reason": text,
            "machines": n,
        })).collect::<Vec<_>>(),
    })
}

/// The summary as a table for a terminal.
pub fn print(s: &Value) {
    println!(
        "{}: {} machines over {} s: {} finished, {} lost, {} retransmits, {} NAKs, {} s wall",
        s["label"].as_str().unwrap_or(""),
        s["machines"],
        s["offered_over_s"],
        s["finished"],
        s["lost"],
        s["retransmits"],
        s["naks"],
        s["wall_s"]
    );
    println!(
        "  {:<28} {:>9} {:>10} {:>10} {:>10}",
        "phase", "machines", "p50 ms", "p99 ms", "max ms"
    );
    for p in s["phases"].as_array().into_iter().flatten() {
        let [n, p50, p99, max] =
            ["machines", "p50_ms", "p99_ms", "max_ms"].map(|k| p[k].to_string());
        println!(
            "  {:<28} {n:>9} {p50:>10} {p99:>10} {max:>10}",
            p["phase"].as_str().unwrap_or("")
        );
    }
    for r in s["lost_by_reason"].as_array().into_iter().flatten() {
        println!(
            "  lost in {}: {} x {}",
            r["phase"].as_str().unwrap_or(""),
            r["machines"],
            r["reason"].as_str().unwrap_or("")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let xs: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&xs, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&xs, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&xs, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&xs[..1], 0.99), Duration::from_millis(1));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
