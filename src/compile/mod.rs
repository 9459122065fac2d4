//! Kernel export: compiles a checked [`Policy`] into what the kernel's own engines run —
//! an nftables ruleset ([`nft`]) and pcap-filter (BPF) expressions ([`bpf`]) — and reads the
//! kernel's per-rule counters back ([`stats`]).
//!
//! Shared here: the counter naming scheme that ties kernel counters back to rule names, the
//! firewall marks of classes, and overlap tests between rules (first-match order may only be
//! relaxed between rules that no packet can match together).
//!
//! # Counter names
//! Every rule gets one named nftables counter `r<index>_<mangled name>` and the default gets
//! `default`. `<index>` is the rule's 0-based position in its block, so names are unique even
//! when mangling makes two rule names equal; mangling replaces every character outside
//! `[A-Za-z0-9_]` by `_` and cuts the name to [`MAX_MANGLED`] bytes. The reverse mapping is
//! carried by the counter's comment, `flowpol <engine> rule <index> <name> -> <action>` (or
//! `flowpol <engine> default -> <action>`), which [`CounterTag::parse`] reads back.

pub mod bpf;
pub mod nft;
pub mod stats;

use crate::policy::model::{
    Action, AddrMatch, FiveMatch, LabelMatch, Policy, PortMatch, ThreeMatch,
};
use crate::policy::syntax::TupleKind;

/// Why a policy cannot be exported.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompileError {
    /// A class has no `mark` and the caller asked for explicit marks only.
    #[error(
        "class `{0}` has no mark: declare `class {0} mark N` (kernel export sets the packet mark)"
    )]
    MissingMark(String),
    /// An action names a class the policy does not declare.
    #[error("class `{0}` is used but not declared")]
    UnknownClass(String),
    /// Two classes share one mark, so the kernel could not tell them apart.
    #[error("classes `{0}` and `{1}` share mark {2}")]
    DuplicateMark(String, String, u32),
    /// A rule the target cannot express.
    #[error("rule `{rule}` cannot be compiled: {reason}")]
    Unsupported { rule: String, reason: String },
}

/// The longest mangled rule name kept in a counter name (nft allows 256 bytes per name).
pub const MAX_MANGLED: usize = 200;

/// The nftables counter name of rule `index` called `name`.
pub fn counter_name(index: usize, name: &str) -> String {
    let mut m: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    m.truncate(MAX_MANGLED);
    format!("r{index}_{m}")
}

/// The longest comment nft stores (128 bytes with the terminating NUL).
pub const MAX_COMMENT: usize = 127;

/// The counter name of the default action.
pub const DEFAULT_COUNTER: &str = "default";

/// The counter (five engine) of packets without a 5-tuple, which flowpol assigns to no rule.
pub const UNAVAILABLE_COUNTER: &str = "unavailable";

/// What a counter counts, as written in (and parsed back from) its comment.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CounterTag {
    /// `three` or `five`.
    pub engine: String,
    /// The rule's index, `None` for the default.
    pub index: Option<usize>,
    /// The rule's name, `None` for the default.
    pub rule: Option<String>,
    /// The action as written in the policy (`pass`, `drop`, `class gold`).
    pub action: String,
}

impl CounterTag {
    /// The comment text (no double quotes inside: nft strings cannot escape them). nft keeps
    /// at most [`MAX_COMMENT`] bytes, so a long rule name is shortened (ending in `...`); the
    /// index stays exact.
    pub fn comment(&self) -> String {
        let s = match (&self.index, &self.rule) {
            (Some(i), Some(r)) => {
                let fixed = format!("flowpol {} rule {i}  -> {}", self.engine, self.action).len();
                let mut r = r.clone();
                if fixed + r.len() > MAX_COMMENT {
                    let mut end = MAX_COMMENT.saturating_sub(fixed + 3);
                    while !r.is_char_boundary(end) {
                        end -= 1;
                    }
                    r.truncate(end);
                    r.push_str("...");
                }
                format!("flowpol {} rule {i} {r} -> {}", self.engine, self.action)
            }
            (None, Some(r)) if r == UNAVAILABLE_COUNTER => {
                format!("flowpol {} unavailable -> {}", self.engine, self.action)
            }
            _ => format!("flowpol {} default -> {}", self.engine, self.action),
        };
        s.replace('"', "'")
    }

    /// Reads a comment written by [`CounterTag::comment`]; `None` for anything else.
    pub fn parse(comment: &str) -> Option<CounterTag> {
        let rest = comment.strip_prefix("flowpol ")?;
        let (engine, rest) = rest.split_once(' ')?;
        let (what, action) = rest.split_once(" -> ")?;
        if what == UNAVAILABLE_COUNTER {
            return Some(CounterTag {
                engine: engine.into(),
                index: None,
                rule: Some(UNAVAILABLE_COUNTER.into()),
                action: action.into(),
            });
        }
        if what == "default" {
            return Some(CounterTag {
                engine: engine.into(),
                index: None,
                rule: None,
                action: action.into(),
            });
        }
        let what = what.strip_prefix("rule ")?;
        let (index, rule) = what.split_once(' ')?;
        Some(CounterTag {
            engine: engine.into(),
            index: Some(index.parse().ok()?),
            rule: Some(rule.into()),
            action: action.into(),
        })
    }
}

/// How classes without a `mark` get one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MarkPolicy {
    /// Unmarked classes get the smallest marks from 1 up that no class declares, in
    /// declaration order (the mapping is printed in the ruleset's header).
    #[default]
    Auto,
    /// Every class used by an exported rule or the default must declare its mark.
    Explicit,
}

/// The firewall mark of every class, after [`MarkPolicy`] is applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Marks {
    /// (class, mark, true when assigned automatically), in declaration order.
    pub entries: Vec<(String, u32, bool)>,
}

impl Marks {
    /// Resolves marks for the classes `used` (names) of `policy`.
    pub fn resolve(policy: &Policy, used: &[&str], how: MarkPolicy) -> Result<Marks, CompileError> {
        for u in used {
            if !policy.classes.iter().any(|c| c.name == *u) {
                return Err(CompileError::UnknownClass((*u).to_string()));
            }
        }
        let mut taken: Vec<(u32, &str)> = Vec::new();
        for c in &policy.classes {
            if let Some(m) = c.mark {
                if let Some((_, other)) = taken.iter().find(|(t, _)| *t == m) {
                    return Err(CompileError::DuplicateMark(
                        other.to_string(),
                        c.name.clone(),
                        m,
                    ));
                }
                taken.push((m, &c.name));
            }
        }
        let mut next = 1u32;
        let mut entries = Vec::new();
        for c in &policy.classes {
            match c.mark {
                Some(m) => entries.push((c.name.clone(), m, false)),
                None => {
                    if how == MarkPolicy::Explicit && used.contains(&c.name.as_str()) {
                        return Err(CompileError::MissingMark(c.name.clone()));
                    }
                    while taken.iter().any(|(t, _)| *t == next) {
                        next += 1;
                    }
                    taken.push((next, &c.name));
                    entries.push((c.name.clone(), next, true));
                }
            }
        }
        Ok(Marks { entries })
    }

    /// The mark of a class.
    pub fn of(&self, class: &str) -> Option<u32> {
        self.entries
            .iter()
            .find(|(c, _, _)| c == class)
            .map(|(_, m, _)| *m)
    }
}

/// The classes named by the rules of `engine` and by the default.
pub fn used_classes(policy: &Policy, engine: TupleKind) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    let actions: Vec<&Action> = match engine {
        TupleKind::Three => policy.three.iter().map(|r| &r.action).collect(),
        TupleKind::Five => policy.five.iter().map(|r| &r.action).collect(),
    };
    for a in actions.into_iter().chain(std::iter::once(&policy.default)) {
        if let Action::Class(c) = a
            && !out.contains(&c.as_str())
        {
            out.push(c);
        }
    }
    out
}

/// Removes prefixes covered by another prefix of the same set (the set matches the same
/// addresses) and sorts; the result's prefixes are pairwise disjoint. `None` is any.
pub(crate) fn disjoint_prefixes(m: &AddrMatch) -> Option<Vec<crate::policy::model::Prefix>> {
    if m.is_any() {
        return None;
    }
    let mut v = m.0.clone();
    v.sort_by_key(|p| (p.len, p.addr));
    v.dedup();
    let mut out: Vec<crate::policy::model::Prefix> = Vec::new();
    for p in v {
        if !out.iter().any(|q| q.covers(&p)) {
            out.push(p);
        }
    }
    out.sort();
    Some(out)
}

/// True when some address matches both.
pub(crate) fn addr_overlap(a: &AddrMatch, b: &AddrMatch) -> bool {
    if a.is_any() || b.is_any() {
        return true;
    }
    a.0.iter()
        .any(|p| b.0.iter().any(|q| p.covers(q) || q.covers(p)))
}

/// True when some label matches both.
pub(crate) fn label_overlap(a: &LabelMatch, b: &LabelMatch) -> bool {
    use LabelMatch::*;
    match (a, b) {
        (Any, _) | (_, Any) => true,
        (
            Masked {
                value: v1,
                mask: m1,
            },
            Masked {
                value: v2,
                mask: m2,
            },
        ) => (v1 ^ v2) & m1 & m2 == 0,
        _ => match (a.as_range(), b.as_range()) {
            (Some((a0, a1)), Some((b0, b1))) => a0 <= b1 && b0 <= a1,
            (Some((lo, hi)), None) => masked_min_at_least(b, lo).is_some_and(|x| x <= hi),
            (None, Some((lo, hi))) => masked_min_at_least(a, lo).is_some_and(|x| x <= hi),
            (None, None) => unreachable!("two masks are handled above"),
        },
    }
}

/// The smallest label `x >= lo` with `x & mask == value`, for a `Masked` match.
///
/// Either `lo` itself matches, or `x` agrees with `lo` above some bit `p`, has 1 where `lo` has
/// 0 at `p`, and is as small as the mask allows below `p`; the lowest such `p` gives the
/// smallest `x`.
fn masked_min_at_least(m: &LabelMatch, lo: u32) -> Option<u32> {
    let LabelMatch::Masked { value, mask } = *m else {
        return None;
    };
    if lo & mask == value {
        return Some(lo);
    }
    (0..20).find_map(|p: u32| {
        let above = !((2u32 << p) - 1);
        let below = (1u32 << p) - 1;
        let bit = 1u32 << p;
        let agree_above = (lo ^ value) & mask & above == 0;
        let may_set = mask & bit == 0 || value & bit != 0;
        (agree_above && lo & bit == 0 && may_set).then_some((lo & above) | bit | (value & below))
    })
}

fn port_overlap(a: &PortMatch, b: &PortMatch) -> bool {
    a.lo <= b.hi && b.lo <= a.hi
}

/// True when some packet can match both 3-tuple rules.
pub(crate) fn three_overlap(a: &ThreeMatch, b: &ThreeMatch) -> bool {
    label_overlap(&a.label, &b.label)
        && addr_overlap(&a.src, &b.src)
        && addr_overlap(&a.dst, &b.dst)
}

/// True when some packet can match both 5-tuple rules.
pub(crate) fn five_overlap(a: &FiveMatch, b: &FiveMatch) -> bool {
    let proto = match (a.proto, b.proto) {
        (Some(x), Some(y)) => x == y,
        _ => true,
    };
    proto
        && port_overlap(&a.sport, &b.sport)
        && port_overlap(&a.dport, &b.dport)
        && addr_overlap(&a.src, &b.src)
        && addr_overlap(&a.dst, &b.dst)
}

/// Canonical label form: `Any`, or an interval when the match is one, else the mask.
pub(crate) fn label_canon(l: &LabelMatch) -> LabelMatch {
    match l.as_range() {
        Some((0, hi)) if hi == crate::FlowLabel::MASK => LabelMatch::Any,
        Some((lo, hi)) if lo == hi => LabelMatch::Exact(crate::FlowLabel::from_low_bits(lo)),
        Some((lo, hi)) => LabelMatch::Range {
            lo: crate::FlowLabel::from_low_bits(lo),
            hi: crate::FlowLabel::from_low_bits(hi),
        },
        None => *l,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::model::{ClassDef, Prefix};

    fn pol(classes: &[(&str, Option<u32>)]) -> Policy {
        Policy {
            classes: classes
                .iter()
                .map(|(n, m)| ClassDef {
                    name: n.to_string(),
                    mark: *m,
                })
                .collect(),
            three: vec![],
            five: vec![],
            default: Action::Pass,
            default_explicit: false,
        }
    }

    #[test]
    fn counter_names_are_identifiers_and_tags_round_trip() {
        assert_eq!(counter_name(3, "gold-media.v2"), "r3_gold_media_v2");
        assert_eq!(counter_name(0, &"x".repeat(300)).len(), 3 + MAX_MANGLED);
        let t = CounterTag {
            engine: "three".into(),
            index: Some(7),
            rule: Some("gold-media".into()),
            action: "class gold".into(),
        };
        assert_eq!(t.comment(), "flowpol three rule 7 gold-media -> class gold");
        assert_eq!(CounterTag::parse(&t.comment()), Some(t));
        let d = CounterTag {
            engine: "five".into(),
            index: None,
            rule: None,
            action: "drop".into(),
        };
        assert_eq!(CounterTag::parse(&d.comment()), Some(d));
        assert_eq!(CounterTag::parse("something else"), None);
        let long = CounterTag {
            rule: Some("n".repeat(300)),
            ..CounterTag::parse("flowpol three rule 12 x -> class gold").unwrap()
        };
        let c = long.comment();
        assert_eq!(c.len(), MAX_COMMENT, "{c}");
        let back = CounterTag::parse(&c).unwrap();
        assert_eq!((back.index, back.action.as_str()), (Some(12), "class gold"));
        assert!(back.rule.unwrap().ends_with("n..."));
    }

    #[test]
    fn marks_auto_skip_declared_and_explicit_errors() {
        let p = pol(&[("a", None), ("b", Some(1)), ("c", None)]);
        let m = Marks::resolve(&p, &["a", "c"], MarkPolicy::Auto).unwrap();
        assert_eq!(m.of("a"), Some(2));
        assert_eq!(m.of("b"), Some(1));
        assert_eq!(m.of("c"), Some(3));
        assert_eq!(
            Marks::resolve(&p, &["a"], MarkPolicy::Explicit),
            Err(CompileError::MissingMark("a".into()))
        );
        assert!(Marks::resolve(&p, &["b"], MarkPolicy::Explicit).is_ok());
        assert_eq!(
            Marks::resolve(&p, &["zz"], MarkPolicy::Auto),
            Err(CompileError::UnknownClass("zz".into()))
        );
        let d = pol(&[("a", Some(5)), ("b", Some(5))]);
        assert!(matches!(
            Marks::resolve(&d, &[], MarkPolicy::Auto),
            Err(CompileError::DuplicateMark(..))
        ));
    }

    #[test]
    fn overlaps() {
        let p = |a: u128, l| AddrMatch(vec![Prefix::new(a << 96, l)]);
        assert!(addr_overlap(&p(0x2001_0db8, 32), &p(0x2001_0db8, 48)));
        assert!(!addr_overlap(&p(0x2001_0db8, 32), &p(0x2001_0db9, 32)));
        let r = |lo, hi| LabelMatch::Range {
            lo: crate::FlowLabel::from_low_bits(lo),
            hi: crate::FlowLabel::from_low_bits(hi),
        };
        assert!(label_overlap(&r(1, 5), &r(5, 9)));
        assert!(!label_overlap(&r(1, 5), &r(6, 9)));
        let odd = LabelMatch::Masked { value: 1, mask: 1 };
        assert!(!label_overlap(
            &odd,
            &LabelMatch::Exact(crate::FlowLabel::from_low_bits(4))
        ));
        assert!(label_overlap(&odd, &r(4, 5)));
        // The closed form agrees with walking the interval.
        {
            use rand::{RngExt, SeedableRng};
            let mut g = rand_chacha::ChaCha8Rng::seed_from_u64(9);
            for _ in 0..3000 {
                let m = g.random_range(0..0x100000u32);
                let mk = LabelMatch::Masked {
                    value: g.random_range(0..0x100000u32) & m,
                    mask: m,
                };
                let lo = g.random_range(0..0x100000u32);
                let hi = (lo + g.random_range(0..0x400u32)).min(0xfffff);
                let walk = (lo..=hi).any(|l| mk.matches(crate::FlowLabel::from_low_bits(l)));
                assert_eq!(
                    label_overlap(&mk, &r(lo, hi)),
                    walk,
                    "{mk:?} vs {lo:#x}-{hi:#x}"
                );
            }
        }
        for (v, m) in [
            (1u32, 1u32),
            (0x10001, 0xf000f),
            (0x5, 0x15),
            (0, 0xa),
            (0x80000, 0x80001),
        ] {
            let mk = LabelMatch::Masked { value: v, mask: m };
            for (lo, hi) in [
                (0u32, 0u32),
                (2, 2),
                (3, 9),
                (0x10, 0x1f),
                (0xfff0, 0x10010),
                (0x7fffe, 0x80000),
                (0xffffe, 0xfffff),
            ] {
                let walk = (lo..=hi).any(|l| mk.matches(crate::FlowLabel::from_low_bits(l)));
                assert_eq!(
                    label_overlap(&mk, &r(lo, hi)),
                    walk,
                    "{v:#x}/{m:#x} vs {lo:#x}-{hi:#x}"
                );
                assert_eq!(label_overlap(&r(lo, hi), &mk), walk);
            }
        }
        assert!(!label_overlap(
            &odd,
            &LabelMatch::Masked { value: 0, mask: 3 }
        ));
        assert_eq!(
            label_canon(&LabelMatch::Masked {
                value: 0x10000,
                mask: 0xf0000
            }),
            r(0x10000, 0x1ffff)
        );
        assert_eq!(label_canon(&r(0, 0xfffff)), LabelMatch::Any);
        let set = AddrMatch(vec![
            Prefix::new(1 << 124, 8),
            Prefix::new(1 << 124, 16),
            Prefix::new(2 << 124, 8),
        ]);
        assert_eq!(disjoint_prefixes(&set).unwrap().len(), 2);
    }
}
