//! `flowpol bench` measurement: every engine on the same packets in one process. Frames are
//! loaded into memory first (from a capture, or built from a ClassBench trace), then timed in
//! two stages: key extraction (3-tuple: link layer and fixed header; 5-tuple: the same plus the
//! extension-header walk) and lookup on the extracted keys. Every engine's result on every key
//! is compared with the linear reference of its tuple kind.

use crate::classify::{Classifier, Engine, EngineKind, Key, RuleId, TmKey};
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

    /// Keys the outermost (the default) or the innermost IPv6 header of tunnelled packets.
    pub fn with_tunnel(mut self, tunnel: packet::tunnel::Mode) -> Self {
        self.tunnel = tunnel;
        self
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
    for (link, data) in frames.iter() {
        if let Ok((t, fixed)) = three_of(link, data) {
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

/// The rows of one tuple kind: the linear reference always runs, so that mismatches are counted
/// even when it is not reported; each engine asked for is built with [`EngineKind::build`].
fn kind_rows<K: TmKey>(
    tuple: &'static str,
    policy: &Policy,
    keys: &[K],
    key_ns: f64,
    engines: &[EngineKind],
    min: Duration,
    out: &mut Vec<EngineRow>,
) where
    K::Match: Clone,
    Engine<K>: Classifier<K>,
{
    let rules = K::rules(policy).len();
    if rules == 0 {
        return;
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
        match e {
            EngineKind::Linear => out.push(lin_row.clone()),
            EngineKind::TupleMerge => {
                out.push(row(tuple, rules, build(e), keys, key_ns, Some(&reference), min).0)
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
        policy,
        &keys.three,
        keys.three_ns,
        engines,
        min,
        &mut rows,
    );
    kind_rows(
        "five",
        policy,
        &keys.five,
        keys.five_ns,
        engines,
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
            &[EngineKind::Linear, EngineKind::TupleMerge],
            Duration::ZERO,
        );
        assert_eq!((r.packets, r.ipv6, r.five_available), (3, 3, 2));
        assert_eq!(r.mismatches, 0);
        let names: Vec<_> = r
            .engines
            .iter()
            .map(|e| (e.name.as_str(), e.tuple))
            .collect();
        assert_eq!(
            names,
            [
                ("linear", "three"),
                ("tuplemerge", "three"),
                ("linear", "five"),
                ("tuplemerge", "five")
            ]
        );
        assert!(
            r.engines
                .iter()
                .all(|e| e.key_ns > 0.0 && e.lookup_ns > 0.0)
        );
    }
}
