//! Readiness: whether the hub can take publishes now (what `/readyz` answers a load balancer).

use std::sync::atomic::Ordering;

use super::Hub;

/// Why a hub cannot take publishes now ([`Hub::readiness`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotReady {
    /// [`Hub::announce_shutdown`] or [`Hub::close`] was called: the hub is about to end its
    /// streams, or ending them.
    #[error("shutting down")]
    ShuttingDown,
    /// A write to the history store failed: publishes are refused until a restart.
    #[error("the history store failed a write; publishes are refused until a restart")]
    StoreFailed,
    /// Cluster mode: this hub's reader does not reach Redis (publishes get 503).
    #[error("Redis is unreachable (cluster mode)")]
    RedisDown,
}

impl Hub {
    /// `Ok` when a publish would be taken now: not shutting down, the store has not failed a
    /// write, and in cluster mode Redis is reachable. Cheap (a few atomic loads), so a load
    /// balancer may ask often.
    ///
    /// ```
    /// use ssehub::hub::NotReady;
    /// let hub = ssehub::Hub::builder().build();
    /// assert_eq!(hub.readiness(), Ok(()));
    /// hub.close();
    /// assert_eq!(hub.readiness(), Err(NotReady::ShuttingDown));
    /// ```
    pub fn readiness(&self) -> Result<(), NotReady> {
        if self.inner.is_closing() || self.inner.shutdown_announced.load(Ordering::Acquire) {
            return Err(NotReady::ShuttingDown);
        }
        if self.inner.store_failed.load(Ordering::Acquire) {
            return Err(NotReady::StoreFailed);
        }
        #[cfg(feature = "cluster")]
        if let Some(cluster) = &self.inner.cluster {
            if !cluster.health().up {
                return Err(NotReady::RedisDown);
            }
        }
        Ok(())
    }

    /// Says the hub will shut down soon: [`readiness`](Self::readiness) fails from now on
    /// (`ShuttingDown`), so a load balancer sends new clients and publishers elsewhere, while
    /// streams and publishes go on as before until [`close`](Self::close). Give the balancer
    /// its check interval times its failure threshold between the two (`--shutdown-delay`).
    ///
    /// ```
    /// use ssehub::hub::NotReady;
    /// let hub = ssehub::Hub::builder().build();
    /// hub.announce_shutdown();
    /// assert_eq!(hub.readiness(), Err(NotReady::ShuttingDown));
    /// assert!(!hub.is_closing());
    /// ```
    pub fn announce_shutdown(&self) {
        self.inner.shutdown_announced.store(true, Ordering::Release);
    }
}
