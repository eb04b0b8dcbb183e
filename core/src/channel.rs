//! Channels: which sessions subscribe to which channel, and what a valid channel name is.
//!
//! Any well-formed name is a channel (applications may add their own beside the seven of the
//! catalogue); a channel exists while it has subscribers.

use crate::session::SessionKey;
use std::collections::{BTreeMap, BTreeSet};

/// The channel → subscribers index, kept in step with each session's own subscription set.
#[derive(Debug, Default)]
pub(crate) struct ChannelIndex {
    subscribers: BTreeMap<String, BTreeSet<SessionKey>>,
}

impl ChannelIndex {
    pub(crate) fn subscribe(&mut self, channel: &str, key: SessionKey) {
        match self.subscribers.get_mut(channel) {
            Some(set) => {
                set.insert(key);
            }
            None => {
                self.subscribers
                    .insert(channel.to_string(), BTreeSet::from([key]));
            }
        }
    }

    pub(crate) fn unsubscribe(&mut self, channel: &str, key: SessionKey) {
        if let Some(set) = self.subscribers.get_mut(channel) {
            set.remove(&key);
            if set.is_empty() {
                self.subscribers.remove(channel);
            }
        }
    }

    pub(crate) fn subscribers(&self, channel: &str) -> impl Iterator<Item = SessionKey> + '_ {
        self.subscribers
            .get(channel)
            .into_iter()
            .flat_map(|set| set.iter().copied())
    }

    /// Channels with their subscriber counts, by name.
    pub(crate) fn counts(&self) -> impl Iterator<Item = (&str, usize)> {
        self.subscribers
            .iter()
            .map(|(name, set)| (name.as_str(), set.len()))
    }
}

/// Checks a channel name: 1 to `max_len` bytes of ASCII letters, digits and `_ - . :`.
pub(crate) fn validate_channel_name(name: &str, max_len: usize) -> Result<(), String> {
    if name.is_empty() {
        return Err("channel names must not be empty".to_string());
    }
    if name.len() > max_len {
        return Err(format!(
            "channel name is {} bytes long; the limit is {max_len}",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
    {
        return Err(format!(
            "channel name {name:?} contains {bad:?}; allowed are ASCII letters, digits and _ - . :"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names() {
        assert!(validate_channel_name("jobs", 64).is_ok());
        assert!(validate_channel_name("tenant:a.jobs-2_x", 64).is_ok());
        assert!(validate_channel_name("", 64).is_err());
        assert!(
            validate_channel_name("a b", 64)
                .unwrap_err()
                .contains("' '")
        );
        assert!(
            validate_channel_name(&"x".repeat(65), 64)
                .unwrap_err()
                .contains("limit is 64")
        );
    }
}
