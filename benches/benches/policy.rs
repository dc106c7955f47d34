#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Policy decisions at 10, 1,000 and 10,000 rules, beside the floor any
//! per-request lookup pays (one `ArcSwap` load and one `HashMap<SpiffeId, _>`
//! get), and the time to load a policy of 100,000 rules.
//!
//! ```text
//! cargo bench -p zt-benches --bench policy -- --warm-up-time 1 --measurement-time 3
//! ```

use std::collections::HashMap;
use std::hint::black_box;

use arc_swap::ArcSwap;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use zt_core::{Format, Policy, PolicyStore, Request, SpiffeId};
use zt_testkit::policy::policy_json;

const SIZES: [usize; 3] = [10, 1_000, 10_000];

fn id(s: &str) -> SpiffeId {
    s.parse().unwrap_or_else(|err| panic!("{s}: {err}"))
}

fn decide(c: &mut Criterion) {
    let exact = id("spiffe://example.org/svc-0");
    let pattern = id("spiffe://example.org/ns-6/prod/sa/api");
    let unknown = id("spiffe://example.org/unknown/peer");
    let http = Request::new("GET", "/svc-0/items");
    let grpc = Request::grpc("/pkg.Svc6/Get");
    let mut group = c.benchmark_group("policy_decide");
    for n in SIZES {
        let policy = Policy::parse(&policy_json(n), Format::Json)
            .unwrap_or_else(|err| panic!("policy of {n} rules: {err}"));
        assert_eq!(policy.rule_count(), n);
        let store = PolicyStore::new(policy);
        assert!(store.decide(&exact, &http).is_allowed());
        assert!(store.decide(&pattern, &grpc).is_allowed());
        assert!(!store.decide(&unknown, &http).is_allowed());

        group.bench_with_input(BenchmarkId::new("exact_id_allow", n), &n, |b, _| {
            b.iter(|| store.decide(black_box(&exact), black_box(&http)));
        });
        group.bench_with_input(BenchmarkId::new("pattern_allow", n), &n, |b, _| {
            b.iter(|| store.decide(black_box(&pattern), black_box(&grpc)));
        });
        group.bench_with_input(BenchmarkId::new("default_deny", n), &n, |b, _| {
            b.iter(|| store.decide(black_box(&unknown), black_box(&http)));
        });
    }

    // The floor: what any per-request authorization keyed on the peer's ID
    // costs at least, with 10,000 entries.
    let table: HashMap<SpiffeId, u32> = (0..10_000u32)
        .map(|i| (id(&format!("spiffe://example.org/svc-{i}")), i))
        .collect();
    let floor = ArcSwap::from_pointee(table);
    group.bench_function("floor_arcswap_load_hashmap_get", |b| {
        b.iter(|| floor.load().get(black_box(&exact)).copied());
    });
    group.finish();
}

/// Resident and peak resident memory of this process, in KiB (Linux).
fn memory_kib() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))?
            .trim()
            .trim_end_matches(" kB")
            .parse::<u64>()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn load(c: &mut Criterion) {
    const RULES: usize = 100_000;
    let json = policy_json(RULES);
    // The same document as YAML: a flow sequence of JSON objects is YAML too.
    let yaml = json.clone();

    let before = memory_kib();
    let policy = Policy::parse(&json, Format::Json).unwrap_or_else(|err| panic!("{err}"));
    let after = memory_kib();
    if let (Some((rss0, _)), Some((rss1, peak))) = (before, after) {
        eprintln!(
            "policy of {RULES} rules: {} KiB of JSON; resident memory grew by {} KiB after \
             loading it (process peak {peak} KiB)",
            json.len() / 1024,
            rss1.saturating_sub(rss0),
        );
    }
    drop(policy);

    let mut group = c.benchmark_group("policy_load_100k_rules");
    group.sample_size(10);
    group.bench_function("json", |b| {
        b.iter(|| Policy::parse(black_box(&json), Format::Json));
    });
    group.bench_function("yaml", |b| {
        b.iter(|| Policy::parse(black_box(&yaml), Format::Yaml));
    });
    group.finish();
}

criterion_group!(benches, decide, load);
criterion_main!(benches);
