//! A live capture allocates nothing per frame: a `watch` session (library API) on the loopback
//! interface, both sources, two fanout workers, each metering its flows into a table too small
//! for them (so new flows are inserted and evicted all along), while this test sends 20 000
//! datagrams from 50 source ports to itself over loopback; a counting allocator sees every allocation of the process. Root only
//! (skips elsewhere, fails under CI=true). Other loopback traffic on the machine only adds frames.

use flowpol::classify::Linear;
use flowpol::packet::{FiveTuple, ThreeTuple};
use flowpol::pipeline::live::{LiveMeter, Session, WatchConfig};
use flowpol::pipeline::meter::{FlowRecord, MeterConfig, RecordSink};
use flowpol::source::iface::SourceKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use support::alloc;

#[global_allocator]
static A: alloc::Counting = alloc::Counting;

const POLICY: &str = "class gold\ndefault pass\nthree {\n  rule l label 0x10000/0xf0000 -> class gold\n}\nfive {\n  rule u proto udp dport 5004-5005 -> class gold\n}\n";

/// Counts the records it is handed, allocating nothing.
#[derive(Default)]
struct CountRecords(AtomicU64);

impl RecordSink for CountRecords {
    fn record(&self, _: FlowRecord) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// A receiving socket on loopback (IPv6 when the host has ::1) and its address.
fn receiver() -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind("[::1]:0")
        .or_else(|_| UdpSocket::bind("127.0.0.1:0"))
        .unwrap();
    let a = s.local_addr().unwrap();
    (s, a)
}

#[test]
fn live_capture_allocates_nothing_per_frame() {
    if !support::gate::require_root("watch_noalloc") {
        return;
    }
    let policy = flowpol::policy::load_str("p", POLICY).unwrap();
    for source in [SourceKind::Ring, SourceKind::Pnet] {
        let records = Arc::new(CountRecords::default());
        let cfg = WatchConfig {
            iface: "lo".into(),
            source,
            workers: 2,
            count: None,
            write: None,
            tunnel: Default::default(),
            meter: Some(LiveMeter {
                cfg: MeterConfig {
                    max_flows: 16,
                    ..MeterConfig::default()
                },
                sink: records.clone(),
            }),
        };
        let c3 = Arc::new(Linear::<ThreeTuple>::new(&policy));
        let c5 = Arc::new(Linear::<FiveTuple>::new(&policy));
        let session = Session::start(&cfg, &policy, c3, c5).unwrap();
        let (rx, to) = receiver();
        rx.set_nonblocking(true).unwrap();
        let txs: Vec<UdpSocket> = (0..50)
            .map(|_| {
                UdpSocket::bind(if to.is_ipv6() {
                    "[::1]:0"
                } else {
                    "127.0.0.1:0"
                })
                .unwrap()
            })
            .collect();
        let payload = [7u8; 100];
        let mut sink = [0u8; 200];
        let mut drain = |n: &mut usize| {
            while rx.recv(&mut sink).is_ok() {
                *n += 1
            }
        };
        let mut received = 0;
        // Warm up (thread starts, first frames), then count.
        for tx in &txs {
            tx.send_to(&payload, to).unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
        drain(&mut received);
        let before = alloc::allocations();
        for i in 0..20_000 {
            txs[i % txs.len()].send_to(&payload, to).unwrap();
            if i % 100 == 0 {
                drain(&mut received);
            }
        }
        std::thread::sleep(Duration::from_millis(500));
        drain(&mut received);
        let allocs = alloc::allocations() - before;
        let done = session.finish();
        assert!(done.error.is_none(), "{:?}", done.error);
        let frames = done.counts.tally.frames.packets;
        assert!(frames >= 20_000, "{source:?}: {frames} frames");
        // Every frame went through a meter (IPv6 loopback) or none did (IPv4-only host); when
        // metered, the 50 flows did not fit the 2 x 8 flows and were evicted all along.
        let m = done.counts.meter;
        if to.is_ipv6() {
            assert!(m.stats.packets >= 20_000, "{source:?}: {m:?}");
            assert!(m.stats.evictions > 1000, "{source:?}: {m:?}");
            assert_eq!(m.max_flows, 16);
            assert!(m.peak_flows <= 16);
        }
        assert_eq!(records.0.load(Ordering::Relaxed), m.stats.records());
        // Per frame would be at least `frames`. The ring allocates nothing at all; pnet boxes an
        // io::Error on each 100 ms read timeout of each worker (time, not traffic).
        let limit = match source {
            SourceKind::Ring => 5,
            SourceKind::Pnet => 100,
        };
        assert!(
            allocs < limit,
            "{source:?}: {allocs} allocations while capturing {frames} frames"
        );
    }
}
