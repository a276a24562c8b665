//! Matching a PUBLISH topic against 100,000 subscriptions: the subscription tree against the naive
//! approach (test every filter), in the same run.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use outpost_codec::topic;
use outpost_mqtt::SubscriptionTree;

fn filters(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match i % 10 {
            0 => format!("site/{}/+/temperature", i % 97),
            1 => format!("site/{}/#", i % 89),
            _ => format!("site/{}/device/{i}/telemetry", i % 100),
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let all = filters(100_000);
    let mut tree = SubscriptionTree::new();
    for (i, f) in all.iter().enumerate() {
        tree.insert(f, i as u32, ());
    }
    let topic = "site/42/device/4242/telemetry";
    let expected = all.iter().filter(|f| topic::matches(f, topic)).count();
    assert_eq!(tree.matches(topic).len(), expected);

    let mut group = c.benchmark_group("match_100k_subscriptions");
    group.throughput(Throughput::Elements(1));
    group.bench_function("linear-scan", |b| {
        b.iter(|| all.iter().filter(|f| topic::matches(f, topic)).count())
    });
    group.bench_function("outpost-tree", |b| {
        b.iter(|| {
            let mut n = 0;
            tree.for_each_match(topic, |_, _| n += 1);
            n
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
