//! The durable store: history in one redb file (`history.redb` in the data dir).
//!
//! One writer thread owns all writes. Publishes queue their batch and wait; the thread takes
//! everything queued, writes it in one transaction, prunes what retention no longer allows in the
//! same transaction, commits (one fsync for all of them), then reports each batch done in order.
//! While one commit is on its way to disk the next batches gather, so concurrent publishes share
//! fsyncs. Age-based pruning also runs on a timer when nothing is published.
//!
//! Tables:
//! - `ssehub_meta`: the format, the epoch, the last sequence number given, `dropped_up_to`
//!   (the newest event pruned from a topic that then had nothing left), and `pruned_up_to` (the
//!   newest event pruned, what a replay of every topic checks).
//! - `ssehub_events`: sequence number → publish time, topics, privacy and the publisher's id
//!   (what pruning and replays filter by).
//! - `ssehub_by_topic`: (topic, sequence number) → wire bytes (what replay reads, one range scan
//!   per topic).
//! - `ssehub_pruned`: topic → the newest of its events pruned, so a replay knows exactly whether
//!   events on *its* topics are gone.
//! - `ssehub_ids`: publisher-chosen id → sequence number, for the retained events that have one
//!   (written with the event, removed when it is pruned).
//!
//! ```
//! use ssehub::store::{Disk, Retention, Store};
//! let dir = std::env::temp_dir().join(format!("ssehub-doc-{}", std::process::id()));
//! let disk = Disk::open(&dir, Retention::default())?;
//! assert_eq!(disk.origin().next_seq, 1);
//! # drop(disk);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), ssehub::store::StoreError>(())
//! ```

mod format;
mod reads;
#[cfg(test)]
mod tests;
mod writer;

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use redb::{Database, DatabaseError};

use super::{Done, Origin, ReadLimit, Record, Replay, Scope, Store, StoreError, StoreFuture};
use crate::event::Topic;
use format::read_or_init_meta;
use reads::{find_id, read_all, read_range};
use writer::{FailPending, Pending, Queue, Writer, MIN_SWEEP};

/// The file in the data dir.
pub const FILE_NAME: &str = "history.redb";
/// redb's page cache. Replays of old events are rare; the hot window lives in the hub's memory.
const CACHE_BYTES: usize = 32 << 20;

/// What the store keeps.
///
/// ```
/// use std::time::Duration;
/// let keep = ssehub::store::Retention { events: 100_000, age: Some(Duration::from_secs(3600)) };
/// assert_eq!(keep.events, 100_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Events kept, all topics together (the newest ones).
    pub events: usize,
    /// Events older than this are pruned; `None` keeps them until `events` pushes them out.
    pub age: Option<Duration>,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            events: 10_000,
            age: None,
        }
    }
}

/// History in a redb file. See the [`store`](crate::store) documentation.
pub struct Disk {
    path: PathBuf,
    db: Arc<Database>,
    origin: Origin,
    queue: Arc<Queue>,
    writer: Option<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Disk {
    /// Opens (or creates) the history in `dir`. Fails, naming the path, if the directory cannot
    /// be made or written, if the file is corrupt or not an ssehub history, or if another process
    /// has it open.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use ssehub::store::{Disk, Retention};
    ///
    /// let dir = std::env::temp_dir().join(format!("ssehub-doc-open-{}", std::process::id()));
    /// let disk = Disk::open(&dir, Retention::default())?;
    /// assert_eq!(disk.path(), dir.join("history.redb"));
    /// let hub = ssehub::Hub::builder().store(Arc::new(disk)).build();
    /// # drop(hub);
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok::<(), ssehub::store::StoreError>(())
    /// ```
    pub fn open(dir: &Path, retention: Retention) -> Result<Disk, StoreError> {
        let fail = |what: &Path, why: String| StoreError(format!("{}: {why}", what.display()));
        std::fs::create_dir_all(dir).map_err(|e| fail(dir, format!("cannot create it: {e}")))?;
        if !dir.is_dir() {
            return Err(fail(dir, "not a directory".into()));
        }
        let path = dir.join(FILE_NAME);
        // A file altered behind redb's back fails the integrity check instead of being trusted;
        // any panic left in the open of a mangled file is caught and reported the same way.
        let opened = std::panic::catch_unwind(AssertUnwindSafe(|| {
            Database::builder()
                .set_cache_size(CACHE_BYTES)
                .set_check_integrity_on_open(true)
                .create(&path)
        }));
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(DatabaseError::DatabaseAlreadyOpen)) => {
                return Err(fail(
                    &path,
                    "in use by another process (another ssehub on this --data-dir?)".into(),
                ))
            }
            Ok(Err(DatabaseError::Storage(redb::StorageError::Io(e)))) => {
                return Err(fail(&path, format!("cannot open it: {e}")))
            }
            Ok(Err(e)) => {
                return Err(fail(
                    &path,
                    format!("not a usable ssehub history file (corrupt or foreign: {e})"),
                ))
            }
            Err(_) => {
                return Err(fail(
                    &path,
                    "not a usable ssehub history file (corrupt: the database reader gave up)"
                        .into(),
                ))
            }
        };
        let meta = read_or_init_meta(&db).map_err(|why| fail(&path, why))?;
        let db = Arc::new(db);
        let queue = Arc::new(Queue {
            state: Mutex::new(Pending::default()),
            wake: Condvar::new(),
        });
        let mut writer = Writer {
            db: db.clone(),
            path: path.clone(),
            retention: Retention {
                events: retention.events.max(1),
                age: retention.age,
            },
            last_seq: meta.last_seq,
            dropped_up_to: meta.dropped_up_to,
            pruned_up_to: meta.pruned_up_to,
            sweep_at: MIN_SWEEP,
            failed: None,
        };
        let thread_queue = queue.clone();
        let writer = std::thread::Builder::new()
            .name("ssehub-history".into())
            .spawn(move || {
                // However the thread ends, nothing queued or queued later waits forever.
                let _guard = FailPending(thread_queue.clone());
                writer.run(&thread_queue)
            })
            .map_err(|e| fail(&path, format!("cannot start its writer thread: {e}")))?;
        Ok(Disk {
            path,
            db,
            origin: Origin {
                epoch: meta.epoch,
                next_seq: meta.last_seq + 1,
            },
            queue,
            writer: Some(writer),
        })
    }

    /// The history file (`history.redb` in the directory given to [`Disk::open`], whose example
    /// shows it).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl std::fmt::Debug for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Disk").field("path", &self.path).finish()
    }
}

impl Drop for Disk {
    /// Finishes the queued batches, then stops the writer.
    fn drop(&mut self) {
        lock(&self.queue.state).closed = true;
        self.queue.wake.notify_all();
        if let Some(writer) = self.writer.take() {
            // The writer can drop the last hub, and with it this store, from a done callback:
            // it then ends by itself once the queue is empty (it holds the queue and the file).
            if writer.thread().id() != std::thread::current().id() {
                let _ = writer.join();
            }
        }
    }
}

impl Store for Disk {
    fn origin(&self) -> Origin {
        self.origin.clone()
    }

    fn keeps_events(&self) -> bool {
        true
    }

    fn append(&self, records: Vec<Record>, done: Done) {
        if records.is_empty() {
            return done(Ok(()));
        }
        let mut state = lock(&self.queue.state);
        if state.closed {
            drop(state);
            return done(Err(StoreError("the history store is closed".into())));
        }
        state.batches.push((records, done));
        drop(state);
        self.queue.wake.notify_one();
    }

    fn read_after<'a>(
        &'a self,
        scope: Scope<'a>,
        after: u64,
        upto: u64,
        limit: ReadLimit,
    ) -> StoreFuture<'a, Replay> {
        let db = self.db.clone();
        let topics: Option<Vec<Topic>> = match scope {
            Scope::Topics(topics) => Some(topics.to_vec()),
            Scope::All => None,
        };
        self.blocking("read the history", move || match topics {
            Some(topics) => read_range(&db, &topics, after, upto, limit),
            None => read_all(&db, after, upto, limit),
        })
    }

    fn find_id<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<u64>> {
        let db = self.db.clone();
        let id = id.to_string();
        self.blocking("look up an event id", move || find_id(&db, &id))
    }
}

impl Disk {
    /// Runs a read of the file off the async workers (it may touch the disk), naming the file
    /// and `what` it was doing if it fails.
    fn blocking<T: Send + 'static>(
        &self,
        what: &'static str,
        read: impl FnOnce() -> Result<T, redb::Error> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        let path = self.path.clone();
        Box::pin(async move {
            let result = match tokio::runtime::Handle::try_current() {
                Ok(_) => tokio::task::spawn_blocking(read)
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string())),
                Err(_) => read().map_err(|e| e.to_string()),
            };
            result.map_err(|e| StoreError(format!("{}: cannot {what}: {e}", path.display())))
        })
    }
}
