//! `flowpol flows --pcap FILE`: label behaviour per 5-tuple flow, 3-tuple sharing, and whether
//! a 3-tuple policy can stand in for a 5-tuple policy on that traffic.

use super::classify::{exit_after_read, progress};
use crate::cli::OutputFormat;
use crate::pipeline::offline::{read_frames, source_info};
use crate::report::flows::{FlowAnalysis, render};
use crate::report::model::Stopped;
use crate::source::pcap::CaptureReader;
use anyhow::Context;
use std::io::Write;
use std::path::PathBuf;

/// Per-flow labels and a verdict on replacing 5-tuple rules with 3-tuple rules.
///
/// Exit codes: 0 done (whatever the verdict); 2 unreadable or corrupt capture (the report of
/// what was read comes first).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The capture file (pcap or pcapng).
    #[arg(long, value_name = "FILE")]
    pub pcap: PathBuf,
    /// Report format.
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
    /// Rows shown per table in the human format.
    #[arg(long, default_value_t = 40)]
    pub limit: usize,
    /// Which IPv6 header of a tunnelled packet is keyed: outer (the default, as tshark's first
    /// occurrence; IPv4 carrying IPv6 is counted as "ipv4-carrying-ipv6") or inner (the innermost
    /// IPv6 header behind 6in4, IPv6-in-IPv6, GRE, ERSPAN, VXLAN, Geneve, Teredo, GTP-U, L2TP,
    /// AYIYA, PIM Register; frames counted per tunnel kind).
    #[arg(long, value_enum, default_value_t)]
    pub tunnel: crate::packet::tunnel::Mode,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let mut reader = CaptureReader::open(&args.pcap)
        .with_context(|| format!("reading {}", args.pcap.display()))?;
    let mut a = FlowAnalysis::new().with_tunnel(args.tunnel);
    let pb = progress(&args.pcap);
    let stopped = read_frames(
        &mut reader,
        |offset| pb.set_position(offset),
        |frame| {
            a.add(frame);
            Ok::<(), std::convert::Infallible>(())
        },
    );
    pb.finish_and_clear();
    let Ok(stopped) = stopped;
    let mut report = a.report(source_info(&args.pcap, reader.format()));
    report.stopped = stopped.as_ref().map(Stopped::from);
    let mut out = std::io::stdout().lock();
    match args.format {
        OutputFormat::Table => write!(out, "{}", render(&report, args.limit))?,
        OutputFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
    }
    out.flush()?;
    exit_after_read(stopped, &args.pcap)
}
