//! A simulated cluster: masters with their own (skewed, monotonic) clocks, publishers adding to
//! shards at any time, and hubs reading in rounds at any time. Every hub must release the same
//! entries in the same order, each once, in place order, and all of them in the end.

use super::*;
use proptest::prelude::*;

/// One master: its clock and the streams of its shards.
struct Master {
    now: u64,
    /// Per shard on this master: its entries (ms, n), in the order added.
    streams: BTreeMap<u16, Vec<(u64, u64)>>,
}

impl Master {
    /// `XADD *`: the entry's id from this master's clock (Redis: never below the stream's last).
    fn add(&mut self, shard: u16) -> (u64, u64) {
        let stream = self.streams.entry(shard).or_default();
        let id = match stream.last() {
            Some(&(ms, n)) if ms >= self.now => (ms, n + 1),
            _ => (self.now, 0),
        };
        stream.push(id);
        id
    }
}

/// A hub's reader: how far it has read each shard.
struct Hub {
    merge: Merge<Place>,
    read_upto: BTreeMap<u16, usize>,
    out: Vec<Place>,
}

impl Hub {
    /// One round on `master`: `TIME`, then `XREAD` of its shards.
    fn round(&mut self, master: usize, masters: &[Master]) {
        let m = &masters[master];
        self.merge.complete_below(master, m.now);
        for (&shard, stream) in &m.streams {
            let from = self.read_upto.entry(shard).or_default();
            for &(ms, n) in &stream[*from..] {
                self.merge.read(shard, ms, n, Place { ms, shard, n });
            }
            *from = stream.len();
        }
        self.out
            .extend(self.merge.release().into_iter().map(|(_, p)| p));
    }
}

#[derive(Debug, Clone)]
enum Step {
    /// A master's clock moves on.
    Tick(usize, u64),
    /// An entry is added to a shard (on its master).
    Add(u16),
    /// A hub reads one master.
    Read(usize, usize),
}

fn step(masters: usize, shards: u16) -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => (0..masters, 0u64..3).prop_map(|(m, d)| Step::Tick(m, d)),
        3 => (0..shards).prop_map(Step::Add),
        2 => (0usize..2, 0..masters).prop_map(|(h, m)| Step::Read(h, m)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn every_hub_releases_everything_once_in_the_same_order(
        skew in proptest::collection::vec(0u64..5, 3),
        steps in proptest::collection::vec(step(3, 5), 1..300),
    ) {
        // Five shards on three masters, each master's clock starting elsewhere.
        let master_of: Vec<usize> = (0..5).map(|s| s % 3).collect();
        let mut masters: Vec<Master> = skew
            .iter()
            .map(|&s| Master { now: 100 + s, streams: BTreeMap::new() })
            .collect();
        let mut hubs: Vec<Hub> = (0..2)
            .map(|_| Hub { merge: Merge::new(master_of.clone()), read_upto: BTreeMap::new(), out: Vec::new() })
            .collect();
        let mut added = Vec::new();
        for s in steps {
            match s {
                Step::Tick(m, d) => masters[m].now += d,
                Step::Add(shard) => {
                    let (ms, n) = masters[master_of[shard as usize]].add(shard);
                    added.push(Place { ms, shard, n });
                }
                Step::Read(h, m) => hubs[h].round(m, &masters),
            }
        }
        // Every clock moves past every entry; each hub reads every master once more.
        let past = masters.iter().map(|m| m.now).max().unwrap_or(0) + 1;
        for m in &mut masters {
            m.now = m.now.max(past);
        }
        for hub in &mut hubs {
            for m in 0..masters.len() {
                hub.round(m, &masters);
            }
            // In place order, each once, nothing late (the clocks never stepped back).
            prop_assert!(hub.out.windows(2).all(|w| w[0] < w[1]), "{:?}", hub.out);
            prop_assert_eq!(hub.merge.late(), 0);
            prop_assert_eq!(hub.merge.waiting(), 0);
        }
        added.sort();
        prop_assert_eq!(&hubs[0].out, &added);
        prop_assert_eq!(&hubs[1].out, &added);
    }
}

#[test]
fn a_master_that_has_not_answered_holds_everything_back() {
    let mut merge = Merge::new(vec![0, 1, 1]);
    merge.read(0, 5, 0, ());
    merge.complete_below(0, 100);
    assert_eq!(merge.horizon(), None);
    assert!(merge.release().is_empty());
    merge.complete_below(1, 6);
    assert_eq!(merge.release().len(), 1);
    // A clock seen stepping back keeps what was complete.
    merge.complete_below(1, 3);
    assert_eq!(merge.horizon(), Some(6));
}

#[test]
fn an_entry_below_what_was_released_goes_out_late_not_lost() {
    let mut merge = Merge::new(vec![0]);
    merge.read(0, 10, 0, "a");
    merge.complete_below(0, 20);
    assert_eq!(merge.release().len(), 1);
    // A master whose clock stepped back by hand hands out an earlier millisecond.
    merge.read(0, 9, 0, "late");
    let out = merge.release();
    assert_eq!(out.len(), 1);
    assert_eq!(merge.late(), 1);
}

#[test]
fn ids_read_back_only_in_their_own_spelling() {
    let place = Place {
        ms: 7,
        shard: 3,
        n: 0,
    };
    assert_eq!(place.id("e"), "e-7-0-3");
    assert_eq!(place.stream_id(), "7-0");
    for bad in [
        "e-07-0-3",
        "e-7-0-3-1",
        "e-7-0",
        "e-+7-0-3",
        "e-7-0-70000",
        "f-7-0-3",
    ] {
        assert_eq!(Place::parse("e", bad), None, "{bad}");
    }
}
