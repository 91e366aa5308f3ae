//! What flows along the dataflow's edges: changes, watermarks and barriers, in order.
//!
//! One type carries all three from the worker into a view's [`Graph`](super::graph::Graph),
//! from operator to operator inside it, and from a view's root to the views and sinks that read
//! it. Order on an edge is the contract: a watermark follows every change it covers, and a
//! barrier follows every change and watermark of its epoch.

use super::{ChangeBatch, Watermark};

/// One item on a dataflow edge.
#[derive(Debug, Clone)]
pub enum Message {
    /// Rows inserted and retracted.
    Chunk(ChangeBatch),
    /// Every later change on this edge has its column at or above the bound.
    Watermark(Watermark),
    /// The epoch ends: operators emit what they held back, then state is committed.
    Barrier,
}

/// The changes among `messages`, in order (watermarks and barriers dropped).
pub fn chunks(messages: &[Message]) -> impl Iterator<Item = &ChangeBatch> {
    messages.iter().filter_map(|m| match m {
        Message::Chunk(c) => Some(c),
        _ => None,
    })
}
