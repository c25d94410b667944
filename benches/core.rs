//! Micro-benchmarks of the hot paths: encoding an event once, parsing a stream, publishing into
//! the log (with 1 topic or 10,000 topics around), a subscriber taking a batch, and turning a
//! JSON publish body into events.
//! Run: `cargo bench --bench core`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ssehub::event::{encode, Event};
use ssehub::parse::{FrameRef, Parser};
use ssehub::selector::{Selector, SelectorSet};
use ssehub::{Hub, SubscribeRequest};

fn data(size: usize) -> String {
    "x".repeat(size)
}

fn encoding(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    let one_line = Event::new(data(128)).with_topic("t").unwrap();
    let named = Event::new("a\nb\r\nc".repeat(20))
        .with_name("status")
        .unwrap();
    g.throughput(Throughput::Elements(1));
    g.bench_function("128 B, one line", |b| {
        b.iter(|| encode("0123456789ab-123456", &one_line))
    });
    g.bench_function("named, 60 lines", |b| {
        b.iter(|| encode("0123456789ab-123456", &named))
    });
    g.finish();
}

fn parsing(c: &mut Criterion) {
    let mut stream = Vec::new();
    for i in 0..1000 {
        let e = Event::new(data(128)).with_topic("t").unwrap();
        stream.extend_from_slice(&encode(&format!("0123456789ab-{i}"), &e));
    }
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("1000 events of 128 B, one buffer", |b| {
        b.iter(|| {
            let mut p = Parser::new();
            let mut n = 0;
            p.feed_ref(&stream, &mut |f| {
                n += matches!(f, FrameRef::Event { .. }) as usize
            });
            assert_eq!(n, 1000);
        })
    });
    g.bench_function("1000 events of 128 B, 1460-byte pieces", |b| {
        b.iter(|| {
            let mut p = Parser::new();
            let mut n = 0;
            for piece in stream.chunks(1460) {
                p.feed_ref(piece, &mut |f| {
                    n += matches!(f, FrameRef::Event { .. }) as usize
                });
            }
            assert_eq!(n, 1000);
        })
    });
    g.finish();
}

/// A subscriber task that takes everything as it comes, as a stream does (no batch window).
fn waiting(
    runtime: &tokio::runtime::Runtime,
    hub: &Hub,
    request: SubscribeRequest,
) -> tokio::task::JoinHandle<()> {
    let mut sub = hub.subscribe(request).unwrap();
    runtime.spawn(async move {
        let mut out = Vec::new();
        while sub.next(&mut out).await.is_ok() {
            out.clear();
        }
    })
}

/// Lets every subscriber task reach its wait.
fn settle(runtime: &tokio::runtime::Runtime) {
    runtime.block_on(async {
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
    });
}

fn log(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("publish 100 events");
    g.throughput(Throughput::Elements(100));
    for topics in [1usize, 10_000] {
        // `topics` topics exist, each with a subscriber task waiting on the hub (registered for
        // a wake-up, as a stream is); the batch goes to one of them, whose task then takes it
        // (no batch window: it is back waiting before the next batch).
        let hub = Hub::builder()
            .max_clients(20_000)
            .history(10_000)
            .batch_window(std::time::Duration::ZERO)
            .build();
        let subs: Vec<_> = (0..topics)
            .map(|i| {
                waiting(
                    &runtime,
                    &hub,
                    SubscribeRequest::topics([format!("t{i}")]).unwrap(),
                )
            })
            .collect();
        settle(&runtime);
        g.bench_function(
            format!("{topics} topics, a waiting subscriber on each"),
            |b| {
                b.iter_batched(
                    || {
                        (0..100)
                            .map(|_| Event::new(data(128)).with_topic("t0").unwrap())
                            .collect::<Vec<_>>()
                    },
                    |events| {
                        runtime.block_on(async {
                            hub.publish(events).await.unwrap();
                            // The woken subscriber takes the batch.
                            tokio::task::yield_now().await;
                        })
                    },
                    BatchSize::SmallInput,
                )
            },
        );
        for sub in subs {
            sub.abort();
        }
    }
    // The same publish, taken by one subscriber that reads every event and filters it: a `*`
    // or a URI-template selector (what Mercure subscribers often use), against 1,000 other
    // exact-topic subscribers that are not woken.
    for selector in ["*", "https://example.com/t/{id}"] {
        let hub = Hub::builder()
            .max_clients(20_000)
            .history(10_000)
            .batch_window(std::time::Duration::ZERO)
            .build();
        let mut subs: Vec<_> = (0..1000)
            .map(|i| {
                let request = SubscribeRequest::topics([format!("other{i}")]).unwrap();
                waiting(&runtime, &hub, request)
            })
            .collect();
        let set = SelectorSet::new(vec![Selector::parse(selector).unwrap()]);
        subs.push(waiting(&runtime, &hub, SubscribeRequest::selectors(set)));
        settle(&runtime);
        g.bench_function(format!("selector {selector}, waiting"), |b| {
            b.iter_batched(
                || {
                    (0..100)
                        .map(|i| {
                            Event::new(data(128))
                                .with_topic(&format!("https://example.com/t/{}", i % 10))
                                .unwrap()
                        })
                        .collect::<Vec<_>>()
                },
                |events| {
                    runtime.block_on(async {
                        hub.publish(events).await.unwrap();
                        tokio::task::yield_now().await;
                    })
                },
                BatchSize::SmallInput,
            )
        });
        for sub in subs {
            sub.abort();
        }
    }
    g.finish();

    let mut g = c.benchmark_group("subscriber");
    g.throughput(Throughput::Elements(100));
    g.bench_function("take a batch of 100 events", |b| {
        // Criterion prepares many inputs before timing them: room for all of them.
        let hub = Hub::builder().max_clients(1 << 20).history(1 << 20).build();
        b.iter_batched(
            || {
                runtime.block_on(async {
                    let mut sub = hub
                        .subscribe(SubscribeRequest::topics(["t"]).unwrap())
                        .unwrap();
                    let mut out = Vec::new();
                    sub.next(&mut out).await.unwrap(); // the opening
                    let events = (0..100)
                        .map(|_| Event::new(data(128)).with_topic("t").unwrap())
                        .collect();
                    hub.publish(events).await.unwrap();
                    sub
                })
            },
            |mut sub| {
                runtime.block_on(async {
                    let mut out = Vec::with_capacity(100);
                    sub.next(&mut out).await.unwrap();
                    assert_eq!(out.len(), 100);
                })
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn json_publish(c: &mut Criterion) {
    // What a publisher batching small status objects sends: a 1,000-element array.
    let body = |data: &dyn Fn(usize) -> String| {
        let items: Vec<String> = (0..1000)
            .map(|i| {
                format!(
                    r#"{{"topic": "t{}", "event": "tick", "data": {}}}"#,
                    i % 10,
                    data(i)
                )
            })
            .collect();
        format!("[{}]", items.join(", "))
    };
    let objects =
        body(&|i| format!(r#"{{"seq": {i}, "ok": true, "load": 0.50, "host": "web-{i}"}}"#));
    let strings = body(&|i| format!(r#""line {i} of the log""#));
    let mut g = c.benchmark_group("publish request, JSON array of 1,000");
    g.throughput(Throughput::Elements(1000));
    for (name, body) in [("object data", &objects), ("string data", &strings)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let events = ssehub::http::publish_request_events("", true, body.as_bytes());
                assert_eq!(events.map(|e| e.len()), Ok(1000));
            })
        });
    }
    g.finish();
}

/// What a stream's writer adds per write for `/metrics` (`Subscription::delivered`: bytes out and
/// the sampled delivery lag), against the event's path it rides on: publish one, read it.
fn delivery_report(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let hub = Hub::builder()
        .batch_window(std::time::Duration::ZERO)
        .build();
    let mut sub = hub
        .subscribe(SubscribeRequest::topics(["a"]).unwrap())
        .unwrap();
    let mut out = Vec::new();
    runtime.block_on(sub.next(&mut out)).unwrap();
    let mut g = c.benchmark_group("one event to one stream");
    for report in [false, true] {
        let name = if report {
            "publish, read, delivered()"
        } else {
            "publish, read"
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    hub.publish_one(Event::new("x").with_topic("a").unwrap())
                        .await
                        .unwrap();
                    out.clear();
                    sub.next(&mut out).await.unwrap();
                    if report {
                        sub.delivered(out.iter().map(|b| b.len()).sum());
                    }
                })
            })
        });
    }
    g.bench_function("delivered() alone", |b| b.iter(|| sub.delivered(100)));
    g.finish();
}

criterion_group!(
    benches,
    encoding,
    parsing,
    log,
    json_publish,
    delivery_report
);
criterion_main!(benches);
