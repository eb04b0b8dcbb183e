//! Runs every session of `conformance/sessions/` on every back end (the engine, the smol
//! server, the axum server) and prints, per session, which back end failed and the first
//! differing step.
//!
//! `CONFORMANCE_FILTER=substring` runs only the matching sessions;
//! `CONFORMANCE_BACKEND=engine|live|live-axum` only one back end; `CONFORMANCE_DIR=path` replays the
//! transcripts of another directory (e.g. freshly recorded ones).

use livebridge_conformance::{Backend, Transcript, run, session_files, sessions_dir};
use std::sync::Mutex;

#[test]
fn every_session_on_every_back_end() {
    let filter = std::env::var("CONFORMANCE_FILTER").unwrap_or_default();
    let only = std::env::var("CONFORMANCE_BACKEND").unwrap_or_default();
    let dir = std::env::var_os("CONFORMANCE_DIR").map_or_else(sessions_dir, Into::into);
    let files = session_files(&dir);
    let mut sessions = Vec::new();
    for file in files {
        let transcript = Transcript::load(&file).unwrap_or_else(|e| panic!("{e}"));
        if transcript.name.contains(&filter) {
            sessions.push(transcript);
        }
    }
    assert!(!sessions.is_empty(), "no sessions");
    let backends: Vec<Backend> = [Backend::Engine, Backend::Live, Backend::LiveAxum]
        .into_iter()
        .filter(|b| only.is_empty() || b.name() == only)
        .collect();

    // (session index, backend) -> result; live sessions run a few at a time (they sleep).
    let results = Mutex::new(Vec::new());
    let next = Mutex::new(0usize);
    let jobs: Vec<(usize, Backend)> = backends
        .iter()
        .flat_map(|b| (0..sessions.len()).map(move |i| (i, *b)))
        .collect();
    std::thread::scope(|scope| {
        for _ in 0..6 {
            scope.spawn(|| {
                loop {
                    let job = {
                        let mut n = next.lock().unwrap();
                        let job = jobs.get(*n).copied();
                        *n += 1;
                        job
                    };
                    let Some((i, backend)) = job else { return };
                    let started = std::time::Instant::now();
                    let result = run(&sessions[i], backend);
                    results
                        .lock()
                        .unwrap()
                        .push((i, backend, result, started.elapsed()));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(i, b, _, _)| (*i, b.name()));
    let mut failures = 0;
    println!();
    for (i, session) in sessions.iter().enumerate() {
        let mut line = format!("{:<44}", session.name);
        let mut details = Vec::new();
        for (_, backend, result, took) in results.iter().filter(|r| r.0 == i) {
            match result {
                Ok(()) => line.push_str(&format!(
                    " {}: ok ({:>4} ms)",
                    backend.name(),
                    took.as_millis()
                )),
                Err(failure) => {
                    failures += 1;
                    line.push_str(&format!(" {}: FAILED", backend.name()));
                    details.push(format!("    {} failed at {failure}", backend.name()));
                }
            }
        }
        println!("{line}");
        for d in details {
            println!("{d}");
        }
    }
    println!(
        "\n{} sessions, {} back-end runs, {failures} failed",
        sessions.len(),
        results.len()
    );
    assert_eq!(failures, 0, "{failures} session runs failed (see above)");
}
