//! The pcap-filter (classic BPF) target: one expression per rule, per action (pass, drop, each
//! class) and for the default, that tcpdump, tshark (`-f`) and libpcap compile, selecting
//! exactly the packets flowpol's first-match engine assigns to it.
//!
//! # Encoding
//! - addresses: `src net P` (`src host A` for a /128), sets as `(src net a or src net b)`;
//! - the flow label, the low 20 bits of the first 32-bit word of the IPv6 header:
//!   `ip6[0:4] & 0xfffff = V`, ranges with `>=`/`<=`, masks as `ip6[0:4] & M = V`
//!   (libpcap loads only 1, 2 or 4 bytes: `ip6[1:3]` does not compile);
//! - IPv6 as flowpol reads it: `ip6 and ip6[0] & 0xf0 = 0x60 and ip6[39] >= 0` (EtherType,
//!   version 6, and all 40 bytes of the fixed header captured: the load of byte 39 fails on a
//!   runt and the filter rejects it), so frames under EtherType 0x86DD that flowpol counts as
//!   malformed (version 4, runts) are selected by no expression;
//! - first match: rule k is `(match k) and not (match j or ...)` over the earlier rules j that
//!   can match a packet rule k matches (the others cannot change the outcome), leaving out of
//!   each j the tests it shares with k; an action is the union of its rules' tests, or, when
//!   the default has the action, every packet but those of the rules with other actions. No
//!   test appears both inside and outside a `not`: libpcap 1.10.3's optimizer miscompiled
//!   `ip6 and (dst net P) and not ((dst net P and ip6[6] = 58))` (it selected ICMPv6 packets
//!   that `tcpdump -O` does not), and tests/kernel_diff.rs compares every filter with and
//!   without the optimizer;
//! - a rule no packet reaches (an earlier rule covers it) is `ip6 and len = 0`: libpcap refuses
//!   a filter it can prove empty ("expression rejects all packets"), and no IPv6 frame has
//!   length 0.
//!
//! # VLAN tags
//! flowpol reads IPv6 behind up to [`MAX_TAGS`] 802.1Q/802.1ad tags (TPID 0x8100, 0x88a8 or
//! 0x9100, see [`crate::packet::link`]), and so does every expression by default: the test `T`
//! above is repeated once per tag level, nested in the tag tests,
//! `(ip6 and T) or (TAG@12 and ((ether[16:2] = 0x86dd and T@18) or (TAG@16 and ...)))`, where
//! `TAG@o` is `(ether[o:2] = 0x8100 or ether[o:2] = 0x88a8 or ether[o:2] = 0x9100)` and `T@o`
//! is `T` with its IPv6 header at byte o of the frame: `ether[o:4] & 0xfffff` for the label,
//! the prefix's 32-bit words (`ether[o+8:4] = 0x20010db8 and ...`) for an address.
//!
//! The `vlan` keyword is not used. It would be shorter (it shifts the offsets of every later
//! test, so `ip6 and T` could be written unchanged behind it), but on a live Linux capture
//! libpcap compiles it to an aux-data test (`SKF_AD_VLAN_TAG_PRESENT`) plus offsets kept in
//! scratch memory, and libpcap 1.10.3 (this machine's) gets that wrong for these expressions:
//! an arithmetic test before the first `vlan` reuses the scratch word that later holds the VLAN
//! offset, so a default filter `(ip6 and not (... or ip6[0:4] & 0xfffff = 5)) or (vlan and
//! (ip6 and not (...)))` selected, live in a namespace, a VLAN 100 frame with label 5 that an
//! earlier rule takes. Its optimizer also moves the offset update onto the aux-data path
//! (libpcap issue #1513, open: `ip6 or (vlan and ip6)` reads the EtherType at byte 16 when the
//! tag is in metadata). Fixed offsets read the bytes as they are.
//!
//! On a live Linux capture the kernel usually moves a received frame's outer 802.1Q/802.1ad
//! tag into packet metadata before the filter runs (libpcap and flowpol's ring put it back
//! afterwards): the filter then sees the frame one tag shallower, finds the same IPv6 header at
//! the level below, and selects the same packets (tests/compile_bpf.rs checks this between two
//! namespaces, the filters running in the kernel while `flowpol replay` sends tagged frames).
//! The one difference: a frame with one tag more than flowpol reads, whose outer tag was
//! stripped, is selected live though flowpol does not read it.
//!
//! `ether[..]` and the tag tests exist only on Ethernet: the expressions compile for Ethernet
//! devices and captures (and Linux `lo`), not for `tcpdump -i any`, tun devices or Linux
//! cooked, raw IP or BSD loopback captures. `--vlan-tags 0` gives the untagged level alone, which
//! libpcap compiles for every link type, at the price of VLAN-tagged Ethernet frames (the
//! filters say so: `exact: false`, as with 1 to 3 levels for frames behind more tags).
//!
//! # Program size
//! Each level repeats the rule tests, so a program grows about fivefold with the default four
//! levels. Measured with `tcpdump -d` (libpcap 1.10.3), the largest program of a policy
//! (usually the action with the most rules):
//!
//! | policy | no tags | 4 levels |
//! |---|---|---|
//! | bundled policies/ and tests/data/compile (largest) | 68 | 329 |
//! | `gen rules --shape acl --count 20` (three / five) | 342 / 425 | 2,047 / 2,579 |
//! | `gen rules --shape acl --count 50` | 1,109 / 1,115 | 5,649 / 5,978 |
//! | `gen rules --shape fw --count 100` | 2,793 / 3,019 | 14,500 / 15,452 |
//! | `gen rules --shape fw --count 200` | 7,003 / 8,447 | 36,067 / 42,470 |
//!
//! libpcap itself compiles all of them (`tcpdump -d` took up to 60 s for the last), but Linux
//! runs a socket filter of at most 4,096 instructions (`BPF_MAXINSNS`): past that (some 35 to
//! 45 rules of these shapes with four levels, 130 to 180 without), tcpdump prints "Warning:
//! Kernel filter failed: Invalid argument" and libpcap filters in user space, correct but with
//! every frame copied up. Fewer levels (`--vlan-tags 1` or `2`) shrink a program in proportion.
//! An expression longer than 128 KiB (around 100 rules with four levels) is too long for one
//! command-line argument (`MAX_ARG_STRLEN`): give it to `tcpdump -F FILE`. The text output
//! marks such expressions and those estimated over 4,096 instructions (`# too big:`),
//! `compile` warns about them on stderr, and `--filter-dir` writes every expression to its
//! own file ([`write_files`]).
//!
//! # Exactness
//! 3-tuple rules read only the fixed IPv6 header and are exact on Ethernet with all four tag
//! levels. With fewer they are marked `exact: false` (with `--vlan-tags 0` they are exact on
//! link types that carry no tags, but not on Ethernet). 5-tuple rules are marked
//! `exact: false`: the protocol and port tests (`ip6[6]`, `ip6[40:2]`) read only the fixed
//! header's next header, so a packet with extension headers before its transport header, which
//! flowpol matches on the transport header it finds behind them, is missed (and a first
//! fragment is not seen as UDP/TCP), and a packet flowpol has no 5-tuple for (ESP, next header
//! 59, a transport header cut short, payload length 0) is selected by rules on addresses
//! alone and by the default.

use super::{CompileError, five_overlap, label_canon, three_overlap};
use crate::packet::IpNumber;
use crate::packet::link::ethertype;
use crate::policy::model::{Action, AddrMatch, FiveMatch, LabelMatch, Policy, Prefix, ThreeMatch};
use crate::policy::syntax::TupleKind;
use std::fmt::Write as _;

/// What a filter selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterKind {
    /// The packets one rule gets.
    Rule,
    /// The packets with one action: every rule with it, and the default when it has it.
    Action,
    /// The packets no rule matches.
    Default,
}

/// One pcap-filter expression.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BpfFilter {
    pub kind: FilterKind,
    /// The rule name, the action (`pass`, `drop`, `class gold`) or `default`.
    pub name: String,
    /// The rule's index in its block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The action of the rule or default.
    pub action: String,
    pub expr: String,
    /// True when the expression selects exactly flowpol's packets.
    pub exact: bool,
    /// Why not, when not exact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The expression that matches nothing but is not provably empty to libpcap's optimizer.
pub const NOTHING: &str = "ip6 and len = 0";

const FIVE_INEXACT: &str = "libpcap reads only the fixed header's next header: packets with extension headers \
     before the transport header (and first fragments) are not matched as flowpol matches them; \
     packets flowpol has no 5-tuple for (ESP, next header 59, a transport header cut short, \
     payload length 0) are selected by rules on addresses alone and by the default";

/// The longest argument Linux passes to a program (`MAX_ARG_STRLEN`, 32 pages).
pub const MAX_ARG_BYTES: usize = 128 * 1024;

/// The most instructions Linux runs in a socket filter (`BPF_MAXINSNS`).
pub const KERNEL_MAX_INSNS: usize = 4096;

impl BpfFilter {
    /// An estimate of the optimised classic BPF program's length: 3 instructions (load, mask,
    /// jump) per comparison and 8 per address (up to four 32-bit words), of which libpcap's
    /// optimizer keeps about three fifths (within some 10% of `tcpdump -d` on `gen rules`
    /// policies, which gives the real count).
    pub fn estimated_insns(&self) -> usize {
        let e = &self.expr;
        let cmp = e.matches(" = ").count() + e.matches(" >= ").count() + e.matches(" <= ").count();
        let addr = e.matches(" net ").count() + e.matches(" host ").count();
        (3 * cmp + 8 * addr) * 3 / 5 + 2
    }

    /// What is too big about this expression for the kernel or a command line, if anything.
    pub fn size_warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.expr.len() > MAX_ARG_BYTES {
            w.push(format!(
                "{} bytes, over the {MAX_ARG_BYTES}-byte limit of one command-line argument: give it to tcpdump -F FILE (compile --filter-dir)",
                self.expr.len()
            ));
        }
        let n = self.estimated_insns();
        if n > KERNEL_MAX_INSNS {
            w.push(format!(
                "about {n} BPF instructions, over the kernel's {KERNEL_MAX_INSNS}: a live capture filters in user space (fewer --vlan-tags shrink it)"
            ));
        }
        w
    }
}

/// Writes each filter's expression to its own file in `dir` (`NN-rule-NAME.bpf`,
/// `NN-action-NAME.bpf`, `NN-default.bpf`), for `tcpdump -F`; returns the paths.
pub fn write_files(
    filters: &[BpfFilter],
    dir: &std::path::Path,
) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut out = Vec::with_capacity(filters.len());
    for (i, f) in filters.iter().enumerate() {
        let safe: String = f
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let name = match f.kind {
            FilterKind::Rule => format!("{i:04}-rule-{safe}.bpf"),
            FilterKind::Action => format!("{i:04}-action-{safe}.bpf"),
            FilterKind::Default => format!("{i:04}-default.bpf"),
        };
        let path = dir.join(name);
        std::fs::write(&path, format!("{}\n", f.expr))?;
        out.push(path);
    }
    Ok(out)
}

/// The most VLAN tags an expression looks behind by default: flowpol's own limit.
pub const MAX_TAGS: usize = crate::packet::link::MAX_VLAN_TAGS;

/// Where an expression reads the IPv6 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    /// Behind the link layer, as libpcap finds it for any link type: `ip6`, `ip6[..]`,
    /// `src net`.
    Ip6,
    /// At a fixed offset of an Ethernet frame, behind VLAN tags: `ether[..]`.
    Ether(u32),
}

impl At {
    /// The IPv6 header of an Ethernet frame behind `tags` VLAN tags; [`At::Ip6`] for none.
    fn behind(tags: usize) -> At {
        match tags {
            0 => At::Ip6,
            n => At::Ether(ETHER_HEADER + TAG * n as u32),
        }
    }

    /// The test that the frame holds IPv6 here, as flowpol reads it: the EtherType (or `ip6`),
    /// version 6 in the first nibble, and the 40 bytes of the fixed header all captured (the
    /// load of byte 39 fails on a runt and the filter rejects it, as flowpol counts it malformed).
    fn ipv6(self) -> String {
        let head = match self {
            At::Ip6 => "ip6".into(),
            At::Ether(o) => format!("ether[{}:2] = {:#x}", o - 2, ethertype::IPV6),
        };
        format!(
            "{head} and {} & 0xf0 = 0x60 and {} >= 0",
            self.field(0, 1),
            self.field(39, 1)
        )
    }

    /// `size` bytes (1, 2 or 4: libpcap loads nothing else) at `off` in the IPv6 header.
    fn field(self, off: u32, size: u32) -> String {
        let (proto, at) = match self {
            At::Ip6 => ("ip6", off),
            At::Ether(o) => ("ether", o + off),
        };
        match size {
            1 => format!("{proto}[{at}]"),
            _ => format!("{proto}[{at}:{size}]"),
        }
    }

    /// The source (`dir` "src", at byte 8) or destination ("dst", byte 24) address in `p`:
    /// `src net P` or, at an Ethernet offset, the prefix's 32-bit words.
    fn addr(self, dir: &str, p: &Prefix) -> String {
        let base = if dir == "src" { 8 } else { 24 };
        match self {
            At::Ip6 if p.len == 128 => {
                format!("{dir} host {}", std::net::Ipv6Addr::from(p.addr))
            }
            At::Ip6 => format!("{dir} net {p}"),
            At::Ether(_) => {
                let words: Vec<String> = (0..4u32)
                    .map(|i| (i, u32::from(p.len).saturating_sub(32 * i).min(32)))
                    .take_while(|&(_, bits)| bits > 0)
                    .map(|(i, bits)| {
                        let field = self.field(base + 4 * i, 4);
                        let word = (p.addr >> (96 - 32 * i)) as u32;
                        if bits == 32 {
                            format!("{field} = {word:#x}")
                        } else {
                            format!("{field} & {:#x} = {word:#x}", u32::MAX << (32 - bits))
                        }
                    })
                    .collect();
                if words.len() == 1 {
                    words[0].clone()
                } else {
                    format!("({})", words.join(" and "))
                }
            }
        }
    }
}

/// An Ethernet header's length, up to its EtherType and an 802.1Q/802.1ad tag's.
const ETHER_HEADER: u32 = 14;
const TAG: u32 = 4;

/// The test that an Ethernet frame has a VLAN tag after `tags` others: the tag protocol IDs
/// flowpol steps over (libpcap's `vlan` tests the same three).
fn tag_test(tags: usize) -> String {
    let at = ETHER_HEADER - 2 + TAG * tags as u32;
    let alts: Vec<String> = [ethertype::VLAN, ethertype::QINQ, ethertype::QINQ_OLD]
        .iter()
        .map(|t| format!("ether[{at}:2] = {t:#x}"))
        .collect();
    format!("({})", alts.join(" or "))
}

fn addr_expr(at: At, dir: &str, m: &AddrMatch) -> Option<String> {
    let ps = super::disjoint_prefixes(m)?;
    if ps.iter().any(|p| p.len == 0) {
        return None;
    }
    Some(if ps.len() == 1 {
        at.addr(dir, &ps[0])
    } else {
        let alts: Vec<String> = ps.iter().map(|p| at.addr(dir, p)).collect();
        format!("({})", alts.join(" or "))
    })
}

fn label_expr(at: At, l: &LabelMatch) -> Option<String> {
    let word = at.field(0, 4);
    let label = format!("{word} & 0xfffff");
    match label_canon(l) {
        LabelMatch::Any => None,
        LabelMatch::Exact(v) => Some(format!("{label} = {:#x}", v.value())),
        LabelMatch::Range { lo, hi } if lo.is_zero() => {
            Some(format!("{label} <= {:#x}", hi.value()))
        }
        LabelMatch::Range { lo, hi } if hi.value() == crate::FlowLabel::MASK => {
            Some(format!("{label} >= {:#x}", lo.value()))
        }
        LabelMatch::Range { lo, hi } => Some(format!(
            "{label} >= {:#x} and {label} <= {:#x}",
            lo.value(),
            hi.value()
        )),
        LabelMatch::Masked { value, mask } => Some(format!("{word} & {mask:#x} = {value:#x}")),
    }
}

fn port_expr(at: At, off: u32, lo: u16, hi: u16) -> Option<String> {
    let f = at.field(off, 2);
    match (lo, hi) {
        (0, u16::MAX) => None,
        (a, b) if a == b => Some(format!("{f} = {a}")),
        (0, b) => Some(format!("{f} <= {b}")),
        (a, u16::MAX) => Some(format!("{f} >= {a}")),
        (a, b) => Some(format!("{f} >= {a} and {f} <= {b}")),
    }
}

/// The conjunction of a rule's field tests; `None` when it never matches, an empty list when it
/// matches every IPv6 packet.
fn three_expr(at: At, m: &ThreeMatch) -> Option<Vec<String>> {
    let parts: Vec<String> = [
        addr_expr(at, "src", &m.src),
        addr_expr(at, "dst", &m.dst),
        label_expr(at, &m.label),
    ]
    .into_iter()
    .flatten()
    .collect();
    Some(parts)
}

fn five_expr(at: At, name: &str, m: &FiveMatch) -> Result<Option<Vec<String>>, CompileError> {
    let mut parts: Vec<String> = [addr_expr(at, "src", &m.src), addr_expr(at, "dst", &m.dst)]
        .into_iter()
        .flatten()
        .collect();
    match m.proto {
        None if m.sport.is_any() && m.dport.is_any() => {}
        None => {
            return Err(CompileError::Unsupported {
                rule: name.into(),
                reason: "ports without a protocol".into(),
            });
        }
        Some(p) => {
            parts.push(format!("{} = {p}", at.field(6, 1)));
            if IpNumber(p).has_ports() {
                parts.extend(port_expr(at, 40, m.sport.lo, m.sport.hi));
                parts.extend(port_expr(at, 42, m.dport.lo, m.dport.hi));
            } else if !(m.sport.matches(0) && m.dport.matches(0)) {
                return Ok(None);
            }
        }
    }
    Ok(Some(parts))
}

/// `(base) and not ((e1) or ...)`, `""` when it matches every IPv6 packet.
fn and_not(base: &str, earlier: &[&str]) -> String {
    let mut parts = Vec::new();
    if !base.is_empty() {
        parts.push(format!("({base})"));
    }
    if !earlier.is_empty() {
        let alts: Vec<String> = earlier.iter().map(|x| format!("({x})")).collect();
        parts.push(format!("not ({})", alts.join(" or ")));
    }
    parts.join(" and ")
}

/// `body(n)` (the test with the IPv6 header behind `n` tags) on an IPv6 packet behind 0 to
/// `tags` VLAN tags: `(ip6 and B) or (TAG12 and
/// ((ether[16:2] = 0x86dd and B@18) or (TAG16 and (...))))`, each level nested in the tag test
/// of the one before. The untagged level reads like any pcap filter and serves every link
/// type; the tagged ones name Ethernet offsets.
fn on_link(tags: usize, body: impl Fn(usize) -> String) -> String {
    let level = |n: usize| {
        let at = At::behind(n);
        match body(n) {
            b if b.is_empty() => at.ipv6(),
            b => format!("{} and {b}", at.ipv6()),
        }
    };
    let mut e = level(tags);
    for n in (0..tags).rev() {
        e = format!("({}) or ({} and ({e}))", level(n), tag_test(n));
    }
    e
}

/// Compiles the rules of `engine`: every rule's filter in order, then one per action that has
/// packets (pass, drop, classes in declaration order), then the default. Every expression
/// looks behind up to `tags` VLAN tags (at most [`MAX_TAGS`]); with 0 it reads the IPv6
/// header only through `ip6` and compiles for every link type, not only Ethernet.
pub fn compile(
    policy: &Policy,
    engine: TupleKind,
    tags: usize,
) -> Result<Vec<BpfFilter>, CompileError> {
    let tags = tags.min(MAX_TAGS);
    let (names, actions): (Vec<&str>, Vec<&Action>) = match engine {
        TupleKind::Three => policy
            .three
            .iter()
            .map(|r| (r.name.as_str(), &r.action))
            .unzip(),
        TupleKind::Five => policy
            .five
            .iter()
            .map(|r| (r.name.as_str(), &r.action))
            .unzip(),
    };
    let bodies = Bodies::new(policy, engine, tags)?;
    let reason = inexact_reason(engine, tags);
    let filter =
        |kind, name: &str, index, action: &Action, body: &dyn Fn(usize) -> Option<String>| {
            BpfFilter {
                kind,
                name: name.to_string(),
                index,
                action: action.to_string(),
                expr: match body(0) {
                    None => NOTHING.to_string(),
                    Some(_) => on_link(tags, |n| body(n).unwrap_or_default()),
                },
                exact: reason.is_none(),
                reason: reason.clone(),
            }
        };
    let mut out: Vec<BpfFilter> = (0..names.len())
        .map(|k| {
            filter(FilterKind::Rule, names[k], Some(k), actions[k], &|n| {
                bodies.rule(k, n)
            })
        })
        .collect();
    let mut all_actions = vec![Action::Pass, Action::Drop];
    all_actions.extend(policy.classes.iter().map(|c| Action::Class(c.name.clone())));
    for a in &all_actions {
        let with_a: Vec<usize> = (0..names.len()).filter(|&k| actions[k] == a).collect();
        let union = |n: usize| bodies.union(&with_a, policy.default == *a, n);
        if union(0).is_some() {
            let name = a.to_string();
            out.push(filter(FilterKind::Action, &name, None, a, &union));
        }
    }
    out.push(filter(
        FilterKind::Default,
        "default",
        None,
        &policy.default,
        &|n| bodies.default(n),
    ));
    Ok(out)
}

/// The tests of one policy's rules, from which every filter is built: a rule's packets are its
/// match and not the matches of the earlier rules that can take them.
struct Bodies {
    /// Per level of tags, per rule: the tests of its bare match (all must hold), or None when
    /// it never matches.
    matches: Vec<Vec<Option<Vec<String>>>>,
    /// Per rule, the earlier rules that can take its packets, or None when no packet reaches it.
    earlier: Vec<Option<Vec<usize>>>,
    /// Whether any packet reaches the default (no rule matches every packet).
    default_reached: bool,
}

impl Bodies {
    fn new(policy: &Policy, engine: TupleKind, tags: usize) -> Result<Bodies, CompileError> {
        let matches: Vec<Vec<Option<Vec<String>>>> = (0..=tags)
            .map(|n| {
                let at = At::behind(n);
                match engine {
                    TupleKind::Three => Ok(policy
                        .three
                        .iter()
                        .map(|r| three_expr(at, &r.matcher))
                        .collect()),
                    TupleKind::Five => policy
                        .five
                        .iter()
                        .map(|r| five_expr(at, &r.name, &r.matcher))
                        .collect(),
                }
            })
            .collect::<Result<_, CompileError>>()?;
        let live = |j: usize| matches[0][j].is_some();
        let overlap = |i: usize, j: usize| match engine {
            TupleKind::Three => three_overlap(&policy.three[i].matcher, &policy.three[j].matcher),
            TupleKind::Five => five_overlap(&policy.five[i].matcher, &policy.five[j].matcher),
        };
        let covers = |i: usize, j: usize| match engine {
            TupleKind::Three => policy.three[i].matcher.covers(&policy.three[j].matcher),
            TupleKind::Five => policy.five[i].matcher.covers(&policy.five[j].matcher),
        };
        let earlier = (0..matches[0].len())
            .map(|k| {
                if !live(k) || (0..k).any(|j| live(j) && covers(j, k)) {
                    return None;
                }
                Some((0..k).filter(|&j| live(j) && overlap(j, k)).collect())
            })
            .collect();
        let default_reached = matches[0].iter().flatten().all(|m| !m.is_empty());
        Ok(Bodies {
            matches,
            earlier,
            default_reached,
        })
    }

    /// Rule k's packets, with the IPv6 header behind n tags. A test an earlier rule shares with
    /// rule k is left out of its `not (...)`: `A and not (A and B)` is `A and not B`, and
    /// libpcap 1.10.3's optimizer miscompiles the repeated form (it selected ICMPv6 packets
    /// with `ip6 and (dst net P) and not ((dst net P and ip6[6] = 58))`).
    fn rule(&self, k: usize, n: usize) -> Option<String> {
        let m = &self.matches[n];
        let base = m[k].as_ref()?;
        let before: Vec<String> = self.earlier[k]
            .as_ref()?
            .iter()
            .filter_map(|&j| m[j].as_ref())
            .map(|tests| {
                let own: Vec<&str> = tests
                    .iter()
                    .filter(|t| !base.contains(t))
                    .map(String::as_str)
                    .collect();
                if own.is_empty() {
                    tests.join(" and ")
                } else {
                    own.join(" and ")
                }
            })
            .collect();
        let before: Vec<&str> = before.iter().map(String::as_str).collect();
        Some(and_not(&base.join(" and "), &before))
    }

    /// The default's packets (those no rule matches), with the IPv6 header behind n tags.
    fn default(&self, n: usize) -> Option<String> {
        // A rule whose tests include all of another's adds nothing to the `or` (and the
        // repetition trips libpcap's optimizer, see `rule`): left out.
        let tests: Vec<&Vec<String>> = self.matches[n].iter().flatten().collect();
        let all: Vec<String> = tests
            .iter()
            .enumerate()
            .filter(|&(i, t)| {
                !tests.iter().enumerate().any(|(j, o)| {
                    j != i && o.iter().all(|x| t.contains(x)) && (o.len() < t.len() || j < i)
                })
            })
            .map(|(_, t)| t.join(" and "))
            .collect();
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.default_reached.then(|| and_not("", &all))
    }

    /// The packets of every rule in `rules` (and of the default when `with_default`), with the
    /// IPv6 header behind n tags.
    fn union(&self, rules: &[usize], with_default: bool, n: usize) -> Option<String> {
        if with_default && self.default_reached {
            // Every packet but those of the rules with other actions: said this way, no rule's
            // tests appear both inside and outside a `not`, the repetition libpcap 1.10.3's
            // optimizer miscompiles (see `rule`).
            let others: Vec<String> = (0..self.earlier.len())
                .filter(|k| !rules.contains(k))
                .filter_map(|k| self.rule(k, n))
                .collect();
            let others: Vec<&str> = others.iter().map(String::as_str).collect();
            return Some(and_not("", &others));
        }
        let mut alts: Vec<String> = rules.iter().filter_map(|&k| self.rule(k, n)).collect();
        if with_default {
            alts.extend(self.default(n));
        }
        match alts.len() {
            0 => None,
            1 => alts.pop(),
            _ if alts.iter().any(|b| b.is_empty()) => Some(String::new()),
            _ => Some(format!("(({}))", alts.join(") or ("))),
        }
    }
}

/// Why the filters of `engine` looking behind `tags` tags are not exact, `None` when they are.
fn inexact_reason(engine: TupleKind, tags: usize) -> Option<String> {
    let mut reasons = Vec::new();
    if engine == TupleKind::Five {
        reasons.push(FIVE_INEXACT.to_string());
    }
    match tags {
        0 => reasons.push(format!(
            "VLAN-tagged Ethernet frames are not selected (flowpol reads behind up to {MAX_TAGS} tags)"
        )),
        n if n < MAX_TAGS => reasons.push(format!(
            "Ethernet frames with more than {n} VLAN tags are not selected (flowpol reads behind up to {MAX_TAGS})"
        )),
        _ => {}
    }
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

/// The text form: a `#` comment line naming each filter, then its expression on one line.
pub fn to_text(filters: &[BpfFilter], engine: TupleKind, tags: usize) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# flowpol compile --target bpf --engine {}: pcap-filter expressions, first match applied",
        engine.keyword()
    );
    let _ = match tags {
        0 => writeln!(
            t,
            "# IPv6 through `ip6` only, for any link type: VLAN-tagged Ethernet frames are not selected."
        ),
        n => writeln!(
            t,
            "# Ethernet: untagged IPv6 through `ip6`, behind 1 to {n} VLAN tags (0x8100, 0x88a8, 0x9100) at `ether[..]` offsets (--vlan-tags 0 for other link types)."
        ),
    };
    for f in filters {
        let what = match (f.kind, f.index) {
            (FilterKind::Rule, Some(i)) => format!("rule {i} {} -> {}", f.name, f.action),
            (FilterKind::Action, _) => format!("action {}", f.name),
            _ => format!("default -> {}", f.action),
        };
        let _ = writeln!(t, "# {what}");
        if let Some(r) = &f.reason {
            let _ = writeln!(t, "# inexact: {r}");
        }
        for w in f.size_warnings() {
            let _ = writeln!(t, "# too big: {w}");
        }
        let _ = writeln!(t, "{}", f.expr);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FlowLabel;
    use crate::policy::model::{ClassDef, Prefix, Rule};
    use crate::policy::syntax::Span;

    fn rule(
        name: &str,
        src: Option<(u128, u8)>,
        label: LabelMatch,
        action: Action,
    ) -> Rule<ThreeMatch> {
        Rule {
            name: name.into(),
            matcher: ThreeMatch {
                src: AddrMatch(src.map(|(a, l)| Prefix::new(a, l)).into_iter().collect()),
                dst: AddrMatch::any(),
                label,
            },
            action,
            span: Span::default(),
        }
    }

    #[test]
    fn first_match_excludes_overlapping_earlier_rules_only() {
        let db8 = 0x2001_0db8u128 << 96;
        let p = Policy {
            classes: vec![ClassDef {
                name: "gold".into(),
                mark: None,
            }],
            three: vec![
                rule(
                    "a",
                    Some((db8, 32)),
                    LabelMatch::Exact(FlowLabel::from_low_bits(0x12345)),
                    Action::Class("gold".into()),
                ),
                rule(
                    "b",
                    None,
                    LabelMatch::Range {
                        lo: FlowLabel::from_low_bits(0x100),
                        hi: FlowLabel::from_low_bits(0x1ff),
                    },
                    Action::Drop,
                ),
                rule("c", Some((db8, 48)), LabelMatch::Any, Action::Pass),
                rule(
                    "shadowed",
                    Some((db8, 64)),
                    LabelMatch::Exact(FlowLabel::from_low_bits(0x12345)),
                    Action::Pass,
                ),
            ],
            five: vec![],
            default: Action::Class("gold".into()),
            default_explicit: true,
        };
        let f = compile(&p, TupleKind::Three, 0).unwrap();
        assert_eq!(
            f[0].expr,
            "ip6 and ip6[0] & 0xf0 = 0x60 and ip6[39] >= 0 and (src net 2001:db8::/32 and ip6[0:4] & 0xfffff = 0x12345)"
        );
        assert_eq!(
            f[1].expr,
            "ip6 and ip6[0] & 0xf0 = 0x60 and ip6[39] >= 0 and (ip6[0:4] & 0xfffff >= 0x100 and ip6[0:4] & 0xfffff <= 0x1ff)"
        );
        assert_eq!(
            f[2].expr,
            "ip6 and ip6[0] & 0xf0 = 0x60 and ip6[39] >= 0 and (src net 2001:db8::/48) and not ((src net 2001:db8::/32 and ip6[0:4] & 0xfffff = 0x12345) or (ip6[0:4] & 0xfffff >= 0x100 and ip6[0:4] & 0xfffff <= 0x1ff))"
        );
        assert_eq!(f[3].expr, NOTHING);
        let names: Vec<&str> = f.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "a",
                "b",
                "c",
                "shadowed",
                "pass",
                "drop",
                "class gold",
                "default"
            ]
        );
        // The default's class: every packet but those of the rules with other actions.
        assert_eq!(
            f[6].expr,
            "ip6 and ip6[0] & 0xf0 = 0x60 and ip6[39] >= 0 and not (((ip6[0:4] & 0xfffff >= 0x100 and ip6[0:4] & 0xfffff <= 0x1ff)) or ((src net 2001:db8::/48) and not ((src net 2001:db8::/32 and ip6[0:4] & 0xfffff = 0x12345) or (ip6[0:4] & 0xfffff >= 0x100 and ip6[0:4] & 0xfffff <= 0x1ff))))",
            "the default's class includes the default"
        );
        assert!(f.iter().all(|x| !x.exact && x.reason.is_some()), "no tags");
        let tagged = compile(&p, TupleKind::Three, MAX_TAGS).unwrap();
        assert!(tagged.iter().all(|x| x.exact && x.reason.is_none()));
        assert!(tagged[0].expr.starts_with(&format!("({}) or (", f[0].expr)));
    }

    #[test]
    fn tagged_levels_nest_at_ethernet_offsets() {
        let e = on_link(2, |n| {
            label_expr(
                At::behind(n),
                &LabelMatch::Exact(FlowLabel::from_low_bits(5)),
            )
            .unwrap()
        });
        let tag = |o: u32| {
            format!("(ether[{o}:2] = 0x8100 or ether[{o}:2] = 0x88a8 or ether[{o}:2] = 0x9100)")
        };
        assert_eq!(
            e,
            format!(
                "(ip6 and ip6[0] & 0xf0 = 0x60 and ip6[39] >= 0 and ip6[0:4] & 0xfffff = 0x5) or ({} and ((ether[16:2] = 0x86dd and ether[18] & 0xf0 = 0x60 and ether[57] >= 0 and ether[18:4] & 0xfffff = 0x5) or ({} and (ether[20:2] = 0x86dd and ether[22] & 0xf0 = 0x60 and ether[61] >= 0 and ether[22:4] & 0xfffff = 0x5))))",
                tag(12),
                tag(16)
            )
        );
        let at = At::behind(1);
        let p = |s: &str| {
            let (a, l) = s.split_once('/').unwrap();
            Prefix::new(
                u128::from(a.parse::<std::net::Ipv6Addr>().unwrap()),
                l.parse().unwrap(),
            )
        };
        for (dir, prefix, want) in [
            (
                "src",
                "2001:db8:a::/48",
                "(ether[26:4] = 0x20010db8 and ether[30:4] & 0xffff0000 = 0xa0000)",
            ),
            ("dst", "2001:db8::/32", "ether[42:4] = 0x20010db8"),
            ("dst", "8000::/1", "ether[42:4] & 0x80000000 = 0x80000000"),
            (
                "dst",
                "2001:db8::1:2/128",
                "(ether[42:4] = 0x20010db8 and ether[46:4] = 0x0 and ether[50:4] = 0x0 and ether[54:4] = 0x10002)",
            ),
        ] {
            assert_eq!(at.addr(dir, &p(prefix)), want);
        }
        let any = AddrMatch(vec![p("::/0"), p("2001:db8::/32")]);
        assert_eq!(
            addr_expr(at, "src", &any),
            None,
            "::/0 matches every address"
        );
        assert_eq!(
            At::behind(0).addr("src", &p("2001:db8::/32")),
            "src net 2001:db8::/32"
        );
    }
}
