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
//! ```
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
}

/// Address families found in BSD NULL/LOOP headers.
mod family {
    pub const INET: u32 = 2;
    /// Linux, NetBSD/OpenBSD (24), FreeBSD (28), Darwin (30).
    pub const INET6: [u32; 4] = [10, 24, 28, 30];
}

/// The most VLAN tags the Ethernet decoder will step over.
pub const MAX_VLAN_TAGS: usize = 4;

/// The IPv6 packet inside a frame (not yet checked beyond its link layer), or why there is none.
pub fn ipv6_payload(link: LinkType, frame: &[u8]) -> Result<&[u8], NonIpv6> {
    match link {
        LinkType::ETHERNET => ethernet(frame),
        LinkType::NULL | LinkType::LOOP => null(link, frame),
        LinkType::RAW | LinkType::RAW_BSD12 | LinkType::RAW_BSD14 => raw(frame),
        LinkType::IPV6 => Ok(frame),
        LinkType::IPV4 => Err(NonIpv6::Ipv4),
        LinkType::LINUX_SLL => sll(frame),
        LinkType::LINUX_SLL2 => sll2(frame),
        _ => Err(NonIpv6::Other),
    }
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

fn by_ethertype(ty: u16, payload: &[u8]) -> Result<&[u8], NonIpv6> {
    match ty {
        ethertype::IPV6 => Ok(payload),
        ethertype::IPV4 => Err(NonIpv6::Ipv4),
        ethertype::ARP => Err(NonIpv6::Arp),
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
fn untag(mut ty: u16, mut rest: &[u8]) -> Result<&[u8], NonIpv6> {
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

/// Ethernet II with up to [`MAX_VLAN_TAGS`] 802.1Q/802.1ad tags.
fn ethernet(frame: &[u8]) -> Result<&[u8], NonIpv6> {
    let ty = be16(frame, ethernet_field::ETHERTYPE).ok_or(NonIpv6::Malformed)?;
    if ty < 0x0600 {
        // An 802.3 length field: LLC/SNAP, never IPv6 in practice.
        return Err(NonIpv6::Other);
    }
    untag(ty, &frame[ethernet_field::PAYLOAD..])
}

/// BSD NULL (host byte order family) and LOOP (network byte order family).
fn null(link: LinkType, frame: &[u8]) -> Result<&[u8], NonIpv6> {
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
        Ok(payload)
    } else if fam == family::INET {
        Err(NonIpv6::Ipv4)
    } else {
        Err(NonIpv6::Other)
    }
}

/// Raw IP: the version nibble says which.
fn raw(frame: &[u8]) -> Result<&[u8], NonIpv6> {
    match frame.first().map(|b| b >> 4) {
        Some(6) => Ok(frame),
        Some(4) => Err(NonIpv6::Ipv4),
        _ => Err(NonIpv6::Malformed),
    }
}

/// Linux cooked capture v1: 16-byte header, protocol in the last two bytes (VLAN tags as
/// libpcap re-inserts them after the header).
fn sll(frame: &[u8]) -> Result<&[u8], NonIpv6> {
    let ty = be16(frame, sll_field::PROTOCOL).ok_or(NonIpv6::Malformed)?;
    untag(ty, &frame[sll_field::PAYLOAD..])
}

/// Linux cooked capture v2: 20-byte header, protocol in the first two bytes (VLAN tags as
/// libpcap re-inserts them after the header).
fn sll2(frame: &[u8]) -> Result<&[u8], NonIpv6> {
    if frame.len() < sll2_field::PAYLOAD {
        return Err(NonIpv6::Malformed);
    }
    let ty = be16(frame, sll2_field::PROTOCOL).ok_or(NonIpv6::Malformed)?;
    untag(ty, &frame[sll2_field::PAYLOAD..])
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
