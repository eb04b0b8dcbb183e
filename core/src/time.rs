//! Engine time: a monotonic instant supplied by the caller, and the wall clock derived from it.
//!
//! The engine never reads a clock. Every call carries a [`Time`], a count of microseconds on a
//! monotonic scale whose origin the caller picks (the runtime uses its start-up instant). It
//! serialises as a plain number, so recorded transcripts can be replayed exactly.
//!
//! Wall-clock timestamps (`timestamp`, `server_time`, `connected_at`) are derived from the
//! pair `(Time, unix milliseconds)` given to [`crate::Engine::new`], so they are as
//! deterministic as everything else and never go backwards even if the host clock is set back.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Add, Sub};
use std::time::{Duration, UNIX_EPOCH};

/// A point on the caller's monotonic time scale, in microseconds.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Time(u64);

impl Time {
    /// The origin of the time scale.
    pub const ZERO: Time = Time(0);

    /// A time `micros` microseconds after the origin.
    pub const fn from_micros(micros: u64) -> Self {
        Time(micros)
    }

    /// A time `millis` milliseconds after the origin.
    pub const fn from_millis(millis: u64) -> Self {
        Time(millis.saturating_mul(1000))
    }

    /// Microseconds since the origin.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// How long after `earlier` this time is; zero when it is not later.
    pub fn saturating_since(self, earlier: Time) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, rhs: Duration) -> Time {
        let micros = u64::try_from(rhs.as_micros()).unwrap_or(u64::MAX);
        Time(self.0.saturating_add(micros))
    }
}

impl Sub<Duration> for Time {
    type Output = Time;
    fn sub(self, rhs: Duration) -> Time {
        let micros = u64::try_from(rhs.as_micros()).unwrap_or(u64::MAX);
        Time(self.0.saturating_sub(micros))
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}s", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

/// Maps engine [`Time`] to wall-clock time, anchored once at start-up.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WallClock {
    anchor: Time,
    anchor_unix_millis: u64,
}

impl WallClock {
    pub(crate) fn new(anchor: Time, anchor_unix_millis: u64) -> Self {
        WallClock {
            anchor,
            anchor_unix_millis,
        }
    }

    /// Milliseconds since the Unix epoch at `now`.
    pub(crate) fn unix_millis(&self, now: Time) -> u64 {
        let elapsed = now.as_micros().saturating_sub(self.anchor.as_micros()) / 1000;
        self.anchor_unix_millis.saturating_add(elapsed)
    }

    /// The engine time at which the wall clock reads `unix_millis`.
    pub(crate) fn time_at(&self, unix_millis: u64) -> Time {
        let offset = unix_millis.saturating_sub(self.anchor_unix_millis);
        self.anchor + std::time::Duration::from_millis(offset)
    }

    /// ISO-8601 / RFC 3339 UTC timestamp with milliseconds, e.g. `2026-11-25T15:08:21.123Z`.
    pub(crate) fn timestamp(&self, now: Time) -> String {
        format_unix_millis(self.unix_millis(now))
    }
}

/// Formats milliseconds since the Unix epoch as an RFC 3339 UTC timestamp with milliseconds.
pub fn format_unix_millis(unix_millis: u64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(unix_millis);
    humantime::format_rfc3339_millis(at).to_string()
}

/// Durations in recorded configs and inputs are plain millisecond counts.
pub(crate) mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Optional durations as millisecond counts or `null`.
pub(crate) mod opt_millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::millis::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(d).map(|ms| ms.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_milliseconds_and_utc_suffix() {
        let clock = WallClock::new(Time::from_millis(5), 1_764_083_301_123);
        assert_eq!(
            clock.timestamp(Time::from_millis(5)),
            "2025-11-25T15:08:21.123Z"
        );
        assert_eq!(
            clock.timestamp(Time::from_millis(1005)),
            "2025-11-25T15:08:22.123Z"
        );
        // Before the anchor the clock does not go backwards.
        assert_eq!(clock.timestamp(Time::ZERO), "2025-11-25T15:08:21.123Z");
    }

    #[test]
    fn time_arithmetic_saturates() {
        let t = Time::from_millis(10);
        assert_eq!(t + Duration::from_millis(5), Time::from_millis(15));
        assert_eq!(t - Duration::from_secs(1), Time::ZERO);
        assert_eq!(
            Time::from_micros(u64::MAX) + Duration::from_secs(1),
            Time::from_micros(u64::MAX)
        );
        assert_eq!(
            t.saturating_since(Time::from_millis(4)),
            Duration::from_millis(6)
        );
        assert_eq!(Time::ZERO.saturating_since(t), Duration::ZERO);
    }
}
