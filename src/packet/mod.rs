//! Keys from frames: the link layer ([`link`]), the fixed IPv6 header and its 3-tuple
//! ([`ipv6`]), and the extension-header walk to the transport header for the 5-tuple, or the
//! reason it is unavailable ([`five`]).
//!
//! # The contract (after smoltcp's `wire`)
//! Every view checks the length it needs once, up front; after that check succeeds no accessor
//! panics. Every function here takes any byte slice, including empty, truncated and hostile
//! ones, and returns a value: a malformed link frame is [`NonIpv6::Malformed`], a bad or short
//! header behind the fixed header is an [`Unavailable`] reason. Nothing here allocates: the
//! results borrow from the frame.
//!
//! Decoding is split in two steps so that the cost of each key can be measured on its own:
//! [`three`] reads the link layer and the fixed header; [`five_of`] walks from there.
//! [`three_inner`] is [`three`] for `--tunnel inner`: it keys the innermost IPv6 header behind
//! the tunnels of [`tunnel`].

pub mod five;
pub mod ipv6;
pub mod key;
pub mod link;
pub mod proto;
pub mod tunnel;

pub use key::{FiveTuple, ThreeTuple, Unavailable};
pub use link::LinkType;
pub use proto::IpNumber;

use std::time::Duration;

/// A captured frame lent by a source to a closure: nothing is copied or allocated per frame.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// 1-based index in the capture, as tshark's `frame.number`.
    pub number: u64,
    /// The link-layer type the bytes start with.
    pub link: LinkType,
    /// Capture time since the Unix epoch.
    pub ts: Duration,
    /// The length of the frame on the wire (may exceed `data.len()` when the snapshot length cut it).
    pub orig_len: u32,
    /// The captured bytes.
    pub data: &'a [u8],
}

/// Why a frame carries no IPv6 packet we can key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NonIpv6 {
    Ipv4,
    Arp,
    /// Any other EtherType / address family / link type.
    Other,
    /// A link header cut short, or an IPv6 EtherType whose fixed header is short or not version 6.
    Malformed,
    /// An IPv4 packet with an IPv6 packet inside (6in4, GRE, VXLAN, ...), read with
    /// `--tunnel outer`: `--tunnel inner` classifies the IPv6 packet inside.
    Ipv4CarryingIpv6,
    /// An MPLS label stack whose payload starts with a pseudowire control word (first nibble
    /// 0, RFC 4385): an emulated circuit, not an IP packet.
    MplsPseudowire,
}

impl NonIpv6 {
    /// How many kinds there are.
    pub const COUNT: usize = 6;

    /// All kinds, in report order (new kinds go last, so indices stay).
    pub const ALL: [NonIpv6; Self::COUNT] = [
        NonIpv6::Ipv4,
        NonIpv6::Arp,
        NonIpv6::Other,
        NonIpv6::Malformed,
        NonIpv6::Ipv4CarryingIpv6,
        NonIpv6::MplsPseudowire,
    ];

    /// The stable name used in reports and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            NonIpv6::Ipv4 => "ipv4",
            NonIpv6::Arp => "arp",
            NonIpv6::Other => "other",
            NonIpv6::Malformed => "malformed",
            NonIpv6::Ipv4CarryingIpv6 => "ipv4-carrying-ipv6",
            NonIpv6::MplsPseudowire => "mpls-pseudowire",
        }
    }

    /// Index into [`NonIpv6::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for NonIpv6 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Both keys of one IPv6 packet.
#[derive(Clone, Copy, Debug)]
pub struct Ipv6Keys<'a> {
    /// The IPv6 packet (fixed header onwards, link-layer padding included).
    pub packet: &'a [u8],
    pub three: ThreeTuple,
    /// The fixed header's next-header value.
    pub next_header: u8,
    /// The last next-header value the walk reached (see [`five::Walk::proto`]).
    pub proto: u8,
    pub five: Result<FiveTuple, Unavailable>,
    /// The TCP flags byte ([`five::tcp_flags`]), read by the same walk; 0 for other protocols.
    pub tcp_flags: u8,
}

impl Ipv6Keys<'_> {
    /// The ports when the 5-tuple is available and its protocol carries ports.
    pub fn ports(&self) -> Option<(u16, u16)> {
        match self.five {
            Ok(f) if IpNumber(f.proto).has_ports() => Some((f.sport, f.dport)),
            _ => None,
        }
    }
}

/// A decoded frame.
#[derive(Clone, Copy, Debug)]
pub enum Decoded<'a> {
    Ipv6(Ipv6Keys<'a>),
    NonIpv6(NonIpv6),
}

/// The first step: link layer and fixed header, giving the 3-tuple and the view to walk on.
/// The outermost IPv6 header is keyed (`--tunnel outer`); an IPv4 packet is
/// [`NonIpv6::Ipv4CarryingIpv6`] when a tunnel in it holds IPv6, else [`NonIpv6::Ipv4`].
#[inline]
pub fn three(link: LinkType, data: &[u8]) -> Result<(ThreeTuple, ipv6::Fixed<'_>), NonIpv6> {
    let packet = match link::network(link, data)? {
        link::Network::Ipv6(p) => p,
        link::Network::Ipv4(p) => return Err(tunnel::ipv4_reason(p)),
    };
    let fixed = ipv6::Fixed::new(packet)?;
    Ok((fixed.three(), fixed))
}

/// [`three`] for `--tunnel inner`: the innermost IPv6 header behind the tunnels [`tunnel`]
/// decodes, and the kind of the outermost tunnel stepped into (`None` when the packet is not
/// tunnelled).
#[inline]
pub fn three_inner(
    link: LinkType,
    data: &[u8],
) -> Result<(ThreeTuple, ipv6::Fixed<'_>, Option<tunnel::Kind>), NonIpv6> {
    let (fixed, kind) = tunnel::innermost(link::network(link, data)?)?;
    Ok((fixed.three(), fixed, kind))
}

/// [`three`] or [`three_inner`], as `mode` says.
#[inline]
pub fn three_in(
    mode: tunnel::Mode,
    link: LinkType,
    data: &[u8],
) -> Result<(ThreeTuple, ipv6::Fixed<'_>, Option<tunnel::Kind>), NonIpv6> {
    match mode {
        tunnel::Mode::Outer => three(link, data).map(|(t, f)| (t, f, None)),
        tunnel::Mode::Inner => three_inner(link, data),
    }
}

/// The second step: the extension-header walk, giving the protocol reached and the 5-tuple.
#[inline]
pub fn five_of(
    fixed: &ipv6::Fixed<'_>,
    three: &ThreeTuple,
) -> (u8, Result<FiveTuple, Unavailable>) {
    let w = five::walk_packet(fixed);
    let five = w.five_tuple(three);
    (w.proto, five)
}

/// The second step as both keys: the extension-header walk from the fixed header [`three`]
/// gave, and the [`Ipv6Keys`] of the packet (built here only).
#[inline]
pub fn keys<'a>(three: ThreeTuple, fixed: &ipv6::Fixed<'a>) -> Ipv6Keys<'a> {
    // One walk gives the ports and the transport header (for the TCP flags) together.
    let (w, transport) = five::walk_packet_to(fixed);
    let five = w.five_tuple(&three);
    Ipv6Keys {
        packet: fixed.packet(),
        three,
        next_header: fixed.next_header(),
        proto: w.proto,
        five,
        tcp_flags: five::tcp_flags(w.proto, transport),
    }
}

/// Decodes a frame of the given link type to both keys (or the non-IPv6 kind).
pub fn decode(link: LinkType, data: &[u8]) -> Decoded<'_> {
    decode_in(tunnel::Mode::Outer, link, data)
}

/// [`decode`] keying the outermost or the innermost IPv6 header, as `mode` says.
pub fn decode_in(mode: tunnel::Mode, link: LinkType, data: &[u8]) -> Decoded<'_> {
    match three_in(mode, link, data) {
        Err(kind) => Decoded::NonIpv6(kind),
        Ok((three, fixed, _)) => Decoded::Ipv6(keys(three, &fixed)),
    }
}

#[cfg(test)]
mod tests;
