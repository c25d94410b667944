//! Durable history (`--data-dir`): restarts, crashes, replays from disk, retention, and data
//! dirs the hub must refuse. Every test runs the real binary on a real directory.

#![cfg(feature = "durable")]

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use ssehub::parse::ParsedEvent;

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("ssehub-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        TempDir(path)
    }
    fn arg(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn seq_of(id: &str) -> u64 {
    id.rsplit_once('-').unwrap().1.parse().unwrap()
}

fn epoch_of(id: &str) -> &str {
    id.rsplit_once('-').unwrap().0
}

/// Publishes `data` on `topic`; returns its id.
async fn publish(hub: &HubProcess, topic: &str, data: &str) -> String {
    let v = hub.publish_ok(&format!("?topic={topic}"), data).await;
    v["id"].as_str().unwrap().to_string()
}

/// Reads events until one has `last` as its id (or `WAIT` passes).
async fn read_until(stream: &mut EventStream, last: &str) -> Vec<ParsedEvent> {
    let mut got = Vec::new();
    loop {
        let e = stream.next_event().await;
        let done = e.id == last;
        got.push(e);
        if done {
            return got;
        }
    }
}

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

/// One crash round: publishers publish steadily (single events and batches, concurrently), a
/// client reads and resumes; the hub is killed with SIGKILL mid-stream and restarted on the
/// same data dir. Every acknowledged event must survive, and the client must get every event
/// of the history exactly once, in order.
async fn crash_round(dir: &TempDir, round: u64) {
    let mut hub = HubProcess::start(&["--data-dir", dir.arg(), "--history", "1000000"]);
    let url = hub.publish_url("");
    // Subscribed before anything of this round is published: it must see all of it.
    let mut stream = hub.subscribe("?topic=crash").await.opened().await;
    let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut publishers = Vec::new();
    for p in 0..4u64 {
        let (url, acked, stop) = (url.clone(), acked.clone(), stop.clone());
        publishers.push(tokio::spawn(async move {
            let c = client();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let sent = if p % 2 == 0 {
                    c.post(format!("{url}/publish?topic=crash"))
                        .body(format!("r{round} p{p} n{n}"))
                        .send()
                        .await
                } else {
                    let batch: Vec<String> = (0..5)
                        .map(|k| format!(r#"{{"topic":"crash","data":"r{round} p{p} n{n} k{k}"}}"#))
                        .collect();
                    c.post(format!("{url}/publish"))
                        .header("content-type", "application/json")
                        .body(format!("[{}]", batch.join(",")))
                        .send()
                        .await
                };
                // The kill cuts requests off: only answered ones count.
                let Ok(resp) = sent else { break };
                let Ok(text) = resp.text().await else { break };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                    break;
                };
                let mut acked = acked.lock().unwrap();
                if let Some(id) = v["id"].as_str() {
                    acked.push(seq_of(id));
                }
                for id in v["ids"].as_array().into_iter().flatten() {
                    acked.push(seq_of(id.as_str().unwrap()));
                }
            }
        }));
    }
    // Let some history build, then kill at a moment that varies by round.
    let mut seen: Vec<(String, String)> = Vec::new();
    let kill_at = Instant::now() + Duration::from_millis(300 + 250 * round);
    while Instant::now() < kill_at {
        if let Ok(e) = stream.try_next_event(Duration::from_millis(50)).await {
            seen.push((e.id, e.data));
        }
    }
    hub.child.kill().unwrap();
    hub.child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for p in publishers {
        p.await.unwrap();
    }
    // Whatever was still in the stream's buffer arrived before the kill.
    while let Ok(e) = stream.try_next_event(Duration::from_millis(200)).await {
        seen.push((e.id, e.data));
    }
    drop(stream);

    let hub = HubProcess::start(&["--data-dir", dir.arg(), "--history", "1000000"]);
    // The client resumes where it was; a fresh reader replays everything.
    let last = seen.last().map(|(id, _)| id.clone()).unwrap_or_default();
    let mut resumed =
        EventStream::open(&hub.url("/events?topic=crash"), &[("last-event-id", &last)])
            .await
            .opened()
            .await;
    let marker = publish(&hub, "crash", &format!("r{round} marker")).await;
    let epoch = epoch_of(&marker).to_string();
    for e in read_until(&mut resumed, &marker).await {
        assert_ne!(e.event, "gap", "round {round}: {e:?}");
        seen.push((e.id, e.data));
    }
    let mut all = hub
        .subscribe(&format!("?topic=crash&lastEventId={epoch}-0"))
        .await
        .opened()
        .await;
    let history = read_until(&mut all, &marker).await;
    assert!(history.iter().all(|e| e.event != "gap"));
    let history_seqs: Vec<u64> = history.iter().map(|e| seq_of(&e.id)).collect();
    let contiguous: Vec<u64> = (1..=seq_of(&marker)).collect();
    assert_eq!(
        history_seqs, contiguous,
        "round {round}: the history has no hole"
    );

    let acked = acked.lock().unwrap();
    assert!(!acked.is_empty(), "round {round}: nothing was published");
    let missing: Vec<&u64> = acked
        .iter()
        .filter(|s| history_seqs.binary_search(s).is_err())
        .collect();
    assert!(
        missing.is_empty(),
        "round {round}: acknowledged but lost: {missing:?}"
    );

    // The client: each event of this round's history once, in order, and the same bytes.
    let round_start = history
        .iter()
        .position(|e| e.data.starts_with(&format!("r{round} ")))
        .unwrap();
    let want: Vec<(String, String)> = history[round_start..]
        .iter()
        .map(|e| (e.id.clone(), e.data.clone()))
        .collect();
    assert_eq!(
        seen, want,
        "round {round}: the client got each event once, in order"
    );
    eprintln!(
        "crash round {round}: {} acknowledged, history {} events, client got {}",
        acked.len(),
        history.len(),
        seen.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_loses_no_acknowledged_event() {
    let dir = TempDir::new("crash");
    let rounds: u64 = std::env::var("SSEHUB_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    for round in 0..rounds {
        crash_round(&dir, round).await;
    }
}

/// A disk that fills up: the hub runs in a private mount namespace on a 4 MiB tmpfs (so this
/// test needs root, like `tests/vanish.rs`). The publish whose commit fails gets `503` naming the
/// file, every later one too, and no subscriber ever sees an event that was not acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_publishes_and_shows_nothing_unacknowledged() {
    let dir = TempDir::new("full");
    std::fs::create_dir_all(&dir.0).unwrap();
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount -t tmpfs -o size=4m ssehub-full "$0" && exec "$@""#)
        .arg(dir.arg())
        .arg(env!("CARGO_BIN_EXE_ssehub"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", dir.arg()])
        .args(["--history", "100000"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SSEHUB_") {
            cmd.env_remove(k);
        }
    }
    let hub = HubProcess::spawn(cmd);
    let mut stream = hub.subscribe("?topic=full").await.opened().await;
    let big = "z".repeat(60_000);
    let mut acked = Vec::new();
    let mut refusal = None;
    for i in 0..400 {
        let (status, text) = hub.publish_raw("?topic=full", format!("{i} {big}")).await;
        if status != 200 {
            refusal = Some((status, text));
            break;
        }
        acked.push(i.to_string());
    }
    let (status, text) = refusal.expect("4 MiB never filled up");
    assert_eq!(status, 503, "{text}");
    assert!(
        text.contains("history.redb") && text.contains("cannot write"),
        "{text}"
    );
    let (status, text) = hub.publish_raw("?topic=full", "small").await;
    assert_eq!(status, 503, "later publishes are refused too: {text}");

    let mut seen = Vec::new();
    while let Ok(e) = stream.try_next_event(Duration::from_secs(1)).await {
        seen.push(e.data.split(' ').next().unwrap().to_string());
    }
    assert_eq!(
        seen, acked,
        "subscribers got exactly the acknowledged events"
    );
    let health = client().get(hub.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(hub.metric("ssehub_history_store_failed").await, 1);
    // Load balancers are told too: alive, but no longer ready for publishes.
    let ready = client().get(hub.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let reason = ready.text().await.unwrap();
    assert!(reason.contains("history store failed"), "{reason}");
}
