//! Test files for policies (`flowpol test`): packets and the action each block must give them.
//!
//! ```text
//! policy datacenter.fpol
//!
//! case media src 2001:db8:a::1 dst 2001:db8:fe::10 label 0x12345 proto udp sport 40000 dport 5004
//!     -> three class gold by rule media, five class gold
//! ```
//!
//! The grammar, in the policy language's EBNF (whitespace, line breaks and `#` comments are free
//! between tokens, as in policies):
//!
//! ```text
//! file    = "policy" PATH { case } ;
//! case    = "case" NAME { field } "->" expect { "," expect } ;
//! field   = "src" ADDRESS | "dst" ADDRESS | "label" NUMBER
//!         | "proto" PROTO | "sport" NUMBER | "dport" NUMBER ;
//! expect  = ( "three" | "five" ) action [ "by" ( "rule" NAME | "default" ) ] ;
//! action  = "pass" | "drop" | "class" NAME ;
//! ```
//!
//! `PATH` is relative to the test file's folder. A `three` expectation needs `src`, `dst` and
//! `label`; a `five` one needs `src`, `dst` and `proto`, and `sport` and `dport` when the
//! protocol has ports (for one without, both ports are 0 and may not be given).

use crate::label::FlowLabel;
use crate::packet::IpNumber;
use crate::policy::diagnostic::{Code, Diagnostic};
use crate::policy::explain::{self, FiveFields, Verdict};
use crate::policy::model::{Action, Policy};
use crate::policy::parse::PErr;
use crate::policy::syntax::{Span, TupleKind};
use nom::Parser;
use nom::bytes::complete::take_while1;
use nom::character::complete::satisfy;
use nom::combinator::recognize;
use nom::sequence::pair;
use std::net::Ipv6Addr;

/// A test file as written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestFile {
    /// The policy it tests, as written, and where.
    pub policy: Option<(String, Span)>,
    pub cases: Vec<Case>,
}

/// A value and where it was written.
pub type At<T> = (T, Span);

/// One packet and what is expected of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    pub name: At<String>,
    pub src: Option<At<Ipv6Addr>>,
    pub dst: Option<At<Ipv6Addr>>,
    pub label: Option<At<u64>>,
    pub proto: Option<At<u64>>,
    pub sport: Option<At<u64>>,
    pub dport: Option<At<u64>>,
    pub expects: Vec<Expect>,
    pub span: Span,
}

/// Which rule is expected to decide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum By {
    Rule(String),
    Default,
}

/// `three ACTION [by ...]` or `five ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expect {
    pub tuple: TupleKind,
    pub action: Action,
    pub by: Option<At<By>>,
    pub span: Span,
}

type PResult<'a, T> = Result<(&'a str, T), PErr<'a>>;

fn skip_ws(mut i: &str) -> &str {
    loop {
        let t = i.trim_start();
        if let Some(rest) = t.strip_prefix('#') {
            i = rest.find('\n').map_or("", |n| &rest[n..]);
        } else {
            return t;
        }
    }
}

/// A name or keyword: `[A-Za-z_][A-Za-z0-9_.-]*`, not taking the `-` of `->`.
fn word(i: &str) -> Option<(&str, &str)> {
    let r: nom::IResult<&str, &str> = recognize(pair(
        satisfy(|c: char| c.is_ascii_alphabetic() || c == '_'),
        nom::bytes::complete::take_while(|c: char| c.is_ascii_alphanumeric() || "_-.".contains(c)),
    ))
    .parse(i);
    let (rest, w) = r.ok()?;
    if w.ends_with('-') && rest.starts_with('>') {
        let n = w.len() - 1;
        return Some((&i[n..], &w[..n]));
    }
    Some((rest, w))
}

/// A run of characters up to whitespace, `,` or `#`.
fn token(i: &str) -> Option<(&str, &str)> {
    let r: nom::IResult<&str, &str> =
        take_while1(|c: char| !c.is_whitespace() && c != ',' && c != '#').parse(i);
    r.ok()
}

fn keyword<'a>(i: &'a str, kw: &str) -> Option<&'a str> {
    word(i).filter(|(_, w)| *w == kw).map(|(r, _)| r)
}

/// `0x` hex or decimal; saturates at `u64::MAX`.
fn number(i: &str) -> Option<(&str, u64)> {
    let (rest, t) = token(i)?;
    let (digits, radix) = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => (h, 16),
        None => (t, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let v = digits.chars().fold(0u64, |acc, c| {
        acc.saturating_mul(u64::from(radix))
            .saturating_add(u64::from(c.to_digit(radix).unwrap_or(0)))
    });
    Some((rest, v))
}

struct P<'s> {
    src: &'s str,
    diags: Vec<Diagnostic>,
}

/// Parses a test file: what parsed, and one finding per syntax error (parsing resumes at the
/// next `case`).
pub fn parse(src: &str) -> (TestFile, Vec<Diagnostic>) {
    let mut p = P {
        src,
        diags: Vec::new(),
    };
    let f = p.file();
    (f, p.diags)
}

impl<'s> P<'s> {
    fn off(&self, rest: &str) -> usize {
        self.src.len() - rest.len()
    }

    fn span(&self, a: &str, b: &str) -> Span {
        Span::new(self.off(a), self.off(b))
    }

    fn error(&mut self, e: PErr<'s>) {
        self.diags.push(e.diagnostic(self.src, Code::TestSyntax));
    }

    fn file(&mut self) -> TestFile {
        let mut f = TestFile::default();
        let mut i = skip_ws(self.src);
        while !i.is_empty() {
            let r = if let Some(rest) = keyword(i, "policy") {
                let at = skip_ws(rest);
                match token(at) {
                    Some((rest, path)) if !at.starts_with("case") => {
                        let span = self.span(at, rest);
                        if let Some((_, first)) = &f.policy {
                            self.diags.push(
                                Diagnostic::new(
                                    Code::TestInvalid,
                                    "a test file names one policy",
                                    span,
                                )
                                .with_label("second policy")
                                .with_secondary(*first, "first named here"),
                            );
                        } else {
                            f.policy = Some((path.to_string(), span));
                        }
                        Ok(rest)
                    }
                    _ => Err(PErr {
                        at,
                        expected: "the path of the policy file",
                    }),
                }
            } else if keyword(i, "case").is_some() {
                self.case(i).map(|(rest, c)| {
                    f.cases.push(c);
                    rest
                })
            } else {
                Err(PErr {
                    at: i,
                    expected: "`policy` or `case`",
                })
            };
            i = match r {
                Ok(rest) => skip_ws(rest),
                Err(e) => {
                    let at = e.at;
                    self.error(e);
                    skip_ws(self.recover(at))
                }
            };
        }
        f
    }

    /// Skips to the next `case` (or `policy`) after a syntax error.
    fn recover(&self, i: &'s str) -> &'s str {
        let (_, n) = crate::policy::parse::token_at(i);
        let mut i = &i[n.max(1).min(i.len())..];
        loop {
            i = skip_ws(i);
            if i.is_empty() || keyword(i, "case").is_some() || keyword(i, "policy").is_some() {
                return i;
            }
            let (_, n) = crate::policy::parse::token_at(i);
            i = &i[n.max(1).min(i.len())..];
        }
    }

    fn case(&mut self, start: &'s str) -> PResult<'s, Case> {
        let i = keyword(start, "case").unwrap_or(start);
        let at = skip_ws(i);
        let Some((mut i, name)) = word(at) else {
            return Err(PErr {
                at,
                expected: "a case name",
            });
        };
        let mut c = Case {
            name: (name.to_string(), self.span(at, i)),
            src: None,
            dst: None,
            label: None,
            proto: None,
            sport: None,
            dport: None,
            expects: Vec::new(),
            span: Span::default(),
        };
        const FIELD: &str = "a field (`src`, `dst`, `label`, `proto`, `sport`, `dport`) or `->`";
        loop {
            let j = skip_ws(i);
            if let Some(rest) = j.strip_prefix("->") {
                i = rest;
                break;
            }
            let Some((after_kw, kw)) = word(j) else {
                return Err(PErr {
                    at: j,
                    expected: FIELD,
                });
            };
            let v = skip_ws(after_kw);
            let (rest, slot_name) = match kw {
                "src" | "dst" => {
                    let (rest, t) = token(v).ok_or(PErr {
                        at: v,
                        expected: "an IPv6 address",
                    })?;
                    let a: Ipv6Addr = t.parse().map_err(|_| PErr {
                        at: v,
                        expected: "an IPv6 address",
                    })?;
                    let slot = if kw == "src" { &mut c.src } else { &mut c.dst };
                    let dup = slot.is_some();
                    *slot = Some((a, self.span(v, rest)));
                    (rest, dup.then_some(kw))
                }
                "proto" => {
                    let named = word(v).and_then(|(rest, w)| {
                        IpNumber::from_name(w).map(|p| (rest, u64::from(p.0)))
                    });
                    let (rest, p) = named.or_else(|| number(v)).ok_or(PErr {
                        at: v,
                        expected: "a protocol (`tcp`, `udp`, `sctp`, `icmpv6`, `dccp`, `udplite` or a number)",
                    })?;
                    let dup = c.proto.is_some();
                    c.proto = Some((p, self.span(v, rest)));
                    (rest, dup.then_some(kw))
                }
                "label" | "sport" | "dport" => {
                    let (rest, n) = number(v).ok_or(PErr {
                        at: v,
                        expected: "a number",
                    })?;
                    let slot = match kw {
                        "label" => &mut c.label,
                        "sport" => &mut c.sport,
                        _ => &mut c.dport,
                    };
                    let dup = slot.is_some();
                    *slot = Some((n, self.span(v, rest)));
                    (rest, dup.then_some(kw))
                }
                _ => {
                    return Err(PErr {
                        at: j,
                        expected: FIELD,
                    });
                }
            };
            if let Some(kw) = slot_name {
                self.diags.push(
                    Diagnostic::new(
                        Code::TestInvalid,
                        format!("`{kw}` given twice"),
                        self.span(j, rest),
                    )
                    .with_label("the last one counts"),
                );
            }
            i = rest;
        }
        loop {
            let (rest, e) = self.expect(skip_ws(i))?;
            c.expects.push(e);
            i = rest;
            match skip_ws(i).strip_prefix(',') {
                Some(rest) => i = rest,
                None => break,
            }
        }
        c.span = self.span(start, i);
        Ok((i, c))
    }

    fn expect(&mut self, start: &'s str) -> PResult<'s, Expect> {
        let (i, tuple) = match word(start) {
            Some((rest, "three")) => (rest, TupleKind::Three),
            Some((rest, "five")) => (rest, TupleKind::Five),
            _ => {
                return Err(PErr {
                    at: start,
                    expected: "`three` or `five`",
                });
            }
        };
        let at = skip_ws(i);
        const ACTION: &str = "an action (`pass`, `drop` or `class NAME`)";
        let (mut i, action) = match word(at) {
            Some((rest, "pass")) => (rest, Action::Pass),
            Some((rest, "drop")) => (rest, Action::Drop),
            Some((rest, "class")) => {
                let n = skip_ws(rest);
                let (rest, name) = word(n).ok_or(PErr {
                    at: n,
                    expected: "a class name",
                })?;
                (rest, Action::Class(name.to_string()))
            }
            _ => {
                return Err(PErr {
                    at,
                    expected: ACTION,
                });
            }
        };
        let mut by = None;
        if let Some(rest) = keyword(skip_ws(i), "by") {
            let b = skip_ws(rest);
            if let Some(rest) = keyword(b, "default") {
                by = Some((By::Default, self.span(b, rest)));
                i = rest;
            } else if let Some(rest) = keyword(b, "rule") {
                let n = skip_ws(rest);
                let (rest, name) = word(n).ok_or(PErr {
                    at: n,
                    expected: "a rule name",
                })?;
                by = Some((By::Rule(name.to_string()), self.span(b, rest)));
                i = rest;
            } else {
                return Err(PErr {
                    at: b,
                    expected: "`rule NAME` or `default`",
                });
            }
        }
        Ok((
            i,
            Expect {
                tuple,
                action,
                by,
                span: self.span(start, i),
            },
        ))
    }
}

/// The outcome of running a file's cases against its policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Run {
    /// Expectations that held.
    pub passed: usize,
    /// Findings: cases that cannot be run (T0002) and expectations that failed (T0003).
    pub findings: Vec<Diagnostic>,
}

fn show_by(v: &Verdict) -> String {
    match &v.rule {
        Some(r) => format!("{} by rule {r}", v.action),
        None => format!("{} by the default", v.action),
    }
}

/// Runs every case of `file` against `policy` (read from `policy_path`, which the hint of a
/// failing case names).
pub fn run(file: &TestFile, policy: &Policy, policy_path: &str) -> Run {
    let mut out = Run::default();
    for c in &file.cases {
        let invalid = |msg: String, span: Span| Diagnostic::new(Code::TestInvalid, msg, span);
        let mut bad = Vec::new();
        let label = match c.label {
            Some((v, span)) => match FlowLabel::new(v) {
                Ok(l) => Some(l),
                Err(_) => {
                    bad.push(invalid(format!("label {v:#x} is wider than 20 bits"), span));
                    None
                }
            },
            None => None,
        };
        let port = |p: Option<At<u64>>, bad: &mut Vec<Diagnostic>| {
            p.and_then(|(v, span)| match u16::try_from(v) {
                Ok(v) => Some(v),
                Err(_) => {
                    bad.push(invalid(format!("port {v} is over 65535"), span));
                    None
                }
            })
        };
        let (sport, dport) = (port(c.sport, &mut bad), port(c.dport, &mut bad));
        let proto = c.proto.and_then(|(v, span)| match u8::try_from(v) {
            Ok(p) => Some(p),
            Err(_) => {
                bad.push(invalid(format!("protocol {v} is over 255"), span));
                None
            }
        });
        if let (Some(p), Some((_, span))) = (proto, c.sport.or(c.dport))
            && !IpNumber(p).has_ports()
        {
            bad.push(
                invalid(
                    format!(
                        "protocol {} has no ports: packets of it have ports 0",
                        IpNumber(p)
                    ),
                    span,
                )
                .with_help("leave out `sport` and `dport`"),
            );
        }
        if !bad.is_empty() {
            out.findings.extend(bad);
            continue;
        }
        for e in &c.expects {
            let mut missing: Vec<&str> = Vec::new();
            if c.src.is_none() {
                missing.push("src");
            }
            if c.dst.is_none() {
                missing.push("dst");
            }
            let five = match e.tuple {
                TupleKind::Three => {
                    if label.is_none() {
                        missing.push("label");
                    }
                    None
                }
                TupleKind::Five => match proto {
                    None => {
                        missing.push("proto");
                        None
                    }
                    Some(p) if IpNumber(p).has_ports() => {
                        if sport.is_none() {
                            missing.push("sport");
                        }
                        if dport.is_none() {
                            missing.push("dport");
                        }
                        Some(FiveFields {
                            proto: p,
                            sport: sport.unwrap_or(0),
                            dport: dport.unwrap_or(0),
                        })
                    }
                    Some(p) => Some(FiveFields {
                        proto: p,
                        sport: 0,
                        dport: 0,
                    }),
                },
            };
            if !missing.is_empty() {
                out.findings.push(
                    invalid(
                        format!(
                            "case {}: a `{}` expectation needs {}",
                            c.name.0,
                            e.tuple.keyword(),
                            missing.join(", ")
                        ),
                        e.span,
                    )
                    .with_secondary(c.name.1, "the case"),
                );
                continue;
            }
            if let Some((By::Rule(r), span)) = &e.by {
                let known = match e.tuple {
                    TupleKind::Three => policy.three.iter().any(|x| &x.name == r),
                    TupleKind::Five => policy.five.iter().any(|x| &x.name == r),
                };
                if !known {
                    out.findings.push(invalid(
                        format!("the policy's `{}` block has no rule {r}", e.tuple.keyword()),
                        *span,
                    ));
                    continue;
                }
            }
            let (Some((src, _)), Some((dst, _))) = (c.src, c.dst) else {
                continue;
            };
            let ex = match e.tuple {
                TupleKind::Three => explain::explain(policy, src, dst, label, None).three,
                TupleKind::Five => explain::explain(policy, src, dst, None, five).five,
            };
            let Some(v) = ex else { continue };
            let rule_ok = match &e.by {
                None => true,
                Some((By::Default, _)) => v.rule.is_none(),
                Some((By::Rule(r), _)) => v.rule.as_ref() == Some(r),
            };
            if v.action == e.action && rule_ok {
                out.passed += 1;
                continue;
            }
            let wanted = match &e.by {
                None => e.action.to_string(),
                Some((By::Default, _)) => format!("{} by the default", e.action),
                Some((By::Rule(r), _)) => format!("{} by rule {r}", e.action),
            };
            let mut args = format!("--src {src} --dst {dst}");
            match e.tuple {
                TupleKind::Three => {
                    if let Some(l) = label {
                        args.push_str(&format!(" --label {:#x}", l.value()));
                    }
                }
                TupleKind::Five => {
                    if let Some(f) = five {
                        args.push_str(&format!(" --proto {}", IpNumber(f.proto)));
                        if IpNumber(f.proto).has_ports() {
                            args.push_str(&format!(" --sport {} --dport {}", f.sport, f.dport));
                        }
                    }
                }
            }
            out.findings.push(
                Diagnostic::new(
                    Code::TestFailed,
                    format!(
                        "case {} failed: the {} block gives {}, expected {wanted}",
                        c.name.0,
                        e.tuple.keyword(),
                        show_by(&v)
                    ),
                    e.span,
                )
                .with_label(format!("got {}", show_by(&v)))
                .with_secondary(c.name.1, "this case")
                .with_help(format!("see why: flowpol explain {policy_path} {args}")),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::load_str;

    const POLICY: &str = "class gold\ndefault drop\n\
        three {\n  rule media dst 2001:db8:fe::/64 label 0x10000/0xf0000 -> class gold\n}\n\
        five {\n  rule rtp dst 2001:db8:fe::/64 proto udp dport 5004-5005 -> class gold\n}\n";

    fn at(src: &str, span: Span) -> &str {
        &src[span.range()]
    }

    proptest::proptest! {
        /// Whatever the text, parsing and running never panic and every finding points inside
        /// the text.
        #[test]
        fn never_panics(
            toks in proptest::collection::vec(
                proptest::sample::select(vec![
                    "policy", "p.fpol", "case", "c", "src", "dst", "label", "proto", "sport",
                    "dport", "::1", "2001:db8:fe::1", "0x10000", "99999999999", "tcp", "icmpv6",
                    "300", "->", "three", "five", "class", "gold", "pass", "drop", "by", "rule",
                    "media", "default", ",", "#c\n", "é", "-", ">", "\n",
                ]),
                0..40,
            )
        ) {
            let src = toks.join(" ");
            let (f, diags) = parse(&src);
            let p = load_str("p", POLICY).unwrap();
            let r = run(&f, &p, "p");
            for d in diags.iter().chain(&r.findings) {
                proptest::prop_assert!(d.span.start <= d.span.end && d.span.end <= src.len());
            }
        }
    }

    #[test]
    fn a_file_parses_with_spans() {
        let src = "# a test\npolicy ../p.fpol\ncase rtp src ::1 dst 2001:db8:fe::1 label 0x10001\n  proto udp sport 1 dport 5004  # media\n  -> three class gold by rule media, five class gold by default\n";
        let (f, diags) = parse(src);
        assert!(diags.is_empty(), "{diags:?}");
        let (path, span) = f.policy.clone().unwrap();
        assert_eq!((path.as_str(), at(src, span)), ("../p.fpol", "../p.fpol"));
        let c = &f.cases[0];
        assert_eq!(c.name.0, "rtp");
        assert_eq!(c.label.unwrap().0, 0x10001);
        assert_eq!(c.proto.unwrap().0, 17);
        assert_eq!(c.expects.len(), 2);
        assert_eq!(at(src, c.expects[0].span), "three class gold by rule media");
        assert_eq!(at(src, c.expects[1].span), "five class gold by default");
        assert_eq!(c.expects[1].by.as_ref().unwrap().0, By::Default);
    }

    #[test]
    fn syntax_errors_point_at_the_token_and_parsing_resumes() {
        let src = "policy p.fpol\ncase a src ::1 colour red -> three pass\ncase b src ::1 dst ::2 label 1 -> three pss\ncase c src ::1 dst ::2 label 1 -> three pass\n";
        let (f, diags) = parse(src);
        assert_eq!(diags.len(), 2, "{diags:?}");
        assert_eq!(at(src, diags[0].span), "colour");
        assert_eq!(at(src, diags[1].span), "pss");
        assert!(diags[1].message.starts_with("expected an action"));
        assert_eq!(f.cases.len(), 1);
        assert_eq!(f.cases[0].name.0, "c");
    }

    #[test]
    fn a_failing_case_is_reported_at_its_expectation() {
        let p = load_str("p", POLICY).unwrap();
        let src = "policy p\ncase ok src ::1 dst 2001:db8:fe::1 label 0x10000 -> three class gold\n\
                   case bad src ::1 dst 2001:db8:fe::1 label 0x20000 -> three class gold\n\
                   case rule src ::1 dst 2001:db8:fe::1 proto udp sport 1 dport 5004 -> five class gold by default\n";
        let (f, diags) = parse(src);
        assert!(diags.is_empty());
        let r = run(&f, &p, "p");
        assert_eq!(r.passed, 1);
        assert_eq!(r.findings.len(), 2);
        let d = &r.findings[0];
        assert_eq!(d.code, Code::TestFailed);
        assert_eq!(at(src, d.span), "three class gold");
        assert_eq!(d.label, "got drop by the default");
        assert_eq!(at(src, r.findings[1].span), "five class gold by default");
        assert_eq!(r.findings[1].label, "got class gold by rule rtp");
    }

    #[test]
    fn cases_that_cannot_run_say_what_is_missing_or_wrong() {
        let p = load_str("p", POLICY).unwrap();
        let src = "policy p\ncase a src ::1 -> three pass\n\
                   case b src ::1 dst ::2 label 0x100000 -> three pass\n\
                   case c src ::1 dst ::2 proto icmpv6 dport 3 -> five pass\n\
                   case d src ::1 dst ::2 proto tcp -> five pass\n\
                   case e src ::1 dst ::2 label 1 -> three drop by rule nosuch\n";
        let (f, diags) = parse(src);
        assert!(diags.is_empty(), "{diags:?}");
        let r = run(&f, &p, "p");
        let msgs: Vec<&str> = r.findings.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            msgs,
            [
                "case a: a `three` expectation needs dst, label",
                "label 0x100000 is wider than 20 bits",
                "protocol icmpv6 has no ports: packets of it have ports 0",
                "case d: a `five` expectation needs sport, dport",
                "the policy's `three` block has no rule nosuch",
            ]
        );
        assert!(r.findings.iter().all(|d| d.code == Code::TestInvalid));
    }
}
