//! `--compare A B`: the same scenario against two server binaries, interleaved A B A B for
//! `--rounds`, a fresh server per run; per round and at the end, the ratio B/A of the figures
//! that decide a change (deliveries/s, server CPU per delivery, p50 and p99 latency).
//!
//! Output: every run's JSON on its own stdout line (with `"compare_run"` saying which binary
//! and round it was), lines for people starting with `#`, and last a JSON summary.

use serde_json::{Value, json};

/// The figures compared, as (name, JSON pointer into a run's result).
pub const FIGURES: [(&str, &str); 5] = [
    ("deliveries_per_sec", "/deliveries_per_sec"),
    ("server_cpu_ns_per_delivery", "/server_cpu_ns_per_delivery"),
    ("latency_p50_us", "/latency_us/p50"),
    ("latency_p99_us", "/latency_us/p99"),
    ("tool_cpu_ns_per_delivery", "/tool_cpu_ns_per_delivery"),
];

fn figure(run: &Value, pointer: &str) -> Option<f64> {
    run.pointer(pointer).and_then(Value::as_f64)
}

fn ratio(b: Option<f64>, a: Option<f64>) -> Option<f64> {
    match (b, a) {
        (Some(b), Some(a)) if a != 0.0 => Some(b / a),
        _ => None,
    }
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// B/A of every figure for one round (`a` and `b` are the runs' results).
pub fn round_ratios(a: &Value, b: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for (name, pointer) in FIGURES {
        out.insert(
            name.to_string(),
            json!(ratio(figure(b, pointer), figure(a, pointer))),
        );
    }
    Value::Object(out)
}

/// The summary of rounds of (A run, B run): per figure, each side's values and mean, the
/// ratio of the means (B/A), and the lowest and highest per-round ratio.
pub fn summarize(rounds: &[(Value, Value)]) -> Value {
    let mut figures = serde_json::Map::new();
    for (name, pointer) in FIGURES {
        let a: Vec<f64> = rounds
            .iter()
            .filter_map(|(a, _)| figure(a, pointer))
            .collect();
        let b: Vec<f64> = rounds
            .iter()
            .filter_map(|(_, b)| figure(b, pointer))
            .collect();
        let per_round: Vec<f64> = rounds
            .iter()
            .filter_map(|(a, b)| ratio(figure(b, pointer), figure(a, pointer)))
            .collect();
        let lowest = per_round.iter().copied().reduce(f64::min);
        let highest = per_round.iter().copied().reduce(f64::max);
        figures.insert(
            name.to_string(),
            json!({
                "a": a, "b": b, "a_mean": mean(&a), "b_mean": mean(&b),
                "ratio_b_over_a": ratio(mean(&b), mean(&a)),
                "round_ratio_min": lowest, "round_ratio_max": highest,
            }),
        );
    }
    Value::Object(figures)
}

/// One line for people: `label` and the B/A of each figure in `ratios` (from
/// [`round_ratios`], or the `ratio_b_over_a` of each figure of [`summarize`]).
pub fn describe(label: &str, ratios: &Value) -> String {
    let mut line = format!("# {label}: B/A");
    for (name, _) in FIGURES {
        let value = ratios
            .get(name)
            .and_then(|v| v.as_f64().or_else(|| v.get("ratio_b_over_a")?.as_f64()));
        match value {
            Some(v) => line.push_str(&format!("  {name} {v:.3}")),
            None => line.push_str(&format!("  {name} –")),
        }
    }
    line
}

/// A short line about one run, for people.
pub fn describe_run(label: &str, run: &Value) -> String {
    let get = |pointer| figure(run, pointer);
    format!(
        "# {label}: {:.0} deliveries/s, server {:.0} ns/delivery, tool {:.0} ns/delivery, p50 {:.0} µs, p99 {:.0} µs, lost {}, reported drops {}",
        get("/deliveries_per_sec").unwrap_or(0.0),
        get("/server_cpu_ns_per_delivery").unwrap_or(f64::NAN),
        get("/tool_cpu_ns_per_delivery").unwrap_or(f64::NAN),
        get("/latency_us/p50").unwrap_or(0.0),
        get("/latency_us/p99").unwrap_or(0.0),
        run["lost_unexplained"],
        run["reported_drops"],
    )
}

/// Runs the comparison: `measure(binary)` runs the scenario once against a fresh server
/// started from `binary` and returns its result. Prints as it goes; returns the summary.
pub fn compare(a: &str, b: &str, rounds: usize, mut measure: impl FnMut(&str) -> Value) -> Value {
    let mut pairs = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        let mut results = Vec::with_capacity(2);
        for (side, binary) in [("A", a), ("B", b)] {
            let mut run = measure(binary);
            println!("{}", describe_run(&format!("round {round} {side}"), &run));
            if let Value::Object(map) = &mut run {
                map.insert(
                    "compare_run".to_string(),
                    json!({"round": round, "side": side, "binary": binary}),
                );
            }
            println!("{run}");
            results.push(run);
        }
        let b_run = results.pop().unwrap_or_default();
        let a_run = results.pop().unwrap_or_default();
        println!(
            "{}",
            describe(&format!("round {round}"), &round_ratios(&a_run, &b_run))
        );
        pairs.push((a_run, b_run));
    }
    let figures = summarize(&pairs);
    println!(
        "{}",
        describe(&format!("all {rounds} round(s), ratio of means"), &figures)
    );
    json!({"compare": {"a": a, "b": b, "rounds": rounds, "figures": figures}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(dps: f64, cpu: f64, p50: u64, p99: u64) -> Value {
        json!({"deliveries_per_sec": dps, "server_cpu_ns_per_delivery": cpu,
               "latency_us": {"p50": p50, "p99": p99}, "tool_cpu_ns_per_delivery": null})
    }

    #[test]
    fn ratios_are_b_over_a_per_round_and_of_the_means() {
        let rounds = [
            (run(100.0, 10.0, 50, 100), run(200.0, 5.0, 25, 300)),
            (run(300.0, 10.0, 50, 100), run(300.0, 10.0, 50, 100)),
        ];
        let round = round_ratios(&rounds[0].0, &rounds[0].1);
        assert_eq!(round["deliveries_per_sec"], 2.0);
        assert_eq!(round["server_cpu_ns_per_delivery"], 0.5);
        assert_eq!(round["latency_p99_us"], 3.0);
        assert!(round["tool_cpu_ns_per_delivery"].is_null());

        let summary = summarize(&rounds);
        let dps = &summary["deliveries_per_sec"];
        assert_eq!(dps["a_mean"], 200.0);
        assert_eq!(dps["b_mean"], 250.0);
        assert_eq!(dps["ratio_b_over_a"], 1.25);
        assert_eq!(dps["round_ratio_min"], 1.0);
        assert_eq!(dps["round_ratio_max"], 2.0);
        assert_eq!(summary["latency_p50_us"]["ratio_b_over_a"], 0.75);
        assert!(summary["tool_cpu_ns_per_delivery"]["ratio_b_over_a"].is_null());
    }

    #[test]
    fn a_zero_or_missing_figure_has_no_ratio() {
        let summary = summarize(&[(run(0.0, 1.0, 1, 1), run(5.0, 1.0, 1, 1))]);
        assert!(summary["deliveries_per_sec"]["ratio_b_over_a"].is_null());
        assert!(summarize(&[])["latency_p99_us"]["ratio_b_over_a"].is_null());
    }

    #[test]
    fn compare_interleaves_a_and_b_and_labels_each_run() {
        let mut order = Vec::new();
        let summary = compare("old", "new", 2, |binary| {
            order.push(binary.to_string());
            if binary == "old" {
                run(100.0, 2.0, 10, 20)
            } else {
                run(110.0, 1.0, 10, 40)
            }
        });
        assert_eq!(order, ["old", "new", "old", "new"]);
        let figures = &summary["compare"]["figures"];
        assert!(
            (figures["deliveries_per_sec"]["ratio_b_over_a"]
                .as_f64()
                .unwrap()
                - 1.1)
                .abs()
                < 1e-9
        );
        assert_eq!(figures["server_cpu_ns_per_delivery"]["ratio_b_over_a"], 0.5);
        assert_eq!(summary["compare"]["rounds"], 2);
    }

    #[test]
    fn describe_names_every_figure() {
        let line = describe(
            "round 1",
            &round_ratios(&run(1.0, 1.0, 1, 1), &run(2.0, 1.0, 1, 1)),
        );
        assert!(line.starts_with("# round 1: B/A  deliveries_per_sec 2.000"));
        assert!(line.contains("tool_cpu_ns_per_delivery –"));
    }
}
