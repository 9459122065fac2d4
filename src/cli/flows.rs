//! `flowpol flows --pcap FILE`: label behaviour per 5-tuple flow, 3-tuple sharing, and whether
//! a 3-tuple policy can stand in for a 5-tuple policy on that traffic. The frames go through
//! the same step as `classify` and into the bounded flow meter; the report is built from the
//! meter's records, which can also be exported as IPFIX (`--ipfix`, `--ipfix-file`).

use super::classify::{exit_after_read, progress};
use crate::classify::EngineKind;
use crate::cli::OutputFormat;
use crate::export::ipfix::{ClassNames, ExportConfig, ExportStats, Exporter, Exports};
use crate::packet::{FiveTuple, ThreeTuple};
use crate::pipeline::Step;
use crate::pipeline::meter::{
    BYTES_PER_FLOW, DEFAULT_ACTIVE, DEFAULT_IDLE, DEFAULT_MAX_FLOWS, FlowKey, FlowRecord,
    FlowTable, MeterConfig, MeterStats, Packet,
};
use crate::pipeline::offline::{read_frames, source_info};
use crate::policy::Policy;
use crate::report::flows::{DEFAULT_REPORT_FLOWS, FlowAnalysis, FlowsReport, MeteredFlow, render};
use crate::report::model::Stopped;
use crate::source::pcap::CaptureReader;
use anyhow::Context;
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// The flow meter and IPFIX export options, shared by `flows` and `watch`.
#[derive(clap::Args, Debug, Clone)]
pub struct MeterArgs {
    /// The most flows the meter holds at once. Its memory (BYTES_PER_FLOW = 219 bytes a flow;
    /// the default fills 256 MiB) is reserved up front and never grows; when the table is full,
    /// the least recently updated flow ends early (IPFIX flowEndReason 5) and is counted as an
    /// eviction. `watch` splits it evenly over its workers.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_FLOWS)]
    pub max_flows: usize,
    /// A flow that has lasted this many seconds ends (its next packet starts a new record).
    #[arg(long, value_name = "S", default_value_t = DEFAULT_ACTIVE.as_secs_f64())]
    pub active_timeout: f64,
    /// A flow without a packet for this many seconds ends. TCP FIN or RST end a flow at once.
    #[arg(long, value_name = "S", default_value_t = DEFAULT_IDLE.as_secs_f64())]
    pub idle_timeout: f64,
    /// Export every ended flow as IPFIX (RFC 7011) over UDP to this collector.
    #[arg(long, value_name = "HOST:PORT")]
    pub ipfix: Option<String>,
    /// Write every ended flow into this IPFIX file (RFC 5655).
    #[arg(long, value_name = "FILE")]
    pub ipfix_file: Option<PathBuf>,
    /// The IPFIX observation domain id (in every message header and record).
    #[arg(long, value_name = "ID", default_value_t = 0)]
    pub observation_domain: u32,
}

impl MeterArgs {
    /// The meter's settings, checked.
    pub fn config(&self) -> anyhow::Result<MeterConfig> {
        let secs = |v: f64, name: &str| -> anyhow::Result<Duration> {
            anyhow::ensure!(
                v > 0.0 && v.is_finite(),
                "{name} must be a positive number of seconds"
            );
            Ok(Duration::from_secs_f64(v))
        };
        anyhow::ensure!(self.max_flows >= 1, "--max-flows must be at least 1");
        Ok(MeterConfig {
            active: secs(self.active_timeout, "--active-timeout")?,
            idle: secs(self.idle_timeout, "--idle-timeout")?,
            max_flows: self.max_flows,
        })
    }

    /// True when ended flows leave the box.
    pub fn exporting(&self) -> bool {
        self.ipfix.is_some() || self.ipfix_file.is_some()
    }

    /// The exporters asked for, class names from `policy` (none when neither option is given).
    pub fn exporters(&self, policy: &Policy) -> anyhow::Result<Exports> {
        let cfg = ExportConfig {
            domain: self.observation_domain,
            ..ExportConfig::default()
        };
        let mut list = Vec::new();
        if let Some(c) = &self.ipfix {
            let addr: SocketAddr = c
                .to_socket_addrs()
                .with_context(|| format!("--ipfix {c}: not a HOST:PORT"))?
                .next()
                .with_context(|| format!("--ipfix {c}: no address"))?;
            list.push(
                Exporter::udp(addr, ClassNames::from_policy(policy), cfg)
                    .with_context(|| format!("exporting to {addr}"))?,
            );
        }
        if let Some(p) = &self.ipfix_file {
            list.push(
                Exporter::file(p, ClassNames::from_policy(policy), cfg)
                    .with_context(|| format!("creating {}", p.display()))?,
            );
        }
        Ok(Exports { list })
    }
}

/// The meter's numbers in a report.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct MeterInfo {
    pub max_flows: usize,
    pub active_timeout_s: f64,
    pub idle_timeout_s: f64,
    pub bytes_per_flow: usize,
    /// Heap bytes the flow tables reserved (fixed from the start).
    pub memory_bytes: usize,
    /// The most flows held at once.
    pub peak_flows: usize,
    #[serde(flatten)]
    pub stats: MeterStats,
}

impl MeterInfo {
    /// The human line: `meter: ...`.
    pub fn line(&self) -> String {
        meter_line(
            &self.stats,
            "at the end",
            self.peak_flows,
            self.max_flows,
            &format!("{} bytes reserved", self.memory_bytes),
        )
    }
}

/// The human `meter: ...` line of `flows` and `watch`. `last` says when the flows still held
/// were recorded (`at the end` of a capture, `at the stop` of a watch); `reserved` fills the
/// last parentheses (the bytes the tables reserved, and what else the caller tells there).
pub fn meter_line(
    s: &MeterStats,
    last: &str,
    peak_flows: usize,
    max_flows: usize,
    reserved: &str,
) -> String {
    format!(
        "meter: {} flows ({} records: {} idle, {} active, {} FIN/RST, {} {last}, {} evicted early), at most {peak_flows} at once of --max-flows {max_flows} ({reserved})\n",
        s.flows,
        s.records(),
        s.idle,
        s.active,
        s.end_of_flow,
        s.forced,
        s.evictions,
    )
}

/// The human line of the exporters' counters.
pub fn export_line(s: &ExportStats) -> String {
    format!(
        "ipfix: {} records sent in {} messages, {} lost ({} failed sends), {} dropped (queue full)\n",
        s.records_sent, s.messages_sent, s.records_lost, s.send_errors, s.records_dropped
    )
}

/// Per-flow labels and a verdict on replacing 5-tuple rules with 3-tuple rules.
///
/// The frames go through the bounded flow meter (--max-flows, --active-timeout,
/// --idle-timeout: capture time, not wall time); the report is built from the flows it ends,
/// so memory stays bounded however many flows the capture holds: at most --report-flows
/// 5-tuple flows get a row and are checked for a shared 3-tuple (records of one 5-tuple split by
/// a timeout are joined); further flows are counted in the label summary only, and `bounds`
/// (JSON) and the verdict say how many. Flow bytes are IP bytes (header and payload), as IPFIX
/// counts them. --ipfix / --ipfix-file export the same records; --policy gives them their
/// classes (without it, every flow is in the class `pass`).
///
/// Exit codes: 0 done (whatever the verdict); 2 unreadable or corrupt capture (the report of
/// what was read comes first), unreadable policy, or an export that failed.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The capture file (pcap or pcapng).
    #[arg(long)]
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
    /// The policy whose classes the exported flows carry.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The engine used for both key types.
    #[arg(long, value_enum, default_value_t)]
    pub engine: EngineKind,
    /// The most 5-tuple flows the report tracks (rows, sharing checks; about 200 bytes each).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_REPORT_FLOWS)]
    pub report_flows: usize,
    #[command(flatten)]
    pub meter: MeterArgs,
}

/// The `flows` report as JSON: the analysis plus the meter and export numbers.
#[derive(serde::Serialize)]
struct FlowsJson<'a> {
    #[serde(flatten)]
    report: &'a FlowsReport,
    meter: MeterInfo,
    export: Option<ExportStats>,
    /// The process' peak resident memory (Linux `VmHWM`), in bytes, when known.
    max_rss_bytes: Option<u64>,
}

/// The peak resident set size of this process, from `/proc/self/status` (`VmHWM: N kB`).
fn max_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A meter record as the report takes it (5-tuple flows only).
fn metered(r: &FlowRecord, key: FiveTuple) -> MeteredFlow<'_> {
    MeteredFlow {
        key,
        packets: r.packets,
        bytes: r.bytes,
        first_label: r.first_label,
        last_label: r.last_label,
        label_changes: u64::from(r.label_changes),
        labels: r.labels(),
        labels_overflow: r.labels_overflow,
    }
}

/// Where an ended flow goes offline: into the analysis and to every exporter.
fn ended(a: &mut FlowAnalysis, exports: &Exports, r: FlowRecord) {
    if let FlowKey::Five(k) = r.key {
        a.add(&metered(&r, k));
    }
    exports.send_wait(r);
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let meter_cfg = args.meter.config()?;
    let policy = match &args.policy {
        Some(p) => crate::policy::load_file(p)?,
        None => crate::policy::load_str("flows", "default pass\n")?,
    };
    let mut reader = CaptureReader::open(&args.pcap)
        .with_context(|| format!("reading {}", args.pcap.display()))?;
    let exports = args.meter.exporters(&policy)?;
    let c3 = args.engine.build::<ThreeTuple>(&policy);
    let c5 = args.engine.build::<FiveTuple>(&policy);
    let mut step = Step::new(&c3, &c5).with_tunnel(args.tunnel);
    let mut table = FlowTable::new(meter_cfg);
    let mut a = FlowAnalysis::new(args.report_flows);
    let pb = progress(&args.pcap);
    let stopped = read_frames(
        &mut reader,
        |offset| pb.set_position(offset),
        |frame| {
            let outcome = step.run(frame);
            a.count(frame, &outcome);
            if let Some(p) = Packet::of(&outcome, frame.ts, 0) {
                let mut sink = |r| ended(&mut a, &exports, r);
                table.expire(p.ts, &mut sink);
                table.observe(&p, &mut sink);
            }
            Ok::<(), std::convert::Infallible>(())
        },
    );
    table.flush(&mut |r| ended(&mut a, &exports, r));
    pb.finish_and_clear();
    let Ok(stopped) = stopped;
    let exporting = args.meter.exporting();
    let export = exports.finish().context("exporting IPFIX")?;
    let meter = MeterInfo {
        max_flows: table.config().max_flows,
        active_timeout_s: meter_cfg.active.as_secs_f64(),
        idle_timeout_s: meter_cfg.idle.as_secs_f64(),
        bytes_per_flow: BYTES_PER_FLOW,
        memory_bytes: table.memory_bytes(),
        peak_flows: table.peak(),
        stats: table.stats(),
    };
    let mut report = a.report(source_info(&args.pcap, reader.format()));
    report.stopped = stopped.as_ref().map(Stopped::from);
    let mut out = std::io::stdout().lock();
    match args.format {
        OutputFormat::Table => {
            write!(out, "{}\n{}", render(&report, args.limit), meter.line())?;
            if exporting {
                write!(out, "{}", export_line(&export))?;
            }
        }
        OutputFormat::Json => {
            let j = FlowsJson {
                report: &report,
                meter,
                export: exporting.then_some(export),
                max_rss_bytes: max_rss_bytes(),
            };
            writeln!(out, "{}", serde_json::to_string_pretty(&j)?)?;
        }
    }
    out.flush()?;
    exit_after_read(stopped, &args.pcap)
}
