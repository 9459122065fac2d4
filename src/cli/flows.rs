//! `flowpol flows --pcap FILE`: label behaviour per 5-tuple flow, 3-tuple sharing, and whether
//! a 3-tuple policy can stand in for a 5-tuple policy on that traffic.

use super::classify::{OutputFormat, progress, source_info};
use crate::report::flows::{FlowAnalysis, render};
use crate::report::json::Stopped;
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
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let mut reader = CaptureReader::open(&args.pcap)
        .with_context(|| format!("reading {}", args.pcap.display()))?;
    let pb = progress(&args.pcap);
    let mut a = FlowAnalysis::new();
    let mut stopped = None;
    loop {
        let frame = match reader.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                stopped = Some(e);
                break;
            }
        };
        a.add(&frame);
        if frame.number.is_multiple_of(4096) {
            pb.set_position(reader.offset());
        }
    }
    pb.finish_and_clear();
    let mut report = a.report(source_info(&args.pcap, reader.format()));
    report.stopped = stopped.as_ref().map(|e| Stopped {
        offset: e.offset(),
        message: e.to_string(),
    });
    let mut out = std::io::stdout().lock();
    match args.format {
        OutputFormat::Table => write!(out, "{}", render(&report, args.limit))?,
        OutputFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
    }
    out.flush()?;
    match stopped {
        Some(e) => Err(anyhow::Error::new(e).context(format!("reading {}", args.pcap.display()))),
        None => Ok(super::EXIT_OK),
    }
}
