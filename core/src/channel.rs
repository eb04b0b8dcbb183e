//! Channels: which sessions subscribe to which channel, each session's own list of its
//! channels, and what a valid channel name is.
//!
//! Any well-formed name is a channel (applications may add their own beside the seven of the
//! catalogue); a channel exists while it has subscribers.

use crate::session::SessionKey;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The channel → subscribers index, kept in step with each session's own subscription set.
///
/// Each channel's subscribers are a sorted `Vec`: a publish walks them as one contiguous
/// slice (a B-tree set is walked node by node and falls out of cache at 10 000 subscribers),
/// while subscribing and unsubscribing, which are rare next to publishing, pay a binary search
/// and a shift. Sorted by key, the delivery order is the same as a set's would be.
///
/// The channel's name is allocated once, here; every subscriber's [`Subscriptions`] holds a
/// reference to it rather than a copy.
#[derive(Debug, Default)]
pub(crate) struct ChannelIndex {
    subscribers: BTreeMap<Arc<str>, Vec<SessionKey>>,
}

impl ChannelIndex {
    /// Adds `key` to the subscribers of `channel`; returns the channel's shared name.
    pub(crate) fn subscribe(&mut self, channel: &str, key: SessionKey) -> Arc<str> {
        let Some(name) = self
            .subscribers
            .get_key_value(channel)
            .map(|(n, _)| Arc::clone(n))
        else {
            let name: Arc<str> = Arc::from(channel);
            self.subscribers.insert(Arc::clone(&name), vec![key]);
            return name;
        };
        let keys = self.subscribers.get_mut(channel).expect("found above");
        if let Err(position) = keys.binary_search(&key) {
            keys.insert(position, key);
        }
        name
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
            .map(|(name, keys)| (&**name, keys.len()))
    }
}

/// The channels one session subscribes to, in name order.
///
/// Every session keeps this, so it is sized for the common case of one or a few channels on
/// thousands of idle connections: an exact-size slice of names shared with the
/// [`ChannelIndex`] (one 16-byte allocation for one channel, where a `BTreeSet<String>` took a
/// 280-byte node plus a copy of the name). Changes rebuild the slice, which is cheap at the
/// `max_subscriptions` sizes a client may reach and rare next to deliveries, which never
/// read it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Subscriptions {
    names: Box<[Arc<str>]>,
}

impl Subscriptions {
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    pub(crate) fn contains(&self, channel: &str) -> bool {
        self.position(channel).is_ok()
    }

    /// Adds `channel` (a name from [`ChannelIndex::subscribe`]); false if it was there.
    pub(crate) fn insert(&mut self, channel: Arc<str>) -> bool {
        let Err(position) = self.position(&channel) else {
            return false;
        };
        let mut names = Vec::with_capacity(self.names.len() + 1);
        names.extend_from_slice(&self.names[..position]);
        names.push(channel);
        names.extend_from_slice(&self.names[position..]);
        self.names = names.into_boxed_slice();
        true
    }

    /// Removes `channel`; false if it was not there.
    pub(crate) fn remove(&mut self, channel: &str) -> bool {
        let Ok(position) = self.position(channel) else {
            return false;
        };
        let mut names = self.names.to_vec();
        names.remove(position);
        self.names = names.into_boxed_slice();
        true
    }

    /// The channel names, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|name| &**name)
    }

    fn position(&self, channel: &str) -> Result<usize, usize> {
        self.names.binary_search_by(|name| (**name).cmp(channel))
    }
}

/// A JSON array of the names, as the `BTreeSet<String>` it replaced was.
impl serde::Serialize for Subscriptions {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
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
    fn a_sessions_subscriptions_stay_sorted_and_unique_and_share_the_indexs_names() {
        let mut index = ChannelIndex::default();
        let mut subscriptions = Subscriptions::default();
        for channel in ["jobs", "alerts", "jobs", "system"] {
            if !subscriptions.contains(channel) {
                let name = index.subscribe(channel, key(1));
                assert!(subscriptions.insert(name));
            }
        }
        assert_eq!(
            subscriptions.iter().collect::<Vec<_>>(),
            ["alerts", "jobs", "system"]
        );
        assert_eq!(
            serde_json::to_string(&subscriptions).unwrap(),
            r#"["alerts","jobs","system"]"#
        );
        let jobs = index.subscribe("jobs", key(2));
        assert!(
            Arc::ptr_eq(&jobs, &subscriptions.names[1]),
            "a channel's name is allocated once, not per subscriber"
        );
        assert!(!subscriptions.insert(jobs), "already there");
        assert!(subscriptions.remove("jobs"));
        assert!(!subscriptions.remove("jobs"));
        assert_eq!(
            subscriptions.iter().collect::<Vec<_>>(),
            ["alerts", "system"]
        );
        assert_eq!(subscriptions.len(), 2);
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
