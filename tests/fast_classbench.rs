//! The fast engines against the linear reference on the real ClassBench sets (acl1, fw1, ipc1 at
//! 1k and 10k rules) from `../shared/data/classbench`, with their traces and with keys drawn from
//! the rules. Says so when the folder is absent; under `CI=true` that is a failure.

use flowpol::classify::{Classifier, FastFive, FastThree, Linear};
use flowpol::r#gen::classbench::{self, As, DEFAULT_MAP_V4};
use flowpol::r#gen::rules;
use flowpol::packet::key::{FiveTuple, ThreeTuple};
use std::path::{Path, PathBuf};

fn dir() -> Option<PathBuf> {
    support::gate::shared_data("classbench", "the ClassBench differential test")
}

fn check_set(d: &Path, set: &str) -> usize {
    let text = std::fs::read_to_string(d.join(set)).unwrap_or_else(|e| panic!("{set}: {e}"));
    let cb = classbench::parse_rules(&text).expect("ClassBench rules parse");
    assert!(cb.len() > 500, "{set}: {} rules", cb.len());
    let mut trace = std::fs::read_to_string(d.join(format!("{set}_trace")))
        .map(|t| classbench::parse_trace(&t).expect("trace parses"))
        .unwrap_or_default();
    // Debug builds are slow: a strided sample of the trace is enough to cover its rules.
    let stride = (trace.len() / 8_000).max(1);
    trace = trace.into_iter().step_by(stride).collect();

    let p5 = classbench::to_policy(&cb, As::Five, DEFAULT_MAP_V4);
    let (lin, fast) = (Linear::<FiveTuple>::new(&p5), FastFive::new(&p5));
    let mut keys: Vec<FiveTuple> = trace.iter().map(|p| p.five(DEFAULT_MAP_V4)).collect();
    keys.extend(rules::five_keys(&p5, 4_000, 5));
    let mut hits = 0;
    for k in &keys {
        let want = lin.classify(k);
        hits += usize::from(want.is_some());
        assert_eq!(fast.classify(k), want, "{set} five: {k:?}");
    }
    assert!(
        hits > keys.len() / 2,
        "{set}: only {hits} of {} keys hit a rule",
        keys.len()
    );

    let p3 = classbench::to_policy(&cb, As::Three, DEFAULT_MAP_V4);
    let (lin, fast) = (Linear::<ThreeTuple>::new(&p3), FastThree::new(&p3));
    let mut keys: Vec<ThreeTuple> = trace.iter().map(|p| p.three(DEFAULT_MAP_V4)).collect();
    keys.extend(rules::three_keys(&p3, 4_000, 5));
    for k in &keys {
        assert_eq!(fast.classify(k), lin.classify(k), "{set} three: {k:?}");
    }
    keys.len()
}

#[test]
fn fast_equals_linear_on_classbench() {
    let Some(d) = dir() else { return };
    for set in [
        "acl1_1k", "fw1_1k", "ipc1_1k", "acl1_10k", "fw1_10k", "ipc1_10k",
    ] {
        let n = check_set(&d, set);
        eprintln!("{set}: {n} keys agree");
    }
}
