//! The hot path allocates nothing per packet: reading a capture, decoding both keys, classifying
//! with both engines, counting, and writing the per-packet JSON line, over the whole demo
//! capture, with a counting allocator that sees every allocation on this thread.

use flowpol::classify::Linear;
use flowpol::packet::{FiveTuple, ThreeTuple};
use flowpol::pipeline::Step;
use flowpol::pipeline::packets::PacketLines;
use flowpol::report::Tally;
use flowpol::source::pcap::CaptureReader;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; only counts calls on this thread.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: `p` came from `System` with layout `l`.
        unsafe { System.realloc(p, l, new) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` was allocated by `System` with layout `l`.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

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
    let before = ALLOCS.with(Cell::get);
    let mut frames = 0;
    let mut write_err = false;
    reader
        .for_each(|f| {
            frames += 1;
            let o = step.count(&f, &mut tally);
            write_err |= lines.write(&f, &o).is_err();
        })
        .unwrap();
    let allocs = ALLOCS.with(Cell::get) - before;
    assert!(!write_err);
    assert_eq!(frames, 1500);
    assert_eq!(tally.frames.packets, 1500);
    assert_eq!(allocs, 0, "{allocs} allocations over {frames} frames");
}
