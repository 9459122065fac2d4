//! Frame decoding on arbitrary bytes: the first two bytes choose the link type, the rest is the
//! frame. Decoding must never panic, and the 3-tuple must not depend on the walk; with
//! `--tunnel inner` the innermost header is keyed, and an outer IPv6 packet stays IPv6.
//! Run with `cargo +nightly fuzz run frame`.
#![no_main]

use flowpol::packet::tunnel::Mode;
use flowpol::packet::{Decoded, LinkType, decode, decode_in, three, three_inner};
use libfuzzer_sys::fuzz_target;

const LINKS: [LinkType; 17] = [
    LinkType::ETHERNET,
    LinkType::PPP,
    LinkType::PPP_HDLC,
    LinkType::PPP_ETHER,
    LinkType::PPP_WITH_DIR,
    LinkType::C_HDLC,
    LinkType::FRELAY,
    LinkType::NFLOG,
    LinkType::IPV4,
    LinkType::NULL,
    LinkType::LOOP,
    LinkType::RAW,
    LinkType::IPV6,
    LinkType::LINUX_SLL,
    LinkType::LINUX_SLL2,
    LinkType(147),
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, frame)) = data.split_first() else {
        return;
    };
    let link = LINKS[usize::from(sel) % LINKS.len()];
    match decode(link, frame) {
        Decoded::Ipv6(k) => {
            let (t, _) = three(link, frame).expect("decode and three agree");
            assert_eq!(t, k.three);
            if let Ok(f) = k.five {
                assert_eq!((f.src, f.dst), (t.src, t.dst));
            }
        }
        Decoded::NonIpv6(kind) => assert_eq!(three(link, frame).err(), Some(kind)),
    }
    let outer_is_ipv6 = matches!(decode(link, frame), Decoded::Ipv6(_));
    match decode_in(Mode::Inner, link, frame) {
        Decoded::Ipv6(k) => {
            let (t, _, _) = three_inner(link, frame).expect("decode_in and three_inner agree");
            assert_eq!(t, k.three);
        }
        Decoded::NonIpv6(_) => assert!(!outer_is_ipv6, "inner lost an outer IPv6 packet"),
    }
});
