//! The hot path allocates nothing per packet: reading a capture, decoding both keys, classifying
//! with both engines, counting, and writing the per-packet JSON line, over the whole demo
//! capture, with a counting allocator that sees every allocation on this thread.

use flowpol::classify::Linear;
use flowpol::packet::{FiveTuple, ThreeTuple};
use flowpol::pipeline::Step;
use flowpol::pipeline::packets::PacketLines;
use flowpol::report::Tally;
use flowpol::source::pcap::CaptureReader;
use support::alloc;

#[global_allocator]
static A: alloc::Counting = alloc::Counting;

const POLICY: &str = "class gold\ndefault pass\nthree {\n  rule media dst 2001:db8:fe::/64 label 0x10000/0xf0000 -> class gold\n}\nfive {\n  rule media dst 2001:db8:fe::/64 proto udp dport 5004-5005 -> class gold\n}\n";

#[test]
fn reading_decoding_classifying_and_writing_lines_allocate_nothing_per_packet() {
    let policy = flowpol::policy::load_str("p", POLICY).unwrap();
    let c3 = Linear::<ThreeTuple>::new(&policy);
    let c5 = Linear::<FiveTuple>::new(&policy);
    let mut tally = Tally::new(&policy, "linear", "linear");
    let mut step = Step::new(&c3, &c5);
    let mut lines = PacketLines::new(std::io::sink(), &policy);
    let mut reader =
        CaptureReader::open(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/demo.pcap")).unwrap();
    let before = alloc::thread_allocations();
    let mut frames = 0;
    let mut write_err = false;
    reader
        .for_each(|f| {
            frames += 1;
            let o = step.count(&f, &mut tally);
            write_err |= lines.write(&f, &o).is_err();
        })
        .unwrap();
    let allocs = alloc::thread_allocations() - before;
    assert!(!write_err);
    assert_eq!(frames, 1500);
    assert_eq!(tally.frames.packets, 1500);
    assert_eq!(allocs, 0, "{allocs} allocations over {frames} frames");
}
