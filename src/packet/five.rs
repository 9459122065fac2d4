//! The extension-header walk from the fixed header to the transport header: the ports of the
//! 5-tuple, or the reason they cannot be had ([`Unavailable`]).
//!
//! Headers stepped over (RFC 8200 order is not enforced; each may repeat):
//!
//! ```text
//! hop-by-hop (0), routing (43, incl. SRH type 4), destination options (60):
//!   | next header | hdr ext len |  ... (hdr ext len + 1) * 8 bytes in all
//! fragment (44), 8 bytes:
//!   | next header |  reserved   |  fragment offset (13 bits) |res|M|  identification (4) |
//! ```
//!
//! Then, by next-header value:
//! - TCP (6), UDP (17), SCTP (132), DCCP (33), UDP-Lite (136): source and destination port are
//!   the first 4 bytes of the header.
//! - ESP (50): [`Unavailable::Esp`], the rest is encrypted.
//! - No next header (59), and extension headers this walk does not step over (mobility 135,
//!   HIP 139, shim6 140, experimental 253/254): [`Unavailable::UnknownHeader`].
//! - Any other protocol (ICMPv6 58, OSPF 89, PIM 103, IP-in-IPv6 4/41, ...) is an upper layer
//!   without ports: a 5-tuple with both ports 0. It needs at least one byte of its header.
//!
//! # The 5-tuple is what the kernel can enforce
//! flowpol's 5-tuple means what nftables can match (`meta l4proto`, `th sport`, `th dport`), so
//! that `compile --target nft` enforces exactly what `classify` reports (issue 16):
//! - **Authentication Header (51) ends the walk**: it is the 5-tuple's protocol, with ports 0.
//!   RFC 8200 §4 counts AH among the extension headers and RFC 4302 puts the transport header
//!   behind it, but Linux's netfilter (`ipv6_find_hdr` with `IP6_FH_F_AUTH`) stops there:
//!   `meta l4proto` is 51 and `th` reads the AH. A `proto tcp` rule therefore does not match
//!   TCP behind AH, and a `proto 51` rule matches it, in flowpol and in the kernel alike.
//! - **Any fragment header with a non-zero offset** gives [`Unavailable::NonFirstFragment`],
//!   also behind a first one with offset 0 (two fragment headers, which RFC 8200 §4.1 does
//!   not allow, but which are sent): what follows it is a fragment's data, not a header. The
//!   kernel agrees for the first fragment header (`frag frag-off`); for a later one its
//!   `ipv6_find_hdr` leaves the transport offset at 0, so `th` reads the IPv6 header itself.
//!   The nft output catches a second fragment header right behind a first one at byte 40
//!   (`compile --help` and the ruleset header say which forms it cannot catch).
//! - **A payload length of 0 without a hop-by-hop header** ([`walk_packet`]) is
//!   [`Unavailable::Malformed`]: RFC 2675 allows 0 only for a jumbogram, whose Jumbo Payload
//!   option lives in a hop-by-hop header, and Linux trims such a packet to its 40-byte header,
//!   so nothing after it can be matched.
//!
//! A first fragment (offset 0, with or without M) is walked like an unfragmented packet and
//! yields ports. A header that runs past the end of the bytes is [`Unavailable::Truncated`]
//! when the capture holds fewer bytes than the IPv6 payload length announces (snapshot length,
//! jumbogram), and [`Unavailable::Malformed`] when the payload is all there and the header's
//! length is wrong.

use super::ipv6::{Fixed, Payload};
use super::key::{FiveTuple, ThreeTuple, Unavailable};
use super::proto::IpNumber;

/// What the walk found: the transport protocol and ports, or why not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Walk {
    /// The last next-header value reached: the transport protocol when `ports` is `Ok`, else the
    /// header the walk stopped at (50 for ESP, the fragment's next header for a non-first
    /// fragment, the unknown value, or the header that was cut short).
    pub proto: u8,
    /// `(sport, dport)`, both 0 for a protocol without ports.
    pub ports: Result<(u16, u16), Unavailable>,
}

impl Walk {
    /// The 5-tuple of a packet with `three`'s addresses that this walk gives, or why there is
    /// none.
    #[inline]
    pub fn five_tuple(&self, three: &ThreeTuple) -> Result<FiveTuple, Unavailable> {
        self.ports.map(|(sport, dport)| FiveTuple {
            src: three.src,
            dst: three.dst,
            proto: self.proto,
            sport,
            dport,
        })
    }
}

/// Walks from `first` (the fixed header's next header) through `payload`. Never panics, never
/// allocates; every step consumes at least 8 bytes, so it ends.
#[inline]
pub fn walk(first: u8, payload: Payload<'_>) -> Walk {
    walk_to(first, payload).0
}

/// [`walk`] from a fixed header: its next header and payload, except that a payload length of
/// 0 is a jumbogram only behind a hop-by-hop header (RFC 2675); without one the packet is
/// [`Unavailable::Malformed`] (Linux trims it to the fixed header).
#[inline]
pub fn walk_packet(fixed: &Fixed<'_>) -> Walk {
    walk_packet_to(fixed).0
}

/// [`walk_packet`], also lending the bytes from the transport header on, as [`walk_to`] does.
pub fn walk_packet_to<'a>(fixed: &Fixed<'a>) -> (Walk, &'a [u8]) {
    let first = fixed.next_header();
    if fixed.payload_length() == 0 && IpNumber(first) != IpNumber::HOP_BY_HOP {
        let w = Walk {
            proto: first,
            ports: Err(Unavailable::Malformed),
        };
        return (w, &[]);
    }
    walk_to(first, fixed.payload())
}

/// [`walk`], also lending the bytes from the transport header on (empty when the ports are
/// unavailable), so a caller can read more of the transport header (see [`tcp_flags`]).
pub fn walk_to(first: u8, payload: Payload<'_>) -> (Walk, &[u8]) {
    let short = if payload.complete {
        Unavailable::Malformed
    } else {
        Unavailable::Truncated
    };
    let mut nh = first;
    let mut rest = payload.bytes;
    loop {
        let stop = |why| {
            (
                Walk {
                    proto: nh,
                    ports: Err(why),
                },
                &[][..],
            )
        };
        match IpNumber(nh) {
            IpNumber::HOP_BY_HOP | IpNumber::IPV6_ROUTE | IpNumber::IPV6_DEST_OPTS => {
                let [next, len, ..] = *rest else {
                    return stop(short);
                };
                let total = (usize::from(len) + 1) * 8;
                if rest.len() < total {
                    return stop(short);
                }
                nh = next;
                rest = &rest[total..];
            }
            IpNumber::IPV6_FRAG => {
                let [next, _, off_hi, off_lo, _, _, _, _, ..] = *rest else {
                    return stop(short);
                };
                let offset = u16::from_be_bytes([off_hi, off_lo]) >> 3;
                nh = next;
                if offset != 0 {
                    return (
                        Walk {
                            proto: nh,
                            ports: Err(Unavailable::NonFirstFragment),
                        },
                        &[],
                    );
                }
                rest = &rest[8..];
            }
            IpNumber::ESP => return stop(Unavailable::Esp),
            IpNumber::NO_NEXT
            | IpNumber::MOBILITY
            | IpNumber::HIP
            | IpNumber::SHIM6
            | IpNumber::EXPERIMENT1
            | IpNumber::EXPERIMENT2 => return stop(Unavailable::UnknownHeader),
            IpNumber(p) if IpNumber(p).has_ports() => {
                let [s0, s1, d0, d1, ..] = *rest else {
                    return stop(short);
                };
                return (
                    Walk {
                        proto: p,
                        ports: Ok((u16::from_be_bytes([s0, s1]), u16::from_be_bytes([d0, d1]))),
                    },
                    rest,
                );
            }
            IpNumber(p) => {
                if rest.is_empty() {
                    return stop(short);
                }
                return (
                    Walk {
                        proto: p,
                        ports: Ok((0, 0)),
                    },
                    rest,
                );
            }
        }
    }
}

/// The TCP header's flags byte (CWR ECE URG ACK PSH RST SYN FIN, RFC 9293 byte 13) when `proto`
/// is TCP and the header reaches it; 0 otherwise. `transport` is what [`walk_to`] lent.
#[inline]
pub fn tcp_flags(proto: u8, transport: &[u8]) -> u8 {
    if IpNumber(proto) == IpNumber::TCP {
        transport.get(tcp::FLAGS).copied().unwrap_or(0)
    } else {
        0
    }
}

/// The TCP header's flags byte offset (RFC 9293 §3.1: after the ports, sequence and
/// acknowledgement numbers and the data offset byte) and the flag bits of [`tcp_flags`].
pub mod tcp {
    pub const FLAGS: usize = 13;
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(b: &[u8]) -> Payload<'_> {
        Payload {
            bytes: b,
            complete: true,
        }
    }
    fn cut(b: &[u8]) -> Payload<'_> {
        Payload {
            bytes: b,
            complete: false,
        }
    }

    const UDP: [u8; 8] = [0x30, 0x39, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00];
    const TCP: [u8; 20] = [
        0x04, 0xd2, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
    ];

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    #[test]
    fn tcp_flags_come_from_byte_13_of_the_tcp_header_and_are_zero_otherwise() {
        let (w, t) = walk_to(6, full(&TCP));
        assert_eq!(tcp_flags(w.proto, t), tcp::SYN);
        let (w, t) = walk_to(17, full(&UDP));
        assert_eq!(tcp_flags(w.proto, t), 0);
        // A TCP header cut before its flags byte still has ports, but no flags.
        let (w, t) = walk_to(6, cut(&TCP[..8]));
        assert_eq!(w.ports, Ok((1234, 443)));
        assert_eq!(tcp_flags(w.proto, t), 0);
        let (_, t) = walk_to(50, full(&TCP));
        assert!(t.is_empty());
    }

    #[test]
    fn plain_transports() {
        assert_eq!(
            walk(17, full(&UDP)),
            Walk {
                proto: 17,
                ports: Ok((12345, 53))
            }
        );
        assert_eq!(
            walk(6, full(&TCP)),
            Walk {
                proto: 6,
                ports: Ok((1234, 443))
            }
        );
        // SCTP: ports first, then verification tag and checksum.
        let sctp = [0x0b, 0x59, 0x0b, 0x59, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            walk(132, full(&sctp)),
            Walk {
                proto: 132,
                ports: Ok((2905, 2905))
            }
        );
        // ICMPv6 echo request: no ports.
        let icmp = [128, 0, 0, 0, 0, 1, 0, 1];
        assert_eq!(
            walk(58, full(&icmp)),
            Walk {
                proto: 58,
                ports: Ok((0, 0))
            }
        );
        // OSPF: an upper layer without ports.
        assert_eq!(
            walk(89, full(&[3, 1, 0, 0])),
            Walk {
                proto: 89,
                ports: Ok((0, 0))
            }
        );
    }

    #[test]
    fn hop_by_hop_then_udp() {
        // HBH, len 0 (8 bytes): router alert option (5, 2, 0, 0) + PadN (1, 0).
        let hbh = [17, 0, 5, 2, 0, 0, 1, 0];
        assert_eq!(walk(0, full(&cat(&[&hbh, &UDP]))).ports, Ok((12345, 53)));
    }

    #[test]
    fn destination_options_then_tcp() {
        // Dest opts, len 1 (16 bytes) of padding.
        let dst = [6, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            walk(60, full(&cat(&[&dst, &TCP]))),
            Walk {
                proto: 6,
                ports: Ok((1234, 443))
            }
        );
    }

    #[test]
    fn segment_routing_header_then_udp() {
        // SRH (routing type 4), one segment: 8 + 16 bytes, hdr ext len 2.
        let mut srh = vec![17, 2, 4, 0, 0, 0, 0, 0];
        srh.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
        assert_eq!(walk(43, full(&cat(&[&srh, &UDP]))).ports, Ok((12345, 53)));
    }

    #[test]
    fn authentication_header_is_the_protocol_as_the_kernel_sees_it() {
        // AH with a 12-byte ICV: payload len (24 / 4) - 2 = 4. netfilter's `meta l4proto` is 51
        // here, so the 5-tuple stops at AH with ports 0 rather than reading TCP behind it.
        let mut ah = vec![6, 4, 0, 0, 0, 0, 0x10, 0x01, 0, 0, 0, 1];
        ah.extend_from_slice(&[0xaa; 12]);
        assert_eq!(
            walk(51, full(&cat(&[&ah, &TCP]))),
            Walk {
                proto: 51,
                ports: Ok((0, 0))
            }
        );
        // Behind a destination options header too.
        let dst = [51, 0, 1, 4, 0, 0, 0, 0];
        assert_eq!(walk(60, full(&cat(&[&dst, &ah, &TCP]))).proto, 51);
    }

    #[test]
    fn a_second_fragment_header_with_an_offset_makes_a_non_first_fragment() {
        let first = [44, 0, 0x00, 0x01, 0, 0, 0, 7]; // offset 0, M=1, next: fragment
        let second = [6, 0, 0x00, 0x18, 0, 0, 0, 7]; // offset 3
        assert_eq!(
            walk(44, full(&cat(&[&first, &second, &TCP]))),
            Walk {
                proto: 6,
                ports: Err(Unavailable::NonFirstFragment)
            }
        );
    }

    #[test]
    fn an_upper_layer_needs_one_byte_of_header() {
        let dst = [58, 0, 1, 4, 0, 0, 0, 0];
        assert_eq!(
            walk(60, full(&dst)),
            Walk {
                proto: 58,
                ports: Err(Unavailable::Malformed)
            }
        );
        assert_eq!(walk(58, cut(&[])).ports, Err(Unavailable::Truncated));
        assert_eq!(walk(58, full(&[128])).ports, Ok((0, 0)));
    }

    fn packet(next: u8, plen: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&plen.to_be_bytes());
        p.extend_from_slice(&[next, 64]);
        p.extend_from_slice(&[0; 32]);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn payload_length_zero_is_malformed_unless_a_hop_by_hop_header_may_hold_a_jumbo_option() {
        let p = packet(6, 0, &TCP);
        let f = Fixed::new(&p).unwrap();
        assert_eq!(
            walk_packet(&f),
            Walk {
                proto: 6,
                ports: Err(Unavailable::Malformed)
            }
        );
        let hbh = [6, 0, 0xc2, 4, 0, 0, 0, 28]; // Jumbo Payload option
        let p = packet(0, 0, &cat(&[&hbh, &TCP]));
        let f = Fixed::new(&p).unwrap();
        assert_eq!(walk_packet(&f).ports, Ok((1234, 443)));
        let p = packet(6, 20, &TCP);
        assert_eq!(walk_packet(&Fixed::new(&p).unwrap()).ports, Ok((1234, 443)));
    }

    #[test]
    fn chain_of_every_kind() {
        let hbh = [60, 0, 1, 4, 0, 0, 0, 0];
        let dst = [43, 0, 1, 4, 0, 0, 0, 0];
        let rt = [44, 0, 4, 0, 0, 0, 0, 0];
        let frag = [17, 0, 0, 0, 0, 0, 0, 7]; // atomic fragment: offset 0, M=0
        let ah = [17, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1];
        let chain = cat(&[&hbh, &dst, &rt, &frag, &UDP]);
        assert_eq!(
            walk(0, full(&chain)),
            Walk {
                proto: 17,
                ports: Ok((12345, 53))
            }
        );
        // With AH before UDP the walk stops at AH (the kernel's protocol).
        let frag = [51, 0, 0, 0, 0, 0, 0, 7];
        let chain = cat(&[&hbh, &dst, &rt, &frag, &ah, &UDP]);
        assert_eq!(
            walk(0, full(&chain)),
            Walk {
                proto: 51,
                ports: Ok((0, 0))
            }
        );
    }

    #[test]
    fn first_fragment_yields_ports() {
        // Offset 0, M=1, next header UDP.
        let frag = [17, 0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef];
        assert_eq!(
            walk(44, full(&cat(&[&frag, &UDP]))),
            Walk {
                proto: 17,
                ports: Ok((12345, 53))
            }
        );
    }

    #[test]
    fn non_first_fragment() {
        // Offset 185 (1480 bytes), M=0.
        let frag = [17, 0, 0x05, 0xc8, 0xde, 0xad, 0xbe, 0xef];
        assert_eq!(
            walk(44, full(&cat(&[&frag, &[1, 2, 3, 4]]))),
            Walk {
                proto: 17,
                ports: Err(Unavailable::NonFirstFragment)
            }
        );
        // Offset 1 (8 bytes), M=1: still not first.
        let frag = [6, 0, 0x00, 0x09, 0, 0, 0, 1];
        assert_eq!(
            walk(44, full(&frag)).ports,
            Err(Unavailable::NonFirstFragment)
        );
    }

    #[test]
    fn esp() {
        let esp = [0, 0, 0x10, 0x01, 0, 0, 0, 1, 0xaa, 0xbb];
        assert_eq!(
            walk(50, full(&esp)),
            Walk {
                proto: 50,
                ports: Err(Unavailable::Esp)
            }
        );
        // Behind a destination options header.
        let dst = [50, 0, 1, 4, 0, 0, 0, 0];
        assert_eq!(
            walk(60, full(&cat(&[&dst, &esp]))).ports,
            Err(Unavailable::Esp)
        );
    }

    #[test]
    fn unknown_header_and_no_next_header() {
        assert_eq!(
            walk(59, full(&[])),
            Walk {
                proto: 59,
                ports: Err(Unavailable::UnknownHeader)
            }
        );
        let mobility = [59, 1, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            walk(135, full(&mobility)).ports,
            Err(Unavailable::UnknownHeader)
        );
        let hbh = [253, 0, 1, 4, 0, 0, 0, 0];
        assert_eq!(walk(0, full(&cat(&[&hbh, &[0; 8]]))).proto, 253);
        assert_eq!(
            walk(0, full(&cat(&[&hbh, &[0; 8]]))).ports,
            Err(Unavailable::UnknownHeader)
        );
    }

    #[test]
    fn truncated_when_capture_is_short() {
        assert_eq!(
            walk(17, cut(&UDP[..3])),
            Walk {
                proto: 17,
                ports: Err(Unavailable::Truncated)
            }
        );
        assert_eq!(walk(0, cut(&[17])).ports, Err(Unavailable::Truncated));
        assert_eq!(
            walk(0, cut(&[17, 1, 0, 0, 0, 0, 0, 0])).ports,
            Err(Unavailable::Truncated)
        );
        assert_eq!(
            walk(44, cut(&[17, 0, 0, 1])).ports,
            Err(Unavailable::Truncated)
        );
        // The 40-byte header alone.
        assert_eq!(walk(6, cut(&[])).ports, Err(Unavailable::Truncated));
    }

    #[test]
    fn malformed_when_lengths_disagree() {
        // Hop-by-hop says 16 bytes, the payload length says 8.
        let hbh = [17, 1, 1, 4, 0, 0, 0, 0];
        assert_eq!(
            walk(0, full(&hbh)),
            Walk {
                proto: 0,
                ports: Err(Unavailable::Malformed)
            }
        );
        // Payload length too small for the UDP ports.
        assert_eq!(walk(17, full(&UDP[..2])).ports, Err(Unavailable::Malformed));
    }
}
