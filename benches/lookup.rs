//! Key extraction 3-tuple against 5-tuple (plain packets, extension headers, fragments, one
//! packet repeated; and a mixed population of frames with extension headers in one buffer), and
//! lookup cost, linear reference against the fast engine (the cost model's choice), 3-tuple
//! against 5-tuple, at 100, 1k, 10k and 100k generated rules (acl shape), plus the ClassBench 10k
//! sets when `../shared/data/classbench` is present, where TupleMerge and HyperSplit are also
//! measured on their own. Each iteration classifies a batch of 256 keys drawn from the rules or
//! the set's trace (throughput is per key). Probes per lookup (tables hashed, tree nodes
//! visited) are printed on stderr beside each engine, since criterion has no column for them.
//! Kept short: small samples, 2-second measurements.
//! Run: `cargo bench --bench lookup` (filter e.g. `-- 'lookup/five'`).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flowpol::classify::{
    Classifier, FastFive, FastThree, HyperSplit, Key, Linear, TmKey, TupleMerge,
};
use flowpol::r#gen::classbench::{self, As, DEFAULT_MAP_V4};
use flowpol::r#gen::rules::{self, Shape};
use flowpol::packet::key::{FiveTuple, ThreeTuple};
use flowpol::policy::Policy;
use flowpol::policy::syntax::TupleKind;
use std::hint::black_box;
use std::time::Duration;

const BATCH: usize = 256;

fn bench_engine<K: Key>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    func: &str,
    param: &str,
    engine: &dyn Classifier<K>,
    keys: &[K],
) {
    let probes: u64 = keys
        .iter()
        .map(|k| u64::from(engine.classify_counted(k).1))
        .sum();
    eprintln!(
        "lookup/{func}/{param}: {}, {:.2} probes per lookup, {} bytes",
        engine.name(),
        probes as f64 / keys.len().max(1) as f64,
        engine.memory_bytes()
    );
    g.bench_with_input(BenchmarkId::new(func, param), keys, |b, keys| {
        b.iter(|| {
            let mut n = 0u32;
            for k in keys {
                n = n.wrapping_add(engine.classify(black_box(k)).map_or(0, |r| r.0));
            }
            n
        })
    });
}

fn both(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    label: &str,
    p5: &Policy,
    k5: &[FiveTuple],
    p3: &Policy,
    k3: &[ThreeTuple],
) {
    bench_engine(g, "five/linear", label, &Linear::<FiveTuple>::new(p5), k5);
    bench_engine(g, "five/fast", label, &FastFive::new(p5), k5);
    bench_engine(g, "three/linear", label, &Linear::<ThreeTuple>::new(p3), k3);
    bench_engine(g, "three/fast", label, &FastThree::new(p3), k3);
}

/// TupleMerge and HyperSplit on their own (the tree with the cost model's parameters, when it
/// fits its budget).
fn each<K: TmKey + Send + Sync>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    label: &str,
    rules: &[&K::Match],
    keys: &[K],
    tuple: &str,
) {
    let tm = TupleMerge::<K>::from_matches(rules);
    bench_engine(g, &format!("{tuple}/tuplemerge"), label, &tm, keys);
    match HyperSplit::<K>::from_matches(rules, flowpol::classify::fast::HS_CONFIG) {
        Some(hs) => bench_engine(g, &format!("{tuple}/hypersplit"), label, &hs, keys),
        None => eprintln!("{label} {tuple}: no HyperSplit tree within its budget"),
    }
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("lookup");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements(BATCH as u64));
    for n in [100usize, 1_000, 10_000, 100_000] {
        let p5 = rules::generate(Shape::Acl, n, 42, TupleKind::Five);
        let p3 = rules::generate(Shape::Acl, n, 42, TupleKind::Three);
        let k5 = rules::five_keys(&p5, BATCH, 7);
        let k3 = rules::three_keys(&p3, BATCH, 7);
        both(&mut g, &format!("acl-{n}"), &p5, &k5, &p3, &k3);
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/classbench");
    for set in ["acl1_10k", "acl3_10k", "acl5_10k", "fw1_10k", "ipc1_10k"] {
        let Ok(text) = std::fs::read_to_string(format!("{dir}/{set}")) else {
            eprintln!("{dir} absent: ClassBench lookups not measured");
            break;
        };
        let cb = classbench::parse_rules(&text).expect("ClassBench rules");
        let p5 = classbench::to_policy(&cb, As::Five, DEFAULT_MAP_V4);
        let p3 = classbench::to_policy(&cb, As::Three, DEFAULT_MAP_V4);
        let (k5, k3): (Vec<FiveTuple>, Vec<ThreeTuple>) =
            match std::fs::read_to_string(format!("{dir}/{set}_trace")) {
                Ok(t) => {
                    let t = classbench::parse_trace(&t).expect("ClassBench trace");
                    let step = (t.len() / BATCH).max(1);
                    let t: Vec<_> = t.into_iter().step_by(step).take(BATCH).collect();
                    (
                        t.iter().map(|p| p.five(DEFAULT_MAP_V4)).collect(),
                        t.iter().map(|p| p.three(DEFAULT_MAP_V4)).collect(),
                    )
                }
                Err(_) => (
                    rules::five_keys(&p5, BATCH, 7),
                    rules::three_keys(&p3, BATCH, 7),
                ),
            };
        both(&mut g, set, &p5, &k5, &p3, &k3);
        each(&mut g, set, &FiveTuple::rules(&p5), &k5, "five");
        each(&mut g, set, &ThreeTuple::rules(&p3), &k3, "three");
    }
    g.finish();
}

fn build(c: &mut Criterion) {
    let mut g = c.benchmark_group("build");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for n in [10_000usize, 100_000] {
        let p5 = rules::generate(Shape::Fw, n, 42, TupleKind::Five);
        let p3 = rules::generate(Shape::Fw, n, 42, TupleKind::Three);
        g.bench_function(BenchmarkId::new("five/fast", n), |b| {
            b.iter(|| FastFive::new(&p5))
        });
        g.bench_function(BenchmarkId::new("three/fast", n), |b| {
            b.iter(|| FastThree::new(&p3))
        });
    }
    g.finish();
}

/// An Ethernet + IPv6 + TCP frame with the given extension headers.
fn frame(exts: etherparse::Ipv6Extensions) -> Vec<u8> {
    use etherparse::{IpHeaders, Ipv6FlowLabel, Ipv6Header, PacketBuilder};
    let ip = Ipv6Header {
        flow_label: Ipv6FlowLabel::try_new(0x12345).unwrap(),
        hop_limit: 64,
        source: [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        destination: [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
        ..Default::default()
    };
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ip(IpHeaders::Ipv6(ip, exts))
        .tcp(40000, 443, 1, 1024)
        .write(&mut out, &[0u8; 64])
        .unwrap();
    out
}

/// Key extraction, 3-tuple (link layer + fixed header) against 5-tuple (the same plus the
/// extension-header walk), on plain packets, packets with three extension headers, and fragments.
fn keys(c: &mut Criterion) {
    use etherparse::{
        IpFragOffset, IpNumber, Ipv6Extensions, Ipv6FragmentHeader, Ipv6RawExtHeader,
        Ipv6RoutingExtensions,
    };
    use flowpol::packet::{self, LinkType};
    let raw = |payload: &[u8]| Ipv6RawExtHeader::new_raw(IpNumber(59), payload).unwrap();
    let frag = |offset: u16| {
        Ipv6FragmentHeader::new(
            IpNumber(59),
            IpFragOffset::try_new(offset).unwrap(),
            true,
            7,
        )
    };
    let variants = [
        ("plain", Ipv6Extensions::default()),
        (
            "ext-headers",
            Ipv6Extensions {
                hop_by_hop_options: Some(raw(&[1, 4, 0, 0, 0, 0])),
                destination_options: Some(raw(&[1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])),
                routing: Some(Ipv6RoutingExtensions {
                    routing: raw(&[4, 0, 0, 0, 0, 0]),
                    final_destination_options: None,
                }),
                ..Default::default()
            },
        ),
        (
            "first-fragment",
            Ipv6Extensions {
                fragment: Some(frag(0)),
                ..Default::default()
            },
        ),
        (
            "non-first-fragment",
            Ipv6Extensions {
                fragment: Some(frag(100)),
                ..Default::default()
            },
        ),
    ];
    let mut g = c.benchmark_group("keys");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for (name, exts) in variants {
        let f = frame(exts);
        let (t, fixed) = packet::three(LinkType::ETHERNET, &f).expect("an IPv6 frame");
        assert_eq!(t.label.value(), 0x12345);
        let five = packet::five_of(&fixed, &t).1;
        assert_eq!(
            five.is_ok(),
            name != "non-first-fragment",
            "{name}: {five:?}"
        );
        g.bench_function(BenchmarkId::new("three", name), |b| {
            b.iter(|| packet::three(LinkType::ETHERNET, black_box(&f)).map(|(t, _)| t))
        });
        g.bench_function(BenchmarkId::new("five", name), |b| {
            b.iter(|| {
                packet::three(LinkType::ETHERNET, black_box(&f))
                    .map(|(t, fixed)| packet::five_of(&fixed, &t))
            })
        });
        // The same keys from the start of the IPv6 packet: the link-layer demultiplexing both
        // keys share is left out, so the ratio is that of the keys themselves.
        let ip = &f[14..];
        g.bench_function(BenchmarkId::new("three-from-ip", name), |b| {
            b.iter(|| packet::ipv6::Fixed::new(black_box(ip)).map(|fixed| fixed.three()))
        });
        g.bench_function(BenchmarkId::new("five-from-ip", name), |b| {
            b.iter(|| {
                packet::ipv6::Fixed::new(black_box(ip)).map(|fixed| {
                    let t = fixed.three();
                    packet::five_of(&fixed, &t)
                })
            })
        });
    }
    g.finish();
    keys_mixed(c);
}

/// Collects generated frames into one contiguous buffer, as a capture ring holds them.
struct Ring {
    bytes: Vec<u8>,
    spans: Vec<(usize, usize)>,
}

impl flowpol::source::pcap::FrameWriter for Ring {
    fn write_packet(&mut self, _: Duration, _: u32, data: &[u8]) -> std::io::Result<()> {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(data);
        self.spans.push((start, self.bytes.len()));
        // TPACKET_V3 aligns each frame to 16 bytes.
        self.bytes.resize(self.bytes.len().next_multiple_of(16), 0);
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Throughput on a population rather than one packet repeated: the IPv6 frames of a generated
/// trace that carry at least one extension header (hop-by-hop, destination options, routing,
/// first and non-first fragments, AH; lengths vary), packed in one buffer as a capture ring
/// holds them. One iteration keys every frame, so the branch predictor cannot learn one chain
/// and the per-call cost of the harness is spread over the batch. `five-etherparse` is the
/// 5-tuple as a general-purpose parser gets it (etherparse's `SlicedPacket`, which also
/// validates the transport header and gives no ports for fragments), for comparison with
/// flowpol's own walk (`five`).
fn keys_mixed(c: &mut Criterion) {
    use flowpol::packet::{self, IpNumber, LinkType};
    let mut ring = Ring {
        bytes: Vec::new(),
        spans: Vec::new(),
    };
    let cfg = flowpol::r#gen::trace::TraceConfig {
        flows: 400,
        packets: 20_000,
        seed: 11,
        link: LinkType::ETHERNET,
    };
    flowpol::r#gen::trace::generate(&cfg, &mut ring).expect("generated trace");
    let with_ext: Vec<&[u8]> = ring
        .spans
        .iter()
        .map(|&(a, b)| &ring.bytes[a..b])
        .filter(|f| {
            packet::three(LinkType::ETHERNET, f).is_ok_and(|(_, fixed)| {
                matches!(
                    IpNumber(fixed.next_header()),
                    IpNumber::HOP_BY_HOP
                        | IpNumber::IPV6_ROUTE
                        | IpNumber::IPV6_DEST_OPTS
                        | IpNumber::IPV6_FRAG
                        | IpNumber::AH
                )
            })
        })
        .collect();
    assert!(
        with_ext.len() > 500,
        "{} frames with extension headers",
        with_ext.len()
    );
    let mut g = c.benchmark_group("keys-batch");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(with_ext.len() as u64));
    let frames = &with_ext;
    g.bench_function(BenchmarkId::new("three", "ext-headers-mixed"), |b| {
        b.iter(|| {
            let mut acc = 0u128;
            for f in black_box(frames) {
                if let Ok((t, _)) = packet::three(LinkType::ETHERNET, f) {
                    acc ^= t.src ^ t.dst ^ u128::from(t.label.value());
                }
            }
            acc
        })
    });
    g.bench_function(BenchmarkId::new("five", "ext-headers-mixed"), |b| {
        b.iter(|| {
            let mut acc = 0u128;
            for f in black_box(frames) {
                if let Ok((t, fixed)) = packet::three(LinkType::ETHERNET, f)
                    && let (_, Ok(k)) = packet::five_of(&fixed, &t)
                {
                    acc ^= k.src
                        ^ k.dst
                        ^ u128::from(k.proto)
                        ^ (u128::from(k.sport) << 16)
                        ^ u128::from(k.dport);
                }
            }
            acc
        })
    });
    g.bench_function(
        BenchmarkId::new("five-etherparse", "ext-headers-mixed"),
        |b| {
            use etherparse::{NetSlice, SlicedPacket, TransportSlice};
            b.iter(|| {
                let mut acc = 0u128;
                for f in black_box(frames) {
                    let Ok(p) = SlicedPacket::from_ethernet(f) else {
                        continue;
                    };
                    let Some(NetSlice::Ipv6(ip)) = &p.net else {
                        continue;
                    };
                    let h = ip.header();
                    let ports = match &p.transport {
                        Some(TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port()),
                        Some(TransportSlice::Udp(u)) => (u.source_port(), u.destination_port()),
                        _ => (0, 0),
                    };
                    acc ^= u128::from_be_bytes(h.source())
                        ^ u128::from_be_bytes(h.destination())
                        ^ u128::from(ports.0) << 16
                        ^ u128::from(ports.1);
                }
                acc
            })
        },
    );
    g.finish();
}

criterion_group!(benches, keys, lookup, build);
criterion_main!(benches);
