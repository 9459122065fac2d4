//! `flowpol watch --iface IF --policy FILE`: live traffic classified by both engines, a summary
//! refreshed every `--interval` seconds on stderr, the final one on stdout after SIGINT/SIGTERM,
//! `--duration` or `--count`.

use crate::classify::{Classifier, EngineKind};
use crate::packet::{FiveTuple, ThreeTuple};
use crate::pipeline::live::{Counts, LiveError, Reconciliation, Session, WatchConfig};
use crate::report::model::SourceInfo;
use crate::report::prometheus::{self, Metrics};
use crate::report::{Report, table};
use crate::source::iface::{IfaceError, KernelStats, SourceKind};
use anyhow::Context;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
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
    let c3 = Arc::new(args.engine.build::<ThreeTuple>(&policy));
    let c5 = Arc::new(args.engine.build::<FiveTuple>(&policy));
    run_with(&args, &policy, c3, c5)
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

/// The run, generic over the two engines (built once, shared by the workers): start the
/// session, refresh the summary until a stop, then print the final summary.
pub fn run_with<C3, C5>(
    args: &Args,
    policy: &crate::policy::Policy,
    c3: Arc<C3>,
    c5: Arc<C5>,
) -> anyhow::Result<u8>
where
    C3: Classifier<ThreeTuple> + 'static,
    C5: Classifier<FiveTuple> + 'static,
{
    anyhow::ensure!(
        args.interval > 0.0 && args.interval.is_finite(),
        "--interval must be a positive number of seconds"
    );
    let cfg = WatchConfig {
        iface: args.iface.clone(),
        source: args.source,
        workers: usize::from(args.workers),
        count: args.count,
        write: args.write.clone(),
    };
    let session = match Session::start(&cfg, policy, c3, c5) {
        Ok(s) => s,
        // One line, naming the capability.
        Err(LiveError::Source(e @ IfaceError::NoCapability { .. })) => anyhow::bail!("{e}"),
        Err(e) => {
            return Err(anyhow::Error::new(e)).with_context(|| format!("watching {}", args.iface));
        }
    };
    let control = session.control();
    // SIGINT/SIGTERM stop the capture; which one did is named in the summary (`stopped`).
    let signals = {
        let control = control.clone();
        crate::sys::signals::StopSignal::install(move || control.stop())
            .context("installing the SIGINT/SIGTERM handler")?
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
        "watching {} ({}, {} worker(s), link {}); Ctrl-C to stop",
        args.iface,
        args.source.as_str(),
        cfg.workers,
        session.link()
    );
    let summary = Summary {
        policy,
        policy_name: args.policy.display().to_string(),
        info: SourceInfo {
            kind: format!("live ({})", args.source.as_str()),
            name: args.iface.clone(),
        },
        metrics,
    };
    refresh_until_stopped(args, &session, &summary);
    final_summary(args, session, &summary, cfg.workers, &signals)
}

/// Builds the report of the counts so far, and updates the metrics with it.
struct Summary<'p> {
    policy: &'p crate::policy::Policy,
    policy_name: String,
    info: SourceInfo,
    metrics: Option<Arc<Metrics>>,
}

impl Summary<'_> {
    fn report(&self, c: &Counts) -> Report {
        let k = &c.kernel;
        let r = Report::new(&c.tally, self.policy, &self.policy_name, self.info.clone());
        if let Some(m) = &self.metrics {
            m.update(&r, k.packets, k.drops);
        }
        r
    }
}

/// The summary on stderr every `--interval` (redrawn in place on a terminal, one line per
/// refresh otherwise), until a stop is asked for, the workers end, or `--duration` is up.
fn refresh_until_stopped(args: &Args, session: &Session, summary: &Summary<'_>) {
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
    summary: &Summary<'_>,
    workers: usize,
    signals: &crate::sys::signals::StopSignal,
) -> anyhow::Result<u8> {
    let elapsed = session.elapsed().as_secs_f64();
    let done = session.finish();
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
