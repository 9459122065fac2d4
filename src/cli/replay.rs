//! `flowpol replay`: a capture onto an interface through an AF_PACKET raw socket.

use std::path::PathBuf;

use crate::cli::OutputFormat;
use crate::send::replay::{ReplayConfig, ReplayReport, Timing, parse_mac, replay_with_progress};

/// Replay a capture onto an interface through a raw packet socket.
///
/// Replay a pcap/pcapng capture onto an interface (needs CAP_NET_RAW), at the captured timing
/// (times --speed), at --rate frames per second, or --fast. Ethernet captures go out as they are;
/// raw IP, null/loopback and Linux SLL/SLL2 captures get a synthesized Ethernet header.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Interface to send on.
    #[arg(long)]
    pub iface: String,
    /// The capture (pcap or pcapng).
    pub file: PathBuf,
    /// Fixed rate in frames per second.
    #[arg(long, conflicts_with_all = ["speed", "fast"])]
    pub rate: Option<f64>,
    /// Multiple of the captured speed (2 = twice as fast).
    #[arg(long, conflicts_with = "fast")]
    pub speed: Option<f64>,
    /// Back to back, ignoring timestamps.
    #[arg(long)]
    pub fast: bool,
    /// Passes over the capture.
    #[arg(long = "loop", default_value_t = 1)]
    pub loops: u32,
    /// Destination MAC of synthesized Ethernet headers (default ff:ff:ff:ff:ff:ff).
    #[arg(long, value_parser = |s: &str| parse_mac(s).ok_or_else(|| format!("`{s}` is not a MAC address")))]
    pub dst_mac: Option<[u8; 6]>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

fn table(r: &ReplayReport) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::NOTHING);
    let mut rows = vec![
        ("file", r.file.clone()),
        ("interface", r.iface.clone()),
        ("link types", r.link_types.join(", ")),
        ("frames in file", r.frames_in_file.to_string()),
        (
            "sent",
            format!(
                "{} frames, {} bytes in {} pass(es)",
                r.frames_sent, r.bytes_sent, r.loops
            ),
        ),
        (
            "rate",
            format!("{:.1} frames/s over {:.3} s", r.rate_pps, r.elapsed_s),
        ),
    ];
    if r.truncated > 0 {
        rows.push((
            "truncated",
            format!("{} frames captured short, sent as captured", r.truncated),
        ));
    }
    for (k, v) in &r.skipped {
        rows.push(("skipped", format!("{v} x {k}")));
    }
    for (k, v) in &r.send_errors {
        rows.push(("refused", format!("{v} x {k}")));
    }
    if let Some(sig) = r.stopped_by {
        rows.push((
            "stopped",
            format!("by {sig}, before the end of the capture"),
        ));
    }
    for (k, v) in rows {
        t.add_row(vec![k.to_string(), v]);
    }
    t
}

/// Runs `flowpol replay`.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let timing = match (args.rate, args.speed, args.fast) {
        (Some(r), _, _) => Timing::Rate(r),
        (None, _, true) => Timing::Fast,
        (None, Some(s), false) => Timing::Captured { speed: s },
        (None, None, false) => Timing::Captured { speed: 1.0 },
    };
    anyhow::ensure!(args.loops >= 1, "--loop must be at least 1");
    let cfg = ReplayConfig {
        iface: args.iface,
        file: args.file,
        timing,
        loops: args.loops,
        dst_mac: args.dst_mac,
        // SIGINT/SIGTERM end the replay early with the summary of what was sent.
        stop: Some(
            crate::sys::signals::StopSignal::install(|| {})
                .map_err(|e| anyhow::anyhow!("installing the SIGINT/SIGTERM handler: {e}"))?,
        ),
    };
    let bar =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    let report = replay_with_progress(&cfg, |done, total| {
        if bar.length().is_none() {
            bar.set_length(total);
        }
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let report = report?;
    print!("{}", args.format.render(&report, table)?);
    Ok(crate::cli::EXIT_OK)
}
