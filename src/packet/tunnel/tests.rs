use super::*;

/// A 40-byte IPv6 header, next header 59, label 0x12345, 2001:db8::1 -> 2001:db8::2.
const V6: [u8; 40] = [
    0x60, 0x01, 0x23, 0x45, 0, 0, 59, 64, //
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, //
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
];

/// An IPv4 header (no checksum) with `proto`, total length over `payload`.
fn v4(proto: u8, flags_frag: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&flags_frag.to_be_bytes());
    p.extend_from_slice(&[64, proto, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2]);
    p.extend_from_slice(payload);
    p
}

fn label(r: Result<(Fixed<'_>, Option<Kind>), NonIpv6>) -> (u32, Option<Kind>) {
    let (f, k) = r.unwrap();
    (f.three().label.value(), k)
}

#[test]
fn six_in_four_is_stepped_into_and_named_for_outer() {
    let p = v4(41, 0x4000, &V6);
    assert_eq!(
        label(innermost(Network::Ipv4(&p))),
        (0x12345, Some(Kind::SixInFour))
    );
    assert_eq!(ipv4_reason(&p), NonIpv6::Ipv4CarryingIpv6);
    // An IPv4 fragment (MF set, or an offset) is not stepped into.
    for frag in [0x2000, 0x0001] {
        let p = v4(41, frag, &V6);
        assert_eq!(ipv4_reason(&p), NonIpv6::Ipv4);
    }
    // Plain IPv4, and IPv4 carrying a short IPv6 header.
    assert_eq!(ipv4_reason(&v4(6, 0, &[0; 20])), NonIpv6::Ipv4);
    assert_eq!(ipv4_reason(&v4(41, 0, &V6[..39])), NonIpv6::Ipv4);
}

#[test]
fn gre_optional_words_are_counted_from_the_flags() {
    for (flags, words) in [(0x0000u16, 0), (0x8000, 1), (0x2000, 1), (0xb000, 3)] {
        let mut g = flags.to_be_bytes().to_vec();
        g.extend_from_slice(&[0x86, 0xdd]);
        g.extend(std::iter::repeat_n(0xaa, 4 * words));
        g.extend_from_slice(&V6);
        let Some((Kind::Gre, Network::Ipv6(inner))) = gre(&g) else {
            panic!("flags {flags:#x}")
        };
        assert_eq!(inner, &V6[..], "flags {flags:#x}");
        // One byte short of the inner header's start leaves an empty or short packet.
        assert!(gre(&g[..4 + 4 * words - 1]).is_none() || words == 0);
    }
    // Version 1 (PPTP) and routing present are not decoded.
    assert!(gre(&[0x30, 0x01, 0x88, 0x0b, 0, 0, 0, 0]).is_none());
    assert!(gre(&[0x40, 0x00, 0x86, 0xdd, 0, 0, 0, 0]).is_none());
}

#[test]
fn geneve_options_length_is_in_four_byte_words() {
    let mut g = vec![0x02, 0, 0x86, 0xdd, 0, 0, 1, 0];
    g.extend_from_slice(&[0xbb; 8]);
    g.extend_from_slice(&V6);
    let Some((Kind::Geneve, Network::Ipv6(inner))) = geneve(&g) else {
        panic!()
    };
    assert_eq!(inner, &V6[..]);
    assert!(geneve(&g[..15]).is_none());
}

#[test]
fn udp_ports_are_tried_lower_first() {
    // Source 3544 (Teredo), destination 4789 (VXLAN): the lower port, Teredo, decides.
    let mut u = vec![0x0d, 0xd8, 0x12, 0xb5, 0, 0, 0, 0];
    u.extend_from_slice(&V6);
    assert!(matches!(udp(&u), Some((Kind::Teredo, Network::Ipv6(_)))));
    // Neither port a tunnel's.
    u[0..4].copy_from_slice(&[0, 53, 0x30, 0x39]);
    assert!(udp(&u).is_none());
}

#[test]
fn gtp_u_extension_headers_are_stepped_over() {
    // E set: seq(2) n-pdu(1) next ext 0x85; one extension of 1 word ending in next ext 0.
    let mut g = vec![
        0x34, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0x85, 1, 0x10, 0x05, 0,
    ];
    g.extend_from_slice(&V6);
    let Some((Kind::GtpU, Network::Ipv6(inner))) = gtpu(&g) else {
        panic!()
    };
    assert_eq!(inner, &V6[..]);
    // An extension of length 0 would not advance: refused.
    g[12] = 0;
    assert!(gtpu(&g).is_none());
    // Not a G-PDU (echo request).
    g[1] = 1;
    assert!(gtpu(&g).is_none());
}

#[test]
fn the_outer_header_is_kept_when_a_tunnel_holds_no_ipv6() {
    let mut outer = V6;
    outer[6] = 41;
    // Next header 41, but what follows is not an IPv6 header.
    let mut p = outer.to_vec();
    p.extend_from_slice(&[0x45; 40]);
    p[4..6].copy_from_slice(&40u16.to_be_bytes());
    assert_eq!(label(innermost(Network::Ipv6(&p))), (0x12345, None));
}
