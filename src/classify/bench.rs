//! `flowpol bench` measurement: every engine on the same packets in one process. Frames are
//! loaded into memory first (from a capture, or built from a ClassBench trace), then timed in
//! two stages: key extraction (3-tuple: link layer and fixed header; 5-tuple: the same plus the
//! extension-header walk) and lookup on the extracted keys. Every engine's result on every key
//! is compared with the linear reference of its tuple kind.

use super::{Classifier, FastFive, FastThree, Key, Linear, RuleId};
use crate::r#gen::classbench::{self, CbPacket};
use crate::packet::{self, FiveTuple, LinkType, ThreeTuple};
use crate::policy::Policy;
use crate::policy::model::Prefix;
use crate::source::pcap::{CaptureError, CaptureReader};
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

/// Frames held in memory: one buffer, one end offset and link type per frame.
#[derive(Debug, Default)]
pub struct Frames {
    data: Vec<u8>,
    ends: Vec<usize>,
    links: Vec<LinkType>,
}

impl Frames {
    /// Every frame of a pcap or pcapng file.
    pub fn from_capture(path: &Path) -> Result<Self, CaptureError> {
        let mut r = CaptureReader::open(path)?;
        let mut f = Frames::default();
        r.for_each(|fr| f.push(fr.link, fr.data))?;
        Ok(f)
    }

    /// Ethernet + IPv6 frames built from ClassBench trace packets, as `import classbench-trace`
    /// writes them (label = destination port).
    pub fn from_classbench(packets: &[CbPacket], map: Prefix) -> Self {
        let mut f = Frames::default();
        let mut buf = Vec::with_capacity(128);
        for p in packets {
            buf.clear();
            if classbench::append_packet(p, map, &mut buf).is_ok() {
                f.push(LinkType::ETHERNET, &buf);
            }
        }
        f
    }

    fn push(&mut self, link: LinkType, data: &[u8]) {
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

/// The engines `bench` can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EngineKind {
    /// The linear first-match reference.
    Linear,
    /// TupleMerge.
    Fast,
}

/// One engine on one tuple kind.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EngineRow {
    /// The engine's name (`linear`, `tuplemerge`).
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
    /// Nanoseconds per key to classify it.
    pub lookup_ns: f64,
    /// Packets per second for key extraction and lookup together.
    pub pps: f64,
    /// Keys on which this engine disagrees with the linear reference.
    pub mismatches: u64,
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
    /// Sum of the engines' mismatches (must be 0).
    pub mismatches: u64,
    pub engines: Vec<EngineRow>,
}

/// Repeats `f` over at least `min` of wall time; returns nanoseconds per call of `f` divided by
/// `per` (the items `f` processes).
fn time_per(per: usize, min: Duration, mut f: impl FnMut() -> u64) -> f64 {
    if per == 0 {
        return 0.0;
    }
    let mut rounds = 0u64;
    let start = Instant::now();
    loop {
        black_box(f());
        rounds += 1;
        if start.elapsed() >= min {
            break;
        }
    }
    start.elapsed().as_nanos() as f64 / (rounds as f64 * per as f64)
}

struct Keys {
    three: Vec<ThreeTuple>,
    five: Vec<FiveTuple>,
    three_ns: f64,
    five_ns: f64,
}

fn extract(frames: &Frames, min: Duration) -> Keys {
    let mut three = Vec::with_capacity(frames.len());
    let mut five = Vec::with_capacity(frames.len());
    for (link, data) in frames.iter() {
        if let Ok((t, fixed)) = packet::three(link, data) {
            three.push(t);
            if let (_, Ok(f)) = packet::five_of(&fixed, &t) {
                five.push(f);
            }
        }
    }
    let n = frames.len();
    let three_ns = time_per(n, min, || {
        let mut acc = 0u64;
        for (link, data) in frames.iter() {
            if let Ok((t, _)) = packet::three(link, black_box(data)) {
                acc = acc.wrapping_add(u64::from(t.label.value()));
            }
        }
        acc
    });
    let five_ns = time_per(n, min, || {
        let mut acc = 0u64;
        for (link, data) in frames.iter() {
            if let Ok((t, fixed)) = packet::three(link, black_box(data))
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
    let t = Instant::now();
    let c = build();
    let build_ms = t.elapsed().as_secs_f64() * 1e3;
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
        pps,
        mismatches,
    };
    (r, got)
}

#[allow(clippy::too_many_arguments)]
fn kind_rows<K: Key, L: Classifier<K>, F: Classifier<K>>(
    tuple: &'static str,
    rules: usize,
    keys: &[K],
    key_ns: f64,
    engines: &[EngineKind],
    linear: impl Fn() -> L,
    fast: impl Fn() -> F,
    min: Duration,
    out: &mut Vec<EngineRow>,
) {
    if rules == 0 {
        return;
    }
    // The reference always runs, so that mismatches are counted even when it is not reported.
    let (lin_row, reference) = row(tuple, rules, &linear, keys, key_ns, None, min);
    for e in engines {
        match e {
            EngineKind::Linear => out.push(lin_row.clone()),
            EngineKind::Fast => {
                out.push(row(tuple, rules, &fast, keys, key_ns, Some(&reference), min).0)
            }
        }
    }
}

/// Runs the engines on both tuple kinds (a kind with no rules is left out). `min` is the least
/// wall time each timed stage runs for.
pub fn run(policy: &Policy, frames: &Frames, engines: &[EngineKind], min: Duration) -> BenchReport {
    let keys = extract(frames, min);
    let mut rows = Vec::new();
    kind_rows(
        "three",
        policy.three.len(),
        &keys.three,
        keys.three_ns,
        engines,
        || Linear::<ThreeTuple>::new(policy),
        || FastThree::new(policy),
        min,
        &mut rows,
    );
    kind_rows(
        "five",
        policy.five.len(),
        &keys.five,
        keys.five_ns,
        engines,
        || Linear::<FiveTuple>::new(policy),
        || FastFive::new(policy),
        min,
        &mut rows,
    );
    BenchReport {
        packets: frames.len(),
        ipv6: keys.three.len(),
        five_available: keys.five.len(),
        mismatches: rows.iter().map(|r| r.mismatches).sum(),
        engines: rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::r#gen::classbench::{As, DEFAULT_MAP_V4};

    #[test]
    fn classbench_frames_run_through_both_engines_without_mismatch() {
        let rules = "@10.0.0.0/8\t0.0.0.0/0\t0 : 65535\t80 : 80\t0x06/0xFF\t0x0000/0x0000\n\
                     @0.0.0.0/0\t10.1.0.0/16\t0 : 65535\t0 : 1023\t0x11/0xFF\t0x0000/0x0000\n";
        let cb = classbench::parse_rules(rules).unwrap();
        let mut p = classbench::to_policy(&cb, As::Five, DEFAULT_MAP_V4);
        p.three = classbench::to_policy(&cb, As::Three, DEFAULT_MAP_V4).three;
        let trace = classbench::parse_trace(
            "167772161 1 5 80 6 0 1\n1 167837697 5 53 17 0 2\n1 2 3 4 50 0 0\n",
        )
        .unwrap();
        let frames = Frames::from_classbench(&trace, DEFAULT_MAP_V4);
        assert_eq!(frames.len(), 3);
        let r = run(
            &p,
            &frames,
            &[EngineKind::Linear, EngineKind::Fast],
            Duration::ZERO,
        );
        assert_eq!((r.packets, r.ipv6, r.five_available), (3, 3, 2));
        assert_eq!(r.mismatches, 0);
        let names: Vec<_> = r
            .engines
            .iter()
            .map(|e| (e.name.as_str(), e.tuple))
            .collect();
        // The fast engine reports the name of the engine its cost model chose.
        let (fast3, fast5) = (FastThree::new(&p).name(), FastFive::new(&p).name());
        assert_eq!(
            names,
            [
                ("linear", "three"),
                (fast3, "three"),
                ("linear", "five"),
                (fast5, "five")
            ]
        );
        assert!(
            r.engines
                .iter()
                .all(|e| e.key_ns > 0.0 && e.lookup_ns > 0.0)
        );
    }
}
