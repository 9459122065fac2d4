//! The human table of `classify` on the bundled demo capture, as a snapshot (timings zeroed:
//! they are the only numbers that vary between runs).

use flowpol::classify::Linear;
use flowpol::packet::{FiveTuple, ThreeTuple};
use flowpol::pipeline::Step;
use flowpol::report::model::SourceInfo;
use flowpol::report::{Report, Tally, table};
use flowpol::source::pcap::CaptureReader;

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/demo.pcap");

const POLICY: &str = "\
class realtime mark 46
class web
default pass

three {
  rule media   dst 2001:db8:fe::/64 label 0x10000/0xf0000 -> class realtime
  rule web     dst 2001:db8:ff::/64 label 1-0xfffff -> class web
  rule lab     src fd00:1::/64 label 0 -> drop
}
five {
  rule media   dst 2001:db8:fe::/64 proto udp dport 5004-5005 -> class realtime
  rule web     dst 2001:db8:ff::/64 proto tcp dport 443 -> class web
  rule lab     src fd00:1::/64 proto icmpv6 -> drop
}
";

#[test]
fn demo_capture_table_matches_its_snapshot() {
    let policy = flowpol::policy::load_str("demo.fpol", POLICY).unwrap();
    let c3 = Linear::<ThreeTuple>::new(&policy);
    let c5 = Linear::<FiveTuple>::new(&policy);
    let mut tally = Tally::new(&policy, "linear", "linear");
    let mut step = Step::new(&c3, &c5);
    let mut reader = CaptureReader::open(DEMO).unwrap();
    reader
        .for_each(|f| {
            step.count(&f, &mut tally);
        })
        .unwrap();
    let source = SourceInfo {
        kind: "pcap".into(),
        name: "demo.pcap".into(),
    };
    let mut report = Report::new(&tally, &policy, "demo.fpol", source);
    for t in [&mut report.timing.three, &mut report.timing.five] {
        t.extract_ns_per_packet = 0.0;
        t.match_ns_per_packet = 0.0;
    }
    insta::assert_snapshot!("demo_table_snapshot", table::render(&report));
}
