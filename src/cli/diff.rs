//! `flowpol diff OLD NEW`: the packets whose action a policy change moves, as exact regions
//! with an example packet each; `--pcap` adds how many packets of a capture move.

use crate::classify::{Classifier, Linear};
use crate::cli::check::CheckFormat;
use crate::cli::explain::{Loaded, load};
use crate::cli::{EXIT_ERROR, EXIT_FINDINGS, EXIT_OK};
use crate::packet::{FiveTuple, ThreeTuple};
use crate::policy::diagnostic::{Code, Diagnostic, Renderer};
use crate::policy::diff::{self, Change, DiffBudget, Example, PolicyDiff, TupleDiff};
use crate::policy::model::Action;
use crate::policy::sarif::SarifLog;
use crate::policy::syntax::{Span, TupleKind};
use crate::policy::{Policy, Source};
use crate::source::pcap::CaptureReader;
use anyhow::Context;
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Show the packets whose action changes between two versions of a policy.
///
/// For the 3-tuple and the 5-tuple blocks: the exact set of packets whose action changes, as
/// disjoint regions (address prefixes, label ranges and value/mask patterns, protocols, port
/// ranges), each with the action before and after, the rules that decide it, and one example
/// packet (as `flowpol explain` arguments). The comparison is by meaning: renaming rules,
/// reordering rules that do not overlap, or splitting a prefix into halves with the same action
/// changes nothing. A budget bounds the work; when it runs out the answer says it is incomplete
/// (the regions it lists are still real changes) and the exit code is 1.
///
/// Exit codes: 0 no packet changes action, 1 some do (or the diff is incomplete), 2 a policy
/// cannot be read or has errors, or the capture cannot be read.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The policy before the change; `-` reads standard input.
    #[arg(value_name = "OLD")]
    pub old: PathBuf,
    /// The policy after the change.
    #[arg(value_name = "NEW")]
    pub new: PathBuf,
    /// Output format: `json` is an array of {"tuple", "before", "after", "before_rule",
    /// "after_rule", "example", "region"} (and {"tuple", "incomplete": true} for a tuple kind
    /// whose budget ran out); `github` and `sarif` place each change at the rule of NEW that
    /// now decides it.
    #[arg(long, value_enum, default_value_t)]
    pub format: CheckFormat,
    /// Also count the packets of this capture (pcap or pcapng) that change action, per region
    /// and per move.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// Box operations allowed per tuple kind (boxes held at once: a hundredth of it).
    #[arg(long, value_name = "N", default_value_t = DiffBudget::default().work)]
    pub budget: usize,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let old = load(&args.old)?;
    let new = load(&args.new)?;
    let budget = DiffBudget {
        work: args.budget,
        boxes: (args.budget / 100).max(1),
    };
    let d = diff::diff(&old.policy, &new.policy, &budget);
    let counts = match &args.pcap {
        Some(p) => Some(count_capture(p, &old.policy, &new.policy, &d)?),
        None => None,
    };
    let mut out = std::io::stdout().lock();
    let text = match args.format {
        CheckFormat::Human => human(&d, &old, &new, counts.as_ref()),
        CheckFormat::Json => {
            serde_json::to_string_pretty(&to_json(&d, &old.policy, &new.policy, counts.as_ref()))?
                + "\n"
        }
        CheckFormat::Github => {
            let r = renderer(&new);
            diagnostics(&d, &old.policy, &new)
                .iter()
                .map(|x| r.github(x) + "\n")
                .collect()
        }
        CheckFormat::Sarif => {
            let r = renderer(&new);
            let mut log = SarifLog::new();
            for x in diagnostics(&d, &old.policy, &new) {
                log.add(&r, &x);
            }
            serde_json::to_string_pretty(&log.to_value())? + "\n"
        }
    };
    out.write_all(text.as_bytes())?;
    out.flush()?;
    if let Some(c) = &counts
        && c.stopped.is_some()
    {
        return Ok(EXIT_ERROR);
    }
    Ok(if d.is_unchanged() {
        EXIT_OK
    } else {
        EXIT_FINDINGS
    })
}

fn renderer(l: &Loaded) -> Renderer<'_> {
    Renderer::new(Source {
        name: &l.name,
        text: &l.text,
    })
}

fn tuple_title(t: TupleKind) -> &'static str {
    match t {
        TupleKind::Three => "3-tuple",
        TupleKind::Five => "5-tuple",
    }
}

fn rule_name(p: &Policy, t: TupleKind, o: diff::Owner) -> Option<&str> {
    o.map(|i| match t {
        TupleKind::Three => p.three[i].name.as_str(),
        TupleKind::Five => p.five[i].name.as_str(),
    })
}

fn who(p: &Policy, t: TupleKind, o: diff::Owner) -> String {
    match rule_name(p, t, o) {
        Some(n) => format!("rule {n}"),
        None => "the default".into(),
    }
}

fn tuples(d: &PolicyDiff) -> [&TupleDiff; 2] {
    [&d.three, &d.five]
}

fn human(d: &PolicyDiff, old: &Loaded, new: &Loaded, counts: Option<&Counts>) -> String {
    let mut s = String::new();
    for t in tuples(d) {
        let title = tuple_title(t.tuple);
        let n = t.changes.len();
        match (n, t.complete) {
            (0, true) => s.push_str(&format!("{title}: no change\n")),
            (1, true) => s.push_str(&format!("{title}: 1 region changes action\n")),
            (_, true) => s.push_str(&format!("{title}: {n} regions change action\n")),
            (_, false) => s.push_str(&format!(
                "{title}: INCOMPLETE, the budget ran out (--budget); {n} region{} found so far, there may be more\n",
                if n == 1 { "" } else { "s" }
            )),
        }
        for (i, c) in t.changes.iter().enumerate() {
            s.push_str(&format!(
                "  {} ({}) -> {} ({})",
                c.before,
                who(&old.policy, t.tuple, c.before_rule),
                c.after,
                who(&new.policy, t.tuple, c.after_rule)
            ));
            if let Some(k) = counts {
                s.push_str(&format!(
                    ", {} packets of the capture",
                    k.per_region(t.tuple)[i]
                ));
            }
            s.push('\n');
            let brief = c.region.brief();
            if brief.is_empty() {
                s.push_str("      every packet\n");
            }
            for (name, v) in brief {
                s.push_str(&format!("      {name} {v}\n"));
            }
            s.push_str(&format!("      e.g. {}\n", c.example.explain_args()));
        }
    }
    if let Some(k) = counts {
        s.push_str(&format!(
            "capture {}: {} IPv6 packets ({} with a 5-tuple)\n",
            k.path, k.three_total, k.five_total
        ));
        if k.moves.is_empty() {
            s.push_str("  no packet changes action\n");
        }
        for ((t, before, after), n) in &k.moves {
            s.push_str(&format!(
                "  {}: {n} packets {before} -> {after}\n",
                tuple_title(*t)
            ));
        }
        if let Some(e) = &k.stopped {
            s.push_str(&format!("  the capture stopped early: {e}\n"));
        }
    }
    let verdict = if d.is_unchanged() {
        "no packet changes action"
    } else if tuples(d).iter().all(|t| t.complete) {
        "packets change action"
    } else {
        "incomplete: the budget ran out"
    };
    s.push_str(&format!("diff {} {}: {verdict}\n", old.name, new.name));
    s
}

fn example_json(e: &Example) -> Value {
    json!({
        "src": e.src.to_string(),
        "dst": e.dst.to_string(),
        "label": e.label,
        "proto": e.proto,
        "sport": e.sport,
        "dport": e.dport,
    })
}

fn change_json(t: TupleKind, c: &Change, old: &Policy, new: &Policy) -> Value {
    let region: serde_json::Map<String, Value> = c
        .region
        .exact()
        .into_iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({
        "tuple": t.keyword(),
        "before": c.before.to_string(),
        "after": c.after.to_string(),
        "before_rule": rule_name(old, t, c.before_rule),
        "after_rule": rule_name(new, t, c.after_rule),
        "example": example_json(&c.example),
        "region": region,
    })
}

fn to_json(d: &PolicyDiff, old: &Policy, new: &Policy, counts: Option<&Counts>) -> Value {
    let mut out = Vec::new();
    for t in tuples(d) {
        for (i, c) in t.changes.iter().enumerate() {
            let mut v = change_json(t.tuple, c, old, new);
            if let Some(k) = counts {
                v["packets"] = json!(k.per_region(t.tuple)[i]);
            }
            out.push(v);
        }
        if !t.complete {
            out.push(json!({ "tuple": t.tuple.keyword(), "incomplete": true }));
        }
    }
    Value::Array(out)
}

/// Each change as a finding on NEW, at the rule that now decides it (or its `default` line).
fn diagnostics(d: &PolicyDiff, old: &Policy, new: &Loaded) -> Vec<Diagnostic> {
    let (ast, _) = crate::policy::parse::parse(&new.text);
    let default_span = ast.defaults.first().map_or(Span::new(0, 0), |x| x.span);
    let mut out = Vec::new();
    for t in tuples(d) {
        for c in &t.changes {
            let span = c.after_rule.map_or(default_span, |i| match t.tuple {
                TupleKind::Three => new.policy.three[i].span,
                TupleKind::Five => new.policy.five[i].span,
            });
            let fields: Vec<String> = c
                .region
                .brief()
                .into_iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let region = if fields.is_empty() {
                "every packet".to_string()
            } else {
                fields.join(" ")
            };
            out.push(
                Diagnostic::new(
                    Code::ActionChanged,
                    format!(
                        "{}: packets move from {} ({}) to {} ({}): {region}",
                        tuple_title(t.tuple),
                        c.before,
                        who(old, t.tuple, c.before_rule),
                        c.after,
                        who(&new.policy, t.tuple, c.after_rule),
                    ),
                    span,
                )
                .with_help(format!(
                    "for example: flowpol explain {} {}",
                    new.name,
                    c.example.explain_args()
                )),
            );
        }
        if !t.complete {
            out.push(Diagnostic::new(
                Code::DiffIncomplete,
                format!(
                    "{}: the diff is incomplete, the budget ran out; more packets may change action",
                    tuple_title(t.tuple)
                ),
                Span::new(0, 0),
            ));
        }
    }
    out
}

/// What a capture says about the change.
struct Counts {
    path: String,
    three_total: u64,
    five_total: u64,
    /// Packets per region, in the order of each tuple kind's changes.
    three_regions: Vec<u64>,
    five_regions: Vec<u64>,
    /// Packets per (tuple kind, action before, action after), sorted.
    moves: Vec<((TupleKind, Action, Action), u64)>,
    stopped: Option<String>,
}

impl Counts {
    fn per_region(&self, t: TupleKind) -> &[u64] {
        match t {
            TupleKind::Three => &self.three_regions,
            TupleKind::Five => &self.five_regions,
        }
    }
}

fn count_capture(
    path: &Path,
    old: &Policy,
    new: &Policy,
    d: &PolicyDiff,
) -> anyhow::Result<Counts> {
    let (o3, n3) = (
        Linear::<ThreeTuple>::new(old),
        Linear::<ThreeTuple>::new(new),
    );
    let (o5, n5) = (Linear::<FiveTuple>::new(old), Linear::<FiveTuple>::new(new));
    let act = |p: &Policy, t: TupleKind, r: Option<crate::classify::RuleId>| -> Action {
        match (t, r) {
            (TupleKind::Three, Some(r)) => p.three[r.index()].action.clone(),
            (TupleKind::Five, Some(r)) => p.five[r.index()].action.clone(),
            (_, None) => p.default.clone(),
        }
    };
    let mut c = Counts {
        path: path.display().to_string(),
        three_total: 0,
        five_total: 0,
        three_regions: vec![0; d.three.changes.len()],
        five_regions: vec![0; d.five.changes.len()],
        moves: Vec::new(),
        stopped: None,
    };
    let bump = |moves: &mut Vec<((TupleKind, Action, Action), u64)>, key| match moves
        .iter_mut()
        .find(|(k, _)| *k == key)
    {
        Some((_, n)) => *n += 1,
        None => moves.push((key, 1)),
    };
    let stopped = each_packet(path, |three, five| {
        c.three_total += 1;
        let (b, a) = (
            act(old, TupleKind::Three, o3.classify(&three)),
            act(new, TupleKind::Three, n3.classify(&three)),
        );
        if b != a {
            let e = Example {
                src: three.src.into(),
                dst: three.dst.into(),
                label: Some(three.label.value()),
                proto: None,
                sport: None,
                dport: None,
            };
            if let Some(i) = d.three.changes.iter().position(|ch| ch.region.contains(&e)) {
                c.three_regions[i] += 1;
            }
            bump(&mut c.moves, (TupleKind::Three, b, a));
        }
        if let Some(f) = five {
            c.five_total += 1;
            let (b, a) = (
                act(old, TupleKind::Five, o5.classify(&f)),
                act(new, TupleKind::Five, n5.classify(&f)),
            );
            if b != a {
                let e = Example {
                    src: f.src.into(),
                    dst: f.dst.into(),
                    label: None,
                    proto: Some(f.proto),
                    sport: Some(f.sport),
                    dport: Some(f.dport),
                };
                if let Some(i) = d.five.changes.iter().position(|ch| ch.region.contains(&e)) {
                    c.five_regions[i] += 1;
                }
                bump(&mut c.moves, (TupleKind::Five, b, a));
            }
        }
    })?;
    c.stopped = stopped;
    c.moves
        .sort_by(|x, y| (x.0.0.keyword(), &x.0.1, &x.0.2).cmp(&(y.0.0.keyword(), &y.0.1, &y.0.2)));
    Ok(c)
}

/// Calls `f` with the keys of every IPv6 packet of a capture (the 5-tuple when it can be had).
/// The one place this command reads captures; a capture cut short ends the read with its error
/// as text (what was read before it is counted).
fn each_packet(
    path: &Path,
    mut f: impl FnMut(ThreeTuple, Option<FiveTuple>),
) -> anyhow::Result<Option<String>> {
    let mut reader =
        CaptureReader::open(path).with_context(|| format!("reading {}", path.display()))?;
    let pb = crate::cli::classify::progress(path);
    let stopped = crate::pipeline::offline::read_frames(
        &mut reader,
        |offset| pb.set_position(offset),
        |frame| {
            if let crate::packet::Decoded::Ipv6(k) = crate::packet::decode(frame.link, frame.data) {
                f(k.three, k.five.ok());
            }
            Ok::<(), std::convert::Infallible>(())
        },
    );
    pb.finish_and_clear();
    let Ok(stopped) = stopped;
    Ok(stopped.map(|e| e.to_string()))
}
