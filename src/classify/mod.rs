//! Classification engines: one trait, a linear first-match reference engine per key type, and
//! the fast engines that must agree with it on every packet: TupleMerge, HyperSplit, and
//! [`Fast`], which holds whichever of the two a cost model picked for the policy.

pub mod bench;
pub mod fast;
pub mod hypersplit;
pub mod linear;
pub mod tuplemerge;

use crate::packet::key::{FiveTuple, ThreeTuple};
use crate::policy::model::{FiveMatch, Policy, ThreeMatch};

pub use fast::{CostEstimate, Fast, FastChoice, FastFive, FastThree};
pub use hypersplit::{HsConfig, HsStats, HyperSplit};
pub use linear::Linear;
pub use tuplemerge::{TmConfig, TmKey, TmStats, TupleMerge};

/// The index of a rule in its policy's rule list for that tuple kind (its priority: lower wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleId(pub u32);

impl RuleId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A key type together with the rule match it is tested against.
pub trait Key: Copy {
    /// The match type of rules on this key.
    type Match;
    /// The reference semantics: does `m` match this key?
    fn matched_by(&self, m: &Self::Match) -> bool;
    /// The rules of this key type in a policy.
    fn rules(policy: &Policy) -> Vec<&Self::Match>;
}

impl Key for ThreeTuple {
    type Match = ThreeMatch;
    #[inline]
    fn matched_by(&self, m: &ThreeMatch) -> bool {
        m.src.matches(self.src) && m.dst.matches(self.dst) && m.label.matches(self.label)
    }
    fn rules(policy: &Policy) -> Vec<&ThreeMatch> {
        policy.three.iter().map(|r| &r.matcher).collect()
    }
}

impl Key for FiveTuple {
    type Match = FiveMatch;
    #[inline]
    fn matched_by(&self, m: &FiveMatch) -> bool {
        m.src.matches(self.src)
            && m.dst.matches(self.dst)
            && m.proto.is_none_or(|p| p == self.proto)
            && m.sport.matches(self.sport)
            && m.dport.matches(self.dport)
    }
    fn rules(policy: &Policy) -> Vec<&FiveMatch> {
        policy.five.iter().map(|r| &r.matcher).collect()
    }
}

/// A classification engine for one key type: the first matching rule, or `None` for the default.
///
/// Engines are built once from a policy and then shared read-only by the hot loop, which is
/// generic over this trait; implementations must not allocate in `classify`.
pub trait Classifier<K: Key>: Send + Sync {
    /// A short name for reports ("linear", "tuplemerge", ...).
    fn name(&self) -> &'static str;
    /// The first rule (lowest index) that matches `key`.
    fn classify(&self, key: &K) -> Option<RuleId>;
    /// Classifies `keys` into `out` (pairwise, up to the shorter of the two). Engines that can
    /// overlap several lookups (HyperSplit walks a batch side by side) override it; the
    /// default classifies one key after another.
    fn classify_batch(&self, keys: &[K], out: &mut [Option<RuleId>]) {
        for (k, o) in keys.iter().zip(out) {
            *o = self.classify(k);
        }
    }
    /// The first matching rule and the probes the lookup made: tables hashed, tree nodes
    /// visited, or rules tried, whichever steps the engine takes (for reports and tuning; the
    /// hot loop calls `classify`). The default counts one probe per lookup.
    fn classify_counted(&self, key: &K) -> (Option<RuleId>, u32) {
        (self.classify(key), 1)
    }
    /// Approximate heap bytes held by the engine.
    fn memory_bytes(&self) -> usize;
}
