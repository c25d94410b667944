//! The writer thread: it takes every queued batch, writes them and prunes in one transaction,
//! commits (one fsync for all), then reports each batch done in order.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableTable, ReadableTableMetadata, WriteTransaction};

use super::format::{decode_entry, encode_entry, BY_TOPIC, EVENTS, IDS, META, PRUNED};
use super::{lock, Retention};
use crate::store::{Done, Record, StoreError};

/// Events pruned per transaction at most, beyond what the batch itself pushes out, so that
/// lowering the retention between runs is caught up gradually instead of stalling one commit.
const PRUNE_BUDGET: usize = 4096;
/// The pruning-mark table is swept of topics with nothing left once it has this many entries,
/// at least.
pub(super) const MIN_SWEEP: u64 = 4096;

pub(super) struct Queue {
    pub(super) state: Mutex<Pending>,
    pub(super) wake: Condvar,
}

#[derive(Default)]
pub(super) struct Pending {
    pub(super) batches: Vec<(Vec<Record>, Done)>,
    pub(super) closed: bool,
}

/// The writer thread's own state.
pub(super) struct Writer {
    pub(super) db: Arc<Database>,
    pub(super) path: PathBuf,
    pub(super) retention: Retention,
    pub(super) last_seq: u64,
    pub(super) dropped_up_to: u64,
    /// The newest event pruned, from any topic (what a read of every topic checks).
    pub(super) pruned_up_to: u64,
    /// The pruning-mark table is swept of idle topics past this many entries.
    pub(super) sweep_at: u64,
    /// Set by the first failed commit: every later batch fails with it, so nothing after a lost
    /// batch is ever acknowledged.
    pub(super) failed: Option<StoreError>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// Ends the writer's queue: closes it and fails what is in it. Runs when the writer thread
/// ends, even by a panic, so no publish waits for a commit that will never come.
pub(super) struct FailPending(pub(super) Arc<Queue>);

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

/// What one transaction changed in the writer's state.
struct Written {
    last_seq: u64,
    dropped_up_to: u64,
    pruned_up_to: u64,
    /// Events pruned.
    pruned: usize,
    sweep_at: u64,
}

impl Writer {
    pub(super) fn run(&mut self, queue: &Queue) {
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
        self.pruned_up_to = written.pruned_up_to;
        self.sweep_at = written.sweep_at;
        Ok(())
    }

    fn write(&self, txn: &WriteTransaction, records: &[&Record]) -> Result<Written, redb::Error> {
        let mut events = txn.open_table(EVENTS)?;
        let mut by_topic = txn.open_table(BY_TOPIC)?;
        let mut pruned_at = txn.open_table(PRUNED)?;
        let mut ids = txn.open_table(IDS)?;
        let mut meta = txn.open_table(META)?;
        let now = now_ms();
        let mut last_seq = self.last_seq;
        let mut dropped_up_to = self.dropped_up_to;
        let mut pruned_up_to = self.pruned_up_to;
        for r in records {
            let id = r.id.as_deref();
            events.insert(
                r.seq,
                encode_entry(now, &r.topics, r.private, id).as_slice(),
            )?;
            if let Some(id) = id {
                ids.insert(id, r.seq)?;
            }
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
            let entry = entry.unwrap_or_default();
            if seq >= keep_from && entry.time_ms >= age_cut {
                break;
            }
            events.remove(seq)?;
            for t in entry.topics {
                by_topic.remove((t.as_str(), seq))?;
                marks.insert(t, seq);
            }
            if let Some(id) = &entry.id {
                // Unless a later event took the id over (the hub refuses duplicates, but the
                // index must not lose a retained event's id if one slipped through).
                if ids.get(id.as_str())?.is_some_and(|v| v.value() == seq) {
                    ids.remove(id.as_str())?;
                }
            }
            pruned_up_to = pruned_up_to.max(seq);
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
        if pruned_up_to != self.pruned_up_to {
            meta.insert("pruned_up_to", pruned_up_to.to_string().as_str())?;
        }
        Ok(Written {
            last_seq,
            dropped_up_to,
            pruned_up_to,
            pruned,
            sweep_at,
        })
    }
}
