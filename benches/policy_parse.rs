//! Parse and check a generated 100k-rule policy (targets: under 1 s and under 200 MB).
//! The peak heap used by one parse + check is measured with a counting allocator and printed.

use criterion::{Criterion, criterion_group, criterion_main};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: `p` was allocated by `System.alloc` with layout `l`.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// A deterministic ClassBench-like policy: tenant /48s, host /64s and /128s, labels exact,
/// masked and ranged, and 5-tuple rules with ports.
fn generate(n: usize) -> String {
    let mut s = String::with_capacity(n * 90);
    s.push_str("class gold mark 1\nclass silver mark 2\ndefault pass\nthree {\n");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..n / 2 {
        let r = next();
        let label = match r % 3 {
            0 => format!("{:#x}", r >> 40 & 0xfffff),
            1 => format!("{:#x}/0xff000", r >> 40 & 0xff000),
            _ => format!(
                "{:#x}-{:#x}",
                r >> 40 & 0xff000,
                (r >> 40 & 0xff000) | 0xfff
            ),
        };
        let class = if i % 2 == 0 {
            "class gold"
        } else {
            "class silver"
        };
        s.push_str(&format!(
            "    rule t{i} src 2001:db8:{:x}::/48 dst 2001:db8:ff:{:x}::/64 label {label} -> {class}\n",
            r & 0xffff,
            r >> 16 & 0xffff
        ));
    }
    s.push_str("}\nfive {\n");
    for i in 0..n / 2 {
        let r = next();
        let lo = (r >> 32) as u16 & 0xfff0;
        s.push_str(&format!(
            "    rule f{i} src 2001:db8:{:x}::/48 dst 2001:db8:ff::{:x} proto {} dport {lo}-{} -> drop\n",
            r & 0xffff,
            r >> 16 & 0xffff,
            if r & 1 == 0 { "tcp" } else { "udp" },
            lo | 0xf
        ));
    }
    s.push_str("}\n");
    s
}

fn bench(c: &mut Criterion) {
    let text = generate(100_000);
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let t = std::time::Instant::now();
    let (policy, diags) = flowpol::policy::check_source(&text);
    let elapsed = t.elapsed();
    let peak = PEAK.load(Ordering::Relaxed) - base;
    let policy = policy.expect("generated policy checks");
    assert_eq!(policy.three.len() + policy.five.len(), 100_000);
    eprintln!(
        "policy_parse: 100k rules ({} KiB of text): one parse+check {:?}, peak heap {:.1} MB, {} findings",
        text.len() / 1024,
        elapsed,
        peak as f64 / 1e6,
        diags.len()
    );
    drop(policy);
    let mut g = c.benchmark_group("policy_parse");
    g.sample_size(10);
    g.bench_function("parse_check_100k", |b| {
        b.iter(|| flowpol::policy::check_source(&text))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
