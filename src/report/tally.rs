//! The tally: counters updated once per frame, with no allocation, and the per-frame hot path
//! ([`Tally::classify`]) that decodes a frame, runs both engines and counts the result. The
//! hot path is generic over the two engines, so a fast engine drops in for the linear one.

use crate::classify::{Classifier, RuleId};
use crate::packet::{self, FiveTuple, Frame, Ipv6Keys, NonIpv6, ThreeTuple, Unavailable};
use crate::policy::model::{Action, Policy};
use std::time::Instant;

/// Packets and bytes (bytes are frame lengths on the wire).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

impl Counter {
    #[inline]
    pub fn add(&mut self, bytes: u32) {
        self.packets += 1;
        self.bytes += u64::from(bytes);
    }
    pub fn merge(&mut self, o: &Counter) {
        self.packets += o.packets;
        self.bytes += o.bytes;
    }
}

/// The outcomes a packet can have: each class, then `pass`, then `drop`. Rules and defaults are
/// mapped to an outcome index once, when the tally is built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdicts {
    /// Outcome names: class names, "pass", "drop".
    pub names: Vec<String>,
    /// Outcome of each 3-tuple rule.
    pub three: Vec<usize>,
    /// Outcome of each 5-tuple rule.
    pub five: Vec<usize>,
    /// Outcome of the default.
    pub default: usize,
}

impl Verdicts {
    pub fn new(policy: &Policy) -> Verdicts {
        let mut names: Vec<String> = policy.classes.iter().map(|c| c.name.clone()).collect();
        let index = |a: &Action, names: &mut Vec<String>| -> usize {
            let name = match a {
                Action::Class(c) => c.as_str(),
                Action::Pass => "pass",
                Action::Drop => "drop",
            };
            match names.iter().position(|n| n == name) {
                Some(i) => i,
                None => {
                    names.push(name.to_string());
                    names.len() - 1
                }
            }
        };
        // Classes first (declared order), then pass and drop, then any undeclared class.
        let _ = index(&Action::Pass, &mut names);
        let _ = index(&Action::Drop, &mut names);
        let three = policy
            .three
            .iter()
            .map(|r| index(&r.action, &mut names))
            .collect();
        let five = policy
            .five
            .iter()
            .map(|r| index(&r.action, &mut names))
            .collect();
        let default = index(&policy.default, &mut names);
        Verdicts {
            names,
            three,
            five,
            default,
        }
    }

    /// The outcome of a 3-tuple classification.
    #[inline]
    pub fn of_three(&self, r: Option<RuleId>) -> usize {
        r.map_or(self.default, |r| self.three[r.index()])
    }

    /// The outcome of a 5-tuple classification.
    #[inline]
    pub fn of_five(&self, r: Option<RuleId>) -> usize {
        r.map_or(self.default, |r| self.five[r.index()])
    }
}

/// One engine's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineTally {
    /// The engine's name.
    pub engine: &'static str,
    /// Per rule, in policy order.
    pub rules: Vec<Counter>,
    /// Packets no rule matched.
    pub default: Counter,
    /// Nanoseconds spent extracting this engine's key (for the 5-tuple: the fixed header plus
    /// the extension-header walk) over the timed packets, timer overhead subtracted.
    pub extract_ns: u64,
    /// Nanoseconds spent in `classify` over the timed packets, timer overhead subtracted.
    pub match_ns: u64,
    /// Packets this engine classified.
    pub classified: u64,
    /// Packets whose key extraction was timed (the denominator of `extract_ns`).
    pub timed_extract: u64,
    /// Packets whose matching was timed (the denominator of `match_ns`).
    pub timed_match: u64,
}

impl EngineTally {
    fn new(engine: &'static str, rules: usize) -> Self {
        EngineTally {
            engine,
            rules: vec![Counter::default(); rules],
            ..Default::default()
        }
    }
    #[inline]
    fn add(&mut self, r: Option<RuleId>, bytes: u32) {
        match r {
            Some(r) => self.rules[r.index()].add(bytes),
            None => self.default.add(bytes),
        }
    }
    fn merge(&mut self, o: &EngineTally) {
        for (a, b) in self.rules.iter_mut().zip(&o.rules) {
            a.merge(b);
        }
        self.default.merge(&o.default);
        self.extract_ns += o.extract_ns;
        self.match_ns += o.match_ns;
        self.classified += o.classified;
        self.timed_extract += o.timed_extract;
        self.timed_match += o.timed_match;
    }
}

/// What happened to one frame.
#[derive(Clone, Copy, Debug)]
pub enum Outcome<'a> {
    NonIpv6(NonIpv6),
    Ipv6 {
        keys: Ipv6Keys<'a>,
        /// The 3-tuple engine's rule (`None`: the default).
        three: Option<RuleId>,
        /// The 5-tuple engine's rule (`Ok(None)`: the default), or why there is no 5-tuple.
        five: Result<Option<RuleId>, Unavailable>,
    },
}

/// Everything counted over a run. Build with [`Tally::new`], feed with [`Tally::classify`],
/// combine workers with [`Tally::merge`], render through [`crate::report::Report`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tally {
    pub verdicts: Verdicts,
    /// Every frame read.
    pub frames: Counter,
    /// IPv6 packets.
    pub ipv6: Counter,
    /// Frames that carry no IPv6 packet, by [`NonIpv6::index`].
    pub non_ipv6: [Counter; 4],
    /// IPv6 packets without a 5-tuple, by [`Unavailable::index`].
    pub unavailable: [Counter; 5],
    pub three: EngineTally,
    pub five: EngineTally,
    /// Packets by (3-tuple outcome, 5-tuple outcome); the last column is "5-tuple unavailable".
    /// Row-major, `verdicts.names.len()` rows of `verdicts.names.len() + 1` columns.
    pub agreement: Vec<u64>,
    /// Cost of one `Instant::now()`, subtracted from every measured interval.
    timer_overhead_ns: u64,
}

/// Every IPv6 packet is timed until this many have been seen...
pub const TIME_ALL_FIRST: u64 = 1024;
/// ...and then one in this many.
pub const TIME_EVERY: u64 = 64;

/// The cost of reading the clock, so timings can leave it out.
fn timer_overhead_ns() -> u64 {
    let mut best = u64::MAX;
    for _ in 0..200 {
        let a = Instant::now();
        let b = Instant::now();
        best = best.min(b.duration_since(a).as_nanos() as u64);
    }
    best
}

impl Tally {
    /// An empty tally for a policy and two engines.
    pub fn new(policy: &Policy, three_engine: &'static str, five_engine: &'static str) -> Tally {
        let verdicts = Verdicts::new(policy);
        let n = verdicts.names.len();
        Tally {
            frames: Counter::default(),
            ipv6: Counter::default(),
            non_ipv6: Default::default(),
            unavailable: Default::default(),
            three: EngineTally::new(three_engine, policy.three.len()),
            five: EngineTally::new(five_engine, policy.five.len()),
            agreement: vec![0; n * (n + 1)],
            verdicts,
            timer_overhead_ns: timer_overhead_ns(),
        }
    }

    /// Columns of the agreement matrix (outcomes plus "unavailable").
    pub fn agreement_columns(&self) -> usize {
        self.verdicts.names.len() + 1
    }

    /// Adds another tally of the same policy (e.g. from another worker).
    pub fn merge(&mut self, o: &Tally) {
        debug_assert_eq!(self.verdicts, o.verdicts);
        self.frames.merge(&o.frames);
        self.ipv6.merge(&o.ipv6);
        for (a, b) in self.non_ipv6.iter_mut().zip(&o.non_ipv6) {
            a.merge(b);
        }
        for (a, b) in self.unavailable.iter_mut().zip(&o.unavailable) {
            a.merge(b);
        }
        self.three.merge(&o.three);
        self.five.merge(&o.five);
        for (a, b) in self.agreement.iter_mut().zip(&o.agreement) {
            *a += b;
        }
    }

    #[inline]
    fn span(&self, a: Instant, b: Instant) -> u64 {
        (b.duration_since(a).as_nanos() as u64).saturating_sub(self.timer_overhead_ns)
    }

    /// The hot path: decodes one frame, classifies it with both engines, counts it, and returns
    /// what happened (for per-packet output). No allocation.
    #[inline]
    pub fn classify<'a, C3, C5>(&mut self, frame: &Frame<'a>, c3: &C3, c5: &C5) -> Outcome<'a>
    where
        C3: Classifier<ThreeTuple> + ?Sized,
        C5: Classifier<FiveTuple> + ?Sized,
    {
        let bytes = frame.orig_len;
        self.frames.add(bytes);
        // Reading the clock can cost more than decoding and matching together, so only a
        // sample of packets is timed: every packet at first, then one in TIME_EVERY.
        let n = self.ipv6.packets;
        let timed = n < TIME_ALL_FIRST || n.is_multiple_of(TIME_EVERY);
        let clock = || timed.then(Instant::now);
        let t0 = clock();
        let (three_key, fixed) = match packet::three(frame.link, frame.data) {
            Ok(v) => v,
            Err(kind) => {
                self.non_ipv6[kind.index()].add(bytes);
                return Outcome::NonIpv6(kind);
            }
        };
        let t1 = clock();
        let (proto, five_key) = packet::five_of(&fixed, &three_key);
        let t2 = clock();
        let three = c3.classify(&three_key);
        let t3 = clock();
        self.three.classified += 1;
        let five = match five_key {
            Ok(k) => {
                let r = c5.classify(&k);
                if let (Some(a), Some(b)) = (t3, clock()) {
                    self.five.match_ns += self.span(a, b);
                    self.five.timed_match += 1;
                }
                self.five.classified += 1;
                Ok(r)
            }
            Err(why) => Err(why),
        };
        if let (Some(t0), Some(t1), Some(t2), Some(t3)) = (t0, t1, t2, t3) {
            let (x3, walk, m3) = (self.span(t0, t1), self.span(t1, t2), self.span(t2, t3));
            self.three.extract_ns += x3;
            self.five.extract_ns += x3 + walk;
            self.three.match_ns += m3;
            self.three.timed_extract += 1;
            self.five.timed_extract += 1;
            self.three.timed_match += 1;
        }

        self.ipv6.add(bytes);
        self.three.add(three, bytes);
        let row = self.verdicts.of_three(three);
        let col = match five {
            Ok(r) => {
                self.five.add(r, bytes);
                self.verdicts.of_five(r)
            }
            Err(why) => {
                self.unavailable[why.index()].add(bytes);
                self.verdicts.names.len()
            }
        };
        let cols = self.agreement_columns();
        self.agreement[row * cols + col] += 1;
        let keys = Ipv6Keys {
            packet: fixed.packet(),
            three: three_key,
            next_header: fixed.next_header(),
            proto,
            five: five_key,
        };
        Outcome::Ipv6 { keys, three, five }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Linear;
    use crate::packet::LinkType;
    use crate::report::{Report, json::SourceInfo};
    use std::time::Duration;

    const POLICY: &str = "class gold\ndefault pass\nthree {\n  rule a label 5 -> class gold\n  rule z label 0 -> drop\n}\nfive {\n  rule a proto udp dport 53 -> class gold\n}\n";

    /// Raw IPv6 + UDP to port `dport`, or with `next` as the first next header and no payload.
    fn pkt(label: u8, next: u8, dport: u16) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, label, 0, 8, next, 64];
        p.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        p.extend_from_slice(&[0x30, 0x39]);
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&[0, 8, 0, 0]);
        p
    }

    fn run(policy: &Policy, frames: &[Vec<u8>]) -> Tally {
        let (c3, c5) = (
            Linear::<ThreeTuple>::new(policy),
            Linear::<FiveTuple>::new(policy),
        );
        let mut t = Tally::new(policy, "linear", "linear");
        for (i, d) in frames.iter().enumerate() {
            let f = Frame {
                number: i as u64 + 1,
                link: LinkType::RAW,
                ts: Duration::ZERO,
                orig_len: d.len() as u32,
                data: d,
            };
            t.classify(&f, &c3, &c5);
        }
        t
    }

    #[test]
    fn counts_agreement_and_reasons() {
        let policy = crate::policy::load_str("t", POLICY).unwrap();
        let frames = vec![
            pkt(5, 17, 53), // gold / gold
            pkt(5, 17, 80), // gold / pass
            pkt(0, 17, 53), // drop / gold
            pkt(7, 50, 0),  // pass / esp
            pkt(0, 59, 0),  // drop / unknown-header
            vec![0x45, 0],  // ipv4
            vec![0x60, 0],  // malformed
        ];
        let t = run(&policy, &frames);
        assert_eq!(t.verdicts.names, ["gold", "pass", "drop"]);
        assert_eq!((t.frames.packets, t.ipv6.packets), (7, 5));
        assert_eq!(t.non_ipv6[NonIpv6::Ipv4.index()].packets, 1);
        assert_eq!(t.non_ipv6[NonIpv6::Malformed.index()].packets, 1);
        assert_eq!(t.unavailable[Unavailable::Esp.index()].packets, 1);
        assert_eq!(t.unavailable[Unavailable::UnknownHeader.index()].packets, 1);
        assert_eq!(
            t.three.rules.iter().map(|c| c.packets).collect::<Vec<_>>(),
            [2, 2]
        );
        assert_eq!(
            (
                t.three.default.packets,
                t.five.rules[0].packets,
                t.five.default.packets
            ),
            (1, 2, 1)
        );
        // rows gold, pass, drop; columns gold, pass, drop, unavailable
        assert_eq!(t.agreement, [1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1]);
        assert_eq!(t.three.classified, 5);
        assert_eq!(t.five.classified, 3);
        // Few packets: all of them timed.
        assert_eq!((t.three.timed_extract, t.three.timed_match), (5, 5));
        assert_eq!((t.five.timed_extract, t.five.timed_match), (5, 3));

        let r = Report::new(&t, &policy, "t", SourceInfo::default());
        assert_eq!(
            (
                r.agreement.agree,
                r.agreement.disagree,
                r.agreement.unavailable
            ),
            (1, 2, 2)
        );
        assert_eq!(r.classes[0].three.packets, 2);
        assert_eq!(r.classes[0].five.packets, 2);
        assert_eq!(r.classes[2].three.packets, 2);
        assert_eq!(r.rules.three.last().unwrap().name, "default");
        assert_eq!(r.five_unavailable.total.packets, 2);
        let j: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(j["five_unavailable"]["unknown-header"]["packets"], 1);
        assert!(crate::report::table::render(&r).contains("unknown-header"));
    }

    #[test]
    fn merge_adds_up() {
        let policy = crate::policy::load_str("t", POLICY).unwrap();
        let a = run(&policy, &[pkt(5, 17, 53), pkt(7, 50, 0)]);
        let b = run(&policy, &[pkt(0, 17, 53)]);
        let both = run(&policy, &[pkt(5, 17, 53), pkt(7, 50, 0), pkt(0, 17, 53)]);
        let mut m = a.clone();
        m.merge(&b);
        assert_eq!(m.agreement, both.agreement);
        assert_eq!(m.three.rules, both.three.rules);
        assert_eq!(m.five.default, both.five.default);
        assert_eq!(m.unavailable, both.unavailable);
        assert_eq!(m.frames, both.frames);
    }
}
