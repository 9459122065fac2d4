//! Cover by the union of several earlier rules (W0006): does every packet a rule matches also
//! match some earlier rule, although no single earlier rule matches them all? The box
//! subtraction here ([`subtract`], generic over a field's set type by [`Dim`]) is also what
//! `diff` cuts policies into regions with.
//!
//! A rule's match is a region of its key space: the product, over the key's fields, of a set of
//! intervals per field. An address set is the intervals of its prefixes, a label is one interval
//! or, for a value/mask, the runs of labels it matches, a protocol is one value or all 256, a
//! port range is one interval. [`union_cover`] subtracts earlier rules' regions from the rule's
//! region, kept as a list of disjoint boxes, until nothing is left (covered) or a point is left
//! that no earlier rule matches (not covered: that packet reaches the rule). The earlier rules
//! come from that search itself: each round takes the lowest corner of a box still left and asks
//! the caller for the earlier rules that match that packet, so only rules that overlap the rule
//! are ever looked at.
//!
//! The answer "covered" is always right. It may be missed, never invented:
//! - a value/mask label whose runs are too many to list is widened to the interval from its
//!   least to its greatest member when it is the rule under test, and narrowed to its first runs
//!   (inside the rule's labels) when it is a covering rule; a covering rule whose labels include
//!   all of the rule's counts as matching any label;
//! - each rule gets a budget (rounds, index entries scanned, boxes, box subtractions); past it
//!   the search gives up and the rule is not reported.

use crate::label::FlowLabel;
use crate::policy::model::{AddrMatch, FiveMatch, LabelMatch, PortMatch, ThreeMatch};
use rustc_hash::FxHashSet;

/// An inclusive interval of one field's values.
pub(crate) type Iv = (u128, u128);

/// A non-empty (except as an intermediate result) sorted list of disjoint intervals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Set(Vec<Iv>);

impl Set {
    pub(crate) fn one(lo: u128, hi: u128) -> Set {
        Set(vec![(lo, hi)])
    }

    /// Sorts and merges overlapping or touching intervals.
    pub(crate) fn from_intervals(mut v: Vec<Iv>) -> Set {
        v.sort_unstable();
        let mut out: Vec<Iv> = Vec::with_capacity(v.len());
        for (lo, hi) in v {
            match out.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => out.push((lo, hi)),
            }
        }
        Set(out)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn min(&self) -> u128 {
        self.0.first().map_or(0, |iv| iv.0)
    }

    /// The intervals, sorted and disjoint.
    pub(crate) fn intervals(&self) -> &[Iv] {
        &self.0
    }

    /// True when `v` lies in the set.
    pub(crate) fn contains(&self, v: u128) -> bool {
        let i = self.0.partition_point(|iv| iv.1 < v);
        self.0.get(i).is_some_and(|iv| iv.0 <= v)
    }

    pub(crate) fn intersects(&self, o: &Set) -> bool {
        let (mut i, mut j) = (0, 0);
        while i < self.0.len() && j < o.0.len() {
            let (a, b) = (self.0[i], o.0[j]);
            if a.0.max(b.0) <= a.1.min(b.1) {
                return true;
            }
            if a.1 < b.1 {
                i += 1;
            } else {
                j += 1;
            }
        }
        false
    }

    pub(crate) fn intersect(&self, o: &Set) -> Set {
        let mut out = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < self.0.len() && j < o.0.len() {
            let (a, b) = (self.0[i], o.0[j]);
            let (lo, hi) = (a.0.max(b.0), a.1.min(b.1));
            if lo <= hi {
                out.push((lo, hi));
            }
            if a.1 < b.1 {
                i += 1;
            } else {
                j += 1;
            }
        }
        Set(out)
    }

    pub(crate) fn minus(&self, o: &Set) -> Set {
        let mut out = Vec::new();
        let mut j = 0;
        for &(lo, hi) in &self.0 {
            while j < o.0.len() && o.0[j].1 < lo {
                j += 1;
            }
            // `cur` is the least value of [lo, hi] not yet known to be inside `o`.
            let mut cur = lo;
            let mut rest = true;
            for &(c, d) in o.0[j..].iter().take_while(|iv| iv.0 <= hi) {
                if c > cur {
                    out.push((cur, c - 1));
                }
                if d >= hi {
                    rest = false;
                    break;
                }
                cur = cur.max(d + 1);
            }
            if rest {
                out.push((cur, hi));
            }
        }
        Set(out)
    }
}

/// The set of values one field of a box takes: what [`subtract`] needs of it. [`Set`] (sorted
/// intervals) is one; `diff` adds value/mask patterns for flow labels.
pub(crate) trait Dim: Clone {
    fn is_empty(&self) -> bool;
    fn intersects(&self, o: &Self) -> bool;
    fn intersect(&self, o: &Self) -> Self;
    fn minus(&self, o: &Self) -> Self;
}

impl Dim for Set {
    fn is_empty(&self) -> bool {
        Set::is_empty(self)
    }
    fn intersects(&self, o: &Self) -> bool {
        Set::intersects(self, o)
    }
    fn intersect(&self, o: &Self) -> Self {
        Set::intersect(self, o)
    }
    fn minus(&self, o: &Self) -> Self {
        Set::minus(self, o)
    }
}

/// A product of one set per field.
type Region = Vec<Set>;

/// A rule's match as a region of its key space.
pub(crate) trait Space {
    /// The region of this match, or a superset of it: the rule under test.
    fn outer(&self) -> Region;
    /// A subset of this match's region that still holds all of its overlap with `rule`: an
    /// earlier rule tried as part of a cover of `rule`.
    fn inner(&self, rule: &Self) -> Region;
    /// True when this match matches the key at `point` (one value per field, as in [`Space::outer`]).
    fn contains(&self, point: &[u128]) -> bool;
    /// The least key this match matches, field by field (the first fields of the array).
    fn least(&self) -> Point;
    /// How many fields the key has.
    fn dims(&self) -> usize;
}

/// A key, one value per field; a key with fewer than five fields leaves the last ones 0.
pub(crate) type Point = [u128; 5];

fn addr_least(a: &AddrMatch) -> u128 {
    if a.is_any() {
        return 0;
    }
    a.0.iter().map(|p| p.addr).min().unwrap_or(0)
}

pub(crate) fn addr_set(a: &AddrMatch) -> Set {
    if a.is_any() {
        return Set::one(0, u128::MAX);
    }
    Set::from_intervals(a.0.iter().map(|p| (p.addr, p.addr | !p.mask())).collect())
}

/// At most this many runs of a value/mask label are listed.
const LABEL_RUNS: usize = 64;

/// The least label `>= x` with `label & mask == value`, if any.
fn next_masked(x: u32, value: u32, mask: u32) -> Option<u32> {
    if x > FlowLabel::MASK {
        return None;
    }
    if x & mask == value {
        return Some(x);
    }
    // Keep x's bits above some bit p that is 0 in x, set p, and take the least bits below:
    // the lowest such p that is allowed gives the least label.
    (0..20).find_map(|p| {
        let bit = 1u32 << p;
        let above = FlowLabel::MASK & !((bit << 1) - 1);
        let ok = x & bit == 0
            && x & mask & above == value & above
            && (mask & bit == 0 || value & bit != 0);
        ok.then(|| (x & above) | bit | (value & (bit - 1)))
    })
}

/// The runs of labels in `[lo, hi]` with `label & mask == value`, and whether they are all
/// there (false when there were more than `LABEL_RUNS`).
fn masked_runs(value: u32, mask: u32, lo: u32, hi: u32) -> (Vec<Iv>, bool) {
    let mask = mask & FlowLabel::MASK;
    let value = value & mask;
    // The free bits below the lowest mask bit vary within one run.
    let run = if mask == 0 {
        FlowLabel::MASK
    } else {
        (1u32 << mask.trailing_zeros()) - 1
    };
    let high_free = FlowLabel::MASK & !mask & !run;
    let mut out = Vec::new();
    let mut base = next_masked(lo & !run, value, mask | run);
    while let Some(b) = base {
        if b > hi {
            break;
        }
        if out.len() == LABEL_RUNS {
            return (out, false);
        }
        out.push((u128::from(b.max(lo)), u128::from((b | run).min(hi))));
        // The next base: count up through the free bits above the run.
        let s = ((b & high_free) | !high_free).wrapping_add(1) & high_free;
        base = (s != 0).then_some(value | s);
    }
    (out, true)
}

fn label_hull(l: &LabelMatch) -> (u32, u32) {
    match *l {
        LabelMatch::Masked { value, mask } => {
            let mask = mask & FlowLabel::MASK;
            (value & mask, (value & mask) | (FlowLabel::MASK & !mask))
        }
        _ => l.as_range().unwrap_or((0, FlowLabel::MASK)),
    }
}

fn label_outer(l: &LabelMatch) -> Set {
    let (lo, hi) = label_hull(l);
    match *l {
        LabelMatch::Masked { value, mask } => match masked_runs(value, mask, lo, hi) {
            (runs, true) => Set::from_intervals(runs),
            (_, false) => Set::one(u128::from(lo), u128::from(hi)),
        },
        _ => Set::one(u128::from(lo), u128::from(hi)),
    }
}

fn label_inner(l: &LabelMatch, rule: &LabelMatch) -> Set {
    if l.covers(rule) {
        return Set::one(0, u128::from(FlowLabel::MASK));
    }
    match *l {
        LabelMatch::Masked { value, mask } => {
            let (lo, hi) = label_hull(rule);
            Set::from_intervals(masked_runs(value, mask, lo, hi).0)
        }
        _ => {
            let (lo, hi) = label_hull(l);
            Set::one(u128::from(lo), u128::from(hi))
        }
    }
}

pub(crate) fn port_set(p: &PortMatch) -> Set {
    Set::one(u128::from(p.lo), u128::from(p.hi))
}

pub(crate) fn proto_set(p: Option<u8>) -> Set {
    match p {
        Some(p) => Set::one(u128::from(p), u128::from(p)),
        None => Set::one(0, 255),
    }
}

impl Space for ThreeMatch {
    fn outer(&self) -> Region {
        vec![
            addr_set(&self.src),
            addr_set(&self.dst),
            label_outer(&self.label),
        ]
    }
    fn inner(&self, rule: &Self) -> Region {
        vec![
            addr_set(&self.src),
            addr_set(&self.dst),
            label_inner(&self.label, &rule.label),
        ]
    }
    fn contains(&self, p: &[u128]) -> bool {
        let [src, dst, label] = *p else { return false };
        self.src.matches(src)
            && self.dst.matches(dst)
            && u32::try_from(label).is_ok_and(|l| {
                l <= FlowLabel::MASK && self.label.matches(FlowLabel::from_low_bits(l))
            })
    }
    fn least(&self) -> Point {
        let label = label_hull(&self.label).0;
        [
            addr_least(&self.src),
            addr_least(&self.dst),
            u128::from(label),
            0,
            0,
        ]
    }
    fn dims(&self) -> usize {
        3
    }
}

impl Space for FiveMatch {
    fn outer(&self) -> Region {
        vec![
            addr_set(&self.src),
            addr_set(&self.dst),
            proto_set(self.proto),
            port_set(&self.sport),
            port_set(&self.dport),
        ]
    }
    fn inner(&self, _rule: &Self) -> Region {
        self.outer()
    }
    fn contains(&self, p: &[u128]) -> bool {
        let [src, dst, proto, sport, dport] = *p else {
            return false;
        };
        let (Ok(proto), Ok(sport), Ok(dport)) = (
            u8::try_from(proto),
            u16::try_from(sport),
            u16::try_from(dport),
        ) else {
            return false;
        };
        self.src.matches(src)
            && self.dst.matches(dst)
            && self.proto.is_none_or(|p| p == proto)
            && self.sport.matches(sport)
            && self.dport.matches(dport)
    }
    fn least(&self) -> Point {
        [
            addr_least(&self.src),
            addr_least(&self.dst),
            u128::from(self.proto.unwrap_or(0)),
            u128::from(self.sport.lo),
            u128::from(self.dport.lo),
        ]
    }
    fn dims(&self) -> usize {
        5
    }
}

/// The search's limits for one rule.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget {
    /// Rounds: lookups of the earlier rules that match one point.
    pub rounds: usize,
    /// Index entries the lookups may scan, over all rounds.
    pub scan: usize,
    /// Boxes left at once.
    pub boxes: usize,
    /// Box subtractions, over all rounds and the final trimming of the cover.
    pub work: usize,
}

impl Budget {
    pub const DEFAULT: Budget = Budget {
        rounds: 64,
        scan: 4096,
        boxes: 1024,
        work: 16384,
    };
}

/// The outcome of one lookup: the earlier rules that match a point.
pub(crate) enum Lookup {
    /// Every one of them was found.
    Complete,
    /// The scan budget ran out.
    OverBudget,
}

/// Removes `c` from every box of `rem`, leaving disjoint boxes. `None` when the budget runs out
/// (`budget.work` box subtractions counted in `work`, `budget.boxes` boxes left at once);
/// otherwise whether anything was removed.
pub(crate) fn subtract<D: Dim>(
    rem: &mut Vec<Vec<D>>,
    c: &[D],
    work: &mut usize,
    budget: &Budget,
) -> Option<bool> {
    let mut out: Vec<Vec<D>> = Vec::with_capacity(rem.len());
    let mut hit = false;
    for b in rem.drain(..) {
        *work += 1;
        if *work > budget.work {
            return None;
        }
        if !b.iter().zip(c).all(|(x, y)| x.intersects(y)) {
            out.push(b);
            continue;
        }
        hit = true;
        // b \ c as disjoint pieces: the part of b outside c in field k, inside c in the fields
        // before k.
        for k in 0..b.len() {
            let diff = b[k].minus(&c[k]);
            if diff.is_empty() {
                continue;
            }
            let mut piece: Vec<D> = Vec::with_capacity(b.len());
            piece.extend(b[..k].iter().zip(c).map(|(x, y)| x.intersect(y)));
            piece.push(diff);
            piece.extend(b[k + 1..].iter().cloned());
            out.push(piece);
        }
        if out.len() > budget.boxes {
            return None;
        }
    }
    *rem = out;
    Some(hit)
}

/// True when the regions together cover `region` (within the budget).
fn covered(region: &Region, parts: &[&Region], work: &mut usize, budget: &Budget) -> bool {
    let mut rem = vec![region.clone()];
    for c in parts {
        if subtract(&mut rem, c, work, budget).is_none() {
            return false;
        }
        if rem.is_empty() {
            return true;
        }
    }
    rem.is_empty()
}

/// What [`union_cover`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Cover {
    /// These earlier rules (indices, in order) together match every key the rule matches.
    By(Vec<usize>),
    /// A key of the rule's region matches no earlier rule, so the rule is reachable; or, when
    /// the rule's region was widened or a covering rule's narrowed, nothing more could be
    /// proved.
    Open,
    /// The budget ran out.
    OverBudget,
}

/// Whether earlier rules together match every key `rule` matches, when no one of them does.
/// `earlier(i)` is the match of earlier rule `i`; `lookup(point, out, left)` appends to `out`
/// the indices of the earlier rules that match `point` (in any order, repeats allowed), taking
/// the index entries it looks at from `left`. The caller has done the first lookup, at the
/// rule's least key ([`Space::least`]): `hits` holds its answer (and is then reused), `scan_left`
/// what is left of `budget.scan` after it.
/// A cover names its rules with those the others make redundant left out (when that is cheap
/// to find).
pub(crate) fn union_cover<'a, M: Space + 'a>(
    rule: &M,
    earlier: impl Fn(usize) -> &'a M,
    hits: &mut Vec<usize>,
    scan_left: usize,
    lookup: impl FnMut(&[u128], &mut Vec<usize>, &mut usize) -> Lookup,
    budget: &Budget,
) -> Cover {
    match search(rule, earlier, hits, scan_left, lookup, budget) {
        Ok(by) => Cover::By(by),
        Err(c) => c,
    }
}

fn search<'a, M: Space + 'a>(
    rule: &M,
    earlier: impl Fn(usize) -> &'a M,
    hits: &mut Vec<usize>,
    mut scan_left: usize,
    mut lookup: impl FnMut(&[u128], &mut Vec<usize>, &mut usize) -> Lookup,
    budget: &Budget,
) -> Result<Vec<usize>, Cover> {
    if hits.is_empty() {
        return Err(Cover::Open);
    }
    let mut work = 0;
    let region = rule.outer();
    let mut rem = vec![region.clone()];
    let mut tried: FxHashSet<usize> = FxHashSet::default();
    let mut used: Vec<(usize, Region)> = Vec::new();
    for round in 0.. {
        if round > 0 {
            // The least key of a box still left.
            let Some(b) = rem.first() else { break };
            if round >= budget.rounds {
                return Err(Cover::OverBudget);
            }
            let point: Vec<u128> = b.iter().map(Set::min).collect();
            hits.clear();
            if let Lookup::OverBudget = lookup(&point, hits, &mut scan_left) {
                return Err(Cover::OverBudget);
            }
        }
        hits.sort_unstable();
        hits.dedup();
        hits.retain(|i| !tried.contains(i));
        // No earlier rule matches this key of the rule (or none that was not tried already,
        // which happens only when a covering rule was narrowed).
        if hits.is_empty() {
            return Err(Cover::Open);
        }
        for &i in hits.iter() {
            tried.insert(i);
            let c = earlier(i).inner(rule);
            if subtract(&mut rem, &c, &mut work, budget).ok_or(Cover::OverBudget)? {
                used.push((i, c));
            }
            if rem.is_empty() {
                break;
            }
        }
    }
    used.sort_unstable_by_key(|(i, _)| *i);
    // Leave out rules the others make redundant, trying the latest first.
    if used.len() <= 16 {
        let mut k = used.len();
        while k > 0 {
            k -= 1;
            let others: Vec<&Region> = used
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != k)
                .map(|(_, (_, c))| c)
                .collect();
            if covered(&region, &others, &mut work, budget) {
                used.remove(k);
            }
        }
    }
    Ok(used.into_iter().map(|(i, _)| i).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[(u128, u128)]) -> Set {
        Set(v.to_vec())
    }

    #[test]
    fn set_operations() {
        let a = set(&[(0, 9), (20, 29)]);
        let b = set(&[(5, 24)]);
        assert_eq!(a.intersect(&b), set(&[(5, 9), (20, 24)]));
        assert_eq!(a.minus(&b), set(&[(0, 4), (25, 29)]));
        assert_eq!(b.minus(&a), set(&[(10, 19)]));
        assert!(a.intersects(&b));
        assert!(!a.intersects(&set(&[(10, 19)])));
        assert!(a.minus(&set(&[(0, u128::MAX)])).is_empty());
        assert_eq!(
            set(&[(0, u128::MAX)]).minus(&set(&[(0, 0), (u128::MAX, u128::MAX)])),
            set(&[(1, u128::MAX - 1)])
        );
        assert_eq!(
            Set::from_intervals(vec![(5, 7), (0, 3), (4, 4), (9, 9)]),
            set(&[(0, 7), (9, 9)])
        );
    }

    fn brute_runs(value: u32, mask: u32, lo: u32, hi: u32) -> Vec<Iv> {
        let members = (lo..=hi).filter(|l| l & mask == value).map(u128::from);
        Set::from_intervals(members.map(|l| (l, l)).collect()).0
    }

    #[test]
    fn masked_runs_match_brute_force() {
        for (value, mask) in [
            (0, 0),
            (0x1, 0x1),
            (0x10000, 0xf0000),
            (0x5, 0xf000f),
            (0x80001, 0x80003),
            (0x0, 0xffff0),
        ] {
            for (lo, hi) in [
                (0, 0xfffff),
                (3, 17),
                (0x10000, 0x2ffff),
                (0xffff0, 0xfffff),
            ] {
                let (runs, all) = masked_runs(value, mask, lo, hi);
                let want = brute_runs(value, mask, lo, hi);
                if want.len() <= LABEL_RUNS {
                    assert!(all, "{value:#x}/{mask:#x} in {lo:#x}-{hi:#x}");
                    assert_eq!(runs, want, "{value:#x}/{mask:#x} in {lo:#x}-{hi:#x}");
                } else {
                    assert!(!all);
                    assert_eq!(runs[..], want[..LABEL_RUNS]);
                }
            }
        }
    }

    /// `union_cover` over plain matches, every earlier one scanned at every lookup.
    fn cover_of(rules: &[ThreeMatch], budget: &Budget) -> Cover {
        let (rule, earlier) = rules.split_last().unwrap();
        let lookup = |point: &[u128], out: &mut Vec<usize>, left: &mut usize| {
            let Some(l) = left.checked_sub(earlier.len()) else {
                return Lookup::OverBudget;
            };
            *left = l;
            out.extend((0..earlier.len()).filter(|&i| earlier[i].contains(point)));
            Lookup::Complete
        };
        let mut hits = Vec::new();
        let mut left = budget.scan;
        if let Lookup::OverBudget = lookup(&rule.least()[..3], &mut hits, &mut left) {
            return Cover::OverBudget;
        }
        union_cover(rule, |i| &earlier[i], &mut hits, left, lookup, budget)
    }

    fn dst(p: &str) -> ThreeMatch {
        let (a, l) = p.split_once('/').unwrap();
        let a: std::net::Ipv6Addr = a.parse().unwrap();
        ThreeMatch {
            src: AddrMatch::any(),
            dst: AddrMatch(vec![crate::policy::model::Prefix::new(
                a.into(),
                l.parse().unwrap(),
            )]),
            label: LabelMatch::Any,
        }
    }

    #[test]
    fn outcomes() {
        let quarters: Vec<ThreeMatch> =
            ["2001:db8::/34", "2001:db8:4000::/34", "2001:db8:8000::/33"]
                .into_iter()
                .map(dst)
                .collect();
        let all = dst("2001:db8::/32");
        let rules = [quarters.clone(), vec![all.clone()]].concat();
        assert_eq!(cover_of(&rules, &Budget::DEFAULT), Cover::By(vec![0, 1, 2]));
        // Each round finds one quarter: two rounds are not enough.
        let tight = Budget {
            rounds: 2,
            ..Budget::DEFAULT
        };
        assert_eq!(cover_of(&rules, &tight), Cover::OverBudget);
        let tight = Budget {
            scan: 5,
            ..Budget::DEFAULT
        };
        assert_eq!(cover_of(&rules, &tight), Cover::OverBudget);
        let rules = [quarters[..2].to_vec(), vec![all]].concat();
        assert_eq!(cover_of(&rules, &Budget::DEFAULT), Cover::Open);
    }
}
