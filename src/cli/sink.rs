//! `flowpol sink`: receive and print one JSON line per datagram / TCP connection with its label.

use std::io::Write;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;

use crate::send::Proto;
use crate::send::sink::{SinkConfig, SinkSummary, sink};

/// Parses `[ADDR]:PORT`, `ADDR:PORT` (IPv4), `:PORT` or `PORT` (both: `[::]:PORT`).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let port = s.strip_prefix(':').unwrap_or(s);
    port.parse::<u16>()
        .map(|p| SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), p))
        .map_err(|_| format!("`{s}` is not [ADDR]:PORT, ADDR:PORT, :PORT or PORT"))
}

/// Receive traffic and report the flow label of each datagram or connection.
///
/// Receive traffic and print, per UDP datagram or per TCP connection, one JSON line:
/// {"proto","peer","bytes","flow_label","tclass"}. flow_label is null for IPv4 peers. A line
/// "listening on ADDR" goes to stderr once the socket is bound.
///
/// TCP connections are served concurrently (--max-connections at once, each ended by the
/// peer's close or --read-timeout of silence). At the end (--count, --idle-timeout, SIGINT or
/// SIGTERM) a last stderr line says what the kernel dropped during the run: listen-queue
/// overflows and drops (TcpExt ListenOverflows, ListenDrops) and datagrams dropped for a full
/// receive buffer (Udp6RcvbufErrors + Udp RcvbufErrors). These counters are per network
/// namespace, so they include other sockets of the namespace.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to listen: `[ADDR]:PORT`, `:PORT` or `PORT` (`[::]` takes IPv4 too).
    #[arg(long, value_parser = parse_listen)]
    pub listen: SocketAddr,
    /// Transport.
    #[arg(long, value_enum, default_value_t = Proto::Udp)]
    pub proto: Proto,
    /// Exit after this many datagrams (UDP) or connections (TCP).
    #[arg(long)]
    pub count: Option<u64>,
    /// Exit when nothing arrives (and no connection is open) for this many seconds.
    #[arg(long)]
    pub idle_timeout: Option<f64>,
    /// TCP: the listen backlog (capped by the kernel at net.core.somaxconn).
    #[arg(long, default_value_t = crate::send::sink::DEFAULT_BACKLOG, value_parser = clap::value_parser!(i32).range(1..))]
    pub backlog: i32,
    /// TCP: connections served at once (more wait in the backlog).
    #[arg(long, default_value_t = crate::send::sink::DEFAULT_MAX_CONNECTIONS as u16, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_connections: u16,
    /// TCP: seconds of silence after which a connection is ended and reported.
    #[arg(long, default_value_t = 30.0)]
    pub read_timeout: f64,
    /// The socket's receive buffer in bytes (SO_RCVBUF; the kernel doubles it).
    #[arg(long)]
    pub rcvbuf: Option<usize>,
}

fn seconds(flag: &str, s: f64) -> anyhow::Result<Duration> {
    anyhow::ensure!(s.is_finite() && s > 0.0, "{flag} must be positive, not {s}");
    Ok(Duration::from_secs_f64(s))
}

/// The last stderr line: records, what the kernel dropped, and the signal that stopped it.
pub fn summary_line(s: &SinkSummary, proto: crate::send::Proto) -> String {
    let what = match proto {
        crate::send::Proto::Udp => "datagrams",
        crate::send::Proto::Tcp => "connections",
    };
    let k = &s.kernel;
    let stopped = s
        .stopped_by
        .map(|sig| format!(", stopped by {sig}"))
        .unwrap_or_default();
    format!(
        "sink: {} {what}{stopped}; kernel (this network namespace, during the run): {} listen \
         overflows, {} listen drops, {} datagrams dropped for a full receive buffer",
        s.records, k.listen_overflows, k.listen_drops, k.udp_rcvbuf_errors
    )
}

/// Runs `flowpol sink`.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let idle = match args.idle_timeout {
        Some(s) => Some(seconds("--idle-timeout", s)?),
        None => None,
    };
    let cfg = SinkConfig {
        count: args.count,
        idle_timeout: idle,
        backlog: args.backlog,
        max_connections: usize::from(args.max_connections),
        read_timeout: seconds("--read-timeout", args.read_timeout)?,
        rcvbuf: args.rcvbuf,
        stop: Some(
            crate::sys::signals::StopSignal::install(|| {})
                .map_err(|e| anyhow::anyhow!("installing the SIGINT/SIGTERM handler: {e}"))?,
        ),
        ..SinkConfig::new(args.listen, args.proto)
    };
    let stdout = std::io::stdout();
    let summary = sink(
        &cfg,
        |addr| eprintln!("listening on {addr} ({})", args.proto.name()),
        |rec| {
            let mut out = stdout.lock();
            serde_json::to_writer(&mut out, rec)?;
            out.write_all(b"\n")?;
            out.flush()
        },
    )
    .context("sink")?;
    eprintln!("{}", summary_line(&summary, args.proto));
    let k = &summary.kernel;
    if k.listen_overflows > 0 || k.udp_rcvbuf_errors > 0 {
        tracing::warn!(
            "the kernel dropped traffic while sink ran: {} listen overflows, {} datagrams for a full receive buffer{}",
            k.listen_overflows,
            k.udp_rcvbuf_errors,
            if args.proto == crate::send::Proto::Tcp {
                " (raise --backlog or --max-connections)"
            } else {
                " (raise --rcvbuf)"
            }
        );
    }
    Ok(crate::cli::EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listen_forms() {
        assert_eq!(
            parse_listen("[fd00::1]:9").unwrap().to_string(),
            "[fd00::1]:9"
        );
        assert_eq!(
            parse_listen("10.0.0.1:9").unwrap().to_string(),
            "10.0.0.1:9"
        );
        assert_eq!(parse_listen(":9").unwrap().to_string(), "[::]:9");
        assert_eq!(parse_listen("9").unwrap().to_string(), "[::]:9");
        assert!(parse_listen("x:9").is_err());
    }
}
