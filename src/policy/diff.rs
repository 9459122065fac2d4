//! What a policy change does: the exact set of packets whose action changes, for the 3-tuple
//! and the 5-tuple blocks, as disjoint regions of the key space with the action before and
//! after and one example packet each.
//!
//! The action can change only where a rule that the two lists do not share (outside a longest
//! common subsequence of rules, compared by match and action) matches, or anywhere when the
//! defaults differ. Each piece of that region is cut by each policy into its *first-match
//! partition*: the keys each rule decides (its match minus every earlier rule's) and those the
//! default decides, as disjoint boxes (one set per field), with the box subtraction W0006 uses
//! ([`super::cover::subtract`]). Every box of the old partition is then intersected with every
//! box of the new one whose action differs; those intersections are the changes. The answer is
//! semantic: it compares actions, not rules, so renaming a rule, reordering rules that do not
//! overlap, or splitting a prefix into halves with the same action changes nothing.
//!
//! Fields are exact sets: addresses, protocols and ports as sorted intervals, flow labels as
//! disjoint value/mask patterns (so a value/mask label with many runs, `0x1/0x1`, costs one
//! pattern, and a range a few prefix patterns). The 5-tuple key space is that of real packets:
//! a protocol without ports has both ports 0.
//!
//! Never wrong: a budget bounds the boxes and box operations. When it runs out, the tuple
//! kind's answer is marked incomplete; every region it does report is still a true change.

use super::cover::{self, Dim, Set};
use crate::label::FlowLabel;
use crate::packet::IpNumber;
use crate::policy::model::{Action, FiveMatch, LabelMatch, Policy, Prefix, Rule, ThreeMatch};
use crate::policy::syntax::TupleKind;
use std::net::Ipv6Addr;

const LM: u32 = FlowLabel::MASK;

/// Flow labels as disjoint `(value, mask)` patterns: label `l` is in the set when
/// `l & mask == value` for one of them. `value` has no bits outside `mask`; `mask` has none
/// outside the 20 label bits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Labels(Vec<(u32, u32)>);

impl Labels {
    fn any() -> Labels {
        Labels(vec![(0, 0)])
    }

    fn of(l: &LabelMatch) -> Labels {
        match *l {
            LabelMatch::Any => Labels::any(),
            LabelMatch::Exact(v) => Labels(vec![(v.value(), LM)]),
            LabelMatch::Masked { value, mask } => Labels(vec![(value & mask & LM, mask & LM)]),
            LabelMatch::Range { lo, hi } => Labels(range_patterns(lo.value(), hi.value())),
        }
    }

    fn contains(&self, l: u32) -> bool {
        self.0.iter().any(|&(v, m)| l & m == v)
    }

    fn min(&self) -> u32 {
        self.0.iter().map(|p| p.0).min().unwrap_or(0)
    }

    /// Merges pairs of patterns that differ in one fixed bit only, until none do.
    fn simplify(mut self) -> Labels {
        'again: loop {
            for i in 0..self.0.len() {
                for j in i + 1..self.0.len() {
                    let (a, b) = (self.0[i], self.0[j]);
                    let d = a.0 ^ b.0;
                    if a.1 == b.1 && d.count_ones() == 1 {
                        self.0[i] = (a.0 & !d, a.1 & !d);
                        self.0.swap_remove(j);
                        continue 'again;
                    }
                }
            }
            break;
        }
        self.0.sort_unstable();
        self
    }

    /// The set in the policy language's label syntax: ranges where patterns are label
    /// prefixes (merged when they touch), `VALUE/MASK` for the others.
    fn show(&self) -> Vec<String> {
        if self.0.contains(&(0, 0)) {
            return vec!["any".into()];
        }
        let mut ivs = Vec::new();
        let mut other = Vec::new();
        for &(v, m) in &self.0 {
            let low = !m & LM;
            if low & low.wrapping_add(1) == 0 {
                ivs.push((u128::from(v), u128::from(v | low)));
            } else {
                other.push((v, m));
            }
        }
        let mut out: Vec<String> = Set::from_intervals(ivs)
            .intervals()
            .iter()
            .map(|&(lo, hi)| {
                if lo == hi {
                    show_label(lo as u32)
                } else {
                    format!("{}-{}", show_label(lo as u32), show_label(hi as u32))
                }
            })
            .collect();
        other.sort_unstable();
        out.extend(other.into_iter().map(|(v, m)| format!("{v:#x}/{m:#x}")));
        out
    }
}

fn show_label(l: u32) -> String {
    if l == 0 {
        "0".into()
    } else {
        format!("{l:#x}")
    }
}

fn pat_intersects(a: (u32, u32), b: (u32, u32)) -> bool {
    (a.0 ^ b.0) & a.1 & b.1 == 0
}

/// `p` minus `b`, as disjoint patterns appended to `out`.
fn pat_minus(p: (u32, u32), b: (u32, u32), out: &mut Vec<(u32, u32)>) {
    if !pat_intersects(p, b) {
        out.push(p);
        return;
    }
    let mut cur = p;
    for bit in (0..20).rev() {
        let m = 1u32 << bit;
        if b.1 & m != 0 && cur.1 & m == 0 {
            // The half of `cur` on the other side of `b` in this bit is outside `b`.
            out.push((cur.0 | (!b.0 & m), cur.1 | m));
            cur = (cur.0 | (b.0 & m), cur.1 | m);
        }
    }
    // What is left of `p` now lies inside `b`.
}

/// The inclusive range `[lo, hi]` as label prefixes (value/mask with the free bits lowest).
fn range_patterns(lo: u32, hi: u32) -> Vec<(u32, u32)> {
    let (mut lo, hi) = (u64::from(lo), u64::from(hi));
    let mut out = Vec::new();
    while lo <= hi {
        let mut size: u64 = if lo == 0 {
            1 << 20
        } else {
            lo & lo.wrapping_neg()
        };
        while lo + size - 1 > hi {
            size >>= 1;
        }
        out.push((lo as u32, LM & !((size - 1) as u32)));
        lo += size;
    }
    out
}

impl Dim for Labels {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn intersects(&self, o: &Self) -> bool {
        self.0
            .iter()
            .any(|&a| o.0.iter().any(|&b| pat_intersects(a, b)))
    }
    fn intersect(&self, o: &Self) -> Self {
        let mut out = Vec::new();
        for &a in &self.0 {
            for &b in &o.0 {
                if pat_intersects(a, b) {
                    out.push((a.0 | b.0, a.1 | b.1));
                }
            }
        }
        Labels(out)
    }
    fn minus(&self, o: &Self) -> Self {
        let mut cur = self.0.clone();
        for &b in &o.0 {
            let mut next = Vec::with_capacity(cur.len());
            for p in cur {
                pat_minus(p, b, &mut next);
            }
            cur = next;
        }
        Labels(cur)
    }
}

/// One field of a box: intervals (addresses, protocol, ports) or label patterns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum D {
    Iv(Set),
    Lab(Labels),
}

impl D {
    fn min(&self) -> u128 {
        match self {
            D::Iv(s) => s.min(),
            D::Lab(l) => u128::from(l.min()),
        }
    }

    fn contains(&self, v: u128) -> bool {
        match self {
            D::Iv(s) => s.contains(v),
            D::Lab(l) => u32::try_from(v).is_ok_and(|v| l.contains(v)),
        }
    }

    /// The union with a set disjoint from this one (of the same kind).
    fn union(&self, o: &D) -> D {
        match (self, o) {
            (D::Iv(a), D::Iv(b)) => D::Iv(Set::from_intervals(
                a.intervals().iter().chain(b.intervals()).copied().collect(),
            )),
            (D::Lab(a), D::Lab(b)) => {
                D::Lab(Labels(a.0.iter().chain(&b.0).copied().collect()).simplify())
            }
            (a, _) => a.clone(),
        }
    }
}

impl Dim for D {
    fn is_empty(&self) -> bool {
        match self {
            D::Iv(s) => s.is_empty(),
            D::Lab(l) => Dim::is_empty(l),
        }
    }
    fn intersects(&self, o: &Self) -> bool {
        match (self, o) {
            (D::Iv(a), D::Iv(b)) => a.intersects(b),
            (D::Lab(a), D::Lab(b)) => Dim::intersects(a, b),
            _ => false,
        }
    }
    fn intersect(&self, o: &Self) -> Self {
        match (self, o) {
            (D::Iv(a), D::Iv(b)) => D::Iv(a.intersect(b)),
            (D::Lab(a), D::Lab(b)) => D::Lab(Dim::intersect(a, b)),
            (a, _) => a.clone(),
        }
    }
    fn minus(&self, o: &Self) -> Self {
        match (self, o) {
            (D::Iv(a), D::Iv(b)) => D::Iv(a.minus(b)),
            (D::Lab(a), D::Lab(b)) => D::Lab(Dim::minus(a, b)),
            (a, _) => a.clone(),
        }
    }
}

type Bx = Vec<D>;

fn full(hi: u128) -> D {
    D::Iv(Set::one(0, hi))
}

fn three_box(m: &ThreeMatch) -> Bx {
    vec![
        D::Iv(cover::addr_set(&m.src)),
        D::Iv(cover::addr_set(&m.dst)),
        D::Lab(Labels::of(&m.label)),
    ]
}

fn five_box(m: &FiveMatch) -> Bx {
    vec![
        D::Iv(cover::addr_set(&m.src)),
        D::Iv(cover::addr_set(&m.dst)),
        D::Iv(cover::proto_set(m.proto)),
        D::Iv(cover::port_set(&m.sport)),
        D::Iv(cover::port_set(&m.dport)),
    ]
}

fn universe(tuple: TupleKind) -> Vec<Bx> {
    match tuple {
        TupleKind::Three => vec![vec![
            full(u128::MAX),
            full(u128::MAX),
            D::Lab(Labels::any()),
        ]],
        TupleKind::Five => {
            let (with, without): (Vec<u8>, Vec<u8>) =
                (0..=255u8).partition(|&p| IpNumber(p).has_ports());
            let set = |ps: Vec<u8>| {
                D::Iv(Set::from_intervals(
                    ps.into_iter()
                        .map(|p| (u128::from(p), u128::from(p)))
                        .collect(),
                ))
            };
            vec![
                vec![
                    full(u128::MAX),
                    full(u128::MAX),
                    set(with),
                    full(65535),
                    full(65535),
                ],
                vec![
                    full(u128::MAX),
                    full(u128::MAX),
                    set(without),
                    D::Iv(Set::one(0, 0)),
                    D::Iv(Set::one(0, 0)),
                ],
            ]
        }
    }
}

/// The limits of one tuple kind's diff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiffBudget {
    /// Boxes held at once (the partition of each policy, and the changes found).
    pub boxes: usize,
    /// Bx operations (an intersection test, an intersection or a subtraction of one box).
    pub work: usize,
}

impl Default for DiffBudget {
    fn default() -> Self {
        DiffBudget {
            boxes: 200_000,
            work: 20_000_000,
        }
    }
}

/// Who decides a region: the rule at this index of its block, or the default.
pub type Owner = Option<usize>;

/// The first-match partition of `universe` by a rule list: disjoint boxes covering it, each
/// with the rule (or the default) that decides it. `rules` are the rules that may meet the
/// universe, in order, with their indices in their block. `None` when the budget runs out.
fn partition(
    rules: &[(usize, &Bx)],
    universe: Vec<Bx>,
    work: &mut usize,
    budget: &DiffBudget,
) -> Option<Vec<(Bx, Owner)>> {
    let b = cover_budget(budget);
    let mut rem = universe;
    let mut out: Vec<(Bx, Owner)> = Vec::new();
    for &(i, r) in rules {
        for bx in &rem {
            *work += 1;
            if *work > budget.work {
                return None;
            }
            if meets(bx, r) {
                out.push((
                    bx.iter().zip(r).map(|(x, y)| x.intersect(y)).collect(),
                    Some(i),
                ));
            }
        }
        if out.len() > budget.boxes {
            return None;
        }
        cover::subtract(&mut rem, r, work, &b)?;
        if rem.is_empty() {
            break;
        }
    }
    out.extend(rem.into_iter().map(|bx| (bx, None)));
    (out.len() <= budget.boxes).then_some(out)
}

fn cover_budget(budget: &DiffBudget) -> cover::Budget {
    cover::Budget {
        rounds: 0,
        scan: 0,
        boxes: budget.boxes,
        work: budget.work,
    }
}

/// True when two boxes share a key.
fn meets(a: &Bx, b: &Bx) -> bool {
    a.iter().zip(b).all(|(x, y)| x.intersects(y))
}

/// Which rules of each list are not in a longest common subsequence of the two (rules compared
/// by match and action, not name). A packet that no such rule matches gets the same action
/// from both lists when their defaults agree: its first match in either is the first aligned
/// rule that matches it, and aligned rules are equal and in the same order. The common prefix
/// and suffix are aligned first; the middle only when it is small enough for the quadratic
/// table (`cells`), otherwise all of it counts as unaligned (which costs time, not truth).
fn unaligned<M: PartialEq>(
    old: &[Rule<M>],
    new: &[Rule<M>],
    cells: usize,
) -> (Vec<bool>, Vec<bool>) {
    let same = |a: &Rule<M>, b: &Rule<M>| a.matcher == b.matcher && a.action == b.action;
    let pre = old.iter().zip(new).take_while(|(a, b)| same(a, b)).count();
    let suf = old[pre..]
        .iter()
        .rev()
        .zip(new[pre..].iter().rev())
        .take_while(|(a, b)| same(a, b))
        .count();
    let (o, n) = (&old[pre..old.len() - suf], &new[pre..new.len() - suf]);
    let mut uo = vec![false; old.len()];
    let mut un = vec![false; new.len()];
    let (a, b) = (o.len(), n.len());
    if (a + 1).saturating_mul(b + 1) > cells {
        uo[pre..pre + a].iter_mut().for_each(|x| *x = true);
        un[pre..pre + b].iter_mut().for_each(|x| *x = true);
        return (uo, un);
    }
    // lcs[i][j]: the longest common subsequence of o[i..] and n[j..].
    let w = b + 1;
    let mut lcs = vec![0u32; (a + 1) * w];
    for i in (0..a).rev() {
        for j in (0..b).rev() {
            lcs[i * w + j] = if same(&o[i], &n[j]) {
                lcs[(i + 1) * w + j + 1] + 1
            } else {
                lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < a && j < b {
        if same(&o[i], &n[j]) {
            i += 1;
            j += 1;
        } else if lcs[(i + 1) * w + j] >= lcs[i * w + j + 1] {
            uo[pre + i] = true;
            i += 1;
        } else {
            un[pre + j] = true;
            j += 1;
        }
    }
    uo[pre + i..pre + a].iter_mut().for_each(|x| *x = true);
    un[pre + j..pre + b].iter_mut().for_each(|x| *x = true);
    (uo, un)
}

/// A region of one tuple kind's key space: a product of one exact set per field (src, dst,
/// label for the 3-tuple; src, dst, proto, sport, dport for the 5-tuple).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    tuple: TupleKind,
    fields: Bx,
}

/// A packet, with the fields of its tuple kind set and the others `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Example {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub label: Option<u32>,
    pub proto: Option<u8>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
}

impl Example {
    /// The packet as `flowpol explain` arguments.
    pub fn explain_args(&self) -> String {
        let mut s = format!("--src {} --dst {}", self.src, self.dst);
        if let Some(l) = self.label {
            s.push_str(&format!(" --label {}", show_label(l)));
        }
        if let Some(p) = self.proto {
            s.push_str(&format!(" --proto {}", IpNumber(p)));
            if IpNumber(p).has_ports() {
                s.push_str(&format!(
                    " --sport {} --dport {}",
                    self.sport.unwrap_or(0),
                    self.dport.unwrap_or(0)
                ));
            }
        }
        s
    }
}

impl Region {
    pub fn tuple(&self) -> TupleKind {
        self.tuple
    }

    /// The field names of this region's key, in order.
    pub fn field_names(&self) -> &'static [&'static str] {
        match self.tuple {
            TupleKind::Three => &["src", "dst", "label"],
            TupleKind::Five => &["src", "dst", "proto", "sport", "dport"],
        }
    }

    /// True when the packet's key (the fields of this region's tuple kind) lies in the region.
    /// A packet without those fields set does not.
    pub fn contains(&self, p: &Example) -> bool {
        let point: Vec<u128> = match self.tuple {
            TupleKind::Three => {
                let Some(l) = p.label else { return false };
                vec![p.src.into(), p.dst.into(), l.into()]
            }
            TupleKind::Five => {
                let (Some(pr), Some(s), Some(d)) = (p.proto, p.sport, p.dport) else {
                    return false;
                };
                vec![p.src.into(), p.dst.into(), pr.into(), s.into(), d.into()]
            }
        };
        self.fields.iter().zip(&point).all(|(f, &v)| f.contains(v))
    }

    /// One packet of the region: the least value of each field, except that the protocol is
    /// tcp, udp or icmpv6 when the region holds one of them.
    pub fn example(&self) -> Example {
        let m: Vec<u128> = self.fields.iter().map(D::min).collect();
        let addr = |v: u128| Ipv6Addr::from(v);
        match self.tuple {
            TupleKind::Three => Example {
                src: addr(m[0]),
                dst: addr(m[1]),
                label: Some(m[2] as u32),
                proto: None,
                sport: None,
                dport: None,
            },
            TupleKind::Five => {
                let proto = [6u128, 17, 58]
                    .into_iter()
                    .find(|&p| self.fields[2].contains(p))
                    .unwrap_or(m[2]);
                Example {
                    src: addr(m[0]),
                    dst: addr(m[1]),
                    label: None,
                    proto: Some(proto as u8),
                    sport: Some(m[3] as u16),
                    dport: Some(m[4] as u16),
                }
            }
        }
    }

    /// Each field's set, exactly, in the policy language's syntax: prefixes for addresses,
    /// labels as `N`, `LO-HI` and `VALUE/MASK`, protocols and ports as `N` or `LO-HI`. A list
    /// means any of its members.
    pub fn exact(&self) -> Vec<(&'static str, Vec<String>)> {
        self.field_names()
            .iter()
            .zip(&self.fields)
            .enumerate()
            .map(|(k, (name, f))| {
                let v = match f {
                    D::Lab(l) => l.show(),
                    D::Iv(s) if k < 2 => addr_prefixes(s).iter().map(Prefix::to_string).collect(),
                    D::Iv(s) => show_numbers(s, k == 2),
                };
                (*name, v)
            })
            .collect()
    }

    /// Each field, shortly, for people: an address set as its prefixes or, when shorter, as
    /// the least prefix holding it `except` the prefixes it leaves out; the others as in
    /// [`Region::exact`]. Fields that are `any` are left out.
    pub fn brief(&self) -> Vec<(&'static str, String)> {
        let exact = self.exact();
        let mut out = Vec::new();
        for (k, ((name, v), f)) in exact.into_iter().zip(&self.fields).enumerate() {
            let text = match f {
                D::Iv(s) if k < 2 => {
                    if *s == Set::one(0, u128::MAX) {
                        continue;
                    }
                    let hull = hull_prefix(s);
                    let hull_set = Set::one(hull.addr, hull.addr | !hull.mask());
                    let except = addr_prefixes(&hull_set.minus(s));
                    if except.len() + 1 < v.len() {
                        let h = if hull.len == 0 {
                            "any".to_string()
                        } else {
                            hull.to_string()
                        };
                        let e: Vec<String> = except.iter().map(Prefix::to_string).collect();
                        format!("{h} except {}", braces(e))
                    } else {
                        braces(v)
                    }
                }
                D::Iv(s)
                    if (k == 2 && *s == Set::one(0, 255))
                        || (k > 2 && *s == Set::one(0, 65535)) =>
                {
                    continue;
                }
                D::Lab(l) if l.0.contains(&(0, 0)) => continue,
                _ => braces(v),
            };
            out.push((name, text));
        }
        out
    }
}

/// The longest prefix that holds every address of a (non-empty) set.
fn hull_prefix(s: &Set) -> Prefix {
    let (lo, hi) = (s.min(), s.intervals().last().map_or(0, |iv| iv.1));
    Prefix::new(lo, (lo ^ hi).leading_zeros() as u8)
}

fn braces(v: Vec<String>) -> String {
    if v.len() == 1 {
        v.into_iter().next().unwrap_or_default()
    } else {
        format!("{{ {} }}", v.join(", "))
    }
}

fn show_numbers(s: &Set, proto: bool) -> Vec<String> {
    s.intervals()
        .iter()
        .map(|&(lo, hi)| {
            if lo == hi {
                match proto.then(|| IpNumber(lo as u8).name()).flatten() {
                    Some(n) => n.to_string(),
                    None => lo.to_string(),
                }
            } else {
                format!("{lo}-{hi}")
            }
        })
        .collect()
}

/// The fewest prefixes whose union is the set.
fn addr_prefixes(s: &Set) -> Vec<Prefix> {
    let mut out = Vec::new();
    for &(lo, hi) in s.intervals() {
        let mut lo = lo;
        loop {
            let mut len = if lo == 0 {
                0
            } else {
                128 - lo.trailing_zeros() as u8
            };
            while len < 128 && (lo | !Prefix::mask_of(len)) > hi {
                len += 1;
            }
            out.push(Prefix::new(lo, len));
            let end = lo | !Prefix::mask_of(len);
            if end >= hi {
                break;
            }
            lo = end + 1;
        }
    }
    out
}

/// A set of packets whose action changes, all in the same way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub before: Action,
    /// The old policy's rule (index in its block) that decided these packets, or the default.
    pub before_rule: Owner,
    pub after: Action,
    /// The new policy's rule that decides them, or the default.
    pub after_rule: Owner,
    pub region: Region,
    pub example: Example,
}

/// The changes of one tuple kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TupleDiff {
    pub tuple: TupleKind,
    /// Disjoint regions; when `complete`, their union is exactly the set of packets whose
    /// action changes.
    pub changes: Vec<Change>,
    /// False when the budget ran out: the changes listed are real, but there may be more.
    pub complete: bool,
}

/// The changes of both tuple kinds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyDiff {
    pub three: TupleDiff,
    pub five: TupleDiff,
}

impl PolicyDiff {
    /// True when the policies are known to act the same on every packet.
    pub fn is_unchanged(&self) -> bool {
        [&self.three, &self.five]
            .iter()
            .all(|d| d.complete && d.changes.is_empty())
    }
}

/// The packets whose action changes from `old` to `new`, for both tuple kinds.
pub fn diff(old: &Policy, new: &Policy, budget: &DiffBudget) -> PolicyDiff {
    PolicyDiff {
        three: diff_tuple(
            TupleKind::Three,
            (&old.three, &old.default),
            (&new.three, &new.default),
            three_box,
            budget,
        ),
        five: diff_tuple(
            TupleKind::Five,
            (&old.five, &old.default),
            (&new.five, &new.default),
            five_box,
            budget,
        ),
    }
}

/// Quadratic-table cells the alignment of two rule lists may use.
const ALIGN_CELLS: usize = 4_000_000;

fn diff_tuple<M: PartialEq>(
    tuple: TupleKind,
    (old, old_default): (&[Rule<M>], &Action),
    (new, new_default): (&[Rule<M>], &Action),
    to_box: fn(&M) -> Bx,
    budget: &DiffBudget,
) -> TupleDiff {
    let incomplete = |changes| TupleDiff {
        tuple,
        changes,
        complete: false,
    };
    let mut work = 0;
    let ob: Vec<Bx> = old.iter().map(|r| to_box(&r.matcher)).collect();
    let nb: Vec<Bx> = new.iter().map(|r| to_box(&r.matcher)).collect();
    // Where the action can change at all: everywhere when the defaults differ, otherwise in
    // the rules the two lists do not share (see `unaligned`), made disjoint.
    let suspect: Vec<Bx> = if old_default != new_default {
        universe(tuple)
    } else {
        let (uo, un) = unaligned(old, new, ALIGN_CELLS);
        let mut pieces: Vec<Bx> = Vec::new();
        let b = cover_budget(budget);
        let firsts = ob.iter().zip(&uo).chain(nb.iter().zip(&un));
        for (bx, _) in firsts.filter(|(_, u)| **u) {
            let mut rem: Vec<Bx> = universe(tuple)
                .iter()
                .filter(|u| meets(u, bx))
                .map(|u| u.iter().zip(bx).map(|(x, y)| x.intersect(y)).collect())
                .collect();
            for p in &pieces {
                if cover::subtract(&mut rem, p, &mut work, &b).is_none() {
                    return incomplete(Vec::new());
                }
            }
            pieces.extend(rem);
            if pieces.len() > budget.boxes {
                return incomplete(Vec::new());
            }
        }
        pieces
    };
    let act_old = |o: Owner| o.map_or(old_default, |i| &old[i].action);
    let act_new = |o: Owner| o.map_or(new_default, |i| &new[i].action);
    // The changed boxes, grouped by the pair of rules that decide them.
    let mut groups: Vec<((Owner, Owner), Vec<Bx>)> = Vec::new();
    let mut found = 0usize;
    let mut complete = true;
    'pieces: for piece in suspect {
        work += ob.len() + nb.len();
        let o_near: Vec<(usize, &Bx)> = ob
            .iter()
            .enumerate()
            .filter(|(_, b)| meets(b, &piece))
            .collect();
        let n_near: Vec<(usize, &Bx)> = nb
            .iter()
            .enumerate()
            .filter(|(_, b)| meets(b, &piece))
            .collect();
        let Some(p_old) = partition(&o_near, vec![piece.clone()], &mut work, budget) else {
            complete = false;
            break;
        };
        let Some(p_new) = partition(&n_near, vec![piece], &mut work, budget) else {
            complete = false;
            break;
        };
        for (qb, qo) in &p_new {
            let after = act_new(*qo);
            for (pb, po) in &p_old {
                work += 1;
                if work > budget.work || found > budget.boxes {
                    complete = false;
                    break 'pieces;
                }
                if act_old(*po) == after || !meets(pb, qb) {
                    continue;
                }
                let bx: Bx = pb.iter().zip(qb).map(|(x, y)| x.intersect(y)).collect();
                found += 1;
                match groups.iter_mut().find(|(k, _)| *k == (*po, *qo)) {
                    Some((_, v)) => v.push(bx),
                    None => groups.push(((*po, *qo), vec![bx])),
                }
            }
        }
    }
    let mut changes = Vec::new();
    let mut merge_work = 0usize;
    for ((po, qo), boxes) in groups {
        for bx in coalesce(boxes, &mut merge_work, budget.work) {
            let region = Region { tuple, fields: bx };
            changes.push(Change {
                before: act_old(po).clone(),
                before_rule: po,
                after: act_new(qo).clone(),
                after_rule: qo,
                example: region.example(),
                region,
            });
        }
    }
    changes.sort_by_key(|c| {
        let e = &c.example;
        (
            u128::from(e.src),
            u128::from(e.dst),
            e.label,
            e.proto,
            e.sport,
            e.dport,
        )
    });
    if complete {
        TupleDiff {
            tuple,
            changes,
            complete,
        }
    } else {
        incomplete(changes)
    }
}

/// Merges boxes that differ in one field only (their union is then a box), until none do or
/// `limit` comparisons have been made. The union of the boxes stays the same.
fn coalesce(mut boxes: Vec<Bx>, work: &mut usize, limit: usize) -> Vec<Bx> {
    'again: loop {
        for i in 0..boxes.len() {
            for j in i + 1..boxes.len() {
                *work += 1;
                if *work > limit {
                    return boxes;
                }
                let differ: Vec<usize> = (0..boxes[i].len())
                    .filter(|&k| boxes[i][k] != boxes[j][k])
                    .collect();
                if let [k] = differ[..] {
                    let b = boxes.swap_remove(j);
                    boxes[i][k] = boxes[i][k].union(&b[k]);
                    continue 'again;
                }
            }
        }
        return boxes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(names: &str) -> Vec<Rule<u8>> {
        names
            .bytes()
            .map(|b| Rule {
                name: String::new(),
                matcher: b,
                action: Action::Pass,
                span: Default::default(),
            })
            .collect()
    }

    fn marks(v: &[bool]) -> String {
        v.iter().map(|&u| if u { 'x' } else { '.' }).collect()
    }

    #[test]
    fn alignment_leaves_out_a_longest_common_subsequence() {
        let (o, n) = unaligned(&rules("abcdef"), &rules("abXdfe"), 1000);
        assert_eq!((marks(&o), marks(&n)), ("..x.x.".into(), "..x..x".into()));
        let (o, n) = unaligned(&rules("abc"), &rules("abc"), 1000);
        assert_eq!((marks(&o), marks(&n)), ("...".into(), "...".into()));
        let (o, n) = unaligned(&rules("ab"), &rules("ba"), 1000);
        assert_eq!((marks(&o), marks(&n)), ("x.".into(), ".x".into()));
        // Too large a middle for the table: all of the middle is unaligned.
        let (o, n) = unaligned(&rules("aXYZb"), &rules("aZYXb"), 4);
        assert_eq!((marks(&o), marks(&n)), (".xxx.".into(), ".xxx.".into()));
        // Renamed rules are the same rules.
        let mut r = rules("ab");
        r[0].name = "other".into();
        assert_eq!(unaligned(&rules("ab"), &r, 1000).0, [false, false]);
    }

    #[test]
    fn range_patterns_cover_exactly_the_range() {
        for (lo, hi) in [
            (0, LM),
            (0, 0),
            (3, 17),
            (0x10000, 0x1ffff),
            (5, 5),
            (1, LM),
        ] {
            let ps = Labels(range_patterns(lo, hi));
            for l in [
                0, 1, 2, 3, 4, 5, 16, 17, 18, 0xffff, 0x10000, 0x1ffff, 0x20000, LM,
            ] {
                assert_eq!(
                    ps.contains(l),
                    lo <= l && l <= hi,
                    "{l:#x} in {lo:#x}-{hi:#x}"
                );
            }
        }
        assert_eq!(range_patterns(0, LM), vec![(0, 0)]);
    }

    #[test]
    fn label_patterns_subtract_exactly() {
        // Brute force over a corner of the space: the low 6 bits vary, the rest are 0.
        let pats = [
            (0, 0),
            (0x1, 0x1),
            (0x4, 0xfffc4),
            (0x0, 0xffff0),
            (0x12, LM),
            (0x20, 0xffff0 | 0x20),
        ];
        for &a in &pats {
            for &b in &pats {
                let (x, y) = (Labels(vec![a]), Labels(vec![b]));
                let diff = Dim::minus(&x, &y);
                let inter = Dim::intersect(&x, &y);
                for l in 0..64u32 {
                    let want = x.contains(l) && !y.contains(l);
                    assert_eq!(diff.contains(l), want, "{l} in {a:?} - {b:?}");
                    assert_eq!(
                        diff.0.iter().filter(|&&(v, m)| l & m == v).count(),
                        usize::from(want),
                        "pieces are disjoint"
                    );
                    assert_eq!(inter.contains(l), x.contains(l) && y.contains(l));
                }
                assert_eq!(Dim::intersects(&x, &y), !Dim::is_empty(&inter));
            }
        }
    }

    #[test]
    fn labels_show_as_ranges_and_masks() {
        assert_eq!(
            Labels(range_patterns(0x10000, 0x2ffff)).show(),
            ["0x10000-0x2ffff"]
        );
        assert_eq!(Labels(vec![(1, 1)]).show(), ["0x1/0x1"]);
        assert_eq!(Labels(vec![(0, LM)]).show(), ["0"]);
        assert_eq!(Labels::any().show(), ["any"]);
        let halves = Labels(vec![(0, 0x80000), (0x80000, 0x80000)]).simplify();
        assert_eq!(halves, Labels::any());
    }

    #[test]
    fn address_sets_show_as_the_fewest_prefixes() {
        let p = |s: &str| {
            let (a, l) = s.split_once('/').unwrap();
            Prefix::new(a.parse::<Ipv6Addr>().unwrap().into(), l.parse().unwrap())
        };
        let all = Set::one(0, u128::MAX);
        assert_eq!(addr_prefixes(&all), vec![p("::/0")]);
        let net = p("2001:db8::/32");
        let s = Set::one(net.addr, net.addr | !net.mask());
        assert_eq!(addr_prefixes(&s), vec![net]);
        let rest = all.minus(&s);
        let ps = addr_prefixes(&rest);
        assert_eq!(ps.len(), 32);
        assert!(ps.iter().all(|q| !q.covers(&net) && !net.covers(q)));
    }
}
