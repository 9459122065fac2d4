//! `flowpol watch --iface IF --policy FILE`: live traffic classified by both engines, a summary
//! refreshed every `--interval` seconds on stderr, the final one on stdout after SIGINT/SIGTERM,
//! `--duration` or `--count`.

use super::flows::{MeterArgs, export_line, meter_line};
use crate::classify::{Classifier, EngineKind};
use crate::export::ipfix::{ClassNames, ExportStats, Exports};
use crate::packet::{FiveTuple, ThreeTuple};
use crate::pipeline::live::{
    Counts, LiveError, LiveMeter, MeterNumbers, Reconciliation, Reloader, Session, WatchConfig,
};
use crate::pipeline::meter::BYTES_PER_FLOW;
use crate::policy::Policy;
use crate::report::model::SourceInfo;
use crate::report::prometheus::{self, Metrics};
use crate::report::{Report, table};
use crate::source::iface::{IfaceError, KernelStats, SourceKind};
use anyhow::Context;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::cli::OutputFormat;

/// Capture live traffic and classify it with both engines (needs CAP_NET_RAW).
///
/// Capture live traffic on an interface (needs CAP_NET_RAW) and classify every frame on the
/// 3-tuple and on the 5-tuple. A summary is refreshed on stderr every --interval seconds; the
/// final one goes to stdout on SIGINT/SIGTERM, after --duration or after --count frames.
///
/// Stopping loses no frame: the capture sockets first stop accepting frames, then every frame
/// they had accepted is read (on the ring, the last partly filled block is handed over within
/// 40 ms), and the kernel's counters are read last. So the final summary reconciles exactly:
/// the kernel's packets = frames read + frames the kernel dropped (the line `kernel: N packets =
/// M read + D dropped`; JSON `reconciliation`); a mismatch is flagged there and on stderr. With
/// --count N exactly N frames are counted (and written by --write); frames the sockets had
/// accepted beyond them are read but not counted, and reported as such.
///
/// Flows: with --ipfix HOST:PORT (UDP) or --ipfix-file F, every frame also goes through a flow
/// meter, one table per worker (the fanout hashes a flow to one worker), --max-flows split
/// evenly over them (219 bytes a flow, reserved up front; a full table ends its least recently
/// updated flow early and counts the eviction). Flows end on the idle and active timeouts
/// (checked by the wall clock once a second), on TCP FIN/RST, and at the stop (forced end, all
/// flushed); the final summary gives the meter's and the exporter's numbers (records sent, lost,
/// dropped). A collector that is down never slows the capture.
///
/// SIGHUP reloads the policy file without stopping the capture: every worker classifies its
/// next frame with the new rules, and flows are exported with the new policy's class names
/// (the IPFIX template does not change). A policy that fails `check` is refused: the old one
/// stays, and a warning says why. The per-rule counts restart for the new policy (its rules
/// differ): summaries after a reload count the frames since then, and say how many frames were
/// counted under earlier policies (JSON `reload.reloads`, `reload.refused`, `reload.frames_before_reload`);
/// the reconciliation counts all of them. SIGINT and SIGTERM stop.
///
/// Exit codes: 0 done (also when the numbers do not reconcile: the summary and a warning say
/// so); 2 unreadable policy, unknown interface, missing CAP_NET_RAW, or an I/O error.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Interface to capture on (both directions, promiscuous).
    #[arg(long)]
    pub iface: String,
    /// The policy file.
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// Seconds between summaries on stderr.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// Stop after this many seconds.
    #[arg(long, value_name = "S")]
    pub duration: Option<f64>,
    /// Stop after this many frames (exactly N are counted and written; frames the kernel had
    /// already accepted beyond them are read but not counted, and reported).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Format of the final summary.
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
    /// Also write every captured frame to this pcap file (complete after SIGINT). Written at
    /// least every second, in whole records: on a write error (a full disk) the file is cut
    /// back to its last whole record, the error says how many frames it holds, and the watch
    /// ends with exit 2.
    #[arg(long, value_name = "FILE.pcap")]
    pub write: Option<PathBuf>,
    /// Capture threads, joined in one PACKET_FANOUT group in hash mode (counting starts once
    /// every thread's socket is in the group, so no frame is counted twice).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub workers: u16,
    /// Capture mechanism: a TPACKET_V3 ring (default; keeps up with tcpdump, restores VLAN tags
    /// the kernel strips) or pnet's datalink channel (portable, one recvfrom per frame, falls
    /// behind under a flood, and does not see stripped VLAN tags: tagged frames are classified
    /// alike but counted 4 bytes short and written untagged by --write).
    #[arg(long, value_enum, default_value_t)]
    pub source: SourceKind,
    /// The engine used for both key types.
    #[arg(long, value_enum, default_value_t)]
    pub engine: EngineKind,
    /// Serve Prometheus metrics on this address (http://ADDR:PORT/metrics).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_addr: Option<SocketAddr>,
    /// Which IPv6 header of a tunnelled packet is keyed: outer (the default, as tshark's first
    /// occurrence; IPv4 carrying IPv6 is counted as "ipv4-carrying-ipv6") or inner (the innermost
    /// IPv6 header behind 6in4, IPv6-in-IPv6, GRE, ERSPAN, VXLAN, Geneve, Teredo, GTP-U, L2TP,
    /// AYIYA, PIM Register; frames counted per tunnel kind).
    #[arg(long, value_enum, default_value_t)]
    pub tunnel: crate::packet::tunnel::Mode,
    #[command(flatten)]
    pub meter: MeterArgs,
}

/// The final summary as JSON: the `classify --format json` report plus the capture's numbers.
#[derive(serde::Serialize)]
struct WatchReport<'a> {
    #[serde(flatten)]
    report: &'a Report,
    /// The kernel's PACKET_STATISTICS, summed over workers.
    kernel: KernelStats,
    /// The kernel's packets against the frames read and its drops.
    reconciliation: Reconciliation,
    capture: CaptureInfo,
    /// Policy reloads (SIGHUP).
    reload: ReloadInfo,
    /// The flow meter's numbers (with --ipfix / --ipfix-file).
    #[serde(skip_serializing_if = "Option::is_none")]
    meter: Option<MeterNumbers>,
    /// The exporters' numbers (with --ipfix / --ipfix-file).
    #[serde(skip_serializing_if = "Option::is_none")]
    export: Option<ExportStats>,
}

/// The policy the summary's rule counts are for.
#[derive(serde::Serialize)]
struct ReloadInfo {
    /// Reloads that took effect (SIGHUP).
    reloads: u32,
    /// Reloads refused (the policy failed `check`).
    refused: u32,
    /// Frames counted under earlier policies (before the last reload): not in the rule counts.
    frames_before_reload: u64,
}

#[derive(serde::Serialize)]
struct CaptureInfo {
    source: &'static str,
    workers: usize,
    /// Frames each worker captured: how the fanout spread the flows.
    frames_per_worker: Vec<u64>,
    elapsed_s: f64,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let policy = crate::policy::load_file(&args.policy)?;
    let engine = args.engine;
    run_with(&args, policy, move |p: &Policy| {
        (
            Arc::new(engine.build::<ThreeTuple>(p)),
            Arc::new(engine.build::<FiveTuple>(p)),
        )
    })
}

fn line(r: &Report, k: &KernelStats) -> String {
    let classes = |three: bool| {
        r.classes
            .iter()
            .map(|c| {
                let n = if three { c.three } else { c.five };
                format!("{} {}", c.name, n.packets)
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "{} frames, {} IPv6 | 3-tuple: {} | 5-tuple: {}, unavailable {} | kernel: {} seen, {} dropped",
        r.frames.packets,
        r.ipv6.packets,
        classes(true),
        classes(false),
        r.five_unavailable.total.packets,
        k.packets,
        k.drops
    )
}

fn kernel_line(k: &KernelStats) -> String {
    format!(
        "kernel: {} packets seen by the capture sockets, {} dropped, ring frozen {} times\n",
        k.packets, k.drops, k.freeze_queue
    )
}

/// The final summary's reconciliation: `kernel: N packets = M read + D dropped (reconciled)`,
/// with the frames read after --count, or the mismatch.
fn reconciliation_line(r: &Reconciliation) -> String {
    let read = if r.read_not_counted > 0 {
        format!(
            "{} read ({} counted, {} after --count was reached, not counted)",
            r.frames_read, r.frames_counted, r.read_not_counted
        )
    } else {
        format!("{} read", r.frames_read)
    };
    if r.exact {
        format!(
            "kernel: {} packets = {read} + {} dropped (reconciled)\n",
            r.kernel_packets, r.kernel_drops
        )
    } else {
        format!(
            "kernel: {} packets != {read} + {} dropped: {} unaccounted for (NOT RECONCILED)\n",
            r.kernel_packets, r.kernel_drops, r.unaccounted
        )
    }
}

/// The run, generic over the two engines (built once per policy by `build`, shared by the
/// workers): start the session, refresh the summary until a stop (reloading the policy on
/// SIGHUP), then print the final summary.
pub fn run_with<C3, C5>(
    args: &Args,
    policy: Policy,
    build: impl Fn(&Policy) -> (Arc<C3>, Arc<C5>),
) -> anyhow::Result<u8>
where
    C3: Classifier<ThreeTuple> + Send + Sync + 'static,
    C5: Classifier<FiveTuple> + Send + Sync + 'static,
{
    anyhow::ensure!(
        args.interval > 0.0 && args.interval.is_finite(),
        "--interval must be a positive number of seconds"
    );
    let meter_cfg = args.meter.config()?;
    let exports = if args.meter.exporting() {
        Some(Arc::new(args.meter.exporters(&policy)?))
    } else {
        None
    };
    let cfg = WatchConfig {
        iface: args.iface.clone(),
        source: args.source,
        workers: usize::from(args.workers),
        count: args.count,
        write: args.write.clone(),
        tunnel: args.tunnel,
        meter: exports.as_ref().map(|e| LiveMeter {
            cfg: meter_cfg,
            sink: e.clone(),
        }),
    };
    let policy = Arc::new(policy);
    let (c3, c5) = build(&policy);
    let (session, reloader) = match Session::start_reloadable(&cfg, policy.clone(), c3, c5) {
        Ok(s) => s,
        // One line, naming the capability.
        Err(LiveError::Source(e @ IfaceError::NoCapability { .. })) => anyhow::bail!("{e}"),
        Err(e) => {
            return Err(anyhow::Error::new(e)).with_context(|| format!("watching {}", args.iface));
        }
    };
    let hup = Arc::new(AtomicBool::new(false));
    // SIGINT/SIGTERM stop the capture (which one did is named in the summary, `stopped`);
    // SIGHUP asks for a reload.
    let signals = {
        let control = session.control();
        let hup = hup.clone();
        crate::sys::signals::StopSignal::install_with_hup(
            move || control.stop(),
            Some(move || hup.store(true, Ordering::Relaxed)),
        )
        .context("installing the SIGINT/SIGTERM/SIGHUP handlers")?
    };
    let metrics = match args.metrics_addr {
        Some(addr) => {
            let m = Arc::new(Metrics::new());
            let bound = prometheus::serve(addr, m.clone())
                .with_context(|| format!("serving metrics on {addr}"))?;
            eprintln!("metrics on http://{bound}/metrics");
            Some(m)
        }
        None => None,
    };
    eprintln!(
        "watching {} ({}, {} worker(s), link {}); Ctrl-C to stop, SIGHUP to reload the policy",
        args.iface,
        args.source.as_str(),
        cfg.workers,
        session.link()
    );
    let mut summary = Summary {
        policies: vec![policy],
        refused: 0,
        policy_name: args.policy.display().to_string(),
        info: SourceInfo {
            kind: format!("live ({})", args.source.as_str()),
            name: args.iface.clone(),
        },
        metrics,
    };
    let reload = Reload {
        hup: &hup,
        reloader: &reloader,
        build: &build,
        exports: exports.as_deref(),
    };
    refresh_until_stopped(args, &session, &mut summary, &reload);
    drop(reloader);
    let meter = cfg.meter.is_some();
    drop(cfg);
    final_summary(
        args,
        session,
        &summary,
        usize::from(args.workers),
        meter,
        exports,
        &signals,
    )
}

/// What a SIGHUP needs: the flag, the engines' swap, their constructor, the exporters.
struct Reload<'a, C3, C5, B> {
    hup: &'a AtomicBool,
    reloader: &'a Reloader<C3, C5>,
    build: &'a B,
    exports: Option<&'a Exports>,
}

impl<C3, C5, B> Reload<'_, C3, C5, B>
where
    B: Fn(&Policy) -> (Arc<C3>, Arc<C5>),
{
    /// On a SIGHUP, reads and checks the policy file again; a good one replaces the running
    /// policy (class names to the exporters first, then the engines to the workers), a bad one
    /// is refused and logged.
    fn poll(&self, path: &std::path::Path, summary: &mut Summary) {
        if !self.hup.swap(false, Ordering::Relaxed) {
            return;
        }
        match crate::policy::load_file(path) {
            Ok(p) => {
                let (c3, c5) = (self.build)(&p);
                let generation = self.reloader.next_generation();
                if let Some(e) = self.exports {
                    e.set_names(generation, &ClassNames::from_policy(&p));
                }
                let p = Arc::new(p);
                summary.policies.push(p.clone());
                let g = self.reloader.swap(p, c3, c5);
                tracing::info!("policy {} reloaded (generation {g})", path.display());
                eprintln!(
                    "SIGHUP: policy {} reloaded (generation {g}); rule counts restart",
                    path.display()
                );
            }
            Err(e) => {
                summary.refused += 1;
                tracing::warn!(
                    "SIGHUP: policy {} refused, the running policy stays: {e}",
                    path.display()
                );
                eprintln!(
                    "SIGHUP: policy {} refused, the running policy stays: {e}",
                    path.display()
                );
            }
        }
    }
}

/// Builds the report of the counts so far, and updates the metrics with it.
struct Summary {
    /// The policy of each generation (0: the one the run started with).
    policies: Vec<Arc<Policy>>,
    /// Reloads refused.
    refused: u32,
    policy_name: String,
    info: SourceInfo,
    metrics: Option<Arc<Metrics>>,
}

impl Summary {
    fn report(&self, c: &Counts) -> Report {
        let k = &c.kernel;
        let policy = self
            .policies
            .get(c.generation as usize)
            .or(self.policies.last())
            .expect("the first policy");
        let r = Report::new(&c.tally, policy, &self.policy_name, self.info.clone());
        if let Some(m) = &self.metrics {
            m.update(&r, k.packets, k.drops);
        }
        r
    }
}

/// The summary on stderr every `--interval` (redrawn in place on a terminal, one line per
/// refresh otherwise), until a stop is asked for, the workers end, or `--duration` is up.
fn refresh_until_stopped<C3, C5, B>(
    args: &Args,
    session: &Session,
    summary: &mut Summary,
    reload: &Reload<'_, C3, C5, B>,
) where
    B: Fn(&Policy) -> (Arc<C3>, Arc<C5>),
{
    let control = session.control();
    let term = std::io::stderr().is_terminal();
    let interval = Duration::from_secs_f64(args.interval);
    let end = args
        .duration
        .map(|d| Instant::now() + Duration::from_secs_f64(d.max(0.0)));
    let mut next = Instant::now() + interval;
    loop {
        if control.stopped() || session.finished() || end.is_some_and(|e| Instant::now() >= e) {
            break;
        }
        reload.poll(&args.policy, summary);
        let now = Instant::now();
        if now >= next {
            next += interval;
            if next < now {
                next = now + interval;
            }
            let c = session.snapshot();
            let k = c.kernel;
            let r = summary.report(&c);
            let mut err = std::io::stderr().lock();
            if term {
                // Redraw in place: home, clear, the full table.
                let _ = write!(err, "\x1b[H\x1b[2J{}{}", table::render(&r), kernel_line(&k));
            } else {
                let _ = writeln!(
                    err,
                    "[{:.1}s] {}",
                    session.elapsed().as_secs_f64(),
                    line(&r, &k)
                );
            }
            continue;
        }
        let mut wake = next;
        if let Some(e) = end {
            wake = wake.min(e);
        }
        std::thread::sleep((wake - now).min(Duration::from_millis(50)));
    }
}

/// Stops the session and prints the final summary on stdout (with the reconciliation; a
/// mismatch also on stderr), then the error that ended the capture early, if one did.
fn final_summary(
    args: &Args,
    session: Session,
    summary: &Summary,
    workers: usize,
    metered: bool,
    exports: Option<Arc<Exports>>,
    signals: &crate::sys::signals::StopSignal,
) -> anyhow::Result<u8> {
    let elapsed = session.elapsed().as_secs_f64();
    let done = session.finish();
    // Every worker has flushed its flows and let go of the exporters: send what is queued.
    let export = match exports.map(Arc::try_unwrap) {
        Some(Ok(e)) => Some(e.finish().context("exporting IPFIX")?),
        Some(Err(e)) => Some(e.stats()),
        None => None,
    };
    let meter = metered.then_some(done.counts.meter);
    let policy_info = ReloadInfo {
        reloads: u32::try_from(summary.policies.len() - 1).unwrap_or(u32::MAX),
        refused: summary.refused,
        frames_before_reload: done.counts.earlier,
    };
    let kernel = done.counts.kernel;
    let reconciliation = done.counts.reconciliation();
    let mut report = summary.report(&done.counts);
    if let (Some(n), Some(path)) = (done.written, &args.write) {
        eprintln!("wrote {n} frame(s) to {}", path.display());
    }
    let mut out = std::io::stdout().lock();
    match args.format {
        OutputFormat::Table => {
            write!(
                out,
                "{}{}{}",
                table::render(&report),
                kernel_line(&kernel),
                reconciliation_line(&reconciliation)
            )?;
            if workers > 1 {
                writeln!(out, "frames per worker: {:?}", done.per_worker)?;
            }
            if policy_info.reloads > 0 || policy_info.refused > 0 {
                writeln!(
                    out,
                    "policy: reloaded {} times ({} refused); the rule counts are since the last reload, {} frames were counted under earlier policies",
                    policy_info.reloads, policy_info.refused, policy_info.frames_before_reload
                )?;
            }
            if let Some(m) = &meter {
                write!(out, "{}", meter_numbers_line(m))?;
            }
            if let Some(e) = &export {
                write!(out, "{}", export_line(e))?;
            }
        }
        OutputFormat::Json => {
            // What ended the capture early: the error, or the signal (0: no byte offset in a
            // live capture).
            report.stopped = stopped_by(done.error.as_ref(), signals.received())
                .map(|message| crate::report::model::Stopped { offset: 0, message });
            let w = WatchReport {
                report: &report,
                kernel,
                reconciliation,
                capture: CaptureInfo {
                    source: args.source.as_str(),
                    workers,
                    frames_per_worker: done.per_worker,
                    elapsed_s: (elapsed * 1000.0).round() / 1000.0,
                },
                reload: policy_info,
                meter,
                export,
            };
            writeln!(out, "{}", serde_json::to_string_pretty(&w)?)?;
        }
    }
    out.flush()?;
    if !reconciliation.exact {
        eprint!("warning: {}", reconciliation_line(&reconciliation));
    }
    match done.error {
        // The summary of what was counted first, then the error (exit 2).
        Some(e) => Err(anyhow::Error::new(e)).with_context(|| format!("watching {}", args.iface)),
        None => Ok(super::EXIT_OK),
    }
}

/// The meter's line of the final summary.
fn meter_numbers_line(m: &MeterNumbers) -> String {
    meter_line(
        &m.stats,
        "at the stop",
        m.peak_flows,
        m.max_flows,
        &format!("{} bytes reserved, {BYTES_PER_FLOW} a flow", m.memory_bytes),
    )
}

/// The JSON `stopped` text: the error that ended the capture, else the signal that stopped
/// it (`SIGINT`, `SIGTERM`); `None` after --duration or --count.
fn stopped_by(error: Option<&LiveError>, signal: Option<&'static str>) -> Option<String> {
    match (error, signal) {
        (Some(e), _) => {
            // The error and its causes, as the final error line prints them.
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                text = format!("{text}: {c}");
                cause = c.source();
            }
            Some(text)
        }
        (None, Some(sig)) => Some(sig.to_string()),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopped_names_the_error_else_the_signal() {
        assert_eq!(stopped_by(None, None), None);
        assert_eq!(
            stopped_by(None, Some("SIGTERM")).as_deref(),
            Some("SIGTERM")
        );
        let e = LiveError::Panicked;
        assert_eq!(
            stopped_by(Some(&e), Some("SIGINT")).as_deref(),
            Some("a capture worker panicked")
        );
    }

    fn rec(kernel_packets: u64, read: u64, counted: u64, drops: u64) -> Reconciliation {
        let unaccounted = kernel_packets as i64 - read as i64 - drops as i64;
        Reconciliation {
            kernel_packets,
            frames_read: read,
            frames_counted: counted,
            read_not_counted: read - counted,
            kernel_drops: drops,
            unaccounted,
            exact: unaccounted == 0,
        }
    }

    #[test]
    fn the_reconciliation_line_says_what_was_read_and_flags_a_mismatch() {
        assert_eq!(
            reconciliation_line(&rec(400, 398, 398, 2)),
            "kernel: 400 packets = 398 read + 2 dropped (reconciled)\n"
        );
        assert_eq!(
            reconciliation_line(&rec(120, 120, 100, 0)),
            "kernel: 120 packets = 120 read (100 counted, 20 after --count was reached, not \
             counted) + 0 dropped (reconciled)\n"
        );
        assert_eq!(
            reconciliation_line(&rec(400, 390, 390, 0)),
            "kernel: 400 packets != 390 read + 0 dropped: 10 unaccounted for (NOT RECONCILED)\n"
        );
    }
}
