//! Proves the fast engines (and the linear reference) do not allocate in `classify`: a counting
//! global allocator (`support::alloc`) counts allocations during a lookup loop.

use flowpol::classify::{
    Classifier, FastFive, FastThree, HsConfig, HyperSplit, Linear, TupleMerge,
};
use flowpol::r#gen::rules::{self, Shape};
use flowpol::packet::key::{FiveTuple, ThreeTuple};
use flowpol::policy::model::{AddrMatch, FiveMatch, Policy, Prefix};
use flowpol::policy::syntax::TupleKind;
use support::alloc;

/// The tests of this binary measure global counters: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[global_allocator]
static A: alloc::Counting = alloc::Counting;

/// Runs `f`; returns the allocations made meanwhile (by any thread: the tests run one at a time).
fn allocations(f: impl FnOnce() -> u64) -> (usize, u64) {
    let before = alloc::allocations();
    let r = std::hint::black_box(f());
    (alloc::allocations() - before, r)
}

#[test]
fn counting_allocator_sees_allocations() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // The counter works: a Vec does allocate.
    let (n, _) = allocations(|| std::hint::black_box(vec![1u64; 4]).len() as u64);
    assert!(n >= 1);
}

#[test]
fn classify_does_not_allocate() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let p5 = rules::generate(Shape::Fw, 5000, 1, TupleKind::Five);
    let p3 = rules::generate(Shape::Acl, 5000, 1, TupleKind::Three);
    let (f5, l5) = (FastFive::new(&p5), Linear::new(&p5));
    let (f3, l3) = (FastThree::new(&p3), Linear::new(&p3));
    let k5 = rules::five_keys(&p5, 5000, 2);
    let k3 = rules::three_keys(&p3, 5000, 2);
    let (n, hits) = allocations(|| {
        let mut hits = 0u64;
        for k in &k5 {
            hits += u64::from(f5.classify(k).is_some()) + u64::from(l5.classify(k).is_some());
        }
        for k in &k3 {
            hits += u64::from(f3.classify(k).is_some()) + u64::from(l3.classify(k).is_some());
        }
        hits
    });
    assert!(hits > 10_000, "the loop must really classify ({hits} hits)");
    assert_eq!(n, 0, "classify allocated {n} times");
}

#[test]
fn every_engine_classifies_and_counts_probes_without_allocating() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = HsConfig {
        leaf_size: 16,
        budget_per_entry: 256,
    };
    let p5 = rules::generate(Shape::Acl, 3000, 3, TupleKind::Five);
    let p3 = rules::generate(Shape::Acl, 3000, 3, TupleKind::Three);
    let t5 = TupleMerge::<FiveTuple>::new(&p5);
    let t3 = TupleMerge::<ThreeTuple>::new(&p3);
    let h5 = HyperSplit::<FiveTuple>::new(&p5, cfg).expect("tree within budget");
    let h3 = HyperSplit::<ThreeTuple>::new(&p3, cfg).expect("tree within budget");
    let k5 = rules::five_keys(&p5, 5000, 4);
    let k3 = rules::three_keys(&p3, 5000, 4);
    let mut out5 = vec![None; k5.len()];
    let mut out3 = vec![None; k3.len()];
    let (n, hits) = allocations(|| {
        let mut hits = 0u64;
        h5.classify_batch(&k5, &mut out5);
        h3.classify_batch(&k3, &mut out3);
        hits += out5.iter().chain(&out3).filter(|r| r.is_some()).count() as u64;
        for k in &k5 {
            for e in [&t5 as &dyn Classifier<FiveTuple>, &h5] {
                let (r, probes) = e.classify_counted(k);
                hits += u64::from(e.classify(k).is_some() && r.is_some() && probes > 0);
            }
        }
        for k in &k3 {
            for e in [&t3 as &dyn Classifier<ThreeTuple>, &h3] {
                let (r, probes) = e.classify_counted(k);
                hits += u64::from(e.classify(k).is_some() && r.is_some() && probes > 0);
            }
        }
        hits
    });
    assert!(hits > 15_000, "the loop must really classify ({hits} hits)");
    assert_eq!(n, 0, "classify allocated {n} times");
}

/// An address moved into the IPv4-mapped space ::ffff:0:0/96 (its top 32 bits kept).
fn v4_mapped(a: u128) -> u128 {
    (0xffff_u128 << 32) | (a >> 96)
}

#[test]
fn engines_on_an_ipv4_mapped_policy_keep_32_bit_addresses_and_do_not_allocate() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let wide = rules::generate(Shape::Acl, 3000, 5, TupleKind::Five);
    let map = |m: &AddrMatch| {
        let any = [Prefix::new(0, 0)];
        let ps: &[Prefix] = if m.is_any() { &any } else { &m.0 };
        AddrMatch(
            ps.iter()
                .map(|p| Prefix::new(v4_mapped(p.addr), 96 + p.len.min(32)))
                .collect(),
        )
    };
    let five: Vec<FiveMatch> = wide
        .five
        .iter()
        .map(|r| FiveMatch {
            src: map(&r.matcher.src),
            dst: map(&r.matcher.dst),
            ..r.matcher.clone()
        })
        .collect();
    let p5 = Policy::from_matches(vec![], five);
    let keys: Vec<FiveTuple> = rules::five_keys(&wide, 5000, 6)
        .into_iter()
        .map(|k| FiveTuple {
            src: v4_mapped(k.src),
            dst: v4_mapped(k.dst),
            ..k
        })
        .collect();
    let lin = Linear::<FiveTuple>::new(&p5);
    let tm = TupleMerge::<FiveTuple>::new(&p5);
    assert_eq!(
        tm.address_bits(),
        32,
        "an IPv4-mapped policy keeps 32 address bits"
    );
    let hs = HyperSplit::<FiveTuple>::new(
        &p5,
        HsConfig {
            leaf_size: 16,
            budget_per_entry: 256,
        },
    )
    .expect("tree within budget");
    let want: Vec<_> = keys.iter().map(|k| lin.classify(k)).collect();
    let mut out = vec![None; keys.len()];
    let (n, hits) = allocations(|| {
        hs.classify_batch(&keys, &mut out);
        let mut hits = out.iter().filter(|r| r.is_some()).count() as u64;
        for k in &keys {
            hits += u64::from(tm.classify(k).is_some()) + u64::from(hs.classify(k).is_some());
        }
        hits
    });
    assert_eq!(n, 0, "classify allocated {n} times");
    assert!(hits > 5_000, "the loop must really classify ({hits} hits)");
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(tm.classify(k), want[i], "tuplemerge {k:?}");
        assert_eq!(hs.classify(k), want[i], "hypersplit {k:?}");
        assert_eq!(out[i], want[i], "batch {k:?}");
    }
}

#[test]
fn building_100k_rules_peaks_under_50_mb() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for (shape, tuple) in [(Shape::Fw, TupleKind::Five), (Shape::Acl, TupleKind::Three)] {
        let p = rules::generate(shape, 100_000, 42, tuple);
        let base = alloc::reset_peak();
        let bytes = match tuple {
            TupleKind::Five => FastFive::new(&p).memory_bytes(),
            TupleKind::Three => FastThree::new(&p).memory_bytes(),
        };
        let peak = alloc::peak_bytes() - base;
        assert!(bytes > 1_000_000, "{bytes}");
        assert!(
            peak < 50_000_000,
            "{shape:?} {tuple:?}: build peaked at {peak} bytes"
        );
    }
}
