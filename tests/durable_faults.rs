//! Durable history under faults: `kill -9` in the middle of publishing, and a full disk. Every
//! test runs the real binary on a real directory.

#![cfg(feature = "durable")]

mod common;
#[path = "durable/support.rs"]
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use support::*;

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
    // A port of its own, as every test hub has: the default 8081 may be taken on this host.
    cmd.env("SSEHUB_PUBLISH_LISTEN", "127.0.0.1:0");
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
