//! Tests of who gets what: private events, publisher-chosen ids, selector subscriptions,
//! token expiry, and `earliest`.

use std::time::Duration;

use super::*;
use crate::event::{Event, Topic};
use crate::selector::{Selector, SelectorSet};

fn set(selectors: &[&str]) -> SelectorSet {
    SelectorSet::new(
        selectors
            .iter()
            .map(|s| Selector::parse(s).expect("a good selector"))
            .collect(),
    )
}

fn on(topics: &[&str], data: &str) -> Event {
    topics.iter().fold(Event::new(data), |e, t| {
        e.with_topic(t).expect("a good topic")
    })
}

/// Everything the subscription has now, as (id, data), stopping at the first quiet moment.
async fn drain(sub: &mut Subscription) -> Vec<(String, String)> {
    let mut got = Vec::new();
    while let Ok(Ok(item)) = tokio::time::timeout(Duration::from_millis(100), sub.recv()).await {
        match item {
            Received::Event(e) => got.push((e.id, e.data)),
            Received::Gap(g) => got.push(("gap".into(), g.reason)),
        }
    }
    got
}

fn datas(got: &[(String, String)]) -> Vec<&str> {
    got.iter().map(|(_, d)| d.as_str()).collect()
}

#[tokio::test]
async fn private_events_reach_only_subscribers_allowed_one_of_their_topics() {
    let hub = Hub::builder().build();
    let request = |allowed: Option<&[&str]>| {
        let r = SubscribeRequest::topics(["a"]).expect("a good topic");
        match allowed {
            Some(a) => r.allow_private(set(a)),
            None => r,
        }
    };
    let mut anonymous = hub.subscribe(request(None)).expect("room");
    let mut on_a = hub.subscribe(request(Some(&["a"]))).expect("room");
    let mut on_b = hub.subscribe(request(Some(&["b"]))).expect("room");
    let mut all = hub.subscribe(request(Some(&["*"]))).expect("room");
    hub.publish(vec![
        on(&["a"], "public"),
        on(&["a"], "private a").private(),
        on(&["a", "b"], "private a+b").private(),
        on(&["a"], "public again"),
    ])
    .await
    .expect("published");
    assert_eq!(
        datas(&drain(&mut anonymous).await),
        ["public", "public again"]
    );
    let everything = ["public", "private a", "private a+b", "public again"];
    assert_eq!(datas(&drain(&mut on_a).await), everything);
    // Allowed `b` only: the event also on `b` (an alternate topic) is theirs.
    assert_eq!(
        datas(&drain(&mut on_b).await),
        ["public", "private a+b", "public again"]
    );
    assert_eq!(datas(&drain(&mut all).await), everything);
    // A replay (resume from before them all) never leaks them either.
    let first = hub.epoch().id(0);
    let mut replay = hub
        .subscribe(request(None).resume_after(first))
        .expect("room");
    let got = drain(&mut replay).await;
    assert_eq!(datas(&got), ["public", "public again"], "{got:?}");
}

#[tokio::test]
async fn publisher_ids_are_sent_resumed_from_and_unique() {
    let hub = Hub::builder().history(3).build();
    let mut sub = hub
        .subscribe(SubscribeRequest::topics(["a"]).expect("a good topic"))
        .expect("room");
    let receipt = hub
        .publish(vec![
            on(&["a"], "one").with_id("order-1").expect("a good id"),
            on(&["a"], "two"),
            on(&["a"], "three").with_id("order-3").expect("a good id"),
        ])
        .await
        .expect("published");
    assert_eq!(receipt.ids[0], "order-1");
    assert_eq!(receipt.ids[2], "order-3");
    let got = drain(&mut sub).await;
    assert_eq!(got[0], ("order-1".to_string(), "one".to_string()));
    assert_eq!(got[1].0, receipt.ids[1]);
    // Resuming from a publisher's id: what follows it, nothing before, no duplicate.
    let mut resumed = hub
        .subscribe(
            SubscribeRequest::topics(["a"])
                .expect("a good topic")
                .resume_after("order-1"),
        )
        .expect("room");
    assert_eq!(datas(&drain(&mut resumed).await), ["two", "three"]);
    // An id still in the history is refused, as is one named twice in a batch; nothing is
    // published either way.
    let again = hub
        .publish(vec![on(&["a"], "x").with_id("order-3").expect("a good id")])
        .await;
    assert!(
        matches!(&again, Err(PublishError::DuplicateId(id)) if id == "order-3"),
        "{again:?}"
    );
    let twice = hub
        .publish(vec![
            on(&["a"], "x").with_id("dup").expect("a good id"),
            on(&["a"], "y").with_id("dup").expect("a good id"),
        ])
        .await;
    assert!(
        matches!(twice, Err(PublishError::DuplicateId(_))),
        "{twice:?}"
    );
    assert_eq!(hub.stats().published_total, 3);
    // Once it has left the history, the id is free again; a resume from it is a gap.
    hub.publish((0..3).map(|i| on(&["a"], &i.to_string())).collect())
        .await
        .expect("published");
    hub.publish_one(on(&["a"], "reused").with_id("order-1").expect("a good id"))
        .await
        .expect("published");
    let mut stale = hub
        .subscribe(
            SubscribeRequest::topics(["b"])
                .expect("a good topic")
                .resume_after("order-3"),
        )
        .expect("room");
    let got = drain(&mut stale).await;
    assert_eq!(got, [("gap".to_string(), "unknown-id".to_string())]);
}

#[tokio::test]
async fn a_wildcard_subscription_gets_every_event_once_and_filters_by_selector() {
    let hub = Hub::builder().build();
    let mut everything = hub
        .subscribe(SubscribeRequest::selectors(set(&["*"])))
        .expect("room");
    let mut mixed = hub
        .subscribe(SubscribeRequest::selectors(set(&["b", "*"])).allow_private(set(&["b"])))
        .expect("room");
    hub.publish(vec![
        on(&["a"], "1"),
        on(&["a", "b"], "2"),
        on(&["c"], "3").private(),
        on(&["b"], "4").private(),
    ])
    .await
    .expect("published");
    let got = drain(&mut everything).await;
    assert_eq!(datas(&got), ["1", "2"], "{got:?}");
    assert_eq!(datas(&drain(&mut mixed).await), ["1", "2", "4"]);
    // The decoded topics are the event's.
    let mut one = hub
        .subscribe(SubscribeRequest::selectors(set(&["*"])).from_earliest())
        .expect("room");
    let Ok(Received::Event(e)) = one.recv().await else {
        panic!("an event")
    };
    assert_eq!(e.topics, [Topic::new("a").expect("a good topic")]);
}

#[tokio::test]
async fn a_subscription_ends_when_its_token_expires() {
    let hub = Hub::builder().build();
    let mut sub = hub
        .subscribe(
            SubscribeRequest::topics(["a"])
                .expect("a good topic")
                .expires_at(std::time::Instant::now() + Duration::from_millis(200)),
        )
        .expect("room");
    let mut out = Vec::new();
    sub.next(&mut out).await.expect("the opening");
    let started = std::time::Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            out.clear();
            if let Err(e) = sub.next(&mut out).await {
                return e;
            }
        }
    })
    .await
    .expect("ended in time");
    assert_eq!(end, End::Expired);
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn earliest_replays_everything_retained_without_a_gap() {
    let hub = Hub::builder().history(2).build();
    hub.publish((1..=3).map(|i| on(&["a"], &i.to_string())).collect())
        .await
        .expect("published");
    let mut sub = hub
        .subscribe(
            SubscribeRequest::topics(["a"])
                .expect("a good topic")
                .from_earliest(),
        )
        .expect("room");
    assert_eq!(sub.starts_after(), "earliest");
    assert_eq!(drain(&mut sub).await.len(), 2);
    let live = hub
        .subscribe(SubscribeRequest::topics(["a"]).expect("a good topic"))
        .expect("room");
    assert_eq!(live.starts_after(), hub.epoch().id(3));
}

#[cfg(feature = "durable")]
mod on_disk {
    use super::*;
    use crate::store::{Disk, Retention};

    fn dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ssehub-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn hub_on(dir: &std::path::Path) -> Hub {
        let disk = Disk::open(dir, Retention::default()).expect("a usable data dir");
        // One event in memory: every replay below reads the file.
        Hub::builder()
            .memory_history(1)
            .store(Arc::new(disk))
            .build()
    }

    #[tokio::test]
    async fn ids_and_privacy_outlive_memory_and_restarts() {
        let dir = dir("access");
        {
            let hub = hub_on(&dir);
            hub.publish(vec![
                on(&["a"], "one").with_id("order-1").expect("a good id"),
                on(&["a"], "secret").private(),
                on(&["a", "b"], "two"),
                on(&["c"], "three"),
            ])
            .await
            .expect("published");
        }
        let hub = hub_on(&dir);
        // The id is still known (from the file): refused again, and resumable.
        let again = hub
            .publish(vec![on(&["a"], "x").with_id("order-1").expect("a good id")])
            .await;
        assert!(
            matches!(again, Err(PublishError::DuplicateId(_))),
            "{again:?}"
        );
        let resume = |r: SubscribeRequest| hub.subscribe(r.resume_after("order-1")).expect("room");
        let mut anonymous = resume(SubscribeRequest::topics(["a"]).expect("a good topic"));
        assert_eq!(datas(&drain(&mut anonymous).await), ["two"]);
        let mut allowed = resume(
            SubscribeRequest::topics(["a"])
                .expect("a good topic")
                .allow_private(set(&["a"])),
        );
        assert_eq!(datas(&drain(&mut allowed).await), ["secret", "two"]);
        // A `*` subscription replays every topic from the file, once each, public only.
        let mut everything = resume(SubscribeRequest::selectors(set(&["*"])));
        assert_eq!(datas(&drain(&mut everything).await), ["two", "three"]);
        drop(hub);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Two publishes of one id at once, while other events push memory's events to the file:
    /// exactly one is published, whichever of memory and the file holds the first.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_id_published_twice_at_once_is_published_once() {
        let dir = dir("id-race");
        let hub = hub_on(&dir);
        for round in 0..30 {
            let id = format!("race-{round}");
            let publish = |data: &'static str| {
                let (hub, id) = (hub.clone(), id.clone());
                tokio::spawn(async move {
                    hub.publish(vec![on(&["a"], data).with_id(&id).expect("a good id")])
                        .await
                })
            };
            let (a, b) = (publish("x"), publish("y"));
            hub.publish((0..3).map(|i| on(&["churn"], &i.to_string())).collect())
                .await
                .expect("published");
            let results = [a.await.expect("joined"), b.await.expect("joined")];
            let ok = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(ok, 1, "round {round}: {results:?}");
        }
        drop(hub);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[tokio::test]
async fn selector_readers_are_told_only_of_losses_they_would_have_received() {
    let hub = Hub::builder().history(4).build();
    // The log keeps its ring of every event (and what left it) from the first selector
    // subscription on; before that, a loss is assumed (see `lost_for`).
    let _first_selector = hub
        .subscribe(SubscribeRequest::selectors(set(&["*"])))
        .expect("room");
    let first = hub
        .publish_one(on(&["mine"], "0"))
        .await
        .expect("published");
    // Others' events push `mine`'s first out of the history; resumed from it, a `*` reader
    // of everything is told of a loss, one whose template selects only `mine`-ish topics
    // is not: nothing it would have received left.
    hub.publish((0..6).map(|i| on(&["other"], &i.to_string())).collect())
        .await
        .expect("published");
    hub.publish_one(on(&["mine/1"], "kept"))
        .await
        .expect("published");
    let resume = |selector: &str| {
        hub.subscribe(SubscribeRequest::selectors(set(&[selector])).resume_after(first.clone()))
            .expect("room")
    };
    let mut picky = resume("mine/{n}");
    assert_eq!(
        drain(&mut picky).await,
        [(hub.last_event_id(), "kept".to_string())]
    );
    let mut everything = resume("*");
    let got = drain(&mut everything).await;
    assert_eq!(
        got[0],
        ("gap".to_string(), "evicted".to_string()),
        "{got:?}"
    );
    // A template that would have received an evicted event is told.
    hub.publish((0..4).map(|i| on(&["other"], &i.to_string())).collect())
        .await
        .expect("published");
    let mut owed = hub
        .subscribe(SubscribeRequest::selectors(set(&["mine/{n}"])).resume_after(first))
        .expect("room");
    let got = drain(&mut owed).await;
    assert_eq!(
        got[0],
        ("gap".to_string(), "evicted".to_string()),
        "{got:?}"
    );
}

#[tokio::test]
async fn a_rare_template_over_a_long_history_gets_every_match() {
    let hub = Hub::builder().history(20_000).build();
    // Far more events than one read looks at (512 events × 8), three of them selected.
    for chunk in 0..10 {
        let events = (0..1000)
            .map(|i| {
                let n = chunk * 1000 + i;
                let topic = if n % 3333 == 7 {
                    format!("rare/{n}")
                } else {
                    "noise".into()
                };
                on(&[&topic], &n.to_string())
            })
            .collect();
        hub.publish(events).await.expect("published");
    }
    let mut sub = hub
        .subscribe(SubscribeRequest::selectors(set(&["rare/{n}"])).from_earliest())
        .expect("room");
    // n % 3333 == 7 below 10,000: three of them.
    assert_eq!(datas(&drain(&mut sub).await), ["7", "3340", "6673"]);
}

#[tokio::test]
async fn a_gap_names_the_first_event_as_the_subscriber_will_see_it() {
    let hub = Hub::builder().history(1).build();
    let first = hub.publish_one(on(&["a"], "0")).await.expect("published");
    hub.publish(vec![
        on(&["a"], "1"),
        on(&["a"], "2").with_id("order-2").expect("a good id"),
    ])
    .await
    .expect("published");
    let mut sub = hub
        .subscribe(
            SubscribeRequest::topics(["a"])
                .expect("a good topic")
                .resume_after(first),
        )
        .expect("room");
    match sub.recv().await {
        Ok(Received::Gap(gap)) => assert_eq!(gap.resumed_at.as_deref(), Some("order-2")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_first_selector_subscription_sees_what_was_published_before_it() {
    let hub = Hub::builder().build();
    hub.publish(vec![
        on(&["a"], "1"),
        on(&["b", "c"], "2").private(),
        on(&["c"], "3"),
    ])
    .await
    .expect("published");
    let mut sub = hub
        .subscribe(
            SubscribeRequest::selectors(set(&["*"]))
                .allow_private(set(&["b"]))
                .from_earliest(),
        )
        .expect("room");
    let mut got = Vec::new();
    while let Ok(Ok(Received::Event(e))) =
        tokio::time::timeout(Duration::from_millis(100), sub.recv()).await
    {
        got.push((e.data, e.topics));
    }
    let t = |n: &str| Topic::new(n).expect("a good topic");
    assert_eq!(
        got,
        [
            ("1".to_string(), vec![t("a")]),
            ("2".to_string(), vec![t("b"), t("c")]),
            ("3".to_string(), vec![t("c")]),
        ]
    );
}

#[tokio::test]
async fn a_tail_replays_the_newest_events_then_goes_on_live() {
    let hub = Hub::builder().build();
    hub.publish(
        (1..=5)
            .map(|i| on(&[if i % 2 == 0 { "b" } else { "a" }], &i.to_string()))
            .collect(),
    )
    .await
    .expect("published");
    hub.publish_one(on(&["a"], "secret").private())
        .await
        .expect("published");
    let open = |topics: &[&str], n: usize| {
        hub.subscribe(
            SubscribeRequest::topics(topics.iter().copied())
                .expect("good topics")
                .tail(n),
        )
        .expect("room")
    };
    // The newest 2 of `a` (1, 3, 5; the private one is not theirs), of `a` and `b` together,
    // more than there are, and none.
    assert_eq!(datas(&drain(&mut open(&["a"], 2)).await), ["3", "5"]);
    assert_eq!(
        datas(&drain(&mut open(&["a", "b"], 3)).await),
        ["3", "4", "5"]
    );
    assert_eq!(datas(&drain(&mut open(&["b"], 10)).await), ["2", "4"]);
    let mut live = open(&["a"], 0);
    assert!(drain(&mut live).await.is_empty());
    hub.publish_one(on(&["a"], "6")).await.expect("published");
    assert_eq!(datas(&drain(&mut live).await), ["6"]);
    // A resume wins over the tail.
    let first = hub.epoch().id(4);
    let mut resumed = hub
        .subscribe(
            SubscribeRequest::topics(["a"])
                .expect("a good topic")
                .tail(1)
                .resume_after(first),
        )
        .expect("room");
    assert_eq!(datas(&drain(&mut resumed).await), ["5", "6"]);
}
