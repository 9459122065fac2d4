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
//! - ClassBench matches port ranges whatever the protocol; flowpol's 5-tuple carries ports only
//!   for TCP, UDP, SCTP, DCCP and UDP-Lite (0 and 0 for any other protocol) and has no 5-tuple at
//!   all for a packet whose next header is an extension header or "no next header". Each rule is
//!   said as faithfully as the model allows, and how is recorded as a [`Translation`] (one per
//!   rule, with a stable name; see its variants);
//! - `--as both` writes the `five` and the `three` block, with the same rule names;
//! - `--as three` (the 3-tuple benchmark transform): the rule keeps src and dst, drops protocol
//!   and source port, and its destination-port range becomes a flow-label range with the same
//!   bounds (`lo-hi`, an exact label when `lo == hi`, any for `0-65535`). Ports are 16 bits, so
//!   the range always fits the 20-bit label. Trace packets get `label = dport` correspondingly,
//!   so the 3-tuple engines face the same rule structure on the same packets.

use crate::FlowLabel;
use crate::packet::IpNumber;
use crate::packet::key::{FiveTuple, ThreeTuple, Unavailable};
use crate::packet::{Decoded, LinkType, decode};
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
    /// The trace's last column: the 0-based index of the rule the generator drew the header
    /// from (`None` when the line has no seventh field).
    pub rule: Option<u32>,
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

/// Parses a ClassBench trace. Blank lines are skipped; the sixth field (TCP flags) and any
/// after the seventh (the rule column) are ignored.
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
        let rule = match f.get(6) {
            None => None,
            Some(_) => {
                let r = n(6)?;
                Some(u32::try_from(r).map_err(|_| too_big("rule number", r))?)
            }
        };
        out.push(CbPacket {
            src: u32::try_from(src).map_err(|_| too_big("address", src))?,
            dst: u32::try_from(dst).map_err(|_| too_big("address", dst))?,
            sport: u16::try_from(sport).map_err(|_| too_big("port", sport))?,
            dport: u16::try_from(dport).map_err(|_| too_big("port", dport))?,
            proto: u8::try_from(proto).map_err(|_| too_big("protocol", proto))?,
            rule,
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

/// How one ClassBench rule was said in flowpol's model. Each has a stable name ([`as_str`],
/// also its serde name) used on `import`'s standard error and in the trace check's `by_reason`.
///
/// [`as_str`]: Translation::as_str
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Translation {
    /// Written as it is (for `three`: a rule with any protocol and any source port, whose
    /// destination-port range becomes the label range).
    Exact,
    /// A protocol without ports whose port ranges both hold 0: written without ports. Its
    /// packets' 5-tuples have ports 0 and 0, so it matches the same packets.
    PortsDropped,
    /// Any protocol, with port ranges: one rule per protocol that has ports (tcp, udp, dccp,
    /// sctp, udplite; named `cb<i>.<protocol>`). Packets of other protocols have ports 0 and 0
    /// in flowpol; those the ClassBench rule matches through port 0 are not matched.
    AnyProtocolPorts,
    /// A protocol without ports and a port range without 0: flowpol's 5-tuple of such a packet
    /// has ports 0 and 0, so the rule never matches. Written as a comment.
    PortsExcludeZero,
    /// A protocol number after which IPv6 has no transport header to take ports from: an
    /// extension header (0, 43, 44, 50, 60, 135, 139, 140, 253, 254) or no next header (59).
    /// Such a packet has no 5-tuple, so the rule never matches. Written as a comment.
    NoFiveTuple,
    /// `three`: the rule's protocol, source-port range or both are dropped (the 3-tuple has
    /// neither), so it matches more than the ClassBench rule.
    Widened,
}

impl Translation {
    /// The translations of `five` rules, in report order.
    pub const FIVE: [Translation; 5] = [
        Translation::Exact,
        Translation::PortsDropped,
        Translation::AnyProtocolPorts,
        Translation::PortsExcludeZero,
        Translation::NoFiveTuple,
    ];
    /// The translations of `three` rules, in report order.
    pub const THREE: [Translation; 2] = [Translation::Exact, Translation::Widened];

    /// The stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Translation::Exact => "exact",
            Translation::PortsDropped => "ports-dropped",
            Translation::AnyProtocolPorts => "any-protocol-ports",
            Translation::PortsExcludeZero => "ports-exclude-zero",
            Translation::NoFiveTuple => "no-five-tuple",
            Translation::Widened => "widened",
        }
    }

    /// One line on what was done, for `import`'s standard error.
    pub fn describe(self) -> &'static str {
        match self {
            Translation::Exact => "written as they are",
            Translation::PortsDropped => {
                "protocol without ports, port ranges hold 0: written without ports (same packets)"
            }
            Translation::AnyProtocolPorts => {
                "any protocol with port ranges: one rule per protocol that has ports"
            }
            Translation::PortsExcludeZero => {
                "protocol without ports, a port range without 0: never match, written as comments"
            }
            Translation::NoFiveTuple => {
                "protocol is an IPv6 extension header or no next header: no 5-tuple, never match, written as comments"
            }
            Translation::Widened => "protocol and/or source port dropped: match more",
        }
    }
}

impl std::fmt::Display for Translation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one ClassBench rule became in one tuple kind's rule list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Imported {
    /// The indices ([`crate::classify::RuleId`]) of the flowpol rules it became, in that kind's
    /// list: one, several ([`Translation::AnyProtocolPorts`]) or none (written as a comment).
    pub rules: std::ops::Range<u32>,
    pub how: Translation,
}

/// A ClassBench rule set in flowpol's model, with what each rule became.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Import {
    pub policy: Policy,
    /// Per ClassBench rule (0-based, the trace's rule column): its `five` rules. Empty when the
    /// import made no `five` block.
    pub five: Vec<Imported>,
    /// Per ClassBench rule: its `three` rule. Empty when the import made no `three` block.
    pub three: Vec<Imported>,
}

/// True for protocol numbers after which flowpol's packet walk finds no transport header: the
/// IPv6 extension headers (IANA's "IPv6 Extension Header Types") and 59, no next header. The
/// Authentication Header (51) is not among them: the 5-tuple stops there with protocol 51, as
/// netfilter's `meta l4proto` does (see [`crate::packet::five`]).
/// [`CbPacket::keys`] agrees with the packet path on every value (tested).
pub fn no_five_tuple(p: u8) -> bool {
    let p = IpNumber(p);
    (p.is_ipv6_extension() && p != IpNumber::AH) || p == IpNumber::NO_NEXT
}

impl Translation {
    /// How rule `r` is said as `five` rules.
    pub fn five_of(r: &CbRule) -> Translation {
        let full = |(lo, hi): (u16, u16)| lo == 0 && hi == u16::MAX;
        let ports = !(full(r.sport) && full(r.dport));
        match r.proto {
            Some(p) if no_five_tuple(p) => Translation::NoFiveTuple,
            Some(p) if IpNumber(p).has_ports() || !ports => Translation::Exact,
            Some(_) if r.sport.0 == 0 && r.dport.0 == 0 => Translation::PortsDropped,
            Some(_) => Translation::PortsExcludeZero,
            None if ports => Translation::AnyProtocolPorts,
            None => Translation::Exact,
        }
    }

    /// How rule `r` is said as a `three` rule.
    pub fn three_of(r: &CbRule) -> Translation {
        if r.proto.is_none() && r.sport == (0, u16::MAX) {
            Translation::Exact
        } else {
            Translation::Widened
        }
    }
}

/// Imports ClassBench rules (`map` must be a /96; see the module doc).
pub fn import(rules: &[CbRule], kind: As, map: Prefix) -> Import {
    let mut p = Policy {
        classes: Vec::new(),
        three: Vec::new(),
        five: Vec::new(),
        default: Action::Drop,
        default_explicit: true,
    };
    let (mut five, mut three) = (Vec::new(), Vec::new());
    for (i, r) in rules.iter().enumerate() {
        let name = format!("cb{}", i + 1);
        let (src, dst) = (map_prefix(map, r.src), map_prefix(map, r.dst));
        if kind != As::Three {
            let how = Translation::five_of(r);
            let start = p.five.len() as u32;
            let mut push = |name: String, proto: Option<u8>, sport: PortMatch, dport: PortMatch| {
                p.five.push(Rule {
                    name,
                    matcher: FiveMatch {
                        src: src.clone(),
                        dst: dst.clone(),
                        proto,
                        sport,
                        dport,
                    },
                    action: Action::Pass,
                    span: Span::default(),
                })
            };
            let (sport, dport) = (port(r.sport.0, r.sport.1), port(r.dport.0, r.dport.1));
            match how {
                Translation::Exact => push(name.clone(), r.proto, sport, dport),
                Translation::PortsDropped => {
                    push(name.clone(), r.proto, PortMatch::ANY, PortMatch::ANY)
                }
                Translation::AnyProtocolPorts => {
                    for q in (0..=u8::MAX).filter(|&q| IpNumber(q).has_ports()) {
                        push(format!("{name}.{}", IpNumber(q)), Some(q), sport, dport);
                    }
                }
                _ => {}
            }
            five.push(Imported {
                rules: start..p.five.len() as u32,
                how,
            });
        }
        if kind != As::Five {
            three.push(Imported {
                rules: p.three.len() as u32..p.three.len() as u32 + 1,
                how: Translation::three_of(r),
            });
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
    Import {
        policy: p,
        five,
        three,
    }
}

/// Builds a policy from ClassBench rules: [`import`]'s policy.
pub fn to_policy(rules: &[CbRule], kind: As, map: Prefix) -> Policy {
    import(rules, kind, map).policy
}

impl Import {
    /// How many rules were translated each way, per translation of the kind (`five` when
    /// `five`, else `three`), in [`Translation::FIVE`] or [`Translation::THREE`] order. Empty
    /// when the import made no block of that kind.
    pub fn counts(&self, five: bool) -> Vec<(Translation, usize)> {
        let (list, all): (&[Imported], &[Translation]) = if five {
            (&self.five, &Translation::FIVE)
        } else {
            (&self.three, &Translation::THREE)
        };
        if list.is_empty() {
            return Vec::new();
        }
        all.iter()
            .map(|&t| (t, list.iter().filter(|i| i.how == t).count()))
            .collect()
    }

    /// The policy's canonical text, with each ClassBench rule that has no `five` rule written as
    /// a comment in its place (`# cb<i> never matches (<translation>): <ClassBench line>`).
    /// `rules` are the rules this was imported from.
    pub fn text(&self, rules: &[CbRule]) -> String {
        let text = crate::policy::fmt::format(&self.policy);
        // The comments to put before the k-th `five` rule (k = rules.len() for the `}`).
        let mut before: Vec<Vec<String>> = vec![Vec::new(); self.policy.five.len() + 1];
        for (i, (imp, r)) in self.five.iter().zip(rules).enumerate() {
            if imp.rules.is_empty() {
                before[imp.rules.start as usize].push(format!(
                    "# cb{} never matches ({}): {r}",
                    i + 1,
                    imp.how
                ));
            }
        }
        if before.iter().all(Vec::is_empty) {
            return text;
        }
        let mut out = String::with_capacity(text.len() + 4096);
        let (mut in_five, mut k) = (false, 0usize);
        let mut put = |out: &mut String, k: usize| {
            for c in before[k].drain(..) {
                out.push_str("    ");
                out.push_str(&c);
                out.push('\n');
            }
        };
        for line in text.lines() {
            if line == "five {" {
                in_five = true;
            } else if in_five && (line.starts_with("    rule ") || line == "}") {
                put(&mut out, k);
                k += 1;
                if line == "}" {
                    in_five = false;
                }
            }
            out.push_str(line);
            out.push('\n');
        }
        // No `five` block at all (every rule became a comment): a block of comments only.
        let rest: Vec<String> = before.into_iter().flatten().collect();
        if !rest.is_empty() {
            out.push_str("\nfive {\n");
            for c in rest {
                out.push_str("    ");
                out.push_str(&c);
                out.push('\n');
            }
            out.push_str("}\n");
        }
        out
    }
}

impl std::fmt::Display for CbRule {
    /// The rule in ClassBench's notation (without the TCP-flags field).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let a = |(v, l): (u32, u8)| format!("{}/{l}", std::net::Ipv4Addr::from(v));
        let (pv, pm) = self.proto.map_or((0, 0), |p| (p, 0xff));
        write!(
            f,
            "@{} {} {} : {} {} : {} 0x{pv:02X}/0x{pm:02X}",
            a(self.src),
            a(self.dst),
            self.sport.0,
            self.sport.1,
            self.dport.0,
            self.dport.1
        )
    }
}

impl CbPacket {
    /// The packet's 5-tuple under `map`, with the trace's ports whatever the protocol (for
    /// flowpol's reading of the packet, see [`CbPacket::keys`]).
    pub fn five(&self, map: Prefix) -> FiveTuple {
        FiveTuple {
            src: map_addr(map, self.src),
            dst: map_addr(map, self.dst),
            proto: self.proto,
            sport: self.sport,
            dport: self.dport,
        }
    }
    /// The packet's keys as flowpol's packet path reads them from the frame [`append_packet`]
    /// writes: the 3-tuple (label = destination port), and the 5-tuple, whose ports are 0 and
    /// 0 for a protocol without ports, or why there is none (the protocol numbers of
    /// [`no_five_tuple`]). `scratch` is a buffer to build the frame in.
    pub fn keys(
        &self,
        map: Prefix,
        scratch: &mut Vec<u8>,
    ) -> (ThreeTuple, Result<FiveTuple, Unavailable>) {
        scratch.clear();
        if append_packet(self, map, scratch).is_ok()
            && let Decoded::Ipv6(k) = decode(LinkType::ETHERNET, scratch)
        {
            return (k.three, k.five);
        }
        // Not reached: every trace packet builds and decodes. Said without the frame, the same.
        let five = if no_five_tuple(self.proto) {
            Err(Unavailable::UnknownHeader)
        } else if IpNumber(self.proto).has_ports() {
            Ok(self.five(map))
        } else {
            Ok(FiveTuple {
                sport: 0,
                dport: 0,
                ..self.five(map)
            })
        };
        (self.three(map), five)
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

/// TCP and UDP are written with a real transport header. Any other protocol number goes in the
/// next-header field as it is, followed by 8 bytes: for the protocols that have ports (SCTP,
/// DCCP, UDP-Lite) the first four carry them; for a number IPv6 reads as an extension header
/// (0, 43, 44, 51, 60) they are that header, empty, with next header 59 (no next header), so the
/// packet has no 5-tuple, as [`CbPacket::keys`] says (except behind AH, 51, where the 5-tuple
/// stops with protocol 51 and ports 0); otherwise they are zero.
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
            const NONE: u8 = IpNumber::NO_NEXT.0;
            let mut payload = [0u8; 8];
            match proto {
                // Hop-by-hop, routing, destination options: next header, length 0 (8 bytes).
                // Fragment: next header, offset 0, M clear (8 bytes). AH: next header, length 0
                // ((0 + 2) * 4 = 8 bytes).
                IpNumber::HOP_BY_HOP
                | IpNumber::IPV6_ROUTE
                | IpNumber::IPV6_FRAG
                | IpNumber::AH
                | IpNumber::IPV6_DEST_OPTS => payload[0] = NONE,
                q if q.has_ports() => {
                    payload[..2].copy_from_slice(&p.sport.to_be_bytes());
                    payload[2..4].copy_from_slice(&p.dport.to_be_bytes());
                }
                _ => {}
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

    #[test]
    fn trace_lines_keep_their_rule_column() {
        let t = parse_trace("1 2 3 4 6 0 17\n1 2 3 4 6 0\n").unwrap();
        assert_eq!((t[0].rule, t[1].rule), (Some(17), None));
        assert_eq!(parse_trace("1 2 3 4 6 0 x").unwrap_err().line, 1);
        assert!(parse_trace("1 2 3 4 6 0 4294967296").is_err());
    }

    #[test]
    fn every_protocol_number_gets_the_keys_the_packet_path_reads() {
        let mut scratch = Vec::new();
        for proto in 0..=u8::MAX {
            let p = CbPacket {
                src: 1,
                dst: 2,
                sport: 1000,
                dport: 2000,
                proto,
                rule: None,
            };
            let (three, five) = p.keys(DEFAULT_MAP_V4, &mut scratch);
            assert_eq!(three, p.three(DEFAULT_MAP_V4), "{proto}");
            match five {
                Err(e) => {
                    assert!(no_five_tuple(proto), "{proto}: {e}");
                    let want = if proto == 50 {
                        Unavailable::Esp
                    } else {
                        Unavailable::UnknownHeader
                    };
                    assert_eq!(e, want, "{proto}");
                }
                Ok(k) => {
                    assert!(!no_five_tuple(proto), "{proto}");
                    assert_eq!(k.proto, proto);
                    let ports = if IpNumber(proto).has_ports() {
                        (1000, 2000)
                    } else {
                        (0, 0)
                    };
                    assert_eq!((k.sport, k.dport), ports, "{proto}");
                }
            }
        }
    }

    /// One rule per case: (ClassBench line, five translation, five rules, three translation).
    const CASES: [(&str, Translation, u32, Translation); 8] = [
        (
            "@1.0.0.0/8\t0.0.0.0/0\t0 : 65535\t80 : 80\t0x06/0xFF",
            Translation::Exact,
            1,
            Translation::Widened,
        ),
        (
            "@1.0.0.0/8\t0.0.0.0/0\t0 : 65535\t0 : 65535\t0x00/0x00",
            Translation::Exact,
            1,
            Translation::Exact,
        ),
        (
            "@1.0.0.0/8\t0.0.0.0/0\t0 : 65535\t0 : 65535\t0x01/0xFF",
            Translation::Exact,
            1,
            Translation::Widened,
        ),
        (
            "@1.0.0.0/8\t0.0.0.0/0\t0 : 1023\t0 : 0\t0x01/0xFF",
            Translation::PortsDropped,
            1,
            Translation::Widened,
        ),
        (
            "@1.0.0.0/8\t0.0.0.0/0\t0 : 65535\t0 : 1023\t0x00/0x00",
            Translation::AnyProtocolPorts,
            5,
            Translation::Exact,
        ),
        (
            "@1.0.0.0/8\t0.0.0.0/0\t1 : 65535\t0 : 65535\t0x02/0xFF",
            Translation::PortsExcludeZero,
            0,
            Translation::Widened,
        ),
        (
            "@1.0.0.0/8\t0.0.0.0/0\t0 : 65535\t8 : 8\t0x01/0xFF",
            Translation::PortsExcludeZero,
            0,
            Translation::Widened,
        ),
        (
            "@1.0.0.0/8\t0.0.0.0/0\t0 : 65535\t0 : 65535\t0x3C/0xFF",
            Translation::NoFiveTuple,
            0,
            Translation::Widened,
        ),
    ];

    #[test]
    fn each_rule_is_translated_the_way_its_case_needs() {
        for (line, five, n, three) in CASES {
            let r = parse_rules(line).unwrap();
            let imp = import(&r, As::Both, DEFAULT_MAP_V4);
            assert_eq!(imp.five[0].how, five, "{line}");
            assert_eq!(imp.five[0].rules, 0..n, "{line}");
            assert_eq!(
                imp.three[0],
                Imported {
                    rules: 0..1,
                    how: three
                },
                "{line}"
            );
            assert_eq!(imp.policy.five.len(), n as usize);
            for rule in &imp.policy.five {
                let m = &rule.matcher;
                // What the check rejects (E0009): ports on a protocol without them.
                assert!(
                    m.sport.is_any() && m.dport.is_any()
                        || m.proto.is_some_and(|p| IpNumber(p).has_ports()),
                    "{line}: {m:?}"
                );
            }
        }
        for p in [0u8, 43, 44, 50, 59, 60, 135, 139, 140, 253, 254] {
            let r = parse_rules(&format!(
                "@1.0.0.0/8\t0.0.0.0/0\t0 : 65535\t0 : 65535\t0x{p:02X}/0xFF"
            ))
            .unwrap();
            assert_eq!(Translation::five_of(&r[0]), Translation::NoFiveTuple, "{p}");
        }
        let any = import(&parse_rules(CASES[4].0).unwrap(), As::Five, DEFAULT_MAP_V4);
        let names: Vec<&str> = any.policy.five.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["cb1.tcp", "cb1.udp", "cb1.dccp", "cb1.sctp", "cb1.udplite"]
        );
        assert!(
            any.policy
                .five
                .iter()
                .all(|r| r.matcher.dport == port(0, 1023))
        );
    }

    #[test]
    fn rules_that_never_match_are_comments_in_their_place_and_the_text_checks_clean() {
        let text: String = CASES.iter().map(|c| format!("{}\n", c.0)).collect();
        let rules = parse_rules(&text).unwrap();
        for kind in [As::Five, As::Three, As::Both] {
            let imp = import(&rules, kind, DEFAULT_MAP_V4);
            let out = imp.text(&rules);
            let (policy, diags) = crate::policy::check_source(&out);
            let errors: Vec<_> = diags
                .iter()
                .filter(|d| d.severity == crate::policy::diagnostic::Severity::Error)
                .collect();
            assert!(errors.is_empty(), "{kind:?}: {errors:?}\n{out}");
            assert_eq!(policy.as_ref(), Some(&imp.policy), "{kind:?}");
            let counts: Vec<usize> = imp.counts(true).into_iter().map(|(_, n)| n).collect();
            let three: Vec<usize> = imp.counts(false).into_iter().map(|(_, n)| n).collect();
            match kind {
                As::Three => assert!(counts.is_empty() && three == [2, 6]),
                _ => assert_eq!(counts, [3, 1, 1, 2, 1]),
            }
        }
        let out = import(&rules, As::Five, DEFAULT_MAP_V4).text(&rules);
        let lines: Vec<&str> = out.lines().collect();
        let at = |s: &str| {
            lines
                .iter()
                .position(|l| l.contains(s))
                .unwrap_or_else(|| panic!("{s}\n{out}"))
        };
        assert_eq!(
            lines[at("# cb6")],
            "    # cb6 never matches (ports-exclude-zero): @1.0.0.0/8 0.0.0.0/0 1 : 65535 0 : 65535 0x02/0xFF"
        );
        assert!(at("rule cb5.udplite") < at("# cb6"));
        assert!(at("# cb6") < at("# cb7") && at("# cb8 never matches (no-five-tuple)") < at("}"));
        // Every rule a comment: a block of comments.
        let never = parse_rules(CASES[7].0).unwrap();
        let out = import(&never, As::Five, DEFAULT_MAP_V4).text(&never);
        assert!(
            out.contains("five {\n    # cb1 never matches (no-five-tuple)"),
            "{out}"
        );
        assert!(crate::policy::check_source(&out).0.is_some());
    }
}
