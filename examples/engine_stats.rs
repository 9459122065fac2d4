//! Probes per lookup and ns per lookup (one key at a time, and through `classify_batch`) of
//! every 5-tuple engine on ClassBench sets, and the cost model's choice, for tuning:
//! `cargo run --release --example engine_stats -- POLICY.pol TRACE [POLICY TRACE ...]`.
//! The policies are `flowpol import classbench --as five` output; the traces are ClassBench
//! traces. Every key goes through every engine and the linear reference first; a mismatch
//! aborts. `LEAVES=4,6,12` sets the HyperSplit leaf sizes tried (budget 64 entry copies per
//! entry). `-- GEN` instead builds generated 10k and 100k sets through the cost model and
//! prints build time, memory, choice and probes. Times are CPU time of the measuring thread,
//! best of five rounds.

use flowpol::classify::{Classifier, Fast, HsConfig, HyperSplit, Key, Linear, TupleMerge};
use flowpol::r#gen::classbench::{self, DEFAULT_MAP_V4};
use flowpol::packet::key::FiveTuple;
use std::hint::black_box;
use std::time::Instant;

/// CPU time of this thread in ns (the bench harness's clock).
fn cpu_ns() -> u64 {
    flowpol::bench::thread_time().as_nanos() as u64
}

/// Best of five rounds of at least 100 ms CPU time each, in ns per lookup (CPU time of this
/// thread, so time the core spent on other processes is not counted).
fn time_ns<C: Classifier<FiveTuple>>(c: &C, keys: &[FiveTuple]) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = cpu_ns();
        let mut rounds = 0usize;
        let mut sum = 0u64;
        while rounds == 0 || cpu_ns() - start < 100_000_000 {
            for k in keys {
                sum = sum.wrapping_add(c.classify(k).map_or(0, |r| u64::from(r.0)));
            }
            rounds += 1;
        }
        black_box(sum);
        best = best.min((cpu_ns() - start) as f64 / (rounds * keys.len()) as f64);
    }
    best
}

/// As [`time_ns`], through `classify_batch`.
fn time_batch_ns<C: Classifier<FiveTuple>>(c: &C, keys: &[FiveTuple]) -> f64 {
    let mut out = vec![None; keys.len()];
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = cpu_ns();
        let mut rounds = 0usize;
        while rounds == 0 || cpu_ns() - start < 100_000_000 {
            c.classify_batch(keys, &mut out);
            black_box(&out);
            rounds += 1;
        }
        best = best.min((cpu_ns() - start) as f64 / (rounds * keys.len()) as f64);
    }
    best
}

fn report<C: Classifier<FiveTuple>>(
    set: &str,
    c: &C,
    lin: &[Option<flowpol::classify::RuleId>],
    keys: &[FiveTuple],
) {
    let mut probes = 0u64;
    let mut max = 0u32;
    for (k, want) in keys.iter().zip(lin) {
        let (got, n) = c.classify_counted(k);
        assert_eq!(got, *want, "{set} {}: {k:?}", c.name());
        assert_eq!(c.classify(k), *want, "{set} {}: {k:?}", c.name());
        probes += u64::from(n);
        max = max.max(n);
    }
    let ns = time_ns(c, keys);
    let mut out = vec![None; keys.len()];
    c.classify_batch(keys, &mut out);
    assert_eq!(out, lin, "{set} {} batch", c.name());
    let bns = time_batch_ns(c, keys);
    println!(
        "{set:>10} {:>12} ns {ns:7.1} batch {bns:7.1} probes {:6.2} max {max:4} bytes {:>9}",
        c.name(),
        probes as f64 / keys.len() as f64,
        c.memory_bytes()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "GEN") {
        use flowpol::r#gen::rules::{self, Shape};
        use flowpol::policy::syntax::TupleKind;
        for n in [10_000, 100_000] {
            for shape in [Shape::Acl, Shape::Fw, Shape::Ipc] {
                let p = rules::generate(shape, n, 42, TupleKind::Five);
                let t = Instant::now();
                let (fast, est) = Fast::<FiveTuple>::choose(&FiveTuple::rules(&p));
                let build = t.elapsed();
                let keys = rules::five_keys(&p, 10_000, 7);
                let probes: u64 = keys
                    .iter()
                    .map(|k| u64::from(fast.classify_counted(k).1))
                    .sum();
                println!(
                    "gen {shape:?} {n}: build {build:?} chose {} bytes {} probes {:.2} ns {:.1} est {est:?}",
                    fast.name(),
                    fast.memory_bytes(),
                    probes as f64 / keys.len() as f64,
                    time_ns(&fast, &keys)
                );
                let p3 = rules::generate(shape, n, 42, TupleKind::Three);
                let t = Instant::now();
                let f3 = Fast::<flowpol::packet::key::ThreeTuple>::from_matches(
                    &flowpol::packet::key::ThreeTuple::rules(&p3),
                );
                println!(
                    "   three: build {:?} chose {} bytes {}",
                    t.elapsed(),
                    f3.name(),
                    f3.memory_bytes()
                );
            }
        }
        return;
    }
    for pair in args.chunks(2) {
        let [pol, trace] = pair else {
            panic!("POLICY TRACE pairs")
        };
        let set = std::path::Path::new(pol)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .to_string();
        let policy = flowpol::policy::load_file(pol.as_ref()).expect("policy");
        let text = std::fs::read_to_string(trace).expect("trace");
        let keys: Vec<FiveTuple> = classbench::parse_trace(&text)
            .expect("trace")
            .iter()
            .map(|p| p.five(DEFAULT_MAP_V4))
            .collect();
        let lin = Linear::<FiveTuple>::new(&policy);
        let want: Vec<_> = keys.iter().map(|k| lin.classify(k)).collect();
        let t = Instant::now();
        let tm = TupleMerge::<FiveTuple>::from_matches(&FiveTuple::rules(&policy));
        let build = t.elapsed();
        println!(
            "{set}: {} rules, tm build {build:?}, {:?}",
            FiveTuple::rules(&policy).len(),
            tm.stats()
        );
        let checks: usize = keys.iter().map(|k| tm.lookup_counted(k).2).sum();
        println!("tm checks/lookup {:.2}", checks as f64 / keys.len() as f64);
        report(&set, &tm, &want, &keys);
        let leaves: Vec<usize> = std::env::var("LEAVES").map_or(vec![6], |v| {
            v.split(',').map(|x| x.parse().unwrap()).collect()
        });
        for (budget, leaf_size) in leaves.iter().map(|&l| (64usize, l)) {
            let t = Instant::now();
            let hs = HyperSplit::<FiveTuple>::from_matches(
                &FiveTuple::rules(&policy),
                HsConfig {
                    leaf_size,
                    budget_per_entry: budget,
                },
            );
            let build = t.elapsed();
            match hs {
                Some(hs) => {
                    let checks: usize = keys.iter().map(|k| hs.lookup_counted(k).2).sum();
                    println!(
                        "hs leaf {leaf_size} build {build:?} {:?} checks/lookup {:.2}",
                        hs.stats(),
                        checks as f64 / keys.len() as f64
                    );
                    report(&set, &hs, &want, &keys);
                }
                None => println!("hs budget {budget}: over budget after {build:?}"),
            }
        }
        let t = Instant::now();
        let (fast, est) = Fast::<FiveTuple>::choose(&FiveTuple::rules(&policy));
        println!(
            "fast build {:?} chose {} est {est:?} tm {} hs {}",
            t.elapsed(),
            fast.name(),
            est.tm_cost() / est.keys.max(1) as u64,
            est.hs_cost() / est.keys.max(1) as u64
        );
    }
}
