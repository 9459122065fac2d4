//! Measures the fast engines against the linear reference for docs/performance.md:
//! `cargo run --release --example fast_targets [-- QUICK] [TUNE]`, or
//! `-- SCALE docs/lookup-vs-rules.svg` for the ns/lookup against rule-count plot.
//!
//! ClassBench 10k sets (from ../shared/data/classbench, with their traces when present, else
//! keys drawn from the rules), and generated 100k-rule sets. Every key goes through both engines
//! in the same run; a mismatch aborts. Times are CPU time of the measuring thread. Build peak memory is measured by a counting allocator.

use flowpol::classify::{Classifier, Key, Linear, TmConfig, TupleMerge};

/// This tool tunes and measures TupleMerge itself (not the cost model's choice).
type FastFive = TupleMerge<FiveTuple>;
type FastThree = TupleMerge<ThreeTuple>;
use flowpol::r#gen::classbench::{self, As, DEFAULT_MAP_V4};
use flowpol::r#gen::rules::{self, Shape, Tuple};
use flowpol::packet::key::{FiveTuple, ThreeTuple};
use flowpol::policy::Policy;
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

struct Counting;
static CUR: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting bytes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let c = CUR.fetch_add(l.size(), Relaxed) + l.size();
        PEAK.fetch_max(c, Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        CUR.fetch_sub(l.size(), Relaxed);
        // SAFETY: `p` came from `alloc` with this layout.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn time_ns<K, C: Classifier<K> + ?Sized>(c: &C, keys: &[K], min_rounds: usize) -> (f64, u64)
where
    K: Key,
{
    let mut rounds = 0;
    let mut sum = 0u64;
    let start = cpu_ns();
    while rounds < min_rounds || cpu_ns() - start < 300_000_000 {
        for k in keys {
            sum =
                sum.wrapping_add(black_box(c.classify(black_box(k))).map_or(0, |r| u64::from(r.0)));
        }
        rounds += 1;
    }
    (
        (cpu_ns() - start) as f64 / (rounds * keys.len()) as f64,
        sum,
    )
}

/// CPU time of this thread: the machine is shared, and wall time would count the time other
/// processes had the core.
fn cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

struct Row {
    name: String,
    rules: usize,
    build_ms: f64,
    peak_mb: f64,
    bytes: usize,
    tables: usize,
    lin_ns: f64,
    fast_ns: f64,
}

fn run<K, F>(
    name: &str,
    policy: &Policy,
    keys: &[K],
    build: impl Fn(&Policy) -> F,
    stats: impl Fn(&F) -> usize,
) -> Row
where
    K: Key + Send + Sync + std::fmt::Debug,
    K::Match: Clone + Send + Sync,
    F: Classifier<K>,
{
    let lin = Linear::<K>::new(policy);
    let base = CUR.load(Relaxed);
    PEAK.store(base, Relaxed);
    let t = cpu_ns();
    let fast = build(policy);
    let build_ms = (cpu_ns() - t) as f64 / 1e6;
    let peak_mb = (PEAK.load(Relaxed) - base) as f64 / 1e6;
    for k in keys {
        let (a, b) = (lin.classify(k), fast.classify(k));
        assert_eq!(a, b, "{name}: mismatch on {k:?}");
    }
    let (lin_ns, _) = time_ns(&lin, keys, 1);
    let (fast_ns, _) = time_ns(&fast, keys, 3);
    Row {
        name: name.to_string(),
        rules: K::rules(policy).len(),
        build_ms,
        peak_mb,
        bytes: fast.memory_bytes(),
        tables: stats(&fast),
        lin_ns,
        fast_ns,
    }
}

/// ns/lookup against rule count (100 to 100k, generated acl shape), both engines and both
/// tuple kinds, drawn as a log-log SVG.
fn scale(out: &str) {
    use plotters::prelude::*;
    let counts = [100usize, 300, 1_000, 3_000, 10_000, 30_000, 100_000];
    let mut series: Vec<(&str, Vec<(f64, f64)>)> = vec![
        ("linear five", vec![]),
        ("fast five", vec![]),
        ("linear three", vec![]),
        ("fast three", vec![]),
    ];
    for &n in &counts {
        let p5 = rules::generate(Shape::Acl, n, 42, Tuple::Five);
        let p3 = rules::generate(Shape::Acl, n, 42, Tuple::Three);
        let nk = (2_000_000 / n).clamp(200, 20_000);
        let k5 = rules::five_keys(&p5, nk, 3);
        let k3 = rules::three_keys(&p3, nk, 3);
        let l5 = time_ns(&Linear::<FiveTuple>::new(&p5), &k5, 1).0;
        let f5 = time_ns(&FastFive::new(&p5), &k5, 3).0;
        let l3 = time_ns(&Linear::<ThreeTuple>::new(&p3), &k3, 1).0;
        let f3 = time_ns(&FastThree::new(&p3), &k3, 3).0;
        println!(
            "{n} rules: linear five {l5:.0} ns, fast five {f5:.0} ns, linear three {l3:.0} ns, fast three {f3:.0} ns"
        );
        for (i, v) in [l5, f5, l3, f3].into_iter().enumerate() {
            series[i].1.push((n as f64, v));
        }
    }
    let root = SVGBackend::new(out, (720, 460)).into_drawing_area();
    root.fill(&WHITE).unwrap();
    let ymax = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 2.0;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "lookup ns per packet vs rules (generated acl, log-log)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d((80f64..130_000f64).log_scale(), (5f64..ymax).log_scale())
        .unwrap();
    chart
        .configure_mesh()
        .x_desc("rules")
        .y_desc("ns / lookup")
        .draw()
        .unwrap();
    let colors = [
        RGBColor(200, 60, 40),
        RGBColor(40, 90, 200),
        RGBColor(230, 150, 40),
        RGBColor(40, 170, 120),
    ];
    for ((name, pts), c) in series.into_iter().zip(colors) {
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .unwrap()
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled())))
            .unwrap();
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .unwrap();
    root.present().unwrap();
    println!("wrote {out}");
}

fn main() {
    if let Some(i) = std::env::args().position(|a| a == "SCALE") {
        let out = std::env::args()
            .nth(i + 1)
            .unwrap_or_else(|| "lookup-vs-rules.svg".into());
        scale(&out);
        return;
    }
    if std::env::args().any(|a| a == "BUILD") {
        // Build cost only, 100k generated rules.
        for shape in [Shape::Acl, Shape::Fw, Shape::Ipc] {
            for tuple in [Tuple::Five, Tuple::Three] {
                let p = rules::generate(shape, 100_000, 42, tuple);
                let base = CUR.load(Relaxed);
                PEAK.store(base, Relaxed);
                let t = cpu_ns();
                let (tables, bytes) = match tuple {
                    Tuple::Five => {
                        let f = FastFive::new(&p);
                        (f.stats().tables, f.memory_bytes())
                    }
                    Tuple::Three => {
                        let f = FastThree::new(&p);
                        (f.stats().tables, f.memory_bytes())
                    }
                };
                let ms = (cpu_ns() - t) as f64 / 1e6;
                let peak = (PEAK.load(Relaxed) - base) as f64 / 1e6;
                println!(
                    "{shape:?} {tuple:?} 100k: build {ms:.1} ms, peak {peak:.1} MB, {bytes} bytes, {tables} tables"
                );
            }
        }
        return;
    }
    let quick = std::env::args().any(|a| a == "QUICK");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/classbench");
    let mut rows = Vec::new();
    let n_keys = if quick { 5_000 } else { 50_000 };
    for set in ["acl1_10k", "fw1_10k", "ipc1_10k"] {
        let Ok(text) = std::fs::read_to_string(format!("{dir}/{set}")) else {
            eprintln!("{dir}/{set} absent: skipping the ClassBench sets");
            break;
        };
        let cb = classbench::parse_rules(&text).expect("ClassBench rules");
        let trace = std::fs::read_to_string(format!("{dir}/{set}_trace"))
            .ok()
            .map(|t| classbench::parse_trace(&t).expect("ClassBench trace"));
        let p5 = classbench::to_policy(&cb, As::Five, DEFAULT_MAP_V4);
        let p3 = classbench::to_policy(&cb, As::Three, DEFAULT_MAP_V4);
        let (k5, k3, src): (Vec<FiveTuple>, Vec<ThreeTuple>, &str) = match &trace {
            Some(t) => {
                let t = &t[..t.len().min(n_keys)];
                (
                    t.iter().map(|p| p.five(DEFAULT_MAP_V4)).collect(),
                    t.iter().map(|p| p.three(DEFAULT_MAP_V4)).collect(),
                    "trace",
                )
            }
            None => (
                rules::five_keys(&p5, n_keys, 1),
                rules::three_keys(&p3, n_keys, 1),
                "drawn",
            ),
        };
        if std::env::args().any(|a| a == "TUNE") {
            for limit in [16, 32, 64] {
                for step in [8, 16] {
                    let cfg = TmConfig {
                        collision_limit: limit,
                        addr_step: step,
                    };
                    let f5 = FastFive::with_config(&FiveTuple::rules(&p5), cfg);
                    let f3 = FastThree::with_config(&ThreeTuple::rules(&p3), cfg);
                    let (n5, _) = time_ns(&f5, &k5, 3);
                    let probes5: usize = k5.iter().map(|k| f5.lookup_counted(k).1).sum();
                    let checks5: usize = k5.iter().map(|k| f5.lookup_counted(k).2).sum();
                    let probes3: usize = k3.iter().map(|k| f3.lookup_counted(k).1).sum();
                    println!(
                        "   five: {:.1} probes {:.1} checks per key; three: {:.1} probes",
                        probes5 as f64 / k5.len() as f64,
                        checks5 as f64 / k5.len() as f64,
                        probes3 as f64 / k3.len() as f64
                    );
                    let (n3, _) = time_ns(&f3, &k3, 3);
                    println!(
                        "{set} limit {limit} step {step}: five {n5:.0} ns ({} tables), three {n3:.0} ns ({} tables)",
                        f5.stats().tables,
                        f3.stats().tables
                    );
                }
            }
            continue;
        }
        rows.push(run(
            &format!("{set} five ({src})"),
            &p5,
            &k5,
            FastFive::new,
            |f| f.stats().tables,
        ));
        rows.push(run(
            &format!("{set} three ({src})"),
            &p3,
            &k3,
            FastThree::new,
            |f| f.stats().tables,
        ));
    }
    let big = if quick { 20_000 } else { 100_000 };
    for shape in [Shape::Acl, Shape::Fw, Shape::Ipc] {
        let p5 = rules::generate(shape, big, 42, Tuple::Five);
        let k5 = rules::five_keys(&p5, n_keys / 5, 2);
        rows.push(run(
            &format!("gen {shape:?} {big} five"),
            &p5,
            &k5,
            FastFive::new,
            |f| f.stats().tables,
        ));
        let p3 = rules::generate(shape, big, 42, Tuple::Three);
        let k3 = rules::three_keys(&p3, n_keys / 5, 2);
        rows.push(run(
            &format!("gen {shape:?} {big} three"),
            &p3,
            &k3,
            FastThree::new,
            |f| f.stats().tables,
        ));
    }
    println!(
        "| set | rules | build ms | build peak MB | engine bytes | tables | linear ns | fast ns | speed-up |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {:.1} | {:.1} | {} | {} | {:.0} | {:.1} | {:.0}× |",
            r.name,
            r.rules,
            r.build_ms,
            r.peak_mb,
            r.bytes,
            r.tables,
            r.lin_ns,
            r.fast_ns,
            r.lin_ns / r.fast_ns
        );
    }
}
