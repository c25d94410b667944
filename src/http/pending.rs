//! Connections waiting for a request head: new ones, and kept-alive ones between requests.
//!
//! Such a connection costs a socket, a task and a head buffer while proving nothing, so their
//! number is bounded twice: per client address (past it, a new connection from that address is
//! refused with `429`) and overall (past it, the connection that has waited longest is closed to
//! make room). Evicting the oldest rather than refusing the newest keeps the hub open to real
//! clients during a flood of silent connections from many addresses: a real client sends its
//! head within a round trip, long before it could become the oldest.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

use super::per_ip::{IpGuard, PerIp};

/// The waiting connections, at most `max` overall and `per_ip.max()` per address.
pub(crate) struct Pending {
    max: usize,
    per_ip: Arc<PerIp>,
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    /// Oldest first. Entries whose wait ended stay until they reach the front or a compaction.
    waiting: VecDeque<Arc<Waiter>>,
    live: usize,
}

#[derive(Default)]
struct Waiter {
    /// The wait is over (head read, connection gone, or evicted).
    ended: AtomicBool,
    evicted: Notify,
}

/// The address already has as many waiting connections as it may.
#[derive(Debug)]
pub(crate) struct TooManyFromAddress;

impl Pending {
    /// At most `max` waiting connections overall (at least 1), `max_per_ip` per address (0: no
    /// per-address limit).
    pub(crate) fn new(max: usize, max_per_ip: usize) -> Arc<Pending> {
        Arc::new(Pending {
            max: max.max(1),
            per_ip: PerIp::new(max_per_ip),
            queue: Mutex::new(Queue::default()),
        })
    }

    /// Starts counting a connection from `ip` as waiting; closes the longest-waiting one if that
    /// passes the overall bound.
    pub(crate) fn start(&self, ip: IpAddr) -> Result<Waiting<'_>, TooManyFromAddress> {
        let ip_guard = self.per_ip.try_acquire(ip).ok_or(TooManyFromAddress)?;
        let waiter = Arc::new(Waiter::default());
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        while queue.live >= self.max {
            let Some(oldest) = queue.waiting.pop_front() else {
                break;
            };
            if !oldest.ended.swap(true, Ordering::AcqRel) {
                queue.live -= 1;
                // Stored as a permit if the connection is not polling right now.
                oldest.evicted.notify_one();
            }
        }
        // Ended entries are skipped lazily; keep them from piling up under churn.
        if queue.waiting.len() >= 64 && queue.waiting.len() > 2 * queue.live {
            queue.waiting.retain(|w| !w.ended.load(Ordering::Acquire));
        }
        queue.waiting.push_back(waiter.clone());
        queue.live += 1;
        drop(queue);
        Ok(Waiting {
            pending: self,
            waiter,
            _ip: ip_guard,
        })
    }

    /// Connections waiting now.
    pub(crate) fn live(&self) -> usize {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .live
    }
}

/// One waiting connection. Dropping it (the head arrived, or the connection is gone) stops the
/// count.
pub(crate) struct Waiting<'a> {
    pending: &'a Pending,
    waiter: Arc<Waiter>,
    _ip: IpGuard,
}

impl Waiting<'_> {
    /// Resolves if this connection is closed to make room for newer ones. Cancel safe.
    pub(crate) async fn evicted(&self) {
        self.waiter.evicted.notified().await;
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if !self.waiter.ended.swap(true, Ordering::AcqRel) {
            let mut queue = self
                .pending
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            queue.live -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn per_address_refuses_and_overall_evicts_the_oldest() {
        let pending = Pending::new(3, 2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let c: IpAddr = "127.0.0.3".parse().unwrap();
        let first = pending.start(a).unwrap();
        let second = pending.start(a).unwrap();
        assert!(pending.start(a).is_err(), "a third from one address");
        let third = pending.start(b).unwrap();
        assert_eq!(pending.live(), 3);
        // The fourth overall evicts the first, not the newest.
        let fourth = pending.start(c).unwrap();
        assert_eq!(pending.live(), 3);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(1), first.evicted())
                .await
                .expect("the oldest was evicted");
            for other in [&second, &third, &fourth] {
                assert!(
                    tokio::time::timeout(Duration::from_millis(20), other.evicted())
                        .await
                        .is_err()
                );
            }
        });
        drop(first);
        assert_eq!(pending.live(), 3, "an evicted connection is counted once");
        drop((second, third, fourth));
        assert_eq!(pending.live(), 0);
        // Churn without eviction leaves the queue small.
        for _ in 0..1000 {
            drop(pending.start(a).unwrap());
        }
        assert!(pending.queue.lock().unwrap().waiting.len() < 130);
    }
}
