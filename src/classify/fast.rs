//! The fast engine every command uses: per policy, the faster of TupleMerge and HyperSplit by a
//! cost model, behind one `Classifier` (enum dispatch, no `dyn` in the hot loop).
//!
//! The cost model is measured, not guessed per set: both engines are built, and each classifies
//! the same sample keys (one random point inside each of up to [`SAMPLE_KEYS`] entries, spread
//! over the policy, as ClassBench's trace generator draws its headers) while counting its steps.
//! A TupleMerge step is a table probe (one hash of the masked key, one bucket) and a HyperSplit
//! step a tree node (one comparison); both then check candidate entries in full. The weights
//! [`TM_PROBE_NS`], [`HS_NODE_NS`] and [`CHECK_NS`] come from timing both engines on the
//! ClassBench sets (docs/performance.md). The tree is only built within a budget of entry copies
//! and nodes, so a policy whose rules overlap too much for a tree keeps TupleMerge at no more
//! than a bounded cost.

use super::hypersplit::{HsConfig, HyperSplit, LEAF_SIZE};
use super::tuplemerge::{TmKey, TupleMerge, expand};
use super::{Classifier, RuleId};
use crate::packet::key::{FiveTuple, ThreeTuple};
use crate::policy::model::{Policy, Prefix};

/// Sample keys the cost model classifies (one per entry, strided over the entries).
pub const SAMPLE_KEYS: usize = 2048;
/// Estimated cost of one TupleMerge table probe, in tenths of a nanosecond.
pub const TM_PROBE_NS: u64 = 150;
/// Estimated cost of one HyperSplit node, in tenths of a nanosecond.
pub const HS_NODE_NS: u64 = 80;
/// Estimated cost of checking one candidate entry, in tenths of a nanosecond.
pub const CHECK_NS: u64 = 15;
/// TupleMerge with at most this many table probes per sample key is kept without building a
/// tree: on every set measured (ClassBench fw1 at 2.1 probes, the generated sets at 1–2, tiny
/// policies at 1) it was as fast as the tree or faster, and it builds faster and smaller.
pub const TM_ENOUGH_PROBES: u64 = 2;
/// The most nodes plus leaf entry copies per entry a HyperSplit tree may hold (bounds its
/// memory and build time; past it the tree is abandoned).
pub const HS_BUDGET_PER_ENTRY: usize = 8;

/// The tree parameters the selector builds with.
pub const HS_CONFIG: HsConfig = HsConfig {
    leaf_size: LEAF_SIZE,
    budget_per_entry: HS_BUDGET_PER_ENTRY,
};

/// The engine [`Fast`] chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FastChoice {
    TupleMerge,
    HyperSplit,
}

/// The fast engine for one key type: TupleMerge or HyperSplit, whichever the cost model
/// expects to be faster on this policy.
pub enum Fast<K: TmKey> {
    TupleMerge(TupleMerge<K>),
    HyperSplit(HyperSplit<K>),
}

/// The fast 3-tuple engine.
pub type FastThree = Fast<ThreeTuple>;
/// The fast 5-tuple engine.
pub type FastFive = Fast<FiveTuple>;

/// What the cost model measured on a policy's sample keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CostEstimate {
    /// Sample keys classified.
    pub keys: usize,
    /// TupleMerge: table probes and entries checked, summed over the keys.
    pub tm_probes: u64,
    pub tm_checks: u64,
    /// HyperSplit (when it was built within budget): nodes and entries checked.
    pub hs_nodes: u64,
    pub hs_checks: u64,
    /// Whether the tree was built within its budget.
    pub hs_built: bool,
}

impl CostEstimate {
    /// Estimated TupleMerge tenths of a nanosecond per key, summed over the keys.
    pub fn tm_cost(&self) -> u64 {
        self.tm_probes * TM_PROBE_NS + self.tm_checks * CHECK_NS
    }
    /// Estimated HyperSplit cost, in the same unit.
    pub fn hs_cost(&self) -> u64 {
        self.hs_nodes * HS_NODE_NS + self.hs_checks * CHECK_NS
    }
}

/// A small deterministic generator for sample keys (SplitMix64).
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A value in `lo..=hi` chosen by `r`.
fn within(lo: u64, hi: u64, r: u64) -> u64 {
    match (hi - lo).checked_add(1) {
        Some(n) => lo + r % n,
        None => r,
    }
}

/// One key inside each of up to `n` entries of the rules, strided over them.
pub fn sample_keys<K: TmKey>(rules: &[&K::Match], n: usize) -> Vec<K> {
    let x = expand::<K>(rules);
    let step = x.entries.len().div_ceil(n.max(1)).max(1);
    let mut out = Vec::with_capacity(x.entries.len() / step + 1);
    for (i, e) in x.entries.iter().enumerate().step_by(step) {
        let r = |k: u64| mix((i as u64) << 3 | k);
        let addr = |a: u128, len: u8, k: u64| {
            let free = !Prefix::mask_of(len);
            let bits = (u128::from(r(k)) << 64) | u128::from(r(k + 1));
            (a & !free) | (bits & free)
        };
        let (xb, _) = K::extra_box(rules[e.rule as usize]);
        let extra = [0, 1, 2].map(|j| {
            let (lo, hi) = xb[j];
            if lo > hi {
                lo
            } else {
                within(lo, hi, r(4 + j as u64))
            }
        });
        out.push(K::from_point(
            addr(e.src, e.slen, 0),
            addr(e.dst, e.dlen, 2),
            extra,
        ));
    }
    out
}

/// The least a HyperSplit lookup over `entries` entries can cost, in tenths of a nanosecond:
/// the nodes of a perfectly balanced tree of full nodes down to full leaves, and one check.
fn tree_floor(entries: usize) -> u64 {
    let fanout = (1u64 << super::hypersplit::RUN) as f64;
    let leaves = (entries as f64 / LEAF_SIZE as f64).max(1.0);
    let levels = 1 + leaves.log(fanout).ceil() as u64;
    levels * HS_NODE_NS + CHECK_NS
}

impl<K: TmKey + Send + Sync> Fast<K> {
    /// Builds the fast engine for the policy's rules of this key type.
    pub fn new(policy: &Policy) -> Self {
        Self::from_matches(&K::rules(policy))
    }

    /// Builds the fast engine from rules in priority order.
    pub fn from_matches(rules: &[&K::Match]) -> Self {
        Self::choose(rules).0
    }

    /// Builds both engines, measures them on sample keys, and keeps the cheaper one.
    ///
    /// The tree is not built when TupleMerge needs at most [`TM_ENOUGH_PROBES`] probes per
    /// sample key, or when its measured cost is already below the least a tree of these
    /// entries could cost (its height if perfectly balanced): on large sets where TupleMerge
    /// needs one or two probes, that saves most of the build time.
    pub fn choose(rules: &[&K::Match]) -> (Self, CostEstimate) {
        let tm = TupleMerge::<K>::from_matches(rules);
        let keys = sample_keys::<K>(rules, SAMPLE_KEYS);
        let mut est = CostEstimate {
            keys: keys.len(),
            ..CostEstimate::default()
        };
        for k in &keys {
            let (_, p, c) = tm.lookup_counted(k);
            est.tm_probes += p as u64;
            est.tm_checks += c as u64;
        }
        if est.tm_probes <= TM_ENOUGH_PROBES * est.keys as u64
            || est.tm_cost() <= est.keys as u64 * tree_floor(tm.stats().entries)
        {
            return (Fast::TupleMerge(tm), est);
        }
        let Some(hs) = HyperSplit::<K>::from_matches(rules, HS_CONFIG) else {
            return (Fast::TupleMerge(tm), est);
        };
        est.hs_built = true;
        for k in &keys {
            let (_, p, c) = hs.lookup_counted(k);
            est.hs_nodes += p as u64;
            est.hs_checks += c as u64;
        }
        if est.hs_cost() < est.tm_cost() {
            (Fast::HyperSplit(hs), est)
        } else {
            (Fast::TupleMerge(tm), est)
        }
    }

    /// Builds one engine without the cost model.
    pub fn with_choice(rules: &[&K::Match], choice: FastChoice) -> Option<Self> {
        Some(match choice {
            FastChoice::TupleMerge => Fast::TupleMerge(TupleMerge::from_matches(rules)),
            FastChoice::HyperSplit => Fast::HyperSplit(HyperSplit::from_matches(rules, HS_CONFIG)?),
        })
    }

    /// Which engine this is.
    pub fn choice(&self) -> FastChoice {
        match self {
            Fast::TupleMerge(_) => FastChoice::TupleMerge,
            Fast::HyperSplit(_) => FastChoice::HyperSplit,
        }
    }
}

impl<K: TmKey + Send + Sync> Classifier<K> for Fast<K> {
    fn name(&self) -> &'static str {
        match self {
            Fast::TupleMerge(e) => e.name(),
            Fast::HyperSplit(e) => e.name(),
        }
    }

    #[inline]
    fn classify(&self, key: &K) -> Option<RuleId> {
        match self {
            Fast::TupleMerge(e) => e.lookup(key),
            Fast::HyperSplit(e) => e.lookup(key),
        }
    }

    fn classify_batch(&self, keys: &[K], out: &mut [Option<RuleId>]) {
        match self {
            Fast::TupleMerge(e) => e.classify_batch(keys, out),
            Fast::HyperSplit(e) => e.lookup_batch(keys, out),
        }
    }

    fn classify_counted(&self, key: &K) -> (Option<RuleId>, u32) {
        match self {
            Fast::TupleMerge(e) => e.classify_counted(key),
            Fast::HyperSplit(e) => e.classify_counted(key),
        }
    }

    fn memory_bytes(&self) -> usize {
        match self {
            Fast::TupleMerge(e) => e.memory_bytes(),
            Fast::HyperSplit(e) => e.memory_bytes(),
        }
    }
}
