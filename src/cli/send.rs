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

/// A destination: an address, and for a link-local IPv6 address optionally its scope
/// (`fe80::1%eth0` or `fe80::1%2`, the form `interop` prints).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// The address.
    pub ip: IpAddr,
    /// The scope after `%`: an interface name or index.
    pub scope: Option<String>,
}

/// Parses `ADDR` or `ADDR%SCOPE` (IPv6 only; SCOPE an interface name or index).
pub fn parse_destination(s: &str) -> Result<Destination, String> {
    let (addr, scope) = match s.split_once('%') {
        Some((a, z)) if !z.is_empty() => (a, Some(z.to_string())),
        Some(_) => {
            return Err(format!(
                "`{s}`: nothing after `%` (give an interface name or index)"
            ));
        }
        None => (s, None),
    };
    let ip: IpAddr = addr
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|e| format!("`{addr}` is not an IP address: {e}"))?;
    if scope.is_some() && ip.is_ipv4() {
        return Err(format!(
            "`{s}`: a scope (`%...`) is for IPv6 addresses only"
        ));
    }
    Ok(Destination { ip, scope })
}

/// The interface index of a scope: a number as it is, a name looked up.
fn scope_index(scope: &str) -> anyhow::Result<u32> {
    if let Ok(n) = scope.parse::<u32>() {
        return Ok(n);
    }
    crate::sys::if_index(scope)
        .map_err(|e| anyhow::anyhow!("scope %{scope}: no interface of that name ({e})"))
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
    /// Destination address (IPv6; IPv4 only without --label/--auto). A link-local address
    /// takes its link as `fe80::1%eth0` or `fe80::1%2` (or with --iface).
    #[arg(long, value_parser = parse_destination)]
    pub to: Destination,
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
        let scope_id = match &self.to.scope {
            Some(z) => Some(scope_index(z)?),
            None => None,
        };
        Ok(SendConfig {
            to: self.to.ip,
            scope_id,
            stop: None,
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
    if let Some(sig) = r.stopped_by {
        t.add_row(vec![
            "stopped".to_string(),
            format!("by {sig}, before --count was reached"),
        ]);
    }
    t
}

/// Runs `flowpol send`.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let mut cfg = args.config()?;
    // SIGINT/SIGTERM end the run early with the summary of what was sent.
    cfg.stop = Some(
        crate::sys::signals::StopSignal::install(|| {})
            .map_err(|e| anyhow::anyhow!("installing the SIGINT/SIGTERM handler: {e}"))?,
    );
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

    #[test]
    fn destinations_take_a_scope_by_name_or_index() {
        let d = parse_destination("fe80::1%veth0").unwrap();
        assert_eq!(d.ip.to_string(), "fe80::1");
        assert_eq!(d.scope.as_deref(), Some("veth0"));
        assert_eq!(
            parse_destination("fe80::1%3").unwrap().scope.as_deref(),
            Some("3")
        );
        assert_eq!(parse_destination("fd00::2").unwrap().scope, None);
        assert!(parse_destination("10.0.0.1%eth0").is_err());
        assert!(parse_destination("fe80::1%").is_err());
        assert!(parse_destination("nope").is_err());
    }
}
