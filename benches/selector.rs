//! Micro-benchmarks of selector matching, the per-event check of `*` and template
//! subscriptions: an exact set, `*`, and a URI template answered from its cache or not.
//! Run: `cargo bench --bench selector`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ssehub::selector::{Selector, SelectorSet, MAX_CACHED_TOPICS};
use ssehub::Topic;

fn set(selectors: &[&str]) -> SelectorSet {
    SelectorSet::new(
        selectors
            .iter()
            .map(|s| Selector::parse(s).unwrap())
            .collect(),
    )
}

fn matching(c: &mut Criterion) {
    let mut g = c.benchmark_group("selector");
    g.throughput(Throughput::Elements(1));
    let hit = Topic::new("https://example.com/books/1").unwrap();

    let exact = set(&[
        "news",
        "https://example.com/books/1",
        "https://example.com/books/2",
    ]);
    g.bench_function("exact set, hit", |b| b.iter(|| exact.matches(&hit)));
    let any = set(&["*"]);
    g.bench_function("*", |b| b.iter(|| any.matches(&hit)));

    let template = set(&["https://example.com/books/{id}"]);
    g.bench_function("template, cached", |b| b.iter(|| template.matches(&hit)));
    // More distinct topics than the cache holds, cycled: every look-up misses and runs the regex.
    let topics: Vec<Topic> = (0..4 * MAX_CACHED_TOPICS)
        .map(|i| Topic::new(&format!("https://example.com/books/{i}")).unwrap())
        .collect();
    let mut next = topics.iter().cycle();
    g.bench_function("template, miss", |b| {
        b.iter(|| template.matches(next.next().unwrap()))
    });
    g.finish();
}

criterion_group!(benches, matching);
criterion_main!(benches);
