//! Test support for the compile tests: seeded policy generators, labelled frames (plain UDP/TCP
//! built with etherparse, plus hop-by-hop and fragmented variants patched by hand), pcap
//! writing/counting, and the flowpol classification of the same inputs.

use etherparse::PacketBuilder;
use flowpol::FlowLabel;
use flowpol::classify::{Classifier, Linear};
use flowpol::packet::key::{FiveTuple, ThreeTuple};
use flowpol::policy::model::{
    Action, AddrMatch, ClassDef, FiveMatch, LabelMatch, Policy, PortMatch, Prefix, Rule, ThreeMatch,
};
use flowpol::policy::syntax::Span;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

pub const DB8: u128 = 0x2001_0db8 << 96;

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

pub fn classes() -> Vec<ClassDef> {
    vec![
        ClassDef {
            name: "gold".into(),
            mark: Some(10),
        },
        ClassDef {
            name: "silver".into(),
            mark: None,
        },
        ClassDef {
            name: "bronze".into(),
            mark: Some(30),
        },
    ]
}

pub fn random_action(r: &mut ChaCha8Rng) -> Action {
    match r.random_range(0..5) {
        0 => Action::Pass,
        1 => Action::Drop,
        2 => Action::Class("gold".into()),
        3 => Action::Class("silver".into()),
        _ => Action::Class("bronze".into()),
    }
}

pub fn three_rule(
    name: &str,
    src: Vec<Prefix>,
    dst: Vec<Prefix>,
    label: LabelMatch,
    action: Action,
) -> Rule<ThreeMatch> {
    Rule {
        name: name.into(),
        matcher: ThreeMatch {
            src: AddrMatch(src),
            dst: AddrMatch(dst),
            label,
        },
        action,
        span: Span::default(),
    }
}

pub fn fl(v: u32) -> FlowLabel {
    FlowLabel::from_low_bits(v)
}

pub fn range(lo: u32, hi: u32) -> LabelMatch {
    LabelMatch::Range {
        lo: fl(lo),
        hi: fl(hi),
    }
}

/// `n` 3-tuple rules of a large, mostly disjoint policy (10k-rule load tests): per rule a
/// /48 under 2001:db8::/32, a /64 destination set, a label interval; every 97th rule is a
/// wide overlapping one and every 89th has a non-contiguous mask, to split the map groups.
pub fn big_three(n: usize, seed: u64) -> Policy {
    let mut r = rng(seed);
    let mut three = Vec::with_capacity(n);
    for i in 0..n {
        let src = vec![Prefix::new(DB8 | ((i as u128 & 0xffff) << 80), 48)];
        let dst = (0..r.random_range(1..3usize))
            .map(|_| {
                Prefix::new(
                    DB8 | (0xff << 80) | ((r.random_range(0..4096u128)) << 64),
                    64,
                )
            })
            .collect();
        let lo = r.random_range(0..0xff000u32);
        let label = if i % 97 == 96 {
            range(0, 0xfffff)
        } else if i % 89 == 88 {
            LabelMatch::Masked {
                value: 0x10001,
                mask: 0xf000f,
            }
        } else {
            range(lo, lo + r.random_range(0..0x800u32))
        };
        let src = if i % 97 == 96 {
            vec![Prefix::new(DB8, 32)]
        } else {
            src
        };
        three.push(three_rule(
            &format!("rule-{i}"),
            src,
            dst,
            label,
            random_action(&mut r),
        ));
    }
    Policy {
        classes: classes(),
        three,
        five: vec![],
        default: Action::Drop,
        default_explicit: true,
    }
}

/// `n` 5-tuple rules, mostly disjoint by destination port.
pub fn big_five(n: usize, seed: u64) -> Policy {
    let mut r = rng(seed);
    let mut five = Vec::with_capacity(n);
    for i in 0..n {
        let proto = match i % 7 {
            0 => None,
            1 => Some(58),
            2 | 3 => Some(6),
            _ => Some(17),
        };
        let (sport, dport) = if proto.is_some_and(|p| p != 58) {
            let d = (i % 60000) as u16 + 1;
            (
                if i % 3 == 0 {
                    PortMatch {
                        lo: 1024,
                        hi: 65535,
                    }
                } else {
                    PortMatch::ANY
                },
                PortMatch { lo: d, hi: d },
            )
        } else {
            (PortMatch::ANY, PortMatch::ANY)
        };
        let src = AddrMatch(vec![Prefix::new(DB8 | ((i as u128 & 0xffff) << 80), 48)]);
        let dst = AddrMatch(vec![Prefix::new(
            DB8 | (0xff << 80) | (r.random_range(0..4096u128) << 64),
            64,
        )]);
        five.push(Rule {
            name: format!("five.{i}"),
            matcher: FiveMatch {
                src,
                dst,
                proto,
                sport,
                dport,
            },
            action: random_action(&mut r),
            span: Span::default(),
        });
    }
    Policy {
        classes: classes(),
        three: vec![],
        five,
        default: Action::Pass,
        default_explicit: true,
    }
}

/// A small, heavily overlapping 3-tuple policy over a narrow packet space (BPF first-match
/// tests): nested prefixes, sets, exact/range/masked labels, an any rule.
pub fn overlapping_three(seed: u64, n: usize) -> Policy {
    let mut r = rng(seed);
    let mut three = Vec::new();
    let pfx = |r: &mut ChaCha8Rng| {
        let len = [32u8, 40, 48, 64, 128][r.random_range(0..5usize)];
        Prefix::new(
            DB8 | (r.random_range(0..4u128) << 88)
                | (r.random_range(0..4u128) << 72)
                | r.random_range(0..4u128),
            len,
        )
    };
    for i in 0..n {
        let src = (0..r.random_range(0..3usize))
            .map(|_| pfx(&mut r))
            .collect();
        let dst = (0..r.random_range(0..2usize))
            .map(|_| pfx(&mut r))
            .collect();
        let label = match r.random_range(0..5) {
            0 => LabelMatch::Any,
            1 => LabelMatch::Exact(fl(r.random_range(0..64u32))),
            2 => {
                let lo = r.random_range(0..64u32);
                range(lo, lo + r.random_range(0..32u32))
            }
            3 => {
                let mask = r.random_range(1..64u32) | 0xf0000;
                LabelMatch::Masked {
                    value: r.random_range(0..64u32) & mask,
                    mask,
                }
            }
            _ => LabelMatch::Masked {
                value: 0x10,
                mask: 0xffff0,
            },
        };
        three.push(three_rule(
            &format!("r{i}-x"),
            src,
            dst,
            label,
            random_action(&mut r),
        ));
    }
    Policy {
        classes: classes(),
        three,
        five: vec![],
        default: Action::Class("silver".into()),
        default_explicit: true,
    }
}

/// How a test packet is laid out behind its IPv6 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Udp,
    Tcp,
    /// UDP behind a hop-by-hop options header.
    HopUdp,
    /// One fragment of a UDP datagram: the first (with the UDP header) or a later one.
    FragFirst,
    FragRest,
}

/// A test packet's inputs.
#[derive(Clone, Copy, Debug)]
pub struct Pkt {
    pub src: u128,
    pub dst: u128,
    pub label: u32,
    pub shape: Shape,
    pub sport: u16,
    pub dport: u16,
}

impl Pkt {
    pub fn three(&self) -> ThreeTuple {
        ThreeTuple {
            src: self.src,
            dst: self.dst,
            label: fl(self.label),
        }
    }

    /// The 5-tuple flowpol reads (behind extension headers), `None` for a later fragment.
    pub fn five(&self) -> Option<FiveTuple> {
        let proto = match self.shape {
            Shape::Tcp => 6,
            Shape::FragRest => return None,
            _ => 17,
        };
        Some(FiveTuple {
            src: self.src,
            dst: self.dst,
            proto,
            sport: self.sport,
            dport: self.dport,
        })
    }

    /// The Ethernet frame.
    pub fn frame(&self, smac: [u8; 6], dmac: [u8; 6]) -> Vec<u8> {
        let payload = [0x5au8; 24];
        let b = PacketBuilder::ethernet2(smac, dmac).ipv6(
            self.src.to_be_bytes(),
            self.dst.to_be_bytes(),
            64,
        );
        let mut f = Vec::new();
        match self.shape {
            Shape::Tcp => b
                .tcp(self.sport, self.dport, 1, 1024)
                .write(&mut f, &payload)
                .unwrap(),
            _ => b
                .udp(self.sport, self.dport)
                .write(&mut f, &payload)
                .unwrap(),
        }
        // The flow label: the low 20 bits of the IPv6 header's first word (covered by no checksum).
        let w = u32::from_be_bytes(f[14..18].try_into().unwrap());
        f[14..18].copy_from_slice(&((w & !0xfffff) | (self.label & 0xfffff)).to_be_bytes());
        let set_plen = |f: &mut Vec<u8>| {
            let plen = (f.len() - 54) as u16;
            f[18..20].copy_from_slice(&plen.to_be_bytes());
        };
        match self.shape {
            Shape::Udp | Shape::Tcp => {}
            Shape::HopUdp => {
                f[20] = 0; // next header: hop-by-hop
                f.splice(54..54, [17u8, 0, 1, 4, 0, 0, 0, 0]); // UDP, len 0, PadN(4)
                set_plen(&mut f);
            }
            Shape::FragFirst | Shape::FragRest => {
                let l4 = f.split_off(54);
                f[20] = 44;
                let id = 0x1234_5678u32.to_be_bytes();
                if self.shape == Shape::FragFirst {
                    f.extend_from_slice(&[17, 0, 0, 1]); // offset 0, more fragments
                    f.extend_from_slice(&id);
                    f.extend_from_slice(&l4[..16]);
                } else {
                    f.extend_from_slice(&[17, 0, 0, 2 << 3]); // offset 16 bytes, last
                    f.extend_from_slice(&id);
                    f.extend_from_slice(&l4[16..]);
                }
                set_plen(&mut f);
            }
        }
        f
    }
}

/// VLAN tag stacks (tag protocol IDs, outermost first) for test frames: none, 802.1Q, QinQ
/// (802.1ad outer), the pre-standard 0x9100 outer tag, four tags (the most flowpol reads) and
/// five (more: flowpol sees no IPv6 packet in such a frame).
pub const TAG_STACKS: [&[u16]; 6] = [
    &[],
    &[0x8100],
    &[0x88a8, 0x8100],
    &[0x9100, 0x8100],
    &[0x88a8, 0x8100, 0x8100, 0x8100],
    &[0x8100; 5],
];

/// `frame` (Ethernet) with VLAN tags of protocol IDs `tpids` inserted after its MAC addresses,
/// VLAN ids 100, 101, ... from the outermost in.
pub fn tagged(frame: &[u8], tpids: &[u16]) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    for (i, t) in tpids.iter().enumerate() {
        f.extend_from_slice(&t.to_be_bytes());
        f.extend_from_slice(&(100 + i as u16).to_be_bytes());
    }
    f.extend_from_slice(&frame[12..]);
    f
}

/// Packets drawn around a policy's prefixes and labels (and some random ones), every shape.
pub fn packets_near(policy: &Policy, n: usize, seed: u64, shapes: &[Shape]) -> Vec<Pkt> {
    let mut r = rng(seed);
    let prefixes: Vec<Prefix> = policy
        .three
        .iter()
        .flat_map(|x| {
            x.matcher
                .src
                .0
                .iter()
                .chain(x.matcher.dst.0.iter())
                .copied()
        })
        .chain(policy.five.iter().flat_map(|x| {
            x.matcher
                .src
                .0
                .iter()
                .chain(x.matcher.dst.0.iter())
                .copied()
        }))
        .collect();
    let addr = |r: &mut ChaCha8Rng| -> u128 {
        if prefixes.is_empty() || r.random_range(0..5) == 0 {
            DB8 | (r.random_range(0..4u128) << 88)
                | (r.random_range(0..4u128) << 72)
                | r.random_range(0..4u128)
        } else {
            let p = prefixes[r.random_range(0..prefixes.len())];
            let host = if p.len == 128 {
                0
            } else {
                r.random::<u128>() & !p.mask() & 0x3
            };
            p.addr | host
        }
    };
    let mut ports: Vec<u16> = vec![53, 443, 1024, 5004, 40000];
    ports.extend(
        policy
            .five
            .iter()
            .map(|x| x.matcher.dport.lo)
            .filter(|&p| p > 0)
            .take(20),
    );
    let inside = |r: &mut ChaCha8Rng, m: &AddrMatch| -> Option<u128> {
        if m.0.is_empty() {
            return None;
        }
        let p = m.0[r.random_range(0..m.0.len())];
        Some(
            p.addr
                | if p.len == 128 {
                    0
                } else {
                    r.random::<u128>() & !p.mask() & 0x3
                },
        )
    };
    (0..n)
        .map(|_| {
            // Half the packets are made to match a chosen rule (later rules may still be shadowed).
            if r.random_range(0..2) == 0 && !policy.three.is_empty() {
                let m = &policy.three[r.random_range(0..policy.three.len())].matcher;
                let label = match m.label {
                    LabelMatch::Any => r.random_range(0..0x100000u32),
                    LabelMatch::Exact(v) => v.value(),
                    LabelMatch::Range { lo, hi } => r.random_range(lo.value()..=hi.value()),
                    LabelMatch::Masked { value, mask } => {
                        value | (r.random_range(0..0x100000u32) & !mask)
                    }
                };
                return Pkt {
                    src: inside(&mut r, &m.src).unwrap_or_else(|| addr(&mut r)),
                    dst: inside(&mut r, &m.dst).unwrap_or_else(|| addr(&mut r)),
                    label,
                    shape: shapes[r.random_range(0..shapes.len())],
                    sport: ports[r.random_range(0..ports.len())],
                    dport: ports[r.random_range(0..ports.len())],
                };
            }
            if r.random_range(0..2) == 0 && !policy.five.is_empty() {
                let m = &policy.five[r.random_range(0..policy.five.len())].matcher;
                let shape = match m.proto {
                    Some(6) if shapes.contains(&Shape::Tcp) => Shape::Tcp,
                    _ => shapes[r.random_range(0..shapes.len())],
                };
                return Pkt {
                    src: inside(&mut r, &m.src).unwrap_or_else(|| addr(&mut r)),
                    dst: inside(&mut r, &m.dst).unwrap_or_else(|| addr(&mut r)),
                    label: r.random_range(0..0x100000u32),
                    shape,
                    sport: r.random_range(m.sport.lo..=m.sport.hi),
                    dport: r.random_range(m.dport.lo..=m.dport.hi),
                };
            }
            let label = match r.random_range(0..4) {
                0 => r.random_range(0..0x100000u32),
                1 => 0x10000 | r.random_range(0..0x40u32),
                _ => r.random_range(0..0x60u32),
            };
            Pkt {
                src: addr(&mut r),
                dst: addr(&mut r),
                label,
                shape: shapes[r.random_range(0..shapes.len())],
                sport: ports[r.random_range(0..ports.len())],
                dport: ports[r.random_range(0..ports.len())],
            }
        })
        .collect()
}

/// Writes an Ethernet pcap.
pub fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let f = std::fs::File::create(path).unwrap();
    let mut w = pcap_file::pcap::PcapWriter::new(f).unwrap();
    for (i, fr) in frames.iter().enumerate() {
        let p = pcap_file::pcap::PcapPacket::new(
            std::time::Duration::from_millis(i as u64),
            fr.len() as u32,
            fr,
        );
        w.write_packet(&p).unwrap();
    }
}

/// The number of packets in a pcap file.
pub fn count_pcap(path: &Path) -> usize {
    let f = std::fs::File::open(path).unwrap();
    let mut r = pcap_file::pcap::PcapReader::new(f).unwrap();
    let mut n = 0;
    while let Some(p) = r.next_packet() {
        p.unwrap();
        n += 1;
    }
    n
}

/// Per-rule counts (index `rules.len()` is the default) of the linear 3-tuple engine.
pub fn expected_three(policy: &Policy, pkts: &[Pkt]) -> Vec<u64> {
    let lin = Linear::<ThreeTuple>::new(policy);
    let mut c = vec![0u64; policy.three.len() + 1];
    for p in pkts {
        let i = lin
            .classify(&p.three())
            .map_or(policy.three.len(), |r| r.index());
        c[i] += 1;
    }
    c
}

/// Per-rule counts of the linear 5-tuple engine; packets without a 5-tuple are skipped.
pub fn expected_five(policy: &Policy, pkts: &[Pkt]) -> Vec<u64> {
    let lin = Linear::<FiveTuple>::new(policy);
    let mut c = vec![0u64; policy.five.len() + 1];
    for p in pkts.iter().filter_map(|p| p.five()) {
        let i = lin.classify(&p).map_or(policy.five.len(), |r| r.index());
        c[i] += 1;
    }
    c
}
