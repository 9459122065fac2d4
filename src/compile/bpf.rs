//! The pcap-filter (classic BPF) target: one expression per rule, per action (pass, drop, each
//! class) and for the default, that tcpdump, tshark (`-f`) and libpcap compile, selecting
//! exactly the packets flowpol's first-match engine assigns to it.
//!
//! # Encoding
//! - addresses: `src net P` (`src host A` for a /128), sets as `(src net a or src net b)`;
//! - the flow label, the low 20 bits of the first 32-bit word of the IPv6 header:
//!   `ip6[0:4] & 0xfffff = V`, ranges with `>=`/`<=`, masks as `ip6[0:4] & M = V`
//!   (libpcap loads only 1, 2 or 4 bytes: `ip6[1:3]` does not compile);
//! - first match: rule k is `ip6 and (match k) and not (match j or ...)` over the earlier rules
//!   j that can match a packet rule k matches (the others cannot change the outcome);
//! - a rule no packet reaches (an earlier rule covers it) is `ip6 and len = 0`: libpcap refuses
//!   a filter it can prove empty ("expression rejects all packets"), and no IPv6 frame has
//!   length 0.
//!
//! # Exactness
//! 3-tuple rules read only the fixed IPv6 header and are exact (for Ethernet frames without
//! VLAN tags: `ip6` tests the Ethernet type). 5-tuple rules are marked `exact: false`:
//! libpcap's protocol and port tests (`ip6[6]`, `ip6[40:2]`) read only the fixed header's next
//! header, so a packet with extension headers before its transport header, which flowpol
//! matches on the transport header it finds behind them, is missed (and a first fragment is
//! not seen as UDP/TCP).

use super::{CompileError, Engine, five_overlap, label_canon, three_overlap};
use crate::policy::model::{
    Action, AddrMatch, FiveMatch, LabelMatch, Policy, ThreeMatch, proto_has_ports,
};
use std::fmt::Write as _;

/// What a filter selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterKind {
    /// The packets one rule gets.
    Rule,
    /// The packets with one action: every rule with it, and the default when it has it.
    Action,
    /// The packets no rule matches.
    Default,
}

/// One pcap-filter expression.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BpfFilter {
    pub kind: FilterKind,
    /// The rule name, the action (`pass`, `drop`, `class gold`) or `default`.
    pub name: String,
    /// The rule's index in its block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The action of the rule or default.
    pub action: String,
    pub expr: String,
    /// True when the expression selects exactly flowpol's packets.
    pub exact: bool,
    /// Why not, when not exact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The expression that matches nothing but is not provably empty to libpcap's optimizer.
pub const NOTHING: &str = "ip6 and len = 0";

const FIVE_INEXACT: &str = "libpcap reads only the fixed header's next header: packets with extension headers \
     before the transport header (and first fragments) are not matched as flowpol matches them";

fn addr_expr(dir: &str, m: &AddrMatch) -> Option<String> {
    let ps = super::disjoint_prefixes(m)?;
    let one = |p: &crate::policy::model::Prefix| {
        if p.len == 128 {
            format!("{dir} host {}", std::net::Ipv6Addr::from(p.addr))
        } else {
            format!("{dir} net {p}")
        }
    };
    Some(if ps.len() == 1 {
        one(&ps[0])
    } else {
        format!("({})", ps.iter().map(one).collect::<Vec<_>>().join(" or "))
    })
}

const LABEL: &str = "ip6[0:4] & 0xfffff";

fn label_expr(l: &LabelMatch) -> Option<String> {
    match label_canon(l) {
        LabelMatch::Any => None,
        LabelMatch::Exact(v) => Some(format!("{LABEL} = {:#x}", v.value())),
        LabelMatch::Range { lo, hi } if lo.is_zero() => {
            Some(format!("{LABEL} <= {:#x}", hi.value()))
        }
        LabelMatch::Range { lo, hi } if hi.value() == crate::FlowLabel::MASK => {
            Some(format!("{LABEL} >= {:#x}", lo.value()))
        }
        LabelMatch::Range { lo, hi } => Some(format!(
            "{LABEL} >= {:#x} and {LABEL} <= {:#x}",
            lo.value(),
            hi.value()
        )),
        LabelMatch::Masked { value, mask } => Some(format!("ip6[0:4] & {mask:#x} = {value:#x}")),
    }
}

fn port_expr(off: u8, lo: u16, hi: u16) -> Option<String> {
    match (lo, hi) {
        (0, u16::MAX) => None,
        (a, b) if a == b => Some(format!("ip6[{off}:2] = {a}")),
        (0, b) => Some(format!("ip6[{off}:2] <= {b}")),
        (a, u16::MAX) => Some(format!("ip6[{off}:2] >= {a}")),
        (a, b) => Some(format!("ip6[{off}:2] >= {a} and ip6[{off}:2] <= {b}")),
    }
}

/// The conjunction of a rule's field tests; `None` when it never matches, `Some("")` when it
/// matches every IPv6 packet.
fn three_expr(m: &ThreeMatch) -> Option<String> {
    let parts: Vec<String> = [
        addr_expr("src", &m.src),
        addr_expr("dst", &m.dst),
        label_expr(&m.label),
    ]
    .into_iter()
    .flatten()
    .collect();
    Some(parts.join(" and "))
}

fn five_expr(name: &str, m: &FiveMatch) -> Result<Option<String>, CompileError> {
    let mut parts: Vec<String> = [addr_expr("src", &m.src), addr_expr("dst", &m.dst)]
        .into_iter()
        .flatten()
        .collect();
    match m.proto {
        None if m.sport.is_any() && m.dport.is_any() => {}
        None => {
            return Err(CompileError::Unsupported {
                rule: name.into(),
                reason: "ports without a protocol".into(),
            });
        }
        Some(p) => {
            parts.push(format!("ip6[6] = {p}"));
            if proto_has_ports(p) {
                parts.extend(port_expr(40, m.sport.lo, m.sport.hi));
                parts.extend(port_expr(42, m.dport.lo, m.dport.hi));
            } else if !(m.sport.matches(0) && m.dport.matches(0)) {
                return Ok(None);
            }
        }
    }
    Ok(Some(parts.join(" and ")))
}

fn and_not(base: &str, earlier: &[&str]) -> String {
    let mut e = String::from("ip6");
    if !base.is_empty() {
        let _ = write!(e, " and ({base})");
    }
    if !earlier.is_empty() {
        let alts: Vec<String> = earlier.iter().map(|x| format!("({x})")).collect();
        let _ = write!(e, " and not ({})", alts.join(" or "));
    }
    e
}

/// Compiles the rules of `engine`: every rule's filter in order, then one per action that has
/// packets (pass, drop, classes in declaration order), then the default.
pub fn compile(policy: &Policy, engine: Engine) -> Result<Vec<BpfFilter>, CompileError> {
    // (name, action, bare match or None when it never matches)
    let rules: Vec<(String, Action, Option<String>)> = match engine {
        Engine::Three => policy
            .three
            .iter()
            .map(|r| (r.name.clone(), r.action.clone(), three_expr(&r.matcher)))
            .collect(),
        Engine::Five => policy
            .five
            .iter()
            .map(|r| {
                Ok((
                    r.name.clone(),
                    r.action.clone(),
                    five_expr(&r.name, &r.matcher)?,
                ))
            })
            .collect::<Result<_, CompileError>>()?,
    };
    let overlap = |i: usize, j: usize| match engine {
        Engine::Three => three_overlap(&policy.three[i].matcher, &policy.three[j].matcher),
        Engine::Five => five_overlap(&policy.five[i].matcher, &policy.five[j].matcher),
    };
    let covers = |i: usize, j: usize| match engine {
        Engine::Three => policy.three[i].matcher.covers(&policy.three[j].matcher),
        Engine::Five => policy.five[i].matcher.covers(&policy.five[j].matcher),
    };
    let (exact, reason) = match engine {
        Engine::Three => (true, None),
        Engine::Five => (false, Some(FIVE_INEXACT.to_string())),
    };
    let mut out = Vec::new();
    for (k, (name, action, m)) in rules.iter().enumerate() {
        let live_before = || (0..k).filter(|&j| rules[j].2.is_some());
        let expr = match m {
            Some(m) if !live_before().any(|j| covers(j, k)) => {
                let earlier: Vec<&str> = live_before()
                    .filter(|&j| overlap(j, k))
                    .map(|j| rules[j].2.as_deref().unwrap_or(""))
                    .collect();
                and_not(m, &earlier)
            }
            _ => NOTHING.to_string(),
        };
        out.push(BpfFilter {
            kind: FilterKind::Rule,
            name: name.clone(),
            index: Some(k),
            action: action.to_string(),
            expr,
            exact,
            reason: reason.clone(),
        });
    }
    let all: Vec<&str> = rules.iter().filter_map(|r| r.2.as_deref()).collect();
    let default_expr = if all.iter().any(|m| m.is_empty()) {
        NOTHING.to_string()
    } else {
        and_not("", &all)
    };
    let default = BpfFilter {
        kind: FilterKind::Default,
        name: "default".into(),
        index: None,
        action: policy.default.to_string(),
        expr: default_expr,
        exact,
        reason: reason.clone(),
    };
    let mut actions = vec![Action::Pass, Action::Drop];
    actions.extend(policy.classes.iter().map(|c| Action::Class(c.name.clone())));
    for a in actions {
        let a_str = a.to_string();
        let mut alts: Vec<&str> = out
            .iter()
            .filter(|f| f.action == a_str && f.expr != NOTHING)
            .map(|f| f.expr.as_str())
            .collect();
        if policy.default == a && default.expr != NOTHING {
            alts.push(&default.expr);
        }
        if alts.is_empty() {
            continue;
        }
        let expr = if alts.len() == 1 {
            alts[0].to_string()
        } else {
            alts.iter()
                .map(|x| format!("({x})"))
                .collect::<Vec<_>>()
                .join(" or ")
        };
        out.push(BpfFilter {
            kind: FilterKind::Action,
            name: a_str.clone(),
            index: None,
            action: a_str,
            expr,
            exact,
            reason: reason.clone(),
        });
    }
    out.push(default);
    Ok(out)
}

/// The text form: a `#` comment line naming each filter, then its expression on one line.
pub fn to_text(filters: &[BpfFilter], engine: Engine) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# flowpol compile --target bpf --engine {}: pcap-filter expressions, first match applied",
        engine.keyword()
    );
    let _ = writeln!(
        t,
        "# `ip6` tests the link-layer type: VLAN-tagged frames are not selected."
    );
    for f in filters {
        let what = match (f.kind, f.index) {
            (FilterKind::Rule, Some(i)) => format!("rule {i} {} -> {}", f.name, f.action),
            (FilterKind::Action, _) => format!("action {}", f.name),
            _ => format!("default -> {}", f.action),
        };
        let _ = writeln!(t, "# {what}");
        if let Some(r) = &f.reason {
            let _ = writeln!(t, "# inexact: {r}");
        }
        let _ = writeln!(t, "{}", f.expr);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FlowLabel;
    use crate::policy::model::{ClassDef, Prefix, Rule};
    use crate::policy::syntax::Span;

    fn rule(
        name: &str,
        src: Option<(u128, u8)>,
        label: LabelMatch,
        action: Action,
    ) -> Rule<ThreeMatch> {
        Rule {
            name: name.into(),
            matcher: ThreeMatch {
                src: AddrMatch(src.map(|(a, l)| Prefix::new(a, l)).into_iter().collect()),
                dst: AddrMatch::any(),
                label,
            },
            action,
            span: Span::default(),
        }
    }

    #[test]
    fn first_match_excludes_overlapping_earlier_rules_only() {
        let db8 = 0x2001_0db8u128 << 96;
        let p = Policy {
            classes: vec![ClassDef {
                name: "gold".into(),
                mark: None,
            }],
            three: vec![
                rule(
                    "a",
                    Some((db8, 32)),
                    LabelMatch::Exact(FlowLabel::from_low_bits(0x12345)),
                    Action::Class("gold".into()),
                ),
                rule(
                    "b",
                    None,
                    LabelMatch::Range {
                        lo: FlowLabel::from_low_bits(0x100),
                        hi: FlowLabel::from_low_bits(0x1ff),
                    },
                    Action::Drop,
                ),
                rule("c", Some((db8, 48)), LabelMatch::Any, Action::Pass),
                rule(
                    "shadowed",
                    Some((db8, 64)),
                    LabelMatch::Exact(FlowLabel::from_low_bits(0x12345)),
                    Action::Pass,
                ),
            ],
            five: vec![],
            default: Action::Class("gold".into()),
            default_explicit: true,
        };
        let f = compile(&p, Engine::Three).unwrap();
        assert_eq!(
            f[0].expr,
            "ip6 and (src net 2001:db8::/32 and ip6[0:4] & 0xfffff = 0x12345)"
        );
        assert_eq!(
            f[1].expr,
            "ip6 and (ip6[0:4] & 0xfffff >= 0x100 and ip6[0:4] & 0xfffff <= 0x1ff)"
        );
        assert_eq!(
            f[2].expr,
            "ip6 and (src net 2001:db8::/48) and not ((src net 2001:db8::/32 and ip6[0:4] & 0xfffff = 0x12345) or (ip6[0:4] & 0xfffff >= 0x100 and ip6[0:4] & 0xfffff <= 0x1ff))"
        );
        assert_eq!(f[3].expr, NOTHING);
        let names: Vec<&str> = f.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "a",
                "b",
                "c",
                "shadowed",
                "pass",
                "drop",
                "class gold",
                "default"
            ]
        );
        assert!(
            f[6].expr.contains(&f[7].expr),
            "the default's class includes the default"
        );
        assert!(f.iter().all(|x| x.exact));
    }
}
