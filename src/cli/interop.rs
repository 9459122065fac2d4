//! `flowpol interop`: measures which IPv4/IPv6 listen/connect pairs work on this host and
//! prints the matrix (table, JSON or Markdown). The work is in [`crate::probe::interop`].

use crate::cli::EXIT_OK;
use crate::probe::{self, interop};
use anyhow::Context as _;
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// Output format.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A human table with the kernel context above it.
    Table,
    /// A JSON array, one object per pair, with the sockaddr view of each end.
    Json,
    /// A Markdown table (for a README).
    Markdown,
}

/// Transport protocol.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtoArg {
    /// bind, listen, connect, accept.
    Tcp,
    /// bind, connect, a datagram each way.
    Udp,
}

/// Measure which IPv4/IPv6 listen/connect address pairs work on this host.
///
/// Servers listen on `::` (IPV6_V6ONLY off and on), `::1`, `0.0.0.0`, `127.0.0.1`, each
/// routable address of the host, each IPv6 link-local address without scope id, with scope id
/// and with SO_BINDTODEVICE, and each IPv4 link-local address; clients connect to the loopback,
/// routable and link-local addresses. Every pair reports `ok` with the peer address the server
/// saw, or `fail` with the step and the error. Only the host's own addresses are contacted;
/// every attempt is bounded by --timeout-ms. Exit 0 when the probe ran: failing pairs are
/// data, not errors.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only the addresses of this interface (besides 127.0.0.1, ::1, :: and 0.0.0.0).
    #[arg(long, value_name = "IF")]
    pub iface: Option<String>,
    /// Transport protocol to probe.
    #[arg(long, value_enum, default_value_t = ProtoArg::Tcp)]
    pub proto: ProtoArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// An extra address of this host to listen on and connect to (`fe80::1%eth0` for a
    /// link-local address); repeatable. Addresses not on this host are refused.
    #[arg(long = "addr", value_name = "ADDR")]
    pub addrs: Vec<String>,
    /// Bound of each attempt in milliseconds (connect plus accept, or the datagram exchange).
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub timeout_ms: u64,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let host = probe::host_addrs()?;
    let mut addrs: Vec<probe::HostAddr> = match &args.iface {
        Some(name) => {
            probe::ifindex(name)?;
            host.iter()
                .filter(|a| on_iface(&a.iface, name))
                .cloned()
                .collect()
        }
        None => host.clone(),
    };
    for spec in &args.addrs {
        addrs.push(probe::resolve_local(spec, &host).with_context(|| format!("--addr {spec}"))?);
    }
    let (listens, connects) = interop::plan(&addrs);
    let proto = match args.proto {
        ProtoArg::Tcp => interop::Proto::Tcp,
        ProtoArg::Udp => interop::Proto::Udp,
    };
    let total = (listens.len() * connects.len()) as u64;
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let report = interop::run(
        proto,
        Duration::from_millis(args.timeout_ms),
        &listens,
        &connects,
        |_| bar.inc(1),
    );
    bar.finish_and_clear();
    let text = match args.format {
        Format::Table => interop::render_table(&report),
        Format::Markdown => interop::render_markdown(&report),
        Format::Json => interop::render_json(&report)? + "\n",
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(EXIT_OK)
}

/// Whether an address listed on `label` (an interface name or an IPv4 label `eth0:1`) belongs
/// to interface `name`.
fn on_iface(label: &str, name: &str) -> bool {
    label == name
        || label
            .strip_prefix(name)
            .is_some_and(|rest| rest.starts_with(':'))
}

#[cfg(test)]
mod tests {
    #[test]
    fn iface_labels() {
        assert!(super::on_iface("eth0", "eth0"));
        assert!(super::on_iface("eth0:1", "eth0"));
        assert!(!super::on_iface("eth01", "eth0"));
        assert!(!super::on_iface("eth0", "eth0:1"));
    }
}
