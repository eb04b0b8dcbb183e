//! Latency percentiles and "best / median of N runs" summaries.

use std::time::Duration;

/// Latency samples of one run.
#[derive(Default, Clone)]
pub struct Samples(Vec<Duration>);

impl Samples {
    pub fn with_capacity(n: usize) -> Self {
        Samples(Vec::with_capacity(n))
    }
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }
    pub fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Percentile `p` in 0..=100 (nearest rank), in milliseconds.
    pub fn pct_ms(&mut self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        self.0.sort_unstable();
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        ms(self.0[rank.clamp(1, self.0.len()) - 1])
    }
    pub fn max_ms(&self) -> f64 {
        self.0.iter().max().map(|d| ms(*d)).unwrap_or(f64::NAN)
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One metric measured over several runs. `higher_is_better` decides what "best" means.
pub struct Metric {
    values: Vec<f64>,
    higher_is_better: bool,
}

impl Metric {
    pub fn lower() -> Self {
        Metric { values: Vec::new(), higher_is_better: false }
    }
    pub fn higher() -> Self {
        Metric { values: Vec::new(), higher_is_better: true }
    }
    pub fn add(&mut self, v: f64) {
        self.values.push(v);
    }
    pub fn best(&self) -> f64 {
        let it = self.values.iter().copied();
        if self.higher_is_better { it.fold(f64::MIN, f64::max) } else { it.fold(f64::MAX, f64::min) }
    }
    pub fn median(&self) -> f64 {
        let mut v = self.values.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
    }
    /// "best / median", formatted with `prec` decimals.
    pub fn show(&self, prec: usize) -> String {
        format!("{:.prec$} / {:.prec$}", self.best(), self.median())
    }
}

/// Human-readable byte size.
pub fn bytes(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.0} KiB", n as f64 / 1024.0)
    }
}
