//! The nftables target: one `table ip6 flowpol` with a base chain on a chosen hook that
//! matches what flowpol's first-match engines match, one named counter per rule and one for
//! the default.
//!
//! # Layout
//! ```text
//! table ip6 flowpol {}            # create if absent ...
//! delete table ip6 flowpol        # ... so that deleting never fails: reloading is idempotent
//! table ip6 flowpol {
//!     counter r0_gold_media { comment "flowpol three rule 0 gold-media -> class gold" }
//!     counter default { comment "flowpol three default -> pass" }
//!     chain r5 { counter name "r5_x" drop; }                 # only for rules in a group
//!     map g0 { typeof ip6 saddr . ip6 daddr . ip6 flowlabel : verdict; flags interval; ... }
//!     chain input {
//!         type filter hook input priority 0; policy accept;
//!         ip6 saddr 2001:db8::/32 ip6 flowlabel 0x12345 counter name "r0_gold_media" meta mark set 0xa accept
//!         ip6 saddr . ip6 daddr . ip6 flowlabel vmap @g0    # rules 1..=9999 at once
//!         counter name "default" accept
//!     }
//! }
//! ```
//! (`destroy table` would be shorter but needs nft 1.0.8; 1.0.6 is common.)
//!
//! # Groups (large policies)
//! Rules that no packet can match two of (pairwise disjoint) may be looked up at once, and a
//! rule may move ahead of rules it is disjoint from without changing any packet's first match
//! (see `plan` for the argument). So a group starts at the first rule not yet emitted and takes
//! the later rules of the same key shape that are disjoint from its members and from every
//! rule they jump over. A group becomes a verdict map keyed on a concatenation with intervals (`flags interval`, the kernel's
//! pipapo set) whose elements `goto` a per-rule chain holding the rule's counter and verdict.
//! Within a rule, nested prefixes of one address set are reduced to the outermost so that its
//! elements are disjoint too. Rules whose label match is a non-contiguous mask, rules with too
//! many elements, and groups smaller than `min_group` stay plain rules.
//!
//! Measured with nft 1.0.6 on kernel 6.18 (2 busy cores), `nft -f` of 10 000 rules: plain rules
//! with single addresses ~0.7 s, but ~17 s when each rule has a small address set (one
//! anonymous set per rule); the same 10 000 rules as maps (5 maps for the 3-tuple, 29 for the
//! 5-tuple test policy) ~1.3–2.5 s; fw-shaped sets of single addresses in some 300 small maps
//! 2.1–2.5 s against 0.6–0.9 s plain. So `--encoding auto` makes a map only where its
//! estimated load time (a fixed cost per map and a cost per element) is at most that of its
//! rules written plain (`map_pays`): runs of rules with address sets become maps, runs of
//! single-address rules only when some 150 share one. A packet also walks plain rules one by
//! one but does one lookup per map, so a tie goes to the map (`tests/compile_nft.rs` keeps the
//! numbers honest).
//!
//! # Five-tuple: what the kernel can read
//! flowpol's 5-tuple is defined as what netfilter can match (see [`crate::packet::five`]):
//! the protocol is `meta l4proto`, which stops at an Authentication Header (51), and the ports
//! are `th sport` / `th dport`. The base chain sends a packet to the rules (chain `rules`) only
//! when the kernel can read its transport header, and to the `unavailable` counter (with the
//! default's verdict) otherwise:
//! ```text
//! frag frag-off != 0 counter name "unavailable" ...                  # first fragment header
//! ip6 nexthdr 44 @nh,320,8 44 @nh,400,13 != 0 counter name "unavailable" ...  # a second one
//! meta l4proto { 50, 59, 135, 139, 140, 253, 254 } counter name "unavailable" ...
//! meta l4proto { 6, 17, 33, 132, 136 } @th,16,16 0-65535 goto rules   # both ports readable
//! meta l4proto != { 6, 17, 33, 132, 136 } @th,0,8 0-255 goto rules    # a header byte readable
//! counter name "unavailable" ...                                     # nothing readable
//! ```
//! `th` (and `@th`) is unreadable to the kernel past the end of the packet (a transport header
//! cut short; a packet with payload length 0 and no hop-by-hop header, which Linux trims to 40
//! bytes) and when the extension-header walk fails. flowpol
//! reports exactly those packets as unavailable (non-first fragment, malformed, truncated), so
//! rules on addresses or protocol alone do not match them either, and the plain and map
//! encodings mean the same: a map keyed on `th sport . th dport` is only reached by packets
//! whose ports can be read.
//!
//! A non-first fragment is one with a non-zero offset in any fragment header. `frag frag-off`
//! reads the first fragment header only; for a second one with a non-zero offset the kernel's
//! `ipv6_find_hdr` returns the protocol behind it but leaves the transport offset at 0, so
//! `th` reads the IPv6 header itself (measured on a veth pair). The second rule above catches
//! the form that is sent (two fragment headers in a row right behind the fixed header).
//!
//! Not expressible in the kernel: the transport header behind AH (RFC 4302), so flowpol does
//! not look behind AH either (a TCP rule does not match TCP inside AH; `proto 51` does); and a
//! second fragment header anywhere else than at byte 48 behind a first at byte 40 (such a
//! packet may match rules on addresses and protocol in the kernel, but no rule in flowpol).

use super::{
    CompileError, CounterTag, DEFAULT_COUNTER, MarkPolicy, Marks, UNAVAILABLE_COUNTER,
    counter_name, disjoint_prefixes, five_overlap, label_canon, three_overlap, used_classes,
};
use crate::packet::IpNumber;
use crate::policy::model::{Action, FiveMatch, LabelMatch, Policy, Prefix, ThreeMatch};
use crate::policy::syntax::TupleKind;
use std::fmt::Write as _;

/// The netfilter hook of the base chain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Hook {
    Prerouting,
    #[default]
    Input,
    Forward,
    Output,
}

impl Hook {
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
        }
    }
}

/// How rules are laid out. Both give every packet the same rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encoding {
    /// Verdict maps for runs of disjoint rules where a map is cheaper to load than its rules
    /// as plain rules (`map_pays`), plain rules elsewhere.
    #[default]
    Auto,
    /// One nft rule per policy rule.
    Plain,
}

/// Options of the nft target.
#[derive(Clone, Debug)]
pub struct NftOptions {
    pub engine: TupleKind,
    pub hook: Hook,
    pub priority: i32,
    pub encoding: Encoding,
    pub marks: MarkPolicy,
    /// The shortest run of disjoint rules put into a verdict map.
    pub min_group: usize,
    /// A rule whose address sets expand to more map elements than this stays a plain rule.
    pub max_elements_per_rule: usize,
    /// How many rules a map may be moved past (rules disjoint from all its members).
    pub max_lookahead: usize,
}

impl Default for NftOptions {
    fn default() -> Self {
        NftOptions {
            engine: TupleKind::Three,
            hook: Hook::Input,
            priority: 0,
            encoding: Encoding::Auto,
            marks: MarkPolicy::Auto,
            min_group: 4,
            max_elements_per_rule: 1024,
            max_lookahead: 256,
        }
    }
}

/// A compiled ruleset.
#[derive(Clone, Debug)]
pub struct NftRuleset {
    /// The text for `nft -f`.
    pub text: String,
    /// Every counter with what it counts, rules in order then the default.
    pub counters: Vec<(String, CounterTag)>,
    /// Class marks used.
    pub marks: Marks,
    /// How many verdict maps were emitted, and how many rules they hold.
    pub groups: usize,
    pub grouped_rules: usize,
}

/// The table name.
pub const TABLE: &str = "flowpol";

/// The fields of a map key, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Three,
    FiveAddr,
    FiveProto,
    FivePorts,
}

impl Shape {
    fn key(self) -> &'static str {
        match self {
            Shape::Three => "ip6 saddr . ip6 daddr . ip6 flowlabel",
            Shape::FiveAddr => "ip6 saddr . ip6 daddr",
            Shape::FiveProto => "ip6 saddr . ip6 daddr . meta l4proto",
            Shape::FivePorts => "ip6 saddr . ip6 daddr . meta l4proto . th sport . th dport",
        }
    }
}

/// One rule, normalised for emission.
struct Item {
    name: String,
    action: Action,
    src: Option<Vec<Prefix>>,
    dst: Option<Vec<Prefix>>,
    /// Three: the canonical label match.
    label: LabelMatch,
    /// Five: protocol and port ranges (`None` ports: no port clause).
    proto: Option<u8>,
    ports: Option<((u16, u16), (u16, u16))>,
    /// False for a rule no packet can match (a port on a protocol without ports).
    live: bool,
}

fn addr_text(p: &[Prefix]) -> String {
    if p.len() == 1 {
        p[0].to_string()
    } else {
        let v: Vec<String> = p.iter().map(|p| p.to_string()).collect();
        format!("{{ {} }}", v.join(", "))
    }
}

fn range_text(lo: u32, hi: u32, hex: bool) -> String {
    match (lo == hi, hex) {
        (true, true) => format!("{lo:#x}"),
        (true, false) => format!("{lo}"),
        (false, true) => format!("{lo:#x}-{hi:#x}"),
        (false, false) => format!("{lo}-{hi}"),
    }
}

impl Item {
    fn three(r: &crate::policy::model::Rule<ThreeMatch>) -> Item {
        Item {
            name: r.name.clone(),
            action: r.action.clone(),
            src: disjoint_prefixes(&r.matcher.src),
            dst: disjoint_prefixes(&r.matcher.dst),
            label: label_canon(&r.matcher.label),
            proto: None,
            ports: None,
            live: true,
        }
    }

    fn five(r: &crate::policy::model::Rule<FiveMatch>) -> Result<Item, CompileError> {
        let m = &r.matcher;
        let (ports, live) = match m.proto {
            None if m.sport.is_any() && m.dport.is_any() => (None, true),
            None => {
                return Err(CompileError::Unsupported {
                    rule: r.name.clone(),
                    reason: "ports without a protocol".into(),
                });
            }
            Some(p) if IpNumber(p).has_ports() => {
                if m.sport.is_any() && m.dport.is_any() {
                    (None, true)
                } else {
                    (
                        Some(((m.sport.lo, m.sport.hi), (m.dport.lo, m.dport.hi))),
                        true,
                    )
                }
            }
            // flowpol reads ports 0 for protocols without ports.
            Some(_) => (None, m.sport.matches(0) && m.dport.matches(0)),
        };
        Ok(Item {
            name: r.name.clone(),
            action: r.action.clone(),
            src: disjoint_prefixes(&m.src),
            dst: disjoint_prefixes(&m.dst),
            label: LabelMatch::Any,
            proto: m.proto,
            ports,
            live,
        })
    }

    /// The plain match expression (may be empty: matches everything).
    fn expr(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if let Some(s) = &self.src {
            parts.push(format!("ip6 saddr {}", addr_text(s)));
        }
        if let Some(d) = &self.dst {
            parts.push(format!("ip6 daddr {}", addr_text(d)));
        }
        match self.label {
            LabelMatch::Any => {}
            LabelMatch::Exact(v) => parts.push(format!("ip6 flowlabel {:#x}", v.value())),
            LabelMatch::Range { lo, hi } => {
                parts.push(format!("ip6 flowlabel {:#x}-{:#x}", lo.value(), hi.value()))
            }
            LabelMatch::Masked { value, mask } => {
                parts.push(format!("ip6 flowlabel & {mask:#x} == {value:#x}"))
            }
        }
        if let Some(p) = self.proto {
            parts.push(format!("meta l4proto {p}"));
        }
        if let Some(((slo, shi), (dlo, dhi))) = self.ports {
            if (slo, shi) != (0, u16::MAX) {
                parts.push(format!(
                    "th sport {}",
                    range_text(slo.into(), shi.into(), false)
                ));
            }
            if (dlo, dhi) != (0, u16::MAX) {
                parts.push(format!(
                    "th dport {}",
                    range_text(dlo.into(), dhi.into(), false)
                ));
            }
        }
        parts.join(" ")
    }

    /// The map key shape, when the rule can live in a map.
    fn shape(&self, engine: TupleKind, max_elements: usize) -> Option<Shape> {
        if !self.live || self.elements_count() > max_elements {
            return None;
        }
        match engine {
            TupleKind::Three => self.label.as_range().map(|_| Shape::Three),
            TupleKind::Five => Some(match (self.proto, self.ports) {
                (None, _) => Shape::FiveAddr,
                (Some(p), _) if IpNumber(p).has_ports() => Shape::FivePorts,
                (Some(_), _) => Shape::FiveProto,
            }),
        }
    }

    /// Estimated `nft -f` time of this rule as a plain rule, in microseconds: a rule whose
    /// address match is a set needs an anonymous set.
    fn plain_cost_us(&self) -> u64 {
        let set = |a: &Option<Vec<Prefix>>| a.as_ref().is_some_and(|v| v.len() > 1);
        if set(&self.src) || set(&self.dst) {
            PLAIN_SET_RULE_US
        } else {
            PLAIN_RULE_US
        }
    }

    fn elements_count(&self) -> usize {
        self.src
            .as_ref()
            .map_or(1, Vec::len)
            .saturating_mul(self.dst.as_ref().map_or(1, Vec::len))
    }

    /// Map element keys (without the verdict).
    fn elements(&self, shape: Shape) -> Vec<String> {
        let any = [Prefix::new(0, 0)];
        let srcs = self.src.as_deref().unwrap_or(&any);
        let dsts = self.dst.as_deref().unwrap_or(&any);
        let tail = match shape {
            Shape::Three => {
                let (lo, hi) = self.label.as_range().expect("shape checked");
                format!(" . {}", range_text(lo, hi, true))
            }
            Shape::FiveAddr => String::new(),
            Shape::FiveProto => format!(" . {}", self.proto.expect("shape checked")),
            Shape::FivePorts => {
                let ((slo, shi), (dlo, dhi)) = self.ports.unwrap_or(((0, u16::MAX), (0, u16::MAX)));
                format!(
                    " . {} . {} . {}",
                    self.proto.expect("shape checked"),
                    range_text(slo.into(), shi.into(), false),
                    range_text(dlo.into(), dhi.into(), false)
                )
            }
        };
        let mut out = Vec::with_capacity(srcs.len() * dsts.len());
        for s in srcs {
            for d in dsts {
                // `::/0` is written out: a bare `::` would be the single address.
                let st = if s.len == 0 {
                    "::/0".to_string()
                } else {
                    s.to_string()
                };
                let dt = if d.len == 0 {
                    "::/0".to_string()
                } else {
                    d.to_string()
                };
                out.push(format!("{st} . {dt}{tail}"));
            }
        }
        out
    }
}

fn action_text(a: &Action, marks: &Marks) -> String {
    match a {
        Action::Pass => "accept".into(),
        Action::Drop => "drop".into(),
        Action::Class(c) => format!("meta mark set {:#x} accept", marks.of(c).expect("resolved")),
    }
}

/// Cuts a comment to nft's 128-byte limit (127 bytes and the terminating NUL).
fn nft_comment(s: &str) -> String {
    let mut s = s.replace('"', "'");
    if s.len() > 127 {
        let mut end = 127;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Load-time costs measured with nft 1.0.6 on kernel 6.18 (2 busy cores), `nft -f` of 10 000
/// rules: a plain rule with single addresses ~70 µs (0.6–0.9 s for all); a plain rule with an
/// address set ~1.7 ms (one anonymous set each: ~17 s); a verdict map ~3 ms on its own plus
/// ~50 µs per element (fw-shaped sets in some 300 maps took 2.1–2.5 s, sets of small groups
/// in 5 to 29 maps 1.3–2.5 s).
const PLAIN_RULE_US: u64 = 70;
const PLAIN_SET_RULE_US: u64 = 1_700;
const MAP_US: u64 = 3_000;
const MAP_ELEMENT_US: u64 = 50;

/// True when a map holding `members` loads faster than the same rules written plain. A packet
/// also walks plain rules one by one but does one lookup per map, so a tie goes to the map.
fn map_pays(items: &[Item], members: &[usize]) -> bool {
    let plain: u64 = members.iter().map(|&i| items[i].plain_cost_us()).sum();
    let elements: u64 = members
        .iter()
        .map(|&i| items[i].elements_count() as u64)
        .sum();
    MAP_US + MAP_ELEMENT_US * elements <= plain
}

/// One step of the base chain: a plain rule, or a verdict map over several rules.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step<S> {
    Plain(usize),
    Group(S, Vec<usize>),
}

/// Orders the rules into steps with the same first-match outcome as the policy.
///
/// Invariant: the emitted steps followed by the not-yet-emitted rules, in policy order, give
/// every packet the rule the policy gives it. A group started at the first remaining rule `i`
/// takes a later rule `k` of the same shape when `k` is disjoint from every member and from
/// every remaining rule it jumps over (those left between `i` and `k`). Then for any packet
/// whose first match `m` is a member, the other members do not match (pairwise disjoint); and
/// when `m` is left behind, members before `m` did not match (m is first) and members after
/// `m` are disjoint from it, so the group falls through to the rules left behind, in order.
/// `lookahead` bounds how many rules a group may jump over (compile time).
fn plan<S: Copy + PartialEq>(
    shapes: &[Option<S>],
    min_group: usize,
    lookahead: usize,
    overlap: impl Fn(usize, usize) -> bool,
    pays: impl Fn(&[usize]) -> bool,
) -> Vec<Step<S>> {
    let n = shapes.len();
    let mut done = vec![false; n];
    let mut steps = Vec::new();
    for i in 0..n {
        if done[i] {
            continue;
        }
        if let Some(shape) = shapes[i] {
            let mut members = vec![i];
            let mut skipped: Vec<usize> = Vec::new();
            for j in i + 1..n {
                if done[j] {
                    continue;
                }
                if skipped.len() > lookahead {
                    break;
                }
                if shapes[j] == Some(shape)
                    && skipped.iter().all(|&s| !overlap(s, j))
                    && members.iter().all(|&m| !overlap(m, j))
                {
                    members.push(j);
                } else {
                    skipped.push(j);
                }
            }
            if members.len() >= min_group.max(2) && pays(&members) {
                for &m in &members {
                    done[m] = true;
                }
                steps.push(Step::Group(shape, members));
                continue;
            }
        }
        done[i] = true;
        steps.push(Step::Plain(i));
    }
    steps
}

/// Compiles the rules of `opts.engine` and the default into an nftables ruleset: the rules and
/// their grouping plan, the counters, the header comments, the table with its maps and the
/// hook's base chain.
pub fn compile(policy: &Policy, opts: &NftOptions) -> Result<NftRuleset, CompileError> {
    let engine = opts.engine;
    let marks = Marks::resolve(policy, &used_classes(policy, engine), opts.marks)?;
    let items: Vec<Item> = match engine {
        TupleKind::Three => policy.three.iter().map(Item::three).collect(),
        TupleKind::Five => policy
            .five
            .iter()
            .map(Item::five)
            .collect::<Result<_, _>>()?,
    };
    let steps = plan_items(policy, opts, &items);
    let counters = counters(policy, engine, &items);

    let mut t = String::new();
    write_header(&mut t, opts, items.len(), &marks);
    let _ = writeln!(t, "table ip6 {TABLE} {{}}");
    let _ = writeln!(t, "delete table ip6 {TABLE}");
    let _ = writeln!(t, "table ip6 {TABLE} {{");
    for (name, tag) in &counters {
        let _ = writeln!(
            t,
            "\tcounter {name} {{ comment \"{}\" }}",
            nft_comment(&tag.comment())
        );
    }
    let mut base = String::new();
    let (groups, grouped_rules) = write_steps(&mut t, &mut base, &steps, &items, &counters, &marks);
    let default_act = action_text(&policy.default, &marks);
    match engine {
        TupleKind::Three => write_base_chain(&mut t, opts, &base, &default_act),
        TupleKind::Five => {
            let _ = writeln!(t, "\tchain {RULES_CHAIN} {{");
            t.push_str(&base);
            write_default(&mut t, &default_act);
            let _ = writeln!(t, "\t}}");
            write_base_chain(&mut t, opts, &transport_gate(&default_act), &default_act);
        }
    }
    Ok(NftRuleset {
        text: t,
        counters,
        marks,
        groups,
        grouped_rules,
    })
}

/// The order rules are emitted in: each alone, or (with [`Encoding::Auto`]) runs of rules of
/// one shape gathered into a verdict map where no skipped rule overlaps them and the map is
/// cheaper to load than the rules ([`map_pays`]).
fn plan_items(policy: &Policy, opts: &NftOptions, items: &[Item]) -> Vec<Step<Shape>> {
    let engine = opts.engine;
    let overlap = |i: usize, j: usize| match engine {
        TupleKind::Three => three_overlap(&policy.three[i].matcher, &policy.three[j].matcher),
        TupleKind::Five => five_overlap(&policy.five[i].matcher, &policy.five[j].matcher),
    };
    let shapes: Vec<Option<Shape>> = items
        .iter()
        .map(|it| match opts.encoding {
            Encoding::Plain => None,
            Encoding::Auto => it.shape(engine, opts.max_elements_per_rule),
        })
        .collect();
    plan(&shapes, opts.min_group, opts.max_lookahead, overlap, |m| {
        map_pays(items, m)
    })
}

/// The named counters: one per rule (by index), `unavailable` for five, and `default`.
fn counters(policy: &Policy, engine: TupleKind, items: &[Item]) -> Vec<(String, CounterTag)> {
    let eng = engine.keyword();
    let mut counters = Vec::with_capacity(items.len() + 2);
    for (i, it) in items.iter().enumerate() {
        counters.push((
            counter_name(i, &it.name),
            CounterTag {
                engine: eng.into(),
                index: Some(i),
                rule: Some(it.name.clone()),
                action: it.action.to_string(),
            },
        ));
    }
    if engine == TupleKind::Five {
        counters.push((
            UNAVAILABLE_COUNTER.to_string(),
            CounterTag {
                engine: eng.into(),
                index: None,
                rule: Some(UNAVAILABLE_COUNTER.into()),
                action: policy.default.to_string(),
            },
        ));
    }
    counters.push((
        DEFAULT_COUNTER.to_string(),
        CounterTag {
            engine: eng.into(),
            index: None,
            rule: None,
            action: policy.default.to_string(),
        },
    ));
    counters
}

/// The comments at the top: how it was made, the counters' naming, the marks, and (five) what
/// the `unavailable` counter holds.
fn write_header(t: &mut String, opts: &NftOptions, rules: usize, marks: &Marks) {
    let engine = opts.engine;
    let eng = engine.keyword();
    let _ = writeln!(t, "#!/usr/sbin/nft -f");
    let _ = writeln!(
        t,
        "# generated by flowpol compile --target nft --engine {eng} --hook {}",
        opts.hook.as_str()
    );
    let _ = writeln!(
        t,
        "# {rules} {eng} rules, first match wins; the default goes last."
    );
    let _ = writeln!(
        t,
        "# Counters: r<index>_<name with characters outside [A-Za-z0-9_] replaced by _>, and `default`;"
    );
    let _ = writeln!(
        t,
        "# each counter's comment names its rule and action: `flowpol nft stats` reads them back."
    );
    for (c, m, auto) in &marks.entries {
        let _ = writeln!(
            t,
            "# class {c} -> meta mark {m:#x}{}",
            if *auto {
                " (assigned: the class declares no mark)"
            } else {
                ""
            }
        );
    }
    if engine == TupleKind::Five {
        let _ = writeln!(
            t,
            "# five: the 5-tuple is what the kernel reads: `meta l4proto` (it stops at an Authentication\n\
             # Header, so TCP/UDP behind AH is protocol 51 here and in flowpol) and `th sport`/`th dport`.\n\
             # Packets without a 5-tuple (non-first fragments: an offset in any fragment header; ESP;\n\
             # no next header; extension headers flowpol does not walk; a transport header the kernel\n\
             # cannot read: cut short, or payload length 0 without hop-by-hop) are counted in\n\
             # `unavailable` and get the default's verdict. Not expressible: ports behind AH; a second\n\
             # fragment header other than right behind a first at byte 40 (the kernel then reads `th`\n\
             # from the IPv6 header; flowpol says non-first fragment)."
        );
    }
}

/// The regular chain that holds the five rules, reached from the base chain by [`transport_gate`].
const RULES_CHAIN: &str = "rules";

/// The base chain of five: packets whose transport header the kernel can read `goto` the
/// rules; the others (flowpol: no 5-tuple) get the default's verdict (`act`), counted in
/// `unavailable`. See the module documentation.
fn transport_gate(act: &str) -> String {
    let ports: Vec<String> = (0..=u8::MAX)
        .filter(|&p| IpNumber(p).has_ports())
        .map(|p| p.to_string())
        .collect();
    let ports = ports.join(", ");
    let mut g = String::new();
    let _ = writeln!(
        g,
        "\t\tfrag frag-off != 0 counter name \"{UNAVAILABLE_COUNTER}\" {act} comment \"no 5-tuple: non-first fragment\""
    );
    let _ = writeln!(
        g,
        "\t\tip6 nexthdr 44 @nh,320,8 44 @nh,400,13 != 0 counter name \"{UNAVAILABLE_COUNTER}\" {act} comment \"no 5-tuple: non-first fragment by a second fragment header\""
    );
    let _ = writeln!(
        g,
        "\t\tmeta l4proto {{ 50, 59, 135, 139, 140, 253, 254 }} counter name \"{UNAVAILABLE_COUNTER}\" {act} comment \"no 5-tuple: esp, no next header, unknown extension header\""
    );
    let _ = writeln!(
        g,
        "\t\tmeta l4proto {{ {ports} }} @th,16,16 0-65535 goto {RULES_CHAIN} comment \"ports readable\""
    );
    let _ = writeln!(
        g,
        "\t\tmeta l4proto != {{ {ports} }} @th,0,8 0-255 goto {RULES_CHAIN} comment \"transport header readable\""
    );
    let _ = writeln!(
        g,
        "\t\tcounter name \"{UNAVAILABLE_COUNTER}\" {act} comment \"no 5-tuple: transport header unreadable (non-first fragment, cut short, payload length 0)\""
    );
    g
}

/// The rules in plan order: a plain rule is a line of the base chain (`base`); a group is a
/// verdict map and one chain per member in the table (`t`) and a `vmap` line in `base`.
/// Returns (groups, rules in groups).
fn write_steps(
    t: &mut String,
    base: &mut String,
    steps: &[Step<Shape>],
    items: &[Item],
    counters: &[(String, CounterTag)],
    marks: &Marks,
) -> (usize, usize) {
    let mut groups = 0;
    let mut grouped_rules = 0;
    for step in steps {
        match step {
            Step::Plain(i) => {
                let it = &items[*i];
                let cname = &counters[*i].0;
                if !it.live {
                    let _ = writeln!(
                        base,
                        "\t\t# rule {} never matches (ports on a protocol without ports)",
                        it.name
                    );
                    continue;
                }
                let e = it.expr();
                let sep = if e.is_empty() { "" } else { " " };
                let _ = writeln!(
                    base,
                    "\t\t{e}{sep}counter name \"{cname}\" {} comment \"{}\"",
                    action_text(&it.action, marks),
                    nft_comment(&format!("rule {}", it.name))
                );
            }
            Step::Group(shape, members) => {
                let g = groups;
                groups += 1;
                grouped_rules += members.len();
                let _ = writeln!(t, "\tmap g{g} {{");
                let _ = writeln!(t, "\t\ttypeof {} : verdict", shape.key());
                let _ = writeln!(t, "\t\tflags interval");
                let _ = writeln!(t, "\t\telements = {{");
                let mut first = true;
                for &i in members {
                    for el in items[i].elements(*shape) {
                        let _ = write!(
                            t,
                            "{}\t\t\t{el} : goto r{i}",
                            if first { "" } else { ",\n" }
                        );
                        first = false;
                    }
                }
                let _ = writeln!(t, "\n\t\t}}\n\t}}");
                for &i in members {
                    let _ = writeln!(
                        t,
                        "\tchain r{i} {{ counter name \"{}\" {}; }}",
                        counters[i].0,
                        action_text(&items[i].action, marks)
                    );
                }
                let _ = writeln!(
                    base,
                    "\t\t{} vmap @g{g} comment \"{} rules from {} to {}\"",
                    shape.key(),
                    members.len(),
                    members[0],
                    members[members.len() - 1]
                );
            }
        }
    }
    (groups, grouped_rules)
}

fn write_default(t: &mut String, default_act: &str) {
    let _ = writeln!(
        t,
        "\t\tcounter name \"{DEFAULT_COUNTER}\" {default_act} comment \"default\""
    );
}

/// The chain on the hook: the lines in `base`, then (three) the default (`default_act`), and
/// the table's closing brace. For five, `base` is the [`transport_gate`], which ends every path.
fn write_base_chain(t: &mut String, opts: &NftOptions, base: &str, default_act: &str) {
    let _ = writeln!(t, "\tchain {} {{", opts.hook.as_str());
    let _ = writeln!(
        t,
        "\t\ttype filter hook {} priority {}; policy accept;",
        opts.hook.as_str(),
        opts.priority
    );
    t.push_str(base);
    if opts.engine == TupleKind::Three {
        write_default(t, default_act);
    }
    let _ = writeln!(t, "\t}}");
    let _ = writeln!(t, "}}");
}

/// Why `nft -f -` refused a ruleset.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The cause is in the text, so it is not also a `source` (it would print twice).
    #[error("cannot run nft: {0}")]
    Spawn(std::io::Error),
    #[error("nft -f rejected the ruleset ({status}):\n{stderr}")]
    Rejected { status: String, stderr: String },
}

/// Feeds a ruleset to `nft -f -` (with `check`, `nft -c -f -`: validate in the kernel without
/// committing) in the current network namespace. The ruleset replaces `table ip6 flowpol` in
/// one transaction.
pub fn load(text: &str, check: bool) -> Result<(), LoadError> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let mut cmd = Command::new("nft");
    if check {
        cmd.arg("-c");
    }
    let mut child = cmd
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(LoadError::Spawn)?;
    let mut stdin = child.stdin.take().expect("piped");
    let wrote = stdin.write_all(text.as_bytes());
    drop(stdin);
    let out = child.wait_with_output().map_err(LoadError::Spawn)?;
    if !out.status.success() {
        return Err(LoadError::Rejected {
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    wrote.map_err(LoadError::Spawn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FlowLabel;
    use crate::policy::model::{AddrMatch, ClassDef, PortMatch, Rule};
    use crate::policy::syntax::Span;

    fn pfx(s: &str) -> Prefix {
        let (a, l) = s.split_once('/').unwrap_or((s, "128"));
        Prefix::new(
            u128::from(a.parse::<std::net::Ipv6Addr>().unwrap()),
            l.parse().unwrap(),
        )
    }

    fn three(name: &str, src: &[&str], label: LabelMatch, action: Action) -> Rule<ThreeMatch> {
        Rule {
            name: name.into(),
            matcher: ThreeMatch {
                src: AddrMatch(src.iter().map(|s| pfx(s)).collect()),
                dst: AddrMatch::any(),
                label,
            },
            action,
            span: Span::default(),
        }
    }

    fn policy(three: Vec<Rule<ThreeMatch>>) -> Policy {
        Policy {
            classes: vec![
                ClassDef {
                    name: "gold".into(),
                    mark: Some(10),
                },
                ClassDef {
                    name: "bronze".into(),
                    mark: None,
                },
            ],
            three,
            five: vec![],
            default: Action::Drop,
            default_explicit: true,
        }
    }

    #[test]
    fn plain_rules_in_order_with_counters() {
        let p = policy(vec![
            three(
                "gold-media",
                &["2001:db8:a::/48", "2001:db8:a:1::/64"],
                LabelMatch::Masked {
                    value: 0x10000,
                    mask: 0xf0001,
                },
                Action::Class("gold".into()),
            ),
            three(
                "exact",
                &[],
                LabelMatch::Exact(FlowLabel::from_low_bits(0x12345)),
                Action::Pass,
            ),
            three(
                "ranged",
                &["2001:db8::1", "2001:db8::2"],
                LabelMatch::Range {
                    lo: FlowLabel::from_low_bits(0x100),
                    hi: FlowLabel::from_low_bits(0x1ff),
                },
                Action::Class("bronze".into()),
            ),
        ]);
        let r = compile(&p, &NftOptions::default()).unwrap();
        let t = &r.text;
        assert!(t.contains("ip6 saddr 2001:db8:a::/48 ip6 flowlabel & 0xf0001 == 0x10000 counter name \"r0_gold_media\" meta mark set 0xa accept"), "{t}");
        assert!(
            t.contains("ip6 flowlabel 0x12345 counter name \"r1_exact\" accept"),
            "{t}"
        );
        assert!(t.contains("ip6 saddr { 2001:db8::1, 2001:db8::2 } ip6 flowlabel 0x100-0x1ff counter name \"r2_ranged\" meta mark set 0x1 accept"), "{t}");
        assert!(t.contains("counter name \"default\" drop"), "{t}");
        assert!(t.find("r0_gold_media\" meta").unwrap() < t.find("r1_exact\" accept").unwrap());
        assert_eq!(r.counters.len(), 4);
        assert_eq!(r.groups, 0);
        assert!(t.contains(
            "counter r2_ranged { comment \"flowpol three rule 2 ranged -> class bronze\" }"
        ));
    }

    #[test]
    fn disjoint_runs_become_maps_and_overlaps_split_them() {
        let mut rules = Vec::new();
        // Address sets: as plain rules each needs an anonymous set, so a map loads faster.
        for i in 0..6u32 {
            rules.push(three(
                &format!("d{i}"),
                &["2001:db8::/32", "2001:db9::/32"],
                LabelMatch::Exact(FlowLabel::from_low_bits(i)),
                Action::Drop,
            ));
        }
        // Overlaps d0: must come after the group, not inside it.
        rules.push(three(
            "catch",
            &[],
            LabelMatch::Range {
                lo: FlowLabel::ZERO,
                hi: FlowLabel::from_low_bits(3),
            },
            Action::Pass,
        ));
        let r = compile(&policy(rules.clone()), &NftOptions::default()).unwrap();
        assert_eq!((r.groups, r.grouped_rules), (1, 6), "{}", r.text);
        assert!(
            r.text.contains("2001:db8::/32 . ::/0 . 0x5 : goto r5"),
            "{}",
            r.text
        );
        assert!(r.text.contains("chain r5 { counter name \"r5_d5\" drop; }"));
        assert!(
            r.text.find("vmap @g0").unwrap() < r.text.find("counter name \"r6_catch\"").unwrap()
        );
        let plain = compile(
            &policy(rules),
            &NftOptions {
                encoding: Encoding::Plain,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(plain.groups, 0);
    }

    /// The plan, run as the kernel runs it, gives every packet the linear engine's rule.
    #[test]
    fn plan_keeps_first_match_on_random_policies() {
        use crate::classify::{Classifier, Linear};
        use crate::packet::key::ThreeTuple;
        use rand::{RngExt, SeedableRng};
        for seed in 0..200u64 {
            let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut rules = Vec::new();
            for i in 0..r.random_range(1..40usize) {
                let src: Vec<&str> = match r.random_range(0..4) {
                    0 => vec![],
                    1 => vec!["2001:db8::/32"],
                    2 => vec!["2001:db8:1::/48"],
                    _ => vec!["2001:db8:2::/48"],
                };
                let lo = r.random_range(0..16u32);
                let label = match r.random_range(0..4) {
                    0 => LabelMatch::Exact(FlowLabel::from_low_bits(lo)),
                    1 => LabelMatch::Range {
                        lo: FlowLabel::from_low_bits(lo),
                        hi: FlowLabel::from_low_bits(lo + r.random_range(0..4u32)),
                    },
                    2 => LabelMatch::Masked {
                        value: lo & 5,
                        mask: 5,
                    },
                    _ => LabelMatch::Exact(FlowLabel::from_low_bits(100 + i as u32)),
                };
                rules.push(three(&format!("x{i}"), &src, label, Action::Drop));
            }
            let p = policy(rules);
            let items: Vec<Item> = p.three.iter().map(Item::three).collect();
            let shapes: Vec<Option<Shape>> = items
                .iter()
                .map(|it| it.shape(TupleKind::Three, 1024))
                .collect();
            let lookahead = r.random_range(0..8usize);
            let steps = plan(
                &shapes,
                2,
                lookahead,
                |i, j| three_overlap(&p.three[i].matcher, &p.three[j].matcher),
                |_| true,
            );
            let mut seen: Vec<usize> = steps
                .iter()
                .flat_map(|s| match s {
                    Step::Plain(i) => vec![*i],
                    Step::Group(_, m) => m.clone(),
                })
                .collect();
            seen.sort();
            assert_eq!(seen, (0..p.three.len()).collect::<Vec<_>>());
            let lin = Linear::<ThreeTuple>::new(&p);
            for _ in 0..300 {
                let src = (0x2001_0db8u128 << 96)
                    | (r.random_range(0..4u128) << 80)
                    | r.random_range(0..2u128);
                let key = ThreeTuple {
                    src,
                    dst: 1,
                    label: FlowLabel::from_low_bits(
                        r.random_range(0..20u32) + if r.random_range(0..4) == 0 { 100 } else { 0 },
                    ),
                };
                let m = |i: usize| crate::classify::Key::matched_by(&key, &p.three[i].matcher);
                let mut got = None;
                for s in &steps {
                    match s {
                        Step::Plain(i) if m(*i) => got = Some(*i),
                        Step::Plain(_) => {}
                        Step::Group(_, mem) => {
                            let hits: Vec<usize> = mem.iter().copied().filter(|&i| m(i)).collect();
                            assert!(
                                hits.len() <= 1,
                                "seed {seed}: overlapping group members {hits:?}"
                            );
                            got = hits.first().copied();
                        }
                    }
                    if got.is_some() {
                        break;
                    }
                }
                assert_eq!(
                    got,
                    lin.classify(&key).map(|r| r.index()),
                    "seed {seed} key {key:?} steps {steps:?}"
                );
            }
        }
    }

    #[test]
    fn small_runs_of_single_address_rules_stay_plain_because_a_map_loads_slower() {
        let run = |n: u32| {
            let rules: Vec<_> = (0..n)
                .map(|i| {
                    three(
                        &format!("s{i}"),
                        &["2001:db8::/32"],
                        LabelMatch::Exact(FlowLabel::from_low_bits(i)),
                        Action::Drop,
                    )
                })
                .collect();
            compile(&policy(rules), &NftOptions::default()).unwrap()
        };
        let r = run(40);
        assert_eq!(r.groups, 0, "{}", r.text);
        let r = run(200);
        assert_eq!((r.groups, r.grouped_rules), (1, 200));
    }

    #[test]
    fn five_rules_are_reached_only_through_a_readable_transport_header() {
        let mut p = policy(vec![]);
        p.five = vec![Rule {
            name: "tcp".into(),
            matcher: FiveMatch {
                src: AddrMatch::any(),
                dst: AddrMatch::any(),
                proto: Some(6),
                sport: PortMatch::ANY,
                dport: PortMatch::ANY,
            },
            action: Action::Pass,
            span: Span::default(),
        }];
        let r = compile(
            &p,
            &NftOptions {
                engine: TupleKind::Five,
                ..Default::default()
            },
        )
        .unwrap();
        let t = &r.text;
        let gate = t.find("@th,16,16 0-65535 goto rules").expect(t);
        assert!(t.find("@th,0,8 0-255 goto rules").expect(t) > gate);
        let last = t.rfind("counter name \"unavailable\" drop").expect(t);
        assert!(last > gate, "{t}");
        assert!(t.find("chain rules {").unwrap() < t.find("chain input {").unwrap());
        assert!(
            t.contains("meta l4proto 6 counter name \"r0_tcp\" accept"),
            "{t}"
        );
    }

    #[test]
    fn five_tuple_rules() {
        let mut p = policy(vec![]);
        p.five = vec![Rule {
            name: "web".into(),
            matcher: FiveMatch {
                src: AddrMatch::any(),
                dst: AddrMatch(vec![pfx("2001:db8:ff::/64")]),
                proto: Some(6),
                sport: PortMatch::ANY,
                dport: PortMatch { lo: 443, hi: 443 },
            },
            action: Action::Pass,
            span: Span::default(),
        }];
        let r = compile(
            &p,
            &NftOptions {
                engine: TupleKind::Five,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(r.text.contains("ip6 daddr 2001:db8:ff::/64 meta l4proto 6 th dport 443 counter name \"r0_web\" accept"), "{}", r.text);
    }
}
