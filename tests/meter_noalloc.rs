//! The flow meter and the hand-off to the export thread allocate nothing per packet: once the
//! table and the exporter exist, observing packets (new flows, evictions, FIN/RST ends),
//! expiring and flushing, and queueing every record for export, over a whole capture, make no
//! allocation on this thread (a counting allocator sees every one).

use flowpol::classify::{Classifier, Linear};
use flowpol::export::ipfix::{ClassNames, ExportConfig, Exporter};
use flowpol::packet::five::{tcp_flags, walk_to};
use flowpol::packet::{FiveTuple, ThreeTuple};
use flowpol::pipeline::meter::{Class, FlowTable, MeterConfig, Packet, ip_len};
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

const POLICY: &str = "class gold\ndefault pass\nthree {\n  rule media label 0x10000/0xf0000 -> class gold\n}\nfive {\n  rule media proto udp dport 5004-5005 -> class gold\n}\n";

#[test]
fn metering_a_capture_and_queueing_its_records_allocate_nothing_per_packet() {
    let policy = flowpol::policy::load_str("p", POLICY).unwrap();
    let c3 = Linear::<ThreeTuple>::new(&policy);
    let c5 = Linear::<FiveTuple>::new(&policy);
    // Smaller than the demo's 40 flows, so evictions happen too.
    let mut table = FlowTable::new(MeterConfig {
        max_flows: 16,
        ..MeterConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let exporter = Exporter::file(
        &dir.path().join("f.ipfix"),
        ClassNames::from_policy(&policy),
        ExportConfig::default(),
    )
    .unwrap();
    let mut reader =
        CaptureReader::open(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/demo.pcap")).unwrap();
    let mut sent = 0u64;
    let before = ALLOCS.with(Cell::get);
    reader
        .for_each(|f| {
            let Ok((three, fixed)) = flowpol::packet::three(f.link, f.data) else {
                return;
            };
            let (w, transport) = walk_to(fixed.next_header(), fixed.payload());
            let five = w.ports.map(|(sport, dport)| FiveTuple {
                src: three.src,
                dst: three.dst,
                proto: w.proto,
                sport,
                dport,
            });
            let class = |r: Option<flowpol::classify::RuleId>| {
                r.map_or(Class::Default, |r| Class::Rule(r.0))
            };
            let p = Packet {
                ts: f.ts,
                ip_len: ip_len(&fixed),
                three,
                five,
                proto: w.proto,
                tcp_flags: tcp_flags(w.proto, transport),
                class3: class(c3.classify(&three)),
                class5: match five {
                    Ok(k) => class(c5.classify(&k)),
                    Err(u) => Class::Unavailable(u),
                },
            };
            let mut sink = |r| {
                sent += 1;
                exporter.send(r);
            };
            table.expire(f.ts, &mut sink);
            table.observe(&p, &mut sink);
        })
        .unwrap();
    table.flush(&mut |r| {
        sent += 1;
        exporter.send(r);
    });
    let allocs = ALLOCS.with(Cell::get) - before;
    let stats = table.stats();
    assert!(stats.evictions > 0 && stats.packets > 1000, "{stats:?}");
    assert_eq!(sent, stats.records());
    assert_eq!(
        allocs, 0,
        "allocations while metering {} packets",
        stats.packets
    );
    let e = exporter.finish().unwrap();
    assert_eq!(e.records_sent, sent);
}
