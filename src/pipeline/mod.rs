//! The data path: what happens to a frame between the source that lends it and the report that
//! counts it.
//!
//! ```text
//!  source ──Frame──▶ Step::run ──Outcome (+ timing)──▶ Tally::record
//!  (pcap, ring, pnet)   │ packet: keys (3-tuple; 5-tuple or why not)  ├──▶ per-packet writers
//!                       │ classify: both engines                       └──▶ (a flow meter)
//! ```
//!
//! - [`Step`]: the one per-frame step: frame → keys → both classifiers → [`Outcome`], timing a
//!   sample of frames. Generic over the two engines, so the hot loop is monomorphised for each.
//! - [`offline`]: the offline driver: a capture file through the step into a tally (`classify`,
//!   `flows`), with the per-packet writers of [`packets`] as further ends.
//! - [`live`]: the live driver of `watch`: a session of fanout workers, each reading its socket
//!   through the same step into a tally of its own, stopped and reconciled exactly.
//! - [`meter`]: the flow meter: a bounded flow table with timeouts whose records go to export.
//!
//! Every end of the path takes the step's result by reference, as a closure
//! `FnMut(&Frame, &Outcome)` does: the tally ([`Tally::record`], which also takes the timing),
//! the `--packets`/`--split` writers, and a flow meter alike. Nothing is allocated per frame.

pub mod live;
pub mod meter;
pub mod offline;
pub mod packets;

use crate::classify::{Classifier, Outcome};
use crate::packet::tunnel::{self, Mode as Tunnel};
use crate::packet::{self, FiveTuple, Frame, ThreeTuple};
use crate::report::Tally;
use crate::report::tally::StepTiming;
use std::time::Instant;

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

/// The per-frame step over two engines, built once per reader (a worker, a file): decodes a
/// frame to its keys, classifies them with both engines, and says what the frame became.
pub struct Step<'e, C3: ?Sized, C5: ?Sized> {
    c3: &'e C3,
    c5: &'e C5,
    /// IPv6 packets stepped so far (which ones are timed depends on it).
    ipv6: u64,
    /// Cost of one `Instant::now()`, subtracted from every measured interval.
    timer_overhead_ns: u64,
    /// How long the last frame's step took, when it was timed.
    timing: Option<StepTiming>,
    /// Which IPv6 header of a tunnelled packet is keyed (`--tunnel`).
    tunnel: Tunnel,
    /// With `--tunnel inner`: the outermost tunnel the last frame's IPv6 packet was found in.
    tunnelled: Option<tunnel::Kind>,
}

impl<'e, C3, C5> Step<'e, C3, C5>
where
    C3: Classifier<ThreeTuple> + ?Sized,
    C5: Classifier<FiveTuple> + ?Sized,
{
    pub fn new(c3: &'e C3, c5: &'e C5) -> Self {
        Step {
            c3,
            c5,
            ipv6: 0,
            timer_overhead_ns: timer_overhead_ns(),
            timing: None,
            tunnel: Tunnel::Outer,
            tunnelled: None,
        }
    }

    /// Keys the outermost (the default) or the innermost IPv6 header of tunnelled packets.
    pub fn with_tunnel(mut self, tunnel: Tunnel) -> Self {
        self.tunnel = tunnel;
        self
    }

    /// With `--tunnel inner`: the kind of the outermost tunnel the last frame's IPv6 packet
    /// was found in (`None` for a packet that was not tunnelled, and always with `outer`).
    #[inline]
    pub fn tunnelled(&self) -> Option<tunnel::Kind> {
        self.tunnelled
    }

    /// A tally for `policy` named after this step's engines.
    pub fn tally(&self, policy: &crate::policy::Policy) -> Tally {
        Tally::new(policy, self.c3.name(), self.c5.name())
    }

    #[inline]
    fn span(&self, a: Instant, b: Instant) -> u64 {
        (b.duration_since(a).as_nanos() as u64).saturating_sub(self.timer_overhead_ns)
    }

    /// The hot path: decodes one frame and classifies it with both engines, and returns what
    /// it became; for a sample of IPv6 packets, how long each part took is then in
    /// [`Step::timing`]. No allocation.
    #[inline(always)]
    pub fn run<'a>(&mut self, frame: &Frame<'a>) -> Outcome<'a> {
        // Reading the clock can cost more than decoding and matching together, so only a
        // sample of packets is timed: every packet at first, then one in TIME_EVERY.
        let n = self.ipv6;
        let timed = n < TIME_ALL_FIRST || n.is_multiple_of(TIME_EVERY);
        let clock = || timed.then(Instant::now);
        self.timing = None;
        self.tunnelled = None;
        let t0 = clock();
        let decoded = match self.tunnel {
            Tunnel::Outer => packet::three(frame.link, frame.data),
            Tunnel::Inner => packet::three_inner(frame.link, frame.data).map(|(t, f, kind)| {
                self.tunnelled = kind;
                (t, f)
            }),
        };
        let (three_key, fixed) = match decoded {
            Ok(v) => v,
            Err(kind) => return Outcome::NonIpv6(kind),
        };
        self.ipv6 += 1;
        let t1 = clock();
        // Built in place, so the keys are not copied into the outcome afterwards.
        let mut outcome = Outcome::Ipv6 {
            keys: packet::keys(three_key, &fixed),
            three: None,
            five: Ok(None),
        };
        let t2 = clock();
        if let Outcome::Ipv6 { keys, three, five } = &mut outcome {
            *three = self.c3.classify(&keys.three);
            let t3 = clock();
            let mut five_match = None;
            *five = match keys.five {
                Ok(k) => {
                    let r = self.c5.classify(&k);
                    if let (Some(a), Some(b)) = (t3, clock()) {
                        five_match = Some(self.span(a, b));
                    }
                    Ok(r)
                }
                Err(why) => Err(why),
            };
            if let (Some(t0), Some(t1), Some(t2), Some(t3)) = (t0, t1, t2, t3) {
                self.timing = Some(StepTiming {
                    three_extract: self.span(t0, t1),
                    five_walk: self.span(t1, t2),
                    three_match: self.span(t2, t3),
                    five_match,
                });
            }
        }
        outcome
    }

    /// How long the last [`Step::run`] took, when it was timed.
    #[inline]
    pub fn timing(&self) -> Option<&StepTiming> {
        self.timing.as_ref()
    }

    /// [`Step::run`], counted into `tally`; returns the outcome for the other ends.
    #[inline(always)]
    pub fn count<'a>(&mut self, frame: &Frame<'a>, tally: &mut Tally) -> Outcome<'a> {
        let outcome = self.run(frame);
        tally.record(frame.orig_len, &outcome, self.timing.as_ref());
        if let Some(kind) = self.tunnelled {
            tally.tunnels[kind.index()].add(frame.orig_len);
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Linear;
    use crate::packet::{LinkType, NonIpv6, Unavailable};
    use crate::policy::Policy;
    use crate::report::{Report, model::SourceInfo};
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
        let mut step = Step::new(&c3, &c5);
        let mut t = step.tally(policy);
        for (i, d) in frames.iter().enumerate() {
            let f = Frame {
                number: i as u64 + 1,
                link: LinkType::RAW,
                ts: Duration::ZERO,
                orig_len: d.len() as u32,
                data: d,
            };
            step.count(&f, &mut t);
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
