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

// In its own file for length; its tests keep their path (and its seeds are tests_disk.txt).
#[cfg(feature = "durable")]
#[path = "tests_disk.rs"]
mod on_disk_properties;
