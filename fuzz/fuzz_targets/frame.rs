//! Frame decoding on arbitrary bytes: the first two bytes choose the link type, the rest is the
//! frame. Decoding must never panic, and the 3-tuple must not depend on the walk.
//! Run with `cargo +nightly fuzz run frame`.
#![no_main]

use flowpol::packet::{Decoded, LinkType, decode, three};
use libfuzzer_sys::fuzz_target;

const LINKS: [LinkType; 8] = [
    LinkType::ETHERNET,
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
});
