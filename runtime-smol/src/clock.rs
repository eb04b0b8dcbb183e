//! The one place the server reads clocks: engine [`Time`] is microseconds since start-up on
//! the monotonic clock, and the wall clock is read once, at start-up, to anchor timestamps.

use livebridge_core::Time;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Converts between the monotonic clock and engine time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: Instant,
    start_unix_millis: u64,
}

impl Clock {
    /// A clock whose engine time starts now.
    pub fn start() -> Self {
        let start_unix_millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Clock {
            start: Instant::now(),
            start_unix_millis,
        }
    }

    /// Engine time now.
    pub fn now(&self) -> Time {
        Time::from_micros(u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// Engine time zero, and the wall clock then.
    pub fn anchor(&self) -> (Time, u64) {
        (Time::ZERO, self.start_unix_millis)
    }

    /// The instant an engine time stands for.
    pub fn instant(&self, time: Time) -> Instant {
        self.start + Duration::from_micros(time.as_micros())
    }
}
