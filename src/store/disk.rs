//! The durable store: history in one redb file (`history.redb` in the data dir).
//!
//! One writer thread owns all writes. Publishes queue their batch and wait; the thread takes
//! everything queued, writes it in one transaction, prunes what retention no longer allows in the
//! same transaction, commits (one fsync for all of them), then reports each batch done in order.
//! While one commit is on its way to disk the next batches gather, so concurrent publishes share
//! fsyncs. Age-based pruning also runs on a timer when nothing is published.
//!
//! Tables:
//! - `ssehub_meta`: the format, the epoch, the last sequence number given, and `dropped_up_to`
//!   (the newest event pruned from a topic that then had nothing left).
//! - `ssehub_events`: sequence number → publish time and topics (what pruning needs).
//! - `ssehub_by_topic`: (topic, sequence number) → wire bytes (what replay reads, one range scan
//!   per topic).
//! - `ssehub_pruned`: topic → the newest of its events pruned, so a replay knows exactly whether
//!   events on *its* topics are gone.
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

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, TableHandle, WriteTransaction,
};

use super::{Done, Origin, ReadLimit, Record, Replay, Store, StoreError, StoreFuture, StoredEvent};
use crate::event::Topic;
use crate::hub::Epoch;

const META: TableDefinition<&str, &str> = TableDefinition::new("ssehub_meta");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("ssehub_events");
const BY_TOPIC: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("ssehub_by_topic");
const PRUNED: TableDefinition<&str, u64> = TableDefinition::new("ssehub_pruned");

/// The file in the data dir.
pub const FILE_NAME: &str = "history.redb";
/// What `ssehub_meta/format` says in a file this version can use.
const FORMAT: &str = "ssehub-history-1";
/// Events pruned per transaction at most, beyond what the batch itself pushes out, so that
/// lowering the retention between runs is caught up gradually instead of stalling one commit.
const PRUNE_BUDGET: usize = 4096;
/// The pruning-mark table is swept of topics with nothing left once it has this many entries,
/// at least.
const MIN_SWEEP: u64 = 4096;
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

struct Queue {
    state: Mutex<Pending>,
    wake: Condvar,
}

#[derive(Default)]
struct Pending {
    batches: Vec<(Vec<Record>, Done)>,
    closed: bool,
}

/// The writer thread's own state.
struct Writer {
    db: Arc<Database>,
    path: PathBuf,
    retention: Retention,
    last_seq: u64,
    dropped_up_to: u64,
    /// The pruning-mark table is swept of idle topics past this many entries.
    sweep_at: u64,
    /// Set by the first failed commit: every later batch fails with it, so nothing after a lost
    /// batch is ever acknowledged.
    failed: Option<StoreError>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

impl Disk {
    /// Opens (or creates) the history in `dir`. Fails, naming the path, if the directory cannot
    /// be made or written, if the file is corrupt or not an ssehub history, or if another process
    /// has it open.
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

    /// The history file.
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

/// Ends the writer's queue: closes it and fails what is in it. Runs when the writer thread
/// ends, even by a panic, so no publish waits for a commit that will never come.
struct FailPending(Arc<Queue>);

impl Drop for FailPending {
    fn drop(&mut self) {
        let batches = {
            let mut state = lock(&self.0.state);
            state.closed = true;
            std::mem::take(&mut state.batches)
        };
        for (_, done) in batches {
            let _ = std::panic::catch_unwind(AssertUnwindSafe(|| {
                done(Err(StoreError("the history writer stopped".into())))
            }));
        }
    }
}

struct Meta {
    epoch: Epoch,
    last_seq: u64,
    dropped_up_to: u64,
}

fn read_or_init_meta(db: &Database) -> Result<Meta, String> {
    let broken = |e: &dyn std::fmt::Display| format!("not a usable ssehub history file ({e})");
    let txn = db.begin_write().map_err(|e| broken(&e))?;
    let names: Vec<String> = txn
        .list_tables()
        .map_err(|e| broken(&e))?
        .map(|t| t.name().to_string())
        .collect();
    let meta = if names.iter().any(|n| n == META.name()) {
        let table = txn.open_table(META).map_err(|e| broken(&e))?;
        let get = |key: &str| -> Result<Option<String>, String> {
            Ok(table
                .get(key)
                .map_err(|e| broken(&e))?
                .map(|v| v.value().to_string()))
        };
        let format = get("format")?.unwrap_or_default();
        if format != FORMAT {
            return Err(format!(
                "a history in format {format:?}, which this ssehub cannot read (it reads {FORMAT:?})"
            ));
        }
        let number = |key: &str| -> Result<u64, String> {
            get(key)?
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| broken(&format!("its {key} is missing or damaged")))
        };
        let epoch = get("epoch")?
            .and_then(|e| Epoch::from_text(&e))
            .ok_or_else(|| broken(&"its epoch is missing or damaged"))?;
        let last_seq = number("last_seq")?;
        if last_seq == u64::MAX {
            // No next id could follow it.
            return Err(broken(&"its last_seq is at the end of the id space"));
        }
        Meta {
            epoch,
            last_seq,
            dropped_up_to: number("dropped_up_to")?,
        }
    } else if names.is_empty() {
        let epoch = Epoch::random();
        {
            let mut table = txn.open_table(META).map_err(|e| broken(&e))?;
            for (k, v) in [
                ("format", FORMAT),
                ("epoch", epoch.as_str()),
                ("last_seq", "0"),
                ("dropped_up_to", "0"),
            ] {
                table.insert(k, v).map_err(|e| broken(&e))?;
            }
        }
        Meta {
            epoch,
            last_seq: 0,
            dropped_up_to: 0,
        }
    } else {
        return Err(format!(
            "a redb database of something else (tables: {}), not an ssehub history",
            names.join(", ")
        ));
    };
    txn.commit().map_err(|e| broken(&e))?;
    Ok(meta)
}

/// `ssehub_events` values: publish time (ms since 1970, LE), then each topic as a 2-byte LE
/// length and its bytes.
fn encode_entry(time_ms: u64, topics: &[Topic]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(8 + topics.iter().map(|t| 2 + t.as_str().len()).sum::<usize>());
    out.extend_from_slice(&time_ms.to_le_bytes());
    for t in topics {
        // Topics are at most 256 bytes (checked at publish), so the length fits.
        out.extend_from_slice(&(t.as_str().len() as u16).to_le_bytes());
        out.extend_from_slice(t.as_str().as_bytes());
    }
    out
}

fn decode_entry(raw: &[u8]) -> Option<(u64, Vec<String>)> {
    let time = u64::from_le_bytes(raw.get(..8)?.try_into().ok()?);
    let mut rest = &raw[8..];
    let mut topics = Vec::new();
    while !rest.is_empty() {
        let len = u16::from_le_bytes(rest.get(..2)?.try_into().ok()?) as usize;
        let name = std::str::from_utf8(rest.get(2..2 + len)?).ok()?;
        topics.push(name.to_string());
        rest = &rest[2 + len..];
    }
    Some((time, topics))
}

/// What one transaction changed in the writer's state.
struct Written {
    last_seq: u64,
    dropped_up_to: u64,
    /// Events pruned.
    pruned: usize,
    sweep_at: u64,
}

impl Writer {
    fn run(&mut self, queue: &Queue) {
        // With an age limit, wake up now and then to prune while nothing is published.
        let tick = self
            .retention
            .age
            .map(|age| (age / 4).clamp(Duration::from_millis(100), Duration::from_secs(5)));
        loop {
            let batches = {
                let mut state = lock(&queue.state);
                while state.batches.is_empty() && !state.closed {
                    match tick {
                        Some(t) => {
                            let (s, timeout) = queue
                                .wake
                                .wait_timeout(state, t)
                                .unwrap_or_else(PoisonError::into_inner);
                            state = s;
                            if timeout.timed_out() {
                                break;
                            }
                        }
                        None => {
                            state = queue
                                .wake
                                .wait(state)
                                .unwrap_or_else(PoisonError::into_inner)
                        }
                    }
                }
                if state.batches.is_empty() && state.closed {
                    return;
                }
                std::mem::take(&mut state.batches)
            };
            if batches.is_empty() {
                if self.failed.is_none() {
                    match std::panic::catch_unwind(AssertUnwindSafe(|| self.commit(&[]))) {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::warn!("history: pruning failed: {e}"),
                        Err(_) => tracing::warn!("history: pruning panicked"),
                    }
                }
                continue;
            }
            let result = match &self.failed {
                Some(e) => Err(e.clone()),
                None => {
                    let records: Vec<&Record> = batches.iter().flat_map(|(r, _)| r).collect();
                    // A panic inside the database is a failed write like any other.
                    let path = self.path.clone();
                    std::panic::catch_unwind(AssertUnwindSafe(|| self.commit(&records)))
                        .unwrap_or_else(|_| {
                            Err(StoreError(format!(
                                "{}: cannot write the history: the database writer panicked",
                                path.display()
                            )))
                        })
                        .inspect_err(|e| {
                            tracing::error!("{e}; refusing further publishes");
                            self.failed = Some(e.clone());
                        })
                }
            };
            for (_, done) in batches {
                let result = result.clone();
                if std::panic::catch_unwind(AssertUnwindSafe(|| done(result))).is_err() {
                    tracing::error!("history: a publish's completion panicked");
                }
            }
        }
    }

    /// Writes `records` and prunes in one transaction, then commits it to disk.
    fn commit(&mut self, records: &[&Record]) -> Result<(), StoreError> {
        let fail = |e: &dyn std::fmt::Display| {
            StoreError(format!(
                "{}: cannot write the history: {e}",
                self.path.display()
            ))
        };
        let txn = self.db.begin_write().map_err(|e| fail(&e))?;
        let written = self.write(&txn, records).map_err(|e| fail(&e))?;
        if records.is_empty() && written.pruned == 0 {
            txn.abort().map_err(|e| fail(&e))?;
            return Ok(());
        }
        txn.commit().map_err(|e| fail(&e))?;
        self.last_seq = written.last_seq;
        self.dropped_up_to = written.dropped_up_to;
        self.sweep_at = written.sweep_at;
        Ok(())
    }

    fn write(&self, txn: &WriteTransaction, records: &[&Record]) -> Result<Written, redb::Error> {
        let mut events = txn.open_table(EVENTS)?;
        let mut by_topic = txn.open_table(BY_TOPIC)?;
        let mut pruned_at = txn.open_table(PRUNED)?;
        let mut meta = txn.open_table(META)?;
        let now = now_ms();
        let mut last_seq = self.last_seq;
        let mut dropped_up_to = self.dropped_up_to;
        for r in records {
            events.insert(r.seq, encode_entry(now, &r.topics).as_slice())?;
            for t in &r.topics {
                // A topic's pruning mark starts where a topic with nothing left would be, so a
                // replay on it from before then is told it may have missed events.
                if pruned_at.get(t.as_str())?.is_none() {
                    pruned_at.insert(t.as_str(), dropped_up_to)?;
                }
                by_topic.insert((t.as_str(), r.seq), r.bytes.as_ref())?;
            }
            last_seq = last_seq.max(r.seq);
        }
        // Retention: the newest `events`, none older than `age`.
        let keep_from = last_seq.saturating_sub(self.retention.events as u64) + 1;
        let age_cut = self.retention.age.map_or(0, |age| {
            now.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX))
        });
        let mut marks: HashMap<String, u64> = HashMap::new();
        let mut pruned = 0;
        while pruned < records.len() + PRUNE_BUDGET {
            let Some((seq, entry)) = events
                .first()?
                .map(|(k, v)| (k.value(), decode_entry(v.value())))
            else {
                break;
            };
            let (time, topics) = entry.unwrap_or_default();
            if seq >= keep_from && time >= age_cut {
                break;
            }
            events.remove(seq)?;
            for t in topics {
                by_topic.remove((t.as_str(), seq))?;
                marks.insert(t, seq);
            }
            pruned += 1;
        }
        for (t, seq) in &marks {
            pruned_at.insert(t.as_str(), *seq)?;
        }
        // Topics with nothing left keep their mark (a reader of another topic is not told of
        // their losses) until the table has doubled; then they are forgotten, keeping only the
        // newest of their marks as the global one, so ever-new topics do not grow the table.
        let mut sweep_at = self.sweep_at;
        if pruned_at.len()? > sweep_at {
            let mut idle = Vec::new();
            for item in pruned_at.iter()? {
                let (k, v) = item?;
                let t = k.value();
                if by_topic.range((t, 0)..=(t, u64::MAX))?.next().is_none() {
                    idle.push((t.to_string(), v.value()));
                }
            }
            for (t, mark) in idle {
                pruned_at.remove(t.as_str())?;
                dropped_up_to = dropped_up_to.max(mark);
            }
            sweep_at = (pruned_at.len()? * 2).max(MIN_SWEEP);
        }
        if !records.is_empty() {
            meta.insert("last_seq", last_seq.to_string().as_str())?;
        }
        if dropped_up_to != self.dropped_up_to {
            meta.insert("dropped_up_to", dropped_up_to.to_string().as_str())?;
        }
        Ok(Written {
            last_seq,
            dropped_up_to,
            pruned,
            sweep_at,
        })
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
        topics: &'a [Topic],
        after: u64,
        upto: u64,
        limit: ReadLimit,
    ) -> StoreFuture<'a, Replay> {
        let db = self.db.clone();
        let path = self.path.clone();
        let topics: Vec<Topic> = topics.to_vec();
        Box::pin(async move {
            let read = move || read_range(&db, &topics, after, upto, limit);
            let result = match tokio::runtime::Handle::try_current() {
                // Reads may touch the disk: keep them off the async workers.
                Ok(_) => tokio::task::spawn_blocking(read)
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string())),
                Err(_) => read().map_err(|e| e.to_string()),
            };
            result.map_err(|e| {
                StoreError(format!("{}: cannot read the history: {e}", path.display()))
            })
        })
    }
}

fn read_range(
    db: &Database,
    topics: &[Topic],
    after: u64,
    upto: u64,
    limit: ReadLimit,
) -> Result<Replay, redb::Error> {
    let max_events = limit.events.max(1);
    let mut replay = Replay {
        events: Vec::new(),
        cursor: upto.max(after),
        lost: false,
    };
    if upto <= after {
        return Ok(replay);
    }
    let txn = db.begin_read()?;
    let by_topic = txn.open_table(BY_TOPIC)?;
    let pruned_at = txn.open_table(PRUNED)?;
    let meta = txn.open_table(META)?;
    let dropped_up_to: u64 = meta
        .get("dropped_up_to")?
        .and_then(|v| v.value().parse().ok())
        .unwrap_or_default();
    // Like the memory log's merge: each topic's share, merged by sequence number; a topic whose
    // share was cut by the limit holds back everything past its last event.
    let mut merged: Vec<(u64, Bytes)> = Vec::new();
    let mut cut = upto;
    for t in topics {
        let mark = pruned_at
            .get(t.as_str())?
            .map_or(dropped_up_to, |v| v.value());
        replay.lost |= mark > after;
        let (mut taken, mut bytes) = (0, 0);
        for item in by_topic.range((t.as_str(), after + 1)..=(t.as_str(), upto))? {
            let (k, v) = item?;
            let seq = k.value().1;
            let len = v.value().len();
            if taken == max_events || (taken > 0 && bytes + len > limit.bytes) {
                cut = cut.min(seq - 1);
                break;
            }
            merged.push((seq, Bytes::copy_from_slice(v.value())));
            taken += 1;
            bytes += len;
        }
    }
    merged.sort_unstable_by_key(|(seq, _)| *seq);
    merged.dedup_by_key(|(seq, _)| *seq);
    merged.retain(|(seq, _)| *seq <= cut);
    let (mut keep, mut bytes) = (0, 0);
    for (_, b) in &merged {
        if keep == max_events || (keep > 0 && bytes + b.len() > limit.bytes) {
            break;
        }
        keep += 1;
        bytes += b.len();
    }
    if keep < merged.len() {
        merged.truncate(keep);
        cut = merged.last().map_or(cut, |(seq, _)| *seq);
    }
    replay.cursor = cut;
    replay.events = merged
        .into_iter()
        .map(|(seq, bytes)| StoredEvent { seq, bytes })
        .collect();
    Ok(replay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> Topic {
        Topic::new(name).unwrap()
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ssehub-disk-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn append(disk: &Disk, seq: u64, topics: &[&str]) {
        let (tx, rx) = std::sync::mpsc::channel();
        let record = Record {
            seq,
            topics: topics.iter().map(|t| topic(t)).collect(),
            bytes: Bytes::from(format!("id: {seq}\ndata: {seq}\n\n")),
        };
        disk.append(
            vec![record],
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.recv().unwrap().unwrap();
    }

    fn read(
        disk: &Disk,
        topics: &[&str],
        after: u64,
        upto: u64,
        limit: usize,
    ) -> (Vec<u64>, u64, bool) {
        let topics: Vec<Topic> = topics.iter().map(|t| topic(t)).collect();
        let r = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(disk.read_after(
                &topics,
                after,
                upto,
                ReadLimit {
                    events: limit,
                    bytes: usize::MAX,
                },
            ))
            .unwrap();
        (r.events.iter().map(|e| e.seq).collect(), r.cursor, r.lost)
    }

    #[test]
    fn keeps_epoch_and_numbering_across_opens() {
        let d = dir("reopen");
        let epoch = {
            let disk = Disk::open(&d, Retention::default()).unwrap();
            for seq in 1..=5 {
                append(&disk, seq, &["a"]);
            }
            disk.origin().epoch
        };
        let disk = Disk::open(&d, Retention::default()).unwrap();
        assert_eq!(disk.origin().epoch, epoch);
        assert_eq!(disk.origin().next_seq, 6);
        assert_eq!(read(&disk, &["a"], 2, 5, 100), (vec![3, 4, 5], 5, false));
        drop(disk);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn merges_topics_and_cuts_at_the_limit() {
        let d = dir("merge");
        let disk = Disk::open(&d, Retention::default()).unwrap();
        append(&disk, 1, &["a"]);
        append(&disk, 2, &["b"]);
        append(&disk, 3, &["a", "b"]);
        append(&disk, 4, &["c"]);
        append(&disk, 5, &["b"]);
        assert_eq!(
            read(&disk, &["a", "b"], 0, 5, 100),
            (vec![1, 2, 3, 5], 5, false)
        );
        // "b" is cut after 2 events (2, 3): nothing past 3 may be handed out yet.
        assert_eq!(read(&disk, &["a", "b"], 0, 5, 2), (vec![1, 2], 2, false));
        assert_eq!(read(&disk, &["a", "b"], 2, 5, 2), (vec![3, 5], 5, false));
        assert_eq!(read(&disk, &["c"], 0, 3, 100), (vec![], 3, false));
        drop(disk);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn prunes_by_count_per_topic_precisely() {
        let d = dir("prune");
        let disk = Disk::open(
            &d,
            Retention {
                events: 3,
                age: None,
            },
        )
        .unwrap();
        append(&disk, 1, &["quiet"]);
        for seq in 2..=6 {
            append(&disk, seq, &["busy"]);
        }
        // Kept: 4, 5, 6. "quiet" lost event 1; "busy" lost 2 and 3 only.
        assert_eq!(read(&disk, &["busy"], 3, 6, 100), (vec![4, 5, 6], 6, false));
        assert_eq!(read(&disk, &["busy"], 1, 6, 100), (vec![4, 5, 6], 6, true));
        assert_eq!(read(&disk, &["quiet"], 0, 6, 100), (vec![], 6, true));
        assert_eq!(read(&disk, &["quiet"], 1, 6, 100), (vec![], 6, false));
        drop(disk);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn another_topic_emptied_is_no_loss_for_mine() {
        let d = dir("others");
        let disk = Disk::open(
            &d,
            Retention {
                events: 5,
                age: None,
            },
        )
        .unwrap();
        append(&disk, 1, &["b"]);
        append(&disk, 2, &["a"]);
        for seq in 3..=7 {
            append(&disk, seq, &["b"]);
        }
        // "a" lost everything it had; "c" never had anything; "b" lost event 1 only.
        assert_eq!(
            read(&disk, &["b", "c"], 1, 7, 100),
            (vec![3, 4, 5, 6, 7], 7, false)
        );
        assert_eq!(read(&disk, &["a"], 1, 7, 100), (vec![], 7, true));
        assert!(read(&disk, &["b"], 0, 7, 100).2);
        drop(disk);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn marks_of_idle_topics_are_swept_into_the_global_one() {
        let d = dir("sweep");
        let disk = Disk::open(
            &d,
            Retention {
                events: 10,
                age: None,
            },
        )
        .unwrap();
        let n = 3 * MIN_SWEEP;
        let names: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
        // One commit with every event, so the test stays quick.
        let (tx, rx) = std::sync::mpsc::channel();
        let records = names
            .iter()
            .enumerate()
            .map(|(i, t)| Record {
                seq: i as u64 + 1,
                topics: vec![topic(t)],
                bytes: Bytes::from_static(b"data: x\n\n"),
            })
            .collect();
        disk.append(records, Box::new(move |r| tx.send(r).unwrap()));
        rx.recv().unwrap().unwrap();
        for seq in n + 1..=n + 3 {
            append(&disk, seq, &["last"]);
        }
        let txn = disk.db.begin_read().unwrap();
        let marks = txn.open_table(PRUNED).unwrap().len().unwrap();
        assert!(marks < 2 * MIN_SWEEP, "{marks} marks kept");
        // A swept topic is still told it lost events (conservatively, through the global mark).
        assert!(read(&disk, &["t0"], 0, n + 3, 100).2);
        drop(txn);
        drop(disk);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_history_at_the_end_of_the_id_space_is_refused() {
        let d = dir("maxseq");
        drop(Disk::open(&d, Retention::default()).unwrap());
        {
            let db = Database::create(d.join(FILE_NAME)).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert("last_seq", u64::MAX.to_string().as_str())
                .unwrap();
            txn.commit().unwrap();
        }
        let e = Disk::open(&d, Retention::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("last_seq") && e.contains(FILE_NAME), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn prunes_by_age_in_the_background() {
        let d = dir("age");
        let keep = Retention {
            events: 100,
            age: Some(Duration::from_millis(300)),
        };
        let disk = Disk::open(&d, keep).unwrap();
        append(&disk, 1, &["a"]);
        append(&disk, 2, &["a"]);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while read(&disk, &["a"], 0, 2, 100).0.len() == 2 {
            assert!(std::time::Instant::now() < deadline, "nothing was pruned");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(read(&disk, &["a"], 0, 2, 100), (vec![], 2, true));
        drop(disk);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn refuses_foreign_and_corrupt_files_naming_them() {
        let d = dir("foreign");
        std::fs::create_dir_all(&d).unwrap();
        let file = d.join(FILE_NAME);
        std::fs::write(&file, "this is not a database\n".repeat(300)).unwrap();
        let e = Disk::open(&d, Retention::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains(&file.display().to_string()), "{e}");
        std::fs::remove_file(&file).unwrap();

        // A redb database that is not ours.
        {
            let db = Database::create(&file).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn
                    .open_table(TableDefinition::<&str, &str>::new("theirs"))
                    .unwrap();
                t.insert("k", "v").unwrap();
            }
            txn.commit().unwrap();
        }
        let e = Disk::open(&d, Retention::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("theirs") && e.contains(&file.display().to_string()),
            "{e}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn entries_round_trip() {
        let topics = vec![topic("a"), topic("ünï")];
        let raw = encode_entry(42, &topics);
        assert_eq!(
            decode_entry(&raw),
            Some((42, vec!["a".into(), "ünï".into()]))
        );
        assert_eq!(decode_entry(&raw[..raw.len() - 1]), None);
    }
}

#[cfg(test)]
mod read_properties {
    //! Reading the file in pieces, under any limits, gives exactly the events on the topics in
    //! the range, in order, each once, and each piece within its limits.

    use super::*;
    use proptest::prelude::*;

    const TOPICS: [&str; 3] = ["a", "b", "c"];

    /// The topics in a bit mask of `TOPICS`.
    pub(super) fn names(mask: u8) -> Vec<Topic> {
        TOPICS
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, t)| Topic::new(t).unwrap())
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn pieces_add_up_to_the_range(
            events in prop::collection::vec((1u8..8, 1usize..60), 1..60),
            reader in 1u8..8,
            bounds in (0usize..60, 0usize..60),
            max_events in 1usize..6,
            max_bytes in 1usize..150,
        ) {
            static CASE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = CASE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("ssehub-readprop-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let disk = Disk::open(&dir, Retention { events: 1000, age: None }).unwrap();
            let records: Vec<Record> = events
                .iter()
                .enumerate()
                .map(|(i, (mask, size))| Record {
                    seq: i as u64 + 1,
                    topics: names(*mask),
                    bytes: Bytes::from(vec![b'x'; *size]),
                })
                .collect();
            let (tx, rx) = std::sync::mpsc::channel();
            disk.append(records, Box::new(move |r| tx.send(r).unwrap()));
            rx.recv().unwrap().unwrap();

            let last = events.len() as u64;
            let (a, b) = (bounds.0 as u64 % (last + 1), bounds.1 as u64 % (last + 1));
            let (after, upto) = (a.min(b), a.max(b));
            let want: Vec<u64> = (after + 1..=upto)
                .filter(|s| events[*s as usize - 1].0 & reader != 0)
                .collect();
            let topics = names(reader);
            let limit = ReadLimit { events: max_events, bytes: max_bytes };
            let mut got = Vec::new();
            let mut cursor = after;
            while cursor < upto {
                let r = read_range(&disk.db, &topics, cursor, upto, limit).unwrap();
                prop_assert!(r.cursor > cursor, "no progress from {}", cursor);
                prop_assert!(!r.lost);
                prop_assert!(r.events.len() <= max_events);
                let bytes: usize = r.events.iter().map(|e| e.bytes.len()).sum();
                prop_assert!(r.events.len() <= 1 || bytes <= max_bytes);
                for e in &r.events {
                    prop_assert!(e.seq > cursor && e.seq <= r.cursor);
                    got.push(e.seq);
                }
                cursor = r.cursor;
            }
            prop_assert_eq!(got, want);
            drop(disk);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

#[cfg(test)]
mod properties {
    //! A hub on a disk store with a small memory window, under any interleaving of publishes,
    //! reads, resumes and restarts: every subscriber gets the events on its topics in order and
    //! at most once, and every event it misses is announced by a `gap` where the hole is.

    use super::*;
    use crate::{Event, Hub, SubscribeRequest, Subscription};
    use proptest::prelude::*;

    use super::read_properties::names;

    #[derive(Debug, Clone)]
    enum Op {
        /// Publish a batch; each event on the topics in its bit mask.
        Publish(Vec<u8>),
        /// Subscriber `sub` takes what is ready.
        Read(usize),
        /// Subscriber `sub` goes away and comes back with the last id it got.
        Resume(usize),
        /// The hub stops and starts again on the same file.
        Restart,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => prop::collection::vec(1u8..8, 1..6).prop_map(Op::Publish),
            3 => (0usize..3).prop_map(Op::Read),
            1 => (0usize..3).prop_map(Op::Resume),
            1 => Just(Op::Restart),
        ]
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Got {
        Event(u64),
        Gap,
    }

    struct Sub {
        mask: u8,
        /// Sequence numbers after this one are owed (set when it first subscribed).
        from: u64,
        got: Vec<Got>,
        last_id: Option<String>,
        live: Option<Subscription>,
    }

    fn open(hub: &Hub, sub: &mut Sub) {
        let mut request = SubscribeRequest::new(names(sub.mask));
        match &sub.last_id {
            Some(id) => request = request.resume_after(id.clone()),
            // Without an id to resume from, it starts live: only what comes next is owed.
            None => sub.from = hub.next_seq() - 1,
        }
        sub.live = Some(hub.subscribe(request).unwrap());
    }

    /// Takes what the subscription hands out within `wait`; false if it ended.
    async fn take(epoch: &str, sub: &mut Sub, wait: Duration) -> bool {
        let Some(live) = sub.live.as_mut() else {
            return true;
        };
        loop {
            let mut out = Vec::new();
            match tokio::time::timeout(wait, live.next(&mut out)).await {
                Err(_) => return true,
                Ok(Err(_)) => return false,
                Ok(Ok(())) => {}
            }
            for bytes in out {
                let text = std::str::from_utf8(&bytes).unwrap();
                if text.starts_with("event: gap") {
                    sub.got.push(Got::Gap);
                } else if let Some(id) = text.lines().next().and_then(|l| l.strip_prefix("id: ")) {
                    let (e, seq) = id.rsplit_once('-').unwrap();
                    assert_eq!(e, epoch, "ids keep their history across restarts");
                    sub.got.push(Got::Event(seq.parse().unwrap()));
                    sub.last_id = Some(id.to_string());
                }
            }
        }
    }

    fn run(history: usize, memory: usize, masks: [u8; 3], ops: Vec<Op>) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            static CASE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = CASE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("ssehub-prop-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let keep = Retention {
                events: history,
                age: None,
            };
            let build = || {
                // A read cancelled by the test's timeouts may still hold the file a moment.
                let mut tries = 0;
                let disk = loop {
                    match Disk::open(&dir, keep) {
                        Ok(disk) => break disk,
                        Err(e) if tries < 200 && e.to_string().contains("in use") => {
                            tries += 1;
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(e) => panic!("{e}"),
                    }
                };
                Hub::builder()
                    .history(history)
                    .memory_history(memory)
                    .heartbeat(None)
                    .batch_window(Duration::ZERO)
                    .store(Arc::new(disk))
                    .build()
            };
            let mut hub = build();
            let epoch = hub.epoch().as_str().to_string();
            // Every published event's topic mask, by sequence number.
            let mut published: Vec<(u64, u8)> = Vec::new();
            let mut subs: Vec<Sub> = masks
                .iter()
                .map(|&mask| Sub {
                    mask,
                    from: 0,
                    got: Vec::new(),
                    last_id: None,
                    live: None,
                })
                .collect();
            for sub in &mut subs {
                open(&hub, sub);
            }
            let wait = Duration::from_millis(3);
            for op in ops {
                match op {
                    Op::Publish(batch) => {
                        let events = batch
                            .iter()
                            .map(|&m| {
                                names(m)
                                    .into_iter()
                                    .fold(Event::new("x"), Event::with_checked_topic)
                            })
                            .collect();
                        let receipt = hub.publish(events).await.unwrap();
                        for (id, &m) in receipt.ids.iter().zip(&batch) {
                            published.push((id.rsplit_once('-').unwrap().1.parse().unwrap(), m));
                        }
                    }
                    Op::Read(i) => {
                        if !take(&epoch, &mut subs[i], wait).await {
                            open(&hub, &mut subs[i]);
                        }
                    }
                    Op::Resume(i) => {
                        subs[i].live = None;
                        open(&hub, &mut subs[i]);
                    }
                    Op::Restart => {
                        for sub in &mut subs {
                            sub.live = None;
                        }
                        drop(hub);
                        hub = build();
                        for sub in &mut subs {
                            open(&hub, sub);
                        }
                    }
                }
            }
            for sub in &mut subs {
                while !take(&epoch, sub, Duration::from_millis(100)).await {
                    open(&hub, sub);
                }
                // In order, each at most once.
                let seqs: Vec<u64> = sub
                    .got
                    .iter()
                    .filter_map(|g| match g {
                        Got::Event(s) => Some(*s),
                        Got::Gap => None,
                    })
                    .collect();
                assert!(seqs.windows(2).all(|w| w[0] < w[1]), "order: {:?}", sub.got);
                for &s in &seqs {
                    let m = published.iter().find(|(p, _)| *p == s).map(|(_, m)| *m);
                    assert!(
                        m.is_some_and(|m| m & sub.mask != 0),
                        "{s} is not on its topics"
                    );
                }
                // Every owed event it did not get falls in a hole that a gap announced.
                for &(s, m) in &published {
                    if s <= sub.from || m & sub.mask == 0 || seqs.contains(&s) {
                        continue;
                    }
                    let after = sub
                        .got
                        .iter()
                        .position(|g| matches!(g, Got::Event(x) if *x > s));
                    let before = sub.got[..after.unwrap_or(sub.got.len())]
                        .iter()
                        .rposition(|g| matches!(g, Got::Event(x) if *x < s))
                        .map_or(0, |p| p + 1);
                    let hole = &sub.got[before..after.unwrap_or(sub.got.len())];
                    assert!(
                        hole.contains(&Got::Gap),
                        "event {s} was lost silently (history {history}, memory {memory}): {:?}",
                        sub.got
                    );
                }
            }
            drop(subs);
            drop(hub);
            let _ = std::fs::remove_dir_all(&dir);
        });
    }

    proptest! {
        // Each case writes a real file (a commit per publish): few by default, more on demand.
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("SSEHUB_DISK_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24)
        ))]

        #[test]
        fn nothing_is_lost_silently_across_restarts(
            history in 2usize..40,
            memory in 1usize..12,
            masks in [1u8..8, 1u8..8, 1u8..8],
            ops in prop::collection::vec(op(), 1..40),
        ) {
            run(history, memory, masks, ops);
        }
    }
}
