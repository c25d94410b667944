//! A hub on a disk store with a small memory window, under any interleaving of publishes,
//! reads, resumes and restarts: every subscriber gets the events on its topics in order and
//! at most once, and every event it misses is announced by a `gap` where the hole is.

use super::*;
use crate::store::{Disk, Retention};
use crate::Topic;
use proptest::prelude::*;
use std::time::Duration;

const TOPICS: [&str; 3] = ["a", "b", "c"];

/// The topics in a bit mask of `TOPICS`.
fn names(mask: u8) -> Vec<Topic> {
    TOPICS
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, t)| Topic::new(t).unwrap())
        .collect()
}

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
                    Err(e) if tries < 1000 && e.to_string().contains("in use") => {
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
            // Read until the newest event it is owed has come: a replay from the file on a
            // loaded machine can outlast any fixed wait, and stopping short would look like
            // a loss. A hub that never delivers it fails below, after the deadline.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                let newest = published
                    .iter()
                    .rev()
                    .find(|&&(s, m)| s > sub.from && m & sub.mask != 0);
                if newest.is_none_or(|&(s, _)| sub.got.contains(&Got::Event(s))) {
                    break;
                }
                if !take(&epoch, sub, Duration::from_millis(100)).await {
                    open(&hub, sub);
                }
            }
            // Then whatever else it hands out at once (a duplicate would show here).
            while !take(&epoch, sub, Duration::from_millis(20)).await {
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
                let (got, from) = (&sub.got, sub.from);
                assert!(
                    hole.contains(&Got::Gap),
                    "event {s} was lost silently (history {history}, memory {memory}, owed \
                     after {from}): {got:?} of {published:?}"
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
