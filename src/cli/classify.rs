//! `flowpol classify --policy FILE --pcap FILE`: every packet of a capture classified on the
//! 3-tuple and on the 5-tuple, side by side; optional per-packet JSON lines and per-class pcaps.

use crate::classify::{Classifier, EngineKind};
use crate::cli::OutputFormat;
use crate::packet::{FiveTuple, ThreeTuple};
use crate::pipeline::Step;
use crate::pipeline::offline::{self, source_info};
use crate::pipeline::packets::{PacketLines, Splitter};
use crate::report::model::Stopped;
use crate::report::{Report, table};
use crate::source::pcap::{CaptureError, CaptureReader};
use anyhow::Context;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

/// Classify every packet of a capture on the 3-tuple and on the 5-tuple.
///
/// Exit codes: 0 done; 2 unreadable policy or capture, or a capture that is corrupt or
/// truncated part way (the report of what was read comes first, then the error with its byte
/// offset).
///
/// A capture flowpol reads only in part is not an error: frames of link types it does not
/// decode, a file with no decodable frame at all, and records with an out-of-range timestamp
/// are warned about on stderr and listed in the report (`capture`), and the exit code is 0.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The policy file.
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// The capture file (pcap or pcapng).
    #[arg(long, value_name = "FILE")]
    pub pcap: PathBuf,
    /// Report format.
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
    /// Also write one JSON object per IPv6 packet to this file (JSON lines): frame, src, dst,
    /// flow_label, next_header, proto, sport, dport, three, five, five_unavailable.
    #[arg(long, value_name = "FILE.jsonl")]
    pub packets: Option<PathBuf>,
    /// Also write one pcap per outcome and engine into this directory
    /// (three-CLASS.pcap, five-CLASS.pcap, five-unavailable.pcap).
    #[arg(long, value_name = "DIR")]
    pub split: Option<PathBuf>,
    /// The engine used for both key types.
    #[arg(long, value_enum, default_value_t)]
    pub engine: EngineKind,
    /// Which IPv6 header of a tunnelled packet is keyed: outer (the default, as tshark's first
    /// occurrence; IPv4 carrying IPv6 is counted as "ipv4-carrying-ipv6") or inner (the innermost
    /// IPv6 header behind 6in4, IPv6-in-IPv6, GRE, ERSPAN, VXLAN, Geneve, Teredo, GTP-U, L2TP,
    /// AYIYA, PIM Register; frames counted per tunnel kind).
    #[arg(long, value_enum, default_value_t)]
    pub tunnel: crate::packet::tunnel::Mode,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let policy = crate::policy::load_file(&args.policy)?;
    let c3 = args.engine.build::<ThreeTuple>(&policy);
    let c5 = args.engine.build::<FiveTuple>(&policy);
    run_with(&args, &policy, &c3, &c5)
}

/// A progress bar on the terminal only.
pub(crate) fn progress(path: &Path) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let pb = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} {bytes}/{total_bytes} [{wide_bar}] {msg} {eta}",
    ) {
        pb.set_style(style);
    }
    pb
}

/// The run, generic over the two engines so the hot loop is monomorphised for each.
pub fn run_with<C3, C5>(
    args: &Args,
    policy: &crate::policy::Policy,
    c3: &C3,
    c5: &C5,
) -> anyhow::Result<u8>
where
    C3: Classifier<ThreeTuple>,
    C5: Classifier<FiveTuple>,
{
    let mut reader = CaptureReader::open(&args.pcap)
        .with_context(|| format!("reading {}", args.pcap.display()))?;
    let mut step = Step::new(c3, c5).with_tunnel(args.tunnel);
    let mut tally = step.tally(policy);
    let mut jsonl = match &args.packets {
        Some(p) => Some(
            PacketLines::create(p, policy).with_context(|| format!("creating {}", p.display()))?,
        ),
        None => None,
    };
    let mut split = match &args.split {
        Some(d) => Some(
            Splitter::create(d, &tally.verdicts)
                .with_context(|| format!("creating {}", d.display()))?,
        ),
        None => None,
    };
    let pb = progress(&args.pcap);
    let stopped = offline::classify(
        &mut reader,
        &mut step,
        &mut tally,
        |offset| pb.set_position(offset),
        |frame, outcome| -> anyhow::Result<()> {
            if let Some(j) = jsonl.as_mut() {
                j.write(frame, outcome).context("writing --packets")?;
            }
            if let Some(s) = split.as_mut() {
                s.write(frame, outcome).context("writing --split")?;
            }
            Ok(())
        },
    );
    pb.finish_and_clear();
    let stopped = stopped?;
    if let Some(j) = jsonl {
        j.finish().context("writing --packets")?;
    }
    if let Some(s) = split {
        s.finish().context("writing --split")?;
    }
    let mut report = Report::new(
        &tally,
        policy,
        &args.policy.display().to_string(),
        source_info(&args.pcap, reader.format()),
    );
    report.capture = offline::capture_notes(&reader);
    report.stopped = stopped.as_ref().map(Stopped::from);
    let mut out = std::io::stdout().lock();
    match args.format {
        OutputFormat::Table => write!(out, "{}", table::render(&report))?,
        OutputFormat::Json => writeln!(out, "{}", report.to_json())?,
    }
    out.flush()?;
    exit_after_read(stopped, &args.pcap)
}

/// Exit 0 after a whole capture; after one that stopped early, the error with its byte offset
/// (exit 2), once the report of what was read has been printed.
pub(crate) fn exit_after_read(stopped: Option<CaptureError>, path: &Path) -> anyhow::Result<u8> {
    match stopped {
        Some(e) => Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
        None => Ok(super::EXIT_OK),
    }
}
