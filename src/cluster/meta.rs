//! `ssehub:meta`: what every hub of a cluster must agree on, written once by the first hub.
//!
//! One string key holding `{"epoch":"3f2a9c01b2c4","shards":16}`. The first hub writes it with
//! `SET NX`, so two hubs starting at once cannot both win; every hub then reads it back and
//! takes the epoch from it, and refuses to start if it was given another shard count (a
//! different count would file the same topic under another shard).

use serde::{Deserialize, Serialize};

use super::conn::Conn;
use crate::id::Epoch;
use crate::store::StoreError;

/// The key.
pub(crate) const KEY: &str = "ssehub:meta";

/// What `ssehub:meta` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Meta {
    /// The history's name, in every id.
    pub(crate) epoch: String,
    /// How many shards the log is split into.
    pub(crate) shards: u16,
}

/// Writes `ssehub:meta` if it is not there (with a fresh epoch and `shards`), then reads it
/// back: the cluster's epoch. Fails naming both counts if the cluster has another shard count.
pub(crate) async fn agree(conn: &mut Conn, shards: u16) -> Result<Epoch, StoreError> {
    let ours = Meta {
        epoch: Epoch::random().as_str().to_string(),
        shards,
    };
    let text = serde_json::to_string(&ours).map_err(|e| StoreError(e.to_string()))?;
    let (_, stored): (redis::Value, Option<String>) = redis::pipe()
        .cmd("SET")
        .arg(KEY)
        .arg(&text)
        .arg("NX")
        .cmd("GET")
        .arg(KEY)
        .query_async(conn)
        .await
        .map_err(|e| StoreError(format!("redis: cannot read {KEY}: {e}")))?;
    let stored = stored.ok_or_else(|| StoreError(format!("redis: {KEY} vanished")))?;
    check(&stored, shards)
}

/// Reads what `ssehub:meta` holds against this hub's shard count.
fn check(stored: &str, shards: u16) -> Result<Epoch, StoreError> {
    let meta: Meta = serde_json::from_str(stored)
        .map_err(|e| StoreError(format!("redis: {KEY} is not ssehub's ({e})")))?;
    if meta.shards != shards {
        return Err(StoreError(format!(
            "--redis-shards {shards}, but this Redis holds a cluster of {} shards ({KEY}): start every hub with --redis-shards {}",
            meta.shards, meta.shards
        )));
    }
    Epoch::from_text(&meta.epoch)
        .ok_or_else(|| StoreError(format!("redis: {KEY} holds a bad epoch {:?}", meta.epoch)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_shard_count_is_refused_naming_both() {
        let stored = r#"{"epoch":"3f2a9c01b2c4","shards":16}"#;
        assert_eq!(check(stored, 16).unwrap().as_str(), "3f2a9c01b2c4");
        let refused = check(stored, 8).unwrap_err().0;
        assert!(refused.contains("--redis-shards 8"), "{refused}");
        assert!(refused.contains("16 shards"), "{refused}");
        assert!(check("nonsense", 16).is_err());
    }
}
