//! Every fast engine (TupleMerge, HyperSplit, and `Fast`, the cost model's choice) against the
//! linear reference on the real ClassBench sets in `../shared/data/classbench` that have a
//! trace: every trace packet (strided in debug builds) and keys drawn from the rules. Says so
//! when the folder is absent; under `CI=true` that is a failure.

use flowpol::classify::{
    Classifier, Fast, FastChoice, HsConfig, HyperSplit, Key, Linear, RuleId, TmKey, TupleMerge,
};
use flowpol::r#gen::classbench::{self, As, DEFAULT_MAP_V4};
use flowpol::r#gen::rules;
use flowpol::packet::key::{FiveTuple, ThreeTuple};
use std::path::{Path, PathBuf};

fn dir() -> Option<PathBuf> {
    let d = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/classbench"
    ));
    if d.is_dir() {
        return Some(d);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{} is absent under CI=true", d.display());
    }
    eprintln!("SKIPPED: {} is absent", d.display());
    None
}

/// Trees with a larger budget than the cost model's, and larger leaves when the small ones do
/// not fit, so the tree is checked on every set, also where the cost model would not build it.
const TREES: [HsConfig; 3] = [
    HsConfig {
        leaf_size: 4,
        budget_per_entry: 64,
    },
    HsConfig {
        leaf_size: 16,
        budget_per_entry: 64,
    },
    HsConfig {
        leaf_size: 64,
        budget_per_entry: 64,
    },
];

/// Checks every engine on `keys`; returns how many keys matched a rule.
fn agree<K: TmKey + Send + Sync + std::fmt::Debug>(
    set: &str,
    rules: &[&K::Match],
    lin: &Linear<K>,
    keys: &[K],
) -> usize
where
    K::Match: Send + Sync,
{
    let tm = TupleMerge::<K>::from_matches(rules);
    // Where no tree fits (the firewall sets replicate too much), the tree is checked on the
    // set's first rules, against a first-match scan of those.
    let tree_rules = match TREES
        .iter()
        .find_map(|&c| HyperSplit::<K>::from_matches(rules, c))
    {
        Some(_) => rules,
        None => {
            eprintln!("{set}: no tree within budget; the tree is checked on the first 1000 rules");
            &rules[..rules.len().min(1000)]
        }
    };
    let hs = TREES
        .iter()
        .find_map(|&c| HyperSplit::<K>::from_matches(tree_rules, c))
        .unwrap_or_else(|| panic!("{set}: no tree within budget"));
    let (fast, est) = Fast::<K>::choose(rules);
    assert_eq!(
        fast.choice() == FastChoice::HyperSplit,
        est.hs_built && est.hs_cost() < est.tm_cost()
    );
    let mut batch = vec![None; keys.len()];
    hs.classify_batch(keys, &mut batch);
    let mut fast_batch = vec![None; keys.len()];
    fast.classify_batch(keys, &mut fast_batch);
    let mut hits = 0;
    for (i, k) in keys.iter().enumerate() {
        let want: Option<RuleId> = lin.classify(k);
        hits += usize::from(want.is_some());
        assert_eq!(tm.classify(k), want, "{set} tuplemerge {k:?}");
        let tree_want = tree_rules
            .iter()
            .position(|m| k.matched_by(m))
            .map(|i| RuleId(i as u32));
        assert_eq!(hs.classify(k), tree_want, "{set} hypersplit {k:?}");
        assert_eq!(batch[i], tree_want, "{set} hypersplit batch {k:?}");
        assert_eq!(fast_batch[i], want, "{set} {} batch {k:?}", fast.name());
        assert_eq!(fast.classify(k), want, "{set} {} {k:?}", fast.name());
        let (got, probes) = hs.classify_counted(k);
        assert_eq!(got, tree_want);
        assert!(
            probes >= 1 && probes <= hs.stats().height,
            "{set}: {probes} nodes"
        );
    }
    hits
}

fn check_set(d: &Path, set: &str) {
    let text = std::fs::read_to_string(d.join(set)).unwrap_or_else(|e| panic!("{set}: {e}"));
    let cb = classbench::parse_rules(&text).expect("ClassBench rules parse");
    let trace = std::fs::read_to_string(d.join(format!("{set}_trace")))
        .map(|t| classbench::parse_trace(&t).expect("trace parses"))
        .unwrap_or_else(|e| panic!("{set}_trace: {e}"));
    // Debug builds are slow: a strided sample of the trace still covers its rules.
    let stride = if cfg!(debug_assertions) {
        (trace.len() / 5_000).max(1)
    } else {
        1
    };

    let p5 = classbench::to_policy(&cb, As::Five, DEFAULT_MAP_V4);
    let mut k5: Vec<FiveTuple> = trace
        .iter()
        .step_by(stride)
        .map(|p| p.five(DEFAULT_MAP_V4))
        .collect();
    k5.extend(rules::five_keys(&p5, 3_000, 5));
    let hits = agree(set, &FiveTuple::rules(&p5), &Linear::new(&p5), &k5);
    assert!(
        hits > k5.len() / 2,
        "{set}: only {hits} of {} keys hit",
        k5.len()
    );

    let p3 = classbench::to_policy(&cb, As::Three, DEFAULT_MAP_V4);
    let mut k3: Vec<ThreeTuple> = trace
        .iter()
        .step_by(stride)
        .map(|p| p.three(DEFAULT_MAP_V4))
        .collect();
    k3.extend(rules::three_keys(&p3, 3_000, 5));
    let hits = agree(set, &ThreeTuple::rules(&p3), &Linear::new(&p3), &k3);
    assert!(
        hits > k3.len() / 2,
        "{set}: only {hits} of {} keys hit",
        k3.len()
    );
}

#[test]
fn every_engine_equals_linear_on_every_classbench_set_with_a_trace() {
    let Some(d) = dir() else { return };
    let mut sets: Vec<String> = std::fs::read_dir(&d)
        .expect("classbench folder lists")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix("_trace").map(str::to_owned))
        .filter(|s| d.join(s).is_file())
        .collect();
    sets.sort();
    assert!(sets.len() >= 5, "sets with traces: {sets:?}");
    for set in &sets {
        check_set(&d, set);
        eprintln!("{set}: every engine agrees with linear");
    }
}

#[test]
fn the_cost_model_picks_the_tree_on_acl5_and_tuplemerge_on_fw1() {
    let Some(d) = dir() else { return };
    let load = |set: &str| {
        let text = std::fs::read_to_string(d.join(set)).expect("set reads");
        let cb = classbench::parse_rules(&text).expect("rules parse");
        classbench::to_policy(&cb, As::Five, DEFAULT_MAP_V4)
    };
    let acl5 = load("acl5_10k");
    let fw1 = load("fw1_10k");
    assert_eq!(
        Fast::<FiveTuple>::new(&acl5).choice(),
        FastChoice::HyperSplit
    );
    assert_eq!(
        Fast::<FiveTuple>::new(&fw1).choice(),
        FastChoice::TupleMerge
    );
}
