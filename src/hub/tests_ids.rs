//! Duplicate publisher ids on a durable store, with the interleaving that once let one through
//! forced: the second publish's look in the store misses the first's event (not durable yet),
//! then the event becomes durable and leaves memory before the second publish looks there.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::event::Event;
use crate::store::{Done, Origin, ReadLimit, Record, Replay, Scope, StoreFuture};

/// Keeps every batch until the test commits it; its id lookups can be held after they looked.
struct Gated {
    epoch: Epoch,
    pending: Mutex<Vec<(Vec<Record>, Done)>>,
    ids: Mutex<HashMap<String, u64>>,
    hold: AtomicBool,
    parked: AtomicUsize,
    release: tokio::sync::Semaphore,
}

impl crate::store::sealed::Sealed for Gated {}

impl Store for Gated {
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
        self.pending.lock().unwrap().push((records, done));
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
    fn find_id<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<u64>> {
        let found = self.ids.lock().unwrap().get(id).copied();
        Box::pin(async move {
            if self.hold.load(Ordering::SeqCst) {
                self.parked.fetch_add(1, Ordering::SeqCst);
                self.release.acquire().await.unwrap().forget();
            }
            Ok(found)
        })
    }
}

impl Gated {
    /// Waits until `n` batches are pending (or 5 s passed).
    async fn waiting(&self, n: usize) {
        for _ in 0..500 {
            if self.pending.lock().unwrap().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Makes every pending batch durable: its ids are found from now on.
    fn commit_all(&self) {
        let batches: Vec<_> = self.pending.lock().unwrap().drain(..).collect();
        for (records, done) in batches {
            for r in &records {
                if let Some(id) = &r.id {
                    self.ids.lock().unwrap().insert(id.to_string(), r.seq);
                }
            }
            done(Ok(()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_made_durable_and_evicted_between_two_looks_is_still_refused() {
    let store = Arc::new(Gated {
        epoch: Epoch::random(),
        pending: Mutex::default(),
        ids: Mutex::default(),
        hold: AtomicBool::new(false),
        parked: AtomicUsize::new(0),
        release: tokio::sync::Semaphore::new(0),
    });
    let hub = Hub::builder()
        .memory_history(1)
        .store(store.clone())
        .build();
    let publish = |data: &'static str| {
        let hub = hub.clone();
        tokio::spawn(async move {
            let event = Event::new(data).with_topic("a")?.with_id("order-1")?;
            hub.publish(vec![event]).await
        })
    };
    // The first is in memory, waiting for the store.
    let first = publish("first");
    store.waiting(1).await;
    // The second looks in the store (nothing durable yet) and is held there, unless refused
    // before it looked.
    store.hold.store(true, Ordering::SeqCst);
    let second = publish("second");
    for _ in 0..500 {
        if second.is_finished() || store.parked.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Meanwhile the first becomes durable, and a later event pushes it out of memory.
    store.hold.store(false, Ordering::SeqCst);
    store.commit_all();
    let later = {
        let hub = hub.clone();
        tokio::spawn(async move { hub.publish_one(Event::new("later").with_topic("b")?).await })
    };
    store.waiting(1).await;
    store.commit_all();
    later.await.unwrap().unwrap();
    assert_eq!(
        hub.inner.log.seq_of("order-1"),
        None,
        "the first left memory"
    );
    store.release.add_permits(1);
    // Accepted, it would wait for the store: commit whatever comes.
    for _ in 0..500 {
        store.commit_all();
        if second.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let second = second.await.unwrap();
    assert!(first.await.unwrap().is_ok());
    assert!(
        matches!(second, Err(PublishError::DuplicateId(_))),
        "{second:?}"
    );
}
