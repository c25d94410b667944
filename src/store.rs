//! History stores: where events live beyond the in-memory log.
//!
//! The hub always keeps its hot window of history in memory (the log), and live delivery reads
//! only from there. A [`Store`] is the tier behind it, written through at publish and read only
//! for replays older than memory holds. It also names the history (its [`Epoch`]) and says where
//! numbering continues after a restart. Three backends share this trait:
//! - [`Memory`] (default): nothing beyond the in-memory log; a fresh epoch per run.
//! - redb (feature `durable`, planned): an embedded file; `append` resolves after the commit, so
//!   a publish is acknowledged only once its events are on disk.
//! - Redis Streams (feature `cluster`, planned): the shared log of several hubs; `append` is an
//!   `XADD` per event and the hub's local log is fed from an `XREAD` tail.
//!
//! ```
//! use ssehub::store::{Memory, Store};
//! let memory = Memory::new();
//! assert_eq!(memory.origin().next_seq, 1);
//! ```

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

use crate::event::Topic;
use crate::hub::Epoch;

/// A boxed future, so the trait can be used as `dyn Store`.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A store failed. The text names what failed (a file, a server).
#[derive(Debug, thiserror::Error)]
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
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// Its sequence number.
    pub seq: u64,
    /// Its topics.
    pub topics: &'a [Topic],
    /// Its wire bytes (id included).
    pub bytes: &'a Bytes,
}

/// An event read back from a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Its sequence number.
    pub seq: u64,
    /// Its wire bytes.
    pub bytes: Bytes,
}

/// A history backend. See the [module documentation](self).
pub trait Store: Send + Sync + 'static {
    /// The history's epoch and where numbering continues.
    fn origin(&self) -> Origin;

    /// Keeps these events (in sequence order); resolves once they are as durable as this store
    /// makes them. The publish is acknowledged after this.
    fn append<'a>(&'a self, records: &'a [Record<'a>]) -> StoreFuture<'a, ()>;

    /// Events after `after` on any of `topics`, oldest first, at most `limit`.
    fn read_after<'a>(
        &'a self,
        topics: &'a [Topic],
        after: u64,
        limit: usize,
    ) -> StoreFuture<'a, Vec<StoredEvent>>;
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

    fn append<'a>(&'a self, _records: &'a [Record<'a>]) -> StoreFuture<'a, ()> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn read_after<'a>(
        &'a self,
        _topics: &'a [Topic],
        _after: u64,
        _limit: usize,
    ) -> StoreFuture<'a, Vec<StoredEvent>> {
        // Everything this store keeps is in the in-memory log already.
        Box::pin(std::future::ready(Ok(Vec::new())))
    }
}
