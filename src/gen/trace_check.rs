//! The ClassBench trace as an outside oracle. Each trace line ends with the 0-based number of
//! the rule the generator drew the header from (its *column*). Under flowpol's semantics, that
//! rule must match the packet, unless its import says why not, and the first match (from the
//! linear engine) must never come after it.
//!
//! [`check_five`] and [`check_three`] take the import (what each ClassBench rule became), the
//! trace packets and each packet's first match, and count:
//! - `same`: the first match is one of the column's rules;
//! - `earlier`: the column's rule matches, and an earlier rule matched first (a shadowing rule
//!   that also covers the header: allowed);
//! - `later`: the column's rule matches, yet the first match comes after it or there is none
//!   (a bug: must be 0);
//! - `column_rule_misses`: the column's rule does not match the packet under flowpol's
//!   semantics, each counted in `by_reason` under what explains it: `no-five-tuple` (the
//!   packet's protocol leaves it without a 5-tuple), or the column rule's [`Translation`] when
//!   that translation can lose the packet (`ports-exclude-zero`, `any-protocol-ports` for a
//!   packet of a protocol without ports); else `unexplained` (a bug: must be 0).
//!
//! `checked = same + earlier + later + column_rule_misses`.

use crate::classify::{Classifier, Key, Linear, RuleId};
use crate::r#gen::classbench::{CbPacket, Import, Imported, Translation};
use crate::packet::key::{FiveTuple, ThreeTuple};
use crate::policy::model::{Policy, Prefix};
use std::collections::BTreeMap;

/// The `by_reason` key of a miss no translation explains.
pub const UNEXPLAINED: &str = "unexplained";

/// The `by_reason` keys, always present in a [`TraceCheck`].
pub const MISS_REASONS: [&str; 4] = [
    Translation::AnyProtocolPorts.as_str(),
    Translation::NoFiveTuple.as_str(),
    Translation::PortsExcludeZero.as_str(),
    UNEXPLAINED,
];

/// The trace check's counts (see the module doc). Serializes with exactly these names.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TraceCheck {
    pub checked: u64,
    pub same: u64,
    pub earlier: u64,
    pub later: u64,
    pub column_rule_misses: u64,
    /// Misses by what explains them: every key of [`MISS_REASONS`], zeros included.
    pub by_reason: BTreeMap<&'static str, u64>,
}

impl Default for TraceCheck {
    fn default() -> Self {
        TraceCheck {
            checked: 0,
            same: 0,
            earlier: 0,
            later: 0,
            column_rule_misses: 0,
            by_reason: MISS_REASONS.iter().map(|&r| (r, 0)).collect(),
        }
    }
}

impl TraceCheck {
    /// Misses nothing explains.
    pub fn unexplained(&self) -> u64 {
        self.by_reason.get(UNEXPLAINED).copied().unwrap_or(0)
    }

    /// True when nothing is wrong: no first match after the column, no unexplained miss.
    pub fn passes(&self) -> bool {
        self.later == 0 && self.unexplained() == 0
    }
}

impl std::fmt::Display for TraceCheck {
    /// `N checked: N same, N earlier, N later, N column rule misses (reason N, ...)`, with only
    /// the reasons that have misses.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} checked: {} same, {} earlier, {} later, {} column rule misses",
            self.checked, self.same, self.earlier, self.later, self.column_rule_misses
        )?;
        let why: Vec<String> = self
            .by_reason
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        if !why.is_empty() {
            write!(f, " ({})", why.join(", "))?;
        }
        Ok(())
    }
}

/// The inputs do not fit together.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TraceCheckError {
    #[error("{packets} packets but {answers} first matches")]
    Length { packets: usize, answers: usize },
    #[error("trace packet {packet} has no rule column")]
    NoColumn { packet: usize },
    #[error(
        "trace packet {packet} names rule {column}, but the import has {rules} rules of this kind"
    )]
    ColumnOutOfRange {
        packet: usize,
        column: u32,
        rules: usize,
    },
}

/// Checks `five` first matches against the trace's column. `first[i]` is the linear engine's
/// first match on packet `i`'s 5-tuple as [`CbPacket::keys`] gives it (which the bench and
/// `import classbench-trace` frames decode to); it is not read for a packet without a 5-tuple.
pub fn check_five(
    import: &Import,
    map: Prefix,
    packets: &[CbPacket],
    first: &[Option<RuleId>],
) -> Result<TraceCheck, TraceCheckError> {
    let rules: Vec<_> = FiveTuple::rules(&import.policy);
    let mut scratch = Vec::with_capacity(128);
    check(
        &import.five,
        packets,
        first,
        |p| {
            let key = p.keys(map, &mut scratch).1;
            let miss = match key {
                Err(_) => Some(MissBy::NoKey),
                Ok(_) if !crate::packet::IpNumber(p.proto).has_ports() => Some(MissBy::Portless),
                Ok(_) => None,
            };
            (key.ok(), miss)
        },
        |k, r| rules.get(r as usize).is_some_and(|m| k.matched_by(m)),
    )
}

/// Checks `three` first matches against the trace's column. `first[i]` is the linear engine's
/// first match on packet `i`'s 3-tuple ([`CbPacket::three`]: the label is the destination port).
pub fn check_three(
    import: &Import,
    map: Prefix,
    packets: &[CbPacket],
    first: &[Option<RuleId>],
) -> Result<TraceCheck, TraceCheckError> {
    let rules: Vec<_> = ThreeTuple::rules(&import.policy);
    check(
        &import.three,
        packets,
        first,
        |p| (Some(p.three(map)), None),
        |k, r| rules.get(r as usize).is_some_and(|m| k.matched_by(m)),
    )
}

/// What a packet is, for explaining a miss.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MissBy {
    /// No key of this kind.
    NoKey,
    /// A 5-tuple of a protocol without ports.
    Portless,
}

fn check<K>(
    imported: &[Imported],
    packets: &[CbPacket],
    first: &[Option<RuleId>],
    mut key: impl FnMut(&CbPacket) -> (Option<K>, Option<MissBy>),
    matches: impl Fn(&K, u32) -> bool,
) -> Result<TraceCheck, TraceCheckError> {
    if first.len() != packets.len() {
        return Err(TraceCheckError::Length {
            packets: packets.len(),
            answers: first.len(),
        });
    }
    let mut c = TraceCheck::default();
    for (i, (p, got)) in packets.iter().zip(first).enumerate() {
        let column = p.rule.ok_or(TraceCheckError::NoColumn { packet: i })?;
        let imp = imported
            .get(column as usize)
            .ok_or(TraceCheckError::ColumnOutOfRange {
                packet: i,
                column,
                rules: imported.len(),
            })?;
        c.checked += 1;
        let (k, what) = key(p);
        let hit = k
            .as_ref()
            .is_some_and(|k| imp.rules.clone().any(|r| matches(k, r)));
        if hit {
            match got {
                Some(RuleId(r)) if imp.rules.contains(r) => c.same += 1,
                Some(RuleId(r)) if *r < imp.rules.start => c.earlier += 1,
                _ => c.later += 1,
            }
            continue;
        }
        c.column_rule_misses += 1;
        let why = match (what, imp.how) {
            (Some(MissBy::NoKey), _) => Translation::NoFiveTuple.as_str(),
            (_, Translation::PortsExcludeZero) => Translation::PortsExcludeZero.as_str(),
            (Some(MissBy::Portless), Translation::AnyProtocolPorts) => {
                Translation::AnyProtocolPorts.as_str()
            }
            _ => UNEXPLAINED,
        };
        *c.by_reason.entry(why).or_default() += 1;
    }
    Ok(c)
}

/// The linear engine's first `five` match on each packet's 5-tuple ([`CbPacket::keys`]; `None`
/// for a packet without one).
pub fn first_matches_five(
    policy: &Policy,
    map: Prefix,
    packets: &[CbPacket],
) -> Vec<Option<RuleId>> {
    let lin = Linear::<FiveTuple>::new(policy);
    let mut scratch = Vec::with_capacity(128);
    packets
        .iter()
        .map(|p| match p.keys(map, &mut scratch).1 {
            Ok(k) => lin.classify(&k),
            Err(_) => None,
        })
        .collect()
}

/// The linear engine's first `three` match on each packet's 3-tuple.
pub fn first_matches_three(
    policy: &Policy,
    map: Prefix,
    packets: &[CbPacket],
) -> Vec<Option<RuleId>> {
    let lin = Linear::<ThreeTuple>::new(policy);
    packets
        .iter()
        .map(|p| lin.classify(&p.three(map)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::r#gen::classbench::{As, DEFAULT_MAP_V4, import, parse_rules, parse_trace};

    /// A tcp rule shadowed by the one before it, ports on protocol 1 without 0, a catch-all.
    const RULES: &str = "@10.0.0.0/8\t0.0.0.0/0\t0 : 65535\t0 : 65535\t0x06/0xFF\n\
                         @10.1.0.0/16\t0.0.0.0/0\t0 : 65535\t80 : 80\t0x06/0xFF\n\
                         @20.0.0.0/8\t0.0.0.0/0\t0 : 65535\t8 : 8\t0x01/0xFF\n\
                         @0.0.0.0/0\t0.0.0.0/0\t0 : 65535\t0 : 65535\t0x00/0x00\n";
    /// 10.0.0.1 tcp/80 from rule 0; 10.1.0.1 tcp/80 from rule 1; 20.0.0.1 icmp "dport" 8 from
    /// rule 2; 30.0.0.1 udp and protocol 0 from rule 3.
    const TRACE: &str = "167772161 1 5 80 6 0 0\n167837697 1 5 80 6 0 1\n\
                         335544321 1 0 8 1 0 2\n503316481 1 5 6 17 0 3\n503316481 1 0 0 0 0 3\n";

    fn setup() -> (Import, Vec<CbPacket>) {
        let rules = parse_rules(RULES).unwrap();
        (
            import(&rules, As::Both, DEFAULT_MAP_V4),
            parse_trace(TRACE).unwrap(),
        )
    }

    fn reasons(c: &TraceCheck) -> Vec<u64> {
        MISS_REASONS.iter().map(|r| c.by_reason[r]).collect()
    }

    #[test]
    fn a_shadowed_column_counts_earlier_and_ports_on_protocol_1_are_an_explained_miss() {
        let (imp, packets) = setup();
        let first = first_matches_five(&imp.policy, DEFAULT_MAP_V4, &packets);
        // cb3 (icmp dport 8) is a comment, so the icmp packet falls to the catch-all (rule 2).
        assert_eq!(
            first,
            [
                Some(RuleId(0)),
                Some(RuleId(0)),
                Some(RuleId(2)),
                Some(RuleId(2)),
                None
            ]
        );
        let c = check_five(&imp, DEFAULT_MAP_V4, &packets, &first).unwrap();
        assert_eq!(
            (c.checked, c.same, c.earlier, c.later, c.column_rule_misses),
            (5, 2, 1, 0, 2)
        );
        // any-protocol-ports, no-five-tuple, ports-exclude-zero, unexplained.
        assert_eq!(reasons(&c), [0, 1, 1, 0]);
        assert!(c.passes());
        let first = first_matches_three(&imp.policy, DEFAULT_MAP_V4, &packets);
        let c = check_three(&imp, DEFAULT_MAP_V4, &packets, &first).unwrap();
        assert_eq!(
            (c.checked, c.same, c.earlier, c.later, c.column_rule_misses),
            (5, 4, 1, 0, 0)
        );
    }

    #[test]
    fn a_first_match_after_the_column_and_a_header_the_column_cannot_match_are_reported() {
        let (imp, mut packets) = setup();
        let mut first = first_matches_five(&imp.policy, DEFAULT_MAP_V4, &packets);
        // An engine that answers the catch-all for the first packet: after its column.
        first[0] = Some(RuleId(2));
        // An engine that finds nothing for the second.
        first[1] = None;
        // A trace line whose column names a rule that cannot have made it (udp from rule 0).
        packets[3].rule = Some(0);
        let c = check_five(&imp, DEFAULT_MAP_V4, &packets, &first).unwrap();
        assert_eq!(
            (c.same, c.earlier, c.later, c.column_rule_misses),
            (0, 0, 2, 3)
        );
        assert_eq!(reasons(&c), [0, 1, 1, 1]);
        assert_eq!(c.unexplained(), 1);
        assert!(!c.passes());
        assert_eq!(
            c.to_string(),
            "5 checked: 0 same, 0 earlier, 2 later, 3 column rule misses \
             (no-five-tuple 1, ports-exclude-zero 1, unexplained 1)"
        );
    }

    #[test]
    fn inputs_that_do_not_fit_are_typed_errors() {
        let (imp, mut packets) = setup();
        let first = vec![None; packets.len()];
        assert_eq!(
            check_five(&imp, DEFAULT_MAP_V4, &packets, &first[1..]),
            Err(TraceCheckError::Length {
                packets: 5,
                answers: 4
            })
        );
        packets[2].rule = Some(4);
        assert_eq!(
            check_three(&imp, DEFAULT_MAP_V4, &packets, &first),
            Err(TraceCheckError::ColumnOutOfRange {
                packet: 2,
                column: 4,
                rules: 4
            })
        );
        packets[2].rule = None;
        assert_eq!(
            check_five(&imp, DEFAULT_MAP_V4, &packets, &first),
            Err(TraceCheckError::NoColumn { packet: 2 })
        );
        // A five-only import has no three rules to check against.
        let five_only = import(&parse_rules(RULES).unwrap(), As::Five, DEFAULT_MAP_V4);
        packets[2].rule = Some(2);
        assert!(matches!(
            check_three(&five_only, DEFAULT_MAP_V4, &packets, &first),
            Err(TraceCheckError::ColumnOutOfRange { rules: 0, .. })
        ));
    }

    #[test]
    fn serializes_with_the_names_the_bench_report_uses() {
        let (imp, packets) = setup();
        let first = first_matches_five(&imp.policy, DEFAULT_MAP_V4, &packets);
        let c = check_five(&imp, DEFAULT_MAP_V4, &packets, &first).unwrap();
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"checked":5,"same":2,"earlier":1,"later":0,"column_rule_misses":2,"by_reason":{"any-protocol-ports":0,"no-five-tuple":1,"ports-exclude-zero":1,"unexplained":0}}"#
        );
    }
}
