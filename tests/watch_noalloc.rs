//! A live capture allocates nothing per frame: a `watch` session (library API) on the loopback
//! interface, both sources, two fanout workers, while this test sends 20 000 datagrams to
//! itself over loopback; a counting allocator sees every allocation of the process. Root only
//! (skips elsewhere, fails under CI=true). Other loopback traffic on the machine only adds frames.

use flowpol::classify::Linear;
use flowpol::packet::{FiveTuple, ThreeTuple};
use flowpol::pipeline::live::{Session, WatchConfig};
use flowpol::source::iface::SourceKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;
use support::alloc;

#[global_allocator]
static A: alloc::Counting = alloc::Counting;

const POLICY: &str = "class gold\ndefault pass\nthree {\n  rule l label 0x10000/0xf0000 -> class gold\n}\nfive {\n  rule u proto udp dport 5004-5005 -> class gold\n}\n";

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
        let cfg = WatchConfig {
            iface: "lo".into(),
            source,
            workers: 2,
            count: None,
            write: None,
            tunnel: Default::default(),
        };
        let c3 = Arc::new(Linear::<ThreeTuple>::new(&policy));
        let c5 = Arc::new(Linear::<FiveTuple>::new(&policy));
        let session = Session::start(&cfg, &policy, c3, c5).unwrap();
        let (rx, to) = receiver();
        rx.set_nonblocking(true).unwrap();
        let tx = UdpSocket::bind(if to.is_ipv6() {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        })
        .unwrap();
        let payload = [7u8; 100];
        let mut sink = [0u8; 200];
        let mut drain = |n: &mut usize| {
            while rx.recv(&mut sink).is_ok() {
                *n += 1
            }
        };
        let mut received = 0;
        // Warm up (thread starts, first frames), then count.
        for _ in 0..100 {
            tx.send_to(&payload, to).unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
        drain(&mut received);
        let before = alloc::allocations();
        for i in 0..20_000 {
            tx.send_to(&payload, to).unwrap();
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
