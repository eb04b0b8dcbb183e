//! Identifiers: client ids handed to clients, and the request / connection ids the caller
//! uses to match the engine's outputs to its own sockets.
//!
//! Client ids are UUID v4 built from bytes of an injected [`IdSource`], so the engine has no
//! hidden randomness. A client id is also the credential that lets a client resume its
//! session, so a production [`IdSource`] must draw from the operating system's generator;
//! [`SeededIds`] is for tests, fuzzing and replay.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// The identity of a client session (UUID v4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClientId(Uuid);

impl ClientId {
    /// A client id from 16 random bytes, with the version and variant bits of UUID v4 set.
    pub fn from_random_bytes(bytes: [u8; 16]) -> Self {
        ClientId(uuid::Builder::from_random_bytes(bytes).into_uuid())
    }

    /// Cluster mode: a client id whose first two bytes name the node holding its session
    /// (still UUID v4, with 106 random bits), so any node can tell where to send a request
    /// that names it.
    pub fn from_random_bytes_on_node(mut bytes: [u8; 16], node: u16) -> Self {
        bytes[..2].copy_from_slice(&node.to_be_bytes());
        ClientId::from_random_bytes(bytes)
    }

    /// The node tag in the first two bytes (meaningful for ids made in cluster mode).
    pub fn node_tag(&self) -> u16 {
        let bytes = self.0.as_bytes();
        u16::from_be_bytes([bytes[0], bytes[1]])
    }

    /// The id as a UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for ClientId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(ClientId)
    }
}

/// The caller's name for one HTTP request; the engine answers each exactly once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(pub u64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "req#{}", self.0)
    }
}

/// The caller's name for one WebSocket connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// Where the engine gets the bytes of new client ids.
pub trait IdSource: Send {
    /// Sixteen fresh bytes; they become a UUID v4 after the version bits are set.
    fn next_id_bytes(&mut self) -> [u8; 16];
}

/// A deterministic [`IdSource`] (SplitMix64) for tests, fuzzing and replay. Not for production:
/// its ids are predictable.
#[derive(Clone, Debug)]
pub struct SeededIds {
    state: u64,
}

impl SeededIds {
    /// A generator whose sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        SeededIds { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl IdSource for SeededIds {
    fn next_id_bytes(&mut self) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_uuid_v4_and_round_trip() {
        let mut ids = SeededIds::new(7);
        let id = ClientId::from_random_bytes(ids.next_id_bytes());
        assert_eq!(id.as_uuid().get_version_num(), 4);
        let text = id.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(text.parse::<ClientId>().unwrap(), id);
        assert!("not-a-uuid".parse::<ClientId>().is_err());
    }

    #[test]
    fn seeded_ids_are_reproducible_and_distinct() {
        let mut a = SeededIds::new(1);
        let mut b = SeededIds::new(1);
        let first = a.next_id_bytes();
        assert_eq!(first, b.next_id_bytes());
        assert_ne!(first, a.next_id_bytes());
    }
}
