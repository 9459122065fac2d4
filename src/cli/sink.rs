//! `flowpol sink`: receive and print one JSON line per datagram / TCP connection with its label.

use std::io::Write;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;

use crate::send::Proto;
use crate::send::sink::{SinkConfig, sink};

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
    /// Exit when nothing arrives for this many seconds.
    #[arg(long)]
    pub idle_timeout: Option<f64>,
}

/// Runs `flowpol sink`.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let idle = match args.idle_timeout {
        Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
        Some(s) => anyhow::bail!("--idle-timeout must be positive, not {s}"),
        None => None,
    };
    let cfg = SinkConfig {
        listen: args.listen,
        proto: args.proto,
        count: args.count,
        idle_timeout: idle,
    };
    let stdout = std::io::stdout();
    sink(
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
