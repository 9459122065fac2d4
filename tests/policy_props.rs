//! Property tests for the policy language: the canonical form round-trips, `fmt` keeps every
//! comment wherever it is written, the parser and checker never panic, whatever the input, and
//! the rules `check` reports as never matching (W0002, W0003, W0006) are rules no key reaches
//! under the linear engine (exactly those, where every key can be tried).

use flowpol::FlowLabel;
use flowpol::policy::model::*;
use flowpol::policy::{self, fmt};
use proptest::prelude::*;

const CLASSES: [&str; 3] = ["gold", "silver", "bronze"];

fn prefix() -> impl Strategy<Value = Prefix> {
    // A few base networks so sets and covers overlap, at any length.
    (
        prop_oneof![
            Just(0x2001_0db8u128 << 96),
            Just(0xfd00u128 << 112),
            any::<u128>()
        ],
        any::<u64>(),
        0u8..=128,
    )
        .prop_map(|(base, low, len)| Prefix::new(base | u128::from(low), len))
}

fn addrs() -> impl Strategy<Value = AddrMatch> {
    prop_oneof![
        Just(AddrMatch::any()),
        prop::collection::vec(prefix(), 1..4).prop_map(AddrMatch)
    ]
}

fn label() -> impl Strategy<Value = LabelMatch> {
    let l = || (0u32..=FlowLabel::MASK).prop_map(FlowLabel::from_low_bits);
    prop_oneof![
        Just(LabelMatch::Any),
        l().prop_map(LabelMatch::Exact),
        (0u32..=FlowLabel::MASK, 0u32..=FlowLabel::MASK).prop_map(|(v, m)| LabelMatch::Masked {
            value: v & m,
            mask: m
        }),
        (l(), l()).prop_map(|(a, b)| LabelMatch::Range {
            lo: a.min(b),
            hi: a.max(b)
        }),
    ]
}

fn ports() -> impl Strategy<Value = PortMatch> {
    prop_oneof![
        Just(PortMatch::ANY),
        (any::<u16>(), any::<u16>()).prop_map(|(a, b)| PortMatch {
            lo: a.min(b),
            hi: a.max(b)
        })
    ]
}

fn action(classes: bool) -> BoxedStrategy<Action> {
    if classes {
        prop_oneof![
            Just(Action::Pass),
            Just(Action::Drop),
            (0..CLASSES.len()).prop_map(|i| Action::Class(CLASSES[i].into()))
        ]
        .boxed()
    } else {
        prop_oneof![Just(Action::Pass), Just(Action::Drop)].boxed()
    }
}

fn five_match() -> impl Strategy<Value = FiveMatch> {
    let proto = prop_oneof![Just(6u8), Just(17), Just(58), Just(132), any::<u8>()];
    five_of(addrs, prop::option::of(proto), ports)
}

/// 5-tuple matches from field strategies; ports only with a protocol that has them.
fn five_of<A: Strategy<Value = AddrMatch>, P: Strategy<Value = PortMatch>>(
    addrs: impl Fn() -> A,
    proto: impl Strategy<Value = Option<u8>>,
    ports: impl Fn() -> P,
) -> impl Strategy<Value = FiveMatch> {
    (addrs(), addrs(), proto, ports(), ports()).prop_map(|(src, dst, proto, sport, dport)| {
        let with_ports = proto.is_some_and(|p| IpNumber(p).has_ports());
        FiveMatch {
            src,
            dst,
            proto,
            sport: if with_ports { sport } else { PortMatch::ANY },
            dport: if with_ports { dport } else { PortMatch::ANY },
        }
    })
}

fn policy() -> impl Strategy<Value = Policy> {
    any::<bool>().prop_flat_map(|with_classes| {
        (
            prop::collection::vec((addrs(), addrs(), label(), action(with_classes)), 0..8),
            prop::collection::vec((five_match(), action(with_classes)), 0..8),
            action(with_classes),
            any::<bool>(),
            prop::collection::vec(prop::option::of(any::<u32>()), 3),
        )
            .prop_map(move |(three, five, default, explicit, marks)| Policy {
                classes: if with_classes {
                    CLASSES
                        .iter()
                        .zip(marks)
                        .map(|(n, mark)| ClassDef {
                            name: n.to_string(),
                            mark,
                        })
                        .collect()
                } else {
                    Vec::new()
                },
                three: three
                    .into_iter()
                    .enumerate()
                    .map(|(i, (src, dst, label, action))| Rule {
                        name: format!("t{i}"),
                        matcher: ThreeMatch { src, dst, label },
                        action,
                        span: Default::default(),
                    })
                    .collect(),
                five: five
                    .into_iter()
                    .enumerate()
                    .map(|(i, (matcher, action))| Rule {
                        name: format!("f-{i}.x"),
                        matcher,
                        action,
                        span: Default::default(),
                    })
                    .collect(),
                default: if explicit { default } else { Action::Pass },
                default_explicit: explicit,
            })
    })
}

/// A comment: `#`, any text but a line break, sometimes trailing whitespace.
fn comment() -> impl Strategy<Value = String> {
    ("\\PC{0,12}", prop_oneof![Just(""), Just("  "), Just("\t")])
        .prop_map(|(text, ws)| format!("#{text}{ws}"))
}

/// What to do to one line of a policy's text.
#[derive(Clone, Debug)]
struct LineEdit {
    /// Comment lines before it: text, a blank line before, indentation.
    before: Vec<(String, bool, usize)>,
    /// On a rule line: end the block there and open another of the same kind, with comments
    /// at the end of the `}` and the `three {` lines.
    reopen: Option<(Option<String>, Option<String>)>,
    /// Break the line at one of its spaces, with a comment at the end of the first part or on
    /// a line between the two.
    split: Option<(prop::sample::Index, Option<(String, bool)>)>,
    /// A comment at the end of the line.
    trailing: Option<String>,
}

fn line_edit() -> impl Strategy<Value = LineEdit> {
    let c = comment;
    (
        prop::collection::vec((c(), prop::bool::weighted(0.2), 0usize..6), 0..3),
        prop::option::weighted(0.2, (prop::option::of(c()), prop::option::of(c()))),
        prop::option::weighted(
            0.2,
            (
                any::<prop::sample::Index>(),
                prop::option::of((c(), any::<bool>())),
            ),
        ),
        prop::option::weighted(0.3, c()),
    )
        .prop_map(|(before, reopen, split, trailing)| LineEdit {
            before,
            reopen,
            split,
            trailing,
        })
}

/// `text` with `edits` applied line by line and `end` appended, and every comment written.
fn with_comments(text: &str, edits: &[LineEdit], end: &[String]) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut written: Vec<String> = end.to_vec();
    let mut kind = "";
    let mut put = |out: &mut String, c: &str| {
        out.push_str(c);
        written.push(c.to_string());
    };
    for (line, e) in text.lines().zip(edits) {
        if let Some(k) = line.strip_suffix(" {") {
            kind = k;
        }
        if let Some((close, open)) = &e.reopen
            && line.starts_with("    rule ")
        {
            out.push('}');
            if let Some(c) = close {
                out.push(' ');
                put(&mut out, c);
            }
            out.push_str(&format!("\n{kind} {{"));
            if let Some(c) = open {
                put(&mut out, c);
            }
            out.push('\n');
        }
        for (c, blank, indent) in &e.before {
            if *blank {
                out.push('\n');
            }
            out.push_str(&" ".repeat(*indent));
            put(&mut out, c);
            out.push('\n');
        }
        let spaces: Vec<usize> = line.match_indices(' ').map(|(i, _)| i).collect();
        match &e.split {
            Some((at, c)) if !spaces.is_empty() => {
                let at = spaces[at.index(spaces.len())];
                out.push_str(&line[..at]);
                match c {
                    Some((c, true)) => {
                        out.push(' ');
                        put(&mut out, c);
                        out.push('\n');
                    }
                    Some((c, false)) => {
                        out.push('\n');
                        put(&mut out, c);
                        out.push('\n');
                    }
                    None => out.push('\n'),
                }
                out.push_str(&line[at + 1..]);
            }
            _ => out.push_str(line),
        }
        if let Some(c) = &e.trailing {
            out.push(' ');
            put(&mut out, c);
        }
        out.push('\n');
    }
    for c in end {
        out.push_str(c);
        out.push('\n');
    }
    (out, written)
}

/// Tokens of the language, to build inputs that reach deep into the parser.
const TOKENS: [&str; 32] = [
    "three",
    "five",
    "{",
    "}",
    "rule",
    "r1",
    "src",
    "dst",
    "label",
    "proto",
    "sport",
    "dport",
    "->",
    "pass",
    "drop",
    "class",
    "gold",
    "mark",
    "default",
    "any",
    "2001:db8::/32",
    "::1",
    "10.0.0.1",
    "0x12345",
    "0x10000/0xf0000",
    "1-2",
    "tcp",
    "65536",
    "/",
    ",",
    "# c\n",
    "0x",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn fmt_round_trips(p in policy()) {
        let text = fmt::format(&p);
        let (back, diags) = policy::check_source(&text);
        let errors: Vec<_> = diags.iter().filter(|d| d.severity == policy::Severity::Error).collect();
        prop_assert!(errors.is_empty(), "{text}\n{errors:?}");
        prop_assert_eq!(back.as_ref(), Some(&p), "{}", text);
        // And the canonical form is a fixed point.
        prop_assert_eq!(fmt::format(&back.unwrap()), text);
    }

    #[test]
    fn fmt_keeps_every_comment(
        p in policy(),
        edits in prop::collection::vec(line_edit(), 40),
        end in prop::collection::vec(comment(), 0..3),
    ) {
        let (text, comments) = with_comments(&fmt::format(&p), &edits, &end);
        prop_assert_eq!(policy::check_source(&text).0, Some(p.clone()), "{}", text);
        let out = fmt::format_source(&text).unwrap();
        for c in &comments {
            let c = c.trim_end();
            prop_assert_eq!(out.matches(c).count(), text.matches(c).count(), "{:?} in\n{}\n->\n{}", c, text, out);
        }
        prop_assert_eq!(policy::check_source(&out).0, Some(p), "{}", out);
        prop_assert_eq!(fmt::format_source(&out).unwrap(), out);
    }

    #[test]
    fn never_panics_on_arbitrary_text(s in "\\PC*") {
        let _ = policy::check_source(&s);
    }

    #[test]
    fn never_panics_on_token_soup(toks in prop::collection::vec((0..TOKENS.len(), prop_oneof![Just(" "), Just("\n"), Just("")]), 0..60)) {
        let s: String = toks.iter().map(|(t, w)| format!("{}{w}", TOKENS[*t])).collect();
        let (_, diags) = policy::check_source(&s);
        // Every finding points inside the text.
        for d in &diags {
            prop_assert!(d.span.start <= d.span.end && d.span.end <= s.len(), "{d:?} in {s:?}");
        }
    }
}

// Unreachable rules (W0002, W0003, W0006) against the linear engine, first match wins.

use flowpol::classify::{Classifier, Linear};
use flowpol::packet::{FiveTuple, IpNumber, ThreeTuple};

/// The base of the small address spaces below.
const NET: u128 = 0x2001_0db8u128 << 96;

/// For each rule of `p`, three then five, whether `check` reports it as never matching.
fn reported(p: &Policy) -> (Vec<bool>, Vec<bool>) {
    let text = fmt::format(p);
    let (back, diags) = policy::check_source(&text);
    let back = back.unwrap_or_else(|| panic!("{text}\n{diags:?}"));
    let is_reported = |span| {
        diags
            .iter()
            .any(|d| d.span == span && ["W0002", "W0003", "W0006"].contains(&d.code.as_str()))
    };
    (
        back.three.iter().map(|r| is_reported(r.span)).collect(),
        back.five.iter().map(|r| is_reported(r.span)).collect(),
    )
}

/// Fails when a rule is reported but reached, or, when `exact`, reached by no key but not
/// reported.
fn compare(
    p: &Policy,
    kind: &str,
    reported: &[bool],
    reached: &[bool],
    exact: bool,
) -> Result<(), TestCaseError> {
    for (i, (rep, hit)) in reported.iter().zip(reached).enumerate() {
        prop_assert!(
            !(*rep && *hit),
            "{kind} rule r{i} is reported but reached in\n{}",
            fmt::format(p)
        );
        prop_assert!(
            !exact || *rep || *hit,
            "{kind} rule r{i} is reached by no key but not reported in\n{}",
            fmt::format(p)
        );
    }
    Ok(())
}

/// Which rules some key reaches.
fn reached<K: flowpol::classify::Key>(
    p: &Policy,
    n: usize,
    keys: impl Iterator<Item = K>,
) -> Vec<bool>
where
    K::Match: Clone + Send + Sync,
{
    let engine = Linear::<K>::new(p);
    let mut hit = vec![false; n];
    for k in keys {
        if let Some(r) = engine.classify(&k) {
            hit[r.index()] = true;
        }
    }
    hit
}

/// Every product of one value per field.
fn grid<const N: usize>(fields: &[Vec<u128>; N]) -> Vec<[u128; N]> {
    let mut out = vec![[0u128; N]];
    for (i, values) in fields.iter().enumerate() {
        out = out
            .into_iter()
            .flat_map(|k| {
                values.iter().map(move |&v| {
                    let mut k = k;
                    k[i] = v;
                    k
                })
            })
            .collect();
    }
    out
}

fn three_key(k: [u128; 3]) -> ThreeTuple {
    ThreeTuple {
        src: k[0],
        dst: k[1],
        label: FlowLabel::from_low_bits(k[2] as u32),
    }
}

fn five_key(k: [u128; 5]) -> FiveTuple {
    FiveTuple {
        src: k[0],
        dst: k[1],
        proto: k[2] as u8,
        sport: k[3] as u16,
        dport: k[4] as u16,
    }
}

// Tiny domains: addresses in NET/126 (four), labels and ports in 0..=4 (or any). Every key is
// then like one of: an address below NET, one of the four, one above; a label or port 0..=5;
// protocol 6, 17 or another. Checking all those keys is checking every key.

fn tiny_addrs() -> impl Strategy<Value = AddrMatch> {
    let prefix = prop_oneof![
        Just(Prefix::new(NET, 126)),
        (0u128..2).prop_map(|i| Prefix::new(NET + 2 * i, 127)),
        (0u128..4).prop_map(|i| Prefix::new(NET + i, 128)),
    ];
    prop_oneof![
        1 => Just(AddrMatch::any()),
        3 => prop::collection::vec(prefix, 1..3).prop_map(AddrMatch),
    ]
}

fn tiny_label() -> impl Strategy<Value = LabelMatch> {
    prop_oneof![
        Just(LabelMatch::Any),
        (0u32..5).prop_map(|v| LabelMatch::Exact(FlowLabel::from_low_bits(v))),
        (0u32..5, 0u32..5).prop_map(|(a, b)| LabelMatch::Range {
            lo: FlowLabel::from_low_bits(a.min(b)),
            hi: FlowLabel::from_low_bits(a.max(b))
        }),
        // Labels 0..=7 with some of the low three bits fixed.
        (0u32..8, 0u32..8).prop_map(|(v, m)| LabelMatch::Masked {
            value: v & m,
            mask: 0xffff8 | m
        }),
    ]
}

fn tiny_ports() -> impl Strategy<Value = PortMatch> {
    prop_oneof![
        Just(PortMatch::ANY),
        (0u16..5, 0u16..5).prop_map(|(a, b)| PortMatch {
            lo: a.min(b),
            hi: a.max(b)
        }),
    ]
}

/// 3-tuple matches from field strategies.
fn three_of<A: Strategy<Value = AddrMatch>>(
    addrs: impl Fn() -> A,
    label: impl Strategy<Value = LabelMatch>,
) -> impl Strategy<Value = ThreeMatch> {
    (addrs(), addrs(), label).prop_map(|(src, dst, label)| ThreeMatch { src, dst, label })
}

/// Protocols for the matches below: tcp, udp or any.
fn tcp_udp_any() -> impl Strategy<Value = Option<u8>> {
    prop_oneof![Just(None), Just(Some(6u8)), Just(Some(17))]
}

fn tiny_three() -> impl Strategy<Value = ThreeMatch> {
    three_of(tiny_addrs, tiny_label())
}

fn tiny_five() -> impl Strategy<Value = FiveMatch> {
    five_of(tiny_addrs, tcp_udp_any(), tiny_ports)
}

fn tiny_keys3() -> Vec<ThreeTuple> {
    let addr: Vec<u128> = [0, NET + 4].into_iter().chain(NET..NET + 4).collect();
    let label: Vec<u128> = (0..=8).collect();
    grid(&[addr.clone(), addr, label])
        .into_iter()
        .map(three_key)
        .collect()
}

fn tiny_keys5() -> Vec<FiveTuple> {
    let addr: Vec<u128> = [0, NET + 4].into_iter().chain(NET..NET + 4).collect();
    let port: Vec<u128> = (0..=5).collect();
    grid(&[addr.clone(), addr, vec![6, 17, 58], port.clone(), port])
        .into_iter()
        .map(five_key)
        .collect()
}

// Larger domains, for soundness: prefixes nest (NET/32 split down to /36), label and port
// ranges share their ends, and value/mask labels may have any mask, so the check sometimes has
// to give up. Keys are sampled around every rule's bounds.

fn nested_addrs() -> impl Strategy<Value = AddrMatch> {
    let prefix =
        (32u8..=36, 0u128..16).prop_map(|(len, i)| Prefix::new(NET | (i << (128 - 36)), len));
    prop_oneof![
        1 => Just(AddrMatch::any()),
        3 => prop::collection::vec(prefix, 1..3).prop_map(AddrMatch),
    ]
}

const LABEL_ENDS: [u32; 6] = [0, 0x10, 0x1f, 0x7ffff, 0x80000, 0xfffff];
const PORT_ENDS: [u16; 7] = [0, 80, 443, 1023, 1024, 8080, 65535];

fn near_label() -> impl Strategy<Value = LabelMatch> {
    let end = || {
        (0..LABEL_ENDS.len(), -1i32..=1)
            .prop_map(|(i, d)| (LABEL_ENDS[i] as i32 + d).clamp(0, FlowLabel::MASK as i32) as u32)
    };
    prop_oneof![
        Just(LabelMatch::Any),
        end().prop_map(|v| LabelMatch::Exact(FlowLabel::from_low_bits(v))),
        (end(), end()).prop_map(|(a, b)| LabelMatch::Range {
            lo: FlowLabel::from_low_bits(a.min(b)),
            hi: FlowLabel::from_low_bits(a.max(b))
        }),
        (
            end(),
            prop_oneof![
                Just(1u32),
                Just(0x3),
                Just(0xf0000),
                Just(0xffff0),
                0u32..=FlowLabel::MASK
            ]
        )
            .prop_map(|(v, m)| LabelMatch::Masked {
                value: v & m,
                mask: m
            }),
    ]
}

fn near_ports() -> impl Strategy<Value = PortMatch> {
    let end = || {
        (0..PORT_ENDS.len(), -1i32..=1)
            .prop_map(|(i, d)| (i32::from(PORT_ENDS[i]) + d).clamp(0, 65535) as u16)
    };
    prop_oneof![
        Just(PortMatch::ANY),
        (end(), end()).prop_map(|(a, b)| PortMatch {
            lo: a.min(b),
            hi: a.max(b)
        }),
    ]
}

fn near_three() -> impl Strategy<Value = ThreeMatch> {
    three_of(nested_addrs, near_label())
}

fn near_five() -> impl Strategy<Value = FiveMatch> {
    five_of(nested_addrs, tcp_udp_any(), near_ports)
}

/// Values just around the ends of intervals.
fn around(ends: impl IntoIterator<Item = (u128, u128)>, max: u128) -> Vec<u128> {
    let mut v: Vec<u128> = vec![0, max];
    for (lo, hi) in ends {
        v.extend([lo, hi, lo.saturating_sub(1), hi.saturating_add(1).min(max)]);
    }
    v.sort_unstable();
    v.dedup();
    v
}

fn addr_ends(a: &AddrMatch) -> Vec<(u128, u128)> {
    a.0.iter().map(|p| (p.addr, p.addr | !p.mask())).collect()
}

fn label_ends(l: &LabelMatch) -> Vec<(u128, u128)> {
    let (lo, hi) = match *l {
        LabelMatch::Masked { value, mask } => (value, value | (FlowLabel::MASK & !mask)),
        _ => l.as_range().unwrap(),
    };
    let mut v = vec![(u128::from(lo), u128::from(hi))];
    if let LabelMatch::Masked { value, mask } = *l {
        // The ends of the first few runs.
        let free = FlowLabel::MASK & !mask;
        let run = if mask == 0 {
            free
        } else {
            free & ((1 << mask.trailing_zeros()) - 1)
        };
        let step = (free & !run) & (free & !run).wrapping_neg();
        for k in 0..4u32 {
            let b = value | (k.wrapping_mul(step) & free & !run);
            v.push((u128::from(b), u128::from(b | run)));
        }
    }
    v
}

/// Up to `n` keys from the product of `fields`: all of it when it is small, else a sample.
fn sample<const N: usize>(fields: &[Vec<u128>; N], n: usize, seed: u64) -> Vec<[u128; N]> {
    let size: usize = fields.iter().map(Vec::len).product();
    if size <= n {
        return grid(fields);
    }
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            std::array::from_fn(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                fields[i][(x % fields[i].len() as u64) as usize]
            })
        })
        .collect()
}

/// The two halves of an address match, if it has them: a prefix's two halves, or a set split
/// in two. `any` is split only when `whole` (outside the tiny domains).
fn split_addrs(a: &AddrMatch, whole: bool) -> Option<(AddrMatch, AddrMatch)> {
    let halves = |p: Prefix| {
        (p.len < 128).then(|| {
            let bit = 1u128 << (127 - p.len);
            (
                AddrMatch(vec![Prefix::new(p.addr, p.len + 1)]),
                AddrMatch(vec![Prefix::new(p.addr | bit, p.len + 1)]),
            )
        })
    };
    match a.0.as_slice() {
        _ if a.is_any() => halves(Prefix::new(0, 0)).filter(|_| whole),
        [p] => halves(*p),
        [first, rest @ ..] => Some((AddrMatch(vec![*first]), AddrMatch(rest.to_vec()))),
        [] => None,
    }
}

/// Splits an inclusive range after `lo + at % (hi - lo)`, or, when not `whole`, after `at`
/// (when it is inside), so the ends stay in the tiny domains.
fn split_range(lo: u32, hi: u32, at: u32, whole: bool) -> Option<((u32, u32), (u32, u32))> {
    let s = if whole {
        lo.checked_add(at.checked_rem(hi.checked_sub(lo)?)?)?
    } else {
        at
    };
    (lo <= s && s < hi).then_some(((lo, s), (s + 1, hi)))
}

fn split_label(l: &LabelMatch, at: u32, whole: bool) -> Option<(LabelMatch, LabelMatch)> {
    let range = |(lo, hi)| LabelMatch::Range {
        lo: FlowLabel::from_low_bits(lo),
        hi: FlowLabel::from_low_bits(hi),
    };
    match *l {
        LabelMatch::Masked { value, mask } => {
            // Fix the highest free bit.
            let free = FlowLabel::MASK & !mask;
            (free != 0).then(|| {
                let bit = 1 << (31 - free.leading_zeros());
                let m = mask | bit;
                (
                    LabelMatch::Masked { value, mask: m },
                    LabelMatch::Masked {
                        value: value | bit,
                        mask: m,
                    },
                )
            })
        }
        _ => {
            let (lo, hi) = l.as_range()?;
            split_range(lo, hi, at, whole).map(|(a, b)| (range(a), range(b)))
        }
    }
}

fn split_ports(p: &PortMatch, at: u32, whole: bool) -> Option<(PortMatch, PortMatch)> {
    let port = |(lo, hi): (u32, u32)| PortMatch {
        lo: lo as u16,
        hi: hi as u16,
    };
    split_range(p.lo.into(), p.hi.into(), at, whole).map(|(a, b)| (port(a), port(b)))
}

trait Split: Sized + Clone {
    /// This match cut in two along field `field`, if it can be.
    fn split(&self, field: usize, at: u32, whole: bool) -> Option<(Self, Self)>;
}

/// Two copies of `m`, with one field set to each of two halves.
fn cut<M: Clone, T>(m: &M, halves: Option<(T, T)>, set: impl Fn(&mut M, T)) -> Option<(M, M)> {
    let (a, b) = halves?;
    let (mut x, mut y) = (m.clone(), m.clone());
    set(&mut x, a);
    set(&mut y, b);
    Some((x, y))
}

impl Split for ThreeMatch {
    fn split(&self, field: usize, at: u32, whole: bool) -> Option<(Self, Self)> {
        match field % 3 {
            0 => cut(self, split_addrs(&self.src, whole), |m, a| m.src = a),
            1 => cut(self, split_addrs(&self.dst, whole), |m, a| m.dst = a),
            _ => cut(self, split_label(&self.label, at, whole), |m, l| {
                m.label = l
            }),
        }
    }
}

impl Split for FiveMatch {
    fn split(&self, field: usize, at: u32, whole: bool) -> Option<(Self, Self)> {
        let ports = self.proto.is_some();
        match field % 4 {
            0 => cut(self, split_addrs(&self.src, whole), |m, a| m.src = a),
            1 => cut(self, split_addrs(&self.dst, whole), |m, a| m.dst = a),
            2 if ports => cut(self, split_ports(&self.sport, at, whole), |m, p| {
                m.sport = p
            }),
            _ if ports => cut(self, split_ports(&self.dport, at, whole), |m, p| {
                m.dport = p
            }),
            _ => None,
        }
    }
}

/// Rules that together cover a rule: random rules, the rule cut a few times (the pieces rotated
/// out of the order they were cut in, one sometimes left out), the rule itself, random rules.
fn covered<M: Split + std::fmt::Debug, S: Strategy<Value = M>>(
    rule: impl Fn() -> S,
    at: std::ops::Range<u32>,
    whole: bool,
) -> impl Strategy<Value = Vec<M>> {
    (
        prop::collection::vec(rule(), 0..3),
        rule(),
        prop::collection::vec((0usize..5, any::<prop::sample::Index>(), at), 1..5),
        prop::option::weighted(0.3, any::<prop::sample::Index>()),
        any::<prop::sample::Index>(),
        prop::collection::vec(rule(), 0..3),
    )
        .prop_map(move |(before, target, cuts, drop, pos, after)| {
            let mut pieces = vec![target.clone()];
            for (field, which, at) in cuts {
                let k = which.index(pieces.len());
                if let Some((a, b)) = pieces[k].split(field, at, whole) {
                    pieces[k] = a;
                    pieces.push(b);
                }
            }
            if let Some(d) = drop
                && pieces.len() > 1
            {
                pieces.remove(d.index(pieces.len()));
            }
            let mut rules = before;
            let r = pos.index(pieces.len());
            pieces.rotate_left(r);
            rules.extend(pieces);
            rules.push(target);
            rules.extend(after);
            rules
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// In tiny domains every key is tried: a rule is reported exactly when no key reaches it.
    #[test]
    fn unreachable_is_exact_in_tiny_domains(
        three in prop_oneof![
            prop::collection::vec(tiny_three(), 0..8),
            covered(tiny_three, 0..5, false),
        ],
        five in prop_oneof![
            prop::collection::vec(tiny_five(), 0..8),
            covered(tiny_five, 0..5, false),
        ],
    ) {
        let p = Policy::from_matches(three, five);
        let (r3, r5) = reported(&p);
        let h3 = reached(&p, p.three.len(), tiny_keys3().into_iter());
        let h5 = reached(&p, p.five.len(), tiny_keys5().into_iter());
        compare(&p, "three", &r3, &h3, true)?;
        compare(&p, "five", &r5, &h5, true)?;
    }

    /// A rule reported as never matching is reached by no key around any rule's bounds.
    #[test]
    fn reported_rules_are_unreachable(
        three in prop_oneof![
            prop::collection::vec(near_three(), 1..10),
            covered(near_three, 0..0x10_0000, true),
        ],
        five in prop_oneof![
            prop::collection::vec(near_five(), 1..10),
            covered(near_five, 0..0x1_0000, true),
        ],
        seed in any::<u64>(),
    ) {
        let p = Policy::from_matches(three, five);
        let (r3, r5) = reported(&p);
        let addr = |f: fn(&ThreeMatch) -> &AddrMatch| {
            around(p.three.iter().flat_map(|r| addr_ends(f(&r.matcher))), u128::MAX)
        };
        let fields3 = [
            addr(|m| &m.src),
            addr(|m| &m.dst),
            around(p.three.iter().flat_map(|r| label_ends(&r.matcher.label)), FlowLabel::MASK.into()),
        ];
        let keys3 = sample(&fields3, 20_000, seed).into_iter().map(three_key);
        let h3 = reached(&p, p.three.len(), keys3);
        let addr5 = |f: fn(&FiveMatch) -> &AddrMatch| {
            around(p.five.iter().flat_map(|r| addr_ends(f(&r.matcher))), u128::MAX)
        };
        let port = |f: fn(&FiveMatch) -> PortMatch| {
            around(p.five.iter().map(|r| { let m = f(&r.matcher); (m.lo.into(), m.hi.into()) }), 65535)
        };
        let fields5 = [
            addr5(|m| &m.src),
            addr5(|m| &m.dst),
            vec![6, 17, 58],
            port(|m| m.sport),
            port(|m| m.dport),
        ];
        let keys5 = sample(&fields5, 20_000, seed).into_iter().map(five_key);
        let h5 = reached(&p, p.five.len(), keys5);
        compare(&p, "three", &r3, &h3, false)?;
        compare(&p, "five", &r5, &h5, false)?;
    }
}
