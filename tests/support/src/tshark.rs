//! tshark as the outside truth: tshark's reading of every IPv6 frame of a capture (src, dst, flow label, and the ports of
//! the transports it dissected). tshark runs with IPv6 reassembly off, so a first fragment is
//! dissected on its own, and with `occurrence=f`, so tunnelled packets give their outer header.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// One IPv6 frame as tshark reads it.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct Row {
    /// Canonical text (`Ipv6Addr`'s `Display`).
    pub src: String,
    pub dst: String,
    pub label: u32,
    /// (proto, sport, dport) for each of TCP (6), UDP (17) and SCTP (132) tshark dissected.
    pub ports: BTreeMap<u8, (u16, u16)>,
}

impl Row {
    /// The ports of TCP or UDP, whichever tshark dissected.
    pub fn tcp_or_udp(&self) -> Option<(u16, u16)> {
        self.ports.get(&6).or_else(|| self.ports.get(&17)).copied()
    }
}

/// (frames in the capture, IPv6 frames by frame number).
pub fn rows(path: &Path) -> (u64, BTreeMap<u64, Row>) {
    rows_at(path, Occurrence::First)
}

/// Which IPv6 header of a tunnelled packet tshark's fields are read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Occurrence {
    /// The outermost (`-E occurrence=f`), flowpol's `--tunnel outer`.
    First,
    /// The innermost (`-E occurrence=l`), flowpol's `--tunnel inner`. Protocols that quote a
    /// packet rather than tunnel it (ICMP and ICMPv6 errors, sFlow samples) are not dissected,
    /// so the quoted header is not taken for the innermost one.
    Last,
}

/// [`rows`], reading the outermost or the innermost header of tunnelled packets.
pub fn rows_at(path: &Path, occurrence: Occurrence) -> (u64, BTreeMap<u64, Row>) {
    let mut cmd = Command::new("tshark");
    match occurrence {
        Occurrence::First => cmd.args(["-E", "occurrence=f"]),
        Occurrence::Last => cmd.args(["-E", "occurrence=l"]).args([
            "--disable-protocol",
            "icmpv6",
            "--disable-protocol",
            "icmp",
            "--disable-protocol",
            "sflow",
        ]),
    };
    let out = cmd
        .args(["-n", "-o", "ipv6.defragment:FALSE"])
        .args(["-T", "fields", "-e", "frame.number"])
        .args(["-e", "ipv6.src", "-e", "ipv6.dst", "-e", "ipv6.flow"])
        .args(["-e", "tcp.srcport", "-e", "tcp.dstport"])
        .args(["-e", "udp.srcport", "-e", "udp.dstport"])
        .args(["-e", "sctp.srcport", "-e", "sctp.dstport", "-r"])
        .arg(path)
        .output()
        .expect("running tshark");
    assert!(
        out.status.success(),
        "tshark failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut rows = BTreeMap::new();
    let mut frames = 0;
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let n: u64 = f[0].parse().unwrap();
        frames = frames.max(n);
        if f[1].is_empty() {
            continue;
        }
        let label = u32::from_str_radix(f[3].trim_start_matches("0x"), 16).unwrap();
        let mut ports = BTreeMap::new();
        for (proto, i) in [(6u8, 4), (17, 6), (132, 8)] {
            if let (Ok(s), Ok(d)) = (f[i].parse(), f[i + 1].parse()) {
                ports.insert(proto, (s, d));
            }
        }
        let canon = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().to_string();
        rows.insert(
            n,
            Row {
                src: canon(f[1]),
                dst: canon(f[2]),
                label,
                ports,
            },
        );
    }
    (frames, rows)
}
