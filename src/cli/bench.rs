//! `flowpol bench`: every engine on the same packets, 3-tuple and 5-tuple, in one process; or,
//! with `--sweep`, every engine on generated rule sets of several sizes.

use crate::bench::sweep::{self, SweepReport};
use crate::bench::{self, BenchReport, Frames, plot};
use crate::classify::EngineKind;
use crate::cli::{EXIT_FINDINGS, EXIT_OK, OutputFormat};
use crate::r#gen::classbench::{self, As, CbPacket, Import};
use crate::r#gen::rules::{self, Shape};
use crate::r#gen::trace_check::{self, TraceCheck};
use crate::packet::LinkType;
use crate::policy::Policy;
use crate::policy::model::Prefix;
use crate::policy::syntax::TupleKind;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Measure the engines on the same packets, 3-tuple and 5-tuple; or sweep rule counts.
///
/// Measure the classification engines on the same packets: build time, memory, ns per packet
/// for key extraction and for lookup, packets per second, and mismatches against the linear
/// reference (which must be 0). Every engine is measured unless --engines names some.
///
/// Packets come from a capture (--pcap) or from a ClassBench trace (--trace), which is turned
/// into Ethernet + IPv6 frames in memory exactly as `import classbench-trace` writes them (flow
/// label = destination port), so key extraction is measured on real bytes either way. The
/// report also gives how many IPv6 packets had no 5-tuple, by reason (availability: the 3-tuple
/// classifies every IPv6 packet): the table's `availability:` line, the JSON's
/// `"no_five_tuple": {"packets", "share", "by_reason"}`.
///
/// The rules come from a policy (--policy) or from a ClassBench rule set (--classbench), which
/// is imported as `import classbench --as both` does. With --classbench and --trace, every
/// packet is also checked against the trace's rule column (the rule ClassBench drew it from;
/// see docs/classbench.md): the table's last lines and the JSON's "trace" object give, for
/// the 5-tuple and the 3-tuple, `"trace": {"five": {"checked", "same", "earlier", "later",
/// "column_rule_misses", "by_reason"}, "three": {...}}`.
///
/// --plot FILE.svg draws key extraction, lookup and the whole path per engine and tuple (log
/// axes, every bar labelled with its value) and the share of packets without a 5-tuple.
///
/// --sweep SHAPE generates rule sets (`gen rules --shape SHAPE`) of each size of --rules
/// (default 100,1000,10000,100000), draws keys inside their rules, and measures every engine on
/// both tuples: build ms, bytes, ns per lookup, mismatches. The report is a table or JSON; with
/// --plot, the ns-per-lookup-against-rules figure (docs/lookup-vs-rules.svg is made this way).
///
/// Exit codes: 0 no mismatch; 1 an engine disagreed with the linear reference, or the trace
/// check found a first match after the trace's column or a column-rule miss nothing explains;
/// 2 errors.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The policy file.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["classbench", "sweep"])]
    pub policy: Option<PathBuf>,
    /// A ClassBench rule set, imported with both tuple kinds (instead of --policy); with
    /// --trace, the trace's rule column is checked.
    #[arg(long, value_name = "RULES", conflicts_with = "sweep")]
    pub classbench: Option<PathBuf>,
    /// A capture (pcap or pcapng).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["trace", "sweep"])]
    pub pcap: Option<PathBuf>,
    /// A ClassBench trace (`SRC DST SPORT DPORT PROTO FLAGS RULE`).
    #[arg(long, value_name = "CLASSBENCH_TRACE", conflicts_with = "sweep")]
    pub trace: Option<PathBuf>,
    /// The /96 the ClassBench addresses are mapped under (as for `import`).
    #[arg(long, value_name = "PREFIX/96", default_value = "::ffff:0:0/96", value_parser = classbench::parse_map)]
    pub map_v4: Prefix,
    /// Engines to report, comma-separated (default: every engine; the linear reference always
    /// runs, for mismatches).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub engines: Vec<EngineKind>,
    /// Report format.
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
    /// Also draw the figure into this SVG file (see above).
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Least CPU time each timed stage runs for, in milliseconds (times are the measuring
    /// thread's CPU time, so other processes on a shared machine count less).
    #[arg(long, default_value_t = 300, value_name = "MS")]
    pub min_ms: u64,
    /// Which IPv6 header of a tunnelled packet in --pcap is keyed (as for `classify`).
    #[arg(long, value_enum, default_value_t)]
    pub tunnel: crate::packet::tunnel::Mode,
    /// Sweep rule counts on generated sets of this shape instead of measuring packets.
    #[arg(long, value_enum, value_name = "SHAPE")]
    pub sweep: Option<Shape>,
    /// The sweep's rule counts, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "N,N,...",
        default_value = "100,1000,10000,100000",
        requires = "sweep"
    )]
    pub rules: Vec<usize>,
    /// The sweep generator's seed.
    #[arg(long, default_value_t = 42, requires = "sweep")]
    pub seed: u64,
}

/// The trace check of both tuple kinds, as the JSON's `"trace"`.
#[derive(Debug, serde::Serialize)]
struct Trace {
    five: TraceCheck,
    three: TraceCheck,
}

#[derive(serde::Serialize)]
struct Out<'a> {
    #[serde(flatten)]
    report: &'a BenchReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace: Option<&'a Trace>,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let engines = if args.engines.is_empty() {
        bench::all_engines()
    } else {
        let mut e = Vec::new();
        for k in &args.engines {
            if !e.contains(k) {
                e.push(*k);
            }
        }
        e
    };
    let min = Duration::from_millis(args.min_ms);
    if let Some(shape) = args.sweep {
        return run_sweep(&args, shape, &engines, min);
    }
    let read =
        |p: &Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
    let (policy, import): (Policy, Option<Import>) = match (&args.policy, &args.classbench) {
        (Some(p), None) => (crate::policy::load_file(p)?, None),
        (None, Some(c)) => {
            let cb = classbench::parse_rules(&read(c)?).with_context(|| c.display().to_string())?;
            let imp = classbench::import(&cb, As::Both, args.map_v4);
            (imp.policy.clone(), Some(imp))
        }
        _ => anyhow::bail!("bench needs --policy or --classbench (or --sweep)"),
    };
    let mut packets: Option<Vec<CbPacket>> = None;
    let (frames, aligned) = match (&args.pcap, &args.trace) {
        (Some(p), None) => (
            Frames::from_capture(p)
                .with_context(|| format!("reading {}", p.display()))?
                .with_tunnel(args.tunnel),
            false,
        ),
        (None, Some(t)) => {
            let pk = classbench::parse_trace(&read(t)?).with_context(|| t.display().to_string())?;
            let mut f = Frames::default();
            let mut buf = Vec::with_capacity(128);
            for p in &pk {
                buf.clear();
                if classbench::append_packet(p, args.map_v4, &mut buf).is_ok() {
                    f.push(LinkType::ETHERNET, &buf);
                }
            }
            let aligned = f.len() == pk.len();
            packets = Some(pk);
            (f, aligned)
        }
        _ => anyhow::bail!("bench needs --pcap or --trace (or --sweep)"),
    };
    // Minutes on a large set with the linear engine: say so on a terminal (hidden otherwise).
    let spin = indicatif::ProgressBar::new_spinner();
    spin.set_message(format!(
        "measuring {} engines on {} frames, both tuples",
        engines.len(),
        frames.len()
    ));
    spin.enable_steady_tick(Duration::from_millis(200));
    let measured = bench::run(&policy, &frames, &engines, min);
    spin.finish_and_clear();
    let report = &measured.report;
    let trace = match (&import, &packets) {
        (Some(imp), Some(pk)) => {
            let map = args.map_v4;
            // The bench's own linear answers when they line up with the packets.
            let five = if aligned && measured.first.five.len() == pk.len() {
                measured.first.five.clone()
            } else {
                trace_check::first_matches_five(&imp.policy, map, pk)
            };
            let three = if aligned && measured.first.three.len() == pk.len() {
                measured.first.three.clone()
            } else {
                trace_check::first_matches_three(&imp.policy, map, pk)
            };
            let what = || "checking the trace against the ClassBench rules".to_string();
            Some(Trace {
                five: trace_check::check_five(imp, map, pk, &five).with_context(what)?,
                three: trace_check::check_three(imp, map, pk, &three).with_context(what)?,
            })
        }
        _ => None,
    };
    let out = Out {
        report,
        trace: trace.as_ref(),
    };
    print!("{}", args.format.render(&out, table)?);
    if let Some(svg) = &args.plot {
        let source = args
            .trace
            .as_ref()
            .or(args.pcap.as_ref())
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let title = format!("flowpol bench: {source}, ns per packet (lower is better)");
        plot::bench_svg(report, &title, svg)
            .with_context(|| format!("writing {}", svg.display()))?;
    }
    let trace_ok = trace
        .as_ref()
        .is_none_or(|t| t.five.passes() && t.three.passes());
    Ok(if report.mismatches > 0 || !trace_ok {
        EXIT_FINDINGS
    } else {
        EXIT_OK
    })
}

fn table(o: &Out<'_>) -> String {
    let r = o.report;
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::UTF8_FULL_CONDENSED);
    t.set_header([
        "engine",
        "tuple",
        "rules",
        "keys",
        "build ms",
        "bytes",
        "key ns",
        "lookup ns",
        "batch ns",
        "probes",
        "Mpps",
        "mismatches",
    ]);
    for e in &r.engines {
        t.add_row([
            e.name.clone(),
            e.tuple.to_string(),
            e.rules.to_string(),
            e.keys.to_string(),
            format!("{:.1}", e.build_ms),
            e.bytes.to_string(),
            format!("{:.1}", e.key_ns),
            format!("{:.1}", e.lookup_ns),
            format!("{:.1}", e.batch_ns),
            format!("{:.2}", e.probes),
            format!("{:.2}", e.pps / 1e6),
            e.mismatches.to_string(),
        ]);
    }
    let mut s = format!(
        "{t}\n{} packets, {} IPv6, {} with a 5-tuple; {} mismatches against the linear reference\n\
         availability: {}",
        r.packets,
        r.ipv6,
        r.five_available,
        r.mismatches,
        r.no_five_tuple.describe(r.ipv6)
    );
    if let Some(tr) = o.trace {
        s += &format!(
            "\ntrace check five: {}\ntrace check three: {}",
            tr.five, tr.three
        );
    }
    s
}

/// Keys drawn per size: enough for a stable figure, few enough that the linear engine at 100k
/// rules finishes.
fn sweep_keys(rules: usize) -> usize {
    (2_000_000 / rules.max(1)).clamp(200, 20_000)
}

fn run_sweep(
    args: &Args,
    shape: Shape,
    engines: &[EngineKind],
    min: Duration,
) -> anyhow::Result<u8> {
    let sizes = &args.rules;
    anyhow::ensure!(
        !sizes.is_empty() && sizes.iter().all(|&n| n > 0),
        "--rules needs counts above 0"
    );
    let shape_name = format!("{shape:?}").to_lowercase();
    let bar = indicatif::ProgressBar::new(sizes.len() as u64 * 2);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut rows = Vec::new();
    for &n in sizes {
        let nk = sweep_keys(n);
        bar.set_message(format!("{shape_name} {n} rules: 3-tuple"));
        let p3 = rules::generate(shape, n, args.seed, TupleKind::Three);
        let k3 = rules::three_keys(&p3, nk, args.seed);
        rows.extend(sweep::measure("three", &p3, &k3, engines, min));
        drop((p3, k3));
        bar.inc(1);
        bar.set_message(format!("{shape_name} {n} rules: 5-tuple"));
        let p5 = rules::generate(shape, n, args.seed, TupleKind::Five);
        let k5 = rules::five_keys(&p5, nk, args.seed);
        rows.extend(sweep::measure("five", &p5, &k5, engines, min));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let report = SweepReport {
        shape: shape_name,
        seed: args.seed,
        sizes: sizes.clone(),
        mismatches: rows.iter().map(|r| r.mismatches).sum(),
        rows,
    };
    print!("{}", args.format.render(&report, sweep_table)?);
    if let Some(svg) = &args.plot {
        plot::sweep_svg(&report, svg).with_context(|| format!("writing {}", svg.display()))?;
    }
    Ok(if report.mismatches > 0 {
        EXIT_FINDINGS
    } else {
        EXIT_OK
    })
}

fn sweep_table(r: &SweepReport) -> String {
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::UTF8_FULL_CONDENSED);
    t.set_header([
        "rules",
        "tuple",
        "engine",
        "keys",
        "build ms",
        "bytes",
        "lookup ns",
        "mismatches",
    ]);
    for x in &r.rows {
        t.add_row([
            x.rules.to_string(),
            x.tuple.to_string(),
            x.engine.clone(),
            x.keys.to_string(),
            format!("{:.1}", x.build_ms),
            x.bytes.to_string(),
            format!("{:.1}", x.lookup_ns),
            x.mismatches.to_string(),
        ]);
    }
    format!(
        "{t}\ngenerated {} sets, seed {}; {} mismatches against the linear reference",
        r.shape, r.seed, r.mismatches
    )
}
