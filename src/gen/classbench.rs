//! ClassBench import: rule sets and traces of the standard packet-classification benchmark,
//! mapped into IPv6 so that flowpol's engines can run them.
//!
//! Rule lines: `@SRC/LEN<TAB>DST/LEN<TAB>SLO : SHI<TAB>DLO : DHI<TAB>0xPROTO/0xMASK<TAB>0xFLAGS/0xMASK`.
//! Trace lines: `SRC DST SPORT DPORT PROTO FLAGS RULE` in decimal.
//!
//! The transforms, all documented in `flowpol import --help`:
//! - an IPv4 address `a.b.c.d/N` becomes `MAP + a.b.c.d` / `96 + N` under the `--map-v4` /96
//!   (default `::ffff:0:0/96`, the IPv4-mapped block);
//! - protocol `0x00/0x00` is any, `0xNN/0xFF` is exactly NN (other masks are rejected);
//! - TCP flags are ignored (flowpol does not match on them);
//! - rule `i` (1-based line order) is named `cb<i>` and passes; the default drops;
//! - `--as both` writes the `five` and the `three` block, with the same rule names;
//! - `--as three` (the 3-tuple benchmark transform): the rule keeps src and dst, drops protocol
//!   and source port, and its destination-port range becomes a flow-label range with the same
//!   bounds (`lo-hi`, an exact label when `lo == hi`, any for `0-65535`). Ports are 16 bits, so
//!   the range always fits the 20-bit label. Trace packets get `label = dport` correspondingly,
//!   so the 3-tuple engines face the same rule structure on the same packets.

use crate::FlowLabel;
use crate::packet::IpNumber;
use crate::packet::key::{FiveTuple, ThreeTuple};
use crate::policy::model::{
    Action, AddrMatch, FiveMatch, LabelMatch, Policy, PortMatch, Prefix, Rule, ThreeMatch,
};
use crate::policy::syntax::Span;

/// The default /96 IPv4 addresses are mapped under: `::ffff:0:0/96`.
pub const DEFAULT_MAP_V4: Prefix = Prefix {
    addr: 0xffff_0000_0000,
    len: 96,
};

/// One ClassBench rule, in IPv4 terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CbRule {
    pub src: (u32, u8),
    pub dst: (u32, u8),
    pub sport: (u16, u16),
    pub dport: (u16, u16),
    /// `None` for any protocol.
    pub proto: Option<u8>,
}

/// One trace packet, in IPv4 terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CbPacket {
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

/// A line that is not in ClassBench format.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {reason}")]
pub struct CbError {
    pub line: usize,
    pub reason: String,
}

/// Which tuple kind an import produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum As {
    #[default]
    Five,
    Three,
    /// Both blocks, with the same rule names, so one policy runs both tuple kinds.
    Both,
}

fn err(line: usize, reason: impl Into<String>) -> CbError {
    CbError {
        line,
        reason: reason.into(),
    }
}

fn parse_v4_prefix(s: &str, line: usize) -> Result<(u32, u8), CbError> {
    let (a, l) = s
        .split_once('/')
        .ok_or_else(|| err(line, format!("`{s}` is not ADDR/LEN")))?;
    let addr: std::net::Ipv4Addr = a
        .parse()
        .map_err(|_| err(line, format!("`{a}` is not an IPv4 address")))?;
    let len: u8 = l
        .parse()
        .map_err(|_| err(line, format!("`{l}` is not a prefix length")))?;
    if len > 32 {
        return Err(err(line, format!("prefix length {len} is longer than 32")));
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Ok((u32::from(addr) & mask, len))
}

fn parse_range(s: &str, line: usize) -> Result<(u16, u16), CbError> {
    let (a, b) = s
        .split_once(':')
        .ok_or_else(|| err(line, format!("`{s}` is not LO : HI")))?;
    let p = |x: &str| {
        x.trim()
            .parse::<u16>()
            .map_err(|_| err(line, format!("`{}` is not a port", x.trim())))
    };
    let (lo, hi) = (p(a)?, p(b)?);
    if lo > hi {
        return Err(err(line, format!("port range {lo} : {hi} is empty")));
    }
    Ok((lo, hi))
}

fn parse_hex_u8(s: &str, line: usize) -> Result<u8, CbError> {
    let h = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    u8::from_str_radix(h, 16).map_err(|_| err(line, format!("`{s}` is not a hex byte")))
}

/// Parses a ClassBench rule file. Blank lines are skipped.
pub fn parse_rules(text: &str) -> Result<Vec<CbRule>, CbError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() {
            continue;
        }
        let l = l
            .strip_prefix('@')
            .ok_or_else(|| err(line, "a rule line starts with `@`"))?;
        let f: Vec<&str> = l
            .split('\t')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .collect();
        if f.len() < 5 {
            return Err(err(
                line,
                format!(
                    "expected at least 5 tab-separated fields, found {}",
                    f.len()
                ),
            ));
        }
        let (pv, pm) = f[4]
            .split_once('/')
            .ok_or_else(|| err(line, format!("`{}` is not 0xPROTO/0xMASK", f[4])))?;
        let (pv, pm) = (parse_hex_u8(pv, line)?, parse_hex_u8(pm, line)?);
        let proto = match pm {
            0 => None,
            0xff => Some(pv),
            m => {
                return Err(err(
                    line,
                    format!("protocol mask {m:#04x} (only 0x00 and 0xFF)"),
                ));
            }
        };
        out.push(CbRule {
            src: parse_v4_prefix(f[0], line)?,
            dst: parse_v4_prefix(f[1], line)?,
            sport: parse_range(f[2], line)?,
            dport: parse_range(f[3], line)?,
            proto,
        });
    }
    Ok(out)
}

/// Parses a ClassBench trace. Blank lines are skipped; fields after the fifth are ignored.
pub fn parse_trace(text: &str) -> Result<Vec<CbPacket>, CbError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let f: Vec<&str> = raw.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if f.len() < 5 {
            return Err(err(
                line,
                format!("expected at least 5 fields, found {}", f.len()),
            ));
        }
        let n = |k: usize| -> Result<u64, CbError> {
            f[k].parse::<u64>()
                .map_err(|_| err(line, format!("`{}` is not a number", f[k])))
        };
        let (src, dst, sport, dport, proto) = (n(0)?, n(1)?, n(2)?, n(3)?, n(4)?);
        let too_big = |what: &str, v: u64| err(line, format!("{what} {v} is out of range"));
        out.push(CbPacket {
            src: u32::try_from(src).map_err(|_| too_big("address", src))?,
            dst: u32::try_from(dst).map_err(|_| too_big("address", dst))?,
            sport: u16::try_from(sport).map_err(|_| too_big("port", sport))?,
            dport: u16::try_from(dport).map_err(|_| too_big("port", dport))?,
            proto: u8::try_from(proto).map_err(|_| too_big("protocol", proto))?,
        });
    }
    Ok(out)
}

/// Maps an IPv4 address under a /96.
pub fn map_addr(map: Prefix, v4: u32) -> u128 {
    (map.addr & Prefix::mask_of(96)) | u128::from(v4)
}

fn map_prefix(map: Prefix, (a, l): (u32, u8)) -> AddrMatch {
    AddrMatch(vec![Prefix::new(map_addr(map, a), 96 + l)])
}

fn port(lo: u16, hi: u16) -> PortMatch {
    PortMatch { lo, hi }
}

/// The flow-label match the `--as three` transform makes of a destination-port range.
pub fn dport_label(lo: u16, hi: u16) -> LabelMatch {
    let l = |v: u16| FlowLabel::from_low_bits(u32::from(v));
    if lo == 0 && hi == u16::MAX {
        LabelMatch::Any
    } else if lo == hi {
        LabelMatch::Exact(l(lo))
    } else {
        LabelMatch::Range {
            lo: l(lo),
            hi: l(hi),
        }
    }
}

/// Builds a policy from ClassBench rules (`map` must be a /96; see the module doc).
pub fn to_policy(rules: &[CbRule], kind: As, map: Prefix) -> Policy {
    let mut p = Policy {
        classes: Vec::new(),
        three: Vec::new(),
        five: Vec::new(),
        default: Action::Drop,
        default_explicit: true,
    };
    for (i, r) in rules.iter().enumerate() {
        let name = format!("cb{}", i + 1);
        let (src, dst) = (map_prefix(map, r.src), map_prefix(map, r.dst));
        if kind != As::Three {
            p.five.push(Rule {
                name: name.clone(),
                matcher: FiveMatch {
                    src: src.clone(),
                    dst: dst.clone(),
                    proto: r.proto,
                    sport: port(r.sport.0, r.sport.1),
                    dport: port(r.dport.0, r.dport.1),
                },
                action: Action::Pass,
                span: Span::default(),
            });
        }
        if kind != As::Five {
            p.three.push(Rule {
                name,
                matcher: ThreeMatch {
                    src,
                    dst,
                    label: dport_label(r.dport.0, r.dport.1),
                },
                action: Action::Pass,
                span: Span::default(),
            });
        }
    }
    p
}

impl CbPacket {
    /// The packet's 5-tuple under `map`.
    pub fn five(&self, map: Prefix) -> FiveTuple {
        FiveTuple {
            src: map_addr(map, self.src),
            dst: map_addr(map, self.dst),
            proto: self.proto,
            sport: self.sport,
            dport: self.dport,
        }
    }
    /// The packet's 3-tuple under `map`, with `label = dport` (the `--as three` transform).
    pub fn three(&self, map: Prefix) -> ThreeTuple {
        ThreeTuple {
            src: map_addr(map, self.src),
            dst: map_addr(map, self.dst),
            label: FlowLabel::from_low_bits(u32::from(self.dport)),
        }
    }
}

/// Parses `PREFIX/96` for `--map-v4`.
pub fn parse_map(s: &str) -> Result<Prefix, String> {
    let (a, l) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}` is not PREFIX/96"))?;
    let addr: std::net::Ipv6Addr = a
        .parse()
        .map_err(|_| format!("`{a}` is not an IPv6 address"))?;
    if l != "96" {
        return Err(format!("the IPv4 map must be a /96, not /{l}"));
    }
    let addr = u128::from(addr);
    if addr & !Prefix::mask_of(96) != 0 {
        return Err(format!("`{s}` has bits set in its low 32 bits"));
    }
    Ok(Prefix::new(addr, 96))
}

/// Writing a trace as a pcap failed.
#[derive(Debug, thiserror::Error)]
pub enum TracePcapError {
    #[error("building packet {index}: {source}")]
    Build {
        index: usize,
        source: etherparse::err::packet::BuildWriteError,
    },
    #[error("writing the pcap: {0}")]
    Io(#[from] std::io::Error),
}

/// TCP and UDP are written with a real transport header; any other protocol number goes in the
/// next-header field as it is (even one that IPv6 reads as an extension header, which the
/// packet path then reports as such), followed by 8 bytes whose first four carry the ports for
/// protocols that have them (SCTP, DCCP, UDP-Lite) and are zero otherwise.
pub fn append_packet(
    p: &CbPacket,
    map: Prefix,
    out: &mut Vec<u8>,
) -> Result<(), etherparse::err::packet::BuildWriteError> {
    use etherparse::{
        EtherType, Ethernet2Header, IpHeaders, IpNumber as EtherIpNumber, Ipv6FlowLabel,
        Ipv6Header, PacketBuilder,
    };
    let (src_mac, dst_mac) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let mut ip = Ipv6Header {
        traffic_class: 0,
        // The `three` transform: the label is the destination port (16 bits, always fits).
        flow_label: Ipv6FlowLabel::try_new(u32::from(p.dport)).unwrap_or_default(),
        payload_length: 0,
        next_header: EtherIpNumber(p.proto),
        hop_limit: 64,
        source: map_addr(map, p.src).to_be_bytes(),
        destination: map_addr(map, p.dst).to_be_bytes(),
    };
    let b = || {
        PacketBuilder::ethernet2(src_mac, dst_mac)
            .ip(IpHeaders::Ipv6(ip.clone(), Default::default()))
    };
    match IpNumber(p.proto) {
        IpNumber::TCP => b().tcp(p.sport, p.dport, 0, 1024).write(out, &[]),
        IpNumber::UDP => b().udp(p.sport, p.dport).write(out, &[]),
        proto => {
            let mut payload = [0u8; 8];
            if proto.has_ports() {
                payload[..2].copy_from_slice(&p.sport.to_be_bytes());
                payload[2..4].copy_from_slice(&p.dport.to_be_bytes());
            }
            ip.payload_length = payload.len() as u16;
            let eth = Ethernet2Header {
                source: src_mac,
                destination: dst_mac,
                ether_type: EtherType::IPV6,
            };
            out.extend_from_slice(&eth.to_bytes());
            out.extend_from_slice(&ip.to_bytes());
            out.extend_from_slice(&payload);
            Ok(())
        }
    }
}

/// Writes trace packets as Ethernet + IPv6 + TCP/UDP frames to a pcap (one per microsecond), with
/// the addresses mapped under `map` and the flow label set to the destination port. Returns the
/// number of packets written.
pub fn write_trace_pcap<W: std::io::Write>(
    packets: &[CbPacket],
    map: Prefix,
    w: W,
) -> Result<usize, TracePcapError> {
    use crate::source::pcap::{FrameWriter, PcapWriter};
    let mut writer = PcapWriter::new(w, crate::packet::LinkType::ETHERNET)?;
    let mut buf = Vec::with_capacity(128);
    for (index, p) in packets.iter().enumerate() {
        buf.clear();
        append_packet(p, map, &mut buf)
            .map_err(|source| TracePcapError::Build { index, source })?;
        let ts = std::time::Duration::from_micros(index as u64);
        writer.write_packet(ts, buf.len() as u32, &buf)?;
    }
    writer.into_inner()?;
    Ok(packets.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = "@133.160.173.244/32\t1.66.212.52/32\t0 : 65535\t1704 : 1704\t0x06/0xFF\t0x1000/0x1000\t\n\
                         @0.0.0.0/0\t10.0.0.0/8\t1024 : 65535\t0 : 65535\t0x00/0x00\t0x0000/0x0000\t\n";

    #[test]
    fn parses_rules_and_maps_into_v6() {
        let r = parse_rules(RULES).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].src, (0x85a0_adf4, 32));
        assert_eq!(r[0].dport, (1704, 1704));
        assert_eq!(r[0].proto, Some(6));
        assert_eq!(r[1].proto, None);
        let p = to_policy(&r, As::Five, DEFAULT_MAP_V4);
        assert_eq!(
            p.five[0].matcher.src.0[0].to_string(),
            "::ffff:133.160.173.244"
        );
        assert_eq!(p.five[1].matcher.src.0[0].to_string(), "::ffff:0.0.0.0/96");
        assert_eq!(p.five[1].matcher.dst.0[0].len, 104);
        assert_eq!(
            p.five[1].matcher.sport,
            PortMatch {
                lo: 1024,
                hi: 65535
            }
        );
        let both = to_policy(&r, As::Both, DEFAULT_MAP_V4);
        assert_eq!(both.five, p.five);
        assert_eq!(both.three, to_policy(&r, As::Three, DEFAULT_MAP_V4).three);
        let t = to_policy(&r, As::Three, DEFAULT_MAP_V4);
        assert_eq!(
            t.three[0].matcher.label,
            LabelMatch::Exact(FlowLabel::new(1704).unwrap())
        );
        assert_eq!(t.three[1].matcher.label, LabelMatch::Any);
        assert_eq!(
            dport_label(1024, 65535),
            LabelMatch::Range {
                lo: FlowLabel::new(1024).unwrap(),
                hi: FlowLabel::new(65535).unwrap()
            }
        );
    }

    #[test]
    fn rejects_bad_lines_with_line_numbers() {
        assert_eq!(
            parse_rules("@1.2.3.4/33\t1.2.3.4/32\t0 : 1\t0 : 1\t0x06/0xFF")
                .unwrap_err()
                .line,
            1
        );
        assert!(
            parse_rules("\n1.2.3.4/32")
                .unwrap_err()
                .reason
                .contains('@')
        );
        assert!(parse_rules("@1.2.3.4/3\t1.2.3.4/32\t0 : 1\t0 : 1\t0x06/0x0F").is_err());
        assert!(parse_rules("@1.2.3.4/3\t1.2.3.4/32\t5 : 1\t0 : 1\t0x06/0xFF").is_err());
        assert!(parse_trace("1 2 3 70000 6 0 1").is_err());
        assert!(parse_trace("1 2 3").is_err());
    }

    #[test]
    fn trace_packets_become_keys() {
        let t = parse_trace("3232235777\t167772161\t1000\t80\t6\t0\t3\n").unwrap();
        let map = parse_map("64:ff9b::/96").unwrap();
        let k = t[0].five(map);
        assert_eq!(
            std::net::Ipv6Addr::from(k.src).to_string(),
            "64:ff9b::c0a8:101"
        );
        assert_eq!((k.proto, k.sport, k.dport), (6, 1000, 80));
        assert_eq!(t[0].three(map).label.value(), 80);
        assert!(parse_map("64:ff9b::/64").is_err());
        assert!(parse_map("64:ff9b::1/96").is_err());
    }

    #[test]
    fn trace_pcap_round_trips_through_etherparse() {
        let text = "1 2 1000 80 6 0 1\n1 2 53 5353 17 0 1\n1 2 0 0 50 0 1\n1 2 0 0 0 0 1\n";
        let t = parse_trace(text).unwrap();
        let mut out = Vec::new();
        assert_eq!(write_trace_pcap(&t, DEFAULT_MAP_V4, &mut out).unwrap(), 4);
        let mut r = pcap_file::pcap::PcapReader::new(&out[..]).unwrap();
        let mut seen = Vec::new();
        while let Some(pkt) = r.next_packet() {
            let pkt = pkt.unwrap();
            let h = etherparse::Ipv6HeaderSlice::from_slice(&pkt.data[14..]).unwrap();
            assert_eq!(usize::from(h.payload_length()) + 54, pkt.data.len());
            assert_eq!(u128::from_be_bytes(h.source()), map_addr(DEFAULT_MAP_V4, 1));
            let transport = etherparse::SlicedPacket::from_ethernet(&pkt.data)
                .ok()
                .and_then(|s| s.transport);
            let ports = match transport {
                Some(etherparse::TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port()),
                Some(etherparse::TransportSlice::Udp(u)) => (u.source_port(), u.destination_port()),
                _ => (0, 0),
            };
            seen.push((h.next_header().0, h.flow_label().value(), ports));
        }
        let want = [
            (6, 80, (1000, 80)),
            (17, 5353, (53, 5353)),
            (50, 0, (0, 0)),
            (0, 0, (0, 0)),
        ];
        assert_eq!(seen, want);
    }
}
