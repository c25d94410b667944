//! Privacy and publisher ids through the file, the id index, and reads of every topic.

use super::*;
use crate::store::StoredEvent;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn find(disk: &Disk, id: &str) -> Option<u64> {
    block_on(disk.find_id(id)).unwrap()
}

fn read_events(disk: &Disk, scope: Scope<'_>, after: u64, upto: u64) -> Vec<StoredEvent> {
    let limit = ReadLimit {
        events: 100,
        bytes: usize::MAX,
    };
    block_on(disk.read_after(scope, after, upto, limit))
        .unwrap()
        .events
}

/// A read of every topic: its seqs, cursor and `lost`.
fn all(disk: &Disk, after: u64, upto: u64, events: usize, bytes: usize) -> (Vec<u64>, u64, bool) {
    let limit = ReadLimit { events, bytes };
    let r = block_on(disk.read_after(Scope::All, after, upto, limit)).unwrap();
    (r.events.iter().map(|e| e.seq).collect(), r.cursor, r.lost)
}

fn keep(events: usize) -> Retention {
    Retention { events, age: None }
}

#[test]
fn privacy_topics_and_ids_round_trip() {
    let d = dir("private");
    let disk = Disk::open(&d, Retention::default()).unwrap();
    append_with(&disk, 1, &["a", "b"], true, Some("order-42"));
    append_with(&disk, 2, &["b"], false, None);
    append_with(&disk, 3, &["a"], false, Some("order-43"));
    let topics = [topic("b")];
    let got = read_events(&disk, Scope::Topics(&topics), 0, 3);
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].seq, got[0].private), (1, true));
    assert_eq!(got[0].topics, [topic("a"), topic("b")]);
    assert_eq!(got[0].bytes, Bytes::from("id: 1\ndata: 1\n\n"));
    assert_eq!((got[1].seq, got[1].private), (2, false));
    assert_eq!(got[1].topics, [topic("b")]);
    let every = read_events(&disk, Scope::All, 0, 3);
    assert_eq!(every[..2], got[..]);
    assert_eq!((every[2].seq, every[2].private), (3, false));
    assert_eq!(every[2].topics, [topic("a")]);
    assert_eq!(find(&disk, "order-42"), Some(1));
    assert_eq!(find(&disk, "order-43"), Some(3));
    assert_eq!(find(&disk, "order-44"), None);
    drop(disk);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn pruned_events_take_their_ids_with_them() {
    let d = dir("idprune");
    let disk = Disk::open(&d, keep(3)).unwrap();
    for seq in 1..=5 {
        append_with(&disk, seq, &["a"], false, Some(&format!("e{seq}")));
    }
    let found: Vec<_> = (1..=5).map(|s| find(&disk, &format!("e{s}"))).collect();
    assert_eq!(found, [None, None, Some(3), Some(4), Some(5)]);
    // An id taken over by a later event (the hub refuses that, but the index must not lose a
    // retained event's id if it happens) survives the earlier event's pruning.
    append_with(&disk, 6, &["a"], false, Some("e4"));
    append_with(&disk, 7, &["b"], false, None);
    assert_eq!(find(&disk, "e4"), Some(6));
    assert_eq!(find(&disk, "e5"), Some(5));
    let txn = disk.db.begin_read().unwrap();
    let ids = txn.open_table(format::IDS).unwrap().len().unwrap();
    assert_eq!(ids, 2, "only the retained events' ids are indexed");
    drop(txn);
    drop(disk);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn reads_of_every_topic_merge_in_order_within_limits() {
    let d = dir("all");
    let disk = Disk::open(&d, keep(6)).unwrap();
    let topics = [
        &["a"][..],
        &["b"],
        &["a", "c"],
        &["c"],
        &["b"],
        &["a"],
        &["d"],
    ];
    for (i, t) in topics.iter().enumerate() {
        append(&disk, i as u64 + 1, t);
    }
    // Kept: 2..=7; event 1 is gone, so reading from before it is told so.
    assert_eq!(
        all(&disk, 0, 7, 100, usize::MAX),
        (vec![2, 3, 4, 5, 6, 7], 7, true)
    );
    assert_eq!(
        all(&disk, 1, 7, 100, usize::MAX),
        (vec![2, 3, 4, 5, 6, 7], 7, false)
    );
    assert_eq!(
        all(&disk, 1, 5, 100, usize::MAX),
        (vec![2, 3, 4, 5], 5, false)
    );
    // In pieces: at most 4 events, then by bytes (each event is 16 bytes: "id: N\ndata: N\n\n").
    assert_eq!(
        all(&disk, 1, 7, 4, usize::MAX),
        (vec![2, 3, 4, 5], 5, false)
    );
    assert_eq!(all(&disk, 1, 7, 100, 40), (vec![2, 3], 3, false));
    // Always one event, however small the byte budget.
    assert_eq!(all(&disk, 3, 7, 100, 1), (vec![4], 4, false));
    assert_eq!(all(&disk, 7, 7, 100, 1), (vec![], 7, false));
    drop(disk);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn reopening_keeps_the_id_index_and_the_pruning_mark() {
    let d = dir("idreopen");
    {
        let disk = Disk::open(&d, keep(2)).unwrap();
        for seq in 1..=3 {
            append_with(&disk, seq, &["a"], seq == 3, Some(&format!("e{seq}")));
        }
    }
    let disk = Disk::open(&d, keep(2)).unwrap();
    assert_eq!(find(&disk, "e1"), None);
    assert_eq!(find(&disk, "e3"), Some(3));
    assert_eq!(all(&disk, 0, 3, 100, usize::MAX), (vec![2, 3], 3, true));
    assert_eq!(all(&disk, 1, 3, 100, usize::MAX), (vec![2, 3], 3, false));
    assert!(read_events(&disk, Scope::All, 2, 3)[0].private);
    // Pruning goes on where it stopped, ids included.
    append(&disk, 4, &["b"]);
    assert_eq!(find(&disk, "e2"), None);
    assert_eq!(all(&disk, 1, 4, 100, usize::MAX), (vec![3, 4], 4, true));
    drop(disk);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn files_from_before_ids_open_and_read() {
    let d = dir("oldfile");
    {
        let disk = Disk::open(&d, keep(2)).unwrap();
        append(&disk, 1, &["a"]);
        append(&disk, 2, &["b"]);
        append(&disk, 3, &["a"]);
    }
    // Make it look as older versions left it: no id table, no global pruning mark.
    {
        let db = Database::create(d.join(FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        assert!(txn.delete_table(format::IDS).unwrap());
        let mut meta = txn.open_table(META).unwrap();
        meta.remove("pruned_up_to").unwrap();
        meta.insert("format", "ssehub-history-1").unwrap();
        drop(meta);
        txn.commit().unwrap();
    }
    let disk = Disk::open(&d, keep(2)).unwrap();
    assert_eq!(find(&disk, "anything"), None);
    // Upgraded on open: an older ssehub now refuses the file instead of misreading trailers.
    {
        let txn = disk.db.begin_read().unwrap();
        let meta = txn.open_table(META).unwrap();
        assert_eq!(
            meta.get("format").unwrap().unwrap().value(),
            "ssehub-history-2"
        );
    }
    // The global mark is rebuilt from the topics' marks: event 1 (on "a") was pruned.
    assert_eq!(all(&disk, 0, 3, 100, usize::MAX), (vec![2, 3], 3, true));
    assert_eq!(all(&disk, 1, 3, 100, usize::MAX), (vec![2, 3], 3, false));
    append_with(&disk, 4, &["a"], false, Some("new"));
    assert_eq!(find(&disk, "new"), Some(4));
    drop(disk);
    std::fs::remove_dir_all(&d).unwrap();
}
