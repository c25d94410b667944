//! Tests of the hub: publishing, the durable path, the bound on batches waiting for a store, and
//! a hub on a disk store under any interleaving of publishes, reads, resumes and restarts.

use super::*;
use crate::event::Event;
use crate::store::Record;

mod publish_tests {
    use super::*;

    fn on_topics(n: usize) -> Event {
        (0..n).fold(Event::new("x"), |e, i| {
            e.with_topic(&format!("t{i}")).expect("a good topic")
        })
    }

    #[tokio::test]
    async fn an_event_on_too_many_topics_refuses_the_whole_batch() {
        let hub = Hub::builder().max_topics_per_event(3).build();
        let mut sub = hub
            .subscribe(SubscribeRequest::topics(["t0"]).expect("a good topic"))
            .expect("room");
        let refused = hub.publish(vec![on_topics(1), on_topics(4)]).await;
        assert!(
            matches!(
                refused,
                Err(PublishError::TooManyTopics { given: 4, max: 3 })
            ),
            "{refused:?}"
        );
        assert_eq!(hub.stats().published_total, 0);
        assert_eq!(hub.next_seq(), 1, "no sequence number was taken");
        // At the limit, and with duplicates that bring it under, it goes through.
        let dup = on_topics(3).with_topic("t1").expect("a good topic");
        let receipt = hub
            .publish(vec![on_topics(3), dup])
            .await
            .expect("published");
        assert_eq!((receipt.ids.len(), receipt.subscribers), (2, 1));
        let mut out = Vec::new();
        sub.next(&mut out).await.expect("the opening");
        out.clear();
        sub.next(&mut out).await.expect("the events");
        assert_eq!(out.len(), 2);
    }

    #[tokio::test]
    async fn each_topic_of_a_batch_is_counted_once() {
        let hub = Hub::builder().build();
        let _subs: Vec<_> = ["t0", "t15"]
            .iter()
            .map(|t| {
                hub.subscribe(SubscribeRequest::topics([*t]).expect("a good topic"))
                    .expect("room")
            })
            .collect();
        // Few topics (the list) and many (the set).
        for (n, want) in [(3, 1), (20, 2)] {
            let receipt = hub
                .publish(vec![on_topics(n), on_topics(n), on_topics(n)])
                .await
                .expect("published");
            assert_eq!(receipt.subscribers, want, "{n} topics");
        }
    }
}

#[cfg(feature = "durable")]
mod durable {
    use super::*;
    use crate::store::{Disk, Retention};
    use std::sync::atomic::AtomicUsize;

    /// The store's writer thread, making a batch readable, can hold the last reference to the
    /// hub (every handle dropped, the publisher given up): it then drops the store on its own
    /// thread, which must not try to join itself.
    #[test]
    fn the_store_writer_may_drop_the_last_hub() {
        static WRITER_PANICS: AtomicUsize = AtomicUsize::new(0);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some("ssehub-history") {
                WRITER_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let dir = std::env::temp_dir().join(format!("ssehub-lasthub-{}", std::process::id()));
        for _ in 0..20 {
            let _ = std::fs::remove_dir_all(&dir);
            let disk = Disk::open(&dir, Retention::default()).unwrap();
            let hub = Hub::builder().store(Arc::new(disk)).build();
            // Many topics: waking them keeps the writer inside the callback a little longer.
            let event = (0..64).fold(Event::new("x"), |e, i| {
                e.with_topic(&format!("t{i}")).unwrap()
            });
            let before = hub.inner.log.committed();
            let publisher = hub.clone();
            let task = runtime.spawn(async move {
                let _ = publisher.publish(vec![event]).await;
            });
            while hub.next_seq() == before + 1 {
                std::thread::yield_now();
            }
            task.abort();
            while !task.is_finished() {
                std::thread::yield_now();
            }
            while hub.inner.log.committed() == before {
                std::hint::spin_loop();
            }
            drop(hub);
        }
        std::thread::sleep(Duration::from_millis(200));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(WRITER_PANICS.load(Ordering::SeqCst), 0);
    }
}

mod in_flight {
    //! The bound on bytes waiting for the store, with a store that commits when told to.

    use super::*;
    use crate::store::{Done, Origin, ReadLimit, Replay, Scope, StoreFuture};
    use std::sync::Mutex;

    /// Keeps every batch until the test completes it.
    struct Held {
        epoch: Epoch,
        pending: Mutex<Vec<(usize, Done)>>,
    }

    impl crate::store::sealed::Sealed for Held {}

    impl Store for Held {
        fn origin(&self) -> Origin {
            Origin {
                epoch: self.epoch.clone(),
                next_seq: 1,
            }
        }
        fn keeps_events(&self) -> bool {
            true
        }
        fn append(&self, records: Vec<Record>, done: Done) {
            self.pending.lock().unwrap().push((records.len(), done));
        }
        fn read_after<'a>(
            &'a self,
            _: Scope<'a>,
            _: u64,
            upto: u64,
            _: ReadLimit,
        ) -> StoreFuture<'a, Replay> {
            Box::pin(std::future::ready(Ok(Replay {
                events: Vec::new(),
                cursor: upto,
                lost: false,
            })))
        }
        fn find_id<'a>(&'a self, _: &'a str) -> StoreFuture<'a, Option<u64>> {
            Box::pin(std::future::ready(Ok(None)))
        }
    }

    impl Held {
        /// The sizes of the batches waiting, once that many are waiting (or after 5 s).
        async fn waiting(&self, n: usize) -> Vec<usize> {
            for _ in 0..500 {
                if self.pending.lock().unwrap().len() >= n {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            self.now()
        }

        /// The sizes of the batches waiting now.
        fn now(&self) -> Vec<usize> {
            self.pending.lock().unwrap().iter().map(|b| b.0).collect()
        }

        /// Commits the oldest waiting batch.
        fn commit_one(&self) {
            let (_, done) = self.pending.lock().unwrap().remove(0);
            done(Ok(()));
        }
    }

    /// `n` events whose encoded size, ids at their longest, is 146 bytes each.
    fn batch(n: usize) -> Vec<Event> {
        (0..n).map(|_| Event::new("x".repeat(100))).collect()
    }

    #[tokio::test]
    async fn large_batches_wait_for_the_disk_and_an_oversized_one_goes_alone() {
        let store = Arc::new(Held {
            epoch: Epoch::random(),
            pending: Mutex::new(Vec::new()),
        });
        let hub = Hub::builder()
            .store(store.clone())
            .in_flight_bytes(1000)
            .build();
        let publish = |n| {
            let hub = hub.clone();
            tokio::spawn(async move { hub.publish(batch(n)).await })
        };
        // 876 bytes each: the second waits until the first is committed.
        let first = publish(6);
        assert_eq!(store.waiting(1).await, [6]);
        let second = publish(6);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(store.now(), [6], "the second batch went past the bound");
        store.commit_one();
        assert_eq!(first.await.unwrap().unwrap().ids.len(), 6);
        assert_eq!(store.waiting(1).await, [6]);
        // 2,920 bytes, more than the whole bound: it waits for the disk to be idle, goes alone,
        // and whoever comes after it waits.
        let oversized = publish(20);
        let after = publish(1);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(store.now(), [6]);
        store.commit_one();
        assert_eq!(second.await.unwrap().unwrap().ids.len(), 6);
        assert_eq!(store.waiting(1).await, [20]);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(store.now(), [20]);
        store.commit_one();
        assert_eq!(oversized.await.unwrap().unwrap().ids.len(), 20);
        assert_eq!(store.waiting(1).await, [1]);
        store.commit_one();
        assert_eq!(after.await.unwrap().unwrap().ids.len(), 1);
    }
}

#[cfg(feature = "durable")]
mod on_disk_properties {
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
