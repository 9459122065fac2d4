//! The checked policy: what the engines, the compilers and `fmt` consume. Built from the syntax
//! tree by [`crate::policy::check`]; every rule keeps its span so a finding can point back at it.

use crate::label::FlowLabel;
use crate::policy::syntax::Span;

/// A rule set after checking: ordered rules for each tuple kind (first match wins) and a default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Declared classes, in declaration order (classes used but never declared are added here
    /// in order of first use when the file declares none).
    pub classes: Vec<ClassDef>,
    /// Rules on (src, dst, flow label), from the fixed IPv6 header only.
    pub three: Vec<Rule<ThreeMatch>>,
    /// Rules on (src, dst, proto, sport, dport), the conventional way.
    pub five: Vec<Rule<FiveMatch>>,
    /// The action for packets no rule matches.
    pub default: Action,
    /// False when the file had no `default` line (then the default is `pass`).
    pub default_explicit: bool,
}

impl Policy {
    /// A policy of bare matches, in priority order: rules named `r0`, `r1`, ... that all
    /// `pass`, no classes, default `pass`. For tests and benchmarks of the engines, where only
    /// which rule matches first counts.
    pub fn from_matches(three: Vec<ThreeMatch>, five: Vec<FiveMatch>) -> Policy {
        fn rules<M>(ms: Vec<M>) -> Vec<Rule<M>> {
            ms.into_iter()
                .enumerate()
                .map(|(i, matcher)| Rule {
                    name: format!("r{i}"),
                    matcher,
                    action: Action::Pass,
                    span: Span::default(),
                })
                .collect()
        }
        Policy {
            classes: Vec::new(),
            three: rules(three),
            five: rules(five),
            default: Action::Pass,
            default_explicit: false,
        }
    }
}

/// A traffic class, with an optional firewall mark for kernel export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassDef {
    pub name: String,
    pub mark: Option<u32>,
}

/// What a matching rule (or the default) does with a packet.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Pass,
    Drop,
    Class(String),
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Pass => f.write_str("pass"),
            Action::Drop => f.write_str("drop"),
            Action::Class(c) => write!(f, "class {c}"),
        }
    }
}

/// One ordered rule. `span` covers the rule in its source file; it is not compared.
#[derive(Clone, Debug)]
pub struct Rule<M> {
    pub name: String,
    pub matcher: M,
    pub action: Action,
    pub span: Span,
}

impl<M: PartialEq> PartialEq for Rule<M> {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.matcher == other.matcher && self.action == other.action
    }
}
impl<M: Eq> Eq for Rule<M> {}

/// An IPv6 prefix with its host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    pub addr: u128,
    pub len: u8,
}

impl Prefix {
    /// Builds a prefix, clearing host bits. `len` must be at most 128.
    pub fn new(addr: u128, len: u8) -> Self {
        debug_assert!(len <= 128);
        Prefix {
            addr: addr & Self::mask_of(len),
            len,
        }
    }

    /// The network mask of a prefix length.
    pub const fn mask_of(len: u8) -> u128 {
        if len == 0 {
            0
        } else {
            u128::MAX << (128 - len as u32)
        }
    }

    /// This prefix's mask.
    pub const fn mask(&self) -> u128 {
        Self::mask_of(self.len)
    }

    /// True when `addr` lies in this prefix.
    #[inline]
    pub fn contains(&self, addr: u128) -> bool {
        addr & self.mask() == self.addr
    }

    /// True when every address of `other` lies in `self`.
    pub fn covers(&self, other: &Prefix) -> bool {
        self.len <= other.len && self.contains(other.addr)
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let a = std::net::Ipv6Addr::from(self.addr);
        if self.len == 128 {
            write!(f, "{a}")
        } else {
            write!(f, "{a}/{}", self.len)
        }
    }
}

/// A set of prefixes; empty means any address.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct AddrMatch(pub Vec<Prefix>);

impl AddrMatch {
    /// The wildcard.
    pub fn any() -> Self {
        AddrMatch(Vec::new())
    }
    pub fn is_any(&self) -> bool {
        self.0.is_empty() || self.0.iter().any(|p| p.len == 0)
    }
    #[inline]
    pub fn matches(&self, addr: u128) -> bool {
        self.0.is_empty() || self.0.iter().any(|p| p.contains(addr))
    }
    /// True when each prefix of `other` lies inside one prefix of `self`, so every address
    /// `other` matches, `self` matches too. Sound but not complete: a prefix covered only by
    /// several of `self`'s prefixes together (`{::/1, 8000::/1}` and `::/0`) gives false; the
    /// checker's region subtraction (src/policy/cover.rs) finds those.
    pub fn covers(&self, other: &AddrMatch) -> bool {
        if self.is_any() {
            return true;
        }
        if other.is_any() {
            return false;
        }
        other.0.iter().all(|o| self.0.iter().any(|s| s.covers(o)))
    }
}

/// How a rule matches the flow label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LabelMatch {
    Any,
    Exact(FlowLabel),
    /// `label & mask == value`; `value` has no bits outside `mask`.
    Masked {
        value: u32,
        mask: u32,
    },
    /// Inclusive, `lo <= hi`.
    Range {
        lo: FlowLabel,
        hi: FlowLabel,
    },
}

impl LabelMatch {
    #[inline]
    pub fn matches(&self, label: FlowLabel) -> bool {
        let l = label.value();
        match *self {
            LabelMatch::Any => true,
            LabelMatch::Exact(v) => l == v.value(),
            LabelMatch::Masked { value, mask } => l & mask == value,
            LabelMatch::Range { lo, hi } => lo.value() <= l && l <= hi.value(),
        }
    }

    /// True when every label `other` matches, `self` matches too. Exact, in constant time: an
    /// interval covers a masked set when it holds the set's least and greatest members; a
    /// non-contiguous mask covers an interval only when the interval's varying low bits are all
    /// outside the mask.
    pub fn covers(&self, other: &LabelMatch) -> bool {
        match (self.as_range(), *other) {
            (Some((a, b)), LabelMatch::Masked { value, mask }) => {
                a <= value && (value | (!mask & FlowLabel::MASK)) <= b
            }
            (Some((a, b)), o) => o.as_range().is_some_and(|(c, d)| a <= c && d <= b),
            (None, o) => {
                let LabelMatch::Masked { value, mask } = *self else {
                    unreachable!("only a masked match is not an interval")
                };
                match o {
                    LabelMatch::Masked {
                        value: v2,
                        mask: m2,
                    } => mask & m2 == mask && v2 & mask == value,
                    o => {
                        let Some((c, d)) = o.as_range() else {
                            return false;
                        };
                        if c == d {
                            return c & mask == value;
                        }
                        // Every bit at or below the highest bit where c and d differ takes both
                        // values somewhere in [c, d].
                        let h = 31 - (c ^ d).leading_zeros();
                        let varying = (2u32 << h) - 1;
                        mask & varying == 0 && c & mask == value
                    }
                }
            }
        }
    }

    /// The match as an inclusive interval, when it is one.
    pub fn as_range(&self) -> Option<(u32, u32)> {
        match *self {
            LabelMatch::Any => Some((0, FlowLabel::MASK)),
            LabelMatch::Exact(v) => Some((v.value(), v.value())),
            LabelMatch::Range { lo, hi } => Some((lo.value(), hi.value())),
            LabelMatch::Masked { value, mask } => {
                // An interval when the mask is a run of high bits (a label prefix).
                let low = !mask & FlowLabel::MASK;
                if low & (low.wrapping_add(1)) == 0 {
                    Some((value, value | low))
                } else {
                    None
                }
            }
        }
    }
}

/// An inclusive port range; `0..=65535` is any.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortMatch {
    pub lo: u16,
    pub hi: u16,
}

impl PortMatch {
    pub const ANY: PortMatch = PortMatch {
        lo: 0,
        hi: u16::MAX,
    };
    pub fn is_any(&self) -> bool {
        *self == Self::ANY
    }
    #[inline]
    pub fn matches(&self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }
    pub fn covers(&self, other: &PortMatch) -> bool {
        self.lo <= other.lo && other.hi <= self.hi
    }
}

/// A 3-tuple rule's match: fields of the fixed IPv6 header only.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ThreeMatch {
    pub src: AddrMatch,
    pub dst: AddrMatch,
    pub label: LabelMatch,
}

/// A 5-tuple rule's match. `proto: None` is any protocol (then both port matches are any).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FiveMatch {
    pub src: AddrMatch,
    pub dst: AddrMatch,
    pub proto: Option<u8>,
    pub sport: PortMatch,
    pub dport: PortMatch,
}

impl ThreeMatch {
    pub fn covers(&self, other: &ThreeMatch) -> bool {
        self.src.covers(&other.src)
            && self.dst.covers(&other.dst)
            && self.label.covers(&other.label)
    }
}

impl FiveMatch {
    pub fn covers(&self, other: &FiveMatch) -> bool {
        self.src.covers(&other.src)
            && self.dst.covers(&other.dst)
            && (self.proto.is_none() || self.proto == other.proto)
            && self.sport.covers(&other.sport)
            && self.dport.covers(&other.dport)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn label_match() -> impl Strategy<Value = LabelMatch> {
        // A 20-bit space is too large to draw from at random and still see covers: put every
        // value in one corner (the top 14 bits set), with masks that fix those bits or not.
        const C: u32 = 0xfffc0;
        let small = 0u32..64;
        prop_oneof![
            Just(LabelMatch::Any),
            small
                .clone()
                .prop_map(|v| LabelMatch::Exact(FlowLabel::from_low_bits(v | C))),
            (
                small.clone(),
                small.clone(),
                prop_oneof![Just(C), Just(0), Just(0x80000)]
            )
                .prop_map(|(v, m, hi)| LabelMatch::Masked {
                    value: (v & m) | hi,
                    mask: m | hi
                }),
            (small.clone(), small).prop_map(|(a, b)| LabelMatch::Range {
                lo: FlowLabel::from_low_bits(a.min(b) | C),
                hi: FlowLabel::from_low_bits(a.max(b) | C)
            }),
        ]
    }

    fn brute_covers(a: &LabelMatch, b: &LabelMatch) -> bool {
        (0..=FlowLabel::MASK)
            .map(FlowLabel::from_low_bits)
            .all(|l| !b.matches(l) || a.matches(l))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn label_covers_is_exact(a in label_match(), b in label_match()) {
            prop_assert_eq!(a.covers(&b), brute_covers(&a, &b), "{:?} covers {:?}", a, b);
        }
    }

    #[test]
    fn label_covers_cases() {
        let m = |value, mask| LabelMatch::Masked { value, mask };
        let r = |lo, hi| LabelMatch::Range {
            lo: FlowLabel::from_low_bits(lo),
            hi: FlowLabel::from_low_bits(hi),
        };
        assert!(m(0x10000, 0xf0000).covers(&r(0x10000, 0x1ffff)));
        assert!(!m(0x10000, 0xf0000).covers(&r(0x10000, 0x20000)));
        assert!(r(0x10000, 0x1ffff).covers(&m(0x10000, 0xf0000)));
        assert!(m(0x0, 0x1).covers(&r(0x2, 0x2)));
        assert!(!m(0x0, 0x1).covers(&r(0x2, 0x3)));
        assert!(m(0, 0).covers(&LabelMatch::Any));
        assert!(!m(0, 1).covers(&LabelMatch::Any));
    }
}
