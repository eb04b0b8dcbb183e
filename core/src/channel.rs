//! Channels: which sessions subscribe to which channel, and what a valid channel name is.
//!
//! Any well-formed name is a channel (applications may add their own beside the seven of the
//! catalogue); a channel exists while it has subscribers.

use crate::session::SessionKey;
use std::collections::BTreeMap;

/// The channel → subscribers index, kept in step with each session's own subscription set.
///
/// Each channel's subscribers are a sorted `Vec`: a publish walks them as one contiguous
/// slice (a B-tree set is walked node by node and falls out of cache at 10 000 subscribers),
/// while subscribing and unsubscribing, which are rare next to publishing, pay a binary search
/// and a shift. Sorted by key, the delivery order is the same as a set's would be.
#[derive(Debug, Default)]
pub(crate) struct ChannelIndex {
    subscribers: BTreeMap<String, Vec<SessionKey>>,
}

impl ChannelIndex {
    pub(crate) fn subscribe(&mut self, channel: &str, key: SessionKey) {
        match self.subscribers.get_mut(channel) {
            Some(keys) => {
                if let Err(position) = keys.binary_search(&key) {
                    keys.insert(position, key);
                }
            }
            None => {
                self.subscribers.insert(channel.to_string(), vec![key]);
            }
        }
    }

    pub(crate) fn unsubscribe(&mut self, channel: &str, key: SessionKey) {
        if let Some(keys) = self.subscribers.get_mut(channel) {
            if let Ok(position) = keys.binary_search(&key) {
                keys.remove(position);
            }
            if keys.is_empty() {
                self.subscribers.remove(channel);
            }
        }
    }

    /// The subscribers of `channel`, in key order.
    pub(crate) fn subscribers(&self, channel: &str) -> &[SessionKey] {
        self.subscribers.get(channel).map_or(&[], Vec::as_slice)
    }

    /// Channels with their subscriber counts, by name.
    pub(crate) fn counts(&self) -> impl Iterator<Item = (&str, usize)> {
        self.subscribers
            .iter()
            .map(|(name, keys)| (name.as_str(), keys.len()))
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

    fn key(index: u32) -> SessionKey {
        SessionKey::for_tests(index, 0)
    }

    #[test]
    fn subscribers_stay_sorted_and_unique_and_empty_channels_disappear() {
        let mut index = ChannelIndex::default();
        for i in [5, 1, 9, 1, 3] {
            index.subscribe("jobs", key(i));
        }
        assert_eq!(index.subscribers("jobs"), &[key(1), key(3), key(5), key(9)]);
        index.unsubscribe("jobs", key(5));
        index.unsubscribe("jobs", key(7));
        assert_eq!(index.subscribers("jobs"), &[key(1), key(3), key(9)]);
        for i in [1, 3, 9] {
            index.unsubscribe("jobs", key(i));
        }
        assert!(index.subscribers("jobs").is_empty());
        assert_eq!(index.counts().count(), 0);
    }

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
