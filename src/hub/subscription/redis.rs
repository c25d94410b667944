//! A resume older than this hub's memory, in a cluster: the events are read from Redis (see
//! `Cluster::replay_batch`), filtered as memory's are, then the stream goes on from memory.

use bytes::Bytes;

use super::{End, FirstRead, Subscription, BATCH_EVENTS};
use crate::event::{encode, encode_without_id};
use crate::hub::resume::id_line;

impl Subscription {
    /// Where a resume from `id` (not in memory when the stream opened) starts, in a cluster:
    /// the event's sequence number once the reader brings it in (a client from a hub a little
    /// ahead), or, for one older than memory, a replay from Redis first (`from_redis` set and
    /// `None` returned). `None` alone: Redis does not know the id either.
    pub(super) async fn find_clustered(
        &mut self,
        id: &str,
    ) -> Result<Option<u64>, crate::store::StoreError> {
        let Some(cluster) = self.hub.cluster.clone() else {
            return Ok(None);
        };
        let Some(place) = cluster.place_of(id).await? else {
            return Ok(None);
        };
        if let Some(seq) = crate::hub::relay::relayed(&self.hub, id, place).await {
            return Ok(Some(seq));
        }
        self.from_redis = cluster.replay_from(place).map(Box::new);
        Ok(None)
    }

    /// The next batch of a replay from Redis into `out`; once it is done, the cursor moves to
    /// where memory goes on. Returns how many events it added.
    pub(super) async fn read_redis(&mut self, out: &mut Vec<Bytes>) -> Result<usize, End> {
        let (Some(cluster), Some(mut replay)) = (self.hub.cluster.clone(), self.from_redis.take())
        else {
            return Ok(0);
        };
        let batch = cluster
            .replay_batch(&mut replay, BATCH_EVENTS)
            .await
            .map_err(|e| {
                tracing::warn!("{e}");
                End::History
            })?;
        let before = out.len();
        let access = &self.access;
        for event in &batch.events {
            let topics = event.topics();
            let wanted = self.reads_all || topics.iter().any(|t| self.names.contains(t));
            if wanted && access.admits_event(false, topics, event.is_private()) {
                out.push(encode(event.id().unwrap_or_default(), event));
            }
        }
        if batch.lost {
            let data = serde_json::json!({
                "reason": "evicted",
                "lastEventId": self.last_event_id,
                // As in memory's `gap`: the first event it does get, as it will see it.
                "resumedAt": out.get(before).and_then(|b| id_line(b)),
                "message": "events after lastEventId on these topics were trimmed from Redis before this resume",
            });
            out.insert(before, encode_without_id("gap", &data.to_string()));
        }
        if batch.done {
            self.cursor = replay.then;
        } else {
            self.from_redis = Some(replay);
        }
        // The loss, if any, is told; what follows (more of Redis, or memory) is ready now.
        self.first_read = FirstRead::Done;
        self.more = true;
        Ok(out.len() - before)
    }
}
