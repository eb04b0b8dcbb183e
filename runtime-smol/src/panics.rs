//! Panics are bugs, but one connection's bug must not take down the hub or fill its disk:
//! connection tasks run under [`contain`], which turns a panic into an error the caller
//! handles (counts it, answers 500), and the process-wide hook of [`install_hook`] logs each
//! panic in one line — without a backtrace, whose symbolisation costs tens of megabytes and
//! whose text is kilobytes per panic — and at most [`LOGGED_PER_MINUTE`] a minute.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Panics logged per minute; the others are counted and reported with the next logged one.
pub const LOGGED_PER_MINUTE: u32 = 10;

/// Runs `future`; `Err(())` when it panicked (the panic itself went to the hook).
///
/// A plain function returning the guard, not an `async fn`: an `async fn` keeps its argument
/// beside the guard that polls it, so every connection task would hold its future twice.
pub fn contain<F: Future>(future: F) -> impl Future<Output = Result<F::Output, ()>> {
    let guarded = futures_lite::FutureExt::catch_unwind(AssertUnwindSafe(future));
    futures_util::FutureExt::map(guarded, |outcome| outcome.map_err(drop))
}

struct Budget {
    window_start: Instant,
    logged: u32,
    suppressed: u64,
}

static BUDGET: Mutex<Option<Budget>> = Mutex::new(None);

/// Replaces the default panic hook with a rate-limited one-line log through `tracing`.
pub fn install_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_string());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let mut budget = BUDGET.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let budget = budget.get_or_insert(Budget {
            window_start: now,
            logged: 0,
            suppressed: 0,
        });
        if now.duration_since(budget.window_start) >= Duration::from_secs(60) {
            budget.window_start = now;
            budget.logged = 0;
        }
        if budget.logged >= LOGGED_PER_MINUTE {
            budget.suppressed += 1;
            return;
        }
        budget.logged += 1;
        let suppressed = std::mem::take(&mut budget.suppressed);
        let thread = std::thread::current();
        tracing::error!(
            thread = thread.name().unwrap_or("unnamed"),
            %location,
            suppressed_since_last = suppressed,
            "panic (a bug; the hub keeps serving its other connections): {message}"
        );
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_future_becomes_an_error_and_others_run_to_completion() {
        let panicked = smol::block_on(contain(async {
            if std::hint::black_box(true) {
                panic!("a bug in one connection");
            }
            1
        }));
        assert!(panicked.is_err());
        assert_eq!(smol::block_on(contain(async { 2 })), Ok(2));
    }
}
