//! Lookup cost against rule count: every engine on both tuple kinds, on policies and keys the
//! caller makes at each size (`flowpol bench --sweep` generates them with `gen rules`). Lookup
//! only: the keys are given, so no key extraction is timed.

use super::{EngineRow, kind_rows};
use crate::classify::{EngineKind, TmKey};
use crate::packet::{FiveTuple, ThreeTuple};
use crate::policy::Policy;
use std::time::Duration;

/// One engine on one tuple kind at one size.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SweepRow {
    /// The engine's name (`linear`, `tuplemerge`, ...).
    pub engine: String,
    /// `three` or `five`.
    pub tuple: &'static str,
    /// Rules of this tuple kind.
    pub rules: usize,
    /// Keys looked up.
    pub keys: usize,
    pub build_ms: f64,
    /// Approximate heap bytes of the built engine.
    pub bytes: usize,
    /// Nanoseconds per lookup.
    pub lookup_ns: f64,
    /// Keys on which this engine disagrees with the linear reference (must be 0).
    pub mismatches: u64,
    /// Probes per lookup (tables, tree nodes or rules).
    pub probes: f64,
    /// For `fast`: the engine its cost model picked at this size (the series stays `fast`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub picked: Option<String>,
}

impl From<EngineRow> for SweepRow {
    fn from(r: EngineRow) -> Self {
        let (engine, picked) = match r.name.strip_prefix("fast=") {
            Some(p) => ("fast".to_string(), Some(p.to_string())),
            None => (r.name, None),
        };
        SweepRow {
            engine,
            picked,
            probes: r.probes,
            tuple: r.tuple,
            rules: r.rules,
            keys: r.keys,
            build_ms: r.build_ms,
            bytes: r.bytes,
            lookup_ns: r.lookup_ns,
            mismatches: r.mismatches,
        }
    }
}

/// The whole sweep.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SweepReport {
    /// What the rule sets are (e.g. `acl`: the generator's shape).
    pub shape: String,
    /// The generator's seed.
    pub seed: u64,
    /// The rule counts asked for, in order.
    pub sizes: Vec<usize>,
    /// Sum of the rows' mismatches (must be 0).
    pub mismatches: u64,
    /// Per size, per tuple kind, per engine.
    pub rows: Vec<SweepRow>,
}

/// Every engine of `engines` (the linear reference always runs, for mismatches) on one tuple
/// kind's rules of `policy`, looking up `keys`; `min` is the least time each timing runs for.
pub fn measure<K: TmKey>(
    tuple: &'static str,
    policy: &Policy,
    keys: &[K],
    engines: &[EngineKind],
    min: Duration,
) -> Vec<SweepRow>
where
    K::Match: Clone,
    crate::classify::Engine<K>: crate::classify::Classifier<K>,
{
    let mut rows = Vec::new();
    kind_rows(tuple, policy, keys, 0.0, engines, min, &mut rows);
    rows.into_iter().map(SweepRow::from).collect()
}

/// [`measure`] on the `three` block with `three_keys`, then the `five` block with `five_keys`.
pub fn measure_both(
    three: (&Policy, &[ThreeTuple]),
    five: (&Policy, &[FiveTuple]),
    engines: &[EngineKind],
    min: Duration,
) -> Vec<SweepRow> {
    let mut rows = measure("three", three.0, three.1, engines, min);
    rows.extend(measure("five", five.0, five.1, engines, min));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::FiveTuple;
    use crate::policy::model::{Action, AddrMatch, FiveMatch, PortMatch, Rule};
    use crate::policy::syntax::Span;

    #[test]
    fn a_sweep_step_reports_every_engine_with_no_mismatch() {
        let rule = |dport: u16| Rule {
            name: format!("r{dport}"),
            matcher: FiveMatch {
                src: AddrMatch::any(),
                dst: AddrMatch::any(),
                proto: Some(6),
                sport: PortMatch::ANY,
                dport: PortMatch {
                    lo: dport,
                    hi: dport,
                },
            },
            action: Action::Pass,
            span: Span::default(),
        };
        let p = Policy {
            classes: Vec::new(),
            three: Vec::new(),
            five: (1..=20).map(rule).collect(),
            default: Action::Drop,
            default_explicit: true,
        };
        let keys: Vec<FiveTuple> = (0..40)
            .map(|d| FiveTuple {
                src: 1,
                dst: 2,
                proto: 6,
                sport: 9,
                dport: d,
            })
            .collect();
        let engines = super::super::all_engines();
        let rows = measure_both((&p, &[]), (&p, &keys), &engines, Duration::ZERO);
        // No three rules: that kind is left out.
        assert_eq!(rows.len(), engines.len());
        assert!(rows.iter().all(|r| r.tuple == "five"
            && r.rules == 20
            && r.keys == 40
            && r.mismatches == 0
            && r.lookup_ns > 0.0));
    }
}
