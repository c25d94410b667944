//! What the log holds, read for stats and lookups: counts, bytes, the next number, an id's place.

use super::super::locks::{lock, read};
use super::Log;

impl Log {
    /// The sequence number of the retained event whose publisher chose `id`.
    pub(crate) fn seq_of(&self, id: &str) -> Option<u64> {
        lock!(self.order).ids.get(id).copied()
    }

    /// The sequence number the next event gets.
    pub(crate) fn next_seq(&self) -> u64 {
        lock!(self.order).next_seq
    }

    /// Topics known.
    pub(crate) fn topic_count(&self) -> usize {
        read!(self.topics).map.len()
    }

    /// Events retained.
    pub(crate) fn retained(&self) -> usize {
        lock!(self.order).retained.len()
    }

    /// The encoded bytes of the retained events, each counted once.
    pub(crate) fn retained_bytes(&self) -> u64 {
        lock!(self.order).bytes
    }
}
