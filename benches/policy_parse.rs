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

/// A generated acl-shape policy: half its rules on the 3-tuple, half on the 5-tuple, printed in
/// the canonical form (what `flowpol gen rules` writes).
fn generate(n: usize) -> String {
    use flowpol::r#gen::rules::{Shape, generate};
    use flowpol::policy::syntax::TupleKind;
    let mut p = generate(Shape::Acl, n / 2, 1, TupleKind::Three);
    p.five = generate(Shape::Acl, n - n / 2, 2, TupleKind::Five).five;
    flowpol::policy::fmt::format(&p)
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
