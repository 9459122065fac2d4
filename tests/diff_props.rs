//! `flowpol diff` against the linear engine, on random pairs of policies over small key spaces
//! whose every key is tried: a key whose action differs lies in exactly one reported region,
//! with the actions before and after that region states; a key whose action does not differ
//! lies in none; every example packet really changes. With a budget too small to finish, what
//! is reported is still right and the answer says it is incomplete. Rewrites that keep the
//! meaning (renaming, reordering rules that do not overlap, splitting a prefix into halves)
//! report nothing.

use flowpol::FlowLabel;
use flowpol::classify::{Classifier, Linear};
use flowpol::packet::{FiveTuple, IpNumber, ThreeTuple};
use flowpol::policy::diff::{DiffBudget, Example, PolicyDiff, TupleDiff, diff};
use flowpol::policy::model::*;
use proptest::prelude::*;
use std::net::Ipv6Addr;

/// The base of the address space: 8 addresses NET+0..7, and one far away.
const NET: u128 = 0x2001_0db8u128 << 96;
const FAR: u128 = 0xfd00u128 << 112 | 5;
const ADDRS: [u128; 9] = [
    NET,
    NET + 1,
    NET + 2,
    NET + 3,
    NET + 4,
    NET + 5,
    NET + 6,
    NET + 7,
    FAR,
];
const LABELS: [u32; 4] = [0x40, 0x7ffff, 0x80000, 0xfffff];
const PORTS: [u16; 9] = [0, 1, 2, 3, 4, 5, 6, 7, 65535];
const PROTOS: [u8; 4] = [6, 17, 58, 0];

fn prefix() -> impl Strategy<Value = Prefix> {
    prop_oneof![
        4 => (0u128..8, 125u8..=128).prop_map(|(o, len)| Prefix::new(NET + o, len)),
        1 => (0u8..=124).prop_map(|len| Prefix::new(NET, len)),
        1 => Just(Prefix::new(FAR, 128)),
    ]
}

fn addrs() -> impl Strategy<Value = AddrMatch> {
    prop_oneof![
        1 => Just(AddrMatch::any()),
        3 => prop::collection::vec(prefix(), 1..3).prop_map(AddrMatch),
    ]
}

fn label() -> impl Strategy<Value = LabelMatch> {
    let l = || (0u32..64).prop_map(FlowLabel::from_low_bits);
    let mask = prop_oneof![
        0u32..64,
        Just(0x80000u32),
        (0u32..64).prop_map(|m| m | 0x80000)
    ];
    prop_oneof![
        Just(LabelMatch::Any),
        l().prop_map(LabelMatch::Exact),
        (0u32..64, mask).prop_map(|(v, m)| LabelMatch::Masked {
            value: v & m,
            mask: m
        }),
        (l(), l()).prop_map(|(a, b)| LabelMatch::Range {
            lo: a.min(b),
            hi: a.max(b)
        }),
        Just(LabelMatch::Range {
            lo: FlowLabel::from_low_bits(0x10),
            hi: FlowLabel::from_low_bits(0x80000)
        }),
    ]
}

fn ports() -> impl Strategy<Value = PortMatch> {
    prop_oneof![
        Just(PortMatch::ANY),
        (0u16..8, 0u16..8).prop_map(|(a, b)| PortMatch {
            lo: a.min(b),
            hi: a.max(b)
        }),
        (0u16..8).prop_map(|a| PortMatch { lo: a, hi: 65535 }),
    ]
}

fn five_match() -> impl Strategy<Value = FiveMatch> {
    let proto = prop::option::of(prop_oneof![Just(6u8), Just(17), Just(58), Just(0)]);
    (addrs(), addrs(), proto, ports(), ports()).prop_map(|(src, dst, proto, sport, dport)| {
        let with = proto.is_some_and(|p| IpNumber(p).has_ports());
        FiveMatch {
            src,
            dst,
            proto,
            sport: if with { sport } else { PortMatch::ANY },
            dport: if with { dport } else { PortMatch::ANY },
        }
    })
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        Just(Action::Pass),
        Just(Action::Drop),
        Just(Action::Class("gold".into())),
    ]
}

fn rules<M: std::fmt::Debug + Clone>(
    m: impl Strategy<Value = M>,
    p: &str,
) -> impl Strategy<Value = Vec<Rule<M>>> {
    let p = p.to_string();
    prop::collection::vec((m, action()), 0..7).prop_map(move |v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (matcher, action))| Rule {
                name: format!("{p}{i}"),
                matcher,
                action,
                span: Default::default(),
            })
            .collect()
    })
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        rules(
            (addrs(), addrs(), label()).prop_map(|(src, dst, label)| ThreeMatch {
                src,
                dst,
                label,
            }),
            "t",
        ),
        rules(five_match(), "f"),
        action(),
    )
        .prop_map(|(three, five, default)| Policy {
            classes: vec![ClassDef {
                name: "gold".into(),
                mark: None,
            }],
            three,
            five,
            default,
            default_explicit: true,
        })
}

/// A policy and a few of its rules changed: often a small edit, so that most keys keep their
/// action.
fn pair() -> impl Strategy<Value = (Policy, Policy)> {
    (
        policy(),
        policy(),
        prop::collection::vec(any::<prop::sample::Index>(), 0..3),
        any::<bool>(),
    )
        .prop_map(|(old, other, picks, swap_default)| {
            let mut new = old.clone();
            for ix in picks {
                if !other.three.is_empty() {
                    let r = ix.get(&other.three).clone();
                    let at = ix.index(new.three.len() + 1);
                    new.three.insert(at, r);
                }
                if !other.five.is_empty() {
                    let r = ix.get(&other.five).clone();
                    let at = ix.index(new.five.len() + 1);
                    new.five.insert(at, r);
                }
            }
            if swap_default {
                new.default = other.default.clone();
            }
            (old, new)
        })
}

fn three_keys() -> impl Iterator<Item = ThreeTuple> {
    let labels: Vec<u32> = (0..64).chain(LABELS).collect();
    ADDRS.into_iter().flat_map(move |src| {
        let labels = labels.clone();
        ADDRS.into_iter().flat_map(move |dst| {
            labels.clone().into_iter().map(move |l| ThreeTuple {
                src,
                dst,
                label: FlowLabel::from_low_bits(l),
            })
        })
    })
}

fn five_keys() -> impl Iterator<Item = FiveTuple> {
    ADDRS.into_iter().flat_map(|src| {
        ADDRS.into_iter().flat_map(move |dst| {
            PROTOS.into_iter().flat_map(move |proto| {
                let ports: Vec<u16> = if IpNumber(proto).has_ports() {
                    PORTS.to_vec()
                } else {
                    vec![0]
                };
                let ps = ports.clone();
                ports.into_iter().flat_map(move |sport| {
                    ps.clone().into_iter().map(move |dport| FiveTuple {
                        src,
                        dst,
                        proto,
                        sport,
                        dport,
                    })
                })
            })
        })
    })
}

fn three_example(k: &ThreeTuple) -> Example {
    Example {
        src: Ipv6Addr::from(k.src),
        dst: Ipv6Addr::from(k.dst),
        label: Some(k.label.value()),
        proto: None,
        sport: None,
        dport: None,
    }
}

fn five_example(k: &FiveTuple) -> Example {
    Example {
        src: Ipv6Addr::from(k.src),
        dst: Ipv6Addr::from(k.dst),
        label: None,
        proto: Some(k.proto),
        sport: Some(k.sport),
        dport: Some(k.dport),
    }
}

fn three_of(e: &Example) -> ThreeTuple {
    ThreeTuple {
        src: e.src.into(),
        dst: e.dst.into(),
        label: FlowLabel::from_low_bits(e.label.expect("a 3-tuple example has a label")),
    }
}

fn five_of(e: &Example) -> FiveTuple {
    FiveTuple {
        src: e.src.into(),
        dst: e.dst.into(),
        proto: e.proto.expect("a 5-tuple example has a protocol"),
        sport: e.sport.expect("and ports"),
        dport: e.dport.expect("and ports"),
    }
}

/// The action a policy's block gives a key, by the linear engine.
fn action_of(
    rules_actions: &[Action],
    default: &Action,
    r: Option<flowpol::classify::RuleId>,
) -> Action {
    r.map_or_else(|| default.clone(), |r| rules_actions[r.index()].clone())
}

/// Checks one tuple kind's diff against every key of the grid and against its examples.
fn check_tuple<K: flowpol::classify::Key + std::fmt::Debug>(
    d: &TupleDiff,
    old: &Policy,
    new: &Policy,
    acts: impl Fn(&Policy) -> Vec<Action>,
    keys: impl Iterator<Item = K>,
    example: impl Fn(&K) -> Example,
    key_of: impl Fn(&Example) -> K,
) -> Result<(), TestCaseError>
where
    K::Match: Clone + Send + Sync,
{
    let (lo, ln) = (Linear::<K>::new(old), Linear::<K>::new(new));
    let (ao, an) = (acts(old), acts(new));
    for k in keys {
        let before = action_of(&ao, &old.default, lo.classify(&k));
        let after = action_of(&an, &new.default, ln.classify(&k));
        let e = example(&k);
        let holding: Vec<_> = d.changes.iter().filter(|c| c.region.contains(&e)).collect();
        prop_assert!(
            holding.len() <= 1,
            "{k:?} in {} regions: the regions overlap",
            holding.len()
        );
        if let Some(c) = holding.first() {
            prop_assert_eq!(
                &c.before,
                &before,
                "{:?}: region says before {}",
                k,
                c.before
            );
            prop_assert_eq!(&c.after, &after, "{:?}: region says after {}", k, c.after);
        } else if d.complete {
            prop_assert_eq!(
                &before,
                &after,
                "{:?} changes ({} -> {}) but lies in no region",
                k,
                before,
                after
            );
        }
    }
    for c in &d.changes {
        prop_assert!(
            c.region.contains(&c.example),
            "example {:?} outside its region",
            c.example
        );
        let k = key_of(&c.example);
        prop_assert_eq!(
            action_of(&ao, &old.default, lo.classify(&k)),
            c.before.clone()
        );
        prop_assert_eq!(
            action_of(&an, &new.default, ln.classify(&k)),
            c.after.clone()
        );
        prop_assert!(c.before != c.after);
    }
    Ok(())
}

fn check(d: &PolicyDiff, old: &Policy, new: &Policy) -> Result<(), TestCaseError> {
    check_tuple(
        &d.three,
        old,
        new,
        |p| p.three.iter().map(|r| r.action.clone()).collect(),
        three_keys(),
        three_example,
        three_of,
    )?;
    check_tuple(
        &d.five,
        old,
        new,
        |p| p.five.iter().map(|r| r.action.clone()).collect(),
        five_keys(),
        five_example,
        five_of,
    )
}

/// True when no key matches both (a sound test: some field's sets are disjoint).
fn disjoint_addrs(a: &AddrMatch, b: &AddrMatch) -> bool {
    !a.is_any()
        && !b.is_any()
        && a.0
            .iter()
            .all(|p| b.0.iter().all(|q| !p.covers(q) && !q.covers(p)))
}

/// The same policy written differently: rules renamed, each rule whose destination is one
/// prefix shorter than 128 split into two rules on its halves, and neighbouring rules whose
/// destinations cannot overlap swapped.
fn rewrite(p: &Policy) -> Policy {
    let mut q = p.clone();
    let mut three = Vec::new();
    for r in &p.three {
        match r.matcher.dst.0.as_slice() {
            [d] if d.len < 128 && d.len > 0 => {
                for half in [d.addr, d.addr | (1u128 << (127 - d.len))] {
                    let mut h = r.clone();
                    h.matcher.dst = AddrMatch(vec![Prefix::new(half, d.len + 1)]);
                    three.push(h);
                }
            }
            _ => three.push(r.clone()),
        }
    }
    let mut i = 0;
    while i + 1 < three.len() {
        if disjoint_addrs(&three[i].matcher.dst, &three[i + 1].matcher.dst) {
            three.swap(i, i + 1);
            i += 2;
        } else {
            i += 1;
        }
    }
    for (i, r) in three.iter_mut().enumerate() {
        r.name = format!("renamed{i}");
    }
    q.three = three;
    let mut i = 0;
    while i + 1 < q.five.len() {
        if disjoint_addrs(&q.five[i].matcher.src, &q.five[i + 1].matcher.src) {
            q.five.swap(i, i + 1);
        }
        i += 2;
    }
    for r in &mut q.five {
        r.name.push_str("-new");
    }
    q
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn diff_is_exactly_the_keys_whose_action_changes((old, new) in pair()) {
        let d = diff(&old, &new, &DiffBudget::default());
        prop_assert!(d.three.complete && d.five.complete);
        check(&d, &old, &new)?;
        let back = diff(&new, &old, &DiffBudget::default());
        prop_assert_eq!(d.three.changes.is_empty(), back.three.changes.is_empty());
        prop_assert_eq!(d.five.changes.is_empty(), back.five.changes.is_empty());
    }

    #[test]
    fn with_a_small_budget_what_is_reported_is_still_right(
        (old, new) in pair(),
        work in 1usize..400,
        boxes in 1usize..40,
    ) {
        let d = diff(&old, &new, &DiffBudget { work, boxes });
        check(&d, &old, &new)?;
        let full = diff(&old, &new, &DiffBudget::default());
        if !full.is_unchanged() {
            prop_assert!(!d.is_unchanged(), "a change was missed but not called incomplete");
        }
    }

    #[test]
    fn rewrites_that_keep_the_meaning_report_nothing(p in policy()) {
        let q = rewrite(&p);
        let d = diff(&p, &q, &DiffBudget::default());
        prop_assert!(d.is_unchanged(), "{:?}", d);
        prop_assert!(diff(&p, &p, &DiffBudget::default()).is_unchanged());
    }
}
