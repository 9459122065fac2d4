//! Lookup cost, linear reference against TupleMerge, 3-tuple against 5-tuple, at 100, 1k, 10k
//! and 100k generated rules (acl shape), plus the ClassBench 10k sets when
//! `../shared/data/classbench` is present. Each iteration classifies a batch of 256 keys drawn
//! from the rules (throughput is per key). Kept short: small samples, 2-second measurements.
//! Run: `cargo bench --bench lookup` (filter e.g. `-- 'lookup/five'`).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flowpol::classify::{Classifier, FastFive, FastThree, Key, Linear};
use flowpol::r#gen::classbench::{self, As, DEFAULT_MAP_V4};
use flowpol::r#gen::rules::{self, Shape, Tuple};
use flowpol::packet::key::{FiveTuple, ThreeTuple};
use flowpol::policy::Policy;
use std::hint::black_box;
use std::time::Duration;

const BATCH: usize = 256;

fn bench_engine<K: Key>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: BenchmarkId,
    engine: &dyn Classifier<K>,
    keys: &[K],
) {
    g.bench_with_input(id, keys, |b, keys| {
        b.iter(|| {
            let mut n = 0u32;
            for k in keys {
                n = n.wrapping_add(engine.classify(black_box(k)).map_or(0, |r| r.0));
            }
            n
        })
    });
}

fn both(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    label: &str,
    p5: &Policy,
    k5: &[FiveTuple],
    p3: &Policy,
    k3: &[ThreeTuple],
) {
    bench_engine(
        g,
        BenchmarkId::new("five/linear", label),
        &Linear::<FiveTuple>::new(p5),
        k5,
    );
    bench_engine(
        g,
        BenchmarkId::new("five/fast", label),
        &FastFive::new(p5),
        k5,
    );
    bench_engine(
        g,
        BenchmarkId::new("three/linear", label),
        &Linear::<ThreeTuple>::new(p3),
        k3,
    );
    bench_engine(
        g,
        BenchmarkId::new("three/fast", label),
        &FastThree::new(p3),
        k3,
    );
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("lookup");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements(BATCH as u64));
    for n in [100usize, 1_000, 10_000, 100_000] {
        let p5 = rules::generate(Shape::Acl, n, 42, Tuple::Five);
        let p3 = rules::generate(Shape::Acl, n, 42, Tuple::Three);
        let k5 = rules::five_keys(&p5, BATCH, 7);
        let k3 = rules::three_keys(&p3, BATCH, 7);
        both(&mut g, &format!("acl-{n}"), &p5, &k5, &p3, &k3);
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/classbench");
    for set in ["acl1_10k", "fw1_10k", "ipc1_10k"] {
        let Ok(text) = std::fs::read_to_string(format!("{dir}/{set}")) else {
            eprintln!("{dir} absent: ClassBench lookups not measured");
            break;
        };
        let cb = classbench::parse_rules(&text).expect("ClassBench rules");
        let p5 = classbench::to_policy(&cb, As::Five, DEFAULT_MAP_V4);
        let p3 = classbench::to_policy(&cb, As::Three, DEFAULT_MAP_V4);
        let (k5, k3): (Vec<FiveTuple>, Vec<ThreeTuple>) =
            match std::fs::read_to_string(format!("{dir}/{set}_trace")) {
                Ok(t) => {
                    let t = classbench::parse_trace(&t).expect("ClassBench trace");
                    let step = (t.len() / BATCH).max(1);
                    let t: Vec<_> = t.into_iter().step_by(step).take(BATCH).collect();
                    (
                        t.iter().map(|p| p.five(DEFAULT_MAP_V4)).collect(),
                        t.iter().map(|p| p.three(DEFAULT_MAP_V4)).collect(),
                    )
                }
                Err(_) => (
                    rules::five_keys(&p5, BATCH, 7),
                    rules::three_keys(&p3, BATCH, 7),
                ),
            };
        both(&mut g, set, &p5, &k5, &p3, &k3);
    }
    g.finish();
}

fn build(c: &mut Criterion) {
    let mut g = c.benchmark_group("build");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for n in [10_000usize, 100_000] {
        let p5 = rules::generate(Shape::Fw, n, 42, Tuple::Five);
        let p3 = rules::generate(Shape::Fw, n, 42, Tuple::Three);
        g.bench_function(BenchmarkId::new("five/fast", n), |b| {
            b.iter(|| FastFive::new(&p5))
        });
        g.bench_function(BenchmarkId::new("three/fast", n), |b| {
            b.iter(|| FastThree::new(&p3))
        });
    }
    g.finish();
}

criterion_group!(benches, lookup, build);
criterion_main!(benches);
