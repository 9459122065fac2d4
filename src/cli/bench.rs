//! `flowpol bench`: every engine on the same packets, 3-tuple and 5-tuple, in one process.

use crate::bench::{self, BenchReport, Frames};
use crate::classify::EngineKind;
use crate::cli::{EXIT_FINDINGS, EXIT_OK};
use crate::r#gen::classbench;
use crate::policy::model::Prefix;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::OutputFormat;

/// Measure the engines (linear, tuplemerge) on the same packets, 3-tuple and 5-tuple.
///
/// Measure the classification engines on the same packets: build time, memory, ns per packet
/// for key extraction and for lookup, packets per second, and mismatches against the linear
/// reference (which must be 0).
///
/// Packets come from a capture (--pcap) or from a ClassBench trace (--trace), which is turned
/// into Ethernet + IPv6 frames in memory exactly as `import classbench-trace` writes them (flow
/// label = destination port), so key extraction is measured on real bytes either way.
/// Exit codes: 0 no mismatch; 1 an engine disagreed with the linear reference; 2 errors.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("packets").required(true).args(["pcap", "trace"])))]
pub struct Args {
    /// The policy file.
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// A capture (pcap or pcapng).
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// A ClassBench trace (`SRC DST SPORT DPORT PROTO FLAGS RULE`).
    #[arg(long, value_name = "CLASSBENCH_TRACE")]
    pub trace: Option<PathBuf>,
    /// The /96 the trace's IPv4 addresses are mapped under (as for `import`).
    #[arg(long, value_name = "PREFIX/96", default_value = "::ffff:0:0/96", value_parser = classbench::parse_map)]
    pub map_v4: Prefix,
    /// Engines to report, comma-separated (the linear reference always runs for mismatches).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "linear,tuplemerge"
    )]
    pub engines: Vec<EngineKind>,
    /// Report format.
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
    /// Also draw ns/packet per engine (key extraction and lookup stacked) into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Least time each timed stage runs for, in milliseconds.
    #[arg(long, default_value_t = 300, value_name = "MS")]
    pub min_ms: u64,
    /// Which IPv6 header of a tunnelled packet in --pcap is keyed (as for `classify`).
    #[arg(long, value_enum, default_value_t)]
    pub tunnel: crate::packet::tunnel::Mode,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let policy = crate::policy::load_file(&args.policy)?;
    let frames = match (&args.pcap, &args.trace) {
        (Some(p), _) => Frames::from_capture(p)
            .with_context(|| format!("reading {}", p.display()))?
            .with_tunnel(args.tunnel),
        (None, Some(t)) => {
            let text =
                std::fs::read_to_string(t).with_context(|| format!("reading {}", t.display()))?;
            let packets =
                classbench::parse_trace(&text).with_context(|| t.display().to_string())?;
            Frames::from_classbench(&packets, args.map_v4)
        }
        (None, None) => anyhow::bail!("one of --pcap and --trace is required"),
    };
    let mut engines = args.engines.clone();
    engines.dedup();
    let report = bench::run(
        &policy,
        &frames,
        &engines,
        Duration::from_millis(args.min_ms),
    );
    match args.format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Table => print_table(&report),
    }
    if let Some(svg) = &args.plot {
        plot(&report, svg).with_context(|| format!("writing {}", svg.display()))?;
    }
    Ok(if report.mismatches > 0 {
        EXIT_FINDINGS
    } else {
        EXIT_OK
    })
}

fn print_table(r: &BenchReport) {
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
            format!("{:.2}", e.pps / 1e6),
            e.mismatches.to_string(),
        ]);
    }
    println!("{t}");
    println!(
        "{} packets, {} IPv6, {} with a 5-tuple; {} mismatches against the linear reference",
        r.packets, r.ipv6, r.five_available, r.mismatches
    );
}

fn plot(r: &BenchReport, path: &Path) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let n = r.engines.len().max(1);
    let ymax = r
        .engines
        .iter()
        .map(|e| e.key_ns + e.lookup_ns)
        .fold(1.0, f64::max)
        * 1.15;
    let labels: Vec<String> = r
        .engines
        .iter()
        .map(|e| format!("{} {}", e.name, e.tuple))
        .collect();
    let mut chart = ChartBuilder::on(&root)
        .caption("ns per packet: key extraction + lookup", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..n as f64, 0f64..ymax)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n * 2 + 1)
        .x_label_formatter(&|x| {
            let i = (*x - 0.5).round();
            if (x - 0.5 - i).abs() < 1e-6 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("ns / packet")
        .draw()?;
    let key_color = RGBColor(120, 160, 200);
    let lookup_color = RGBColor(220, 120, 60);
    for (i, e) in r.engines.iter().enumerate() {
        let (x0, x1) = (i as f64 + 0.15, i as f64 + 0.85);
        chart.draw_series(std::iter::once(Rectangle::new(
            [(x0, 0.0), (x1, e.key_ns)],
            key_color.filled(),
        )))?;
        chart.draw_series(std::iter::once(Rectangle::new(
            [(x0, e.key_ns), (x1, e.key_ns + e.lookup_ns)],
            lookup_color.filled(),
        )))?;
    }
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(0.0, 0.0), (0.0, 0.0)],
            key_color.filled(),
        )))?
        .label("key extraction")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], key_color.filled()));
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(0.0, 0.0), (0.0, 0.0)],
            lookup_color.filled(),
        )))?
        .label("lookup")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], lookup_color.filled()));
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()?;
    root.present()?;
    Ok(())
}
