//! One batch at a time from a stream's task to its response body. A tokio `mpsc` channel would
//! do, but allocates a block of 32 slots per channel (this slot took 1.5 KiB off each idle
//! HTTP/2 stream, BENCHMARKS.md). This is that one slot, a lock and two wakers.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures_util::Stream;

#[derive(Default)]
struct State {
    batch: Option<Bytes>,
    /// The body was dropped (the client went away or the connection ended).
    taker_gone: bool,
    /// The stream's task ended: the body ends once it took the last batch.
    giver_gone: bool,
    taker: Option<Waker>,
    giver: Option<Waker>,
}

type Shared = Arc<Mutex<State>>;

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A slot for one batch: the task's end and the body's end.
pub(super) fn handoff() -> (Giver, Taker) {
    let shared = Shared::default();
    (Giver(shared.clone()), Taker(shared))
}

/// The stream task's end.
pub(super) struct Giver(Shared);

/// The body lets go: it was dropped.
#[derive(Debug)]
pub(super) struct Gone;

impl Giver {
    /// Resolves once the body was dropped. Cancel safe.
    pub(super) async fn closed(&self) {
        std::future::poll_fn(|cx| {
            let mut state = lock(&self.0);
            if state.taker_gone {
                return Poll::Ready(());
            }
            state.giver = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Resolves once the slot is free (the body took the last batch), or the body is gone.
    /// Cancel safe.
    pub(super) async fn room(&self) -> Result<(), Gone> {
        std::future::poll_fn(|cx| {
            let mut state = lock(&self.0);
            if state.taker_gone {
                return Poll::Ready(Err(Gone));
            }
            if state.batch.is_none() {
                return Poll::Ready(Ok(()));
            }
            state.giver = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Puts a batch in the (free) slot.
    pub(super) fn give(&self, batch: Bytes) {
        let mut state = lock(&self.0);
        state.batch = Some(batch);
        if let Some(waker) = state.taker.take() {
            waker.wake();
        }
    }
}

impl Drop for Giver {
    fn drop(&mut self) {
        let mut state = lock(&self.0);
        state.giver_gone = true;
        if let Some(waker) = state.taker.take() {
            waker.wake();
        }
    }
}

/// The body's end: a stream of batches, ending after the task's last one.
pub(super) struct Taker(Shared);

impl Stream for Taker {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut state = lock(&self.0);
        if let Some(batch) = state.batch.take() {
            if let Some(waker) = state.giver.take() {
                waker.wake();
            }
            return Poll::Ready(Some(Ok(batch)));
        }
        if state.giver_gone {
            return Poll::Ready(None);
        }
        state.taker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Taker {
    fn drop(&mut self) {
        let mut state = lock(&self.0);
        state.taker_gone = true;
        state.batch = None;
        if let Some(waker) = state.giver.take() {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn one_batch_at_a_time_then_the_end_or_the_body_gone() {
        let (giver, mut taker) = handoff();
        giver.room().await.unwrap();
        giver.give(Bytes::from_static(b"a"));
        // The slot is full until the body takes it.
        let full = tokio::time::timeout(std::time::Duration::from_millis(20), giver.room()).await;
        assert!(full.is_err());
        assert_eq!(taker.next().await.unwrap().unwrap(), "a");
        giver.room().await.unwrap();
        giver.give(Bytes::from_static(b"b"));
        drop(giver);
        // The last batch still arrives, then the end.
        assert_eq!(taker.next().await.unwrap().unwrap(), "b");
        assert!(taker.next().await.is_none());

        let (giver, taker) = handoff();
        let waiting = tokio::spawn(async move { giver.closed().await });
        tokio::task::yield_now().await;
        drop(taker);
        waiting.await.unwrap();
    }
}
