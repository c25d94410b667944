//! History stores: where events live beyond the in-memory log.
//!
//! The hub always keeps its hot window of history in memory (the log), and live delivery reads
//! only from there. A [`Store`] is the tier behind it, written through at publish and read only
//! for replays older than memory holds. It also names the history (its [`Epoch`]) and says where
//! numbering continues after a restart. Three backends share this trait:
//! - [`Memory`] (default): nothing beyond the in-memory log; a fresh epoch per run.
//! - [`Disk`] (feature `durable`, on by default): an embedded redb file. Batches are committed
//!   in sequence order, many publishes per fsync, and become readable (and acknowledged) only
//!   once on disk.
//!
//! Cluster mode's Redis Streams (feature `cluster`, [`crate::cluster`]) is not a store: Redis
//! numbers events itself, by place, where a store keeps the hub's sequence numbers. Its replays
//! older than memory are read by place through the same subscription (`docs/cluster.md`).
//!
//! ```
//! use ssehub::store::{Memory, Store};
//! let memory = Memory::new();
//! assert_eq!(memory.origin().next_seq, 1);
//! assert!(!memory.keeps_events());
//! ```

#[cfg(feature = "durable")]
mod disk;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

#[cfg(feature = "durable")]
pub use disk::{Disk, Retention};

use crate::event::Topic;
use crate::id::Epoch;

/// Keeps [`Store`] implemented only here (see its `# Sealed`).
pub(crate) mod sealed {
    /// Implemented by this crate's backends only.
    pub trait Sealed {}
}

impl sealed::Sealed for Memory {}
#[cfg(feature = "durable")]
impl sealed::Sealed for Disk {}

/// A boxed future, so the trait can be used as `dyn Store`.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Called once a batch handed to [`Store::append`] is durable (or failed).
pub type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// A store failed, or cannot be used. The text names what failed (a file, a server).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// Where a history stands when a hub opens it.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The history's name, carried in every id.
    pub epoch: Epoch,
    /// The sequence number the next event gets.
    pub next_seq: u64,
}

/// One published event, as handed to [`Store::append`].
#[derive(Debug, Clone)]
pub struct Record {
    /// Its sequence number.
    pub seq: u64,
    /// Its topics.
    pub topics: Vec<Topic>,
    /// Its wire bytes (id included), the same buffer subscribers send.
    pub bytes: Bytes,
    /// Only subscribers allowed one of its topics may get it.
    pub private: bool,
    /// The id its publisher chose, if any: [`Store::find_id`] finds the event by it.
    pub id: Option<Arc<str>>,
}

/// An event read back from a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Its sequence number.
    pub seq: u64,
    /// Its wire bytes.
    pub bytes: Bytes,
    /// Its topics (the hub checks private events and templates against them).
    pub topics: Vec<Topic>,
    /// Only subscribers allowed one of its topics may get it.
    pub private: bool,
}

/// Which events a [`Store::read_after`] returns.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Those on any of these topics.
    Topics(&'a [Topic]),
    /// Every event (a `*` or URI-template subscription filters them itself).
    All,
}

/// How much one [`Store::read_after`] may return: at most `events` events, and about `bytes`
/// bytes (always at least one event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimit {
    /// Events, at most.
    pub events: usize,
    /// Bytes, about: an event that would pass it is left for the next read.
    pub bytes: usize,
}

/// What [`Store::read_after`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    /// The events, oldest first.
    pub events: Vec<StoredEvent>,
    /// Every event on the topics up to here was returned (or lost): the reader's new cursor.
    pub cursor: u64,
    /// Some event on these topics after `after` was pruned by retention before this read.
    pub lost: bool,
}

/// A history backend. See the [module documentation](self).
///
/// # Sealed
///
/// Use it through the backends here ([`Memory`], [`Disk`]) given to
/// [`HubBuilder::store`](crate::HubBuilder::store); it cannot be implemented outside this
/// crate. It is the hub's internal contract with its backends, not a stable extension point:
/// sealing it lets it change without breaking anyone's code.
pub trait Store: sealed::Sealed + Send + Sync + 'static {
    /// The history's epoch and where numbering continues.
    fn origin(&self) -> Origin;

    /// Whether this store keeps events beyond the in-memory log. If it does, the hub hands it
    /// every batch and lets readers see a batch only once `done` reports it durable.
    fn keeps_events(&self) -> bool;

    /// Takes a batch. The hub calls this in sequence order, while it holds its publish lock, so
    /// it must not block: queue the work and return. `done` is called once the batch is as
    /// durable as this store makes it (in call order), or with the error that stopped it.
    fn append(&self, records: Vec<Record>, done: Done);

    /// Events with a sequence number in `after+1 ..= upto` in `scope`, oldest first, within
    /// `limit`. The hub only asks for ranges whose events were all reported done. With
    /// [`Scope::All`], `lost` says whether any event after `after` was pruned.
    fn read_after<'a>(
        &'a self,
        scope: Scope<'a>,
        after: u64,
        upto: u64,
        limit: ReadLimit,
    ) -> StoreFuture<'a, Replay>;

    /// The sequence number of the retained event whose publisher chose `id`, if there is one.
    /// Ids the hub made (`EPOCH-SEQ`) are not indexed, and an event's id is forgotten when
    /// retention prunes the event.
    fn find_id<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<u64>>;
}

/// The default: history lives only in the hub's in-memory log, under a fresh random epoch.
#[derive(Debug)]
pub struct Memory {
    epoch: Epoch,
}

impl Memory {
    /// A memory store with a new epoch.
    pub fn new() -> Memory {
        Memory {
            epoch: Epoch::random(),
        }
    }
}

impl Default for Memory {
    fn default() -> Memory {
        Memory::new()
    }
}

impl Store for Memory {
    fn origin(&self) -> Origin {
        Origin {
            epoch: self.epoch.clone(),
            next_seq: 1,
        }
    }

    fn keeps_events(&self) -> bool {
        false
    }

    fn append(&self, _records: Vec<Record>, done: Done) {
        done(Ok(()));
    }

    fn read_after<'a>(
        &'a self,
        _scope: Scope<'a>,
        _after: u64,
        upto: u64,
        _limit: ReadLimit,
    ) -> StoreFuture<'a, Replay> {
        // Everything this store keeps is in the in-memory log already.
        Box::pin(std::future::ready(Ok(Replay {
            events: Vec::new(),
            cursor: upto,
            lost: false,
        })))
    }

    fn find_id<'a>(&'a self, _id: &'a str) -> StoreFuture<'a, Option<u64>> {
        // The in-memory log's own index is all there is.
        Box::pin(std::future::ready(Ok(None)))
    }
}
