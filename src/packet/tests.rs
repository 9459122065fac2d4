//! End-to-end decoding: byte-literal frames for each link type and reason, and property tests
//! that packets built with etherparse's builders come back as the keys they were built from.

use super::*;
use crate::label::FlowLabel;
use etherparse::{
    IpAuthHeader, IpFragOffset, IpHeaders, IpNumber, Ipv6Extensions, Ipv6FlowLabel,
    Ipv6FragmentHeader, Ipv6Header, Ipv6RawExtHeader, Ipv6RoutingExtensions, PacketBuilder, VlanId,
};
use proptest::prelude::*;

/// Ethernet + IPv6 (label 0xabcde, 2001:db8:a::1 -> 2001:db8:ff::1) + first fragment + UDP 40000 -> 53.
const ETH_FIRST_FRAGMENT: [u8; 14 + 40 + 8 + 8] = [
    0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x86, 0xdd, // ethernet
    0x60, 0x0a, 0xbc, 0xde, 0x00, 16, 44, 64, // version, label, payload length 16, fragment
    0x20, 0x01, 0x0d, 0xb8, 0, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, //
    0x20, 0x01, 0x0d, 0xb8, 0, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, //
    17, 0, 0x00, 0x01, 0, 0, 0, 42, // fragment: UDP, offset 0, M=1
    0x9c, 0x40, 0x00, 0x35, 0x05, 0xdc, 0, 0, // UDP header (of a longer datagram)
];

#[test]
fn byte_literal_first_fragment_on_ethernet() {
    let Decoded::Ipv6(k) = decode(LinkType::ETHERNET, &ETH_FIRST_FRAGMENT) else {
        panic!("not ipv6")
    };
    assert_eq!(k.three.src_addr().to_string(), "2001:db8:a::1");
    assert_eq!(k.three.dst_addr().to_string(), "2001:db8:ff::1");
    assert_eq!(k.three.label.value(), 0xabcde);
    assert_eq!(k.next_header, 44);
    assert_eq!(k.proto, 17);
    let f = k.five.unwrap();
    assert_eq!((f.proto, f.sport, f.dport), (17, 40000, 53));
    assert_eq!(k.ports(), Some((40000, 53)));
}

#[test]
fn byte_literal_reasons_end_to_end() {
    // Non-first fragment: offset 8 bytes.
    let mut f = ETH_FIRST_FRAGMENT;
    f[14 + 40 + 3] = 0x08;
    let Decoded::Ipv6(k) = decode(LinkType::ETHERNET, &f) else {
        panic!()
    };
    assert_eq!(k.five, Err(Unavailable::NonFirstFragment));
    assert_eq!(
        k.three.label.value(),
        0xabcde,
        "the 3-tuple is there regardless"
    );
    // ESP instead of the fragment header.
    let mut f = ETH_FIRST_FRAGMENT;
    f[14 + 6] = 50;
    let Decoded::Ipv6(k) = decode(LinkType::ETHERNET, &f) else {
        panic!()
    };
    assert_eq!(k.five, Err(Unavailable::Esp));
    // No next header.
    f[14 + 6] = 59;
    let Decoded::Ipv6(k) = decode(LinkType::ETHERNET, &f) else {
        panic!()
    };
    assert_eq!(k.five, Err(Unavailable::UnknownHeader));
    // Snapshot length cut inside the UDP header.
    let Decoded::Ipv6(k) = decode(LinkType::ETHERNET, &ETH_FIRST_FRAGMENT[..14 + 40 + 8 + 2])
    else {
        panic!()
    };
    assert_eq!(k.five, Err(Unavailable::Truncated));
    // Payload length 10: the UDP ports do not fit in what the header announces.
    let mut f = ETH_FIRST_FRAGMENT;
    f[14 + 5] = 10;
    let Decoded::Ipv6(k) = decode(LinkType::ETHERNET, &f) else {
        panic!()
    };
    assert_eq!(k.five, Err(Unavailable::Malformed));
    // The fixed header cut short: a malformed frame, no keys at all.
    assert!(matches!(
        decode(LinkType::ETHERNET, &ETH_FIRST_FRAGMENT[..14 + 39]),
        Decoded::NonIpv6(NonIpv6::Malformed)
    ));
}

#[test]
fn every_prefix_of_a_frame_decodes_without_panic() {
    for link in [
        LinkType::ETHERNET,
        LinkType::RAW,
        LinkType::NULL,
        LinkType::LINUX_SLL2,
    ] {
        for n in 0..=ETH_FIRST_FRAGMENT.len() {
            let _ = decode(link, &ETH_FIRST_FRAGMENT[..n]);
        }
    }
}

/// Which extension headers a generated packet carries.
#[derive(Clone, Debug)]
struct Exts {
    hbh: bool,
    dst: bool,
    routing: bool,
    first_fragment: Option<bool>,
    auth: bool,
}

#[derive(Clone, Debug)]
enum Transport {
    Tcp(u16, u16),
    Udp(u16, u16),
    Icmp,
}

#[derive(Clone, Copy, Debug)]
enum Link {
    Ethernet,
    Vlan(u16),
    QinQ(u16, u16),
    Raw,
    Sll,
}

fn exts_strategy() -> impl Strategy<Value = Exts> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<Option<bool>>(),
        any::<bool>(),
    )
        .prop_map(|(hbh, dst, routing, first_fragment, auth)| Exts {
            hbh,
            dst,
            routing,
            first_fragment,
            auth,
        })
}

fn transport_strategy() -> impl Strategy<Value = Transport> {
    prop_oneof![
        (any::<u16>(), any::<u16>()).prop_map(|(s, d)| Transport::Tcp(s, d)),
        (any::<u16>(), any::<u16>()).prop_map(|(s, d)| Transport::Udp(s, d)),
        Just(Transport::Icmp),
    ]
}

fn link_strategy() -> impl Strategy<Value = Link> {
    prop_oneof![
        Just(Link::Ethernet),
        (0u16..4095).prop_map(Link::Vlan),
        (0u16..4095, 0u16..4095).prop_map(|(a, b)| Link::QinQ(a, b)),
        Just(Link::Raw),
        Just(Link::Sll),
    ]
}

fn build(
    link: Link,
    src: u128,
    dst: u128,
    label: u32,
    exts: &Exts,
    transport: &Transport,
    payload: &[u8],
) -> (LinkType, Vec<u8>) {
    let opt = |next| Ipv6RawExtHeader::new_raw(IpNumber(next), &[1, 4, 0, 0, 0, 0]).unwrap();
    let e = Ipv6Extensions {
        hop_by_hop_options: exts.hbh.then(|| opt(0)),
        destination_options: exts.dst.then(|| opt(0)),
        routing: exts.routing.then(|| Ipv6RoutingExtensions {
            // Segment routing header, no segments left, one segment.
            routing: Ipv6RawExtHeader::new_raw(
                IpNumber(0),
                &[
                    4, 0, 0, 0, 0, 0, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
                ],
            )
            .unwrap(),
            final_destination_options: None,
        }),
        fragment: exts.first_fragment.map(|more| {
            Ipv6FragmentHeader::new(IpNumber(0), IpFragOffset::ZERO, more, 0x1234_5678)
        }),
        auth: exts
            .auth
            .then(|| IpAuthHeader::new(IpNumber(0), 0x100, 1, &[0xaa; 12]).unwrap()),
    };
    let header = Ipv6Header {
        traffic_class: 0,
        flow_label: Ipv6FlowLabel::try_new(label).unwrap(),
        payload_length: 0,
        next_header: IpNumber(0),
        hop_limit: 64,
        source: src.to_be_bytes(),
        destination: dst.to_be_bytes(),
    };
    let ip = IpHeaders::Ipv6(header, e);
    let mac_a = [2, 0, 0, 0, 0, 1];
    let mac_b = [2, 0, 0, 0, 0, 2];
    macro_rules! finish {
        ($step:expr) => {{
            let mut v = Vec::new();
            match transport {
                Transport::Tcp(s, d) => $step.tcp(*s, *d, 1, 1000).write(&mut v, payload).unwrap(),
                Transport::Udp(s, d) => $step.udp(*s, *d).write(&mut v, payload).unwrap(),
                Transport::Icmp => $step
                    .icmpv6_echo_request(7, 9)
                    .write(&mut v, payload)
                    .unwrap(),
            }
            v
        }};
    }
    match link {
        Link::Ethernet => (
            LinkType::ETHERNET,
            finish!(PacketBuilder::ethernet2(mac_a, mac_b).ip(ip)),
        ),
        Link::Vlan(id) => (
            LinkType::ETHERNET,
            finish!(
                PacketBuilder::ethernet2(mac_a, mac_b)
                    .single_vlan(VlanId::try_new(id).unwrap())
                    .ip(ip)
            ),
        ),
        Link::QinQ(a, b) => (
            LinkType::ETHERNET,
            finish!(
                PacketBuilder::ethernet2(mac_a, mac_b)
                    .double_vlan(VlanId::try_new(a).unwrap(), VlanId::try_new(b).unwrap())
                    .ip(ip)
            ),
        ),
        Link::Raw => (LinkType::RAW, finish!(PacketBuilder::ip(ip))),
        Link::Sll => (
            LinkType::LINUX_SLL,
            finish!(
                PacketBuilder::linux_sll(
                    etherparse::LinuxSllPacketType::OUTGOING,
                    6,
                    [2, 0, 0, 0, 0, 1, 0, 0]
                )
                .ip(ip)
            ),
        ),
    }
}

proptest! {
    #[test]
    fn built_packets_round_trip_to_their_keys(
        link in link_strategy(),
        src in any::<u128>(),
        dst in any::<u128>(),
        label in 0u32..=0xfffff,
        exts in exts_strategy(),
        transport in transport_strategy(),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let (lt, frame) = build(link, src, dst, label, &exts, &transport, &payload);
        let Decoded::Ipv6(k) = decode(lt, &frame) else { panic!("not decoded as IPv6") };
        prop_assert_eq!(k.three, ThreeTuple { src, dst, label: FlowLabel::from_low_bits(label) });
        let (proto, sport, dport) = match transport {
            Transport::Tcp(s, d) => (6, s, d),
            Transport::Udp(s, d) => (17, s, d),
            Transport::Icmp => (58, 0, 0),
        };
        // The 5-tuple stops at an Authentication Header, as netfilter's `meta l4proto` does.
        let (proto, sport, dport) = if exts.auth { (51, 0, 0) } else { (proto, sport, dport) };
        prop_assert_eq!(k.five, Ok(FiveTuple { src, dst, proto, sport, dport }));
        // Cutting the frame anywhere never panics, and the 3-tuple survives while the fixed
        // header is there.
        for n in (0..frame.len()).step_by(7) {
            if let Decoded::Ipv6(c) = decode(lt, &frame[..n]) {
                prop_assert_eq!(c.three, k.three);
                if let Err(why) = c.five {
                    prop_assert_eq!(why, Unavailable::Truncated);
                }
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(link in 0u32..300, data in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode(LinkType(link), &data);
        let _ = super::decode_in(super::tunnel::Mode::Inner, LinkType(link), &data);
    }
}
