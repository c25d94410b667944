//! Resume with `Last-Event-ID` / `lastEventId`: no gap, no duplicate, and `gap` when history
//! cannot cover the request.

mod common;

use std::time::Duration;

use common::*;

/// Publishes `n` numbered events on topic `r`, one request each, as fast as answers come.
fn publisher(hub_url: String, n: usize) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let c = client();
        for i in 0..n {
            let resp = c
                .post(format!("{hub_url}/publish?topic=r"))
                .body(i.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
        }
    })
}

async fn resume_while_publishing(use_header: bool) {
    let hub = HubProcess::start(&[]);
    const N: usize = 1500;
    let mut stream = hub.subscribe("?topic=r").await.opened().await;
    let publishing = publisher(hub.publish_url(""), N);
    let mut seen: Vec<usize> = Vec::new();
    let mut reconnects = 0;
    while seen.last() != Some(&(N - 1)) {
        let e = stream.next_event().await;
        seen.push(e.data.parse().unwrap());
        let last_id = e.id;
        // Drop the connection every 200 events, mid-publishing, and come back.
        if seen.len().is_multiple_of(200) {
            drop(stream);
            reconnects += 1;
            stream = if use_header {
                EventStream::open(&hub.url("/events?topic=r"), &[("last-event-id", &last_id)]).await
            } else {
                EventStream::open(
                    &hub.url(&format!("/events?topic=r&lastEventId={last_id}")),
                    &[],
                )
                .await
            };
            assert_eq!(stream.status, 200);
        }
    }
    publishing.await.unwrap();
    assert!(reconnects >= 5);
    let want: Vec<usize> = (0..N).collect();
    assert_eq!(seen, want, "every event exactly once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_resume_has_no_gap_and_no_duplicate() {
    resume_while_publishing(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_resume_has_no_gap_and_no_duplicate() {
    resume_while_publishing(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_header_wins_over_the_query() {
    let hub = HubProcess::start(&[]);
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            hub.publish_ok("?topic=h", &i.to_string()).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let url = hub.url(&format!("/events?topic=h&lastEventId={}", ids[0]));
    let mut stream = EventStream::open(&url, &[("last-event-id", &ids[1])]).await;
    assert_eq!(stream.next_event().await.data, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_id_gets_a_gap_then_what_is_left() {
    let hub = HubProcess::start(&["--history", "5"]);
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(
            hub.publish_ok("?topic=g", &i.to_string()).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let mut stream =
        EventStream::open(&hub.url("/events?topic=g"), &[("last-event-id", &ids[1])]).await;
    let gap = stream.next_event().await;
    assert_eq!(gap.event, "gap");
    let info: serde_json::Value = serde_json::from_str(&gap.data).unwrap();
    assert_eq!(info["reason"], "evicted");
    assert_eq!(info["lastEventId"], ids[1].as_str());
    assert_eq!(info["resumedAt"], ids[5].as_str());
    assert_eq!(data(&stream.events(5).await), ["5", "6", "7", "8", "9"]);
    // Resuming from an id history still covers gives no gap.
    let mut stream =
        EventStream::open(&hub.url("/events?topic=g"), &[("last-event-id", &ids[6])]).await;
    let events = stream.events(3).await;
    assert_eq!(data(&events), ["7", "8", "9"]);
    assert_eq!(events[2].id, ids[9]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_on_other_topics_is_not_a_gap() {
    let hub = HubProcess::start(&["--history", "4"]);
    let first = hub.publish_ok("?topic=quiet", "q0").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let last = hub.publish_ok("?topic=quiet", "q1").await;
    for i in 0..2 {
        hub.publish_ok("?topic=busy", &i.to_string()).await;
    }
    // History holds q0 q1 b0 b1; one more pushes q0 out, which a resume after q0 never needed.
    hub.publish_ok("?topic=busy", "2").await;
    let mut stream = EventStream::open(
        &hub.url("/events?topic=quiet"),
        &[("last-event-id", &first)],
    )
    .await;
    let e = stream.next_event().await;
    assert_eq!((e.event.as_str(), e.data.as_str()), ("message", "q1"));
    assert_eq!(e.id, last["id"].as_str().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_earlier_run_ids_get_a_gap() {
    let earlier = HubProcess::start(&[]);
    let old_id = earlier.publish_ok("?topic=u", "old").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    drop(earlier);
    let hub = HubProcess::start(&[]);
    for i in 0..3 {
        hub.publish_ok("?topic=u", &i.to_string()).await;
    }
    let never_given = format!(
        "{}-999999",
        hub.publish_ok("?topic=u", "3").await["id"]
            .as_str()
            .unwrap()
            .rsplit_once('-')
            .unwrap()
            .0
    );
    for (id, reason) in [
        (old_id.as_str(), "other-history"),
        ("not-an-id!", "unknown-id"),
        ("12", "unknown-id"),
        (never_given.as_str(), "unknown-id"),
    ] {
        let mut stream =
            EventStream::open(&hub.url("/events?topic=u"), &[("last-event-id", id)]).await;
        let gap = stream.next_event().await;
        assert_eq!(gap.event, "gap", "{id}");
        let info: serde_json::Value = serde_json::from_str(&gap.data).unwrap();
        assert_eq!(info["reason"], reason, "{id}");
        // Then everything retained, and live events after it.
        assert_eq!(data(&stream.events(4).await), ["0", "1", "2", "3"], "{id}");
        assert_eq!(
            stream.try_next_event(Duration::from_millis(100)).await,
            Err(Stop::Timeout)
        );
    }
}
