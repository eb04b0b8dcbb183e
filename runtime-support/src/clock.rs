//! The one clock a runtime reads: a monotonic [`Instant`] turned into engine [`Time`], and the
//! wall clock read once at start-up to anchor timestamps. The engine never reads a clock.

use livebridge_core::Time;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Engine [`Time`] from [`std::time::Instant`]: microseconds since the instant the clock was
/// started, plus the wall-clock reading at that instant for [`livebridge_core::Engine::new`].
///
/// ```
/// use livebridge_core::{Config, Engine};
/// use livebridge_runtime_support::{MonotonicClock, OsRandomIds};
///
/// let clock = MonotonicClock::start();
/// let (now, unix_millis) = clock.anchor();
/// let mut engine = Engine::new(Config::default(), OsRandomIds, now, unix_millis);
/// engine.handle_timeout(clock.now());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct MonotonicClock {
    start: Instant,
    start_unix_millis: u64,
}

impl MonotonicClock {
    /// A clock whose engine time starts now; reads the wall clock once, here, so timestamps
    /// never go backwards if the system clock is set back later.
    pub fn start() -> Self {
        let start_unix_millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        MonotonicClock::starting_at(Instant::now(), start_unix_millis)
    }

    /// A clock whose engine time zero is `start`, when the wall clock read `start_unix_millis`.
    pub fn starting_at(start: Instant, start_unix_millis: u64) -> Self {
        MonotonicClock {
            start,
            start_unix_millis,
        }
    }

    /// Engine time now.
    pub fn now(&self) -> Time {
        self.time_at(Instant::now())
    }

    /// The engine time of `instant`; instants before the start are [`Time::ZERO`].
    pub fn time_at(&self, instant: Instant) -> Time {
        let elapsed = instant.saturating_duration_since(self.start);
        Time::from_micros(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX))
    }

    /// The instant an engine time stands for: where to arm a timer for
    /// [`livebridge_core::Engine::poll_timeout`].
    pub fn instant(&self, time: Time) -> Instant {
        self.start + Duration::from_micros(time.as_micros())
    }

    /// The `(now, unix_millis)` pair [`livebridge_core::Engine::new`] takes: engine time zero and the
    /// wall clock then.
    pub fn anchor(&self) -> (Time, u64) {
        (Time::ZERO, self.start_unix_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_and_engine_time_convert_both_ways() {
        let start = Instant::now();
        let clock = MonotonicClock::starting_at(start, 1_000);
        let later = start + Duration::from_millis(1500);
        assert_eq!(clock.time_at(later), Time::from_millis(1500));
        assert_eq!(clock.instant(Time::from_millis(1500)), later);
        assert_eq!(clock.time_at(start), Time::ZERO);
        assert_eq!(clock.anchor(), (Time::ZERO, 1_000));
        assert!(clock.now() >= Time::ZERO);
    }
}
