//! The checks: turn a syntax tree into a [`Policy`], reporting every error (widths, ranges,
//! fields that do not belong to a rule's tuple kind, names) and every warning (host bits, rules
//! that can never match because an earlier rule or several together cover them, duplicates, a
//! missing default) with the span it is about.

use crate::label::FlowLabel;
use crate::packet::IpNumber;
use crate::policy::cover::{self, Space};
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

/// The `three` and `five` rules of a file, in order.
type LoweredRules = (Vec<Rule<ThreeMatch>>, Vec<Rule<FiveMatch>>);

#[derive(Default)]
struct Checker {
    diags: Vec<Diagnostic>,
}

impl Checker {
    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// Lowers the file in its phases (classes, default, rules, unused classes), reporting
    /// every finding; the policy when none of them is an error that loses a part of it.
    fn lower(&mut self, ast: &FileAst) -> Option<Policy> {
        let (mut classes, class_spans) = self.lower_classes(ast);
        let declared = !ast.classes.is_empty();
        let mut used: FxHashSet<String> = FxHashSet::default();
        let default = self.lower_default(ast, declared, &class_spans, &mut classes, &mut used);
        let rules = self.lower_rules(ast, declared, &class_spans, &mut classes, &mut used);
        if declared {
            self.lint_unused_classes(ast, &used);
        }
        let (default, (three, five)) = (default?, rules?);
        Some(Policy {
            classes,
            three,
            five,
            default,
            default_explicit: !ast.defaults.is_empty(),
        })
    }

    /// The declared classes (a duplicate reported and skipped, a mark over 32 bits reported and
    /// dropped) and where each name is declared.
    fn lower_classes<'a>(&mut self, ast: &'a FileAst) -> (Vec<ClassDef>, FxHashMap<&'a str, Span>) {
        let mut classes: Vec<ClassDef> = Vec::new();
        let mut class_spans: FxHashMap<&str, Span> = FxHashMap::default();
        let mut mark_spans: FxHashMap<u64, (&str, Span)> = FxHashMap::default();
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
                Some(n) => {
                    if let Some((other, first)) = mark_spans.get(&n.value) {
                        self.push(
                            Diagnostic::new(
                                Code::SharedMark,
                                format!(
                                    "classes `{other}` and `{}` have one mark, {}",
                                    decl.name.name, n.value
                                ),
                                n.span,
                            )
                            .with_label("this mark is already taken")
                            .with_secondary(*first, "first used here")
                            .with_help("a packet's mark is all the kernel keeps of its class (`compile --target nft`): give each class its own"),
                        );
                    } else {
                        mark_spans.insert(n.value, (&decl.name.name, n.span));
                    }
                    Some(n.value as u32)
                }
                None => None,
            };
            classes.push(ClassDef {
                name: decl.name.name.clone(),
                mark,
            });
        }
        (classes, class_spans)
    }

    /// The default action: reported when given twice or missing (then `pass`); `None` when it
    /// is wrong.
    fn lower_default(
        &mut self,
        ast: &FileAst,
        declared: bool,
        class_spans: &FxHashMap<&str, Span>,
        classes: &mut Vec<ClassDef>,
        used: &mut FxHashSet<String>,
    ) -> Option<Action> {
        let mut ok = true;
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
            match self.action(&d.action, declared, class_spans, classes, used) {
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
        ok.then_some(default)
    }

    /// The rules of the `three` and `five` blocks, in order; a rule name used twice in one
    /// kind is an error. `None` when any rule is wrong.
    fn lower_rules(
        &mut self,
        ast: &FileAst,
        declared: bool,
        class_spans: &FxHashMap<&str, Span>,
        classes: &mut Vec<ClassDef>,
        used: &mut FxHashSet<String>,
    ) -> Option<LoweredRules> {
        let mut ok = true;
        let mut three = Vec::new();
        let mut five = Vec::new();
        let mut names: [FxHashMap<String, Span>; 2] = [FxHashMap::default(), FxHashMap::default()];
        for block in &ast.blocks {
            for r in &block.rules {
                if r.name.name == "default" {
                    self.push(
                        Diagnostic::new(
                            Code::ReservedRuleName,
                            "a rule may not be named `default`",
                            r.name.span,
                        )
                        .with_label("reserved for the default action")
                        .with_help("reports, counters and per-packet output name the default action `default`: rename the rule"),
                    );
                    ok = false;
                }
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
                let action = self.action(&r.action, declared, class_spans, classes, used);
                let lowered = match block.tuple {
                    TupleKind::Three => self.three_match(r).map(|m| (Some(m), None)),
                    TupleKind::Five => self.five_match(r).map(|m| (None, Some(m))),
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
        ok.then_some((three, five))
    }

    /// Warns about each declared class no rule or default uses.
    fn lint_unused_classes(&mut self, ast: &FileAst, used: &FxHashSet<String>) {
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
    fn fields<'r>(
        &mut self,
        r: &'r RuleAst,
        tuple: TupleKind,
    ) -> Option<[Option<&'r FieldAst>; 6]> {
        let mut slots: [Option<&FieldAst>; 6] = [None; 6];
        let mut ok = true;
        for f in &r.fields {
            let (slot, allowed) = match (&f.field, tuple) {
                (Field::Src(_), _) => (0, true),
                (Field::Dst(_), _) => (1, true),
                (Field::Label(_), t) => (2, t == TupleKind::Three),
                (Field::Proto(_), t) => (3, t == TupleKind::Five),
                (Field::Sport(_), t) => (4, t == TupleKind::Five),
                (Field::Dport(_), t) => (5, t == TupleKind::Five),
            };
            if !allowed {
                let help = if tuple == TupleKind::Three {
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
        let [src, dst, label, ..] = self.fields(r, TupleKind::Three)?;
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
        let [src, dst, _, proto_f, sport_f, dport_f] = self.fields(r, TupleKind::Five)?;
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
        if has_ports && !proto.is_some_and(|p| IpNumber(p).has_ports()) {
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
                    format!("protocol {} has no ports", IpNumber(p)),
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

    /// Warns about each rule that can never match: an earlier rule covers it entirely (naming
    /// that rule), or, failing that, several earlier rules do together (naming a few of them,
    /// see [`cover`]). Earlier rules are found through an index on their (src prefix, dst
    /// prefix) pairs, by a key they match, so the check stays near-linear on large policies;
    /// each candidate is then tested exactly.
    fn lint_unreachable<M: PartialEq + Space>(
        &mut self,
        rules: &[Rule<M>],
        covers: impl Fn(&M, &M) -> bool,
        addrs: impl Fn(&M) -> (&AddrMatch, &AddrMatch),
    ) {
        let mut index = PairIndex::default();
        let mut hits = Vec::new();
        let budget = cover::Budget::DEFAULT;
        for (j, r) in rules.iter().enumerate() {
            let m = &r.matcher;
            let (src, dst) = addrs(m);
            let (srcs, dsts) = (probe_of(src), probe_of(dst));
            // Every earlier rule that covers this one, alone or with others, matches its least
            // key. One that covers it alone is filed under prefixes that hold the least prefixes
            // of its address sets: those are scanned whatever it costs, the rest on the budget.
            let least = m.least();
            let point = &least[..m.dims()];
            let lens = |ps: &[Prefix]| ps.iter().min().map_or(0, |p| p.len);
            let mut left = budget.scan;
            hits.clear();
            let lookup = index.containing(
                rules,
                point,
                &mut hits,
                &mut left,
                Some((lens(&srcs), lens(&dsts))),
            );
            let found = hits
                .iter()
                .copied()
                .filter(|&i| covers(&rules[i].matcher, m))
                .min();
            if let Some(i) = found {
                self.push(covered_by_one(r, &rules[i]));
            } else if let cover::Lookup::Complete = lookup
                && let cover::Cover::By(by) = cover::union_cover(
                    m,
                    |i| &rules[i].matcher,
                    &mut hits,
                    left,
                    |point, out, left| index.containing(rules, point, out, left, None),
                    &budget,
                )
            {
                // One rule whose address set covers this rule only as a whole is found here.
                self.push(match *by {
                    [i] => covered_by_one(r, &rules[i]),
                    _ => covered_by_several(r, rules, &by),
                });
            }
            for s in &srcs {
                for d in &dsts {
                    index.insert(*s, *d, j);
                }
            }
        }
    }
}

/// Rule indices filed under (src prefix, dst prefix) pairs, and for each field the prefixes
/// filed and their lengths.
#[derive(Default)]
struct PairIndex {
    map: FxHashMap<(Prefix, Prefix), Vec<usize>>,
    prefixes: [FxHashSet<Prefix>; 2],
    lens: [Vec<u8>; 2],
}

impl PairIndex {
    fn insert(&mut self, s: Prefix, d: Prefix, rule: usize) {
        self.map.entry((s, d)).or_default().push(rule);
        for (k, p) in [s, d].into_iter().enumerate() {
            if self.prefixes[k].insert(p) && !self.lens[k].contains(&p.len) {
                self.lens[k].push(p.len);
            }
        }
    }

    /// Calls `f` with the rules filed under each pair of prefixes that hold `src` and `dst`,
    /// and the pair's prefix lengths, while it returns true.
    fn each_bucket(&self, src: u128, dst: u128, mut f: impl FnMut((u8, u8), &[usize]) -> bool) {
        let held = |k: usize, addr: u128| {
            self.lens[k]
                .iter()
                .map(move |&l| Prefix::new(addr, l))
                .filter(move |p| self.prefixes[k].contains(p))
        };
        // At most one filed prefix per length.
        let mut dsts = [Prefix::new(0, 0); 129];
        let mut n = 0;
        for (slot, p) in dsts.iter_mut().zip(held(1, dst)) {
            *slot = p;
            n += 1;
        }
        for s in held(0, src) {
            for d in &dsts[..n] {
                if let Some(v) = self.map.get(&(s, *d))
                    && !f((s.len, d.len), v)
                {
                    return;
                }
            }
        }
    }

    /// Appends the rules that match the key at `point` (addresses first). The index entries
    /// scanned are taken from `left`, except under prefixes at most `free` long; without
    /// `free`, the scan stops when `left` runs out, with it, it skips what it cannot take.
    fn containing<M: Space>(
        &self,
        rules: &[Rule<M>],
        point: &[u128],
        out: &mut Vec<usize>,
        left: &mut usize,
        free: Option<(u8, u8)>,
    ) -> cover::Lookup {
        let [src, dst, ..] = *point else {
            return cover::Lookup::OverBudget;
        };
        let mut complete = true;
        self.each_bucket(src, dst, |(ls, ld), cands| {
            if !free.is_some_and(|(s, d)| ls <= s && ld <= d) {
                match left.checked_sub(cands.len()) {
                    Some(l) => *left = l,
                    None => {
                        complete = false;
                        // Without free buckets to come, stop here.
                        return free.is_some();
                    }
                }
            }
            out.extend(cands.iter().filter(|&&i| rules[i].matcher.contains(point)));
            true
        });
        if complete {
            cover::Lookup::Complete
        } else {
            cover::Lookup::OverBudget
        }
    }
}

/// W0003 or W0002: `r` matches nothing that `a`, an earlier rule, does not match.
fn covered_by_one<M: PartialEq>(r: &Rule<M>, a: &Rule<M>) -> Diagnostic {
    if a.matcher == r.matcher {
        return Diagnostic::new(
            Code::DuplicateRule,
            format!("rule `{}` duplicates rule `{}`", r.name, a.name),
            r.span,
        )
        .with_label("same match as an earlier rule")
        .with_secondary(a.span, "the earlier rule")
        .with_help("remove one of them");
    }
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
}

/// W0006: the earlier rules `by` (indices into `rules`) together match everything `r` matches.
fn covered_by_several<M>(r: &Rule<M>, rules: &[Rule<M>], by: &[usize]) -> Diagnostic {
    /// Rules named in the message and pointed at.
    const NAMED: usize = 4;
    let named: Vec<&Rule<M>> = by.iter().take(NAMED).map(|&i| &rules[i]).collect();
    let mut list: Vec<String> = named.iter().map(|a| format!("`{}`", a.name)).collect();
    if by.len() > NAMED {
        list.push(format!("{} more", by.len() - NAMED));
    }
    let list = match list.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => list.concat(),
    };
    let help = match named.first() {
        Some(_) if by.iter().all(|&i| rules[i].action == r.action) => {
            format!("{list} already do the same: remove `{}`", r.name)
        }
        Some(first) => format!(
            "move `{}` above `{}`, or narrow the rules that cover it",
            r.name, first.name
        ),
        None => String::new(),
    };
    let mut d = Diagnostic::new(
        Code::UnionShadowed,
        format!(
            "rule `{}` can never match: rules {list} together match every packet it matches",
            r.name
        ),
        r.span,
    )
    .with_label("never matches")
    .with_help(help);
    for a in named {
        d = d.with_secondary(
            a.span,
            format!("`{}` comes first and covers part of it", a.name),
        );
    }
    d
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

#[cfg(test)]
mod tests {
    use crate::policy::{Diagnostic, check_source};

    /// The findings about rules that can never match, as (code, rule name), in file order.
    fn unreachable(text: &str) -> Vec<(&'static str, String)> {
        let (policy, diags) = check_source(&format!("default pass\n{text}"));
        assert!(policy.is_some(), "{diags:?}");
        diags
            .iter()
            .filter(|d| ["W0002", "W0003", "W0006"].contains(&d.code.as_str()))
            .map(|d| (d.code.as_str(), rule_name(text, d)))
            .collect()
    }

    fn rule_name(text: &str, d: &Diagnostic) -> String {
        let at = d.span.start - "default pass\n".len();
        text[at..].split_whitespace().nth(1).unwrap().to_string()
    }

    fn union(name: &str) -> Vec<(&'static str, String)> {
        vec![("W0006", name.to_string())]
    }

    const LO: &str = "rule lo dst 2001:db8::/33 -> pass";
    const HI: &str = "rule hi dst 2001:db8:8000::/33 -> pass";
    const ALL: &str = "rule all dst 2001:db8::/32 -> drop";

    /// The one W0006 finding about `text`.
    fn union_finding(text: &str) -> Diagnostic {
        let (_, diags) = check_source(text);
        let mut found = diags.into_iter().filter(|d| d.code.as_str() == "W0006");
        let d = found.next().expect("a W0006 finding");
        assert_eq!(found.next(), None);
        d
    }

    #[test]
    fn two_halves_of_a_prefix() {
        let t = format!("three {{\n{LO}\n{HI}\n{ALL}\n}}");
        assert_eq!(unreachable(&t), union("all"));
        let d = union_finding(&t);
        assert_eq!(
            d.message,
            "rule `all` can never match: rules `lo` and `hi` together match every packet it matches"
        );
        let pointed: Vec<&str> = d
            .secondary
            .iter()
            .map(|(s, _)| &t[s.start..s.end])
            .collect();
        assert_eq!(pointed, [LO, HI]);
        assert_eq!(
            d.help.as_deref(),
            Some("move `all` above `lo`, or narrow the rules that cover it")
        );
        // A rule one of them covers is W0002, as before.
        let t = format!("three {{\n{LO}\n{HI}\n{ALL}\nrule in dst 2001:db8:1::/48 -> pass\n}}");
        assert_eq!(
            unreachable(&t),
            [("W0006", "all".into()), ("W0002", "in".into())]
        );
        // Cover goes by order: the halves after the rule do not hide it (it hides them).
        let t = format!("three {{\n{ALL}\n{LO}\n{HI}\n}}");
        assert_eq!(
            unreachable(&t),
            [("W0002", "lo".into()), ("W0002", "hi".into())]
        );
        // Rules the others make redundant are not named.
        let t = format!("three {{\nrule part dst 2001:db8::/34 -> pass\n{LO}\n{HI}\n{ALL}\n}}");
        let d = union_finding(&t);
        assert!(
            d.message.contains("rules `lo` and `hi` together"),
            "{}",
            d.message
        );
    }

    #[test]
    fn addresses_one_missing_is_not_reported() {
        // Four hosts cover the /126; three leave one address, at either end or inside.
        let hosts = |h: &[u8]| {
            h.iter()
                .map(|i| format!("rule h{i} src 2001:db8::{i} -> pass\n"))
                .collect::<String>()
        };
        for (have, reported) in [
            (&[0, 1, 2, 3][..], true),
            (&[0, 1, 2], false),
            (&[1, 2, 3], false),
            (&[0, 1, 3], false),
        ] {
            let t = format!(
                "three {{\n{}rule net src 2001:db8::/126 -> drop\n}}",
                hosts(have)
            );
            let want = if reported { union("net") } else { vec![] };
            assert_eq!(unreachable(&t), want, "{t}");
        }
        // At the very top of the address space.
        let t = "three {
            rule a src ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe -> pass
            rule b src ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff -> pass
            rule c src ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127 -> pass
        }";
        assert_eq!(unreachable(t), union("c"));
    }

    #[test]
    fn prefix_sets() {
        // One rule covers it, but only by its prefixes together: that is W0002.
        let t = "three {
            rule hosts src { fd03::, fd03::1, fd03::2, fd03::3 } -> pass
            rule net src fd03::/126 -> drop
            rule more src fd03::/125 -> drop
        }";
        assert_eq!(unreachable(t), [("W0002", "net".into())]);
        let t = "three {
            rule a src { fd00::/16, fd02::/16 } -> pass
            rule b src fd01::/16 -> pass
            rule c src { fd00::/15, fd02::/16 } label 7 -> drop
            rule d src { fd00::/15, fd03::/16 } -> drop
        }";
        assert_eq!(unreachable(t), union("c"));
        // Sets on both sides, covered crosswise (and `c`'s sets, taken whole, cover `d`).
        let t = "three {
            rule a src fd00::/16 dst { 2001:db8::/32, 2001:db9::/32 } -> pass
            rule b src fd01::/16 dst 2001:db8::/31 -> pass
            rule c src { fd00::/16, fd01::/16 } dst { 2001:db8::/32, 2001:db9::/32 } -> drop
            rule d src fd00::/15 dst 2001:db8::/31 -> drop
            rule e src fd00::/15 dst 2001:db8::/30 -> drop
        }";
        assert_eq!(
            unreachable(t),
            [("W0006", "c".into()), ("W0002", "d".into())]
        );
    }

    #[test]
    fn label_ranges() {
        let t = "three {
            rule lo src fd00::/16 label 0-0x7ffff -> pass
            rule hi src fd00::/16 label 0x80000-0xfffff -> drop
            rule some src fd00::/16 label 0x7fff0-0x8000f -> drop
            rule any src fd00::/16 -> drop
        }";
        assert_eq!(
            unreachable(t),
            [("W0006", "some".into()), ("W0006", "any".into())]
        );
        for gap in ["0-0x7fffe", "1-0x7ffff"] {
            let t = format!(
                "three {{
                rule lo src fd00::/16 label {gap} -> pass
                rule hi src fd00::/16 label 0x80000-0xfffff -> drop
                rule any src fd00::/16 -> drop
            }}"
            );
            assert_eq!(unreachable(&t), [], "{t}");
        }
    }

    #[test]
    fn label_masks() {
        // Even and odd labels; a value/mask rule covered by a range and a value/mask.
        let t = "three {
            rule even src fd01::/16 label 0/0x1 -> pass
            rule odd src fd01::/16 label 1/0x1 -> pass
            rule mid src fd01::/16 label 0x10-0x20 -> pass
            rule m1 dst fd00::/16 label 0x10-0x17 -> pass
            rule m2 dst fd00::/16 label 0x18/0xffff8 -> pass
            rule m3 dst fd00::/16 label 0x10/0xffff0 -> pass
        }";
        assert_eq!(
            unreachable(t),
            [("W0006", "mid".into()), ("W0006", "m3".into())]
        );
        // Three of four residues mod 4 leave one label in every four; one rule more fills one.
        let t = "three {
            rule r0 label 0/0x3 -> pass
            rule r1 label 1/0x3 -> pass
            rule r2 label 2/0x3 -> pass
            rule one label 0x13 -> pass
            rule two label 0x12-0x13 -> pass
            rule mid label 0x10-0x20 -> pass
        }";
        assert_eq!(unreachable(t), union("two"));
        // A value/mask rule under test, covered by ranges.
        let t = "three {
            rule lo label 0x100-0x17f -> pass
            rule hi label 0x180-0x1ff -> pass
            rule odd label 0x101/0xfff01 -> pass
        }";
        assert_eq!(unreachable(t), union("odd"));
        // All odd labels are 2^19 runs, too many to list: a cover by label is not proved...
        let t = "three {
            rule a label 1/0x3 -> pass
            rule b label 3/0x3 -> pass
            rule odd label 1/0x1 -> pass
        }";
        assert_eq!(unreachable(t), []);
        // ... but one by address, by rules that match every label, is.
        let t = "three {
            rule a src fd00::/17 -> pass
            rule b src fd00:8000::/17 label 0/0x1 -> pass
            rule c src fd00:8000::/17 label 0x1/0x1 -> pass
            rule odd src fd00::/16 label 1/0x1 -> pass
        }";
        assert_eq!(unreachable(t), union("odd"));
    }

    #[test]
    fn ports_and_protocols() {
        let t = "five {
            rule low  proto tcp dport 0-1023 -> pass
            rule high proto tcp dport 1024-65535 -> pass
            rule web  dst 2001:db8::/32 proto tcp -> drop
            rule s1   proto udp sport 53 dport 0-99 -> pass
            rule s2   proto udp sport 53 dport 100-65535 -> pass
            rule s3   src fd00::/16 proto udp sport 53 -> drop
            rule udp  proto udp -> drop
        }";
        assert_eq!(
            unreachable(t),
            [("W0006", "web".into()), ("W0006", "s3".into())]
        );
        for (a, b) in [
            ("0-1022", "1024-65535"),
            ("0-1023", "1025-65535"),
            ("0-1023", "1024-65534"),
        ] {
            let t = format!(
                "five {{
                rule low  proto tcp dport {a} -> pass
                rule high proto tcp dport {b} -> pass
                rule web  dst 2001:db8::/32 proto tcp -> drop
            }}"
            );
            assert_eq!(unreachable(&t), [], "{t}");
        }
        // The protocol is a field of its own: tcp and udp rules do not cover `any`.
        let t = "five {
            rule t proto tcp -> pass
            rule u proto udp -> pass
            rule a src fd00::/16 -> drop
        }";
        assert_eq!(unreachable(t), []);
    }

    #[test]
    fn mixed_fields() {
        // One half by address, the other half split by label.
        let t = "three {
            rule a src fd00::/17 -> pass
            rule b src fd00:8000::/17 label 0-0x7ffff -> drop
            rule c src fd00:8000::/17 dst 2001:db8::/32 label 0x80000-0xfffff -> pass
            rule d src fd00:8000::/17 dst 2001:db8::/32 label 0x80000-0xfffff -> pass
            rule e src fd00::/16 dst 2001:db8::/32 -> drop
            rule f src fd00::/16 dst 2001:db8::/31 -> drop
        }";
        assert_eq!(
            unreachable(t),
            [("W0003", "d".into()), ("W0006", "e".into())]
        );
        let t = "five {
            rule a src fd00::/17 proto tcp -> pass
            rule b src fd00:8000::/17 proto tcp sport 0-1023 -> pass
            rule c src fd00:8000::/17 dst 2001:db8::/33 proto tcp sport 1024-65535 -> pass
            rule d src fd00:8000::/17 dst 2001:db8:8000::/33 proto tcp dport 0-99 -> pass
            rule e src fd00:8000::/17 dst 2001:db8:8000::/33 proto tcp dport 100-65535 -> pass
            rule g src fd00::/16 dst 2001:db8::/32 proto tcp dport 99 -> drop
            rule f src fd00::/16 dst 2001:db8::/32 proto tcp -> drop
            rule h src fd00::/16 dst 2001:db8::/32 proto udp -> drop
        }";
        assert_eq!(
            unreachable(t),
            [("W0006", "g".into()), ("W0006", "f".into())]
        );
    }

    #[test]
    fn many_covering_rules_are_counted() {
        let hosts: String = (0..8)
            .map(|i| format!("rule h{i} src 2001:db8::{i} -> drop\n"))
            .collect();
        let d = union_finding(&format!(
            "three {{\n{hosts}rule net src 2001:db8::/125 -> drop\n}}"
        ));
        assert_eq!(
            d.message,
            "rule `net` can never match: rules `h0`, `h1`, `h2`, `h3` and 4 more together match every packet it matches"
        );
        assert_eq!(d.secondary.len(), 4);
        assert_eq!(
            d.help.as_deref(),
            Some("`h0`, `h1`, `h2`, `h3` and 4 more already do the same: remove `net`")
        );
    }

    #[test]
    fn over_budget_is_not_reported() {
        // 256 hosts cover the /120, but finding them takes more rounds than a rule gets.
        let hosts: String = (0..256)
            .map(|i| format!("rule h{i} src 2001:db8::{i:x} -> drop\n"))
            .collect();
        let t = format!("three {{\n{hosts}rule net src 2001:db8::/120 -> drop\n}}");
        assert_eq!(unreachable(&t), []);
        // Past the index entries a rule may scan, a cover by several rules is not looked for,
        // but a cover by one still is.
        let labels: String = (0..5000)
            .map(|i| format!("rule l{i} dst 2001:db8:: label {i} -> pass\n"))
            .collect();
        let t =
            format!("three {{\n{labels}{LO}\n{HI}\n{ALL}\nrule in dst 2001:db8::/48 -> pass\n}}");
        assert_eq!(unreachable(&t), [("W0002", "in".into())]);
    }
}
