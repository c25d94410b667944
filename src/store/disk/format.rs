//! The file's format: its tables (see the [module documentation](super)), the `ssehub_meta`
//! record read or written at open (format, epoch, last sequence number, `dropped_up_to`,
//! `pruned_up_to`), and how an `ssehub_events` value is laid out:
//!
//! ```text
//! time_ms: u64 LE
//! per topic:   len: u16 LE (at most 256), name: len bytes
//! trailer, only when the event is private or has a publisher's id (files from before it have
//! none, and read as public without an id):
//!              0xFFFF: u16 LE (no topic is that long), flags: u8 (bit 0: private),
//!              then, if there are bytes left, id_len: u16 LE (at most 256), id: id_len bytes
//! ```

use redb::{Database, ReadableTable, TableDefinition, TableHandle};

use crate::event::Topic;
use crate::id::Epoch;

pub(super) const META: TableDefinition<&str, &str> = TableDefinition::new("ssehub_meta");
pub(super) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("ssehub_events");
pub(super) const BY_TOPIC: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("ssehub_by_topic");
pub(super) const PRUNED: TableDefinition<&str, u64> = TableDefinition::new("ssehub_pruned");
pub(super) const IDS: TableDefinition<&str, u64> = TableDefinition::new("ssehub_ids");

/// What `ssehub_meta/format` says in a file this version can use.
const FORMAT: &str = "ssehub-history-2";
/// The format before private events and publishers' ids (entries without a trailer, no id
/// table): read as is, and upgraded on open, so that an older ssehub refuses the file rather
/// than misread entries that carry a trailer.
const FORMAT_1: &str = "ssehub-history-1";
/// The topic length that marks the trailer instead.
const TRAILER: u16 = 0xFFFF;
const PRIVATE: u8 = 1;

pub(super) struct Meta {
    pub(super) epoch: Epoch,
    pub(super) last_seq: u64,
    pub(super) dropped_up_to: u64,
    /// The newest event pruned, from any topic.
    pub(super) pruned_up_to: u64,
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
        let mut table = txn.open_table(META).map_err(|e| broken(&e))?;
        let get = |key: &str| -> Result<Option<String>, String> {
            Ok(table
                .get(key)
                .map_err(|e| broken(&e))?
                .map(|v| v.value().to_string()))
        };
        let format = get("format")?.unwrap_or_default();
        if format != FORMAT && format != FORMAT_1 {
            return Err(format!(
                "a history in format {format:?}, which this ssehub cannot read (it reads {FORMAT:?} and {FORMAT_1:?})"
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
        let dropped_up_to = number("dropped_up_to")?;
        let pruned_up_to = match get("pruned_up_to")? {
            Some(_) => number("pruned_up_to")?,
            // A file from before the key: every pruned event left its seq as its topics'
            // mark, or, swept, in `dropped_up_to`, so the newest of them is the global mark.
            None => {
                let mut newest = dropped_up_to;
                if names.iter().any(|n| n == PRUNED.name()) {
                    let marks = txn.open_table(PRUNED).map_err(|e| broken(&e))?;
                    for item in marks.iter().map_err(|e| broken(&e))? {
                        newest = newest.max(item.map_err(|e| broken(&e))?.1.value());
                    }
                }
                let text = newest.to_string();
                table
                    .insert("pruned_up_to", text.as_str())
                    .map_err(|e| broken(&e))?;
                newest
            }
        };
        if format == FORMAT_1 {
            table.insert("format", FORMAT).map_err(|e| broken(&e))?;
        }
        Meta {
            epoch,
            last_seq,
            dropped_up_to,
            pruned_up_to,
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
                ("pruned_up_to", "0"),
            ] {
                table.insert(k, v).map_err(|e| broken(&e))?;
            }
        }
        Meta {
            epoch,
            last_seq: 0,
            dropped_up_to: 0,
            pruned_up_to: 0,
        }
    } else {
        return Err(format!(
            "a redb database of something else (tables: {}), not an ssehub history",
            names.join(", ")
        ));
    };
    // Every table exists from here on, so a read never meets a missing one (files from before
    // `ssehub_ids` lack it; a new file has only the meta). Opening also checks their types.
    txn.open_table(EVENTS).map_err(|e| broken(&e))?;
    txn.open_table(BY_TOPIC).map_err(|e| broken(&e))?;
    txn.open_table(PRUNED).map_err(|e| broken(&e))?;
    txn.open_table(IDS).map_err(|e| broken(&e))?;
    txn.commit().map_err(|e| broken(&e))?;
    Ok(meta)
}

/// One `ssehub_events` value, decoded.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Entry {
    /// Publish time, ms since 1970.
    pub(super) time_ms: u64,
    pub(super) topics: Vec<String>,
    pub(super) private: bool,
    /// The id its publisher chose.
    pub(super) id: Option<String>,
}

impl Entry {
    /// Its topics, checked again (a damaged name is left out rather than handed to the hub).
    pub(super) fn checked_topics(&self) -> Vec<Topic> {
        self.topics
            .iter()
            .filter_map(|t| Topic::new(t).ok())
            .collect()
    }
}

/// An `ssehub_events` value (layout in the [module documentation](self)).
pub(super) fn encode_entry(
    time_ms: u64,
    topics: &[Topic],
    private: bool,
    id: Option<&str>,
) -> Vec<u8> {
    let trailer = if private || id.is_some() {
        3 + id.map_or(0, |id| 2 + id.len())
    } else {
        0
    };
    let names: usize = topics.iter().map(|t| 2 + t.as_str().len()).sum();
    let mut out = Vec::with_capacity(8 + names + trailer);
    out.extend_from_slice(&time_ms.to_le_bytes());
    for t in topics {
        // Topics are at most 1024 bytes (checked at publish), so the length fits.
        out.extend_from_slice(&(t.as_str().len() as u16).to_le_bytes());
        out.extend_from_slice(t.as_str().as_bytes());
    }
    // Plain events keep the old layout, which older versions read too.
    if trailer > 0 {
        out.extend_from_slice(&TRAILER.to_le_bytes());
        out.push(if private { PRIVATE } else { 0 });
        if let Some(id) = id {
            // Ids are at most 256 bytes too (checked at publish).
            out.extend_from_slice(&(id.len() as u16).to_le_bytes());
            out.extend_from_slice(id.as_bytes());
        }
    }
    out
}

/// Reads an `ssehub_events` value, with or without the trailer; `None` if it is damaged.
pub(super) fn decode_entry(raw: &[u8]) -> Option<Entry> {
    fn field(rest: &mut &[u8]) -> Option<u16> {
        let n = u16::from_le_bytes(rest.get(..2)?.try_into().ok()?);
        *rest = &rest[2..];
        Some(n)
    }
    fn text(rest: &mut &[u8], len: usize) -> Option<String> {
        let s = std::str::from_utf8(rest.get(..len)?).ok()?.to_string();
        *rest = &rest[len..];
        Some(s)
    }
    let mut entry = Entry {
        time_ms: u64::from_le_bytes(raw.get(..8)?.try_into().ok()?),
        ..Entry::default()
    };
    let mut rest = &raw[8..];
    while !rest.is_empty() {
        let len = field(&mut rest)?;
        if len == TRAILER {
            // Unknown flag bits are left for later versions.
            let (&flags, after) = rest.split_first()?;
            rest = after;
            entry.private = flags & PRIVATE != 0;
            if !rest.is_empty() {
                let len = field(&mut rest)? as usize;
                entry.id = Some(text(&mut rest, len)?);
            }
            return rest.is_empty().then_some(entry);
        }
        entry.topics.push(text(&mut rest, len as usize)?);
    }
    Some(entry)
}
