//! `flowpol bench` measurement: every engine on the same packets in one process. Frames are
//! loaded into memory first (from a capture, or built by the caller, e.g. from a ClassBench
//! trace), then timed in two stages: key extraction (3-tuple: link layer and fixed header;
//! 5-tuple: the same plus the extension-header walk) and lookup on the extracted keys. Every
//! engine's result on every key is compared with the linear reference of its tuple kind, and
//! the reference's first matches are returned per frame (for the ClassBench trace check).
//!
//! Times are the measuring thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`): on a shared machine
//! the time other processes hold the core is not counted (their cache interference still is).
//!
//! [`sweep`] measures lookup alone on keys the caller draws, at several rule counts.

pub mod plot;
pub mod sweep;

use crate::classify::{Classifier, Engine, EngineKind, Key, RuleId, TmKey};
use crate::packet::key::Unavailable;
use crate::packet::{self, FiveTuple, LinkType, ThreeTuple};
use crate::policy::Policy;
use crate::source::pcap::{CaptureError, CaptureReader};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

/// Every engine kind, in the order `--engines` lists them: bench, plot and sweep report each.
pub fn all_engines() -> Vec<EngineKind> {
    <EngineKind as clap::ValueEnum>::value_variants().to_vec()
}

/// Frames held in memory: one buffer, one end offset and link type per frame.
#[derive(Debug, Default)]
pub struct Frames {
    data: Vec<u8>,
    ends: Vec<usize>,
    links: Vec<LinkType>,
    /// Which IPv6 header of a tunnelled packet is keyed.
    tunnel: packet::tunnel::Mode,
}

impl Frames {
    /// Every frame of a pcap or pcapng file.
    pub fn from_capture(path: &Path) -> Result<Self, CaptureError> {
        let mut r = CaptureReader::open(path)?;
        let mut f = Frames::default();
        r.for_each(|fr| f.push(fr.link, fr.data))?;
        Ok(f)
    }

    /// Keys the outermost (the default) or the innermost IPv6 header of tunnelled packets.
    pub fn with_tunnel(mut self, tunnel: packet::tunnel::Mode) -> Self {
        self.tunnel = tunnel;
        self
    }

    /// Appends one frame.
    pub fn push(&mut self, link: LinkType, data: &[u8]) {
        self.data.extend_from_slice(data);
        self.ends.push(self.data.len());
        self.links.push(link);
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when there are no frames.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = (LinkType, &[u8])> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .zip(self.links.iter().copied())
            .map(|((s, e), l)| (l, &self.data[s..e]))
    }
}

/// One engine on one tuple kind.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EngineRow {
    /// The engine's name (`linear`, `tuplemerge`, ...).
    pub name: String,
    /// `three` or `five`.
    pub tuple: &'static str,
    /// Rules of this tuple kind.
    pub rules: usize,
    /// Packets classified (IPv6 packets; for the 5-tuple, those whose 5-tuple is available).
    pub keys: usize,
    pub build_ms: f64,
    /// Approximate heap bytes of the built engine.
    pub bytes: usize,
    /// Nanoseconds per packet to extract this tuple kind's key.
    pub key_ns: f64,
    /// Nanoseconds per key to classify it, one key at a time.
    pub lookup_ns: f64,
    /// Nanoseconds per key when keys are classified in batches of [`BATCH`]
    /// ([`Classifier::classify_batch`]), as DPDK's `rte_acl_classify` takes them: engines that
    /// walk several keys side by side (HyperSplit) overlap their memory loads.
    pub batch_ns: f64,
    /// Packets per second for key extraction and lookup together.
    pub pps: f64,
    /// Keys on which this engine disagrees with the linear reference.
    pub mismatches: u64,
    /// Probes per lookup, averaged over the keys: hash tables (TupleMerge), tree nodes
    /// (HyperSplit) or rules tried (linear); why a set is slow for an engine.
    pub probes: f64,
}

/// IPv6 packets without a 5-tuple, and why (the availability the 3-tuple does not depend on).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct NoFiveTuple {
    /// IPv6 packets whose 5-tuple is not available.
    pub packets: usize,
    /// `packets` over the IPv6 packets (0 when there are none).
    pub share: f64,
    /// Per reason ([`Unavailable::as_str`]), every reason present, zeros included.
    pub by_reason: BTreeMap<&'static str, usize>,
}

impl NoFiveTuple {
    fn new() -> Self {
        NoFiveTuple {
            packets: 0,
            share: 0.0,
            by_reason: Unavailable::ALL.iter().map(|u| (u.as_str(), 0)).collect(),
        }
    }

    /// `N of M IPv6 packets (P%)`, then the reasons that have packets.
    pub fn describe(&self, ipv6: usize) -> String {
        let mut s = format!(
            "{} of {} IPv6 packets ({:.1}%) have no 5-tuple",
            thousands(self.packets as u64),
            thousands(ipv6 as u64),
            self.share * 100.0
        );
        let why: Vec<String> = self
            .by_reason
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(r, n)| format!("{r} {}", thousands(*n as u64)))
            .collect();
        if !why.is_empty() {
            s += &format!(": {}", why.join(", "));
        }
        s
    }
}

/// `n` with a comma between groups of three digits: `11,950`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The whole measurement.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchReport {
    /// Frames read.
    pub packets: usize,
    /// IPv6 frames among them.
    pub ipv6: usize,
    /// IPv6 frames whose 5-tuple was available.
    pub five_available: usize,
    /// IPv6 frames whose 5-tuple was not, by reason.
    pub no_five_tuple: NoFiveTuple,
    /// Sum of the engines' mismatches (must be 0).
    pub mismatches: u64,
    pub engines: Vec<EngineRow>,
}

/// The linear reference's first match on each frame, in frame order: `None` for a frame that
/// has no key of that kind (not IPv6; for `five`, no 5-tuple) or that no rule matches, and
/// empty when the policy has no rule of that kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FirstMatches {
    pub three: Vec<Option<RuleId>>,
    pub five: Vec<Option<RuleId>>,
}

/// A measurement and the reference answers it was checked against.
#[derive(Clone, Debug)]
pub struct Measured {
    pub report: BenchReport,
    pub first: FirstMatches,
}

/// CPU time of the calling thread: on a shared machine, wall time would also count the time
/// other processes held the core. Wall time where the clock is not available.
pub fn thread_time() -> Duration {
    use nix::time::{ClockId, clock_gettime};
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    match clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID) {
        Ok(t) => Duration::from(t),
        Err(_) => START.get_or_init(Instant::now).elapsed(),
    }
}

/// Repeats `f` over at least `min` of the thread's CPU time; returns nanoseconds per call of
/// `f` divided by `per` (the items `f` processes).
/// Keys per call when lookups are timed in batches.
pub const BATCH: usize = 64;

fn time_per(per: usize, min: Duration, mut f: impl FnMut() -> u64) -> f64 {
    if per == 0 {
        return 0.0;
    }
    let mut rounds = 0u64;
    let start = thread_time();
    let spent = loop {
        black_box(f());
        rounds += 1;
        let spent = thread_time().saturating_sub(start);
        if spent >= min {
            break spent;
        }
    };
    spent.as_nanos().max(1) as f64 / (rounds as f64 * per as f64)
}

/// A frame's index among the 3-tuple keys and among the 5-tuple keys.
type At = (Option<u32>, Option<u32>);

struct Keys {
    three: Vec<ThreeTuple>,
    five: Vec<FiveTuple>,
    /// Per frame: its index in `three` (None: not IPv6) and in `five` (None: no 5-tuple).
    at: Vec<At>,
    missing: NoFiveTuple,
    three_ns: f64,
    five_ns: f64,
}

/// [`packet::three_inner`] without the tunnel kind, shaped as [`packet::three`].
fn three_inner(
    link: LinkType,
    data: &[u8],
) -> Result<(ThreeTuple, packet::ipv6::Fixed<'_>), packet::NonIpv6> {
    packet::three_inner(link, data).map(|(t, f, _)| (t, f))
}

fn extract(frames: &Frames, min: Duration) -> Keys {
    // Monomorphised per mode, so the outer loop is the same code as before `--tunnel`.
    match frames.tunnel {
        packet::tunnel::Mode::Outer => extract_with(frames, min, packet::three),
        packet::tunnel::Mode::Inner => extract_with(frames, min, three_inner),
    }
}

fn extract_with<F>(frames: &Frames, min: Duration, three_of: F) -> Keys
where
    F: for<'a> Fn(
        LinkType,
        &'a [u8],
    ) -> Result<(ThreeTuple, packet::ipv6::Fixed<'a>), packet::NonIpv6>,
{
    let mut three = Vec::with_capacity(frames.len());
    let mut five = Vec::with_capacity(frames.len());
    let mut at = Vec::with_capacity(frames.len());
    let mut missing = NoFiveTuple::new();
    for (link, data) in frames.iter() {
        let Ok((t, fixed)) = three_of(link, data) else {
            at.push((None, None));
            continue;
        };
        let i3 = three.len() as u32;
        three.push(t);
        match packet::five_of(&fixed, &t) {
            (_, Ok(f)) => {
                at.push((Some(i3), Some(five.len() as u32)));
                five.push(f);
            }
            (_, Err(why)) => {
                at.push((Some(i3), None));
                missing.packets += 1;
                *missing.by_reason.entry(why.as_str()).or_default() += 1;
            }
        }
    }
    if !three.is_empty() {
        missing.share = missing.packets as f64 / three.len() as f64;
    }
    let n = frames.len();
    let three_ns = time_per(n, min, || {
        let mut acc = 0u64;
        for (link, data) in frames.iter() {
            if let Ok((t, _)) = three_of(link, black_box(data)) {
                acc = acc.wrapping_add(u64::from(t.label.value()));
            }
        }
        acc
    });
    let five_ns = time_per(n, min, || {
        let mut acc = 0u64;
        for (link, data) in frames.iter() {
            if let Ok((t, fixed)) = three_of(link, black_box(data))
                && let (_, Ok(f)) = packet::five_of(&fixed, &t)
            {
                acc = acc.wrapping_add(u64::from(f.dport));
            }
        }
        acc
    });
    Keys {
        three,
        five,
        at,
        missing,
        three_ns,
        five_ns,
    }
}

fn results<K: Key, C: Classifier<K> + ?Sized>(c: &C, keys: &[K]) -> Vec<Option<RuleId>> {
    keys.iter().map(|k| c.classify(k)).collect()
}

#[allow(clippy::too_many_arguments)]
fn row<K: Key, C: Classifier<K>>(
    tuple: &'static str,
    rules: usize,
    build: impl FnOnce() -> C,
    keys: &[K],
    key_ns: f64,
    reference: Option<&[Option<RuleId>]>,
    min: Duration,
) -> (EngineRow, Vec<Option<RuleId>>) {
    let t = thread_time();
    let c = build();
    let build_ms = thread_time().saturating_sub(t).as_secs_f64() * 1e3;
    let got = results(&c, keys);
    let mismatches = reference
        .map(|r| r.iter().zip(&got).filter(|(a, b)| a != b).count() as u64)
        .unwrap_or(0);
    let lookup_ns = time_per(keys.len(), min, || {
        let mut acc = 0u64;
        for k in keys {
            acc = acc.wrapping_add(c.classify(black_box(k)).map_or(0, |r| u64::from(r.0)));
        }
        acc
    });
    let mut out = [None; BATCH];
    let batch_ns = time_per(keys.len(), min, || {
        let mut acc = 0u64;
        for chunk in keys.chunks(BATCH) {
            let out = &mut out[..chunk.len()];
            c.classify_batch(black_box(chunk), out);
            acc = acc.wrapping_add(out.iter().flatten().map(|r| u64::from(r.0)).sum::<u64>());
        }
        acc
    });
    let probes = if keys.is_empty() {
        0.0
    } else {
        let total: u64 = keys
            .iter()
            .map(|k| u64::from(c.classify_counted(k).1))
            .sum();
        total as f64 / keys.len() as f64
    };
    let pps = if key_ns + lookup_ns > 0.0 {
        1e9 / (key_ns + lookup_ns)
    } else {
        0.0
    };
    let r = EngineRow {
        name: c.name().to_string(),
        tuple,
        rules,
        keys: keys.len(),
        build_ms,
        bytes: c.memory_bytes(),
        key_ns,
        lookup_ns,
        batch_ns,
        pps,
        mismatches,
        probes,
    };
    (r, got)
}

/// The rows of one tuple kind: the linear reference always runs, so that mismatches are counted
/// even when it is not reported; each engine asked for is built with [`EngineKind::build`].
/// Returns the reference's answers (one per key; empty when the kind has no rules).
fn kind_rows<K: TmKey>(
    tuple: &'static str,
    policy: &Policy,
    keys: &[K],
    key_ns: f64,
    engines: &[EngineKind],
    min: Duration,
    out: &mut Vec<EngineRow>,
) -> Vec<Option<RuleId>>
where
    K::Match: Clone,
    Engine<K>: Classifier<K>,
{
    let rules = K::rules(policy).len();
    if rules == 0 {
        return Vec::new();
    }
    let build = |kind: EngineKind| move || kind.build::<K>(policy);
    let (lin_row, reference) = row(
        tuple,
        rules,
        build(EngineKind::Linear),
        keys,
        key_ns,
        None,
        min,
    );
    for &e in engines {
        if e == EngineKind::Linear {
            out.push(lin_row.clone());
        } else {
            let (mut r, _) = row(tuple, rules, build(e), keys, key_ns, Some(&reference), min);
            if e == EngineKind::Fast {
                // The cost model's pick, named apart from the engines asked for by name.
                r.name = format!("fast={}", r.name);
            }
            out.push(r);
        }
    }
    reference
}

/// Runs the engines on both tuple kinds (a kind with no rules is left out). `min` is the least
/// wall time each timed stage runs for.
pub fn run(policy: &Policy, frames: &Frames, engines: &[EngineKind], min: Duration) -> Measured {
    let keys = extract(frames, min);
    let mut rows = Vec::new();
    let three = kind_rows(
        "three",
        policy,
        &keys.three,
        keys.three_ns,
        engines,
        min,
        &mut rows,
    );
    let five = kind_rows(
        "five",
        policy,
        &keys.five,
        keys.five_ns,
        engines,
        min,
        &mut rows,
    );
    let per_frame = |answers: &[Option<RuleId>], pick: fn(&At) -> Option<u32>| {
        if answers.is_empty() {
            return Vec::new();
        }
        keys.at
            .iter()
            .map(|a| pick(a).and_then(|i| answers[i as usize]))
            .collect()
    };
    let first = FirstMatches {
        three: per_frame(&three, |a| a.0),
        five: per_frame(&five, |a| a.1),
    };
    let report = BenchReport {
        packets: frames.len(),
        ipv6: keys.three.len(),
        five_available: keys.five.len(),
        no_five_tuple: keys.missing,
        mismatches: rows.iter().map(|r| r.mismatches).sum(),
        engines: rows,
    };
    Measured { report, first }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::model::{
        Action, FiveMatch, LabelMatch, PortMatch, Prefix, Rule, ThreeMatch,
    };
    use crate::policy::syntax::Span;

    /// Ethernet + IPv6 with `next` as next header and `payload` after it.
    fn frame(src: u128, next: u8, label: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd];
        f.extend_from_slice(&(0x6000_0000u32 | label).to_be_bytes());
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        f.extend_from_slice(&[next, 64]);
        f.extend_from_slice(&src.to_be_bytes());
        f.extend_from_slice(&1u128.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn policy() -> Policy {
        let any = crate::policy::model::AddrMatch::any;
        let ten = || crate::policy::model::AddrMatch(vec![Prefix::new(10 << 120, 8)]);
        Policy {
            classes: Vec::new(),
            three: vec![Rule {
                name: "a".into(),
                matcher: ThreeMatch {
                    src: ten(),
                    dst: any(),
                    label: LabelMatch::Any,
                },
                action: Action::Pass,
                span: Span::default(),
            }],
            five: vec![Rule {
                name: "a".into(),
                matcher: FiveMatch {
                    src: any(),
                    dst: any(),
                    proto: Some(17),
                    sport: PortMatch::ANY,
                    dport: PortMatch::ANY,
                },
                action: Action::Pass,
                span: Span::default(),
            }],
            default: Action::Drop,
            default_explicit: true,
        }
    }

    #[test]
    fn every_engine_runs_both_tuples_and_the_reference_answers_line_up_with_the_frames() {
        let mut frames = Frames::default();
        // udp 5 -> 53 from 10::; esp from 10::; udp from 20::; a frame that is not IPv6.
        frames.push(
            LinkType::ETHERNET,
            &frame(10 << 120, 17, 1, &[0, 5, 0, 53, 0, 8, 0, 0]),
        );
        frames.push(LinkType::ETHERNET, &frame(10 << 120, 50, 2, &[0; 8]));
        frames.push(
            LinkType::ETHERNET,
            &frame(20 << 120, 17, 3, &[0, 5, 0, 53, 0, 8, 0, 0]),
        );
        frames.push(LinkType::ETHERNET, &[0u8; 20]);
        let m = run(&policy(), &frames, &all_engines(), Duration::ZERO);
        let r = &m.report;
        assert_eq!((r.packets, r.ipv6, r.five_available), (4, 3, 2));
        assert_eq!(r.no_five_tuple.packets, 1);
        assert_eq!(r.no_five_tuple.by_reason["esp"], 1);
        assert_eq!(r.no_five_tuple.by_reason.len(), Unavailable::ALL.len());
        assert!((r.no_five_tuple.share - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(
            r.no_five_tuple.describe(r.ipv6),
            "1 of 3 IPv6 packets (33.3%) have no 5-tuple: esp 1"
        );
        assert_eq!(thousands(87_474), "87,474");
        assert_eq!(thousands(999), "999");
        assert_eq!(r.mismatches, 0);
        let n = all_engines().len();
        assert_eq!(r.engines.len(), 2 * n);
        assert!(r.engines[..n].iter().all(|e| e.tuple == "three"));
        assert!(r.engines[n..].iter().all(|e| e.tuple == "five"));
        assert!(
            r.engines
                .iter()
                .all(|e| e.key_ns > 0.0 && e.lookup_ns > 0.0)
        );
        let (y, no) = (Some(RuleId(0)), None);
        assert_eq!(m.first.three, [y, y, no, no]);
        assert_eq!(m.first.five, [y, no, y, no]);
    }
}
