//! `flowpol send`: UDP datagrams or a TCP connection with a chosen (or kernel-chosen) flow label.

use std::net::IpAddr;
use std::time::Duration;

use crate::FlowLabel;
use crate::send::send::{CreateMode, LabelMode, SendConfig, SendReport, send_with_progress};
use crate::send::{Proto, Share};

use crate::cli::OutputFormat;

/// Parses a flow label in decimal or 0x-hex, rejecting values wider than 20 bits.
pub fn parse_label(s: &str) -> Result<FlowLabel, String> {
    let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse::<u64>(),
    }
    .map_err(|e| format!("`{s}` is not a number: {e}"))?;
    FlowLabel::new(v).map_err(|e| e.to_string())
}

/// Parses a traffic class in decimal or 0x-hex.
pub fn parse_tclass(s: &str) -> Result<u8, String> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u8::from_str_radix(hex, 16),
        None => s.parse::<u8>(),
    }
    .map_err(|e| format!("`{s}` is not a traffic class 0-255: {e}"))
}

/// Send UDP or TCP traffic with a chosen or kernel-chosen flow label.
///
/// Send labelled traffic: lease the label with IPV6_FLOWLABEL_MGR, send with IPV6_FLOWINFO_SEND
/// and sin6_flowinfo in network byte order, release the lease at the end. Without --label or
/// --auto the packets carry label 0 (IPV6_AUTOFLOWLABEL off).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Destination address (IPv6; IPv4 only without --label/--auto).
    #[arg(long)]
    pub to: IpAddr,
    /// Destination port.
    #[arg(long)]
    pub port: u16,
    /// Flow label to lease and send with (decimal or 0x-hex, 20 bits; 0 sends unlabelled).
    #[arg(long, value_parser = parse_label, conflicts_with = "auto")]
    pub label: Option<FlowLabel>,
    /// Let the kernel choose the label (IPV6_AUTOFLOWLABEL) and report the one it used, read
    /// from copies of the sent packets the kernel loops back (SO_TIMESTAMPING, TX_SCHED).
    #[arg(long)]
    pub auto: bool,
    /// Transport.
    #[arg(long, value_enum, default_value_t = Proto::Udp)]
    pub proto: Proto,
    /// Datagrams (UDP) or writes (TCP) to send.
    #[arg(long, default_value_t = 1)]
    pub count: u64,
    /// Packets (writes) per second; default as fast as possible.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Payload bytes per datagram or write; above the path MTU UDP datagrams are fragmented.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Source address to bind.
    #[arg(long)]
    pub from: Option<IpAddr>,
    /// Interface to send on (SO_BINDTODEVICE; scope id of a link-local destination).
    #[arg(long)]
    pub iface: Option<String>,
    /// Traffic class (IPV6_TCLASS), 0-255, decimal or 0x-hex (DSCP << 2 | ECN).
    #[arg(long, value_parser = parse_tclass)]
    pub tclass: Option<u8>,
    /// Who else may use the leased label.
    #[arg(long, value_enum, default_value_t = Share::Excl)]
    pub share: Share,
    /// Seconds the label stays reserved after release (kernel minimum 6; >150 needs CAP_NET_ADMIN).
    #[arg(long, default_value_t = 6)]
    pub linger: u16,
    /// Seconds the lease is kept at least (>150 needs CAP_NET_ADMIN).
    #[arg(long, default_value_t = 0)]
    pub expires: u16,
    /// Fail (EEXIST) if the label already exists anywhere (IPV6_FL_F_EXCL).
    #[arg(long, conflicts_with = "join")]
    pub fresh: bool,
    /// Only join an existing label, never create it (ENOENT if absent).
    #[arg(long)]
    pub join: bool,
    /// TCP connect and close timeout in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub timeout: f64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

impl Args {
    fn config(&self) -> anyhow::Result<SendConfig> {
        let label = match (self.label, self.auto) {
            (Some(l), _) => LabelMode::Fixed(l),
            (None, true) => LabelMode::Auto,
            (None, false) => LabelMode::Unlabelled,
        };
        anyhow::ensure!(
            self.timeout.is_finite() && self.timeout > 0.0,
            "--timeout must be positive"
        );
        Ok(SendConfig {
            to: self.to,
            port: self.port,
            proto: self.proto,
            label,
            count: self.count,
            rate: self.rate,
            size: self.size,
            from: self.from,
            iface: self.iface.clone(),
            tclass: self.tclass,
            share: self.share,
            linger: self.linger,
            expires: self.expires,
            create: if self.fresh {
                CreateMode::Fresh
            } else if self.join {
                CreateMode::Join
            } else {
                CreateMode::Create
            },
            timeout: Duration::from_secs_f64(self.timeout),
        })
    }
}

fn table(r: &SendReport) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::NOTHING);
    let label = match (r.flow_label, r.observed_labels.len()) {
        (Some(l), _) => format!("{l} ({})", l.value()),
        (None, 0) if r.label_mode == "auto" => "unknown (no looped-back copy seen)".into(),
        (None, _) if r.label_mode == "auto" => r
            .observed_labels
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        (None, _) => "none (IPv4)".into(),
    };
    for (k, v) in [
        ("proto", r.proto.name().to_string()),
        ("to", r.to.clone()),
        ("from", r.local.clone().unwrap_or_default()),
        ("label", format!("{label} [{}]", r.label_mode)),
        ("sent", format!("{} packets, {} bytes", r.packets, r.bytes)),
        (
            "rate",
            if r.packets >= 2 {
                format!("{:.1} packets/s over {:.3} s", r.rate_pps, r.elapsed_s)
            } else {
                "n/a (one packet)".to_string()
            },
        ),
    ] {
        t.add_row(vec![k.to_string(), v]);
    }
    t
}

/// Runs `flowpol send`.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let cfg = args.config()?;
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(cfg.count),
        indicatif::ProgressDrawTarget::stderr(),
    );
    let report = send_with_progress(&cfg, |n| bar.set_position(n));
    bar.finish_and_clear();
    let report = report?;
    print!("{}", args.format.render(&report, table)?);
    Ok(crate::cli::EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels() {
        assert_eq!(parse_label("0x12345").unwrap().value(), 0x12345);
        assert_eq!(parse_label("74565").unwrap().value(), 74565);
        assert!(
            parse_label("0x100000")
                .unwrap_err()
                .contains("wider than 20 bits")
        );
        assert!(parse_label("x").is_err());
        assert_eq!(parse_tclass("0xb8"), Ok(0xb8));
        assert_eq!(parse_tclass("46"), Ok(46));
        assert!(parse_tclass("256").is_err());
    }
}
