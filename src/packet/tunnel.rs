//! Tunnels: from an outer IP packet to the innermost IPv6 packet it carries.
//!
//! `--tunnel outer` (the default, as tshark's first occurrence) keys a packet on its outermost
//! IPv6 header; an IPv4 packet that carries IPv6 is then counted as
//! [`NonIpv6::Ipv4CarryingIpv6`]. `--tunnel inner` keys it on the innermost IPv6 header, and the
//! frame is counted under the [`Kind`] of its outermost tunnel.
//!
//! Tunnels stepped into, from an IPv4 or IPv6 packet (IPv6 extension headers walked first):
//!
//! ```text
//! protocol 41          6in4 (IPv4) / 6in6 (IPv6): an IPv6 packet
//! protocol 4           IPv4 in IP: an IPv4 packet (walked further)
//! protocol 47          GRE (RFC 2784/2890): flags+version(2) protocol(2) [checksum+reserved(4)] [key(4)] [seq(4)]
//!                      protocol 0x86dd IPv6, 0x0800 IPv4, 0x6558 Ethernet, 0x8847 MPLS,
//!                      0x88be ERSPAN I/II (8-byte header when S is set), 0x22eb ERSPAN III (12 [+8])
//! UDP port 4789        VXLAN (RFC 7348): flags(1) reserved(3) VNI(3) reserved(1), then Ethernet
//! UDP port 6081        Geneve (RFC 8926): ver+opt len(1) flags(1) protocol(2) VNI(3) reserved(1) options, then protocol
//! UDP port 3544        Teredo (RFC 4380): [authentication] [origin indication] then IPv6
//! UDP port 2152        GTP-U (3GPP TS 29.281): G-PDU header [seq, N-PDU, extension headers], then IP
//! UDP port 1701        L2TPv2 (RFC 2661) data message: flags+version(2) [length(2)] tunnel(2) session(2) [Ns(2) Nr(2)] [offset(2) pad], then PPP
//! UDP port 5072        AYIYA: id len/type(1) sig len/hash(1) auth/opcode(1) next header(1) epoch(4) identity signature, then next header 41 IPv6
//! protocol 103         PIM Register (RFC 7761): version 2 type 1 (1) reserved(1) checksum(2) B|N(4), then IP
//! ```
//!
//! A UDP port is looked up as tshark does, the lower port first. Fragments (IPv4 offset or MF,
//! IPv6 non-first) are not stepped into. At most [`MAX_DEPTH`] tunnels are stepped into, so a
//! hostile nesting ends; what was found by then is used. Never panics, never allocates.

use super::NonIpv6;
use super::ipv6::Fixed;
use super::link::{self, Network, ethertype};
use super::proto::IpNumber;
use std::ops::Range;

/// The most tunnels stepped into for one frame.
pub const MAX_DEPTH: usize = 4;

/// Which IPv6 header of a tunnelled packet is keyed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The outermost IPv6 header (as tshark's first occurrence); IPv4 carrying IPv6 is counted
    /// as "ipv4-carrying-ipv6".
    #[default]
    Outer,
    /// The innermost IPv6 header behind 6in4, IPv6-in-IPv6, GRE, ERSPAN, VXLAN, Geneve,
    /// Teredo, GTP-U, L2TP, AYIYA and PIM Register; frames counted per tunnel kind.
    Inner,
}

/// A kind of tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Kind {
    /// IPv6 in IPv4, protocol 41.
    SixInFour,
    /// IPv6 in IPv6, next header 41.
    SixInSix,
    /// IPv4 in IP, protocol 4.
    IpInIp,
    Gre,
    Erspan,
    Vxlan,
    Geneve,
    Teredo,
    GtpU,
    /// A PIM Register message: a multicast packet on its way to the rendezvous point.
    PimRegister,
    /// L2TP version 2 data messages (PPP inside).
    L2tp,
    /// Anything In Anything (IPv6 tunnel brokers).
    Ayiya,
}

impl Kind {
    pub const COUNT: usize = 12;

    /// All kinds, in report order.
    pub const ALL: [Kind; Self::COUNT] = [
        Kind::SixInFour,
        Kind::SixInSix,
        Kind::IpInIp,
        Kind::Gre,
        Kind::Erspan,
        Kind::Vxlan,
        Kind::Geneve,
        Kind::Teredo,
        Kind::GtpU,
        Kind::PimRegister,
        Kind::L2tp,
        Kind::Ayiya,
    ];

    /// The stable name used in reports and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::SixInFour => "6in4",
            Kind::SixInSix => "6in6",
            Kind::IpInIp => "ipip",
            Kind::Gre => "gre",
            Kind::Erspan => "erspan",
            Kind::Vxlan => "vxlan",
            Kind::Geneve => "geneve",
            Kind::Teredo => "teredo",
            Kind::GtpU => "gtp-u",
            Kind::PimRegister => "pim-register",
            Kind::L2tp => "l2tp",
            Kind::Ayiya => "ayiya",
        }
    }

    /// Index into [`Kind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// UDP ports of the tunnels carried over UDP.
pub mod port {
    pub const TEREDO: u16 = 3544;
    pub const GTP_U: u16 = 2152;
    pub const VXLAN: u16 = 4789;
    pub const GENEVE: u16 = 6081;
    pub const L2TP: u16 = 1701;
    pub const AYIYA: u16 = 5072;
}

/// The innermost IPv6 packet in `outer` (which may be `outer` itself), and the kind of the
/// outermost tunnel stepped into to reach it (`None` when it is `outer`). An IPv4 packet with no
/// IPv6 packet inside is [`NonIpv6::Ipv4`].
pub fn innermost(outer: Network<'_>) -> Result<(Fixed<'_>, Option<Kind>), NonIpv6> {
    let mut found = match outer {
        Network::Ipv6(p) => Some((Fixed::new(p)?, None)),
        Network::Ipv4(_) => None,
    };
    let mut first = None;
    let mut cur = outer;
    for _ in 0..MAX_DEPTH {
        let Some((kind, inner)) = step(cur) else {
            break;
        };
        let first = *first.get_or_insert(kind);
        match inner {
            Network::Ipv6(p) => match Fixed::new(p) {
                Ok(fixed) => found = Some((fixed, Some(first))),
                // A tunnel header that says IPv6 but holds no IPv6 header: keep the outer one.
                Err(_) => break,
            },
            Network::Ipv4(_) => {}
        }
        cur = inner;
    }
    found.ok_or(NonIpv6::Ipv4)
}

/// The reason an IPv4 packet is not keyed with `--tunnel outer`: plain IPv4, or IPv4 with an
/// IPv6 packet inside.
pub fn ipv4_reason(packet: &[u8]) -> NonIpv6 {
    match innermost(Network::Ipv4(packet)) {
        Ok(_) => NonIpv6::Ipv4CarryingIpv6,
        Err(_) => NonIpv6::Ipv4,
    }
}

/// One tunnel level: the kind and the packet it carries, if `packet` is a tunnel we decode.
pub fn step(packet: Network<'_>) -> Option<(Kind, Network<'_>)> {
    match packet {
        Network::Ipv4(p) => {
            let v4 = Ipv4::new(p)?;
            carried(v4.protocol, v4.payload, false)
        }
        Network::Ipv6(p) => {
            let fixed = Fixed::new(p).ok()?;
            let (walk, rest) = super::five::walk_to(fixed.next_header(), fixed.payload());
            walk.ports.ok()?;
            carried(walk.proto, rest, true)
        }
    }
}

/// What an IP packet's upper-layer `proto` header at `rest` carries.
fn carried(proto: u8, rest: &[u8], from_ipv6: bool) -> Option<(Kind, Network<'_>)> {
    match IpNumber(proto) {
        IpNumber::IPV6 => Some((
            if from_ipv6 {
                Kind::SixInSix
            } else {
                Kind::SixInFour
            },
            Network::Ipv6(rest),
        )),
        IpNumber::IPV4 => Some((Kind::IpInIp, Network::Ipv4(rest))),
        IpNumber::GRE => gre(rest),
        IpNumber::UDP => udp(rest),
        IpNumber::PIM => pim_register(rest),
        _ => None,
    }
}

/// A PIM Register message (RFC 7761 4.9.3), 8 bytes, then the encapsulated IP packet:
///
/// ```text
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |PIM Ver| Type  |   Reserved    |           Checksum            |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |B|N|                       Reserved2                           |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
pub mod pim_field {
    pub const VER_TYPE: usize = 0;
    /// Version 2, type 1 (Register).
    pub const REGISTER: u8 = 0x21;
    pub const LEN: usize = 8;
}

fn pim_register(p: &[u8]) -> Option<(Kind, Network<'_>)> {
    if *p.get(pim_field::VER_TYPE)? != pim_field::REGISTER {
        return None;
    }
    let inner = p.get(pim_field::LEN..)?;
    match inner.first()? >> 4 {
        6 => Some((Kind::PimRegister, Network::Ipv6(inner))),
        4 => Some((Kind::PimRegister, Network::Ipv4(inner))),
        _ => None,
    }
}

/// The IPv4 header (RFC 791), as far as the tunnel walk needs it:
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |Version|  IHL  |Type of Service|          Total Length         |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |         Identification        |Flags|      Fragment Offset    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Time to Live |    Protocol   |         Header Checksum       |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                 Source Address, Destination Address           |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
pub mod ipv4_field {
    use std::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const TOTAL_LEN: Range<usize> = 2..4;
    pub const FLAGS_FRAG: Range<usize> = 6..8;
    /// More fragments, and the offset's 13 bits.
    pub const MF: u16 = 0x2000;
    pub const OFFSET: u16 = 0x1fff;
    pub const PROTOCOL: usize = 9;
    pub const MIN_LEN: usize = 20;
}

/// A checked IPv4 header: protocol and payload (trimmed to the total length), unfragmented.
struct Ipv4<'a> {
    protocol: u8,
    payload: &'a [u8],
}

impl<'a> Ipv4<'a> {
    /// `None` unless version 4, a header length that fits, and not a fragment.
    fn new(p: &'a [u8]) -> Option<Self> {
        use ipv4_field as f;
        let vi = *p.get(f::VER_IHL)?;
        let ihl = usize::from(vi & 0x0f) * 4;
        if vi >> 4 != 4 || ihl < f::MIN_LEN || p.len() < ihl {
            return None;
        }
        let frag = be16(p, f::FLAGS_FRAG)?;
        if frag & (f::MF | f::OFFSET) != 0 {
            return None;
        }
        let total = usize::from(be16(p, f::TOTAL_LEN)?);
        // A total length of 0 (TSO) takes everything captured.
        let end = if total == 0 {
            p.len()
        } else {
            total.min(p.len())
        };
        Some(Ipv4 {
            protocol: p[f::PROTOCOL],
            payload: p.get(ihl..end)?,
        })
    }
}

#[inline]
fn be16(b: &[u8], field: Range<usize>) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(field)?.try_into().ok()?))
}

/// The GRE header (RFC 2784, keys and sequence numbers RFC 2890):
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |C|R|K|S|    Reserved0    | Ver |         Protocol Type         |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |   Checksum and Reserved1 (4 bytes, when C or R is set)        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                   Key (4 bytes, when K is set)                |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |            Sequence Number (4 bytes, when S is set)           |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
pub mod gre_field {
    use std::ops::Range;
    pub const FLAGS: Range<usize> = 0..2;
    pub const PROTOCOL: Range<usize> = 2..4;
    pub const C: u16 = 0x8000;
    pub const R: u16 = 0x4000;
    pub const K: u16 = 0x2000;
    pub const S: u16 = 0x1000;
    pub const VERSION: u16 = 0x0007;
    pub const BASE_LEN: usize = 4;
    /// ERSPAN type I and II (type II has an 8-byte header; GRE's S flag tells them apart).
    pub const ERSPAN_II: u16 = 0x88be;
    pub const ERSPAN_II_LEN: usize = 8;
    /// ERSPAN type III: a 12-byte header, and an 8-byte platform subheader when O is set.
    pub const ERSPAN_III: u16 = 0x22eb;
    pub const ERSPAN_III_LEN: usize = 12;
    pub const ERSPAN_III_O_BYTE: usize = 11;
    pub const ERSPAN_III_O_BIT: u8 = 0x01;
    pub const ERSPAN_III_PLATFORM_LEN: usize = 8;
}

fn gre(p: &[u8]) -> Option<(Kind, Network<'_>)> {
    use gre_field as f;
    let flags = be16(p, f::FLAGS)?;
    let proto = be16(p, f::PROTOCOL)?;
    if flags & f::VERSION != 0 || flags & f::R != 0 {
        // Version 1 is PPTP's enhanced GRE; R (source routing) is deprecated.
        return None;
    }
    let words = [f::C, f::K, f::S]
        .iter()
        .filter(|&&bit| flags & bit != 0)
        .count();
    let rest = p.get(f::BASE_LEN + 4 * words..)?;
    let inner = |r| link::inner_ethernet(r).ok();
    match proto {
        ethertype::TEB => Some((Kind::Gre, inner(rest)?)),
        f::ERSPAN_II => {
            let skip = if flags & f::S != 0 {
                f::ERSPAN_II_LEN
            } else {
                0
            };
            Some((Kind::Erspan, inner(rest.get(skip..)?)?))
        }
        f::ERSPAN_III => {
            let o = rest.get(f::ERSPAN_III_O_BYTE)? & f::ERSPAN_III_O_BIT != 0;
            let skip = f::ERSPAN_III_LEN + if o { f::ERSPAN_III_PLATFORM_LEN } else { 0 };
            Some((Kind::Erspan, inner(rest.get(skip..)?)?))
        }
        // IPv6, IPv4, MPLS: as behind an EtherType.
        ty => Some((Kind::Gre, link::by_ethertype(ty, rest).ok()?)),
    }
}

/// The UDP header: source port(2) destination port(2) length(2) checksum(2), then the tunnel.
fn udp(p: &[u8]) -> Option<(Kind, Network<'_>)> {
    let sport = be16(p, 0..2)?;
    let dport = be16(p, 2..4)?;
    let data = p.get(8..)?;
    for port in [sport.min(dport), sport.max(dport)] {
        match port {
            port::VXLAN => return vxlan(data),
            port::GENEVE => return geneve(data),
            port::TEREDO => return teredo(data),
            port::GTP_U => return gtpu(data),
            port::L2TP => return l2tp(data),
            port::AYIYA => return ayiya(data),
            _ => {}
        }
    }
    None
}

/// VXLAN (RFC 7348), 8 bytes, then an Ethernet frame:
///
/// ```text
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |R|R|R|R|I|R|R|R|            Reserved                           |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                VXLAN Network Identifier (VNI) |   Reserved    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
pub mod vxlan_field {
    pub const FLAGS: usize = 0;
    pub const LEN: usize = 8;
}

fn vxlan(p: &[u8]) -> Option<(Kind, Network<'_>)> {
    let inner = p.get(vxlan_field::LEN..)?;
    Some((Kind::Vxlan, link::inner_ethernet(inner).ok()?))
}

/// Geneve (RFC 8926), 8 bytes plus options, then the protocol type's payload:
///
/// ```text
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |Ver|  Opt Len  |O|C|    Rsvd.  |          Protocol Type        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |        Virtual Network Identifier (VNI)       |    Reserved   |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                 Options (Opt Len * 4 bytes)                   |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
pub mod geneve_field {
    use std::ops::Range;
    pub const VER_OPT_LEN: usize = 0;
    pub const OPT_LEN_MASK: u8 = 0x3f;
    pub const PROTOCOL: Range<usize> = 2..4;
    pub const LEN: usize = 8;
}

fn geneve(p: &[u8]) -> Option<(Kind, Network<'_>)> {
    use geneve_field as f;
    let opt = usize::from(p.get(f::VER_OPT_LEN)? & f::OPT_LEN_MASK) * 4;
    let proto = be16(p, f::PROTOCOL)?;
    let rest = p.get(f::LEN + opt..)?;
    let inner = if proto == ethertype::TEB {
        link::inner_ethernet(rest).ok()?
    } else {
        link::by_ethertype(proto, rest).ok()?
    };
    Some((Kind::Geneve, inner))
}

/// Teredo (RFC 4380): an IPv6 packet, optionally behind an authentication indicator
/// (0x0001, client id length(1), auth value length(1), client id, auth value, nonce(8),
/// confirmation(1)) and an origin indication (0x0000, port(2), address(4)).
pub mod teredo_field {
    pub const AUTH: [u8; 2] = [0x00, 0x01];
    pub const AUTH_FIXED_LEN: usize = 4 + 8 + 1;
    pub const ORIGIN: [u8; 2] = [0x00, 0x00];
    pub const ORIGIN_LEN: usize = 8;
}

fn teredo(mut p: &[u8]) -> Option<(Kind, Network<'_>)> {
    use teredo_field as f;
    if p.get(..2)? == f::AUTH {
        let id = usize::from(*p.get(2)?);
        let au = usize::from(*p.get(3)?);
        p = p.get(f::AUTH_FIXED_LEN + id + au..)?;
    }
    if p.get(..2)? == f::ORIGIN {
        p = p.get(f::ORIGIN_LEN..)?;
    }
    (p.first()? >> 4 == 6).then_some((Kind::Teredo, Network::Ipv6(p)))
}

/// GTP-U (3GPP TS 29.281) G-PDU, 8 bytes, then 4 more when E, S or PN is set, then extension
/// headers while the next-extension type is not 0, then the user's IP packet:
///
/// ```text
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |Ver=1|P|R|E|S|N| Type 0xff     |            Length             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                   Tunnel Endpoint Identifier                  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |   Sequence Number (E|S|PN)    |   N-PDU (1)   | Next ext. (1) |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
pub mod gtpu_field {
    pub const FLAGS: usize = 0;
    pub const TYPE: usize = 1;
    pub const G_PDU: u8 = 0xff;
    pub const VERSION_1: u8 = 0x20;
    pub const VERSION_PT_MASK: u8 = 0xf0;
    pub const VERSION_PT: u8 = 0x30;
    pub const E_S_PN: u8 = 0x07;
    pub const E: u8 = 0x04;
    pub const LEN: usize = 8;
    pub const OPTIONAL_LEN: usize = 4;
    /// The next-extension-header type, the last byte of the optional part and of each extension.
    pub const NEXT_EXT: usize = 11;
    /// The most extension headers stepped over.
    pub const MAX_EXTENSIONS: usize = 8;
}

fn gtpu(p: &[u8]) -> Option<(Kind, Network<'_>)> {
    use gtpu_field as f;
    let flags = *p.get(f::FLAGS)?;
    if flags & f::VERSION_PT_MASK != f::VERSION_PT || *p.get(f::TYPE)? != f::G_PDU {
        return None;
    }
    let mut off = f::LEN;
    if flags & f::E_S_PN != 0 {
        off += f::OPTIONAL_LEN;
        if flags & f::E != 0 {
            let mut next = *p.get(f::NEXT_EXT)?;
            let mut n = 0;
            while next != 0 {
                n += 1;
                if n > f::MAX_EXTENSIONS {
                    return None;
                }
                let len = usize::from(*p.get(off)?) * 4;
                if len == 0 {
                    return None;
                }
                next = *p.get(off + len - 1)?;
                off += len;
            }
        }
    }
    let inner = p.get(off..)?;
    match inner.first()? >> 4 {
        6 => Some((Kind::GtpU, Network::Ipv6(inner))),
        4 => Some((Kind::GtpU, Network::Ipv4(inner))),
        _ => None,
    }
}

/// L2TPv2 (RFC 2661 3.1): the header's optional fields by its flags, then PPP.
///
/// ```text
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |T|L|x|x|S|x|O|P|x|x|x|x|  Ver  |          Length (opt)         |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |           Tunnel ID           |           Session ID          |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |             Ns (opt)          |             Nr (opt)          |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |      Offset Size (opt)        |    Offset pad... (opt)
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
pub mod l2tp_field {
    use std::ops::Range;
    pub const FLAGS: Range<usize> = 0..2;
    /// When L is set.
    pub const LENGTH: Range<usize> = 2..4;
    /// A control message (no PPP inside).
    pub const T: u16 = 0x8000;
    pub const L: u16 = 0x4000;
    pub const S: u16 = 0x0800;
    pub const O: u16 = 0x0200;
    pub const VERSION: u16 = 0x000f;
    pub const VERSION_2: u16 = 2;
}

fn l2tp(p: &[u8]) -> Option<(Kind, Network<'_>)> {
    use l2tp_field as f;
    let flags = be16(p, f::FLAGS)?;
    if flags & f::VERSION != f::VERSION_2 || flags & f::T != 0 {
        return None;
    }
    let mut off = 2 + 4;
    let mut p = p;
    if flags & f::L != 0 {
        // The message length bounds what follows, as tshark reads it.
        let len = usize::from(be16(p, f::LENGTH)?);
        p = &p[..len.min(p.len())];
        off += 2;
    }
    if flags & f::S != 0 {
        off += 4;
    }
    if flags & f::O != 0 {
        off += 2 + usize::from(be16(p, off..off + 2)?);
    }
    let ppp = p.get(off..)?;
    Some((Kind::L2tp, link::ppp_framed(ppp).ok()?))
}

/// AYIYA (Anything In Anything, draft-massar-v6ops-ayiya), 8 bytes, then the identity
/// (2^id len bytes) and the signature (sig len * 4 bytes), then the payload of `next header`:
///
/// ```text
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |IdLen  |IdType |SigLen |HshMth |AutMth |OpCode | Next Header   |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                            Epoch                              |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
pub mod ayiya_field {
    pub const ID: usize = 0;
    pub const SIG: usize = 1;
    pub const OPCODE: usize = 2;
    pub const OPCODE_MASK: u8 = 0x0f;
    /// Opcode 1: forward the payload.
    pub const FORWARD: u8 = 1;
    pub const NEXT_HEADER: usize = 3;
    pub const LEN: usize = 8;
}

fn ayiya(p: &[u8]) -> Option<(Kind, Network<'_>)> {
    use ayiya_field as f;
    let id = 1usize << (p.get(f::ID)? >> 4);
    let sig = usize::from(p.get(f::SIG)? >> 4) * 4;
    if p.get(f::OPCODE)? & f::OPCODE_MASK != f::FORWARD {
        return None;
    }
    let rest = p.get(f::LEN + id + sig..)?;
    match IpNumber(*p.get(f::NEXT_HEADER)?) {
        IpNumber::IPV6 => Some((Kind::Ayiya, Network::Ipv6(rest))),
        IpNumber::IPV4 => Some((Kind::Ayiya, Network::Ipv4(rest))),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
