//! Topic-tree cost at 100k subscriptions: what one PUBLISH pays to find its receivers, what one
//! SUBSCRIBE plus UNSUBSCRIBE pays, and what validating a topic from the wire costs.
//!
//! Group names carry the tree's real size, and every match case is checked for the number of
//! deliveries its name promises before it is timed, so `cargo test --benches` also proves that
//! the cases measure what they say.

use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use nanomq::config::LimitsConfig;
use nanomq::mqtt::SubscriptionOptions;
use nanomq::router::{
    validate_topic_filter, validate_topic_name, Delivery, Subscription, SubscriptionTree,
};

/// Subscriber handles are plain numbers: the tree is generic, and the broker's handle is a
/// pointer-compared `Arc`, as cheap to hash and clone.
type Tree = SubscriptionTree<u32>;

/// Subscriptions in every tree.
const SUBSCRIPTIONS: u32 = 100_000;

/// Sites in `site/{site}/dev/{device}/temp`; a device's site is `device % SITES`.
const SITES: u32 = 100;

/// Share groups per site in the shared tree, and members per group.
const GROUPS: u32 = 10;
const MEMBERS: u32 = 10;

fn device_topic(device: u32) -> String {
    format!("site/{}/dev/{device}/temp", device % SITES)
}

fn subscription(subscriber: u32) -> Subscription<u32> {
    Subscription {
        subscriber,
        options: SubscriptionOptions::default(),
        identifier: None,
    }
}

/// Subscribes one distinct subscriber to each filter, numbering them from `first`.
fn subscribe_all(tree: &Tree, first: u32, filters: impl Iterator<Item = String>) {
    for (subscriber, filter) in (first..).zip(filters) {
        tree.subscribe(&filter, subscription(subscriber));
    }
}

/// (a) One exact filter per device: the common edge deployment, one subscriber per sensor.
fn exact_tree() -> Tree {
    let tree = Tree::new();
    subscribe_all(&tree, 0, (0..SUBSCRIPTIONS).map(device_topic));
    tree
}

/// (b) 90% exact filters; 10% wildcards: `site/+/dev/{device}/#` for the first devices and
/// `site/{site}/#` for every site.
fn mixed_tree() -> Tree {
    let exact = SUBSCRIPTIONS / 10 * 9;
    let plus = SUBSCRIPTIONS - exact - SITES;
    let tree = Tree::new();
    subscribe_all(&tree, 0, (0..exact).map(device_topic));
    let plus_filters = (0..plus).map(|device| format!("site/+/dev/{device}/#"));
    subscribe_all(&tree, exact, plus_filters);
    let site_filters = (0..SITES).map(|site| format!("site/{site}/#"));
    subscribe_all(&tree, exact + plus, site_filters);
    tree
}

/// (d) 90% exact filters; 10% share-group members: per site, [`GROUPS`] groups of [`MEMBERS`]
/// on `$share/g{group}/site/{site}/#`.
fn shared_tree() -> Tree {
    let exact = SUBSCRIPTIONS - SITES * GROUPS * MEMBERS;
    let tree = Tree::new();
    subscribe_all(&tree, 0, (0..exact).map(device_topic));
    let shared = (0..SITES).flat_map(|site| {
        (0..GROUPS * MEMBERS).map(move |i| format!("$share/g{}/site/{site}/#", i / MEMBERS))
    });
    subscribe_all(&tree, exact, shared);
    tree
}

/// Half the sessions are online, so share groups take their skip-offline path.
fn online(subscriber: &u32) -> bool {
    subscriber.is_multiple_of(2)
}

/// Times `match_topic` for `topic`, named `{what}_{deliveries}_deliveries` after checking that
/// it yields that many.
fn bench_match(
    group: &mut BenchmarkGroup<'_, WallTime>,
    tree: &Tree,
    what: &str,
    topic: &str,
    deliveries: usize,
) {
    let mut out: Vec<Delivery<u32>> = Vec::new();
    tree.match_topic(topic, None::<&u32>, online, &mut out);
    assert_eq!(out.len(), deliveries, "{what}: {topic}");
    group.bench_function(format!("{what}_{deliveries}_deliveries"), |b| {
        b.iter(|| {
            out.clear();
            tree.match_topic(black_box(topic), None::<&u32>, online, &mut out);
        })
    });
}

fn bench_matching(c: &mut Criterion) {
    let tree = exact_tree();
    let mut group = c.benchmark_group(format!("match_{}_exact_filters", tree.len()));
    bench_match(&mut group, &tree, "hit", "site/42/dev/4242/temp", 1);
    bench_match(&mut group, &tree, "miss_at_leaf", "site/42/dev/4242/hum", 0);
    group.finish();

    let tree = mixed_tree();
    let name = format!("match_{}_filters_10pct_wildcards", tree.len());
    let mut group = c.benchmark_group(name);
    // The device's exact filter, `site/+/dev/4242/#` and `site/42/#`.
    bench_match(&mut group, &tree, "hit", "site/42/dev/4242/temp", 3);
    // No `site/100`: only the `+` branch is walked, and it has no device 99999.
    bench_match(
        &mut group,
        &tree,
        "miss_via_plus",
        "site/100/dev/99999/temp",
        0,
    );
    group.finish();

    let tree = shared_tree();
    let name = format!(
        "match_{}_filters_{GROUPS}_share_groups_per_site",
        tree.len()
    );
    let mut group = c.benchmark_group(name);
    // The device's exact filter and one member of each of site 42's groups.
    let deliveries = 1 + GROUPS as usize;
    bench_match(
        &mut group,
        &tree,
        "hit",
        "site/42/dev/4242/temp",
        deliveries,
    );
    group.finish();
}

/// One SUBSCRIBE then UNSUBSCRIBE per iteration, so the tree is the same for every iteration.
fn bench_subscribe(c: &mut Criterion) {
    let tree = exact_tree();
    let mut group = c.benchmark_group(format!("subscribe_unsubscribe_{}_filters", tree.len()));
    let newcomer = SUBSCRIPTIONS;
    let cases = [
        // Creates two nodes, which the unsubscribe prunes again.
        ("new_filter", "site/42/dev/100042/temp".to_owned()),
        ("existing_filter", device_topic(4242)),
        ("share_group", format!("$share/g0/{}", device_topic(4242))),
    ];
    for (name, filter) in cases {
        let before = tree.len();
        assert!(!tree.subscribe(&filter, subscription(newcomer)), "{name}");
        assert!(tree.unsubscribe(&filter, &newcomer), "{name}");
        assert_eq!(tree.len(), before, "{name}");
        group.bench_function(name, |b| {
            b.iter(|| {
                tree.subscribe(black_box(&filter), subscription(newcomer));
                tree.unsubscribe(black_box(&filter), &newcomer)
            })
        });
    }
    group.finish();
}

/// What the broker checks on every PUBLISH topic and SUBSCRIBE filter, under its default level
/// limit.
fn bench_validate(c: &mut Criterion) {
    let max_levels = LimitsConfig::default().max_topic_levels;
    let mut group = c.benchmark_group("validate");
    let deep = vec!["level"; 32].join("/");
    let names = [
        ("name_5_levels", device_topic(4242)),
        ("name_32_levels", deep),
    ];
    for (name, topic) in &names {
        assert_eq!(validate_topic_name(topic, max_levels), Ok(()), "{name}");
        group.throughput(Throughput::Bytes(topic.len() as u64));
        group.bench_function(*name, |b| {
            b.iter(|| validate_topic_name(black_box(topic), max_levels))
        });
    }
    let filters = [
        ("filter_plus_hash", "site/+/dev/4242/#"),
        ("filter_shared", "$share/g0/site/+/dev/#"),
    ];
    for (name, filter) in filters {
        assert_eq!(validate_topic_filter(filter, max_levels), Ok(()), "{name}");
        group.throughput(Throughput::Bytes(filter.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| validate_topic_filter(black_box(filter), max_levels))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_matching, bench_subscribe, bench_validate);
criterion_main!(benches);
