//! The file's format: its tables (see the [module documentation](super)), the `ssehub_meta`
//! record read or written at open (format, epoch, last sequence number, `dropped_up_to`), and
//! how an `ssehub_events` value is laid out.

use redb::{Database, ReadableTable, TableDefinition, TableHandle};

use crate::event::Topic;
use crate::id::Epoch;

pub(super) const META: TableDefinition<&str, &str> = TableDefinition::new("ssehub_meta");
pub(super) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("ssehub_events");
pub(super) const BY_TOPIC: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("ssehub_by_topic");
pub(super) const PRUNED: TableDefinition<&str, u64> = TableDefinition::new("ssehub_pruned");

/// What `ssehub_meta/format` says in a file this version can use.
const FORMAT: &str = "ssehub-history-1";

pub(super) struct Meta {
    pub(super) epoch: Epoch,
    pub(super) last_seq: u64,
    pub(super) dropped_up_to: u64,
}

pub(super) fn read_or_init_meta(db: &Database) -> Result<Meta, String> {
    let broken = |e: &dyn std::fmt::Display| format!("not a usable ssehub history file ({e})");
    let txn = db.begin_write().map_err(|e| broken(&e))?;
    let names: Vec<String> = txn
        .list_tables()
        .map_err(|e| broken(&e))?
        .map(|t| t.name().to_string())
        .collect();
    let meta = if names.iter().any(|n| n == META.name()) {
        let table = txn.open_table(META).map_err(|e| broken(&e))?;
        let get = |key: &str| -> Result<Option<String>, String> {
            Ok(table
                .get(key)
                .map_err(|e| broken(&e))?
                .map(|v| v.value().to_string()))
        };
        let format = get("format")?.unwrap_or_default();
        if format != FORMAT {
            return Err(format!(
                "a history in format {format:?}, which this ssehub cannot read (it reads {FORMAT:?})"
            ));
        }
        let number = |key: &str| -> Result<u64, String> {
            get(key)?
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| broken(&format!("its {key} is missing or damaged")))
        };
        let epoch = get("epoch")?
            .and_then(|e| Epoch::from_text(&e))
            .ok_or_else(|| broken(&"its epoch is missing or damaged"))?;
        let last_seq = number("last_seq")?;
        if last_seq == u64::MAX {
            // No next id could follow it.
            return Err(broken(&"its last_seq is at the end of the id space"));
        }
        Meta {
            epoch,
            last_seq,
            dropped_up_to: number("dropped_up_to")?,
        }
    } else if names.is_empty() {
        let epoch = Epoch::random();
        {
            let mut table = txn.open_table(META).map_err(|e| broken(&e))?;
            for (k, v) in [
                ("format", FORMAT),
                ("epoch", epoch.as_str()),
                ("last_seq", "0"),
                ("dropped_up_to", "0"),
            ] {
                table.insert(k, v).map_err(|e| broken(&e))?;
            }
        }
        Meta {
            epoch,
            last_seq: 0,
            dropped_up_to: 0,
        }
    } else {
        return Err(format!(
            "a redb database of something else (tables: {}), not an ssehub history",
            names.join(", ")
        ));
    };
    txn.commit().map_err(|e| broken(&e))?;
    Ok(meta)
}

/// `ssehub_events` values: publish time (ms since 1970, LE), then each topic as a 2-byte LE
/// length and its bytes.
pub(super) fn encode_entry(time_ms: u64, topics: &[Topic]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(8 + topics.iter().map(|t| 2 + t.as_str().len()).sum::<usize>());
    out.extend_from_slice(&time_ms.to_le_bytes());
    for t in topics {
        // Topics are at most 1024 bytes (checked at publish), so the length fits.
        out.extend_from_slice(&(t.as_str().len() as u16).to_le_bytes());
        out.extend_from_slice(t.as_str().as_bytes());
    }
    out
}

pub(super) fn decode_entry(raw: &[u8]) -> Option<(u64, Vec<String>)> {
    let time = u64::from_le_bytes(raw.get(..8)?.try_into().ok()?);
    let mut rest = &raw[8..];
    let mut topics = Vec::new();
    while !rest.is_empty() {
        let len = u16::from_le_bytes(rest.get(..2)?.try_into().ok()?) as usize;
        let name = std::str::from_utf8(rest.get(2..2 + len)?).ok()?;
        topics.push(name.to_string());
        rest = &rest[2 + len..];
    }
    Some((time, topics))
}
