//! Lingering close: after a reply sent before the request's body was read (413, 431, 411, a
//! 400 on a bad head, a refused upgrade), keep reading and discarding what the client still
//! sends for a bounded time before closing.
//!
//! Closing a TCP socket with unread bytes in its receive buffer makes the kernel answer with a
//! reset, and a reset that reaches a client still sending its body throws away the reply it
//! has not read yet: the client sees "connection reset" or "broken pipe" instead of "payload
//! too large" (issue 27 measured 81 of 100 Python clients so). The cure web servers use, their
//! `lingering_close`, is this one: half-close (the reply and a FIN go out), then drain until the
//! client closes or the time is up. Both runtimes drain with their own sockets; what is shared
//! is the bound — the time, and how many connections may linger at once, so lingering cannot
//! be used to hold connections open (beyond the cap a connection closes at once, and the
//! transport counts it).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How long and how many connections may linger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LingerSettings {
    /// Longest a connection drains after an early reply; zero closes at once (the old
    /// behaviour). Default 5 s (as common web servers' lingering timeout).
    pub timeout: Duration,
    /// Connections draining at once, per process; beyond it a connection closes at once.
    /// Default 256.
    pub max_connections: usize,
}

impl Default for LingerSettings {
    fn default() -> Self {
        LingerSettings {
            timeout: Duration::from_secs(5),
            max_connections: 256,
        }
    }
}

/// Connections lingering now, in this process.
static LINGERING: AtomicUsize = AtomicUsize::new(0);

impl LingerSettings {
    /// A place among the lingering connections, or `None` when lingering is off or every
    /// place is taken (close at once). The place is given back when the guard is dropped.
    pub fn try_linger(&self) -> Option<LingerGuard> {
        if self.timeout.is_zero() {
            return None;
        }
        LINGERING
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now < self.max_connections).then_some(now + 1)
            })
            .ok()
            .map(|_| LingerGuard(()))
    }
}

/// One lingering connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct LingerGuard(());

impl Drop for LingerGuard {
    fn drop(&mut self) {
        LINGERING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Connections lingering now, in this process.
pub fn lingering_now() -> usize {
    LINGERING.load(Ordering::Acquire)
}

/// Bytes read and thrown away per read while lingering.
pub const DRAIN_CHUNK_BYTES: usize = 16 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_capped_and_given_back() {
        let settings = LingerSettings {
            timeout: Duration::from_secs(1),
            max_connections: 2,
        };
        let before = lingering_now();
        let first = settings.try_linger().expect("a place");
        let second = settings.try_linger().expect("a second place");
        // Other tests of this process may linger too; the cap counts them all.
        assert!(settings.try_linger().is_none(), "the cap is two");
        drop(first);
        let third = settings.try_linger().expect("the freed place");
        drop((second, third));
        assert_eq!(lingering_now(), before);
        let off = LingerSettings {
            timeout: Duration::ZERO,
            ..settings
        };
        assert!(off.try_linger().is_none(), "a zero timeout never lingers");
    }
}
