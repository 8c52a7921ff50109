//! Concurrency stress: writers subscribe and unsubscribe over overlapping filters (so pruning
//! races with inserts on shared nodes) while matchers publish; the final table must be exactly
//! what the writers' own models say, with no empty or unreachable node left.

use std::sync::atomic::AtomicBool;
use std::thread;

use super::*;
use crate::router::test_rng::Rng;

const FILTERS: [&str; 24] = [
    "a",
    "a/b",
    "a/+",
    "a/#",
    "#",
    "+/b",
    "a/b/0/c",
    "a/b/1/c",
    "a/b/2/c",
    "a/b/3/c",
    "a/b/0/c/d/e",
    "a/b/1/c/d/e",
    "a/b/+/c/d",
    "a/x/c/d",
    "x/y/z",
    "x/y/w",
    "$SYS/+",
    "$SYS/a/b",
    "$share/g/a/b",
    "$share/h/a/#",
    "$share/g/a/b/0/c",
    "$share/g/a/b/1/c",
    "$share/g/a/b/0/c/d/e",
    "$share/h/x/y/z",
];

const TOPICS: [&str; 11] = [
    "a",
    "a/b",
    "a/b/c",
    "a/b/0/c",
    "a/b/1/c/d",
    "a/b/c/d/e",
    "a/x/c/d",
    "x/y/z",
    "$SYS/a",
    "$SYS/a/b",
    "q/b",
];

const WRITERS: u32 = 4;
const OPS_PER_WRITER: usize = 50_000;
/// Subscribed before the race and never touched: must be seen by every match of its topic.
const WATCHER: u32 = 999;
const WATCHED: &str = "a/b/c/d/e";

type Model = BTreeMap<(String, u32), (QoS, Option<u32>)>;

fn write(tree: &Tree, seed: u64, writer: u32) -> Model {
    let mut rng = Rng(seed);
    let mut model = Model::new();
    for _ in 0..OPS_PER_WRITER {
        // Each subscriber belongs to one writer, so the return values are deterministic.
        let subscriber = writer * 10 + rng.below(2) as u32;
        let filter = FILTERS[rng.below(FILTERS.len())];
        let key = (filter.to_owned(), subscriber);
        // Only shared subscriptions carry an identifier, so matchers can tell them apart.
        let identifier = filter.starts_with("$share/").then_some(subscriber + 1);
        let level = rng.below(3) as u8;
        // Unsubscribe twice as often, so nodes keep going empty and getting pruned.
        if rng.below(3) == 0 {
            let existed = model.insert(key, (qos(level), identifier)).is_some();
            let s = sub(subscriber, level, identifier);
            assert_eq!(
                tree.subscribe(filter, s),
                existed,
                "{filter} by {subscriber}"
            );
        } else {
            let existed = model.remove(&key).is_some();
            assert_eq!(tree.unsubscribe(filter, &subscriber), existed);
        }
    }
    model
}

fn publish(tree: &Tree, seed: u64, done: &AtomicBool) -> usize {
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    let mut rounds = 0;
    while rounds < 100 || !done.load(Ordering::Relaxed) {
        let topic = TOPICS[rng.below(TOPICS.len())];
        out.clear();
        tree.match_topic(topic, None::<&u32>, |_| true, &mut out);
        let plain: Vec<u32> = out
            .iter()
            .filter(|d| d.subscription_identifiers.is_empty())
            .map(|d| d.subscriber)
            .collect();
        let unique: BTreeSet<u32> = plain.iter().copied().collect();
        assert_eq!(unique.len(), plain.len(), "unmerged deliveries for {topic}");
        if topic == WATCHED {
            assert!(plain.contains(&WATCHER), "a live subscription was missed");
        }
        rounds += 1;
    }
    rounds
}

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn concurrent_subscribe_unsubscribe_match() {
    let tree = Tree::new();
    tree.subscribe(WATCHED, sub(WATCHER, 0, None));
    let done = AtomicBool::new(false);
    let models = thread::scope(|scope| {
        let (tree, done) = (&tree, &done);
        // Stops the matchers even when a writer panics, or the scope would wait for them forever.
        let stop = StopOnDrop(done);
        let matchers: Vec<_> = (0..2)
            .map(|m| scope.spawn(move || publish(tree, 0x5eed + m, done)))
            .collect();
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| scope.spawn(move || write(tree, 0x9e37_79b9 + u64::from(w), w)))
            .collect();
        let models: Vec<Model> = writers
            .into_iter()
            .map(|writer| writer.join().expect("writer panicked"))
            .collect();
        drop(stop);
        for matcher in matchers {
            assert!(matcher.join().expect("matcher panicked") >= 100);
        }
        models
    });

    let mut expected = Model::new();
    expected.insert((WATCHED.to_owned(), WATCHER), (QoS::AtMostOnce, None));
    for model in models {
        expected.extend(model);
    }
    let snap = snapshot(&tree);
    assert_eq!(snap.entries, expected);
    assert_eq!(
        snap.nodes,
        nodes_needed(expected.keys().map(|(f, _)| f.as_str()))
    );

    // The quiet table routes exactly as the model says.
    for topic in TOPICS {
        let mut plain = BTreeSet::new();
        let mut groups = BTreeSet::new();
        for (filter, subscriber) in expected.keys() {
            match parse_shared(filter).expect("valid") {
                Some(shared) if matches(shared.filter, topic) => {
                    groups.insert((shared.group, shared.filter));
                }
                None if matches(filter, topic) => {
                    plain.insert(*subscriber);
                }
                _ => {}
            }
        }
        let out = deliver(&tree, topic, None);
        let (shared, got): (Vec<_>, Vec<_>) = out
            .iter()
            .partition(|d| !d.subscription_identifiers.is_empty());
        let got: BTreeSet<u32> = got.iter().map(|d| d.subscriber).collect();
        assert_eq!(got, plain, "{topic}");
        assert_eq!(shared.len(), groups.len(), "{topic}");
    }
}
