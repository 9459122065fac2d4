//! Classification engines: one trait, a linear first-match reference engine per key type, and
//! the fast engines that must agree with it on every packet: TupleMerge, HyperSplit, and
//! [`Fast`], which holds whichever of the two a cost model picked for the policy; the choice
//! between the linear and fast engines ([`EngineKind`]) and what a frame became under both
//! ([`Outcome`]).

pub mod fast;
pub mod hypersplit;
pub mod linear;
pub mod tuplemerge;

use crate::packet::key::{FiveTuple, ThreeTuple, Unavailable};
use crate::packet::{Ipv6Keys, NonIpv6};
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

/// What one frame became: why it carries no IPv6 packet, or its keys and both engines' rules.
/// The pipeline's per-frame step makes one per frame and hands it, borrowed, to
/// the tally, a flow meter and the per-packet writers; it borrows the frame and allocates nothing.
#[derive(Clone, Copy, Debug)]
pub enum Outcome<'a> {
    NonIpv6(NonIpv6),
    Ipv6 {
        keys: Ipv6Keys<'a>,
        /// The 3-tuple engine's rule (`None`: the default).
        three: Option<RuleId>,
        /// The 5-tuple engine's rule (`Ok(None)`: the default), or why there is no 5-tuple.
        five: Result<Option<RuleId>, Unavailable>,
    },
}

/// The engine a command classifies with. All give the same answers. On the command line:
/// `linear`, `tuplemerge`, `fast`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EngineKind {
    /// The linear first-match reference engine.
    #[default]
    Linear,
    /// TupleMerge (hash tables on masked fields), whatever the policy.
    #[value(name = "tuplemerge")]
    TupleMerge,
    /// The fast engine a cost model picks for the policy ([`Fast`]): TupleMerge, or the
    /// HyperSplit decision tree where TupleMerge would probe many tables. Reports name the
    /// engine it picked.
    Fast,
}

impl EngineKind {
    /// The engine of this kind for key type `K`, built from `policy`: the one constructor every
    /// command (classify, watch, bench) uses.
    pub fn build<K: TmKey>(self, policy: &Policy) -> Engine<K>
    where
        K::Match: Clone,
    {
        match self {
            EngineKind::Linear => Engine::Linear(Linear::new(policy)),
            EngineKind::TupleMerge => Engine::TupleMerge(TupleMerge::new(policy)),
            EngineKind::Fast => Engine::Fast(Fast::new(policy)),
        }
    }
}

/// A built engine of any kind ([`EngineKind::build`]). The kind is fixed for a run, so the
/// branch on it in `classify` is always predicted.
pub enum Engine<K: TmKey> {
    Linear(Linear<K>),
    TupleMerge(TupleMerge<K>),
    Fast(Fast<K>),
}

impl<K: TmKey> Classifier<K> for Engine<K>
where
    Linear<K>: Classifier<K>,
    TupleMerge<K>: Classifier<K>,
{
    fn name(&self) -> &'static str {
        match self {
            Engine::Linear(e) => e.name(),
            Engine::TupleMerge(e) => e.name(),
            Engine::Fast(e) => e.name(),
        }
    }
    #[inline(always)]
    fn classify(&self, key: &K) -> Option<RuleId> {
        match self {
            Engine::Linear(e) => e.classify(key),
            Engine::TupleMerge(e) => e.classify(key),
            Engine::Fast(e) => e.classify(key),
        }
    }
    fn classify_batch(&self, keys: &[K], out: &mut [Option<RuleId>]) {
        match self {
            Engine::Linear(e) => e.classify_batch(keys, out),
            Engine::TupleMerge(e) => e.classify_batch(keys, out),
            Engine::Fast(e) => e.classify_batch(keys, out),
        }
    }
    fn classify_counted(&self, key: &K) -> (Option<RuleId>, u32) {
        match self {
            Engine::Linear(e) => e.classify_counted(key),
            Engine::TupleMerge(e) => e.classify_counted(key),
            Engine::Fast(e) => e.classify_counted(key),
        }
    }
    fn memory_bytes(&self) -> usize {
        match self {
            Engine::Linear(e) => e.memory_bytes(),
            Engine::TupleMerge(e) => e.memory_bytes(),
            Engine::Fast(e) => e.memory_bytes(),
        }
    }
}
