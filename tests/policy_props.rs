//! Property tests for the policy language: the canonical form round-trips, `fmt` keeps every
//! comment wherever it is written, and the parser and checker never panic, whatever the input.

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
    (
        addrs(),
        addrs(),
        prop::option::of(prop_oneof![
            Just(6u8),
            Just(17),
            Just(58),
            Just(132),
            any::<u8>()
        ]),
        ports(),
        ports(),
    )
        .prop_map(|(src, dst, proto, sport, dport)| {
            let with_ports = proto.is_some_and(proto_has_ports);
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
