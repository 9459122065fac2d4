//! Why a packet gets its action: the rule that matches it first (or the default) and, for each
//! earlier rule, the first of its fields that the packet does not match. The reference
//! semantics of the engines, written out for one packet.

use crate::label::FlowLabel;
use crate::packet::IpNumber;
use crate::policy::model::{Action, AddrMatch, LabelMatch, Policy, PortMatch, Prefix, Rule};
use serde::Serialize;
use std::net::Ipv6Addr;

/// An earlier rule the packet does not match, and the first field that says so.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Miss {
    /// The rule's name.
    pub rule: String,
    /// Its index in its block.
    #[serde(skip)]
    pub index: usize,
    /// The field's keyword (`src`, `dst`, `label`, `proto`, `sport`, `dport`).
    pub field: &'static str,
    /// What the rule asks of that field, in the policy language (`2001:db8::/32`).
    pub wants: String,
    /// What the packet has there.
    pub got: String,
}

/// The action one block gives a packet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The first rule that matches, or `None` for the default.
    pub rule: Option<String>,
    /// That rule's index in its block.
    #[serde(skip)]
    pub index: Option<usize>,
    /// The action, as the language writes it (`pass`, `drop`, `class gold`).
    #[serde(serialize_with = "action_text")]
    pub action: Action,
    /// Every rule before it, with the first field that did not match.
    pub skipped: Vec<Miss>,
}

fn action_text<S: serde::Serializer>(a: &Action, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(a)
}

/// Both blocks' verdicts; a block is `None` when the packet lacks its fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub three: Option<Verdict>,
    pub five: Option<Verdict>,
}

/// The fields of a 5-tuple packet. For a protocol without ports, both ports are 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FiveFields {
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

/// The verdicts for a packet with addresses `src`, `dst`, and the 3-tuple's label and the
/// 5-tuple's fields when known.
pub fn explain(
    policy: &Policy,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    label: Option<FlowLabel>,
    five: Option<FiveFields>,
) -> Explanation {
    let three = label.map(|l| {
        walk(policy, &policy.three, |m| {
            miss_addr("src", &m.src, src)
                .or_else(|| miss_addr("dst", &m.dst, dst))
                .or_else(|| {
                    (!m.label.matches(l)).then(|| ("label", show_label_match(&m.label), show(l)))
                })
        })
    });
    let five = five.map(|f| {
        walk(policy, &policy.five, |m| {
            miss_addr("src", &m.src, src)
                .or_else(|| miss_addr("dst", &m.dst, dst))
                .or_else(|| match m.proto {
                    Some(p) if p != f.proto => Some((
                        "proto",
                        IpNumber(p).to_string(),
                        IpNumber(f.proto).to_string(),
                    )),
                    _ => None,
                })
                .or_else(|| miss_port("sport", m.sport, f.sport))
                .or_else(|| miss_port("dport", m.dport, f.dport))
        })
    });
    Explanation { three, five }
}

/// First match over `rules`; `miss(m)` gives the first field of `m` the packet does not match.
fn walk<M>(
    policy: &Policy,
    rules: &[Rule<M>],
    miss: impl Fn(&M) -> Option<(&'static str, String, String)>,
) -> Verdict {
    let mut skipped = Vec::new();
    for (index, r) in rules.iter().enumerate() {
        match miss(&r.matcher) {
            Some((field, wants, got)) => skipped.push(Miss {
                rule: r.name.clone(),
                index,
                field,
                wants,
                got,
            }),
            None => {
                return Verdict {
                    rule: Some(r.name.clone()),
                    index: Some(index),
                    action: r.action.clone(),
                    skipped,
                };
            }
        }
    }
    Verdict {
        rule: None,
        index: None,
        action: policy.default.clone(),
        skipped,
    }
}

fn miss_addr(
    field: &'static str,
    m: &AddrMatch,
    a: Ipv6Addr,
) -> Option<(&'static str, String, String)> {
    if m.matches(a.into()) {
        return None;
    }
    let ps: Vec<String> = m.0.iter().map(Prefix::to_string).collect();
    let wants = if ps.len() == 1 {
        ps.concat()
    } else {
        format!("{{ {} }}", ps.join(", "))
    };
    Some((field, wants, a.to_string()))
}

fn miss_port(field: &'static str, m: PortMatch, p: u16) -> Option<(&'static str, String, String)> {
    if m.matches(p) {
        return None;
    }
    let wants = if m.lo == m.hi {
        m.lo.to_string()
    } else {
        format!("{}-{}", m.lo, m.hi)
    };
    Some((field, wants, p.to_string()))
}

fn show(l: FlowLabel) -> String {
    if l.is_zero() {
        "0".into()
    } else {
        format!("{:#x}", l.value())
    }
}

fn show_label_match(m: &LabelMatch) -> String {
    match *m {
        LabelMatch::Any => "any".into(),
        LabelMatch::Exact(v) => show(v),
        LabelMatch::Masked { value, mask } => format!("{value:#x}/{mask:#x}"),
        LabelMatch::Range { lo, hi } => format!("{}-{}", show(lo), show(hi)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::load_str;

    const POLICY: &str = "class gold\nclass silver\ndefault drop\n\
        three {\n  rule media dst 2001:db8:fe::/64 label 0x10000/0xf0000 -> class gold\n  \
        rule dns dst 2001:db8:ff::53 -> class silver\n}\n\
        five {\n  rule rtp dst 2001:db8:fe::/64 proto udp dport 5004-5005 -> class gold\n}\n";

    fn addr(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn names_the_matching_rule_and_why_each_earlier_rule_missed() {
        let p = load_str("p", POLICY).unwrap();
        let e = explain(
            &p,
            addr("2001:db8:a::1"),
            addr("2001:db8:ff::53"),
            Some(FlowLabel::from_low_bits(0x12345)),
            Some(FiveFields {
                proto: 17,
                sport: 4000,
                dport: 53,
            }),
        );
        let three = e.three.unwrap();
        assert_eq!(three.rule.as_deref(), Some("dns"));
        assert_eq!(three.action, Action::Class("silver".into()));
        assert_eq!(
            three.skipped,
            vec![Miss {
                rule: "media".into(),
                index: 0,
                field: "dst",
                wants: "2001:db8:fe::/64".into(),
                got: "2001:db8:ff::53".into(),
            }]
        );
        let five = e.five.unwrap();
        assert_eq!(five.rule, None);
        assert_eq!(five.action, Action::Drop);
        assert_eq!(five.skipped[0].field, "dst");
    }

    #[test]
    fn the_first_field_that_does_not_match_is_named() {
        let p = load_str("p", POLICY).unwrap();
        let e = explain(
            &p,
            addr("::1"),
            addr("2001:db8:fe::9"),
            Some(FlowLabel::from_low_bits(0x20000)),
            Some(FiveFields {
                proto: 17,
                sport: 1,
                dport: 6000,
            }),
        );
        let t = e.three.unwrap();
        assert_eq!(
            (t.skipped[0].field, t.skipped[0].wants.as_str()),
            ("label", "0x10000/0xf0000")
        );
        let f = e.five.unwrap();
        assert_eq!(
            (f.skipped[0].field, f.skipped[0].wants.as_str()),
            ("dport", "5004-5005")
        );
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(json["rule"], serde_json::Value::Null);
        assert_eq!(json["action"], "drop");
        assert_eq!(json["skipped"][0]["rule"], "media");
    }
}
