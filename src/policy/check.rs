//! The checks: turn a syntax tree into a [`Policy`], reporting every error (widths, ranges,
//! fields that do not belong to a rule's tuple kind, names) and every warning (host bits, rules
//! that can never match, duplicates, a missing default) with the span it is about.

use crate::label::FlowLabel;
use crate::policy::diagnostic::{Code, Diagnostic};
use crate::policy::model::*;
use crate::policy::syntax::*;
use rustc_hash::{FxHashMap, FxHashSet};
use std::net::IpAddr;

/// Checks a parsed file. Returns the policy when there is no error, and all findings.
pub fn check(ast: &FileAst) -> (Option<Policy>, Vec<Diagnostic>) {
    let mut c = Checker::default();
    let policy = c.lower(ast);
    if let Some(p) = &policy {
        c.lint_unreachable(&p.three, ThreeMatch::covers, |m| (&m.src, &m.dst));
        c.lint_unreachable(&p.five, FiveMatch::covers, |m| (&m.src, &m.dst));
    }
    let has_errors = c
        .diags
        .iter()
        .any(|d| d.code.severity() == crate::policy::diagnostic::Severity::Error);
    (if has_errors { None } else { policy }, c.diags)
}

#[derive(Default)]
struct Checker {
    diags: Vec<Diagnostic>,
}

impl Checker {
    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn lower(&mut self, ast: &FileAst) -> Option<Policy> {
        let mut ok = true;
        // Classes.
        let mut classes: Vec<ClassDef> = Vec::new();
        let mut class_spans: FxHashMap<&str, Span> = FxHashMap::default();
        for decl in &ast.classes {
            if let Some(first) = class_spans.get(decl.name.name.as_str()) {
                self.push(
                    Diagnostic::new(
                        Code::DuplicateClass,
                        format!("class `{}` is declared twice", decl.name.name),
                        decl.name.span,
                    )
                    .with_label("declared again here")
                    .with_secondary(*first, "first declared here"),
                );
                continue;
            }
            class_spans.insert(&decl.name.name, decl.name.span);
            let mark = match decl.mark {
                Some(n) if n.value > u64::from(u32::MAX) => {
                    self.push(
                        Diagnostic::new(
                            Code::MarkTooLarge,
                            format!("mark {} does not fit in 32 bits", n.value),
                            n.span,
                        )
                        .with_label("a firewall mark is a 32-bit number"),
                    );
                    None
                }
                Some(n) => Some(n.value as u32),
                None => None,
            };
            classes.push(ClassDef {
                name: decl.name.name.clone(),
                mark,
            });
        }
        let declared = !ast.classes.is_empty();
        let mut used: FxHashSet<String> = FxHashSet::default();

        // Default.
        let mut default = Action::Pass;
        for (k, d) in ast.defaults.iter().enumerate() {
            if k > 0 {
                self.push(
                    Diagnostic::new(Code::DuplicateDefault, "more than one `default`", d.span)
                        .with_label("second default here")
                        .with_secondary(ast.defaults[0].span, "first default here")
                        .with_help("keep one `default` line"),
                );
                ok = false;
                continue;
            }
            match self.action(&d.action, declared, &class_spans, &mut classes, &mut used) {
                Some(a) => default = a,
                None => ok = false,
            }
        }
        if ast.defaults.is_empty() {
            self.push(
                Diagnostic::new(
                    Code::NoDefault,
                    "no `default` action: packets no rule matches pass",
                    Span::new(0, 0),
                )
                .with_label("the policy starts here")
                .with_help("state it: add `default pass` or `default drop`"),
            );
        }

        // Rules.
        let mut three = Vec::new();
        let mut five = Vec::new();
        let mut names: [FxHashMap<String, Span>; 2] = [FxHashMap::default(), FxHashMap::default()];
        for block in &ast.blocks {
            for r in &block.rules {
                let seen = &mut names[block.tuple as usize];
                if let Some(first) = seen.get(&r.name.name) {
                    self.push(
                        Diagnostic::new(
                            Code::DuplicateRuleName,
                            format!("rule name `{}` is used twice in `{}` rules", r.name.name, block.tuple.keyword()),
                            r.name.span,
                        )
                        .with_label("used again here")
                        .with_secondary(*first, "first used here")
                        .with_help("rule names are what reports and kernel counters are keyed on: make them unique"),
                    );
                    ok = false;
                } else {
                    seen.insert(r.name.name.clone(), r.name.span);
                }
                let action =
                    self.action(&r.action, declared, &class_spans, &mut classes, &mut used);
                let lowered = match block.tuple {
                    Tuple::Three => self.three_match(r).map(|m| (Some(m), None)),
                    Tuple::Five => self.five_match(r).map(|m| (None, Some(m))),
                };
                match (action, lowered) {
                    (Some(action), Some((t, f))) => {
                        let name = r.name.name.clone();
                        if let Some(matcher) = t {
                            three.push(Rule {
                                name,
                                matcher,
                                action,
                                span: r.span,
                            });
                        } else if let Some(matcher) = f {
                            five.push(Rule {
                                name,
                                matcher,
                                action,
                                span: r.span,
                            });
                        }
                    }
                    _ => ok = false,
                }
            }
        }
        if declared {
            for decl in &ast.classes {
                if !used.contains(&decl.name.name) {
                    self.push(
                        Diagnostic::new(
                            Code::UnusedClass,
                            format!("class `{}` is declared but no rule uses it", decl.name.name),
                            decl.name.span,
                        )
                        .with_label("declared here"),
                    );
                }
            }
        }
        ok.then_some(Policy {
            classes,
            three,
            five,
            default,
            default_explicit: !ast.defaults.is_empty(),
        })
    }

    fn action(
        &mut self,
        a: &ActionAst,
        declared: bool,
        class_spans: &FxHashMap<&str, Span>,
        classes: &mut Vec<ClassDef>,
        used: &mut FxHashSet<String>,
    ) -> Option<Action> {
        match a {
            ActionAst::Pass(_) => Some(Action::Pass),
            ActionAst::Drop(_) => Some(Action::Drop),
            ActionAst::Class(name, _) => {
                if declared && !class_spans.contains_key(name.name.as_str()) {
                    let mut known: Vec<&str> = class_spans.keys().copied().collect();
                    known.sort_unstable();
                    self.push(
                        Diagnostic::new(
                            Code::UnknownClass,
                            format!("unknown class `{}`", name.name),
                            name.span,
                        )
                        .with_label("not declared with `class`")
                        .with_help(format!("declared classes: {}", known.join(", "))),
                    );
                    return None;
                }
                if !declared && !classes.iter().any(|c| c.name == name.name) {
                    classes.push(ClassDef {
                        name: name.name.clone(),
                        mark: None,
                    });
                }
                used.insert(name.name.clone());
                Some(Action::Class(name.name.clone()))
            }
        }
    }

    /// Finds each field once, reporting fields given twice or not allowed for this tuple kind.
    fn fields<'r>(&mut self, r: &'r RuleAst, tuple: Tuple) -> Option<[Option<&'r FieldAst>; 6]> {
        let mut slots: [Option<&FieldAst>; 6] = [None; 6];
        let mut ok = true;
        for f in &r.fields {
            let (slot, allowed) = match (&f.field, tuple) {
                (Field::Src(_), _) => (0, true),
                (Field::Dst(_), _) => (1, true),
                (Field::Label(_), t) => (2, t == Tuple::Three),
                (Field::Proto(_), t) => (3, t == Tuple::Five),
                (Field::Sport(_), t) => (4, t == Tuple::Five),
                (Field::Dport(_), t) => (5, t == Tuple::Five),
            };
            if !allowed {
                let help = if tuple == Tuple::Three {
                    "a `three` rule sees only the fixed IPv6 header (src, dst, label): put transport matches in a `five` block"
                } else {
                    "the flow label is not part of the 5-tuple: put label matches in a `three` block"
                };
                self.push(
                    Diagnostic::new(
                        Code::FieldNotAllowed,
                        format!(
                            "`{}` is not a field of `{}` rules",
                            f.field.keyword(),
                            tuple.keyword()
                        ),
                        f.keyword_span,
                    )
                    .with_label("not allowed here")
                    .with_help(help),
                );
                ok = false;
            } else if let Some(prev) = slots[slot] {
                self.push(
                    Diagnostic::new(
                        Code::DuplicateField,
                        format!(
                            "`{}` is given twice in rule `{}`",
                            f.field.keyword(),
                            r.name.name
                        ),
                        f.keyword_span,
                    )
                    .with_label("given again here")
                    .with_secondary(prev.keyword_span, "first given here")
                    .with_help("use a `{ ... }` set or a range to match several values"),
                );
                ok = false;
            } else {
                slots[slot] = Some(f);
            }
        }
        ok.then_some(slots)
    }

    fn addrs(&mut self, f: Option<&FieldAst>) -> Option<AddrMatch> {
        let spec = match f.map(|f| &f.field) {
            None => return Some(AddrMatch::any()),
            Some(Field::Src(s) | Field::Dst(s)) => s,
            Some(_) => unreachable!("slot holds an address field"),
        };
        let atoms = match spec {
            AddrSpec::Any(_) => return Some(AddrMatch::any()),
            AddrSpec::Set(atoms, _) => atoms,
        };
        let mut ok = true;
        let mut out = Vec::with_capacity(atoms.len());
        for a in atoms {
            let v6 = match a.addr {
                IpAddr::V6(v6) => v6,
                IpAddr::V4(v4) => {
                    let len = a
                        .len
                        .map(|n| format!("/{}", n.value.saturating_add(96)))
                        .unwrap_or_default();
                    self.push(
                        Diagnostic::new(
                            Code::Ipv4Address,
                            format!("`{v4}` is an IPv4 address; flowpol matches IPv6 packets"),
                            a.addr_span,
                        )
                        .with_label("IPv4 address")
                        .with_help(format!(
                            "write the IPv4-mapped IPv6 address: `::ffff:{v4}{len}`"
                        )),
                    );
                    ok = false;
                    continue;
                }
            };
            let len = match a.len {
                None => 128,
                Some(n) if n.value > 128 => {
                    self.push(
                        Diagnostic::new(
                            Code::PrefixTooLong,
                            format!("prefix length {} is over 128", n.value),
                            n.span,
                        )
                        .with_label("an IPv6 prefix is at most /128"),
                    );
                    ok = false;
                    continue;
                }
                Some(n) => n.value as u8,
            };
            let p = Prefix::new(u128::from(v6), len);
            if p.addr != u128::from(v6) {
                self.push(
                    Diagnostic::new(
                        Code::HostBits,
                        format!("`{v6}/{len}` has host bits set"),
                        a.span,
                    )
                    .with_label("bits past the prefix length are ignored")
                    .with_help(format!("write `{p}`, or use a longer prefix")),
                );
            }
            out.push(p);
        }
        ok.then_some(AddrMatch(out))
    }

    fn label_num(&mut self, n: Num, what: &str) -> Option<u32> {
        if n.value > u64::from(FlowLabel::MASK) {
            let code = if what == "mask" {
                Code::MaskTooWide
            } else {
                Code::LabelTooWide
            };
            self.push(
                Diagnostic::new(
                    code,
                    format!("{what} {} is wider than 20 bits", show_num(n.value)),
                    n.span,
                )
                .with_label("the flow label has 20 bits (at most 0xfffff)"),
            );
            return None;
        }
        Some(n.value as u32)
    }

    fn label(&mut self, f: Option<&FieldAst>) -> Option<LabelMatch> {
        let spec = match f.map(|f| &f.field) {
            None => return Some(LabelMatch::Any),
            Some(Field::Label(s)) => s,
            Some(_) => unreachable!("slot holds a label field"),
        };
        match *spec {
            LabelSpec::Any(_) => Some(LabelMatch::Any),
            LabelSpec::Exact(n) => self
                .label_num(n, "flow label")
                .map(|v| LabelMatch::Exact(FlowLabel::from_low_bits(v))),
            LabelSpec::Masked(v, m) => {
                let value = self.label_num(v, "flow label");
                let mask = self.label_num(m, "mask");
                let (value, mask) = (value?, mask?);
                if value & !mask != 0 {
                    self.push(
                        Diagnostic::new(
                            Code::ValueOutsideMask,
                            format!("value {value:#x} has bits outside mask {mask:#x}"),
                            v.span.join(m.span),
                        )
                        .with_label(format!("bits {:#x} can never match", value & !mask))
                        .with_help(format!("write `{:#x}/{mask:#x}`", value & mask)),
                    );
                    return None;
                }
                Some(LabelMatch::Masked { value, mask })
            }
            LabelSpec::Range(a, b) => {
                let lo = self.label_num(a, "flow label");
                let hi = self.label_num(b, "flow label");
                let (lo, hi) = (lo?, hi?);
                if lo > hi {
                    self.push(
                        Diagnostic::new(
                            Code::BadRange,
                            format!("range {lo:#x}-{hi:#x} is reversed, so it is empty"),
                            a.span.join(b.span),
                        )
                        .with_label("the lower end is above the upper end")
                        .with_help(format!("write `{hi:#x}-{lo:#x}`")),
                    );
                    return None;
                }
                Some(LabelMatch::Range {
                    lo: FlowLabel::from_low_bits(lo),
                    hi: FlowLabel::from_low_bits(hi),
                })
            }
        }
    }

    fn port_num(&mut self, n: Num) -> Option<u16> {
        if n.value > u64::from(u16::MAX) {
            self.push(
                Diagnostic::new(
                    Code::PortTooLarge,
                    format!("port {} is over 65535", n.value),
                    n.span,
                )
                .with_label("ports are 16 bits"),
            );
            return None;
        }
        Some(n.value as u16)
    }

    fn ports(&mut self, f: Option<&FieldAst>) -> Option<PortMatch> {
        let spec = match f.map(|f| &f.field) {
            None => return Some(PortMatch::ANY),
            Some(Field::Sport(s) | Field::Dport(s)) => s,
            Some(_) => unreachable!("slot holds a port field"),
        };
        match *spec {
            PortSpec::Any(_) => Some(PortMatch::ANY),
            PortSpec::Exact(n) => self.port_num(n).map(|p| PortMatch { lo: p, hi: p }),
            PortSpec::Range(a, b) => {
                let lo = self.port_num(a);
                let hi = self.port_num(b);
                let (lo, hi) = (lo?, hi?);
                if lo > hi {
                    self.push(
                        Diagnostic::new(
                            Code::BadRange,
                            format!("port range {lo}-{hi} is reversed, so it is empty"),
                            a.span.join(b.span),
                        )
                        .with_label("the lower end is above the upper end")
                        .with_help(format!("write `{hi}-{lo}`")),
                    );
                    return None;
                }
                Some(PortMatch { lo, hi })
            }
        }
    }

    fn three_match(&mut self, r: &RuleAst) -> Option<ThreeMatch> {
        let [src, dst, label, ..] = self.fields(r, Tuple::Three)?;
        let src = self.addrs(src);
        let dst = self.addrs(dst);
        let label = self.label(label);
        Some(ThreeMatch {
            src: src?,
            dst: dst?,
            label: label?,
        })
    }

    fn five_match(&mut self, r: &RuleAst) -> Option<FiveMatch> {
        let [src, dst, _, proto_f, sport_f, dport_f] = self.fields(r, Tuple::Five)?;
        let src = self.addrs(src);
        let dst = self.addrs(dst);
        let proto = match proto_f.map(|f| &f.field) {
            None | Some(Field::Proto(ProtoSpec::Any(_))) => Some(None),
            Some(Field::Proto(ProtoSpec::Named(p, _))) => Some(Some(*p)),
            Some(Field::Proto(ProtoSpec::Number(n))) if n.value > 255 => {
                self.push(
                    Diagnostic::new(
                        Code::ProtoTooLarge,
                        format!("protocol number {} is over 255", n.value),
                        n.span,
                    )
                    .with_label("the next-header field has 8 bits"),
                );
                None
            }
            Some(Field::Proto(ProtoSpec::Number(n))) => Some(Some(n.value as u8)),
            Some(_) => unreachable!("slot holds a proto field"),
        };
        let sport = self.ports(sport_f);
        let dport = self.ports(dport_f);
        let (proto, sport, dport) = (proto?, sport?, dport?);
        let has_ports = !(sport.is_any() && dport.is_any());
        if has_ports && !proto.is_some_and(proto_has_ports) {
            let port_field = [sport_f, dport_f]
                .into_iter()
                .flatten()
                .find(|f| match &f.field {
                    Field::Sport(s) | Field::Dport(s) => !matches!(s, PortSpec::Any(_)),
                    _ => false,
                });
            let span = port_field.map_or(r.name.span, |f| f.span);
            let (msg, help) = match proto {
                None => (
                    "ports need a protocol that has them".to_string(),
                    "add `proto tcp`, `proto udp` or `proto sctp`".to_string(),
                ),
                Some(p) => (
                    format!("protocol {} has no ports", proto_name(p).map_or(p.to_string(), str::to_string)),
                    "ports exist for tcp, udp, sctp, dccp and udplite: change the protocol or drop the port match".to_string(),
                ),
            };
            let mut d = Diagnostic::new(Code::PortsWithoutPorts, msg, span)
                .with_label("port match here")
                .with_help(help);
            if let Some(pf) = proto_f {
                d = d.with_secondary(pf.span, "protocol given here");
            }
            self.push(d);
            return None;
        }
        Some(FiveMatch {
            src: src?,
            dst: dst?,
            proto,
            sport,
            dport,
        })
    }

    /// Warns about each rule an earlier rule covers entirely (it can never match), naming that
    /// rule. Candidates come from an index on (src prefix, dst prefix) ancestors, so the check
    /// stays near-linear on large policies; each candidate is then tested exactly.
    fn lint_unreachable<M: PartialEq>(
        &mut self,
        rules: &[Rule<M>],
        covers: impl Fn(&M, &M) -> bool,
        addrs: impl Fn(&M) -> (&AddrMatch, &AddrMatch),
    ) {
        let mut index: FxHashMap<(Prefix, Prefix), Vec<usize>> = FxHashMap::default();
        let mut lens: FxHashSet<(u8, u8)> = FxHashSet::default();
        let mut lens_sorted: Vec<(u8, u8)> = Vec::new();
        for (j, r) in rules.iter().enumerate() {
            let m = &r.matcher;
            let (src, dst) = addrs(m);
            let (srcs, dsts) = (probe_of(src), probe_of(dst));
            // Any rule covering this one covers its first (src, dst) prefix pair, so it is
            // filed under an ancestor pair of it.
            let (s0, d0) = (srcs[0], dsts[0]);
            let mut found: Option<usize> = None;
            for &(ls, ld) in &lens_sorted {
                if ls > s0.len || ld > d0.len {
                    continue;
                }
                let key = (Prefix::new(s0.addr, ls), Prefix::new(d0.addr, ld));
                if let Some(cands) = index.get(&key) {
                    for &i in cands {
                        if found.is_some_and(|f| f < i) {
                            break;
                        }
                        if covers(&rules[i].matcher, m) {
                            found = Some(i);
                            break;
                        }
                    }
                }
            }
            if let Some(i) = found {
                let a = &rules[i];
                let d = if a.matcher == *m {
                    Diagnostic::new(
                        Code::DuplicateRule,
                        format!("rule `{}` duplicates rule `{}`", r.name, a.name),
                        r.span,
                    )
                    .with_label("same match as an earlier rule")
                    .with_secondary(a.span, "the earlier rule")
                    .with_help("remove one of them")
                } else {
                    let help = if a.action == r.action {
                        format!("`{}` already does the same: remove `{}`", a.name, r.name)
                    } else {
                        format!(
                            "move `{}` above `{}`, or narrow `{}`",
                            r.name, a.name, a.name
                        )
                    };
                    Diagnostic::new(
                        Code::Shadowed,
                        format!(
                            "rule `{}` can never match: rule `{}` matches every packet it matches",
                            r.name, a.name
                        ),
                        r.span,
                    )
                    .with_label("never matches")
                    .with_secondary(a.span, format!("`{}` comes first and covers it", a.name))
                    .with_help(help)
                };
                self.push(d);
            }
            for s in &srcs {
                for d in &dsts {
                    index.entry((*s, *d)).or_default().push(j);
                    if lens.insert((s.len, d.len)) {
                        lens_sorted.push((s.len, d.len));
                    }
                }
            }
        }
    }
}

fn probe_of(a: &AddrMatch) -> Vec<Prefix> {
    if a.is_any() {
        vec![Prefix::new(0, 0)]
    } else {
        a.0.clone()
    }
}

fn show_num(v: u64) -> String {
    if v == u64::MAX {
        "(over 64 bits)".into()
    } else {
        format!("{v:#x}")
    }
}
