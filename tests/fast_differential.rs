//! Differential tests: the fast engines (TupleMerge, HyperSplit, and the cost model's choice)
//! against the linear reference on random policies
//! (overlapping prefixes, address sets, exact / masked / ranged labels, port ranges, protocols)
//! and on keys derived from the rules, including keys just outside a rule's bounds.

use flowpol::FlowLabel;
use flowpol::classify::{
    Classifier, Fast, FastFive, FastThree, HsConfig, HyperSplit, Linear, TmConfig, TmKey,
    TupleMerge,
};
use flowpol::r#gen::rules::{self, Shape};
use flowpol::packet::key::{FiveTuple, ThreeTuple};
use flowpol::policy::model::{
    AddrMatch, FiveMatch, LabelMatch, Policy, PortMatch, Prefix, ThreeMatch,
};
use flowpol::policy::syntax::TupleKind;
use proptest::prelude::*;

/// Bases the addresses share, so that prefixes nest and overlap.
const BASES: [u128; 4] = [
    0x2001_0db8_000a_0000_0000_0000_0000_0000,
    0x2001_0db8_000a_0001_0000_0000_0000_0000,
    0x2001_0db8_00ff_0000_0000_0000_0000_0001,
    0xfd00_0000_0000_0000_0000_0000_0000_0000,
];

fn addr() -> impl Strategy<Value = u128> {
    (
        0..BASES.len(),
        any::<u128>(),
        prop::sample::select(vec![0u32, 4, 8, 16, 64, 128]),
    )
        .prop_map(|(b, r, bits)| {
            let low = if bits == 128 {
                u128::MAX
            } else {
                (1u128 << bits) - 1
            };
            BASES[b] ^ (r & low)
        })
}

fn prefix() -> impl Strategy<Value = Prefix> {
    let len = prop_oneof![
        prop::sample::select(vec![0u8, 16, 32, 47, 48, 56, 63, 64, 96, 120, 127, 128]),
        0..=128u8,
    ];
    (addr(), len).prop_map(|(a, l)| Prefix::new(a, l))
}

fn addr_match() -> impl Strategy<Value = AddrMatch> {
    prop_oneof![
        3 => Just(AddrMatch::any()),
        5 => prop::collection::vec(prefix(), 1..=3).prop_map(AddrMatch),
    ]
}

fn label_value() -> impl Strategy<Value = u32> {
    prop_oneof![
        prop::sample::select(vec![0u32, 1, 0x10, 0x100, 0x1ff, 0x10000, 0x12345, 0xfffff]),
        0..=FlowLabel::MASK,
    ]
}

fn label_match() -> impl Strategy<Value = LabelMatch> {
    let fl = |v: u32| FlowLabel::new(u64::from(v)).unwrap();
    prop_oneof![
        Just(LabelMatch::Any),
        label_value().prop_map(move |v| LabelMatch::Exact(fl(v))),
        (
            label_value(),
            prop_oneof![
                prop::sample::select(vec![
                    0xf0000u32, 0xff000, 0xfff00, 0x000ff, 0x0f0f0, 0x80001
                ]),
                0..=FlowLabel::MASK,
            ]
        )
            .prop_map(|(v, m)| LabelMatch::Masked {
                value: v & m,
                mask: m
            }),
        (label_value(), label_value()).prop_map(move |(a, b)| LabelMatch::Range {
            lo: fl(a.min(b)),
            hi: fl(a.max(b)),
        }),
    ]
}

fn port() -> impl Strategy<Value = u16> {
    prop_oneof![
        prop::sample::select(vec![0u16, 1, 53, 80, 443, 1023, 1024, 65535]),
        any::<u16>()
    ]
}

fn port_match() -> impl Strategy<Value = PortMatch> {
    prop_oneof![
        2 => Just(PortMatch::ANY),
        2 => port().prop_map(|p| PortMatch { lo: p, hi: p }),
        1 => (port(), port()).prop_map(|(a, b)| PortMatch { lo: a.min(b), hi: a.max(b) }),
    ]
}

fn three_match() -> impl Strategy<Value = ThreeMatch> {
    (addr_match(), addr_match(), label_match()).prop_map(|(src, dst, label)| ThreeMatch {
        src,
        dst,
        label,
    })
}

fn five_match() -> impl Strategy<Value = FiveMatch> {
    (
        addr_match(),
        addr_match(),
        prop::sample::select(vec![None, Some(6u8), Some(17), Some(58)]),
        port_match(),
        port_match(),
    )
        .prop_map(|(src, dst, proto, sport, dport)| FiveMatch {
            src,
            dst,
            proto,
            sport,
            dport,
        })
}

fn policy(three: Vec<ThreeMatch>, five: Vec<FiveMatch>) -> Policy {
    Policy::from_matches(three, five)
}

/// A tiny deterministic generator for deriving keys from a seed.
struct Mix(u64);
impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn wide(&mut self) -> u128 {
        (u128::from(self.next()) << 64) | u128::from(self.next())
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// An address inside one of the set's prefixes, or (one time in four) just outside it.
fn derive_addr(m: &AddrMatch, x: &mut Mix) -> u128 {
    if m.0.is_empty() {
        return BASES[x.below(BASES.len())] ^ u128::from(x.next() as u8);
    }
    let p = m.0[x.below(m.0.len())];
    let inside = p.addr | (x.wide() & !p.mask());
    if p.len > 0 && x.below(4) == 0 {
        inside ^ (1u128 << (128 - u32::from(p.len)))
    } else {
        inside
    }
}

fn derive_label(m: LabelMatch, x: &mut Mix) -> FlowLabel {
    let r = x.next() as u32 & FlowLabel::MASK;
    let edge = x.below(4) == 0;
    let v = match m {
        LabelMatch::Any => r,
        LabelMatch::Exact(v) => v.value() ^ u32::from(edge),
        LabelMatch::Masked { value, mask } => {
            (value | (r & !mask)) ^ if edge { mask & mask.wrapping_neg() } else { 0 }
        }
        LabelMatch::Range { lo, hi } => match x.below(5) {
            0 => lo.value().wrapping_sub(1),
            1 => hi.value() + 1,
            2 => lo.value(),
            3 => hi.value(),
            _ => lo.value() + r % (hi.value() - lo.value() + 1),
        },
    };
    FlowLabel::from_low_bits(v)
}

fn derive_port(m: PortMatch, x: &mut Mix) -> u16 {
    match x.below(6) {
        0 => m.lo.wrapping_sub(1),
        1 => m.hi.wrapping_add(1),
        2 => m.lo,
        3 => m.hi,
        _ => m.lo + (x.next() % (u64::from(m.hi - m.lo) + 1)) as u16,
    }
}

fn three_keys(rules: &[ThreeMatch], seeds: &[u64]) -> Vec<ThreeTuple> {
    seeds
        .iter()
        .map(|&s| {
            let mut x = Mix(s);
            if rules.is_empty() || x.below(10) == 0 {
                let label = FlowLabel::from_low_bits(x.next() as u32);
                return ThreeTuple {
                    src: x.wide(),
                    dst: x.wide(),
                    label,
                };
            }
            let m = &rules[x.below(rules.len())];
            ThreeTuple {
                src: derive_addr(&m.src, &mut x),
                dst: derive_addr(&m.dst, &mut x),
                label: derive_label(m.label, &mut x),
            }
        })
        .collect()
}

fn five_keys(rules: &[FiveMatch], seeds: &[u64]) -> Vec<FiveTuple> {
    seeds
        .iter()
        .map(|&s| {
            let mut x = Mix(s);
            let protos = [6u8, 17, 58, 50];
            if rules.is_empty() || x.below(10) == 0 {
                return FiveTuple {
                    src: x.wide(),
                    dst: x.wide(),
                    proto: protos[x.below(4)],
                    sport: x.next() as u16,
                    dport: x.next() as u16,
                };
            }
            let m = &rules[x.below(rules.len())];
            FiveTuple {
                src: derive_addr(&m.src, &mut x),
                dst: derive_addr(&m.dst, &mut x),
                proto: m
                    .proto
                    .filter(|_| x.below(8) != 0)
                    .unwrap_or(protos[x.below(4)]),
                sport: derive_port(m.sport, &mut x),
                dport: derive_port(m.dport, &mut x),
            }
        })
        .collect()
}

/// Small configurations too, so that collision overflow and relaxation cascades are exercised.
const CONFIGS: [TmConfig; 3] = [
    TmConfig {
        collision_limit: 32,
        merge_limit: 48,
        addr_step: 16,
    },
    TmConfig {
        collision_limit: 1,
        merge_limit: 1,
        addr_step: 64,
    },
    TmConfig {
        collision_limit: 2,
        merge_limit: 5,
        addr_step: 3,
    },
];

/// Trees with leaves of one entry (deepest, most splitting) and of the default size; a budget
/// large enough that the small random policies always build.
const HS_CONFIGS: [HsConfig; 2] = [
    HsConfig {
        leaf_size: 1,
        budget_per_entry: 1 << 16,
    },
    HsConfig {
        leaf_size: 6,
        budget_per_entry: 1 << 16,
    },
];

/// The check both tuples share: every TupleMerge configuration, every tree (one key at a time,
/// counted, and batched) and the cost model's choice answer each key as linear does.
fn every_engine_equals_linear<K>(pol: &Policy, keys: &[K]) -> Result<(), TestCaseError>
where
    K: TmKey + std::fmt::Debug,
    K::Match: Clone + Send + Sync,
{
    let lin = Linear::<K>::new(pol);
    let rules = K::rules(pol);
    let engines: Vec<TupleMerge<K>> = CONFIGS
        .iter()
        .map(|&c| TupleMerge::with_config(&rules, c))
        .collect();
    let trees: Vec<HyperSplit<K>> = HS_CONFIGS
        .iter()
        .map(|&c| HyperSplit::from_matches(&rules, c).expect("within budget"))
        .collect();
    let fast = Fast::<K>::from_matches(&rules);
    let batches: Vec<Vec<_>> = trees
        .iter()
        .map(|e| {
            let mut out = vec![None; keys.len()];
            e.classify_batch(keys, &mut out);
            out
        })
        .collect();
    for (i, k) in keys.iter().enumerate() {
        let want = lin.classify(k);
        for b in &batches {
            prop_assert_eq!(b[i], want, "batch {:?}", k);
        }
        for (e, c) in engines.iter().zip(CONFIGS) {
            prop_assert_eq!(e.classify(k), want, "key {:?} config {:?}", k, c);
            prop_assert_eq!(e.classify_counted(k).0, want, "counted {:?} {:?}", k, c);
        }
        for (e, c) in trees.iter().zip(HS_CONFIGS) {
            prop_assert_eq!(e.classify(k), want, "key {:?} tree {:?}", k, c);
            prop_assert_eq!(e.classify_counted(k).0, want, "counted {:?} {:?}", k, c);
        }
        prop_assert_eq!(fast.classify(k), want, "key {:?} {}", k, fast.name());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn fast_three_equals_linear(
        rules in prop::collection::vec(three_match(), 0..40),
        seeds in prop::collection::vec(any::<u64>(), 1..200),
    ) {
        every_engine_equals_linear(&policy(rules.clone(), vec![]), &three_keys(&rules, &seeds))?;
    }

    #[test]
    fn fast_five_equals_linear(
        rules in prop::collection::vec(five_match(), 0..40),
        seeds in prop::collection::vec(any::<u64>(), 1..200),
    ) {
        every_engine_equals_linear(&policy(vec![], rules.clone()), &five_keys(&rules, &seeds))?;
    }
}

/// The top bits every narrowed policy shares: the IPv4-mapped prefix ::ffff:0:0/96 (whose top 64
/// bits are zero, so the same value serves a /64).
const NARROW_TOP: u128 = 0xffff_0000_0000;

/// `m` moved inside `NARROW_TOP`'s first `drop` bits: each prefix keeps its low bits and is at
/// least `drop` long; "any" becomes the whole narrow space.
fn narrow_addr(m: &AddrMatch, drop: u8) -> AddrMatch {
    let low = u128::MAX >> drop;
    let top = (NARROW_TOP << 32) & !low;
    if m.is_any() {
        return AddrMatch(vec![Prefix::new(top, drop)]);
    }
    AddrMatch(
        m.0.iter()
            .map(|p| Prefix::new(top | (p.addr & low), p.len.max(drop)))
            .collect(),
    )
}

/// The check both tuples share on a narrowed policy: TupleMerge keeps at most `128 - drop`
/// address bits, and every engine answers each key as linear does, both the key and the key with
/// one of its top `drop` bits flipped (outside the policy's shared space).
fn narrow_engines_equal_linear<K>(pol: &Policy, drop: u8, keys: &[K]) -> Result<(), TestCaseError>
where
    K: TmKey + std::fmt::Debug,
    K::Match: Clone + Send + Sync,
{
    let lin = Linear::<K>::new(pol);
    let tm = TupleMerge::<K>::new(pol);
    prop_assert!(
        tm.address_bits() <= 128 - drop,
        "{} bits",
        tm.address_bits()
    );
    let hs = HyperSplit::<K>::new(pol, HS_CONFIGS[0]).expect("within budget");
    let fast = Fast::<K>::new(pol);
    for (i, &k) in keys.iter().enumerate() {
        let bit = 1u128 << (127 - (i % usize::from(drop)));
        let (s, d) = if i % 2 == 0 {
            (k.src() ^ bit, k.dst())
        } else {
            (k.src(), k.dst() ^ bit)
        };
        for k in [k, K::from_point(s, d, k.extra_point())] {
            let want = lin.classify(&k);
            prop_assert_eq!(tm.classify(&k), want, "tuplemerge {:?}", k);
            prop_assert_eq!(hs.classify(&k), want, "hypersplit {:?}", k);
            prop_assert_eq!(fast.classify(&k), want, "fast {:?}", k);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn narrow_five_policies_keep_only_the_low_address_bits_and_equal_linear(
        rules in prop::collection::vec(five_match(), 0..40),
        drop in prop::sample::select(vec![64u8, 96]),
        seeds in prop::collection::vec(any::<u64>(), 1..200),
    ) {
        let rules: Vec<FiveMatch> = rules
            .into_iter()
            .map(|m| FiveMatch { src: narrow_addr(&m.src, drop), dst: narrow_addr(&m.dst, drop), ..m })
            .collect();
        narrow_engines_equal_linear(&policy(vec![], rules.clone()), drop, &five_keys(&rules, &seeds))?;
    }

    #[test]
    fn narrow_three_policies_keep_only_the_low_address_bits_and_equal_linear(
        rules in prop::collection::vec(three_match(), 0..40),
        drop in prop::sample::select(vec![64u8, 96]),
        seeds in prop::collection::vec(any::<u64>(), 1..200),
    ) {
        let rules: Vec<ThreeMatch> = rules
            .into_iter()
            .map(|m| ThreeMatch { src: narrow_addr(&m.src, drop), dst: narrow_addr(&m.dst, drop), ..m })
            .collect();
        narrow_engines_equal_linear(&policy(rules.clone(), vec![]), drop, &three_keys(&rules, &seeds))?;
    }
}

#[test]
fn fast_matches_linear_on_generated_sets() {
    for shape in [Shape::Acl, Shape::Fw, Shape::Ipc] {
        let p = rules::generate(shape, 3000, 11, TupleKind::Five);
        let (lin, fast) = (Linear::<FiveTuple>::new(&p), FastFive::new(&p));
        let keys = rules::five_keys(&p, 20_000, 12);
        let hits = keys.iter().filter(|k| lin.classify(k).is_some()).count();
        assert!(
            hits > keys.len() / 2,
            "{shape:?}: keys should mostly hit rules ({hits})"
        );
        for k in &keys {
            assert_eq!(fast.classify(k), lin.classify(k), "{shape:?} {k:?}");
        }
        let p = rules::generate(shape, 3000, 11, TupleKind::Three);
        let (lin, fast) = (Linear::<ThreeTuple>::new(&p), FastThree::new(&p));
        for k in &rules::three_keys(&p, 20_000, 12) {
            assert_eq!(fast.classify(k), lin.classify(k), "{shape:?} {k:?}");
        }
    }
}

#[test]
fn derived_keys_are_not_all_misses() {
    // Guards the generators above: a differential test on keys that never match proves little.
    let rules = vec![ThreeMatch {
        src: AddrMatch(vec![Prefix::new(BASES[0], 48)]),
        dst: AddrMatch::any(),
        label: LabelMatch::Range {
            lo: FlowLabel::new(0x100).unwrap(),
            hi: FlowLabel::new(0x1ff).unwrap(),
        },
    }];
    let pol = policy(rules.clone(), vec![]);
    let lin = Linear::<ThreeTuple>::new(&pol);
    let seeds: Vec<u64> = (0..1000).collect();
    let keys = three_keys(&rules, &seeds);
    let hits = keys.iter().filter(|k| lin.classify(k).is_some()).count();
    assert!(hits > 300 && hits < 1000, "{hits}");
}
