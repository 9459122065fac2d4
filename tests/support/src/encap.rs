//! Frames for every encapsulation, built byte by byte, and what flowpol should key in them
//! (used by `packet_encap.rs` and `packet_encap_live.rs`).

use flowpol::packet::tunnel::Kind;
use flowpol::packet::{LinkType, NonIpv6};

// ---- builders -----------------------------------------------------------------------------

/// IPv6 + UDP: src 2001:db8:TAG::1, dst 2001:db8:TAG::2, flow label `label`, ports
/// 1000+TAG -> 2000+TAG, 4 bytes of payload.
pub fn v6_udp(tag: u16, label: u32) -> Vec<u8> {
    let mut udp = Vec::new();
    udp.extend_from_slice(&(1000 + tag).to_be_bytes());
    udp.extend_from_slice(&(2000 + tag).to_be_bytes());
    udp.extend_from_slice(&12u16.to_be_bytes());
    udp.extend_from_slice(&[0, 0, b'a', b'b', b'c', b'd']);
    v6(tag, label, 17, &udp)
}

/// An IPv6 packet with `next` header and `payload`, addresses by `tag`.
pub fn v6(tag: u16, label: u32, next: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = (0x6000_0000 | (label & 0xfffff)).to_be_bytes().to_vec();
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next, 64]);
    for last in [1u8, 2] {
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        p.extend_from_slice(&tag.to_be_bytes());
        p.extend_from_slice(&[0; 9]);
        p.push(last);
    }
    p.extend_from_slice(payload);
    p
}

/// An IPv4 packet 192.0.2.1 -> 192.0.2.2 with `proto` and `payload` (header checksum set).
pub fn v4(proto: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2]);
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    h[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    h.extend_from_slice(payload);
    h
}

pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

pub fn eth(ty: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02];
    f.extend_from_slice(&ty.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// GRE with the checksum, key and sequence words as asked.
pub fn gre(csum: bool, key: bool, seq: bool, proto: u16, payload: &[u8]) -> Vec<u8> {
    let flags = (u16::from(csum) << 15) | (u16::from(key) << 13) | (u16::from(seq) << 12);
    let mut g = flags.to_be_bytes().to_vec();
    g.extend_from_slice(&proto.to_be_bytes());
    if csum {
        g.extend_from_slice(&[0, 0, 0, 0]);
    }
    if key {
        g.extend_from_slice(&[0, 0, 0, 42]);
    }
    if seq {
        g.extend_from_slice(&[0, 0, 0, 7]);
    }
    g.extend_from_slice(payload);
    g
}

pub fn vxlan(inner_eth: &[u8]) -> Vec<u8> {
    let mut v = vec![0x08, 0, 0, 0, 0, 0, 0x64, 0];
    v.extend_from_slice(inner_eth);
    udp(49152, 4789, &v)
}

pub fn geneve(opt_words: u8, proto: u16, payload: &[u8]) -> Vec<u8> {
    let mut g = vec![opt_words & 0x3f, 0];
    g.extend_from_slice(&proto.to_be_bytes());
    g.extend_from_slice(&[0, 0, 0x64, 0]);
    for i in 0..opt_words {
        // Option class 0x0103, type, length 0 words: 4 bytes each.
        g.extend_from_slice(&[0x01, 0x03, i, 0]);
    }
    g.extend_from_slice(payload);
    udp(50000, 6081, &g)
}

pub fn mpls(labels: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    for (i, l) in labels.iter().enumerate() {
        let s = u32::from(i + 1 == labels.len());
        m.extend_from_slice(&((l << 12) | (s << 8) | 64).to_be_bytes());
    }
    m.extend_from_slice(payload);
    m
}

pub fn pppoe(ppp_proto: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x11, 0x00, 0x12, 0x34];
    p.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    p.extend_from_slice(&ppp_proto.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// One NFLOG attribute, little-endian, padded to 4 bytes.
pub fn tlv(ty: u16, value: &[u8]) -> Vec<u8> {
    let mut t = ((4 + value.len()) as u16).to_le_bytes().to_vec();
    t.extend_from_slice(&ty.to_le_bytes());
    t.extend_from_slice(value);
    while !t.len().is_multiple_of(4) {
        t.push(0);
    }
    t
}

// ---- the cases ----------------------------------------------------------------------------

/// What flowpol should key with each mode: the tag of the IPv6 packet, or the non-IPv6 kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    Tag(u16),
    Not(NonIpv6),
}
pub use Want::{Not, Tag};

pub struct Case {
    pub name: &'static str,
    pub frame: Vec<u8>,
    pub outer: Want,
    pub inner: Want,
    /// The tunnel kind counted with `--tunnel inner`.
    pub kind: Option<Kind>,
}

pub fn case(
    name: &'static str,
    frame: Vec<u8>,
    outer: Want,
    inner: Want,
    kind: Option<Kind>,
) -> Case {
    Case {
        name,
        frame,
        outer,
        inner,
        kind,
    }
}

/// Ethernet frames, one per encapsulation; labels differ by layer so a mix-up shows.
pub fn ethernet_cases() -> Vec<Case> {
    let inner = |tag| v6_udp(tag, 0x10000 + u32::from(tag));
    let inner_eth = |tag| eth(0x86dd, &inner(tag));
    let outer6 = |next, payload: &[u8]| v6(99, 0xabcde, next, payload);
    let s4 = Some(Kind::SixInFour);
    vec![
        case("plain", inner_eth(1), Tag(1), Tag(1), None),
        case(
            "mpls one label",
            eth(0x8847, &mpls(&[100], &inner(2))),
            Tag(2),
            Tag(2),
            None,
        ),
        case(
            "mpls three labels",
            eth(0x8847, &mpls(&[100, 200, 300], &inner(3))),
            Tag(3),
            Tag(3),
            None,
        ),
        case(
            "mpls multicast",
            eth(0x8848, &mpls(&[16], &inner(4))),
            Tag(4),
            Tag(4),
            None,
        ),
        case(
            "mpls ipv4",
            eth(0x8847, &mpls(&[100], &v4(17, &udp(1, 2, b"x")))),
            Not(NonIpv6::Ipv4),
            Not(NonIpv6::Ipv4),
            None,
        ),
        case(
            "pppoe session",
            eth(0x8864, &pppoe(0x0057, &inner(5))),
            Tag(5),
            Tag(5),
            None,
        ),
        case(
            "vlan then pppoe",
            cat(&[
                &eth(0x8100, &[0, 10])[..],
                &0x8864u16.to_be_bytes(),
                &pppoe(0x0057, &inner(6)),
            ]),
            Tag(6),
            Tag(6),
            None,
        ),
        case(
            "fabricpath",
            cat(&[&eth(0x8903, &[0x00, 0x41])[..], &inner_eth(7)]),
            Tag(7),
            Tag(7),
            None,
        ),
        case(
            "6in4",
            eth(0x0800, &v4(41, &inner(10))),
            Not(NonIpv6::Ipv4CarryingIpv6),
            Tag(10),
            s4,
        ),
        case(
            "6in6",
            eth(0x86dd, &outer6(41, &inner(11))),
            Tag(99),
            Tag(11),
            Some(Kind::SixInSix),
        ),
        case(
            "gre over ipv4",
            eth(
                0x0800,
                &v4(47, &gre(false, false, false, 0x86dd, &inner(12))),
            ),
            Not(NonIpv6::Ipv4CarryingIpv6),
            Tag(12),
            Some(Kind::Gre),
        ),
        case(
            "gre with checksum, key and sequence",
            eth(0x0800, &v4(47, &gre(true, true, true, 0x86dd, &inner(13)))),
            Not(NonIpv6::Ipv4CarryingIpv6),
            Tag(13),
            Some(Kind::Gre),
        ),
        case(
            "gre over ipv6 with key",
            eth(
                0x86dd,
                &outer6(47, &gre(false, true, false, 0x86dd, &inner(14))),
            ),
            Tag(99),
            Tag(14),
            Some(Kind::Gre),
        ),
        case(
            "gre bridging ethernet",
            eth(
                0x0800,
                &v4(47, &gre(false, true, false, 0x6558, &inner_eth(15))),
            ),
            Not(NonIpv6::Ipv4CarryingIpv6),
            Tag(15),
            Some(Kind::Gre),
        ),
        case(
            "erspan type ii",
            eth(
                0x0800,
                &v4(
                    47,
                    &gre(
                        false,
                        false,
                        true,
                        0x88be,
                        &cat(&[&[0x10, 0x01, 0x00, 0x05, 0, 0, 0, 0][..], &inner_eth(16)]),
                    ),
                ),
            ),
            Not(NonIpv6::Ipv4CarryingIpv6),
            Tag(16),
            Some(Kind::Erspan),
        ),
        case(
            "erspan type iii",
            eth(
                0x0800,
                &v4(
                    47,
                    &gre(
                        false,
                        false,
                        true,
                        0x22eb,
                        &cat(&[
                            &[0x20, 0x00, 0x00, 0x05, 0, 0, 0, 1, 0, 0, 0, 0][..],
                            &inner_eth(27),
                        ]),
                    ),
                ),
            ),
            Not(NonIpv6::Ipv4CarryingIpv6),
            Tag(27),
            Some(Kind::Erspan),
        ),
        case(
            "erspan type iii with platform subheader",
            eth(
                0x0800,
                &v4(
                    47,
                    &gre(
                        false,
                        false,
                        true,
                        0x22eb,
                        &cat(&[
                            &[0x20, 0x00, 0x00, 0x05, 0, 0, 0, 1, 0, 0, 0, 1][..],
                            &[0x08, 0, 0, 0, 0, 0, 0, 0],
                            &inner_eth(28),
                        ]),
                    ),
                ),
            ),
            Not(NonIpv6::Ipv4CarryingIpv6),
            Tag(28),
            Some(Kind::Erspan),
        ),
        case(
            "vxlan over ipv4",
            eth(0x0800, &v4(17, &vxlan(&inner_eth(17)))),
            Not(NonIpv6::Ipv4CarryingIpv6),
            Tag(17),
            Some(Kind::Vxlan),
        ),
        case(
            "vxlan over ipv6",
            eth(0x86dd, &outer6(17, &vxlan(&inner_eth(18)))),
            Tag(99),
            Tag(18),
            Some(Kind::Vxlan),
        ),
        case(
            "geneve ethernet with options",
            eth(0x0800, &v4(17, &geneve(2, 0x6558, &inner_eth(19)))),
            Not(NonIpv6::Ipv4CarryingIpv6),
            Tag(19),
            Some(Kind::Geneve),
        ),
        case(
            "geneve ipv6",
            eth(0x0800, &v4(17, &geneve(0, 0x86dd, &inner(20)))),
            Not(NonIpv6::Ipv4CarryingIpv6),
            Tag(20),
            Some(Kind::Geneve),
        ),
        case(
            "teredo with origin indication",
            eth(
                0x0800,
                &v4(
                    17,
                    &udp(
                        3544,
                        40000,
                        &cat(&[&[0, 0, 0xbe, 0xef, 1, 2, 3, 4][..], &inner(21)]),
                    ),
                ),
            ),
            Not(NonIpv6::Ipv4CarryingIpv6),
            Tag(21),
            Some(Kind::Teredo),
        ),
        case(
            "gtp-u",
            eth(
                0x0800,
                &v4(
                    17,
                    &udp(
                        2152,
                        2152,
                        &cat(&[
                            &[0x30, 0xff][..],
                            &(inner(22).len() as u16).to_be_bytes(),
                            &[0, 0, 0, 1],
                            &inner(22),
                        ]),
                    ),
                ),
            ),
            Not(NonIpv6::Ipv4CarryingIpv6),
            Tag(22),
            Some(Kind::GtpU),
        ),
        case(
            "l2tp with length and sequence",
            eth(
                0x0800,
                &v4(
                    17,
                    &udp(
                        1701,
                        1701,
                        &cat(&[
                            &[0x48, 0x02][..],
                            &((12 + 4 + inner(25).len()) as u16).to_be_bytes(),
                            &[0, 1, 0, 2, 0, 0, 0, 0],
                            &[0xff, 0x03, 0x00, 0x57],
                            &inner(25),
                        ]),
                    ),
                ),
            ),
            Not(NonIpv6::Ipv4CarryingIpv6),
            Tag(25),
            Some(Kind::L2tp),
        ),
        case(
            "ayiya",
            eth(
                0x0800,
                &v4(
                    17,
                    &udp(
                        5072,
                        40001,
                        &cat(&[
                            // id 2^4 = 16 bytes, signature 5 words (SHA-1), opcode forward.
                            &[0x41, 0x52, 0x11, 41, 0x5f, 0, 0, 0][..],
                            &[0xaa; 16],
                            &[0xbb; 20],
                            &inner(26),
                        ]),
                    ),
                ),
            ),
            Not(NonIpv6::Ipv4CarryingIpv6),
            Tag(26),
            Some(Kind::Ayiya),
        ),
        case(
            "pim register",
            eth(
                0x86dd,
                &outer6(103, &cat(&[&[0x21, 0, 0, 0, 0, 0, 0, 0][..], &inner(24)])),
            ),
            Tag(99),
            Tag(24),
            Some(Kind::PimRegister),
        ),
        case(
            "6in4 in vxlan (nested)",
            eth(0x0800, &v4(17, &vxlan(&eth(0x0800, &v4(41, &inner(23)))))),
            Not(NonIpv6::Ipv4CarryingIpv6),
            Tag(23),
            Some(Kind::Vxlan),
        ),
        case(
            "plain ipv4 udp",
            eth(0x0800, &v4(17, &udp(53, 4000, b"dns"))),
            Not(NonIpv6::Ipv4),
            Not(NonIpv6::Ipv4),
            None,
        ),
        case(
            "vxlan carrying ipv4 only",
            eth(
                0x0800,
                &v4(17, &vxlan(&eth(0x0800, &v4(17, &udp(1, 2, b"x"))))),
            ),
            Not(NonIpv6::Ipv4),
            Not(NonIpv6::Ipv4),
            None,
        ),
    ]
}

/// Frames of the other link types, all carrying `v6_udp(tag)`.
pub fn link_cases() -> Vec<(LinkType, Case)> {
    let inner = |tag| v6_udp(tag, 0x20000 + u32::from(tag));
    let same = |name, link, frame, tag| (link, case(name, frame, Tag(tag), Tag(tag), None));
    let nflog = |tag, family: u8| {
        cat(&[
            &[family, 0, 0, 5][..],
            &tlv(1, &[0x86, 0xdd, 1, 0]),
            &tlv(10, b"flowpol\0"),
            &tlv(9, &inner(tag)),
        ])
    };
    vec![
        same(
            "ppp with address and control",
            LinkType::PPP,
            cat(&[&[0xff, 0x03, 0x00, 0x57][..], &inner(30)]),
            30,
        ),
        same(
            "ppp hdlc",
            LinkType::PPP_HDLC,
            cat(&[&[0xff, 0x03, 0x00, 0x57][..], &inner(31)]),
            31,
        ),
        same(
            "ppp with direction",
            LinkType::PPP_WITH_DIR,
            cat(&[&[0x01, 0xff, 0x03, 0x00, 0x57][..], &inner(32)]),
            32,
        ),
        same(
            "pppoe link type",
            LinkType::PPP_ETHER,
            pppoe(0x0057, &inner(33)),
            33,
        ),
        same(
            "cisco hdlc",
            LinkType::C_HDLC,
            cat(&[&[0x0f, 0x00, 0x86, 0xdd][..], &inner(34)]),
            34,
        ),
        same(
            "frame relay nlpid",
            LinkType::FRELAY,
            cat(&[&[0x18, 0x41, 0x03, 0x8e][..], &inner(35)]),
            35,
        ),
        same(
            "frame relay snap",
            LinkType::FRELAY,
            cat(&[
                &[0x18, 0x41, 0x03, 0x00, 0x80, 0, 0, 0, 0x86, 0xdd][..],
                &inner(36),
            ]),
            36,
        ),
        same("nflog", LinkType::NFLOG, nflog(37, 10), 37),
    ]
}
