//! Tests of the log, and its property tests.

use super::*;
use crate::hub::access::Access;

/// A filter that admits every public event.
fn open() -> Access {
    Access::new(None, None, &[])
}

fn topic(name: &str) -> Topic {
    Topic::new(name).unwrap()
}

fn publish(log: &Log, epoch: &Epoch, data: &str, topics: &[&str]) -> u64 {
    let rings: Vec<_> = topics.iter().map(|t| log.topic(&topic(t))).collect();
    log.append(
        epoch,
        &[Event::new(data)],
        std::slice::from_ref(&rings),
        &rings,
    )
    .unwrap()[0]
        .0
}

fn read_all(log: &Log, topics: &[&str], mut after: u64, max: usize) -> (Vec<String>, bool) {
    let rings: Vec<_> = topics.iter().map(|t| log.topic(&topic(t))).collect();
    let mut out = Vec::new();
    let mut evicted = false;
    loop {
        let before = out.len();
        let r = log.read(&rings, &open(), after, usize::MAX, max, &mut out);
        evicted |= r.evicted;
        if out.len() == before {
            break;
        }
        assert!(r.cursor > after);
        after = r.cursor;
    }
    let data = out
        .iter()
        .map(|b| {
            let s = std::str::from_utf8(b).unwrap();
            s.lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap()
                .to_string()
        })
        .collect();
    (data, evicted)
}

#[test]
fn old_events_age_out() {
    let log = Log::new(100, 1).with_max_age(Some(Duration::from_millis(50)));
    let e = Epoch::random();
    publish(&log, &e, "1", &["a"]);
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(log.retained(), 1);
    log.expire();
    assert_eq!(log.retained(), 0);
    publish(&log, &e, "2", &["a"]);
    assert_eq!(read_all(&log, &["a"], 0, 10), (vec!["2".to_string()], true));
    std::thread::sleep(Duration::from_millis(80));
    // Publishing ages the log out too.
    publish(&log, &e, "3", &["b"]);
    assert_eq!(log.retained(), 1);
}

#[test]
fn merges_topics_in_order_once() {
    let log = Log::new(100, 1);
    let e = Epoch::random();
    publish(&log, &e, "1", &["a"]);
    publish(&log, &e, "2", &["b"]);
    publish(&log, &e, "3", &["a", "b"]);
    publish(&log, &e, "4", &["c"]);
    publish(&log, &e, "5", &["b"]);
    for max in [1, 2, 3, 100] {
        assert_eq!(
            read_all(&log, &["a", "b"], 0, max).0,
            ["1", "2", "3", "5"],
            "max {max}"
        );
        assert_eq!(read_all(&log, &["b", "a"], 1, max).0, ["2", "3", "5"]);
        assert_eq!(read_all(&log, &["a"], 0, max).0, ["1", "3"]);
    }
}

#[test]
fn eviction_is_global_and_reported_per_topic() {
    let log = Log::new(3, 1);
    let e = Epoch::random();
    publish(&log, &e, "1", &["a"]);
    publish(&log, &e, "2", &["b"]);
    publish(&log, &e, "3", &["b"]);
    publish(&log, &e, "4", &["b"]);
    // "1" left the history: a reader of "a" from the start lost it, a reader of "b" did not.
    assert_eq!(read_all(&log, &["a"], 0, 10), (vec![], true));
    assert_eq!(
        read_all(&log, &["b"], 0, 10),
        (vec!["2".into(), "3".into(), "4".into()], false)
    );
    assert_eq!(log.retained(), 3);
    let b = log.topic(&topic("b"));
    let backlog = log.backlog(&[b], &open(), 2);
    assert_eq!((backlog.events, backlog.evicted), (2, false));
}

/// Encoded length of an event with data `data` and a one-digit sequence number.
fn encoded(epoch: &Epoch, data: &str) -> u64 {
    encode(&epoch.id(1), &Event::new(data)).len() as u64
}

#[test]
fn eviction_by_bytes_counts_each_event_once_and_is_reported_per_topic() {
    let e = Epoch::random();
    let len = encoded(&e, "0123456789");
    // Room for three events, far from the event limit.
    let log = Log::new(100, 1).with_max_bytes(3 * len + len / 2);
    publish(&log, &e, "1123456789", &["a"]);
    publish(&log, &e, "2123456789", &["a", "b"]);
    publish(&log, &e, "3123456789", &["b"]);
    // The event on two topics shares one buffer and is counted once.
    assert_eq!((log.retained(), log.retained_bytes()), (3, 3 * len));
    publish(&log, &e, "4123456789", &["b"]);
    assert_eq!((log.retained(), log.retained_bytes()), (3, 3 * len));
    // "1" left: a reader of "a" from the start is told, a reader of "b" lost nothing.
    assert_eq!(
        read_all(&log, &["a"], 0, 10),
        (vec!["2123456789".into()], true)
    );
    let (b, lost) = read_all(&log, &["b"], 0, 10);
    assert_eq!((b.len(), lost), (3, false));
}

#[test]
fn a_batch_larger_than_the_bytes_limit_is_refused_whole() {
    let e = Epoch::random();
    let len = encoded(&e, "x");
    let log = Log::new(100, 1).with_max_bytes(2 * len);
    publish(&log, &e, "x", &["a"]);
    let a = vec![log.topic(&topic("a"))];
    let three = [Event::new("y"), Event::new("y"), Event::new("y")];
    let refused = log.append(&e, &three, &[a.clone(), a.clone(), a.clone()], &a);
    assert_eq!(
        refused,
        Err(Refused::TooLarge(TooLarge {
            bytes: 3 * len,
            limit: 2 * len
        }))
    );
    // Nothing was numbered, placed or evicted.
    assert_eq!((log.next_seq(), log.retained()), (2, 1));
    assert_eq!(read_all(&log, &["a"], 0, 10), (vec!["x".into()], false));
    // A batch that fits exactly is taken, and pushes out what came before it.
    let two = [Event::new("z"), Event::new("z")];
    assert!(log.append(&e, &two, &[a.clone(), a.clone()], &a).is_ok());
    assert_eq!(log.retained_bytes(), 2 * len);
    assert_eq!(
        read_all(&log, &["a"], 0, 10),
        (vec!["z".into(), "z".into()], true)
    );
}

#[test]
fn deferred_events_are_evicted_once_readable() {
    let e = Epoch::random();
    let len = encoded(&e, "x");
    let log = Log::new(100, 1).with_max_bytes(2 * len);
    let a = vec![log.topic(&topic("a"))];
    let mut submit = |_: &[(u64, Bytes)]| {};
    log.append_deferred(
        &e,
        &[Event::new("x")],
        std::slice::from_ref(&a),
        &mut submit,
    )
    .unwrap();
    let two = [Event::new("x"), Event::new("x")];
    log.append_deferred(&e, &two, &[a.clone(), a.clone()], &mut submit)
        .unwrap();
    // Nothing is readable yet, so nothing may leave memory: over the limit for now.
    assert_eq!(log.retained_bytes(), 3 * len);
    log.make_readable(1, &a);
    assert_eq!((log.retained(), log.retained_bytes()), (2, 2 * len));
    log.make_readable(3, &a);
    assert_eq!(log.retained_bytes(), 2 * len);
}

#[cfg(feature = "cluster")]
#[test]
fn relayed_events_are_never_refused_and_their_ids_indexed() {
    // "id: x\ndata: again\n\n" is 19 bytes: one fits, two do not.
    let log = Log::new(100, 1).with_max_bytes(25);
    let e = Epoch::random();
    let rings = vec![log.topic(&topic("a"))];
    let relay = |data: &str, id: &str| {
        let event = Event::new(data).with_id(id).unwrap();
        log.append_relayed(&e, &[event], std::slice::from_ref(&rings), &rings);
    };
    // Larger than the bytes bound: taken (and evicted at once), not refused.
    relay("more than twenty-five bytes", "x");
    relay("again", "x");
    assert_eq!(read_all(&log, &["a"], 0, 10).0, ["again"]);
    // The same id again (two hubs took it): delivered, and the id now names the newer event,
    // even once the older one leaves.
    relay("again", "x");
    assert_eq!(log.seq_of("x"), Some(3));
    // Until the newer one leaves too.
    relay("third", "y");
    assert_eq!((log.seq_of("x"), log.seq_of("y")), (None, Some(4)));
}

#[test]
fn idle_topics_are_dropped_and_their_losses_remembered() {
    let log = Log::new(10, 1);
    let e = Epoch::random();
    let kept = log.topic(&topic("kept")); // a subscriber holds it
    for i in 0..5000 {
        publish(&log, &e, "x", &[&format!("t{i}")]);
    }
    // At most the sweep threshold's worth of topics stayed; the held one is among them.
    assert!(log.topic_count() <= 2 * MIN_SWEEP, "{}", log.topic_count());
    assert!(Arc::ptr_eq(&kept, &log.topic(&topic("kept"))));
    // "t0" was dropped after losing its event: made anew, it still knows that much.
    let t0 = log.topic(&topic("t0"));
    assert!(read!(t0.ring).evicted_up_to >= 1);
}

#[test]
fn reads_stop_at_the_committed_mark() {
    let log = Log::new(10, 1);
    let e = Epoch::random();
    publish(&log, &e, "1", &["a"]);
    let a = log.topic(&topic("a"));
    let mut out = Vec::new();
    let r = log.read(std::slice::from_ref(&a), &open(), 1, 1000, 10, &mut out);
    assert_eq!((r.cursor, out.len()), (1, 0));
}

mod properties {
    //! Any interleaving of publishes, partial reads and resumes gives each subscriber every
    //! event on its topics exactly once, in order; with eviction (by count or by bytes), every
    //! read that skips an event says so.

    use super::*;
    use proptest::prelude::*;

    const TOPICS: [&str; 4] = ["a", "b", "c", "d"];

    #[derive(Debug, Clone)]
    enum Op {
        /// Publish a batch; each event on the topics in its bit mask, with that much data.
        Publish(Vec<(u8, usize)>),
        /// Subscriber `sub` reads at most `max_events` / `max_bytes`.
        Read {
            sub: usize,
            max_events: usize,
            max_bytes: usize,
        },
        /// Subscriber `sub` goes away and comes back with the last id it got.
        Resume { sub: usize },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            prop::collection::vec((1u8..16, 0usize..60), 1..4).prop_map(Op::Publish),
            (0usize..3, 1usize..6, 1usize..400).prop_map(|(sub, max_events, max_bytes)| Op::Read {
                sub,
                max_events,
                max_bytes
            }),
            (0usize..3).prop_map(|sub| Op::Resume { sub }),
        ]
    }

    fn seq_of(bytes: &Bytes) -> u64 {
        let text = std::str::from_utf8(bytes).unwrap();
        let id = text.lines().next().unwrap().strip_prefix("id: ").unwrap();
        id.rsplit_once('-').unwrap().1.parse().unwrap()
    }

    struct Reader {
        mask: u8,
        cursor: u64,
        got: Vec<u64>,
        lost: bool,
    }

    fn rings(log: &Log, mask: u8) -> Vec<Arc<TopicLog>> {
        (0..4)
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| log.topic(&Topic::new(TOPICS[i]).unwrap()))
            .collect()
    }

    /// One read; any event for this reader that it passed over without getting must be
    /// announced by the read itself. Returns whether it got anything.
    fn read(
        log: &Log,
        published: &[(u64, u8)],
        r: &mut Reader,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<bool, TestCaseError> {
        let mut out = Vec::new();
        let done = log.read(
            &rings(log, r.mask),
            &open(),
            r.cursor,
            max_bytes,
            max_events,
            &mut out,
        );
        let got: Vec<u64> = out.iter().map(seq_of).collect();
        prop_assert!(done.cursor >= r.cursor);
        let skipped = published
            .iter()
            .filter(|(s, m)| m & r.mask != 0 && *s > r.cursor && *s <= done.cursor)
            .any(|(s, _)| !got.contains(s));
        prop_assert!(
            !skipped || done.evicted,
            "events skipped silently after {}",
            r.cursor
        );
        r.lost |= done.evicted;
        r.got.extend(&got);
        r.cursor = done.cursor;
        Ok(!out.is_empty())
    }

    fn run(
        history: usize,
        max_bytes: u64,
        masks: [u8; 3],
        ops: Vec<Op>,
    ) -> Result<(), TestCaseError> {
        let log = Log::new(history, 1).with_max_bytes(max_bytes);
        let epoch = Epoch::random();
        let mut published: Vec<(u64, u8)> = Vec::new();
        let mut readers: Vec<Reader> = masks
            .iter()
            .map(|&mask| Reader {
                mask,
                cursor: 0,
                got: Vec::new(),
                lost: false,
            })
            .collect();
        for op in ops {
            match op {
                Op::Publish(batch) => {
                    let events: Vec<Event> = batch
                        .iter()
                        .map(|&(_, n)| Event::new("x".repeat(n)))
                        .collect();
                    let placed: Vec<_> = batch.iter().map(|&(m, _)| rings(&log, m)).collect();
                    let touched = rings(&log, batch.iter().fold(0, |all, (m, _)| all | m));
                    let next = log.next_seq();
                    match log.append(&epoch, &events, &placed, &touched) {
                        Ok(appended) => {
                            for ((seq, _), &(m, _)) in appended.iter().zip(&batch) {
                                published.push((*seq, m));
                            }
                        }
                        Err(e) => {
                            // Refused whole: nothing numbered.
                            let Refused::TooLarge(e) = e else {
                                return Err(TestCaseError::fail("refused for another reason"));
                            };
                            prop_assert!(e.bytes > max_bytes);
                            prop_assert_eq!(log.next_seq(), next);
                        }
                    }
                    let order = lock!(log.order);
                    let counted: u64 = order.retained.iter().map(|r| r.len).sum();
                    prop_assert_eq!(order.bytes, counted);
                    prop_assert!(order.bytes <= max_bytes && order.retained.len() <= history);
                }
                Op::Read {
                    sub,
                    max_events,
                    max_bytes,
                } => {
                    read(&log, &published, &mut readers[sub], max_events, max_bytes)?;
                }
                Op::Resume { sub } => {
                    // A new connection resumes from the last id it got (or from the start).
                    let r = &mut readers[sub];
                    r.cursor = r.got.last().copied().unwrap_or(0);
                }
            }
        }
        for r in &mut readers {
            while read(&log, &published, r, 7, 300)? {}
            let want: Vec<u64> = published
                .iter()
                .filter(|(_, m)| m & r.mask != 0)
                .map(|(s, _)| *s)
                .collect();
            // In order, each once.
            prop_assert!(
                r.got.windows(2).all(|w| w[0] < w[1]),
                "out of order or twice: {:?}",
                r.got
            );
            if r.lost {
                // What it got is what was published for it, minus what it was told it lost.
                prop_assert!(r.got.iter().all(|s| want.contains(s)));
            } else {
                prop_assert_eq!(&r.got, &want);
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn every_event_once_in_order(masks in [1u8..16, 1u8..16, 1u8..16], ops in prop::collection::vec(op(), 0..60)) {
            run(10_000, u64::MAX, masks, ops)?;
        }

        #[test]
        fn with_eviction_nothing_is_lost_silently(masks in [1u8..16, 1u8..16, 1u8..16], ops in prop::collection::vec(op(), 0..60)) {
            run(5, u64::MAX, masks, ops)?;
        }

        /// Events encode to 27 to 88 bytes: 200 bytes hold 2 to 7 of them, and a batch of
        /// three can be too large.
        #[test]
        fn with_eviction_by_bytes_nothing_is_lost_silently(masks in [1u8..16, 1u8..16, 1u8..16], ops in prop::collection::vec(op(), 0..60)) {
            run(10_000, 200, masks, ops)?;
        }

        #[test]
        fn with_both_limits_nothing_is_lost_silently(masks in [1u8..16, 1u8..16, 1u8..16], ops in prop::collection::vec(op(), 0..60)) {
            run(4, 150, masks, ops)?;
        }
    }
}
