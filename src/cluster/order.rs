//! The cluster-wide order of events read from several Redis streams (see `docs/cluster.md`).
//!
//! Each shard is one stream; Redis numbers its entries `ms-n` from its master's clock. An
//! event's [`Place`] is `(ms, shard, n)`, and every hub delivers in place order. A hub may
//! release an entry only once no entry can still appear before it: a master's `TIME`, asked
//! *before* reading its shards, says that every entry of those shards with a millisecond below
//! it has been read. [`Merge`] keeps what was read and releases, in place order, what lies below
//! the smallest such time over all masters.

use std::collections::BTreeMap;
use std::fmt;

/// Where an event stands in the cluster-wide order: compared by millisecond, then shard, then
/// its number within the millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Place {
    /// The millisecond its master's clock gave it.
    pub ms: u64,
    /// Its shard.
    pub shard: u16,
    /// Its number within that millisecond, in its shard.
    pub n: u64,
}

impl Place {
    /// Below every event of a history (Redis' stream ids start at `0-1`): "after" it is the
    /// whole history, which is where "now" stands before the history has an event.
    ///
    /// ```
    /// use ssehub::cluster::Place;
    /// assert!(Place::BEFORE_ALL < Place { ms: 0, shard: 0, n: 1 });
    /// ```
    pub const BEFORE_ALL: Place = Place {
        ms: 0,
        shard: 0,
        n: 0,
    };

    /// The place with the longest id: size checks count an event's id at its longest.
    ///
    /// ```
    /// use ssehub::cluster::Place;
    /// assert_eq!(Place::LONGEST.id("3f2a9c01b2c4").len(), 12 + 3 + 20 + 20 + 5);
    /// ```
    pub const LONGEST: Place = Place {
        ms: u64::MAX,
        shard: u16::MAX,
        n: u64::MAX,
    };

    /// The id a subscriber sees for the event at this place in history `epoch`:
    /// `<epoch>-<ms>-<n>-<shard>`.
    ///
    /// ```
    /// use ssehub::cluster::Place;
    /// let place = Place { ms: 1700000000123, shard: 5, n: 2 };
    /// assert_eq!(place.id("3f2a9c01b2c4"), "3f2a9c01b2c4-1700000000123-2-5");
    /// assert_eq!(Place::parse("3f2a9c01b2c4", &place.id("3f2a9c01b2c4")), Some(place));
    /// assert_eq!(Place::parse("000000000000", &place.id("3f2a9c01b2c4")), None);
    /// ```
    pub fn id(&self, epoch: &str) -> String {
        format!("{epoch}-{}-{}-{}", self.ms, self.n, self.shard)
    }

    /// Reads an id of history `epoch` back (example at [`id`](Self::id)). Only the canonical
    /// spelling counts (no sign, no leading zero).
    pub fn parse(epoch: &str, id: &str) -> Option<Place> {
        let rest = id.strip_prefix(epoch)?.strip_prefix('-')?;
        let mut parts = rest.split('-');
        let ms = canonical(parts.next()?)?;
        let n = canonical(parts.next()?)?;
        let shard = u16::try_from(canonical(parts.next()?)?).ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Place { ms, shard, n })
    }

    /// The Redis stream id of this place (`ms-n`).
    pub fn stream_id(&self) -> String {
        format!("{}-{}", self.ms, self.n)
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}@{}", self.ms, self.n, self.shard)
    }
}

/// A number written as this crate writes it: digits, no leading zero (except `0` itself).
fn canonical(text: &str) -> Option<u64> {
    let value = text.parse::<u64>().ok()?;
    (value.to_string() == text).then_some(value)
}

/// What was read from the shards and not released yet, and how far each master is complete.
///
/// ```
/// use ssehub::cluster::{Merge, Place};
/// // Two shards on two masters.
/// let mut merge = Merge::new(vec![0, 1]);
/// merge.read(1, 10, 0, "b");
/// merge.read(0, 11, 0, "c");
/// merge.complete_below(0, 12);
/// // Master 1 has not said how far it is complete: nothing can go yet.
/// assert!(merge.release().is_empty());
/// merge.complete_below(1, 11);
/// // Below 11 on both masters: only "b".
/// let out: Vec<_> = merge.release().into_iter().map(|(_, item)| item).collect();
/// assert_eq!(out, ["b"]);
/// ```
#[derive(Debug)]
pub struct Merge<T> {
    /// Per shard, its master.
    master_of: Vec<usize>,
    /// Per master, the millisecond below which its shards have all been read (`None` until its
    /// first `TIME`).
    complete: Vec<Option<u64>>,
    waiting: BTreeMap<Place, T>,
    /// The newest place released: an entry read at or before it arrived late.
    released: Option<Place>,
    late: u64,
}

impl<T> Merge<T> {
    /// A merge of shards `0..master_of.len()`, shard `k` living on master `master_of[k]`.
    pub fn new(master_of: Vec<usize>) -> Merge<T> {
        let masters = master_of.iter().map(|m| m + 1).max().unwrap_or(0);
        Merge {
            master_of,
            complete: vec![None; masters],
            waiting: BTreeMap::new(),
            released: None,
            late: 0,
        }
    }

    /// An entry read from `shard`, with Redis id `ms-n`.
    pub fn read(&mut self, shard: u16, ms: u64, n: u64, item: T) {
        self.waiting.insert(Place { ms, shard, n }, item);
    }

    /// `master` answered `TIME` with this millisecond before its shards were read: everything
    /// of its shards below it has been read.
    pub fn complete_below(&mut self, master: usize, ms: u64) {
        if let Some(c) = self.complete.get_mut(master) {
            // A clock that steps back does not take back what was complete.
            *c = Some(c.map_or(ms, |old| old.max(ms)));
        }
    }

    /// The millisecond below which every shard is complete, if every master has said.
    pub fn horizon(&self) -> Option<u64> {
        self.complete.iter().copied().min().flatten()
    }

    /// Takes the entries that can go, in place order. An entry placed at or before one already
    /// released (a master whose clock stepped back) goes out at once, out of order, counted in
    /// [`late`](Self::late): late rather than lost.
    pub fn release(&mut self) -> Vec<(Place, T)> {
        let Some(horizon) = self.horizon() else {
            return Vec::new();
        };
        let keep = self.waiting.split_off(&Place {
            ms: horizon,
            shard: 0,
            n: 0,
        });
        let out: Vec<(Place, T)> = std::mem::replace(&mut self.waiting, keep)
            .into_iter()
            .collect();
        for (place, _) in &out {
            if self.released.is_some_and(|r| *place <= r) {
                self.late += 1;
            }
        }
        if let Some((last, _)) = out.last() {
            self.released = Some(self.released.map_or(*last, |r| r.max(*last)));
        }
        out
    }

    /// Entries read and not released yet.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Entries released out of order so far (see [`release`](Self::release)).
    pub fn late(&self) -> u64 {
        self.late
    }

    /// How many shards.
    pub fn shards(&self) -> usize {
        self.master_of.len()
    }
}

#[cfg(test)]
mod tests;
