//! Durable history (`--data-dir`): restarts, crashes, replays from disk, retention, and data
//! dirs the hub must refuse. Every test runs the real binary on a real directory.

#![cfg(feature = "durable")]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

#[path = "durable/support.rs"]
mod support;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_from_before_a_restart_replays_exactly_what_came_after() {
    let dir = TempDir::new("restart");
    let mut hub = HubProcess::start(&["--data-dir", dir.arg()]);
    assert_eq!(hub.metric("ssehub_history_store_failed").await, 0);
    let mut ids = Vec::new();
    for i in 0..100 {
        let topic = if i % 2 == 0 { "even" } else { "odd" };
        ids.push(publish(&hub, topic, &i.to_string()).await);
    }
    let (_, code) = hub.signal_and_wait("TERM");
    assert_eq!(code, Some(0));

    let hub = HubProcess::start(&["--data-dir", dir.arg()]);
    assert!(
        hub.stderr_text()
            .contains(&format!("next id {}-101", epoch_of(&ids[0]))),
        "{}",
        hub.stderr_text()
    );
    // A client that had seen event 40 (on "even") comes back.
    let mut stream = EventStream::open(
        &hub.url("/events?topic=even"),
        &[("last-event-id", &ids[40])],
    )
    .await
    .opened()
    .await;
    let next = publish(&hub, "even", "after").await;
    assert_eq!(epoch_of(&next), epoch_of(&ids[0]), "same history");
    assert_eq!(seq_of(&next), 101, "ids continue");
    let got = read_until(&mut stream, &next).await;
    let want: Vec<String> = (42..100)
        .step_by(2)
        .map(|i| i.to_string())
        .chain(["after".to_string()])
        .collect();
    assert!(got.iter().all(|e| e.event != "gap"), "no gap: {got:?}");
    assert_eq!(
        data(&got),
        want,
        "exactly the missed events, in order, once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_older_than_memory_come_from_disk_and_run_into_live() {
    let dir = TempDir::new("memory");
    let hub = HubProcess::start(&[
        "--data-dir",
        dir.arg(),
        "--history",
        "5000",
        "--memory-history",
        "10",
    ]);
    let mut ids = Vec::new();
    for i in 0..300 {
        let topic = ["a", "b", "c"][i % 3];
        ids.push(publish(&hub, topic, &i.to_string()).await);
    }
    // On "a" and "b", from event 3: 3..300 except the "c" ones, most of them only on disk.
    let mut stream = hub
        .subscribe(&format!("?topic=a&topic=b&lastEventId={}", ids[3]))
        .await
        .opened()
        .await;
    let live = publish(&hub, "b", "live").await;
    let got = read_until(&mut stream, &live).await;
    let want: Vec<String> = (4..300)
        .filter(|i| i % 3 != 2)
        .map(|i| i.to_string())
        .chain(["live".to_string()])
        .collect();
    assert_eq!(data(&got), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_on_disk_reports_a_gap_only_for_topics_that_lost_events() {
    let dir = TempDir::new("retention");
    let hub = HubProcess::start(&[
        "--data-dir",
        dir.arg(),
        "--history",
        "50",
        "--memory-history",
        "10",
    ]);
    let quiet = publish(&hub, "quiet", "q0").await;
    let quiet2 = publish(&hub, "quiet", "q1").await;
    let mut busy = Vec::new();
    for i in 0..40 {
        busy.push(publish(&hub, "busy", &i.to_string()).await);
    }
    // Still within 50 on disk: a resume on "quiet" from q0 gets q1 and no gap.
    let mut s = hub
        .subscribe(&format!("?topic=quiet&lastEventId={quiet}"))
        .await
        .opened()
        .await;
    let e = s.next_event().await;
    assert_eq!((e.event.as_str(), e.data.as_str()), ("message", "q1"));
    drop(s);
    for i in 40..100 {
        busy.push(publish(&hub, "busy", &i.to_string()).await);
    }
    // Now q1 is gone too: "quiet" resumed from q0 is told so, with nothing to replay.
    let mut s = hub
        .subscribe(&format!("?topic=quiet&lastEventId={quiet2}"))
        .await
        .opened()
        .await;
    assert!(matches!(
        s.try_next_event(Duration::from_millis(500)).await,
        Err(Stop::Timeout)
    ));
    drop(s);
    let mut s = hub
        .subscribe(&format!("?topic=quiet&lastEventId={quiet}"))
        .await
        .opened()
        .await;
    let e = s.next_event().await;
    assert_eq!(e.event, "gap", "{e:?}");
    // "busy" from event 60: all kept, no gap.
    let mut s = hub
        .subscribe(&format!("?topic=busy&lastEventId={}", busy[60]))
        .await
        .opened()
        .await;
    let got = read_until(&mut s, &busy[99]).await;
    assert_eq!(
        data(&got),
        (61..100).map(|i| i.to_string()).collect::<Vec<_>>()
    );
}

async fn history_age_prunes(args: &[&str]) {
    let mut all = args.to_vec();
    all.extend(["--history-age", "1s"]);
    let hub = HubProcess::start(&all);
    let first = publish(&hub, "t", "old").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let fresh = publish(&hub, "t", "new").await;
    // Resuming from before "old": it is gone (gap), "new" is there.
    let zero = format!("{}-0", epoch_of(&first));
    let mut s = hub
        .subscribe(&format!("?topic=t&lastEventId={zero}"))
        .await
        .opened()
        .await;
    let got = read_until(&mut s, &fresh).await;
    assert_eq!(got[0].event, "gap", "{got:?}");
    assert_eq!(data(&got[1..]), ["new"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_age_prunes_on_disk_in_the_background() {
    let dir = TempDir::new("age");
    history_age_prunes(&["--data-dir", dir.arg()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_age_applies_to_the_memory_history_too() {
    history_age_prunes(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_stops_growing_under_a_bounded_history() {
    let dir = TempDir::new("growth");
    let hub = HubProcess::start(&["--data-dir", dir.arg(), "--history", "500"]);
    let body = "x".repeat(2000);
    let json = format!(
        "[{}]",
        vec![format!(r#"{{"topic":"g","data":"{body}"}}"#); 100].join(",")
    );
    for _ in 0..20 {
        let (status, text) = hub.publish_json(&json).await;
        assert_eq!(status, 200, "{text}");
    }
    let size = |p: &Path| std::fs::metadata(p.join("history.redb")).unwrap().len();
    let after_2k = size(&dir.0);
    for _ in 0..200 {
        let (status, text) = hub.publish_json(&json).await;
        assert_eq!(status, 200, "{text}");
    }
    let after_22k = size(&dir.0);
    // 22,000 events of 2 KB would be 44 MB; 500 of them are 1 MB.
    assert!(
        after_22k <= after_2k * 2 + (4 << 20),
        "the file grew from {after_2k} to {after_22k} bytes"
    );
}

/// `ssehub serve --data-dir <dir>` that must fail: returns its exit code and stderr.
fn refused(dir: &str) -> (Option<i32>, String) {
    let out = bare_command()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", dir])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unusable_data_dirs_stop_the_start_naming_the_path() {
    let dir = TempDir::new("refuse");
    std::fs::create_dir_all(&dir.0).unwrap();
    let file = dir.0.join("history.redb");

    std::fs::write(&file, "not a database\n".repeat(500)).unwrap();
    let (code, err) = refused(dir.arg());
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(file.to_str().unwrap()) && !err.contains("panicked"),
        "{err}"
    );

    // A valid history, damaged in the middle.
    std::fs::remove_file(&file).unwrap();
    {
        let mut hub = HubProcess::start(&["--data-dir", dir.arg()]);
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            for i in 0..200 {
                publish(&hub, "t", &format!("event {i} {}", "y".repeat(500))).await;
            }
        });
        hub.signal_and_wait("TERM");
    }
    let mut bytes = std::fs::read(&file).unwrap();
    let len = bytes.len();
    for b in &mut bytes[len / 4..len * 3 / 4] {
        *b ^= 0x5a;
    }
    std::fs::write(&file, bytes).unwrap();
    let (code, err) = refused(dir.arg());
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(file.to_str().unwrap()) && !err.contains("panicked"),
        "{err}"
    );

    // The data dir is a file; a data dir below a file.
    let plain = dir.0.join("plain");
    std::fs::write(&plain, "x").unwrap();
    for bad in [plain.clone(), plain.join("below")] {
        let (code, err) = refused(bad.to_str().unwrap());
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains(bad.to_str().unwrap()), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_hub_on_the_same_data_dir_is_refused() {
    let dir = TempDir::new("twice");
    let _hub = HubProcess::start(&["--data-dir", dir.arg()]);
    let (code, err) = refused(dir.arg());
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("in use") && err.contains(dir.arg()), "{err}");
}
