//! Generated IPv6-native rule sets (`flowpol gen rules`) and keys drawn from a policy's rules,
//! for the differential tests and the benchmarks.
//!
//! Addresses come from one hierarchy (a few hundred /32 organisations, each with /48 sites,
//! /64 subnets and hosts), so prefixes nest and overlap the way real policies do. Each shape
//! draws prefix lengths from its own distribution, modelled on the ClassBench seeds but with the
//! lengths that IPv6 addressing plans use (/0, /32, /48, /56, /64, /128):
//! - `acl`: specific destinations (/64, /128), mixed sources, mostly TCP with exact ports;
//! - `fw`: many wildcards, port ranges (`1024-65535`), protocol often any;
//! - `ipc`: mostly host-to-host (/128) with exact ports, a share of any.
//!
//! For the 3-tuple the destination port is turned into a flow label exactly as `import
//! classbench --as three` does (exact, range or any), and one rule in ten uses a value/mask label.

use crate::FlowLabel;
use crate::packet::key::{FiveTuple, ThreeTuple};
use crate::policy::model::{
    Action, AddrMatch, FiveMatch, LabelMatch, Policy, PortMatch, Prefix, Rule, ThreeMatch,
};
use crate::policy::syntax::{Span, TupleKind};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The rule-set shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    Acl,
    Fw,
    Ipc,
}

struct Dist {
    src: &'static [(u8, u32)],
    dst: &'static [(u8, u32)],
    /// Weights of tcp, udp, any protocol.
    proto: [u32; 3],
    /// Weights of exact, range, any destination port.
    dport: [u32; 3],
    /// Weights of exact, range, any source port.
    sport: [u32; 3],
}

fn dist(shape: Shape) -> Dist {
    match shape {
        Shape::Acl => Dist {
            src: &[(0, 5), (32, 5), (48, 20), (56, 10), (64, 35), (128, 25)],
            dst: &[(48, 10), (64, 40), (128, 50)],
            proto: [80, 10, 10],
            dport: [80, 10, 10],
            sport: [3, 2, 95],
        },
        Shape::Fw => Dist {
            src: &[(0, 30), (32, 10), (48, 25), (64, 25), (128, 10)],
            dst: &[(0, 20), (48, 20), (64, 30), (128, 30)],
            proto: [50, 35, 15],
            dport: [55, 20, 25],
            sport: [10, 10, 80],
        },
        Shape::Ipc => Dist {
            src: &[(0, 15), (48, 10), (64, 25), (128, 50)],
            dst: &[(0, 15), (48, 10), (64, 25), (128, 50)],
            proto: [40, 40, 20],
            dport: [60, 10, 30],
            sport: [30, 10, 60],
        },
    }
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.random_range(0..total);
    for &(v, w) in items {
        if x < w {
            return v;
        }
        x -= w;
    }
    items[items.len() - 1].0
}

fn pick3(rng: &mut ChaCha8Rng, w: [u32; 3]) -> usize {
    pick(rng, &[(0usize, w[0]), (1, w[1]), (2, w[2])])
}

const WELL_KNOWN: [u16; 16] = [
    80, 443, 53, 22, 25, 123, 110, 143, 993, 3306, 5432, 8080, 8443, 5004, 1194, 161,
];

/// The address hierarchy every prefix is drawn from.
struct Plan {
    orgs: Vec<u128>,
}

impl Plan {
    fn new(rng: &mut ChaCha8Rng, count: usize) -> Self {
        let n = (count / 50).clamp(8, 2000);
        // /32s inside 2000::/4.
        let orgs = (0..n)
            .map(|_| (0x2000_0000u128 | rng.random_range(0..0x0fff_ffffu128)) << 96)
            .collect();
        Plan { orgs }
    }

    /// A prefix of length `len`: a /32 organisation, one of 64 /48 sites, 4096 /64
    /// subnets (16 per /56), 4095 hosts.
    fn prefix(&self, rng: &mut ChaCha8Rng, len: u8) -> Prefix {
        let org = self.orgs[rng.random_range(0..self.orgs.len())];
        let site = u128::from(rng.random_range(0..64u16)) << 80;
        let subnet = u128::from(rng.random_range(0..4096u16)) << 64;
        let host = u128::from(rng.random_range(1..4096u16));
        Prefix::new(org | site | subnet | host, len)
    }
}

fn port_match(rng: &mut ChaCha8Rng, kind: usize) -> PortMatch {
    match kind {
        0 => {
            let p = if rng.random_bool(0.6) {
                WELL_KNOWN[rng.random_range(0..WELL_KNOWN.len())]
            } else {
                rng.random_range(1..u16::MAX)
            };
            PortMatch { lo: p, hi: p }
        }
        1 => match rng.random_range(0..3) {
            0 => PortMatch {
                lo: 1024,
                hi: u16::MAX,
            },
            1 => PortMatch { lo: 0, hi: 1023 },
            _ => {
                let lo = rng.random_range(1024..60000u16);
                PortMatch {
                    lo,
                    hi: lo + rng.random_range(1..2048u16),
                }
            }
        },
        _ => PortMatch::ANY,
    }
}

fn label_of_ports(d: PortMatch) -> LabelMatch {
    super::classbench::dport_label(d.lo, d.hi)
}

/// Generates `count` rules of a shape into the `three` or `five` block of a policy.
pub fn generate(shape: Shape, count: usize, seed: u64, tuple: TupleKind) -> Policy {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let d = dist(shape);
    let plan = Plan::new(&mut rng, count);
    let mut p = Policy {
        classes: Vec::new(),
        three: Vec::new(),
        five: Vec::new(),
        default: Action::Pass,
        default_explicit: true,
    };
    for i in 0..count {
        let addr = |rng: &mut ChaCha8Rng, lens: &[(u8, u32)]| {
            let len = pick(rng, lens);
            if len == 0 {
                AddrMatch::any()
            } else {
                AddrMatch(vec![plan.prefix(rng, len)])
            }
        };
        let src = addr(&mut rng, d.src);
        let mut dst = addr(&mut rng, d.dst);
        while src.is_any() && dst.is_any() {
            // Real rule sets keep catch-alls for the end; a wildcard pair here would shadow
            // most of the rules below it.
            dst = addr(&mut rng, d.dst);
        }
        let proto = match pick3(&mut rng, d.proto) {
            0 => Some(6),
            1 => Some(17),
            _ => None,
        };
        let (sport, dport) = if proto.is_some() {
            let s = pick3(&mut rng, d.sport);
            let dk = pick3(&mut rng, d.dport);
            (port_match(&mut rng, s), port_match(&mut rng, dk))
        } else {
            (PortMatch::ANY, PortMatch::ANY)
        };
        let action = if rng.random_bool(0.7) {
            Action::Pass
        } else {
            Action::Drop
        };
        let name = format!("g{}", i + 1);
        match tuple {
            TupleKind::Five => p.five.push(Rule {
                name,
                matcher: FiveMatch {
                    src,
                    dst,
                    proto,
                    sport,
                    dport,
                },
                action,
                span: Span::default(),
            }),
            TupleKind::Three => {
                let label = if rng.random_bool(0.1) {
                    let mask = 0xf0000;
                    LabelMatch::Masked {
                        value: rng.random_range(0..16u32) << 16,
                        mask,
                    }
                } else {
                    label_of_ports(dport)
                };
                p.three.push(Rule {
                    name,
                    matcher: ThreeMatch { src, dst, label },
                    action,
                    span: Span::default(),
                })
            }
        }
    }
    p
}

fn in_addr(rng: &mut ChaCha8Rng, m: &AddrMatch) -> u128 {
    let r: u128 = rng.random();
    if m.0.is_empty() {
        return r;
    }
    let p = m.0[rng.random_range(0..m.0.len())];
    p.addr | (r & !p.mask())
}

fn in_ports(rng: &mut ChaCha8Rng, m: PortMatch) -> u16 {
    if m.lo > m.hi {
        m.lo
    } else {
        rng.random_range(m.lo..=m.hi)
    }
}

fn in_label(rng: &mut ChaCha8Rng, m: LabelMatch) -> FlowLabel {
    let r = rng.random_range(0..=FlowLabel::MASK);
    FlowLabel::from_low_bits(match m {
        LabelMatch::Any => r,
        LabelMatch::Exact(v) => v.value(),
        LabelMatch::Masked { value, mask } => value | (r & !mask),
        LabelMatch::Range { lo, hi } if lo <= hi => rng.random_range(lo.value()..=hi.value()),
        LabelMatch::Range { lo, .. } => lo.value(),
    })
}

/// `n` 3-tuple keys, each inside a random rule of the `three` block (one in twenty is random,
/// to exercise the default), reproducible from `seed`.
pub fn three_keys(policy: &Policy, n: usize, seed: u64) -> Vec<ThreeTuple> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            if policy.three.is_empty() || rng.random_bool(0.05) {
                let label = FlowLabel::from_low_bits(rng.random());
                return ThreeTuple {
                    src: rng.random(),
                    dst: rng.random(),
                    label,
                };
            }
            let m = &policy.three[rng.random_range(0..policy.three.len())].matcher;
            ThreeTuple {
                src: in_addr(&mut rng, &m.src),
                dst: in_addr(&mut rng, &m.dst),
                label: in_label(&mut rng, m.label),
            }
        })
        .collect()
}

/// `n` 5-tuple keys, each inside a random rule of the `five` block (one in twenty is random).
pub fn five_keys(policy: &Policy, n: usize, seed: u64) -> Vec<FiveTuple> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            if policy.five.is_empty() || rng.random_bool(0.05) {
                return FiveTuple {
                    src: rng.random(),
                    dst: rng.random(),
                    proto: [6, 17, 58][rng.random_range(0..3)],
                    sport: rng.random(),
                    dport: rng.random(),
                };
            }
            let m = &policy.five[rng.random_range(0..policy.five.len())].matcher;
            FiveTuple {
                src: in_addr(&mut rng, &m.src),
                dst: in_addr(&mut rng, &m.dst),
                proto: m.proto.unwrap_or([6, 17, 58][rng.random_range(0..3)]),
                sport: in_ports(&mut rng, m.sport),
                dport: in_ports(&mut rng, m.dport),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Key;

    #[test]
    fn generates_requested_count_reproducibly() {
        for shape in [Shape::Acl, Shape::Fw, Shape::Ipc] {
            let a = generate(shape, 500, 7, TupleKind::Five);
            assert_eq!(a.five.len(), 500);
            assert!(a.three.is_empty());
            assert_eq!(a, generate(shape, 500, 7, TupleKind::Five));
            assert_ne!(a, generate(shape, 500, 8, TupleKind::Five));
            let t = generate(shape, 300, 7, TupleKind::Three);
            assert_eq!(t.three.len(), 300);
        }
    }

    #[test]
    fn shapes_differ_in_wildcards() {
        let any_src = |s| {
            generate(s, 2000, 1, TupleKind::Five)
                .five
                .iter()
                .filter(|r| r.matcher.src.is_any())
                .count()
        };
        assert!(any_src(Shape::Fw) > 3 * any_src(Shape::Acl));
    }

    #[test]
    fn keys_land_in_their_rules() {
        let p = generate(Shape::Fw, 200, 3, TupleKind::Five);
        let keys = five_keys(&p, 1000, 4);
        let hits = keys
            .iter()
            .filter(|k| p.five.iter().any(|r| k.matched_by(&r.matcher)))
            .count();
        assert!(hits >= 900, "{hits}");
        let p = generate(Shape::Acl, 200, 3, TupleKind::Three);
        let keys = three_keys(&p, 1000, 4);
        let hits = keys
            .iter()
            .filter(|k| p.three.iter().any(|r| k.matched_by(&r.matcher)))
            .count();
        assert!(hits >= 900, "{hits}");
    }
}
