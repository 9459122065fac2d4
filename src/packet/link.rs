//! The link layer: from a captured frame of a given link type to the bytes of the IPv6 packet
//! it carries, or the kind of non-IPv6 frame it is.
//!
//! Supported link types (pcap `LINKTYPE_*` numbers):
//!
//! ```text
//! Ethernet (1)      dst(6) src(6) [0x8100|0x88a8|0x9100 tci(2)]* ethertype(2) payload
//! NULL (0)          family(4, host byte order of the capturing machine) payload
//! LOOP (108)        family(4, network byte order) payload
//! raw IP (101, also 12 and 14 from old BSD files), IPv4 (228), IPv6 (229): payload only
//! Linux SLL (113)   packet type(2) arphrd(2) addr len(2) addr(8) protocol(2) payload
//! Linux SLL2 (276)  protocol(2) reserved(2) ifindex(4) arphrd(2) packet type(1) addr len(1) addr(8) payload
//! PPP (9), PPP in HDLC framing (50)   [0xff 0x03] protocol(1|2) payload  (Cisco HDLC when 0x0f|0x8f)
//! PPP with direction (204)            direction(1) then as PPP
//! PPPoE (PPP_ETHER, 51)               PPPoE session header(6) PPP protocol(2) payload
//! Cisco HDLC (104), with dir. (205)   [direction(1)] address(1) control(1) ethertype(2) payload
//! Frame Relay (107), with dir. (206)  [direction(1)] Q.922 address(2..4) 0x03 [0x00] NLPID [SNAP] payload
//!                                     (or, Cisco style, Q.922 address then an ethertype)
//! NFLOG (239)                         family(1) version(1) resource id(2) TLVs...; NFULA_PAYLOAD (9) holds the packet
//! ```
//!
//! Behind an EtherType (Ethernet, Linux cooked, Cisco HDLC, SNAP) the decoder also steps over
//! VLAN tags, MPLS label stacks (0x8847, 0x8848; the first nibble behind the bottom of the
//! stack says IPv6 (6) or IPv4 (4); 0 is a pseudowire control word, counted as
//! [`NonIpv6::MplsPseudowire`]), PPPoE sessions (0x8864; PPP protocol 0x0057 is IPv6) and, on
//! Ethernet, a Cisco FabricPath outer header (0x8903, 16 bytes, then the inner Ethernet frame).
//! IPv4 packets are handed on as [`Network::Ipv4`] so the tunnel walk
//! ([`super::tunnel`]) can look inside them.
//!
//! Every function here checks lengths before reading and never panics on any input.

use super::NonIpv6;
use std::ops::Range;

/// A pcap/pcapng link-layer type (`LINKTYPE_*`), kept as the number found in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkType(pub u32);

impl LinkType {
    pub const NULL: LinkType = LinkType(0);
    pub const ETHERNET: LinkType = LinkType(1);
    /// `DLT_RAW` as written by some BSD libpcaps.
    pub const RAW_BSD12: LinkType = LinkType(12);
    /// `DLT_RAW` as written by OpenBSD.
    pub const RAW_BSD14: LinkType = LinkType(14);
    pub const RAW: LinkType = LinkType(101);
    pub const LOOP: LinkType = LinkType(108);
    pub const LINUX_SLL: LinkType = LinkType(113);
    pub const IPV4: LinkType = LinkType(228);
    pub const IPV6: LinkType = LinkType(229);
    pub const LINUX_SLL2: LinkType = LinkType(276);
    pub const PPP: LinkType = LinkType(9);
    pub const PPP_HDLC: LinkType = LinkType(50);
    pub const PPP_ETHER: LinkType = LinkType(51);
    pub const C_HDLC: LinkType = LinkType(104);
    pub const FRELAY: LinkType = LinkType(107);
    pub const PPP_WITH_DIR: LinkType = LinkType(204);
    pub const C_HDLC_WITH_DIR: LinkType = LinkType(205);
    pub const FRELAY_WITH_DIR: LinkType = LinkType(206);
    pub const NFLOG: LinkType = LinkType(239);

    /// Every link type [`network`] decodes; frames of any other type are counted as `other`.
    pub const DECODED: [LinkType; 19] = [
        LinkType::NULL,
        LinkType::ETHERNET,
        LinkType::RAW_BSD12,
        LinkType::RAW_BSD14,
        LinkType::RAW,
        LinkType::LOOP,
        LinkType::LINUX_SLL,
        LinkType::IPV4,
        LinkType::IPV6,
        LinkType::LINUX_SLL2,
        LinkType::PPP,
        LinkType::PPP_HDLC,
        LinkType::PPP_ETHER,
        LinkType::C_HDLC,
        LinkType::FRELAY,
        LinkType::PPP_WITH_DIR,
        LinkType::C_HDLC_WITH_DIR,
        LinkType::FRELAY_WITH_DIR,
        LinkType::NFLOG,
    ];

    /// True when flowpol decodes frames of this link type ([`LinkType::DECODED`]).
    pub fn is_decoded(self) -> bool {
        LinkType::DECODED.contains(&self)
    }

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            LinkType::NULL => "null",
            LinkType::ETHERNET => "ethernet",
            LinkType::RAW | LinkType::RAW_BSD12 | LinkType::RAW_BSD14 => "raw",
            LinkType::LOOP => "loop",
            LinkType::LINUX_SLL => "linux-sll",
            LinkType::IPV4 => "ipv4",
            LinkType::IPV6 => "ipv6",
            LinkType::LINUX_SLL2 => "linux-sll2",
            LinkType::PPP | LinkType::PPP_HDLC => "ppp",
            LinkType::PPP_ETHER => "pppoe",
            LinkType::C_HDLC => "c-hdlc",
            LinkType::FRELAY => "frame-relay",
            LinkType::PPP_WITH_DIR => "ppp-with-dir",
            LinkType::C_HDLC_WITH_DIR => "c-hdlc-with-dir",
            LinkType::FRELAY_WITH_DIR => "frame-relay-with-dir",
            LinkType::NFLOG => "nflog",
            _ => "other",
        }
    }
}

impl std::fmt::Display for LinkType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

/// EtherType values the link layer distinguishes.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const IPV6: u16 = 0x86dd;
    /// 802.1Q customer tag.
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad service tag (QinQ outer tag).
    pub const QINQ: u16 = 0x88a8;
    /// Pre-standard QinQ outer tag.
    pub const QINQ_OLD: u16 = 0x9100;
    /// MPLS unicast and multicast label stacks.
    pub const MPLS: u16 = 0x8847;
    pub const MPLS_MC: u16 = 0x8848;
    /// PPPoE session stage.
    pub const PPPOE_SESSION: u16 = 0x8864;
    /// Cisco FabricPath (DCE) outer header.
    pub const FABRICPATH: u16 = 0x8903;
    /// Transparent Ethernet bridging (an Ethernet frame follows: GRE, Geneve).
    pub const TEB: u16 = 0x6558;
}

/// PPP protocol numbers the decoder follows (RFC 1661, RFC 5072, RFC 3032).
pub mod ppp_protocol {
    pub const IPV4: u16 = 0x0021;
    pub const IPV6: u16 = 0x0057;
    pub const MPLS: u16 = 0x0281;
    pub const MPLS_MC: u16 = 0x0283;
}

/// Address families found in BSD NULL/LOOP headers.
mod family {
    pub const INET: u32 = 2;
    /// Linux, NetBSD/OpenBSD (24), FreeBSD (28), Darwin (30).
    pub const INET6: [u32; 4] = [10, 24, 28, 30];
}

/// The most VLAN tags the Ethernet decoder will step over.
pub const MAX_VLAN_TAGS: usize = 4;

/// The most MPLS label stack entries the decoder will step over.
pub const MAX_MPLS_LABELS: usize = 8;

/// The network-layer packet behind a link layer (not yet checked beyond the link layer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network<'a> {
    Ipv6(&'a [u8]),
    Ipv4(&'a [u8]),
}

/// The IPv6 packet inside a frame (not yet checked beyond its link layer), or why there is none.
/// An IPv4 packet is [`NonIpv6::Ipv4`] here; [`network`] hands it on instead.
pub fn ipv6_payload(link: LinkType, frame: &[u8]) -> Result<&[u8], NonIpv6> {
    match network(link, frame)? {
        Network::Ipv6(p) => Ok(p),
        Network::Ipv4(_) => Err(NonIpv6::Ipv4),
    }
}

/// The IPv6 or IPv4 packet inside a frame of the given link type, or why there is none.
pub fn network(link: LinkType, frame: &[u8]) -> Result<Network<'_>, NonIpv6> {
    match link {
        LinkType::ETHERNET => ethernet(frame, true),
        LinkType::NULL | LinkType::LOOP => null(link, frame),
        LinkType::RAW | LinkType::RAW_BSD12 | LinkType::RAW_BSD14 => raw(frame),
        LinkType::IPV6 => Ok(Network::Ipv6(frame)),
        LinkType::IPV4 => Ok(Network::Ipv4(frame)),
        LinkType::LINUX_SLL => sll(frame),
        LinkType::LINUX_SLL2 => sll2(frame),
        LinkType::PPP | LinkType::PPP_HDLC => ppp_framed(frame),
        LinkType::PPP_WITH_DIR => ppp_framed(after_direction(frame)?),
        LinkType::PPP_ETHER => pppoe(frame),
        LinkType::C_HDLC => chdlc(frame),
        LinkType::C_HDLC_WITH_DIR => chdlc(after_direction(frame)?),
        LinkType::FRELAY => frelay(frame),
        LinkType::FRELAY_WITH_DIR => frelay(after_direction(frame)?),
        LinkType::NFLOG => nflog(frame),
        _ => Err(NonIpv6::Other),
    }
}

/// The frame after the one-byte direction of the `*_WITH_DIR` link types.
fn after_direction(frame: &[u8]) -> Result<&[u8], NonIpv6> {
    frame.get(1..).ok_or(NonIpv6::Malformed)
}

/// The big-endian u16 at `field` of `b`, if `b` holds it.
#[inline]
fn be16(b: &[u8], field: Range<usize>) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(field)?.try_into().ok()?))
}

/// Ethernet II (the type field may be a VLAN tag's TPID, see [`untag`]).
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                  Destination MAC (bytes 0..6)                 |
/// +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                               |                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+    Source MAC (bytes 6..12)   +
/// |                                                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |   EtherType / length (12..14) |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
pub mod ethernet_field {
    use std::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: usize = ETHERTYPE.end;
}

/// Linux cooked capture v1 (`LINKTYPE_LINUX_SLL`), 16 bytes, big-endian fields:
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |     Packet type (0..2)        |   ARPHRD type (2..4)          |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Link-layer addr len (4..6)    |                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
/// |          Link-layer address (6..14, padded to 8 bytes)        |
/// +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                               |   Protocol type (14..16)      |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
pub mod sll_field {
    use std::ops::Range;
    pub const PACKET_TYPE: Range<usize> = 0..2;
    pub const ARPHRD: Range<usize> = 2..4;
    pub const ADDR_LEN: Range<usize> = 4..6;
    pub const ADDR: Range<usize> = 6..14;
    pub const PROTOCOL: Range<usize> = 14..16;
    pub const PAYLOAD: usize = PROTOCOL.end;
}

/// Linux cooked capture v2 (`LINKTYPE_LINUX_SLL2`), 20 bytes, big-endian fields:
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |     Protocol type (0..2)      |      Reserved (2..4)          |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                  Interface index (4..8)                       |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |     ARPHRD type (8..10)       | Pkt type (10) | Addr len (11) |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                                                               |
/// +          Link-layer address (12..20, padded to 8 bytes)       +
/// |                                                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
pub mod sll2_field {
    use std::ops::Range;
    pub const PROTOCOL: Range<usize> = 0..2;
    pub const RESERVED: Range<usize> = 2..4;
    pub const IFINDEX: Range<usize> = 4..8;
    pub const ARPHRD: Range<usize> = 8..10;
    pub const PACKET_TYPE: usize = 10;
    pub const ADDR_LEN: usize = 11;
    pub const ADDR: Range<usize> = 12..20;
    pub const PAYLOAD: usize = ADDR.end;
}

/// The packet behind an EtherType (VLAN tags already stepped over).
pub fn by_ethertype(ty: u16, payload: &[u8]) -> Result<Network<'_>, NonIpv6> {
    match ty {
        ethertype::IPV6 => Ok(Network::Ipv6(payload)),
        ethertype::IPV4 => Ok(Network::Ipv4(payload)),
        ethertype::ARP => Err(NonIpv6::Arp),
        ethertype::MPLS | ethertype::MPLS_MC => mpls(payload),
        ethertype::PPPOE_SESSION => pppoe(payload),
        _ => Err(NonIpv6::Other),
    }
}

/// Steps over up to [`MAX_VLAN_TAGS`] 802.1Q/802.1ad tags. `ty` is the first type field and
/// `rest` the bytes after it; each tag is the TCI then the next type field:
///
/// ```text
/// Ethernet:  dst(6) src(6) | 0x8100 | TCI(2) 0x86dd | IPv6 ...
/// Linux SLL: header(14)     0x8100 | TCI(2) 0x86dd | IPv6 ...   (libpcap re-inserts the tag
/// Linux SLL2: 0x8100 ... header(20) | TCI(2) 0x86dd | IPv6 ...   the kernel stripped)
/// ```
fn untag(mut ty: u16, mut rest: &[u8]) -> Result<Network<'_>, NonIpv6> {
    let mut tags = 0;
    while matches!(ty, ethertype::VLAN | ethertype::QINQ | ethertype::QINQ_OLD) {
        tags += 1;
        if tags > MAX_VLAN_TAGS {
            return Err(NonIpv6::Malformed);
        }
        let [_, _, t0, t1, ..] = *rest else {
            return Err(NonIpv6::Malformed);
        };
        ty = u16::from_be_bytes([t0, t1]);
        rest = &rest[4..];
    }
    by_ethertype(ty, rest)
}

/// Ethernet II with up to [`MAX_VLAN_TAGS`] 802.1Q/802.1ad tags, and (when `fabricpath`) one
/// Cisco FabricPath outer header in front of the inner frame.
fn ethernet(frame: &[u8], fabricpath: bool) -> Result<Network<'_>, NonIpv6> {
    let ty = be16(frame, ethernet_field::ETHERTYPE).ok_or(NonIpv6::Malformed)?;
    if ty < 0x0600 {
        // An 802.3 length field: LLC/SNAP, never IPv6 in practice.
        return Err(NonIpv6::Other);
    }
    if ty == ethertype::FABRICPATH && fabricpath {
        let inner = frame
            .get(fabricpath_field::INNER..)
            .ok_or(NonIpv6::Malformed)?;
        return ethernet(inner, false);
    }
    untag(ty, &frame[ethernet_field::PAYLOAD..])
}

/// An Ethernet frame inside a tunnel (VXLAN, Geneve, GRE bridging, ERSPAN).
pub fn inner_ethernet(frame: &[u8]) -> Result<Network<'_>, NonIpv6> {
    ethernet(frame, true)
}

/// Cisco FabricPath (EtherType 0x8903): the outer switch addresses, the FabricPath tag, then
/// the classic Ethernet frame as it entered the fabric.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |          Outer DA: switch id, sub-switch id, LID (0..6)       |
/// +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                               |                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+       Outer SA (6..12)        +
/// |                                                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |     EtherType 0x8903 (12..14) |   FTag (10 bits) | TTL (6)    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |        Inner Ethernet frame (16..): dst, src, [tags], type    |
/// ```
pub mod fabricpath_field {
    use std::ops::Range;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const FTAG_TTL: Range<usize> = 14..16;
    pub const INNER: usize = FTAG_TTL.end;
}

/// One MPLS label stack entry (RFC 3032), 4 bytes; entries repeat until S is set:
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                Label                  | TC  |S|      TTL      |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// Behind the bottom entry there is no type field: the first nibble says what follows
/// (6 IPv6, 4 IPv4, 0 a pseudowire control word, RFC 4385).
pub mod mpls_field {
    pub const ENTRY_LEN: usize = 4;
    /// The byte holding the bottom-of-stack bit, and the bit.
    pub const S_BYTE: usize = 2;
    pub const S_BIT: u8 = 0x01;
}

/// An MPLS label stack, then the packet behind its bottom entry.
fn mpls(mut rest: &[u8]) -> Result<Network<'_>, NonIpv6> {
    for _ in 0..MAX_MPLS_LABELS {
        let entry = rest
            .get(..mpls_field::ENTRY_LEN)
            .ok_or(NonIpv6::Malformed)?;
        rest = &rest[mpls_field::ENTRY_LEN..];
        if entry[mpls_field::S_BYTE] & mpls_field::S_BIT != 0 {
            return match rest.first().map(|b| b >> 4) {
                Some(6) => Ok(Network::Ipv6(rest)),
                Some(4) => Ok(Network::Ipv4(rest)),
                Some(0) => Err(NonIpv6::MplsPseudowire),
                Some(_) => Err(NonIpv6::Other),
                None => Err(NonIpv6::Malformed),
            };
        }
    }
    Err(NonIpv6::Malformed)
}

/// The PPPoE session header (RFC 2516), then a PPP protocol field:
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  VER  | TYPE  |     CODE      |          SESSION_ID           |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |            LENGTH             |     PPP protocol (6..8)       |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
pub mod pppoe_field {
    use std::ops::Range;
    pub const VER_TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const SESSION_ID: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const PPP_PROTOCOL: Range<usize> = 6..8;
    pub const PAYLOAD: usize = PPP_PROTOCOL.end;
}

/// A PPPoE session frame's payload: PPP.
fn pppoe(frame: &[u8]) -> Result<Network<'_>, NonIpv6> {
    let proto = be16(frame, pppoe_field::PPP_PROTOCOL).ok_or(NonIpv6::Malformed)?;
    by_ppp_protocol(proto, &frame[pppoe_field::PAYLOAD..])
}

/// The packet behind a PPP protocol number.
fn by_ppp_protocol(proto: u16, payload: &[u8]) -> Result<Network<'_>, NonIpv6> {
    match proto {
        ppp_protocol::IPV6 => Ok(Network::Ipv6(payload)),
        ppp_protocol::IPV4 => Ok(Network::Ipv4(payload)),
        ppp_protocol::MPLS | ppp_protocol::MPLS_MC => mpls(payload),
        _ => Err(NonIpv6::Other),
    }
}

/// PPP in HDLC-like framing (RFC 1662) as libpcap's `LINKTYPE_PPP`/`PPP_HDLC` hold it:
///
/// ```text
/// [ 0xff address | 0x03 control ] protocol (1 byte when odd: RFC 1661 field compression, else 2) payload
/// ```
///
/// A frame starting 0x0f or 0x8f is Cisco HDLC, which these link types also carry.
pub mod ppp_field {
    pub const ADDRESS: u8 = 0xff;
    pub const CONTROL: u8 = 0x03;
}

/// PPP as [`ppp_field`] describes (also what L2TP carries).
pub fn ppp_framed(frame: &[u8]) -> Result<Network<'_>, NonIpv6> {
    let rest = match *frame {
        [ppp_field::ADDRESS, ppp_field::CONTROL, ..] => &frame[2..],
        [chdlc_field::UNICAST | chdlc_field::BROADCAST, ..] => return chdlc(frame),
        _ => frame,
    };
    match *rest {
        [p, ..] if p & 1 == 1 => by_ppp_protocol(u16::from(p), &rest[1..]),
        [p0, p1, ..] => by_ppp_protocol(u16::from_be_bytes([p0, p1]), &rest[2..]),
        _ => Err(NonIpv6::Malformed),
    }
}

/// Cisco HDLC (`LINKTYPE_C_HDLC`), 4 bytes:
///
/// ```text
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Address 0x0f/0x8f | Control 0 |      EtherType (2..4)         |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
pub mod chdlc_field {
    use std::ops::Range;
    pub const UNICAST: u8 = 0x0f;
    pub const BROADCAST: u8 = 0x8f;
    pub const ADDRESS: usize = 0;
    pub const CONTROL: usize = 1;
    pub const PROTOCOL: Range<usize> = 2..4;
    pub const PAYLOAD: usize = PROTOCOL.end;
}

fn chdlc(frame: &[u8]) -> Result<Network<'_>, NonIpv6> {
    let ty = be16(frame, chdlc_field::PROTOCOL).ok_or(NonIpv6::Malformed)?;
    by_ethertype(ty, &frame[chdlc_field::PAYLOAD..])
}

/// Frame Relay (`LINKTYPE_FRELAY`): a Q.922 address of 2 to 4 bytes (the last has its EA bit,
/// bit 0, set), then multiprotocol encapsulation (RFC 2427) or, Cisco style, an EtherType:
///
/// ```text
/// RFC 2427: | Q.922 address | 0x03 control | [0x00 pad] | NLPID | payload
///           NLPID 0x8e IPv6, 0xcc IPv4, 0x80 SNAP: OUI(3) PID(2), OUI 00-00-00 → PID is an EtherType
/// Cisco:    | Q.922 address | EtherType(2) | payload
/// ```
pub mod frelay_field {
    pub const EA_BIT: u8 = 0x01;
    pub const MAX_ADDRESS_LEN: usize = 4;
    pub const UI: u8 = 0x03;
    pub const PAD: u8 = 0x00;
    pub const NLPID_IPV6: u8 = 0x8e;
    pub const NLPID_IPV4: u8 = 0xcc;
    pub const NLPID_SNAP: u8 = 0x80;
    /// OUI (3 bytes) and PID (2 bytes) after the SNAP NLPID.
    pub const SNAP_LEN: usize = 5;
}

fn frelay(frame: &[u8]) -> Result<Network<'_>, NonIpv6> {
    use frelay_field as f;
    let addr_len = frame
        .iter()
        .take(f::MAX_ADDRESS_LEN)
        .position(|b| b & f::EA_BIT != 0)
        .ok_or(NonIpv6::Malformed)?
        + 1;
    let rest = &frame[addr_len..];
    if rest.first() != Some(&f::UI) {
        let ty = be16(rest, 0..2).ok_or(NonIpv6::Malformed)?;
        return by_ethertype(ty, &rest[2..]);
    }
    let mut rest = &rest[1..];
    if rest.first() == Some(&f::PAD) {
        rest = &rest[1..];
    }
    let (&nlpid, rest) = rest.split_first().ok_or(NonIpv6::Malformed)?;
    match nlpid {
        f::NLPID_IPV6 => Ok(Network::Ipv6(rest)),
        f::NLPID_IPV4 => Ok(Network::Ipv4(rest)),
        f::NLPID_SNAP => match *rest {
            [0, 0, 0, p0, p1, ..] => {
                by_ethertype(u16::from_be_bytes([p0, p1]), &rest[f::SNAP_LEN..])
            }
            [_, _, _, _, _, ..] => Err(NonIpv6::Other),
            _ => Err(NonIpv6::Malformed),
        },
        _ => Err(NonIpv6::Other),
    }
}

/// NFLOG (`LINKTYPE_NFLOG`, what `nft log group N` and `iptables -j NFLOG` write): a 4-byte
/// header, then type-length-value attributes. Length and type are in the byte order of the
/// capturing host; the length counts the 4-byte attribute header but not the padding to a
/// multiple of 4.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |    Family     |    Version    |   Resource id (big-endian)    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |   TLV length (host order)     |     TLV type (host order)     |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |          value (length - 4 bytes), padded to 4 bytes ...      |
/// ```
pub mod nflog_field {
    use std::ops::Range;
    pub const FAMILY: usize = 0;
    pub const VERSION: usize = 1;
    pub const RESOURCE_ID: Range<usize> = 2..4;
    pub const TLVS: usize = 4;
    pub const TLV_LENGTH: Range<usize> = 0..2;
    pub const TLV_TYPE: Range<usize> = 2..4;
    pub const TLV_HEADER_LEN: usize = 4;
    /// The attribute type bits (the top two are netlink's nested / byte-order flags).
    pub const TYPE_MASK: u16 = 0x3fff;
    /// NFULA_PAYLOAD: the packet from its network header on.
    pub const PAYLOAD: u16 = 9;
    pub const AF_INET: u8 = 2;
    pub const AF_INET6: u8 = 10;
}

fn nflog(frame: &[u8]) -> Result<Network<'_>, NonIpv6> {
    use nflog_field as f;
    let family = *frame.get(f::FAMILY).ok_or(NonIpv6::Malformed)?;
    let mut rest = frame.get(f::TLVS..).ok_or(NonIpv6::Malformed)?;
    // The writer's byte order is unknown: attribute types are small, so the order that gives a
    // small first type is the writer's.
    let little = match *rest {
        [_, _, t0, t1, ..] => u16::from_le_bytes([t0, t1]) & f::TYPE_MASK < 0x100,
        _ => return Err(NonIpv6::Malformed),
    };
    let read = |b: [u8; 2]| {
        if little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        }
    };
    // Every attribute takes at least 4 bytes, so this ends.
    while let [l0, l1, t0, t1, ..] = *rest {
        let len = usize::from(read([l0, l1]));
        if len < f::TLV_HEADER_LEN || len > rest.len() {
            return Err(NonIpv6::Malformed);
        }
        if read([t0, t1]) & f::TYPE_MASK == f::PAYLOAD {
            let value = &rest[f::TLV_HEADER_LEN..len];
            return match family {
                f::AF_INET6 => Ok(Network::Ipv6(value)),
                f::AF_INET => Ok(Network::Ipv4(value)),
                _ => Err(NonIpv6::Other),
            };
        }
        let padded = len.next_multiple_of(4).min(rest.len());
        rest = &rest[padded..];
    }
    if rest.is_empty() {
        // A log entry without the packet (e.g. `nft log group N snaplen 0`).
        Err(NonIpv6::Other)
    } else {
        Err(NonIpv6::Malformed)
    }
}

/// BSD NULL (host byte order family) and LOOP (network byte order family).
fn null(link: LinkType, frame: &[u8]) -> Result<Network<'_>, NonIpv6> {
    let Some(word) = frame.get(..4) else {
        return Err(NonIpv6::Malformed);
    };
    let word: [u8; 4] = [word[0], word[1], word[2], word[3]];
    let fam = if link == LinkType::LOOP {
        u32::from_be_bytes(word)
    } else {
        // The writer's byte order is unknown: families are small, so the order that gives a
        // small number is the right one.
        let le = u32::from_le_bytes(word);
        if le <= 0xffff {
            le
        } else {
            u32::from_be_bytes(word)
        }
    };
    let payload = &frame[4..];
    if family::INET6.contains(&fam) {
        Ok(Network::Ipv6(payload))
    } else if fam == family::INET {
        Ok(Network::Ipv4(payload))
    } else {
        Err(NonIpv6::Other)
    }
}

/// Raw IP: the version nibble says which.
fn raw(frame: &[u8]) -> Result<Network<'_>, NonIpv6> {
    match frame.first().map(|b| b >> 4) {
        Some(6) => Ok(Network::Ipv6(frame)),
        Some(4) => Ok(Network::Ipv4(frame)),
        _ => Err(NonIpv6::Malformed),
    }
}

/// Linux cooked capture v1: 16-byte header, protocol in the last two bytes (VLAN tags as
/// libpcap re-inserts them after the header).
fn sll(frame: &[u8]) -> Result<Network<'_>, NonIpv6> {
    let ty = be16(frame, sll_field::PROTOCOL).ok_or(NonIpv6::Malformed)?;
    untag(ty, &frame[sll_field::PAYLOAD..])
}

/// Linux cooked capture v2: 20-byte header, protocol in the first two bytes (VLAN tags as
/// libpcap re-inserts them after the header).
fn sll2(frame: &[u8]) -> Result<Network<'_>, NonIpv6> {
    if frame.len() < sll2_field::PAYLOAD {
        return Err(NonIpv6::Malformed);
    }
    let ty = be16(frame, sll2_field::PROTOCOL).ok_or(NonIpv6::Malformed)?;
    untag(ty, &frame[sll2_field::PAYLOAD..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_link_type_network_decodes_is_listed_as_decoded() {
        let frames: [&[u8]; 3] = [&[], &[0u8; 64], &[0xffu8; 64]];
        for n in 0..=300u32 {
            let link = LinkType(n);
            if link.is_decoded() {
                continue;
            }
            for f in frames {
                assert!(
                    matches!(network(link, f), Err(NonIpv6::Other)),
                    "link type {n} is decoded but not in LinkType::DECODED"
                );
            }
        }
    }

    const IP6: [u8; 2] = [0x60, 0];

    fn eth(tags: &[[u8; 4]], ty: [u8; 2], payload: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        for t in tags {
            f.extend_from_slice(t);
        }
        f.extend_from_slice(&ty);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn ethernet_kinds() {
        let f = eth(&[], [0x86, 0xdd], &IP6);
        assert_eq!(ipv6_payload(LinkType::ETHERNET, &f), Ok(&IP6[..]));
        let f = eth(&[], [0x08, 0x00], &[0x45]);
        assert_eq!(ipv6_payload(LinkType::ETHERNET, &f), Err(NonIpv6::Ipv4));
        let f = eth(&[], [0x08, 0x06], &[0; 28]);
        assert_eq!(ipv6_payload(LinkType::ETHERNET, &f), Err(NonIpv6::Arp));
        let f = eth(&[], [0x88, 0xcc], &[0; 28]);
        assert_eq!(ipv6_payload(LinkType::ETHERNET, &f), Err(NonIpv6::Other));
        // 802.3 length field.
        let f = eth(&[], [0x00, 0x40], &[0xaa; 8]);
        assert_eq!(ipv6_payload(LinkType::ETHERNET, &f), Err(NonIpv6::Other));
        assert_eq!(
            ipv6_payload(LinkType::ETHERNET, &f[..13]),
            Err(NonIpv6::Malformed)
        );
        assert_eq!(
            ipv6_payload(LinkType::ETHERNET, &[]),
            Err(NonIpv6::Malformed)
        );
    }

    #[test]
    fn vlan_and_qinq() {
        let f = eth(&[[0x81, 0x00, 0x00, 0x64]], [0x86, 0xdd], &IP6);
        assert_eq!(ipv6_payload(LinkType::ETHERNET, &f), Ok(&IP6[..]));
        let f = eth(
            &[[0x88, 0xa8, 0x00, 0x0a], [0x81, 0x00, 0x00, 0x64]],
            [0x86, 0xdd],
            &IP6,
        );
        assert_eq!(ipv6_payload(LinkType::ETHERNET, &f), Ok(&IP6[..]));
        let f = eth(
            &[[0x91, 0x00, 0x00, 0x0a], [0x81, 0x00, 0x00, 0x64]],
            [0x08, 0x06],
            &[],
        );
        assert_eq!(ipv6_payload(LinkType::ETHERNET, &f), Err(NonIpv6::Arp));
        // A tag with nothing after it.
        let f = eth(&[], [0x81, 0x00], &[0x00, 0x64]);
        assert_eq!(
            ipv6_payload(LinkType::ETHERNET, &f),
            Err(NonIpv6::Malformed)
        );
        // Too many tags.
        let f = eth(&[[0x81, 0, 0, 1]; 5], [0x86, 0xdd], &IP6);
        assert_eq!(
            ipv6_payload(LinkType::ETHERNET, &f),
            Err(NonIpv6::Malformed)
        );
    }

    #[test]
    fn null_and_loop() {
        let f = [30, 0, 0, 0, 0x60, 0];
        assert_eq!(ipv6_payload(LinkType::NULL, &f), Ok(&f[4..]));
        let f = [0, 0, 0, 24, 0x60, 0];
        assert_eq!(ipv6_payload(LinkType::NULL, &f), Ok(&f[4..]));
        assert_eq!(ipv6_payload(LinkType::LOOP, &f), Ok(&f[4..]));
        let f = [2, 0, 0, 0, 0x45];
        assert_eq!(ipv6_payload(LinkType::NULL, &f), Err(NonIpv6::Ipv4));
        let f = [7, 0, 0, 0, 0x45];
        assert_eq!(ipv6_payload(LinkType::NULL, &f), Err(NonIpv6::Other));
        assert_eq!(
            ipv6_payload(LinkType::NULL, &[2, 0, 0]),
            Err(NonIpv6::Malformed)
        );
    }

    #[test]
    fn raw_ip() {
        assert_eq!(ipv6_payload(LinkType::RAW, &IP6), Ok(&IP6[..]));
        assert_eq!(
            ipv6_payload(LinkType::RAW_BSD12, &[0x45]),
            Err(NonIpv6::Ipv4)
        );
        assert_eq!(
            ipv6_payload(LinkType::RAW, &[0x10]),
            Err(NonIpv6::Malformed)
        );
        assert_eq!(ipv6_payload(LinkType::RAW, &[]), Err(NonIpv6::Malformed));
        assert_eq!(ipv6_payload(LinkType::IPV6, &IP6), Ok(&IP6[..]));
        assert_eq!(ipv6_payload(LinkType::IPV4, &[0x45]), Err(NonIpv6::Ipv4));
        assert_eq!(ipv6_payload(LinkType(147), &IP6), Err(NonIpv6::Other));
    }

    #[test]
    fn linux_cooked() {
        let mut f = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x86, 0xdd];
        f.extend_from_slice(&IP6);
        assert_eq!(ipv6_payload(LinkType::LINUX_SLL, &f), Ok(&IP6[..]));
        f[14] = 0x08;
        f[15] = 0x06;
        assert_eq!(ipv6_payload(LinkType::LINUX_SLL, &f), Err(NonIpv6::Arp));
        assert_eq!(
            ipv6_payload(LinkType::LINUX_SLL, &f[..15]),
            Err(NonIpv6::Malformed)
        );

        let mut f = vec![
            0x86, 0xdd, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0,
        ];
        f.extend_from_slice(&IP6);
        assert_eq!(ipv6_payload(LinkType::LINUX_SLL2, &f), Ok(&IP6[..]));
        f[0] = 0x08;
        f[1] = 0x00;
        assert_eq!(ipv6_payload(LinkType::LINUX_SLL2, &f), Err(NonIpv6::Ipv4));
        assert_eq!(
            ipv6_payload(LinkType::LINUX_SLL2, &f[..19]),
            Err(NonIpv6::Malformed)
        );
    }

    /// libpcap puts the tag the kernel stripped back after the cooked header: the protocol
    /// field says 0x8100, then come the TCI and the inner type.
    #[test]
    fn linux_cooked_with_vlan_tags() {
        let mut sll = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x81, 0x00];
        sll.extend_from_slice(&[0x00, 0x64, 0x86, 0xdd]);
        sll.extend_from_slice(&IP6);
        assert_eq!(ipv6_payload(LinkType::LINUX_SLL, &sll), Ok(&IP6[..]));
        assert_eq!(
            ipv6_payload(LinkType::LINUX_SLL, &sll[..18]),
            Err(NonIpv6::Malformed)
        );

        let mut sll2 = vec![
            0x88, 0xa8, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0,
        ];
        sll2.extend_from_slice(&[0x00, 0x0a, 0x81, 0x00, 0x00, 0xc8, 0x08, 0x00]);
        assert_eq!(
            ipv6_payload(LinkType::LINUX_SLL2, &sll2),
            Err(NonIpv6::Ipv4)
        );
        sll2[26] = 0x86;
        sll2[27] = 0xdd;
        sll2.extend_from_slice(&IP6);
        assert_eq!(ipv6_payload(LinkType::LINUX_SLL2, &sll2), Ok(&IP6[..]));
    }

    #[test]
    fn mpls_stack_until_bottom_of_stack() {
        let f = eth(
            &[],
            [0x88, 0x47],
            &[0, 0x64, 0x00, 64, 0, 0xc8, 0x01, 64, 0x60, 0],
        );
        assert_eq!(
            network(LinkType::ETHERNET, &f),
            Ok(Network::Ipv6(&[0x60, 0][..]))
        );
        let f = eth(&[], [0x88, 0x47], &[0, 0x64, 0x01, 64, 0x45]);
        assert_eq!(ipv6_payload(LinkType::ETHERNET, &f), Err(NonIpv6::Ipv4));
        let f = eth(&[], [0x88, 0x47], &[0, 0x64, 0x01, 64, 0x00, 0, 0, 0]);
        assert_eq!(
            ipv6_payload(LinkType::ETHERNET, &f),
            Err(NonIpv6::MplsPseudowire)
        );
        // No bottom of stack, a stack cut short, and nothing after the bottom.
        let f = eth(
            &[],
            [0x88, 0x47],
            &[0, 0x64, 0x00, 64].repeat(MAX_MPLS_LABELS + 1),
        );
        assert_eq!(
            ipv6_payload(LinkType::ETHERNET, &f),
            Err(NonIpv6::Malformed)
        );
        let f = eth(&[], [0x88, 0x47], &[0, 0x64, 0x01]);
        assert_eq!(
            ipv6_payload(LinkType::ETHERNET, &f),
            Err(NonIpv6::Malformed)
        );
        let f = eth(&[], [0x88, 0x47], &[0, 0x64, 0x01, 64]);
        assert_eq!(
            ipv6_payload(LinkType::ETHERNET, &f),
            Err(NonIpv6::Malformed)
        );
    }

    #[test]
    fn ppp_framings() {
        let mut f = vec![0xff, 0x03, 0x00, 0x57];
        f.extend_from_slice(&IP6);
        assert_eq!(ipv6_payload(LinkType::PPP, &f), Ok(&IP6[..]));
        // Address and control omitted, protocol field compressed (IPv4, 0x21).
        assert_eq!(
            ipv6_payload(LinkType::PPP, &[0x21, 0x45]),
            Err(NonIpv6::Ipv4)
        );
        // Cisco HDLC inside LINKTYPE_PPP_HDLC.
        let mut c = vec![0x8f, 0x00, 0x86, 0xdd];
        c.extend_from_slice(&IP6);
        assert_eq!(ipv6_payload(LinkType::PPP_HDLC, &c), Ok(&IP6[..]));
        assert_eq!(ipv6_payload(LinkType::C_HDLC, &c), Ok(&IP6[..]));
        assert_eq!(
            ipv6_payload(LinkType::C_HDLC, &c[..3]),
            Err(NonIpv6::Malformed)
        );
        assert_eq!(
            ipv6_payload(LinkType::PPP_WITH_DIR, &[]),
            Err(NonIpv6::Malformed)
        );
        // LCP is not IP.
        assert_eq!(
            ipv6_payload(LinkType::PPP, &[0xff, 0x03, 0xc0, 0x21, 1]),
            Err(NonIpv6::Other)
        );
    }

    #[test]
    fn frame_relay_address_lengths_and_cisco_style() {
        // A 3-byte Q.922 address (EA set on the third byte), NLPID IPv6.
        let mut f = vec![0x18, 0x40, 0x01, 0x03, 0x8e];
        f.extend_from_slice(&IP6);
        assert_eq!(ipv6_payload(LinkType::FRELAY, &f), Ok(&IP6[..]));
        // Cisco style: address then an EtherType.
        let mut c = vec![0x18, 0x41, 0x86, 0xdd];
        c.extend_from_slice(&IP6);
        assert_eq!(ipv6_payload(LinkType::FRELAY, &c), Ok(&IP6[..]));
        // No EA bit in four bytes.
        assert_eq!(
            ipv6_payload(LinkType::FRELAY, &[0x18, 0x40, 0x40, 0x40, 0x03]),
            Err(NonIpv6::Malformed)
        );
        // SNAP with a non-zero OUI.
        assert_eq!(
            ipv6_payload(
                LinkType::FRELAY,
                &[0x18, 0x41, 0x03, 0x00, 0x80, 0, 0x80, 0xc2, 0, 7]
            ),
            Err(NonIpv6::Other)
        );
    }

    #[test]
    fn nflog_attribute_lengths_are_checked() {
        // An attribute whose length runs past the end.
        let f = [10, 0, 0, 0, 0x40, 0, 9, 0, 0x60];
        assert_eq!(ipv6_payload(LinkType::NFLOG, &f), Err(NonIpv6::Malformed));
        // A length below the attribute header.
        let f = [10, 0, 0, 0, 2, 0, 9, 0];
        assert_eq!(ipv6_payload(LinkType::NFLOG, &f), Err(NonIpv6::Malformed));
        let mut f = vec![10, 0, 0, 0, 6, 0, 9, 0];
        f.extend_from_slice(&IP6);
        assert_eq!(ipv6_payload(LinkType::NFLOG, &f), Ok(&IP6[..]));
    }
}
