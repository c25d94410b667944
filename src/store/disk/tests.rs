//! Tests of the disk store, and a property test of its bounded reads. Privacy, publisher ids
//! and reads of every topic are in `tests/ids.rs`.

mod ids;

use super::format::{decode_entry, encode_entry, META, PRUNED};
use super::*;
use bytes::Bytes;
use redb::{ReadableDatabase, ReadableTableMetadata, TableDefinition};

fn topic(name: &str) -> Topic {
    Topic::new(name).unwrap()
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ssehub-disk-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn append(disk: &Disk, seq: u64, topics: &[&str]) {
    append_with(disk, seq, topics, false, None);
}

fn append_with(disk: &Disk, seq: u64, topics: &[&str], private: bool, id: Option<&str>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let record = Record {
        seq,
        topics: topics.iter().map(|t| topic(t)).collect(),
        bytes: Bytes::from(format!("id: {seq}\ndata: {seq}\n\n")),
        private,
        id: id.map(Arc::from),
    };
    disk.append(
        vec![record],
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx.recv().unwrap().unwrap();
}

fn read(
    disk: &Disk,
    topics: &[&str],
    after: u64,
    upto: u64,
    limit: usize,
) -> (Vec<u64>, u64, bool) {
    let topics: Vec<Topic> = topics.iter().map(|t| topic(t)).collect();
    let r = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(disk.read_after(
            Scope::Topics(&topics),
            after,
            upto,
            ReadLimit {
                events: limit,
                bytes: usize::MAX,
            },
        ))
        .unwrap();
    (r.events.iter().map(|e| e.seq).collect(), r.cursor, r.lost)
}

#[test]
fn keeps_epoch_and_numbering_across_opens() {
    let d = dir("reopen");
    let epoch = {
        let disk = Disk::open(&d, Retention::default()).unwrap();
        for seq in 1..=5 {
            append(&disk, seq, &["a"]);
        }
        disk.origin().epoch
    };
    let disk = Disk::open(&d, Retention::default()).unwrap();
    assert_eq!(disk.origin().epoch, epoch);
    assert_eq!(disk.origin().next_seq, 6);
    assert_eq!(read(&disk, &["a"], 2, 5, 100), (vec![3, 4, 5], 5, false));
    drop(disk);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn merges_topics_and_cuts_at_the_limit() {
    let d = dir("merge");
    let disk = Disk::open(&d, Retention::default()).unwrap();
    append(&disk, 1, &["a"]);
    append(&disk, 2, &["b"]);
    append(&disk, 3, &["a", "b"]);
    append(&disk, 4, &["c"]);
    append(&disk, 5, &["b"]);
    assert_eq!(
        read(&disk, &["a", "b"], 0, 5, 100),
        (vec![1, 2, 3, 5], 5, false)
    );
    // "b" is cut after 2 events (2, 3): nothing past 3 may be handed out yet.
    assert_eq!(read(&disk, &["a", "b"], 0, 5, 2), (vec![1, 2], 2, false));
    assert_eq!(read(&disk, &["a", "b"], 2, 5, 2), (vec![3, 5], 5, false));
    assert_eq!(read(&disk, &["c"], 0, 3, 100), (vec![], 3, false));
    drop(disk);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn prunes_by_count_per_topic_precisely() {
    let d = dir("prune");
    let disk = Disk::open(
        &d,
        Retention {
            events: 3,
            age: None,
        },
    )
    .unwrap();
    append(&disk, 1, &["quiet"]);
    for seq in 2..=6 {
        append(&disk, seq, &["busy"]);
    }
    // Kept: 4, 5, 6. "quiet" lost event 1; "busy" lost 2 and 3 only.
    assert_eq!(read(&disk, &["busy"], 3, 6, 100), (vec![4, 5, 6], 6, false));
    assert_eq!(read(&disk, &["busy"], 1, 6, 100), (vec![4, 5, 6], 6, true));
    assert_eq!(read(&disk, &["quiet"], 0, 6, 100), (vec![], 6, true));
    assert_eq!(read(&disk, &["quiet"], 1, 6, 100), (vec![], 6, false));
    drop(disk);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn another_topic_emptied_is_no_loss_for_mine() {
    let d = dir("others");
    let disk = Disk::open(
        &d,
        Retention {
            events: 5,
            age: None,
        },
    )
    .unwrap();
    append(&disk, 1, &["b"]);
    append(&disk, 2, &["a"]);
    for seq in 3..=7 {
        append(&disk, seq, &["b"]);
    }
    // "a" lost everything it had; "c" never had anything; "b" lost event 1 only.
    assert_eq!(
        read(&disk, &["b", "c"], 1, 7, 100),
        (vec![3, 4, 5, 6, 7], 7, false)
    );
    assert_eq!(read(&disk, &["a"], 1, 7, 100), (vec![], 7, true));
    assert!(read(&disk, &["b"], 0, 7, 100).2);
    drop(disk);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn marks_of_idle_topics_are_swept_into_the_global_one() {
    let d = dir("sweep");
    let disk = Disk::open(
        &d,
        Retention {
            events: 10,
            age: None,
        },
    )
    .unwrap();
    let n = 3 * MIN_SWEEP;
    let names: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
    // One commit with every event, so the test stays quick.
    let (tx, rx) = std::sync::mpsc::channel();
    let records = names
        .iter()
        .enumerate()
        .map(|(i, t)| Record {
            seq: i as u64 + 1,
            topics: vec![topic(t)],
            bytes: Bytes::from_static(b"data: x\n\n"),
            private: false,
            id: None,
        })
        .collect();
    disk.append(records, Box::new(move |r| tx.send(r).unwrap()));
    rx.recv().unwrap().unwrap();
    for seq in n + 1..=n + 3 {
        append(&disk, seq, &["last"]);
    }
    let txn = disk.db.begin_read().unwrap();
    let marks = txn.open_table(PRUNED).unwrap().len().unwrap();
    assert!(marks < 2 * MIN_SWEEP, "{marks} marks kept");
    // A swept topic is still told it lost events (conservatively, through the global mark).
    assert!(read(&disk, &["t0"], 0, n + 3, 100).2);
    drop(txn);
    drop(disk);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_history_at_the_end_of_the_id_space_is_refused() {
    let d = dir("maxseq");
    drop(Disk::open(&d, Retention::default()).unwrap());
    {
        let db = Database::create(d.join(FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("last_seq", u64::MAX.to_string().as_str())
            .unwrap();
        txn.commit().unwrap();
    }
    let e = Disk::open(&d, Retention::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("last_seq") && e.contains(FILE_NAME), "{e}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn prunes_by_age_in_the_background() {
    let d = dir("age");
    let keep = Retention {
        events: 100,
        age: Some(Duration::from_millis(300)),
    };
    let disk = Disk::open(&d, keep).unwrap();
    append(&disk, 1, &["a"]);
    append(&disk, 2, &["a"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    // Pruned one by one as each grows old: wait until both are gone.
    while !read(&disk, &["a"], 0, 2, 100).0.is_empty() {
        assert!(std::time::Instant::now() < deadline, "nothing was pruned");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(read(&disk, &["a"], 0, 2, 100), (vec![], 2, true));
    drop(disk);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn refuses_foreign_and_corrupt_files_naming_them() {
    let d = dir("foreign");
    std::fs::create_dir_all(&d).unwrap();
    let file = d.join(FILE_NAME);
    std::fs::write(&file, "this is not a database\n".repeat(300)).unwrap();
    let e = Disk::open(&d, Retention::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains(&file.display().to_string()), "{e}");
    std::fs::remove_file(&file).unwrap();

    // A redb database that is not ours.
    {
        let db = Database::create(&file).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn
                .open_table(TableDefinition::<&str, &str>::new("theirs"))
                .unwrap();
            t.insert("k", "v").unwrap();
        }
        txn.commit().unwrap();
    }
    let e = Disk::open(&d, Retention::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("theirs") && e.contains(&file.display().to_string()),
        "{e}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn entries_round_trip() {
    let topics = vec![topic("a"), topic("ünï")];
    for (private, id) in [
        (false, None),
        (true, None),
        (false, Some("order-42")),
        (true, Some("é")),
    ] {
        let raw = encode_entry(42, &topics, private, id);
        let entry = decode_entry(&raw).unwrap();
        assert_eq!(entry.time_ms, 42);
        assert_eq!(entry.topics, ["a", "ünï"]);
        assert_eq!((entry.private, entry.id.as_deref()), (private, id));
        assert_eq!(entry.checked_topics(), topics);
        assert_eq!(decode_entry(&raw[..raw.len() - 1]), None);
    }
    // Plain events keep the layout older versions wrote and read.
    assert_eq!(
        encode_entry(42, &topics, false, None).len(),
        8 + 3 + 2 + "ünï".len()
    );
}

#[test]
fn entries_written_before_the_trailer_decode() {
    // Built by hand, as versions before privacy and publisher ids wrote them.
    let mut raw = 7u64.to_le_bytes().to_vec();
    for name in ["news", "chat/1"] {
        raw.extend_from_slice(&(name.len() as u16).to_le_bytes());
        raw.extend_from_slice(name.as_bytes());
    }
    let entry = decode_entry(&raw).unwrap();
    assert_eq!(entry.time_ms, 7);
    assert_eq!(entry.topics, ["news", "chat/1"]);
    assert!(!entry.private);
    assert_eq!(entry.id, None);
    // Damaged: a trailer with no flags, or bytes after the id.
    let mut bad = raw.clone();
    bad.extend_from_slice(&[0xFF, 0xFF]);
    assert_eq!(decode_entry(&bad), None);
    let mut bad = encode_entry(7, &[topic("a")], true, Some("x"));
    bad.push(0);
    assert_eq!(decode_entry(&bad), None);
}

mod read_properties {
    //! Reading the file in pieces, under any limits, gives exactly the events on the topics (or
    //! all of them) in the range, in order, each once with its topics and privacy, and each
    //! piece within its limits.

    use super::*;
    use proptest::prelude::*;

    const TOPICS: [&str; 3] = ["a", "b", "c"];

    /// The topics in a bit mask of `TOPICS`.
    fn names(mask: u8) -> Vec<Topic> {
        TOPICS
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, t)| Topic::new(t).unwrap())
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn pieces_add_up_to_the_range(
            events in prop::collection::vec((1u8..8, 1usize..60), 1..60),
            // A mask of topics; 0 reads every topic.
            reader in 0u8..8,
            bounds in (0usize..60, 0usize..60),
            max_events in 1usize..6,
            max_bytes in 1usize..150,
        ) {
            static CASE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = CASE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("ssehub-readprop-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let disk = Disk::open(&dir, Retention { events: 1000, age: None }).unwrap();
            let records: Vec<Record> = events
                .iter()
                .enumerate()
                .map(|(i, (mask, size))| Record {
                    seq: i as u64 + 1,
                    topics: names(*mask),
                    bytes: Bytes::from(vec![b'x'; *size]),
                    private: i % 3 == 0,
                    id: (i % 4 == 0).then(|| Arc::from(format!("p{i}"))),
                })
                .collect();
            let (tx, rx) = std::sync::mpsc::channel();
            disk.append(records, Box::new(move |r| tx.send(r).unwrap()));
            rx.recv().unwrap().unwrap();

            let last = events.len() as u64;
            let (a, b) = (bounds.0 as u64 % (last + 1), bounds.1 as u64 % (last + 1));
            let (after, upto) = (a.min(b), a.max(b));
            let want: Vec<u64> = (after + 1..=upto)
                .filter(|s| reader == 0 || events[*s as usize - 1].0 & reader != 0)
                .collect();
            let topics = names(reader);
            let limit = ReadLimit { events: max_events, bytes: max_bytes };
            let mut got = Vec::new();
            let mut cursor = after;
            while cursor < upto {
                let r = match reader {
                    0 => read_all(&disk.db, cursor, upto, limit),
                    _ => read_range(&disk.db, &topics, cursor, upto, limit),
                }
                .unwrap();
                prop_assert!(r.cursor > cursor, "no progress from {}", cursor);
                prop_assert!(!r.lost);
                prop_assert!(r.events.len() <= max_events);
                let bytes: usize = r.events.iter().map(|e| e.bytes.len()).sum();
                prop_assert!(r.events.len() <= 1 || bytes <= max_bytes);
                for e in &r.events {
                    prop_assert!(e.seq > cursor && e.seq <= r.cursor);
                    let i = e.seq as usize - 1;
                    prop_assert_eq!(&e.topics, &names(events[i].0));
                    prop_assert_eq!(e.private, i.is_multiple_of(3));
                    prop_assert_eq!(e.bytes.len(), events[i].1);
                    got.push(e.seq);
                }
                cursor = r.cursor;
            }
            prop_assert_eq!(got, want);
            drop(disk);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
