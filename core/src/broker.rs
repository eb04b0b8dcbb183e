//! The values the engine exchanges with a message broker in cluster mode (several nodes on
//! one Redis, `Config::clustered`): what it asks the broker to do ([`BrokerCommand`], inside
//! [`crate::Output::Broker`]) and what the broker reports back (channel events with the
//! offsets and epochs the broker assigned, channel heads at (re)connection).
//!
//! The broker, not the engine, numbers a channel's events in cluster mode, so that every node
//! gives the same event the same position. The engine keeps a mirror of each channel's
//! history fed by these events, which is what recovery and `/api/history` read.

use crate::storage::BatchId;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One channel event to publish, before the broker gave it a position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutgoingEvent {
    /// Its channel.
    pub channel: Arc<str>,
    /// The event as a JSON object without `channel`, `offset` and `epoch` (added by every
    /// node the same way once the position is known).
    pub body: Arc<str>,
}

/// What the engine asks the broker to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum BrokerCommand {
    /// Give these events the next offsets of their channels, keep them in the channels'
    /// history and send them to every node, all at once; then report
    /// [`crate::Input::BrokerPublished`] with their positions, or
    /// [`crate::Input::BrokerPublishFailed`]. Batches must reach the broker in the order they
    /// come out.
    Publish {
        /// Names this publish in the report and in the events' [`EventOrigin`].
        batch: BatchId,
        /// The publisher's wall clock (milliseconds since the Unix epoch), for history's age
        /// limit.
        unix_millis: u64,
        /// The events, in order.
        events: Vec<OutgoingEvent>,
    },
    /// Send a message that is outside channels (to everyone, or to one client type) to every
    /// node, this one included (it is delivered when its copy comes back as
    /// [`crate::Input::BrokerDirect`]); then report [`crate::Input::BrokerPublished`] with no
    /// positions, or [`crate::Input::BrokerPublishFailed`].
    Direct {
        /// Names this publish in the report.
        batch: BatchId,
        /// The message's audience.
        audience: DirectAudience,
        /// The frame every recipient gets.
        frame: Arc<str>,
    },
    /// Read a channel's retained events after `after` (at most `limit`, oldest first) and its
    /// head; report [`crate::Input::HistoryRead`].
    ReadHistory {
        /// The channel.
        channel: Arc<str>,
        /// Events after this offset.
        after: u64,
        /// At most this many.
        limit: usize,
    },
}

/// Who gets a [`BrokerCommand::Direct`] message on each node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectAudience {
    /// Only subscribers of this channel (still outside the channel's offsets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Only clients of this type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_type: Option<String>,
}

/// Which node's publish an event came from, so that the publishing node can leave out the
/// client that sent it, whichever of its copies arrives first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventOrigin {
    /// The node's name in the cluster (given in [`crate::Input::BrokerSynced`]).
    pub node: Arc<str>,
    /// The batch of its [`BrokerCommand::Publish`].
    pub batch: BatchId,
    /// The event's place in the batch, from 0.
    pub index: u32,
}

/// A channel event with the position the broker gave it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerEvent {
    /// Its channel.
    pub channel: Arc<str>,
    /// The channel's epoch.
    pub epoch: Arc<str>,
    /// Its offset in the channel.
    pub offset: u64,
    /// When it was published (the publisher's wall clock, ms since the Unix epoch).
    pub unix_millis: u64,
    /// Where it was published, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<EventOrigin>,
    /// The event without its position, as in [`OutgoingEvent::body`].
    pub body: Arc<str>,
}

/// Where a channel stands in the broker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelHead {
    /// The channel.
    pub channel: Arc<str>,
    /// Its epoch.
    pub epoch: Arc<str>,
    /// Its latest offset.
    pub latest: u64,
}

/// Why the broker did not publish a batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerError {
    /// `true` when the request may have reached the broker before the connection failed (the
    /// events may then have been published, and reach subscribers after the resync); `false`
    /// when nothing was sent.
    pub outcome_unknown: bool,
    /// What happened.
    pub message: String,
}

/// One other node's answer to a gathered request ([`crate::Output::Gather`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePart {
    /// The node's tag.
    pub node: u16,
    /// Its reply body (JSON), or why it did not answer.
    pub answer: Result<String, String>,
}
