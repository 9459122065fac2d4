//! TupleMerge (Daly, Liu & Torng, IEEE/ACM ToN 2019): the fast engine for both key types.
//!
//! Every rule is expanded into *entries* (one per (src prefix, dst prefix) pair of its address
//! sets). Each entry has a *tuple*: its src and dst prefix lengths and a mask of the other key
//! bits that are fixed for every key it matches (the label bits of an exact or masked label, the
//! common prefix of a label range; for the 5-tuple the protocol and the common prefix of each port
//! range). Entries live in hash tables keyed on the key bits under the table's tuple; a table
//! accepts an entry whose tuple is at least as specific as its own (the *merge*), as long as the
//! bucket it lands in holds fewer than [`COLLISION_LIMIT`] entries. A new table gets a *relaxed*
//! tuple so that later rules can share it: prefix lengths rounded down to a multiple of 16 (then
//! of 8, 4, 2 when that table's bucket is full), label prefixes by nibbles, the protocol and an
//! exact destination port.
//!
//! After placement, a merge pass moves each table (smallest first) into the most specific other
//! table whose tuple fits all of its entries, when no bucket grows past [`MERGE_LIMIT`]: a table
//! created early by a specific rule is often subsumed by one created later for coarser rules. On
//! the ClassBench 10k sets this cuts tables from 18-33 to 4-9 and probes per lookup three- to
//! fivefold.
//!
//! Lookup hashes the key under each table's tuple, in order of the table's best (lowest) rule
//! index, and stops as soon as a table's best cannot beat the match found so far. Every candidate
//! from a bucket is checked in full (prefixes, label value/mask/range, protocol, port ranges), so
//! the result is exactly the linear first match. Because of that full check a bucket does not need
//! to store its key: the frozen tables are flat arrays of bucket offsets indexed by the top bits of
//! a multiplicative hash (a hash collision only adds a candidate to check). Lookup does not
//! allocate.
//!
//! The frozen tables keep only the address bits that tell entries apart (`Narrow`): when every
//! entry's prefixes share their top 96 (or 64) bits, as an IPv4-mapped policy's do, entries and
//! masks hold the low 32 (or 64) bits and a bucket hash is one multiply; a key outside that
//! shared space matches nothing and is answered before any table is probed.

use super::{Classifier, Key, RuleId};
use crate::packet::key::{FiveTuple, ThreeTuple};
use crate::policy::model::{AddrMatch, FiveMatch, LabelMatch, Policy, Prefix, ThreeMatch};
use rustc_hash::FxHashMap;

/// The fast engines (the cost model's choice) under their old path.
pub use super::fast::{FastFive, FastThree};

/// Most entries a table bucket takes before a rule has to go to another (or a new) table.
pub const COLLISION_LIMIT: usize = 32;
/// Most entries a bucket may hold after the merge pass moves a table into a coarser one. Above
/// the placement limit: a merge saves a probe for every key that reached the table, and costs a
/// few more entry checks only in the buckets that grow. On the ClassBench 10k sets 48 gave the
/// fewest ns per lookup of 24, 32, 48, 64, 80 and 128 (docs/performance.md).
pub const MERGE_LIMIT: usize = 48;

/// Build parameters (the defaults are what the measurements in docs/performance.md use).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TmConfig {
    /// Most entries per bucket before a rule goes elsewhere.
    pub collision_limit: usize,
    /// Most entries per bucket a merge may leave.
    pub merge_limit: usize,
    /// New tables round prefix lengths down to a multiple of this.
    pub addr_step: u8,
}

impl Default for TmConfig {
    fn default() -> Self {
        TmConfig {
            collision_limit: COLLISION_LIMIT,
            merge_limit: MERGE_LIMIT,
            addr_step: 16,
        }
    }
}

/// A key type the TupleMerge engine can classify: its fields as (src, dst, extra bits), and how
/// a rule of that key type splits into hashable entries plus a residual check.
pub trait TmKey: Key + Sized + Send + Sync {
    /// What an entry checks beyond its two prefixes (label, or protocol and ports).
    type Residual: Copy + Send + Sync + std::fmt::Debug;
    /// The source address.
    fn src(&self) -> u128;
    /// The destination address.
    fn dst(&self) -> u128;
    /// The non-address fields packed into one word (the label; or proto<<32 | sport<<16 | dport).
    fn extra(&self) -> u64;
    /// The non-address part of a rule: the fixed extra bits (value, mask) and the exact check.
    fn extra_part(m: &Self::Match) -> (u64, u64, Self::Residual);
    /// The source and destination address sets of a rule.
    fn addrs(m: &Self::Match) -> (&AddrMatch, &AddrMatch);
    /// The exact check of the non-address fields.
    fn residual_ok(r: &Self::Residual, key: &Self) -> bool;
    /// The extra-bits mask a new table uses for an entry with mask `mask`.
    fn relax_extra(mask: u64) -> u64;
    /// How many of [`TmKey::extra_point`]'s coordinates are used (the label; or the protocol
    /// and both ports).
    const EXTRA_DIMS: usize;
    /// The non-address fields as separate coordinates (unused ones 0), for decision trees.
    fn extra_point(&self) -> [u64; 3];
    /// The smallest box (an inclusive range per coordinate of [`TmKey::extra_point`]) holding
    /// every key the rule's non-address fields match, and whether it holds no other key (a
    /// label value/mask whose free bits are not the low ones is not a box). An empty field is
    /// `(1, 0)`.
    fn extra_box(m: &Self::Match) -> ([(u64, u64); 3], bool);
    /// The key with these addresses and [`TmKey::extra_point`] coordinates (truncated to the
    /// fields' widths), for sample keys.
    fn from_point(src: u128, dst: u128, extra: [u64; 3]) -> Self;
}

/// The residual check of a 3-tuple entry: `label & mask == value && lo <= label <= hi`, which
/// expresses any, exact, value/mask and range labels alike.
#[derive(Clone, Copy, Debug)]
pub struct LabelCheck {
    value: u32,
    mask: u32,
    lo: u32,
    hi: u32,
}

/// The residual check of a 5-tuple entry.
#[derive(Clone, Copy, Debug)]
pub struct PortCheck {
    proto_mask: u8,
    proto: u8,
    slo: u16,
    shi: u16,
    dlo: u16,
    dhi: u16,
}

/// The mask of the bits shared by every value in `lo..=hi` (their longest common prefix) within
/// a `width`-bit field, and that prefix.
fn range_prefix(lo: u32, hi: u32, width: u32) -> (u32, u32) {
    let full = if width == 32 {
        u32::MAX
    } else {
        (1u32 << width) - 1
    };
    if lo > hi {
        // Matches nothing; any hash placement is fine, the residual check rejects every key.
        return (0, 0);
    }
    let diff = lo ^ hi;
    let mask = if diff == 0 {
        full
    } else {
        full & !(u32::MAX >> diff.leading_zeros())
    };
    (lo & mask, mask)
}

impl TmKey for ThreeTuple {
    type Residual = LabelCheck;
    const EXTRA_DIMS: usize = 1;
    #[inline]
    fn extra_point(&self) -> [u64; 3] {
        [u64::from(self.label.value()), 0, 0]
    }
    fn from_point(src: u128, dst: u128, extra: [u64; 3]) -> Self {
        ThreeTuple {
            src,
            dst,
            label: crate::FlowLabel::from_low_bits(extra[0] as u32),
        }
    }
    fn extra_box(m: &ThreeMatch) -> ([(u64, u64); 3], bool) {
        const MAX: u32 = crate::FlowLabel::MASK;
        let ((lo, hi), exact) = match m.label {
            LabelMatch::Any => ((0, MAX), true),
            LabelMatch::Exact(v) => ((v.value(), v.value()), true),
            LabelMatch::Masked { value, mask } => {
                let mask = mask & MAX;
                if value & !mask != 0 {
                    ((1, 0), true)
                } else {
                    let free = MAX & !mask;
                    // Exact when the free bits are the low ones: then the set is one range.
                    ((value, value | free), free & free.wrapping_add(1) == 0)
                }
            }
            LabelMatch::Range { lo, hi } => ((lo.value(), hi.value()), true),
        };
        let (lo, hi) = if lo > hi { (1, 0) } else { (lo, hi) };
        ([(u64::from(lo), u64::from(hi)), (0, 0), (0, 0)], exact)
    }
    #[inline]
    fn src(&self) -> u128 {
        self.src
    }
    #[inline]
    fn dst(&self) -> u128 {
        self.dst
    }
    #[inline]
    fn extra(&self) -> u64 {
        u64::from(self.label.value())
    }
    fn extra_part(m: &ThreeMatch) -> (u64, u64, LabelCheck) {
        const MAX: u32 = crate::FlowLabel::MASK;
        let (value, mask, check) = match m.label {
            LabelMatch::Any => (
                0,
                0,
                LabelCheck {
                    value: 0,
                    mask: 0,
                    lo: 0,
                    hi: MAX,
                },
            ),
            LabelMatch::Exact(v) => {
                let v = v.value();
                (
                    v,
                    MAX,
                    LabelCheck {
                        value: v,
                        mask: MAX,
                        lo: 0,
                        hi: MAX,
                    },
                )
            }
            LabelMatch::Masked { value, mask } => (
                value & mask,
                mask & MAX,
                LabelCheck {
                    value,
                    mask,
                    lo: 0,
                    hi: MAX,
                },
            ),
            LabelMatch::Range { lo, hi } => {
                let (v, m) = range_prefix(lo.value(), hi.value(), 20);
                (
                    v,
                    m,
                    LabelCheck {
                        value: 0,
                        mask: 0,
                        lo: lo.value(),
                        hi: hi.value(),
                    },
                )
            }
        };
        (u64::from(value), u64::from(mask), check)
    }
    fn addrs(m: &ThreeMatch) -> (&AddrMatch, &AddrMatch) {
        (&m.src, &m.dst)
    }
    #[inline]
    fn residual_ok(r: &LabelCheck, key: &Self) -> bool {
        let l = key.label.value();
        (l & r.mask == r.value) & (r.lo <= l) & (l <= r.hi)
    }
    fn relax_extra(mask: u64) -> u64 {
        // Keep a label prefix rounded down to 4 bits; drop non-prefix masks.
        const MAX: u32 = crate::FlowLabel::MASK;
        let m = mask as u32 & MAX;
        let ones = (m << 12).leading_ones();
        if m != MAX & !(MAX >> ones) {
            return 0;
        }
        u64::from(MAX & !(MAX >> (ones - ones % 4)))
    }
}

const PROTO_SHIFT: u32 = 32;
const SPORT_SHIFT: u32 = 16;

impl TmKey for FiveTuple {
    type Residual = PortCheck;
    const EXTRA_DIMS: usize = 3;
    #[inline]
    fn extra_point(&self) -> [u64; 3] {
        [
            u64::from(self.proto),
            u64::from(self.sport),
            u64::from(self.dport),
        ]
    }
    fn from_point(src: u128, dst: u128, extra: [u64; 3]) -> Self {
        FiveTuple {
            src,
            dst,
            proto: extra[0] as u8,
            sport: extra[1] as u16,
            dport: extra[2] as u16,
        }
    }
    fn extra_box(m: &FiveMatch) -> ([(u64, u64); 3], bool) {
        let proto = m.proto.map_or((0, 255), |p| (u64::from(p), u64::from(p)));
        let port = |p: crate::policy::model::PortMatch| {
            if p.lo > p.hi {
                (1, 0)
            } else {
                (u64::from(p.lo), u64::from(p.hi))
            }
        };
        ([proto, port(m.sport), port(m.dport)], true)
    }
    #[inline]
    fn src(&self) -> u128 {
        self.src
    }
    #[inline]
    fn dst(&self) -> u128 {
        self.dst
    }
    #[inline]
    fn extra(&self) -> u64 {
        (u64::from(self.proto) << PROTO_SHIFT)
            | (u64::from(self.sport) << SPORT_SHIFT)
            | u64::from(self.dport)
    }
    fn extra_part(m: &FiveMatch) -> (u64, u64, PortCheck) {
        let (pv, pm) = match m.proto {
            Some(p) => (u64::from(p), 0xffu64),
            None => (0, 0),
        };
        let (sv, sm) = range_prefix(u32::from(m.sport.lo), u32::from(m.sport.hi), 16);
        let (dv, dm) = range_prefix(u32::from(m.dport.lo), u32::from(m.dport.hi), 16);
        let value = (pv << PROTO_SHIFT) | (u64::from(sv) << SPORT_SHIFT) | u64::from(dv);
        let mask = (pm << PROTO_SHIFT) | (u64::from(sm) << SPORT_SHIFT) | u64::from(dm);
        let check = PortCheck {
            proto_mask: pm as u8,
            proto: pv as u8,
            slo: m.sport.lo,
            shi: m.sport.hi,
            dlo: m.dport.lo,
            dhi: m.dport.hi,
        };
        (value, mask, check)
    }
    fn addrs(m: &FiveMatch) -> (&AddrMatch, &AddrMatch) {
        (&m.src, &m.dst)
    }
    #[inline]
    fn residual_ok(r: &PortCheck, k: &Self) -> bool {
        (k.proto & r.proto_mask == r.proto)
            & (r.slo <= k.sport)
            & (k.sport <= r.shi)
            & (r.dlo <= k.dport)
            & (k.dport <= r.dhi)
    }
    fn relax_extra(mask: u64) -> u64 {
        // Whole fields only: the protocol, and the destination port when it is a single value
        // (source ports are mostly wildcards and rarely tell rules apart).
        let mut out = 0;
        for (shift, full) in [(PROTO_SHIFT, 0xffu64), (0, 0xffff)] {
            if (mask >> shift) & full == full {
                out |= full << shift;
            }
        }
        out
    }
}

/// One hashable piece of a rule: one (src prefix, dst prefix) pair of it and its residual check.
/// The addresses are [`Word`]s: all 128 bits, or the low bits a [`Narrow`] keeps.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry<R, W = u128> {
    pub(crate) src: W,
    pub(crate) dst: W,
    pub(crate) rule: u32,
    pub(crate) slen: u8,
    pub(crate) dlen: u8,
    pub(crate) res: R,
}

impl<R, W: Word> Entry<R, W> {
    #[inline(always)]
    pub(crate) fn addrs_ok(&self, s: W, d: W) -> bool {
        (s & W::mask(self.slen) == self.src) & (d & W::mask(self.dlen) == self.dst)
    }

    /// This entry with its addresses narrowed to `V`, the top `drop` bits removed.
    pub(crate) fn narrowed<V: Word>(&self, drop: u8) -> Entry<R, V>
    where
        R: Copy,
        W: Into<u128>,
    {
        Entry {
            src: V::low(self.src.into()),
            dst: V::low(self.dst.into()),
            rule: self.rule,
            slen: self.slen - drop,
            dlen: self.dlen - drop,
            res: self.res,
        }
    }
}

/// An address as the frozen engine stores it: all 128 bits, or only the low 64 or 32 when every
/// entry's prefixes agree on the bits above them ([`Narrow`]). A narrow word makes an entry half
/// or a third the size, its check a few instructions, and its hash one multiply.
pub(crate) trait Word:
    Copy + Eq + Send + Sync + std::fmt::Debug + std::ops::BitAnd<Output = Self> + 'static
{
    /// The low bits of an address.
    fn low(a: u128) -> Self;
    /// The mask of a prefix of `len` bits (at most the word's width).
    fn mask(len: u8) -> Self;
    /// The bucket hash of masked key bits (its top bits pick the bucket).
    fn hash(s: Self, d: Self, e: u64) -> u64;
}

impl Word for u32 {
    #[inline(always)]
    fn low(a: u128) -> Self {
        a as u32
    }
    #[inline(always)]
    fn mask(len: u8) -> Self {
        // One shift, no branch: the top half of the 64-bit word, moved down by `len`.
        (0xffff_ffff_0000_0000u64 >> len) as u32
    }
    #[inline(always)]
    fn hash(s: u32, d: u32, e: u64) -> u64 {
        mum(
            (u64::from(s) << 32 | u64::from(d)) ^ HASH_K[0],
            e ^ HASH_K[1],
        )
    }
}

impl Word for u64 {
    #[inline(always)]
    fn low(a: u128) -> Self {
        a as u64
    }
    #[inline(always)]
    fn mask(len: u8) -> Self {
        // Two shifts that are each below 64, no branch.
        !((u64::MAX >> (len / 2)) >> (len - len / 2))
    }
    #[inline(always)]
    fn hash(s: u64, d: u64, e: u64) -> u64 {
        mum(mum(s ^ HASH_K[0], d ^ HASH_K[1]) ^ e, HASH_K[4])
    }
}

impl Word for u128 {
    #[inline(always)]
    fn low(a: u128) -> Self {
        a
    }
    #[inline(always)]
    fn mask(len: u8) -> Self {
        Prefix::mask_of(len)
    }
    #[inline(always)]
    fn hash(s: u128, d: u128, e: u64) -> u64 {
        hash(s, d, e)
    }
}

/// Which address bits the frozen engine keeps. When every entry's source prefix is at least
/// `drop` bits long and they all agree on those top bits, and likewise every destination, only
/// the low `128 - drop` bits tell entries apart (96 for an IPv4-mapped policy such as an
/// imported ClassBench set, 64 for one inside a single /64). A key whose top bits differ
/// matches no entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Narrow {
    /// Top bits dropped: 0, 64 or 96.
    pub(crate) drop: u8,
    /// The mask of the dropped bits, and the value every entry's source and destination has
    /// under it.
    top: u128,
    src_top: u128,
    dst_top: u128,
}

impl Narrow {
    /// The widest drop every entry allows.
    pub(crate) fn of<R, W: Into<u128> + Copy>(entries: &[Entry<R, W>]) -> Narrow {
        for drop in [96u8, 64] {
            let top = Prefix::mask_of(drop);
            let Some(first) = entries.first() else {
                return Narrow {
                    drop,
                    top,
                    src_top: 0,
                    dst_top: 0,
                };
            };
            let (st, dt) = (first.src.into() & top, first.dst.into() & top);
            if entries.iter().all(|e| {
                e.slen >= drop
                    && e.dlen >= drop
                    && e.src.into() & top == st
                    && e.dst.into() & top == dt
            }) {
                return Narrow {
                    drop,
                    top,
                    src_top: st,
                    dst_top: dt,
                };
            }
        }
        Narrow {
            drop: 0,
            top: 0,
            src_top: 0,
            dst_top: 0,
        }
    }

    /// Whether a key with these addresses can match any entry (always, when nothing is
    /// dropped: the mask is then 0).
    #[inline(always)]
    pub(crate) fn admits(&self, s: u128, d: u128) -> bool {
        (s & self.top == self.src_top) & (d & self.top == self.dst_top)
    }
}

/// A table's tuple: which key bits it hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Tuple {
    slen: u8,
    dlen: u8,
    emask: u64,
}

impl Tuple {
    /// True when every key an entry with tuple `e` matches agrees on this tuple's bits.
    fn fits(&self, e: &Tuple) -> bool {
        self.slen <= e.slen && self.dlen <= e.dlen && self.emask & !e.emask == 0
    }
    fn specificity(&self) -> u32 {
        u32::from(self.slen) + u32::from(self.dlen) + self.emask.count_ones()
    }
}

/// A bucket key while building: the 64-bit hash of the key bits under the table's tuple. Two
/// different keys with the same hash would share a bucket, which only adds candidates to check
/// (the frozen table does the same with fewer bits); storing the hash instead of 40 bytes of key
/// halves the build's peak memory.
type MKey = u64;

/// A frozen table: masks, the hash width, and where its bucket offsets start.
#[derive(Clone, Copy, Debug)]
struct Table<W> {
    smask: W,
    dmask: W,
    emask: u64,
    /// `64 - bits` for a table of `2^bits` buckets.
    shift: u32,
    /// Lowest rule index in the table.
    best: u32,
    /// Index of bucket 0 in `offsets`.
    base: u32,
}

/// Multiplies two words to 128 bits and folds the halves (wyhash's `mum`): every output bit
/// depends on every input bit.
#[inline(always)]
fn mum(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p >> 64) as u64 ^ p as u64
}

/// wyhash's secrets, the hash's constants.
const HASH_K: [u64; 5] = [
    0xa076_1d64_78bd_642f,
    0xe703_7ed1_a0b4_28db,
    0x8ebc_6af0_9c88_c6e3,
    0x5899_65cc_7537_4cc3,
    0x1d8e_4e27_c47d_124f,
];

#[inline(always)]
fn hash(s: u128, d: u128, e: u64) -> u64 {
    // Each address is folded by one 64x64->128 multiply, the two in parallel, then a third
    // combines them with the extra bits: two multiplies deep instead of a chain of five.
    let a = mum((s >> 64) as u64 ^ HASH_K[0], s as u64 ^ HASH_K[1]);
    let b = mum((d >> 64) as u64 ^ HASH_K[2], d as u64 ^ HASH_K[3]);
    mum(a ^ e, b ^ HASH_K[4])
}

/// The TupleMerge engine for one key type.
pub struct TupleMerge<K: TmKey> {
    narrow: Narrow,
    words: Words<K>,
}

/// The frozen tables at the address width [`Narrow`] allows.
enum Words<K: TmKey> {
    W32(Frozen<K, u32>),
    W64(Frozen<K, u64>),
    W128(Frozen<K, u128>),
}

/// Frozen tables and entries with addresses of one width.
struct Frozen<K: TmKey, W> {
    tables: Vec<Table<W>>,
    offsets: Vec<u32>,
    entries: Vec<Entry<K::Residual, W>>,
}

/// Shape of a built engine, for reports and tuning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TmStats {
    pub tables: usize,
    pub entries: usize,
    pub buckets: usize,
    pub max_bucket: usize,
}

struct BuildTable {
    tuple: Tuple,
    groups: FxHashMap<MKey, Vec<u32>>,
}

impl BuildTable {
    fn key(&self, s: u128, d: u128, e: u64) -> MKey {
        hash(
            s & Prefix::mask_of(self.tuple.slen),
            d & Prefix::mask_of(self.tuple.dlen),
            e & self.tuple.emask,
        )
    }
}

/// A policy's rules expanded into entries, with each entry's tuple and its fixed extra bits.
pub(crate) struct Expanded<R> {
    pub(crate) entries: Vec<Entry<R>>,
    tuples: Vec<Tuple>,
    evals: Vec<u64>,
}

/// Expands every rule into one entry per (src prefix, dst prefix) pair, in priority order.
pub(crate) fn expand<K: TmKey>(rules: &[&K::Match]) -> Expanded<K::Residual> {
    let any = [Prefix { addr: 0, len: 0 }];
    let mut x = Expanded {
        entries: Vec::with_capacity(rules.len()),
        tuples: Vec::with_capacity(rules.len()),
        evals: Vec::with_capacity(rules.len()),
    };
    for (i, m) in rules.iter().enumerate() {
        let (sa, da) = K::addrs(m);
        let srcs: &[Prefix] = if sa.is_any() { &any } else { &sa.0 };
        let dsts: &[Prefix] = if da.is_any() { &any } else { &da.0 };
        let (eval, emask, res) = K::extra_part(m);
        for s in srcs {
            for d in dsts {
                let s = Prefix::new(s.addr, s.len.min(128));
                let d = Prefix::new(d.addr, d.len.min(128));
                x.entries.push(Entry {
                    src: s.addr,
                    dst: d.addr,
                    rule: i as u32,
                    slen: s.len,
                    dlen: d.len,
                    res,
                });
                x.tuples.push(Tuple {
                    slen: s.len,
                    dlen: d.len,
                    emask,
                });
                x.evals.push(eval & emask);
            }
        }
    }
    x
}

/// The tables while they are built.
struct Builder {
    cfg: TmConfig,
    /// The key type's [`TmKey::relax_extra`].
    relax: fn(u64) -> u64,
    tables: Vec<BuildTable>,
    /// Table indices, most specific tuple first.
    order: Vec<usize>,
    by_tuple: FxHashMap<Tuple, usize>,
}

impl Builder {
    fn new(cfg: TmConfig, relax: fn(u64) -> u64) -> Self {
        Builder {
            cfg,
            relax,
            tables: Vec::new(),
            order: Vec::new(),
            by_tuple: FxHashMap::default(),
        }
    }

    /// Assigns each entry (in priority order) to the most specific table that fits it and has
    /// room in its bucket, else to a new table with a relaxed tuple.
    fn place<R>(&mut self, x: &Expanded<R>) {
        for (ei, e) in x.entries.iter().enumerate() {
            let (t, ev) = (x.tuples[ei], x.evals[ei]);
            let placed = self.order.iter().any(|&ti| {
                let bt = &mut self.tables[ti];
                if !bt.tuple.fits(&t) {
                    return false;
                }
                let g = bt.groups.entry(bt.key(e.src, e.dst, ev)).or_default();
                let room = g.len() < self.cfg.collision_limit;
                if room {
                    g.push(ei as u32);
                }
                room
            });
            if !placed {
                let ti = self.table_for(t);
                let bt = &mut self.tables[ti];
                let k = bt.key(e.src, e.dst, ev);
                bt.groups.entry(k).or_default().push(ei as u32);
            }
        }
    }

    /// The table a new entry with tuple `t` goes to when no existing table had room. A relaxed
    /// tuple's table exists only if this entry's bucket in it was full: then try finer steps,
    /// and at last the exact tuple, whose collisions (same hashed bits) nothing can split.
    fn table_for(&mut self, t: Tuple) -> usize {
        let mut tuple = t;
        let mut st = self.cfg.addr_step.max(1);
        while st > 1 {
            let relaxed = Tuple {
                slen: t.slen - t.slen % st,
                dlen: t.dlen - t.dlen % st,
                emask: (self.relax)(t.emask),
            };
            if !self.by_tuple.contains_key(&relaxed) {
                tuple = relaxed;
                break;
            }
            st /= 2;
        }
        if let Some(&ti) = self.by_tuple.get(&tuple) {
            return ti;
        }
        self.tables.push(BuildTable {
            tuple,
            groups: FxHashMap::default(),
        });
        let ti = self.tables.len() - 1;
        self.by_tuple.insert(tuple, ti);
        let pos = self
            .order
            .iter()
            .position(|&o| self.tables[o].tuple.specificity() < tuple.specificity())
            .unwrap_or(self.order.len());
        self.order.insert(pos, ti);
        ti
    }

    /// Merges tables: a table created early may be more specific than one created later for
    /// coarser rules; move each table, smallest first, into the most specific other table
    /// whose tuple fits all its entries and whose buckets stay within the limit. Fewer tables,
    /// fewer probes.
    fn merge<R>(&mut self, x: &Expanded<R>) {
        let tables = &mut self.tables;
        let mut by_size: Vec<usize> = (0..tables.len()).collect();
        by_size.sort_by_key(|&ti| tables[ti].groups.values().map(Vec::len).sum::<usize>());
        let mut alive = vec![true; tables.len()];
        let mut adds: FxHashMap<MKey, usize> = FxHashMap::default();
        let mut moving: Vec<u32> = Vec::new();
        let key_of = |bt: &BuildTable, e: u32| {
            let en = &x.entries[e as usize];
            bt.key(en.src, en.dst, x.evals[e as usize])
        };
        for &ti in &by_size {
            moving.clear();
            moving.extend(tables[ti].groups.values().flatten().copied());
            if moving.is_empty() {
                alive[ti] = false;
                continue;
            }
            let target = self.order.iter().copied().find(|&tj| {
                if tj == ti || !alive[tj] {
                    return false;
                }
                let bt = &tables[tj];
                if !moving.iter().all(|&e| bt.tuple.fits(&x.tuples[e as usize])) {
                    return false;
                }
                adds.clear();
                moving.iter().all(|&e| {
                    let k = key_of(bt, e);
                    let a = adds.entry(k).or_default();
                    *a += 1;
                    bt.groups.get(&k).map_or(0, Vec::len) + *a <= self.cfg.merge_limit
                })
            });
            if let Some(tj) = target {
                for &e in &moving {
                    let k = key_of(&tables[tj], e);
                    tables[tj].groups.entry(k).or_default().push(e);
                }
                tables[ti].groups = FxHashMap::default();
                alive[ti] = false;
            }
        }
    }

    /// Freezes the tables at the narrowest address width the entries allow ([`Narrow`]).
    fn freeze<K: TmKey>(self, x: &Expanded<K::Residual>) -> TupleMerge<K> {
        let narrow = Narrow::of(&x.entries);
        let words = match narrow.drop {
            96 => Words::W32(self.freeze_words(x, narrow.drop)),
            64 => Words::W64(self.freeze_words(x, narrow.drop)),
            _ => Words::W128(self.freeze_words(x, 0)),
        };
        TupleMerge { narrow, words }
    }

    /// Freezes the tables into flat bucket offsets per table and entries grouped by bucket,
    /// sorted by rule; tables in order of their best rule. Each entry's bucket is recomputed
    /// with the frozen width's hash, the one lookup uses. Tables are consumed one by one so
    /// that their maps are freed as they are frozen.
    fn freeze_words<K: TmKey, W: Word>(self, x: &Expanded<K::Residual>, drop: u8) -> Frozen<K, W> {
        let mut frozen: Vec<Table<W>> = Vec::with_capacity(self.tables.len());
        let mut offsets: Vec<u32> = Vec::new();
        let mut out: Vec<Entry<K::Residual, W>> = Vec::with_capacity(x.entries.len());
        let mut placed: Vec<(u32, u32)> = Vec::new();
        for bt in self.tables {
            let n = bt.groups.values().filter(|g| !g.is_empty()).count();
            if n == 0 {
                continue;
            }
            let bits = (2 * n).next_power_of_two().trailing_zeros().clamp(1, 31);
            let nb = 1usize << bits;
            let shift = 64 - bits;
            let smask = W::mask(bt.tuple.slen.saturating_sub(drop));
            let dmask = W::mask(bt.tuple.dlen.saturating_sub(drop));
            let emask = bt.tuple.emask;
            // (bucket, entry) pairs sorted: buckets in order, entries in rule order within each.
            placed.clear();
            for &ei in bt.groups.values().flatten() {
                let e = x.entries[ei as usize].narrowed::<W>(drop);
                let h = W::hash(e.src & smask, e.dst & dmask, x.evals[ei as usize] & emask);
                placed.push(((h >> shift) as u32, ei));
            }
            std::mem::drop(bt.groups);
            placed.sort_unstable();
            let base = offsets.len() as u32;
            let mut best = u32::MAX;
            let mut next = placed.iter().peekable();
            for b in 0..nb as u32 {
                offsets.push(out.len() as u32);
                while let Some(&(_, ei)) = next.next_if(|&&(pb, _)| pb == b) {
                    let e = x.entries[ei as usize].narrowed::<W>(drop);
                    best = best.min(e.rule);
                    out.push(e);
                }
            }
            offsets.push(out.len() as u32);
            frozen.push(Table {
                smask,
                dmask,
                emask,
                shift,
                best,
                base,
            });
        }
        frozen.sort_by_key(|t| t.best);
        Frozen {
            tables: frozen,
            offsets,
            entries: out,
        }
    }
}

impl<K: TmKey> TupleMerge<K> {
    /// Builds the engine from the policy's rules of this key type.
    pub fn new(policy: &Policy) -> Self {
        Self::from_matches(&K::rules(policy))
    }

    /// Builds the engine from rules in priority order.
    pub fn from_matches(rules: &[&K::Match]) -> Self {
        Self::with_config(rules, TmConfig::default())
    }

    /// Builds the engine with explicit parameters, in four phases: expand the rules into
    /// entries, place each entry in a table, merge tables into coarser ones, freeze the tables
    /// into flat arrays.
    pub fn with_config(rules: &[&K::Match], cfg: TmConfig) -> Self {
        let entries = expand::<K>(rules);
        let mut b = Builder::new(cfg, K::relax_extra);
        b.place(&entries);
        b.merge(&entries);
        b.freeze::<K>(&entries)
    }

    /// The first matching rule index, or `None`.
    #[inline]
    pub fn lookup(&self, key: &K) -> Option<RuleId> {
        self.search::<false>(key).0
    }

    /// Like [`TupleMerge::lookup`], also counting the tables probed and the entries checked
    /// (for tuning and reports; the same loop as `lookup`).
    pub fn lookup_counted(&self, key: &K) -> (Option<RuleId>, usize, usize) {
        self.search::<true>(key)
    }

    /// The lookup: a key outside the entries' common top bits matches nothing; others go
    /// to the tables at their frozen width.
    #[inline(always)]
    fn search<const COUNT: bool>(&self, key: &K) -> (Option<RuleId>, usize, usize) {
        let (s, d) = (key.src(), key.dst());
        if !self.narrow.admits(s, d) {
            return (None, 0, 0);
        }
        match &self.words {
            Words::W32(f) => f.search::<COUNT>(u32::low(s), u32::low(d), key),
            Words::W64(f) => f.search::<COUNT>(u64::low(s), u64::low(d), key),
            Words::W128(f) => f.search::<COUNT>(s, d, key),
        }
    }

    /// Tables, entries and bucket sizes.
    pub fn stats(&self) -> TmStats {
        match &self.words {
            Words::W32(f) => f.stats(),
            Words::W64(f) => f.stats(),
            Words::W128(f) => f.stats(),
        }
    }

    /// The address bits the frozen tables keep (32, 64 or 128).
    pub fn address_bits(&self) -> u8 {
        128 - self.narrow.drop
    }
}

impl<K: TmKey, W: Word> Frozen<K, W> {
    /// The lookup loop: tables in order of their best rule, stopping once a table cannot beat
    /// the match found so far. With `COUNT`, also the tables probed and the entries checked
    /// (the counters compile away without it).
    #[inline(always)]
    fn search<const COUNT: bool>(&self, s: W, d: W, key: &K) -> (Option<RuleId>, usize, usize) {
        let x = key.extra();
        let (mut best, mut probes, mut checks) = (u32::MAX, 0, 0);
        for t in &self.tables {
            if t.best >= best {
                break;
            }
            if COUNT {
                probes += 1;
            }
            let h = W::hash(s & t.smask, d & t.dmask, x & t.emask);
            let b = t.base as usize + (h >> t.shift) as usize;
            let (lo, hi) = (self.offsets[b] as usize, self.offsets[b + 1] as usize);
            for e in &self.entries[lo..hi] {
                if e.rule >= best {
                    break;
                }
                if COUNT {
                    checks += 1;
                }
                if e.addrs_ok(s, d) && K::residual_ok(&e.res, key) {
                    best = e.rule;
                    break;
                }
            }
        }
        ((best != u32::MAX).then_some(RuleId(best)), probes, checks)
    }

    fn stats(&self) -> TmStats {
        let mut max_bucket = 0;
        let mut buckets = 0;
        for t in &self.tables {
            let n = 1usize << (64 - t.shift);
            for b in 0..n {
                let i = t.base as usize + b;
                let len = (self.offsets[i + 1] - self.offsets[i]) as usize;
                max_bucket = max_bucket.max(len);
                buckets += usize::from(len > 0);
            }
        }
        TmStats {
            tables: self.tables.len(),
            entries: self.entries.len(),
            buckets,
            max_bucket,
        }
    }

    fn memory_bytes(&self) -> usize {
        self.tables.capacity() * std::mem::size_of::<Table<W>>()
            + self.offsets.capacity() * 4
            + self.entries.capacity() * std::mem::size_of::<Entry<K::Residual, W>>()
    }
}

impl<K: TmKey> Classifier<K> for TupleMerge<K>
where
    K: Send + Sync,
{
    fn name(&self) -> &'static str {
        "tuplemerge"
    }

    #[inline]
    fn classify(&self, key: &K) -> Option<RuleId> {
        self.lookup(key)
    }

    fn classify_counted(&self, key: &K) -> (Option<RuleId>, u32) {
        let (r, probes, _) = self.search::<true>(key);
        (r, probes as u32)
    }

    fn memory_bytes(&self) -> usize {
        match &self.words {
            Words::W32(f) => f.memory_bytes(),
            Words::W64(f) => f.memory_bytes(),
            Words::W128(f) => f.memory_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FlowLabel;
    use crate::classify::Linear;
    use crate::policy::model::PortMatch;

    fn p(s: &str) -> Prefix {
        let (a, l) = s.split_once('/').unwrap_or((s, "128"));
        Prefix::new(
            a.parse::<std::net::Ipv6Addr>().unwrap().into(),
            l.parse().unwrap(),
        )
    }

    fn policy(three: Vec<ThreeMatch>, five: Vec<FiveMatch>) -> Policy {
        Policy::from_matches(three, five)
    }

    #[test]
    fn every_word_mask_is_the_prefix_mask_at_that_width() {
        for len in 0..=128u8 {
            let m = Prefix::mask_of(len);
            assert_eq!(<u128 as Word>::mask(len), m, "u128 /{len}");
            if len <= 64 {
                assert_eq!(<u64 as Word>::mask(len), (m >> 64) as u64, "u64 /{len}");
            }
            if len <= 32 {
                assert_eq!(<u32 as Word>::mask(len), (m >> 96) as u32, "u32 /{len}");
            }
        }
    }

    #[test]
    fn range_prefix_is_common_prefix() {
        assert_eq!(range_prefix(5, 5, 16), (5, 0xffff));
        assert_eq!(range_prefix(0, 65535, 16), (0, 0));
        assert_eq!(range_prefix(1024, 2047, 16), (1024, 0xfc00));
        assert_eq!(range_prefix(0x100, 0x1ff, 20), (0x100, 0xfff00));
        assert_eq!(range_prefix(9, 3, 16), (0, 0));
    }

    #[test]
    fn relax_label_keeps_nibble_prefixes() {
        assert_eq!(ThreeTuple::relax_extra(0xfffff), 0xfffff);
        assert_eq!(ThreeTuple::relax_extra(0xf0000), 0xf0000);
        assert_eq!(ThreeTuple::relax_extra(0xfc000), 0xf0000);
        assert_eq!(ThreeTuple::relax_extra(0xe0000), 0);
        assert_eq!(ThreeTuple::relax_extra(0x000ff), 0);
        assert_eq!(ThreeTuple::relax_extra(0), 0);
        assert_eq!(FiveTuple::relax_extra(0xff_ffff_fc00), 0xff_0000_0000);
        assert_eq!(FiveTuple::relax_extra(0xff_ffff_ffff), 0xff_0000_ffff);
    }

    #[test]
    fn three_tuple_first_match_with_sets_labels_and_ranges() {
        let l = |v| FlowLabel::new(v).unwrap();
        let pol = policy(
            vec![
                ThreeMatch {
                    src: AddrMatch(vec![p("2001:db8:a::/48")]),
                    dst: AddrMatch(vec![p("2001:db8:ff::/64"), p("2001:db8:fe::1")]),
                    label: LabelMatch::Masked {
                        value: 0x10000,
                        mask: 0xf0000,
                    },
                },
                ThreeMatch {
                    src: AddrMatch(vec![p("2001:db8:b::/48")]),
                    dst: AddrMatch::any(),
                    label: LabelMatch::Exact(l(0)),
                },
                ThreeMatch {
                    src: AddrMatch::any(),
                    dst: AddrMatch::any(),
                    label: LabelMatch::Range {
                        lo: l(0x100),
                        hi: l(0x1ff),
                    },
                },
            ],
            vec![],
        );
        let fast = FastThree::new(&pol);
        let lin = Linear::<ThreeTuple>::new(&pol);
        let a = |s: &str| -> u128 { s.parse::<std::net::Ipv6Addr>().unwrap().into() };
        let keys = [
            ("2001:db8:a::5", "2001:db8:fe::1", 0x12345, Some(0)),
            ("2001:db8:a::5", "2001:db8:fe::2", 0x12345, None),
            ("2001:db8:a::5", "2001:db8:ff::9", 0x1ffff, Some(0)),
            ("2001:db8:a::5", "2001:db8:ff::9", 0x150, Some(2)),
            ("2001:db8:b::5", "::1", 0, Some(1)),
            ("2001:db8:b::5", "::1", 0x1ff, Some(2)),
            ("2001:db8:b::5", "::1", 0x200, None),
        ];
        for (s, d, lab, want) in keys {
            let k = ThreeTuple {
                src: a(s),
                dst: a(d),
                label: l(lab),
            };
            assert_eq!(fast.classify(&k), want.map(RuleId), "{k:?}");
            assert_eq!(lin.classify(&k), want.map(RuleId), "{k:?}");
        }
    }

    #[test]
    fn five_tuple_port_ranges_checked_after_hash_hit() {
        let pm = |lo, hi| PortMatch { lo, hi };
        let m = |proto, d: PortMatch| FiveMatch {
            src: AddrMatch::any(),
            dst: AddrMatch(vec![p("2001:db8::/32")]),
            proto,
            sport: PortMatch::ANY,
            dport: d,
        };
        let pol = policy(
            vec![],
            vec![
                m(Some(6), pm(1000, 1010)),
                m(Some(6), pm(443, 443)),
                m(None, PortMatch::ANY),
            ],
        );
        let fast = FastFive::new(&pol);
        let k = |proto, dport| FiveTuple {
            src: 1,
            dst: 0x2001_0db8_u128 << 96 | 7,
            proto,
            sport: 1,
            dport,
        };
        assert_eq!(fast.classify(&k(6, 1005)), Some(RuleId(0)));
        assert_eq!(fast.classify(&k(6, 1011)), Some(RuleId(2)));
        assert_eq!(fast.classify(&k(6, 443)), Some(RuleId(1)));
        assert_eq!(fast.classify(&k(17, 443)), Some(RuleId(2)));
        let outside = FiveTuple {
            dst: 5,
            ..k(6, 443)
        };
        assert_eq!(fast.classify(&outside), None);
    }

    #[test]
    fn merge_pass_folds_specific_tables_into_coarser_ones() {
        let m = |src: &str| ThreeMatch {
            src: AddrMatch(vec![p(src)]),
            dst: AddrMatch::any(),
            label: LabelMatch::Any,
        };
        // The /128 rule comes first and gets its own table; the /48 rules' table fits it too.
        let rules = vec![
            m("2001:db8:1::1"),
            m("2001:db8:2::/48"),
            m("2001:db8:3::/48"),
            m("2001:db8:1::/48"),
        ];
        let fast = TupleMerge::<ThreeTuple>::new(&policy(rules, vec![]));
        assert_eq!(fast.stats().tables, 1);
        let k = |a: &str| ThreeTuple {
            src: a.parse::<std::net::Ipv6Addr>().unwrap().into(),
            dst: 9,
            label: FlowLabel::ZERO,
        };
        assert_eq!(fast.classify(&k("2001:db8:1::1")), Some(RuleId(0)));
        assert_eq!(fast.classify(&k("2001:db8:1::2")), Some(RuleId(3)));
        assert_eq!(fast.classify(&k("2001:db8:3::2")), Some(RuleId(2)));
        assert_eq!(fast.classify(&k("2001:db8:4::2")), None);
    }

    #[test]
    fn empty_policy_matches_nothing() {
        let pol = policy(vec![], vec![]);
        let k = ThreeTuple {
            src: 1,
            dst: 2,
            label: FlowLabel::ZERO,
        };
        assert_eq!(FastThree::new(&pol).classify(&k), None);
        assert_eq!(TupleMerge::<ThreeTuple>::new(&pol).stats().tables, 0);
    }
}
