//! Measures the fast engines against the linear reference for docs/performance.md:
//! `cargo run --release --example fast_targets [-- QUICK] [TUNE] [BUILD]`. The ns/lookup
//! against rule-count figure is `flowpol bench --sweep acl --plot docs/lookup-vs-rules.svg`.
//!
//! ClassBench 10k sets (from ../shared/data/classbench, with their traces when present, else
//! keys drawn from the rules), and generated 100k-rule sets. Every key goes through both engines
//! in the same run; a mismatch aborts. Times are CPU time of the measuring thread. Build peak memory is measured by a counting allocator.

use flowpol::classify::{Classifier, Key, Linear, TmConfig, TupleMerge};

/// This tool tunes and measures TupleMerge itself (not the cost model's choice).
type FastFive = TupleMerge<FiveTuple>;
type FastThree = TupleMerge<ThreeTuple>;
use flowpol::r#gen::classbench::{self, As, DEFAULT_MAP_V4};
use flowpol::r#gen::rules::{self, Shape};
use flowpol::packet::key::{FiveTuple, ThreeTuple};
use flowpol::policy::Policy;
use flowpol::policy::syntax::TupleKind;
use std::hint::black_box;
use support::alloc;

#[global_allocator]
static A: support::alloc::Counting = support::alloc::Counting;

fn time_ns<K, C: Classifier<K> + ?Sized>(c: &C, keys: &[K], min_rounds: usize) -> (f64, u64)
where
    K: Key,
{
    let mut rounds = 0;
    let mut sum = 0u64;
    let start = cpu_ns();
    while rounds < min_rounds || cpu_ns() - start < 300_000_000 {
        for k in keys {
            sum =
                sum.wrapping_add(black_box(c.classify(black_box(k))).map_or(0, |r| u64::from(r.0)));
        }
        rounds += 1;
    }
    (
        (cpu_ns() - start) as f64 / (rounds * keys.len()) as f64,
        sum,
    )
}

/// CPU time of this thread in ns (the bench harness's clock): the machine is shared, and wall
/// time would count the time other processes had the core.
fn cpu_ns() -> u64 {
    flowpol::bench::thread_time().as_nanos() as u64
}

struct Row {
    name: String,
    rules: usize,
    build_ms: f64,
    peak_mb: f64,
    bytes: usize,
    tables: usize,
    lin_ns: f64,
    fast_ns: f64,
}

fn run<K, F>(
    name: &str,
    policy: &Policy,
    keys: &[K],
    build: impl Fn(&Policy) -> F,
    stats: impl Fn(&F) -> usize,
) -> Row
where
    K: Key + Send + Sync + std::fmt::Debug,
    K::Match: Clone + Send + Sync,
    F: Classifier<K>,
{
    let lin = Linear::<K>::new(policy);
    let base = alloc::reset_peak();
    let t = cpu_ns();
    let fast = build(policy);
    let build_ms = (cpu_ns() - t) as f64 / 1e6;
    let peak_mb = (alloc::peak_bytes() - base) as f64 / 1e6;
    for k in keys {
        let (a, b) = (lin.classify(k), fast.classify(k));
        assert_eq!(a, b, "{name}: mismatch on {k:?}");
    }
    let (lin_ns, _) = time_ns(&lin, keys, 1);
    let (fast_ns, _) = time_ns(&fast, keys, 3);
    Row {
        name: name.to_string(),
        rules: K::rules(policy).len(),
        build_ms,
        peak_mb,
        bytes: fast.memory_bytes(),
        tables: stats(&fast),
        lin_ns,
        fast_ns,
    }
}

fn main() {
    if std::env::args().any(|a| a == "BUILD") {
        // Build cost only, 100k generated rules.
        for shape in [Shape::Acl, Shape::Fw, Shape::Ipc] {
            for tuple in [TupleKind::Five, TupleKind::Three] {
                let p = rules::generate(shape, 100_000, 42, tuple);
                let base = alloc::reset_peak();
                let t = cpu_ns();
                let (tables, bytes) = match tuple {
                    TupleKind::Five => {
                        let f = FastFive::new(&p);
                        (f.stats().tables, f.memory_bytes())
                    }
                    TupleKind::Three => {
                        let f = FastThree::new(&p);
                        (f.stats().tables, f.memory_bytes())
                    }
                };
                let ms = (cpu_ns() - t) as f64 / 1e6;
                let peak = (alloc::peak_bytes() - base) as f64 / 1e6;
                println!(
                    "{shape:?} {tuple:?} 100k: build {ms:.1} ms, peak {peak:.1} MB, {bytes} bytes, {tables} tables"
                );
            }
        }
        return;
    }
    let quick = std::env::args().any(|a| a == "QUICK");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/classbench");
    let mut rows = Vec::new();
    let n_keys = if quick { 5_000 } else { 50_000 };
    for set in ["acl1_10k", "fw1_10k", "ipc1_10k"] {
        let Ok(text) = std::fs::read_to_string(format!("{dir}/{set}")) else {
            eprintln!("{dir}/{set} absent: skipping the ClassBench sets");
            break;
        };
        let cb = classbench::parse_rules(&text).expect("ClassBench rules");
        let trace = std::fs::read_to_string(format!("{dir}/{set}_trace"))
            .ok()
            .map(|t| classbench::parse_trace(&t).expect("ClassBench trace"));
        let p5 = classbench::to_policy(&cb, As::Five, DEFAULT_MAP_V4);
        let p3 = classbench::to_policy(&cb, As::Three, DEFAULT_MAP_V4);
        let (k5, k3, src): (Vec<FiveTuple>, Vec<ThreeTuple>, &str) = match &trace {
            Some(t) => {
                let t = &t[..t.len().min(n_keys)];
                (
                    t.iter().map(|p| p.five(DEFAULT_MAP_V4)).collect(),
                    t.iter().map(|p| p.three(DEFAULT_MAP_V4)).collect(),
                    "trace",
                )
            }
            None => (
                rules::five_keys(&p5, n_keys, 1),
                rules::three_keys(&p3, n_keys, 1),
                "drawn",
            ),
        };
        if std::env::args().any(|a| a == "TUNE") {
            for limit in [16, 32, 64] {
                for step in [8, 16] {
                    let cfg = TmConfig {
                        collision_limit: limit,
                        merge_limit: limit.max(flowpol::classify::tuplemerge::MERGE_LIMIT),
                        addr_step: step,
                    };
                    let f5 = FastFive::with_config(&FiveTuple::rules(&p5), cfg);
                    let f3 = FastThree::with_config(&ThreeTuple::rules(&p3), cfg);
                    let (n5, _) = time_ns(&f5, &k5, 3);
                    let probes5: usize = k5.iter().map(|k| f5.lookup_counted(k).1).sum();
                    let checks5: usize = k5.iter().map(|k| f5.lookup_counted(k).2).sum();
                    let probes3: usize = k3.iter().map(|k| f3.lookup_counted(k).1).sum();
                    println!(
                        "   five: {:.1} probes {:.1} checks per key; three: {:.1} probes",
                        probes5 as f64 / k5.len() as f64,
                        checks5 as f64 / k5.len() as f64,
                        probes3 as f64 / k3.len() as f64
                    );
                    let (n3, _) = time_ns(&f3, &k3, 3);
                    println!(
                        "{set} limit {limit} step {step}: five {n5:.0} ns ({} tables), three {n3:.0} ns ({} tables)",
                        f5.stats().tables,
                        f3.stats().tables
                    );
                }
            }
            continue;
        }
        rows.push(run(
            &format!("{set} five ({src})"),
            &p5,
            &k5,
            FastFive::new,
            |f| f.stats().tables,
        ));
        rows.push(run(
            &format!("{set} three ({src})"),
            &p3,
            &k3,
            FastThree::new,
            |f| f.stats().tables,
        ));
    }
    let big = if quick { 20_000 } else { 100_000 };
    for shape in [Shape::Acl, Shape::Fw, Shape::Ipc] {
        let p5 = rules::generate(shape, big, 42, TupleKind::Five);
        let k5 = rules::five_keys(&p5, n_keys / 5, 2);
        rows.push(run(
            &format!("gen {shape:?} {big} five"),
            &p5,
            &k5,
            FastFive::new,
            |f| f.stats().tables,
        ));
        let p3 = rules::generate(shape, big, 42, TupleKind::Three);
        let k3 = rules::three_keys(&p3, n_keys / 5, 2);
        rows.push(run(
            &format!("gen {shape:?} {big} three"),
            &p3,
            &k3,
            FastThree::new,
            |f| f.stats().tables,
        ));
    }
    println!(
        "| set | rules | build ms | build peak MB | engine bytes | tables | linear ns | fast ns | speed-up |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {:.1} | {:.1} | {} | {} | {:.0} | {:.1} | {:.0}× |",
            r.name,
            r.rules,
            r.build_ms,
            r.peak_mb,
            r.bytes,
            r.tables,
            r.lin_ns,
            r.fast_ns,
            r.lin_ns / r.fast_ns
        );
    }
}
