//! Client ids for production: the operating system's generator, which the engine never calls
//! itself (it takes an [`IdSource`] so that tests and replays can be deterministic).

use livebridge_core::IdSource;

/// The production [`IdSource`]: client-id bytes from the operating system's cryptographically
/// secure generator (via `getrandom`). A client id is the credential that resumes a session,
/// so it must not be predictable, which [`livebridge_core::SeededIds`] is.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsRandomIds;

impl IdSource for OsRandomIds {
    /// # Panics
    ///
    /// When the operating system cannot supply random bytes. That happens only on a broken
    /// system (no `/dev/urandom`, a sandbox forbidding `getrandom(2)`), where handing out a
    /// guessable id would be worse than stopping.
    fn next_id_bytes(&mut self) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        if let Err(error) = getrandom::fill(&mut bytes) {
            panic!("the operating system's random generator failed: {error}");
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_random_ids_differ() {
        let mut ids = OsRandomIds;
        assert_ne!(ids.next_id_bytes(), ids.next_id_bytes());
    }
}
