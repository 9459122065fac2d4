//! HyperSplit (Qi, Xu, Yang, Li & Li, "Packet Classification Algorithms: From Theory to
//! Practice", INFOCOM 2009): a decision tree over the key's fields, the fast engine where
//! TupleMerge needs many tables.
//!
//! A key is a point in seven coordinates: the high and low 64 bits of the source and of the
//! destination address, then the non-address fields ([`TmKey::extra_point`]: the label; or the
//! protocol and both ports). A prefix is a range in the high half and a range in the low half,
//! so every entry of a rule (one (src prefix, dst prefix) pair, as in TupleMerge) is a box. When
//! the policy's entries all share their top 64 or 96 address bits (TupleMerge's `Narrow`: an
//! IPv4-mapped policy, say), the high halves are dropped from the point and the leaves hold
//! 32- or 64-bit addresses; a key outside the shared space matches nothing. Each
//! binary split divides its region in one coordinate at one value; an entry that straddles the
//! value goes to both children. The builder picks, in every coordinate, the value that makes the
//! larger child smallest (on a strided sample of at most [`SAMPLE`] entries for large nodes), and
//! stops at [`LEAF_SIZE`] entries. Entries below the first one that covers the whole region are
//! dropped (they can never be the first match there). Once a coordinate is chosen, the next two
//! levels split the same coordinate when that still divides the entries, and the built binary
//! tree is collapsed so that each node holds up to seven values of one coordinate: one 64-byte
//! node per three binary levels.
//!
//! Lookup walks from the root; at each node the child is the number of values below the key's
//! coordinate (counted without a branch). The leaf's entries are then checked in rule order in
//! full (prefixes, label value/mask/range, protocol, port ranges), so the result is exactly the
//! linear first match. Leaves hold copies of their entries so a leaf is one contiguous run.
//! Each node also records the coordinate each of its children reads, so a one-key walk loads
//! the key's next coordinate beside the next node rather than after it.
//! [`HyperSplit::lookup_batch`] walks [`BATCH`] keys side by side so that their loads overlap.
//! Lookup does not allocate.
//!
//! A set whose rules overlap in many ways can make the tree replicate entries without bound;
//! the builder gives up (returns `None`) past a budget of entry copies and nodes, and the caller
//! keeps TupleMerge.

use super::tuplemerge::{Entry, Narrow, TmKey, Word, expand};
use super::{Classifier, RuleId};
use crate::policy::model::{Policy, Prefix};

/// A leaf holds at most this many entries unless no split can divide them (the default of
/// [`HsConfig::leaf_size`]).
pub const LEAF_SIZE: usize = 4;

/// Build parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HsConfig {
    /// A leaf holds at most this many entries unless no split can divide them.
    pub leaf_size: usize,
    /// The most nodes plus leaf entry copies per entry before the build gives up.
    pub budget_per_entry: usize,
}
/// Nodes larger than this choose their split on a strided sample of this many entries.
pub const SAMPLE: usize = 512;
/// The deepest a leaf may lie.
const MAX_DEPTH: u32 = 48;
/// Coordinates: src high, src low, dst high, dst low, then up to three non-address fields.
const DIMS: usize = 7;
/// `Node::dim` of a leaf.
const LEAF: u8 = u8::MAX;
/// Levels of binary splits in one coordinate that the builder tries to chain (their values
/// make one [`MNode`]).
pub(crate) const RUN: u32 = 3;
/// `MNode::dim` of a leaf (the point's eighth coordinate, always 0, so a leaf's index stays in
/// bounds too).
const LEAF_DIM: u8 = 7;
/// Keys [`HyperSplit::lookup_batch`] walks side by side.
pub const BATCH: usize = 8;
/// Values in one [`MNode`].
const FANOUT: usize = (1 << RUN) - 1;

/// A node of the built tree (one cache line): an inner node sends a key whose coordinate `dim`
/// is greater than `i` of its values (unused values are `u64::MAX`) to child `child + i`
/// (`i` is counted without a branch). A leaf (`dim == LEAF_DIM`) holds `thr[1]` entries from
/// `thr[0]` on. `kids` holds the coordinate each child reads, three bits a child, so a one-key
/// walk fetches the next coordinate of the key while the child's cache line is still on its
/// way (the coordinate load leaves the chain of dependent loads: acl5 38 -> 34 ns). A batched
/// walk reads `dim` instead: there the loads of eight keys overlap anyway, and fewer
/// instructions per step count more.
#[derive(Clone, Copy, Debug)]
#[repr(align(64))]
struct MNode {
    thr: [u64; FANOUT],
    child: u32,
    dim: u8,
    kids: [u8; 3],
}

impl MNode {
    /// The coordinate child `go` reads.
    #[inline(always)]
    fn kid_dim(&self, go: usize) -> usize {
        let kids = u32::from_le_bytes([self.kids[0], self.kids[1], self.kids[2], 0]);
        ((kids >> (3 * go)) & 7) as usize
    }
}

/// Fills every inner node's `kids` from its children's coordinates.
fn link_kids(nodes: &mut [MNode]) {
    for i in 0..nodes.len() {
        let n = nodes[i];
        if n.dim == LEAF_DIM {
            continue;
        }
        let children = 1 + n.thr.iter().filter(|&&t| t != u64::MAX).count();
        let mut kids = 0u32;
        for c in 0..children {
            kids |= u32::from(nodes[n.child as usize + c].dim) << (3 * c);
        }
        let [a, b, c, _] = kids.to_le_bytes();
        nodes[i].kids = [a, b, c];
    }
}

/// Collapses the binary tree under `bin[i]` into `out[at]`: each node takes its descendants
/// that split the same coordinate, breadth first, up to [`FANOUT`] values.
///
/// Returns the height of the collapsed subtree (0 for a leaf).
fn collapse(bin: &[Node], out: &mut Vec<MNode>, at: usize, i: usize) -> u32 {
    let n = bin[i];
    if n.dim == LEAF {
        let mut thr = [u64::MAX; FANOUT];
        thr[0] = u64::from(n.child);
        thr[1] = n.thr;
        out[at] = MNode {
            thr,
            child: at as u32,
            dim: LEAF_DIM,
            // Its one child is itself, a leaf too (a batched walk may step past a leaf).
            kids: [LEAF_DIM, 0, 0],
        };
        return 0;
    }
    let mut frontier = vec![i];
    let mut vals: Vec<u64> = Vec::with_capacity(FANOUT);
    loop {
        let mut grew = false;
        let mut j = 0;
        while j < frontier.len() {
            let f = bin[frontier[j]];
            if f.dim == n.dim && vals.len() < FANOUT {
                vals.insert(j, f.thr);
                let c = f.child as usize;
                frontier.splice(j..=j, [c, c + 1]);
                j += 2;
                grew = true;
            } else {
                j += 1;
            }
        }
        if !grew {
            break;
        }
    }
    let mut thr = [u64::MAX; FANOUT];
    thr[..vals.len()].copy_from_slice(&vals);
    let base = out.len();
    out.extend(std::iter::repeat_n(out[at], frontier.len()));
    out[at] = MNode {
        thr,
        child: base as u32,
        dim: n.dim,
        kids: [0; 3],
    };
    let mut height = 0;
    for (c, &f) in frontier.iter().enumerate() {
        height = height.max(collapse(bin, out, base + c, f));
    }
    height + 1
}

/// One node of the binary tree while it is built: an inner node sends keys whose coordinate `dim` is at most `thr` to `child`, the
/// others to `child + 1`; a leaf (`dim == LEAF`) holds `thr` entries from `child` on.
#[derive(Clone, Copy, Debug)]
struct Node {
    thr: u64,
    child: u32,
    dim: u8,
}

type Region = [(u64, u64); DIMS];

/// The high-half and low-half ranges of a prefix.
fn prefix_ranges(addr: u128, len: u8) -> [(u64, u64); 2] {
    let m = Prefix::mask_of(len);
    let (lo, hi) = (addr & m, (addr & m) | !m);
    [
        ((lo >> 64) as u64, (hi >> 64) as u64),
        (lo as u64, hi as u64),
    ]
}

/// The HyperSplit engine for one key type.
pub struct HyperSplit<K: TmKey> {
    nodes: Vec<MNode>,
    /// The leaves' entries, with addresses as narrow as [`Narrow`] allows (as in TupleMerge).
    leaves: Leaves<K::Residual>,
    narrow: Narrow,
    /// Nodes from the root to the deepest leaf, the leaf included.
    height: u32,
    /// Nodes a batched walk takes side by side before each key finishes alone
    /// ([`batch_steps`]).
    batch_steps: u32,
}

/// Leaves (of all leaves) that a batched walk's lockstep part should reach: the rest finish
/// their walk one key at a time.
const BATCH_LEAF_SHARE: f64 = 0.9;

/// The fewest nodes from the root (the leaf included) within which [`BATCH_LEAF_SHARE`] of the
/// leaves lie. A batched walk goes that far for every key side by side and lets the few keys
/// bound for deeper leaves finish alone, so one deep corner of the tree does not make every key
/// take its depth in steps.
fn batch_steps(nodes: &[MNode]) -> u32 {
    let mut depths: Vec<u32> = Vec::new();
    let mut stack = vec![(0usize, 1u32)];
    while let Some((i, depth)) = stack.pop() {
        let n = &nodes[i];
        if n.dim == LEAF_DIM {
            depths.push(depth);
            continue;
        }
        let children = 1 + n.thr.iter().filter(|&&t| t != u64::MAX).count();
        stack.extend((0..children).map(|c| (n.child as usize + c, depth + 1)));
    }
    depths.sort_unstable();
    let at = ((depths.len() as f64 * BATCH_LEAF_SHARE).ceil() as usize).clamp(1, depths.len());
    depths[at - 1]
}

/// The key's coordinates (the eighth is always 0, so a masked index stays in bounds): both
/// 64-bit halves of each address when `wide`, else (a narrowed policy, see `Narrow`) only the
/// low half, all its entries differ in (two fewer coordinates for the builder to weigh and for
/// splits to waste levels on).
#[inline(always)]
fn point<K: TmKey>(key: &K, wide: bool) -> [u64; 8] {
    let (s, d, x) = (key.src(), key.dst(), key.extra_point());
    if wide {
        [
            (s >> 64) as u64,
            s as u64,
            (d >> 64) as u64,
            d as u64,
            x[0],
            x[1],
            x[2],
            0,
        ]
    } else {
        [s as u64, d as u64, x[0], x[1], x[2], 0, 0, 0]
    }
}

/// Leaf entries at one address width.
enum Leaves<R> {
    W32(Vec<Entry<R, u32>>),
    W64(Vec<Entry<R, u64>>),
    W128(Vec<Entry<R, u128>>),
}

impl<R: Copy> Leaves<R> {
    fn new(entries: Vec<Entry<R>>, narrow: Narrow) -> Self {
        fn to<R: Copy, W: Word>(v: Vec<Entry<R>>, drop: u8) -> Vec<Entry<R, W>> {
            v.iter().map(|e| e.narrowed::<W>(drop)).collect()
        }
        match narrow.drop {
            96 => Leaves::W32(to(entries, 96)),
            64 => Leaves::W64(to(entries, 64)),
            _ => Leaves::W128(entries.into_iter().collect()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Leaves::W32(v) => v.len(),
            Leaves::W64(v) => v.len(),
            Leaves::W128(v) => v.len(),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Leaves::W32(v) => v.capacity() * std::mem::size_of::<Entry<R, u32>>(),
            Leaves::W64(v) => v.capacity() * std::mem::size_of::<Entry<R, u64>>(),
            Leaves::W128(v) => v.capacity() * std::mem::size_of::<Entry<R, u128>>(),
        }
    }
}

/// The first entry of `run` whose addresses and residual match, and the entries checked.
#[inline(always)]
fn scan<K: TmKey, W: Word, const COUNT: bool>(
    run: &[Entry<K::Residual, W>],
    key: &K,
) -> (Option<RuleId>, usize) {
    let (s, d) = (W::low(key.src()), W::low(key.dst()));
    let mut checks = 0;
    for e in run {
        if COUNT {
            checks += 1;
        }
        if e.addrs_ok(s, d) && K::residual_ok(&e.res, key) {
            return (Some(RuleId(e.rule)), checks);
        }
    }
    (None, checks)
}

/// Shape of a built tree, for reports and tuning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct HsStats {
    pub nodes: usize,
    /// Entry copies held by the leaves (entries straddling splits count once per leaf).
    pub leaf_entries: usize,
    /// Nodes from the root to the deepest leaf, the leaf included.
    pub height: u32,
}

/// The tree while it is built.
struct Builder<'a, R> {
    entries: &'a [Entry<R>],
    boxes: Vec<Region>,
    /// The entry's box is exactly the keys it matches (so covering a region means matching
    /// every key in it).
    exact: Vec<bool>,
    dims: usize,
    nodes: Vec<Node>,
    leaves: Vec<Entry<R>>,
    /// Most nodes plus leaf entry copies before the build gives up.
    budget: usize,
    leaf_size: usize,
    los: Vec<u64>,
    his: Vec<u64>,
    cands: Vec<u64>,
}

/// The build went over its budget.
struct TooBig;

impl<R: Copy> Builder<'_, R> {
    fn covers(&self, e: u32, r: &Region) -> bool {
        let b = &self.boxes[e as usize];
        (0..self.dims).all(|d| b[d].0 <= r[d].0 && r[d].1 <= b[d].1)
    }

    fn leaf(&mut self, at: usize, ents: &[u32]) {
        self.nodes[at] = Node {
            thr: ents.len() as u64,
            child: self.leaves.len() as u32,
            dim: LEAF,
        };
        let entries = self.entries;
        self.leaves
            .extend(ents.iter().map(|&e| entries[e as usize]));
    }

    /// The best split of `ents` in coordinate `d`: (value, larger child, both children).
    fn split_in(&mut self, ents: &[u32], r: &Region, d: usize) -> Option<(u64, usize, usize)> {
        let (rlo, rhi) = r[d];
        if rlo == rhi {
            return None;
        }
        let step = ents.len().div_ceil(SAMPLE);
        self.los.clear();
        self.his.clear();
        self.cands.clear();
        for &e in ents.iter().step_by(step) {
            let (lo, hi) = self.boxes[e as usize][d];
            let (lo, hi) = (lo.max(rlo), hi.min(rhi));
            self.los.push(lo);
            self.his.push(hi);
            if lo > rlo {
                self.cands.push(lo - 1);
            }
            if hi < rhi {
                self.cands.push(hi);
            }
        }
        if self.cands.is_empty() {
            return None;
        }
        self.los.sort_unstable();
        self.his.sort_unstable();
        self.cands.sort_unstable();
        self.cands.dedup();
        let n = self.los.len();
        let (mut il, mut ih) = (0, 0);
        let mut best: Option<(u64, usize, usize)> = None;
        for &x in &self.cands {
            while il < n && self.los[il] <= x {
                il += 1;
            }
            while ih < n && self.his[ih] <= x {
                ih += 1;
            }
            let (left, right) = (il, n - ih);
            let key = (left.max(right), left + right);
            if best.is_none_or(|(_, m, s)| key < (m, s)) {
                best = Some((x, key.0, key.1));
            }
        }
        best.map(|(x, m, s)| (x, m * step, s * step))
    }

    /// Fills node `at` with the tree for `ents` (in rule order) within `region`.
    ///
    /// `run` continues a run of splits in one coordinate (the coordinate and how many more
    /// levels): the three levels of a run become one [`MNode`] of up to seven values.
    fn fill(
        &mut self,
        at: usize,
        mut ents: Vec<u32>,
        region: Region,
        depth: u32,
        run: Option<(usize, u32)>,
    ) -> Result<(), TooBig> {
        if let Some(i) = ents
            .iter()
            .position(|&e| self.exact[e as usize] && self.covers(e, &region))
        {
            ents.truncate(i + 1);
        }
        if self.nodes.len() + self.leaves.len() > self.budget {
            return Err(TooBig);
        }
        if ents.len() <= self.leaf_size || depth >= MAX_DEPTH {
            self.leaf(at, &ents);
            return Ok(());
        }
        let mut best: Option<(usize, u64, usize, usize)> = None;
        if let Some((d, _)) = run
            && let Some((x, m, s)) = self.split_in(&ents, &region, d)
            && m < ents.len()
        {
            best = Some((d, x, m, s));
        }
        let run_on = best.is_some();
        for d in (0..self.dims).filter(|_| !run_on) {
            if let Some((x, m, s)) = self.split_in(&ents, &region, d)
                && best.is_none_or(|(_, _, bm, bs)| (m, s) < (bm, bs))
            {
                best = Some((d, x, m, s));
            }
        }
        let Some((d, x, _, _)) = best else {
            self.leaf(at, &ents);
            return Ok(());
        };
        let (left, right): (Vec<u32>, Vec<u32>) = (
            ents.iter()
                .copied()
                .filter(|&e| self.boxes[e as usize][d].0 <= x)
                .collect(),
            ents.iter()
                .copied()
                .filter(|&e| self.boxes[e as usize][d].1 > x)
                .collect(),
        );
        if left.len() == ents.len() && right.len() == ents.len() {
            // Sampling chose a value no entry ends at: nothing divides.
            self.leaf(at, &ents);
            return Ok(());
        }
        drop(ents);
        let child = self.nodes.len();
        self.nodes.extend(
            [Node {
                thr: 0,
                child: 0,
                dim: LEAF,
            }; 2],
        );
        self.nodes[at] = Node {
            thr: x,
            child: child as u32,
            dim: d as u8,
        };
        let (mut rl, mut rr) = (region, region);
        rl[d].1 = x;
        rr[d].0 = x + 1;
        let next = match run {
            Some((rd, k)) if run_on && rd == d => k.checked_sub(1).map(|k| (d, k)),
            _ => Some((d, RUN - 2)),
        };
        self.fill(child, left, rl, depth + 1, next)?;
        self.fill(child + 1, right, rr, depth + 1, next)
    }
}

impl<K: TmKey> HyperSplit<K> {
    /// Builds the tree for the policy's rules of this key type, or `None` when it would hold
    /// more than `cfg.budget_per_entry` nodes and entry copies per entry (see the module doc).
    pub fn new(policy: &Policy, cfg: HsConfig) -> Option<Self> {
        Self::from_matches(&K::rules(policy), cfg)
    }

    /// As [`HyperSplit::new`], from rules in priority order.
    pub fn from_matches(rules: &[&K::Match], cfg: HsConfig) -> Option<Self> {
        let x = expand::<K>(rules);
        let narrow = Narrow::of(&x.entries);
        let wide = narrow.drop == 0;
        let extra: Vec<([(u64, u64); 3], bool)> = rules.iter().map(|m| K::extra_box(m)).collect();
        let mut boxes = Vec::with_capacity(x.entries.len());
        let mut exact = Vec::with_capacity(x.entries.len());
        let mut ents = Vec::with_capacity(x.entries.len());
        for (i, e) in x.entries.iter().enumerate() {
            let (xb, ex) = extra[e.rule as usize];
            let [s0, s1] = prefix_ranges(e.src, e.slen);
            let [d0, d1] = prefix_ranges(e.dst, e.dlen);
            let b = if wide {
                [s0, s1, d0, d1, xb[0], xb[1], xb[2]]
            } else {
                [s1, d1, xb[0], xb[1], xb[2], (0, 0), (0, 0)]
            };
            // An empty field matches nothing: the entry can never be a first match.
            if b.iter().all(|&(lo, hi)| lo <= hi) {
                ents.push(i as u32);
            }
            boxes.push(b);
            exact.push(ex);
        }
        drop(extra);
        let dims = if wide { 4 } else { 2 } + K::EXTRA_DIMS;
        let mut region: Region = [(0, u64::MAX); DIMS];
        for r in region.iter_mut().skip(dims) {
            *r = (0, 0);
        }
        let mut b = Builder {
            entries: &x.entries,
            boxes,
            exact,
            dims,
            nodes: vec![Node {
                thr: 0,
                child: 0,
                dim: LEAF,
            }],
            leaves: Vec::new(),
            budget: cfg
                .budget_per_entry
                .saturating_mul(x.entries.len())
                .max(1 << 12),
            leaf_size: cfg.leaf_size.max(1),
            los: Vec::new(),
            his: Vec::new(),
            cands: Vec::new(),
        };
        b.fill(0, ents, region, 0, None).ok()?;
        let (bin, leaves) = (b.nodes, b.leaves);
        let mut nodes = vec![
            MNode {
                thr: [u64::MAX; FANOUT],
                child: 0,
                dim: LEAF,
                kids: [0; 3],
            };
            1
        ];
        let height = collapse(&bin, &mut nodes, 0, 0) + 1;
        link_kids(&mut nodes);
        drop(bin);
        nodes.shrink_to_fit();
        let batch_steps = batch_steps(&nodes);
        Some(HyperSplit {
            batch_steps,
            nodes,
            height,
            leaves: Leaves::new(leaves, narrow),
            narrow,
        })
    }

    /// The first matching rule index, or `None`.
    #[inline]
    pub fn lookup(&self, key: &K) -> Option<RuleId> {
        self.search::<false>(key).0
    }

    /// Classifies `keys` into `out` (pairwise, up to the shorter), walking [`BATCH`] keys
    /// through the tree side by side for `batch_steps` nodes (a leaf sends a key to itself),
    /// so those steps have no data-dependent branch and their memory loads overlap, as DPDK's
    /// `rte_acl_classify` does for its batches; a key bound for a deeper leaf then finishes
    /// alone.
    pub fn lookup_batch(&self, keys: &[K], out: &mut [Option<RuleId>]) {
        for (ks, os) in keys.chunks(BATCH).zip(out.chunks_mut(BATCH)) {
            let mut pts = [[0u64; 8]; BATCH];
            let mut at = [0usize; BATCH];
            for (p, k) in pts.iter_mut().zip(ks) {
                *p = point(k, self.wide());
            }
            for _ in 1..self.batch_steps {
                for (a, p) in at.iter_mut().zip(&pts) {
                    let n = &self.nodes[*a];
                    let v = p[usize::from(n.dim & 7)];
                    let go = n.thr.iter().map(|&t| usize::from(v > t)).sum::<usize>();
                    *a = n.child as usize + go;
                }
            }
            for (((o, k), &a), p) in os.iter_mut().zip(ks).zip(&at).zip(&pts) {
                let mut n = &self.nodes[a];
                while n.dim != LEAF_DIM {
                    let v = p[usize::from(n.dim & 7)];
                    let go = n.thr.iter().map(|&t| usize::from(v > t)).sum::<usize>();
                    n = &self.nodes[n.child as usize + go];
                }
                *o = self.scan_leaf::<false>(n, k).0;
            }
        }
    }

    /// The first matching entry of leaf `n`, and the entries checked.
    #[inline(always)]
    fn scan_leaf<const COUNT: bool>(&self, n: &MNode, key: &K) -> (Option<RuleId>, usize) {
        if !self.narrow.admits(key.src(), key.dst()) {
            return (None, 0);
        }
        let run = n.thr[0] as usize..(n.thr[0] + n.thr[1]) as usize;
        match &self.leaves {
            Leaves::W32(v) => scan::<K, u32, COUNT>(&v[run], key),
            Leaves::W64(v) => scan::<K, u64, COUNT>(&v[run], key),
            Leaves::W128(v) => scan::<K, u128, COUNT>(&v[run], key),
        }
    }

    /// Like [`HyperSplit::lookup`], also counting the nodes visited (the leaf included) and the
    /// entries checked (the same loop as `lookup`).
    pub fn lookup_counted(&self, key: &K) -> (Option<RuleId>, usize, usize) {
        self.search::<true>(key)
    }

    #[inline(always)]
    fn search<const COUNT: bool>(&self, key: &K) -> (Option<RuleId>, usize, usize) {
        let p = point(key, self.wide());
        let mut visited = 1;
        let mut n = &self.nodes[0];
        let mut dim = usize::from(n.dim & 7);
        while dim != usize::from(LEAF_DIM) {
            if COUNT {
                visited += 1;
            }
            let v = p[dim];
            let go = n.thr.iter().map(|&t| usize::from(v > t)).sum::<usize>();
            dim = n.kid_dim(go);
            n = &self.nodes[n.child as usize + go];
        }
        let (r, checks) = self.scan_leaf::<COUNT>(n, key);
        (r, visited, checks)
    }

    /// Whether points keep both halves of each address (the policy is not narrowed).
    #[inline(always)]
    fn wide(&self) -> bool {
        self.narrow.drop == 0
    }

    /// Nodes, leaf entry copies and height.
    pub fn stats(&self) -> HsStats {
        HsStats {
            nodes: self.nodes.len(),
            leaf_entries: self.leaves.len(),
            height: self.height,
        }
    }
}

impl<K: TmKey> Classifier<K> for HyperSplit<K>
where
    K: Send + Sync,
{
    fn name(&self) -> &'static str {
        "hypersplit"
    }

    #[inline]
    fn classify(&self, key: &K) -> Option<RuleId> {
        self.lookup(key)
    }

    fn classify_batch(&self, keys: &[K], out: &mut [Option<RuleId>]) {
        self.lookup_batch(keys, out);
    }

    fn classify_counted(&self, key: &K) -> (Option<RuleId>, u32) {
        let (r, visited, _) = self.search::<true>(key);
        (r, visited as u32)
    }

    fn memory_bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<MNode>() + self.leaves.bytes()
    }
}
