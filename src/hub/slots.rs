//! The client table: a fixed number of stream slots.
//!
//! A slot is reserved with a compare-and-swap before a stream starts, so a burst of concurrent
//! connects can never push the count past the limit, and released when its guard is dropped
//! (socket closed, write failed, stream ended, hub shutting down).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A fixed number of slots.
#[derive(Debug)]
pub(crate) struct Slots {
    max: usize,
    used: AtomicUsize,
}

impl Slots {
    pub(crate) fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            max,
            used: AtomicUsize::new(0),
        })
    }

    /// Takes a slot if one is free.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<SlotGuard> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < self.max).then_some(used + 1)
            })
            .ok()
            .map(|_| SlotGuard(self.clone()))
    }

    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }
}

/// One reserved slot; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct SlotGuard(Arc<Slots>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_race_never_exceeds_the_limit() {
        let slots = Slots::new(10);
        let held: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        (0..100)
                            .filter_map(|_| slots.try_acquire())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        assert_eq!(held.len(), 10);
        assert_eq!(slots.used(), 10);
        drop(held);
        assert_eq!(slots.used(), 0);
        assert!(slots.try_acquire().is_some());
    }
}
