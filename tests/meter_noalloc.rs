//! The flow meter and the hand-off to the export thread allocate nothing per packet: once the
//! table and the exporter exist, stepping frames through the real per-frame step, observing
//! packets (new flows, evictions, FIN/RST ends),
//! expiring and flushing, and queueing every record for export, over a whole capture, make no
//! allocation on this thread (a counting allocator sees every one).

use flowpol::classify::Linear;
use flowpol::export::ipfix::{ClassNames, ExportConfig, Exporter};
use flowpol::packet::{FiveTuple, ThreeTuple};
use flowpol::pipeline::Step;
use flowpol::pipeline::meter::{FlowTable, MeterConfig, Packet};
use flowpol::source::pcap::CaptureReader;
use support::alloc;

#[global_allocator]
static A: alloc::Counting = alloc::Counting;

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
    let mut step = Step::new(&c3, &c5);
    let before = alloc::thread_allocations();
    reader
        .for_each(|f| {
            // The real per-frame step: one extension-header walk gives the 5-tuple and the TCP
            // flags; the meter takes its outcome as it is.
            let outcome = step.run(&f);
            let Some(p) = Packet::of(&outcome, f.ts, 0) else {
                return;
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
    let allocs = alloc::thread_allocations() - before;
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
