//! Redis keys: the shards' streams and the publisher-id claims.
//!
//! A shard's stream is `ssehub:{<tag>}:log`: the hash tag puts all of a shard in one Redis
//! Cluster slot (a `MULTI`/`EXEC` there may only touch one slot). The tags are chosen so that
//! shard `k` of `S` lands in the `k`-th `S`-th of the slot range: a Redis Cluster hands masters
//! contiguous slot ranges, so the shards spread evenly over its masters. The choice depends only
//! on `S`, which every hub of a cluster shares (`ssehub:meta`), so every hub names the same keys.

/// Redis Cluster's slot count.
const SLOTS: u32 = 16384;

/// CRC16/XMODEM, the hash of Redis Cluster's slots; it does not change between versions or
/// machines.
pub(crate) fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The Redis Cluster slot of a key whose hash tag is `tag`.
pub(crate) fn slot(tag: &str) -> u16 {
    (u32::from(crc16(tag.as_bytes())) % SLOTS) as u16
}

/// The Redis Cluster slot of `key`: by its hash tag (the first `{...}`), else the whole key.
pub(crate) fn key_slot(key: &str) -> u16 {
    let tag = key
        .split_once('{')
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(tag, _)| tag)
        .filter(|tag| !tag.is_empty());
    slot(tag.unwrap_or(key))
}

/// The shard of a topic: `crc16(topic) mod shards`.
pub(crate) fn shard_of(topic: &str, shards: u16) -> u16 {
    crc16(topic.as_bytes()) % shards.max(1)
}

/// Each shard's hash tag: the first of `s0`, `s1`, ... whose slot falls in the middle half of
/// the shard's share of the slot range (each share holds at least 4 slots, so every one is
/// found quickly). The middle, so that a master whose range ends inside a share does not get
/// its shard by chance: `S` shards over `M` masters give each `S/M` rounded up or down.
pub(crate) fn tags(shards: u16) -> Vec<String> {
    let shards = u32::from(shards.max(1));
    let mut tags: Vec<Option<String>> = vec![None; shards as usize];
    let mut missing = tags.len();
    let mut j = 0u64;
    while missing > 0 {
        let tag = format!("s{j}");
        let slot = u32::from(slot(&tag));
        let share = slot * shards / SLOTS;
        let start = (share * SLOTS).div_ceil(shards);
        let width = ((share + 1) * SLOTS).div_ceil(shards) - start;
        let offset = 4 * (slot - start);
        let middle = offset >= width && offset < 3 * width;
        if let Some(empty @ None) = tags.get_mut(share as usize).filter(|_| middle) {
            *empty = Some(tag);
            missing -= 1;
        }
        j += 1;
    }
    tags.into_iter().flatten().collect()
}

/// The stream of the shard tagged `tag`.
pub(crate) fn stream_key(tag: &str) -> String {
    format!("ssehub:{{{tag}}}:log")
}

/// Every shard's stream, shard `k` at index `k`.
pub(crate) fn stream_keys(shards: u16) -> Vec<String> {
    tags(shards).iter().map(|t| stream_key(t)).collect()
}

/// The key that claims publisher id `id` cluster-wide (its own slot on a Redis Cluster).
pub(crate) fn id_key(id: &str) -> String {
    format!("ssehub:id:{{{id}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_crc16_as_redis_cluster_slots() {
        // The check value of CRC16/XMODEM, and Redis Cluster's slot of "foo" (12182).
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(slot("foo"), 12182);
        assert_eq!(key_slot("ssehub:{foo}:log"), 12182);
        assert_eq!(key_slot("foo"), 12182);
        assert_eq!(key_slot("a{}b"), slot("a{}b"));
        assert!((0..100).all(|i| shard_of(&format!("t{i}"), 16) < 16));
        assert_eq!(id_key("order-42"), "ssehub:id:{order-42}");
    }

    #[test]
    fn shard_tags_spread_over_the_slot_range() {
        for shards in [1u16, 3, 16, 100, 4096] {
            let tags = tags(shards);
            assert_eq!(tags.len(), usize::from(shards));
            for (k, tag) in tags.iter().enumerate() {
                let share = u32::from(slot(tag)) * u32::from(shards) / SLOTS;
                assert_eq!(share as usize, k, "shard {k} of {shards}: tag {tag}");
            }
        }
        // Three masters splitting the slots evenly (as `redis-cli --cluster create`) hold 5 or
        // 6 of 16 shards each.
        let per_master = tags(16).iter().fold([0; 3], |mut counts, tag| {
            counts[usize::from(slot(tag)) * 3 / SLOTS as usize] += 1;
            counts
        });
        assert!(
            per_master.iter().all(|&n| (5..=6).contains(&n)),
            "{per_master:?}"
        );
        assert_eq!(stream_key("s7"), "ssehub:{s7}:log");
    }
}
