//! Visibility into other load on the (shared) machine: load average, I/O pressure, CPU busy.
//! Linux-only (reads /proc); on other systems the notes are empty and waiting is skipped.

use std::time::{Duration, Instant};

/// "loadavg 1m 5m 15m, io-pressure some avg10=..".
pub fn load_note() -> String {
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let io = std::fs::read_to_string("/proc/pressure/io")
        .ok()
        .and_then(|s| s.lines().next().and_then(|l| l.split_whitespace().nth(1)).map(str::to_string))
        .unwrap_or_default();
    format!("loadavg {load}; io pressure {io}")
}

/// (busy, total) jiffies over all CPUs.
fn cpu_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> =
        stat.lines().next()?.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4)?; // idle + iowait
    Some((total - idle, total))
}

/// Fraction of all CPUs busy over `window`.
fn cpu_busy(window: Duration) -> Option<f64> {
    let (b0, t0) = cpu_jiffies()?;
    std::thread::sleep(window);
    let (b1, t1) = cpu_jiffies()?;
    Some((b1 - b0) as f64 / (t1 - t0).max(1) as f64)
}

/// Wait until the CPUs are less than 25 % busy over 3 s, at most `limit`.
pub fn wait_until_idle(limit: Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        match cpu_busy(Duration::from_secs(3)) {
            Some(b) if b >= 0.25 => continue,
            _ => break,
        }
    }
    if start.elapsed() > Duration::from_secs(5) {
        println!("\n_waited {:.0} s for the machine to be idle_", start.elapsed().as_secs_f64());
    }
}
