//! Cluster mode: several hubs sharing one history in Redis (feature `cluster`; see
//! `docs/cluster.md`). This first part is the cluster-wide order every hub delivers in; the
//! Redis reader and writer build on it.

mod order;

pub use order::{Merge, Place};
