//! Key extraction and classification per packet on the bundled demo capture, held in memory:
//! the 3-tuple alone (link + fixed header), both keys (plus the extension-header walk), and the
//! whole hot path of `classify` (both keys, both linear engines, the tally).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flowpol::classify::Linear;
use flowpol::packet::{self, FiveTuple, Frame, LinkType, ThreeTuple};
use flowpol::pipeline::Step;
use flowpol::report::Tally;
use flowpol::source::pcap::CaptureReader;
use std::hint::black_box;
use std::time::Duration;

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/demo.pcap");

const POLICY: &str = "class gold\nclass silver\ndefault pass\nthree {\n  rule media dst 2001:db8:fe::/64 label 0x10000/0xf0000 -> class gold\n  rule dns dst 2001:db8:ff::53 -> class silver\n  rule lab src fd00:1::/64 label 0 -> drop\n}\nfive {\n  rule media dst 2001:db8:fe::/64 proto udp dport 5004-5005 -> class gold\n  rule dns dst 2001:db8:ff::53 proto udp dport 53 -> class silver\n  rule web proto tcp dport 443 -> pass\n}\n";

fn frames() -> Vec<(LinkType, Vec<u8>)> {
    let mut v = Vec::new();
    CaptureReader::open(DEMO)
        .unwrap()
        .for_each(|f| v.push((f.link, f.data.to_vec())))
        .unwrap();
    v
}

fn bench(c: &mut Criterion) {
    let frames = frames();
    let mut g = c.benchmark_group("packet");
    g.throughput(Throughput::Elements(frames.len() as u64));
    g.bench_function("three", |b| {
        b.iter(|| {
            for (link, d) in &frames {
                let _ = black_box(packet::three(*link, d).map(|(t, _)| t));
            }
        })
    });
    g.bench_function("decode (three + five)", |b| {
        b.iter(|| {
            for (link, d) in &frames {
                black_box(packet::decode(*link, d));
            }
        })
    });
    let policy = flowpol::policy::load_str("bench", POLICY).unwrap();
    let c3 = Linear::<ThreeTuple>::new(&policy);
    let c5 = Linear::<FiveTuple>::new(&policy);
    g.bench_function("classify hot path (linear, timed)", |b| {
        let mut tally = Tally::new(&policy, "linear", "linear");
        let mut step = Step::new(&c3, &c5);
        b.iter(|| {
            for (i, (link, d)) in frames.iter().enumerate() {
                let f = Frame {
                    number: i as u64 + 1,
                    link: *link,
                    ts: Duration::ZERO,
                    orig_len: d.len() as u32,
                    data: d,
                };
                black_box(step.count(&f, &mut tally));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
