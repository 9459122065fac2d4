//! The tally: counters updated once per frame ([`Tally::record`]), with no allocation, from
//! the [`Outcome`] of the pipeline's per-frame step and its timing.

use crate::classify::Outcome;
use crate::classify::RuleId;
use crate::packet::LinkType;
use crate::policy::model::{Action, Policy};

/// Packets and bytes (bytes are frame lengths on the wire).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PacketBytes {
    pub packets: u64,
    pub bytes: u64,
}

impl PacketBytes {
    #[inline]
    pub fn add(&mut self, bytes: u32) {
        self.packets += 1;
        self.bytes += u64::from(bytes);
    }
    pub fn merge(&mut self, o: &PacketBytes) {
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
    pub rules: Vec<PacketBytes>,
    /// Packets no rule matched.
    pub default: PacketBytes,
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
            rules: vec![PacketBytes::default(); rules],
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

/// How long one frame's step took, in nanoseconds, the clock's own cost left out. The step
/// measures only a sample of frames, and only IPv6 ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepTiming {
    /// Link layer and fixed header: the 3-tuple's key.
    pub three_extract: u64,
    /// The extension-header walk (the 5-tuple's key costs `three_extract + five_walk`).
    pub five_walk: u64,
    /// The 3-tuple engine's `classify`.
    pub three_match: u64,
    /// The 5-tuple engine's `classify`, when there was a 5-tuple.
    pub five_match: Option<u64>,
}

/// Everything counted over a run. Build with [`Tally::new`], feed with [`Tally::record`],
/// combine workers with [`Tally::merge`], render through [`crate::report::Report`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tally {
    pub verdicts: Verdicts,
    /// Every frame read.
    pub frames: PacketBytes,
    /// IPv6 packets.
    pub ipv6: PacketBytes,
    /// Frames that carry no IPv6 packet, by [`crate::packet::NonIpv6::index`].
    pub non_ipv6: [PacketBytes; crate::packet::NonIpv6::COUNT],
    /// Frames keyed on an IPv6 packet inside a tunnel (`--tunnel inner`), by
    /// [`crate::packet::tunnel::Kind::index`] of the outermost tunnel.
    pub tunnels: [PacketBytes; crate::packet::tunnel::Kind::COUNT],
    /// IPv6 packets without a 5-tuple, by [`crate::packet::Unavailable::index`].
    pub unavailable: [PacketBytes; 5],
    pub three: EngineTally,
    pub five: EngineTally,
    /// Packets by (3-tuple outcome, 5-tuple outcome); the last column is "5-tuple unavailable".
    /// Row-major, `verdicts.names.len()` rows of `verdicts.names.len() + 1` columns.
    pub agreement: Vec<u64>,
}

impl Tally {
    /// An empty tally for a policy and two engines.
    pub fn new(policy: &Policy, three_engine: &'static str, five_engine: &'static str) -> Tally {
        let verdicts = Verdicts::new(policy);
        let n = verdicts.names.len();
        Tally {
            frames: PacketBytes::default(),
            ipv6: PacketBytes::default(),
            non_ipv6: Default::default(),
            tunnels: Default::default(),
            unavailable: Default::default(),
            three: EngineTally::new(three_engine, policy.three.len()),
            five: EngineTally::new(five_engine, policy.five.len()),
            agreement: vec![0; n * (n + 1)],
            verdicts,
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
        for (a, b) in self.tunnels.iter_mut().zip(&o.tunnels) {
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

    /// Counts one frame of `bytes` on the wire: what it became, and how long its step took
    /// when it was timed. The per-frame hot path: nothing allocated.
    #[inline(always)]
    pub fn record(&mut self, bytes: u32, outcome: &Outcome<'_>, timing: Option<&StepTiming>) {
        self.frames.add(bytes);
        let (three, five) = match outcome {
            Outcome::NonIpv6(kind) => {
                self.non_ipv6[kind.index()].add(bytes);
                return;
            }
            Outcome::Ipv6 { three, five, .. } => (*three, *five),
        };
        self.three.classified += 1;
        if five.is_ok() {
            self.five.classified += 1;
        }
        if let Some(t) = timing {
            self.three.extract_ns += t.three_extract;
            self.five.extract_ns += t.three_extract + t.five_walk;
            self.three.match_ns += t.three_match;
            self.three.timed_extract += 1;
            self.five.timed_extract += 1;
            self.three.timed_match += 1;
            if let Some(m) = t.five_match {
                self.five.match_ns += m;
                self.five.timed_match += 1;
            }
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
    }
}

/// Frames of one link type in a capture, and whether flowpol decodes that link type.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LinkTypeCount {
    /// The `LINKTYPE_*` number.
    pub link_type: u32,
    /// Its name in the tcpdump.org link-type registry, without `LINKTYPE_` (pcap-file's
    /// `DataLink` table), e.g. "ETHERNET", "IEEE802_11_RADIOTAP"; null for a number the
    /// registry does not list.
    pub name: Option<String>,
    pub frames: u64,
    /// Bytes on the wire.
    pub bytes: u64,
    /// False when flowpol has no decoder for this link type: its frames are counted as
    /// `other`, and none of them can be IPv6.
    pub decoded: bool,
}

impl LinkTypeCount {
    pub fn new(link: LinkType, frames: u64, bytes: u64) -> LinkTypeCount {
        LinkTypeCount {
            link_type: link.0,
            name: link_type_name(link),
            frames,
            bytes,
            decoded: decoded(link),
        }
    }

    /// "link type 127 (IEEE802_11_RADIOTAP)".
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("link type {} ({n})", self.link_type),
            None => format!("link type {} (not in the registry)", self.link_type),
        }
    }
}

/// The registry name of a link type (pcap-file's table of the tcpdump.org `LINKTYPE_` list).
pub fn link_type_name(link: LinkType) -> Option<String> {
    // 12 and 14 are not in the registry, but some BSDs wrote raw IP under them.
    if link == LinkType::RAW_BSD12 || link == LinkType::RAW_BSD14 {
        return Some("RAW".into());
    }
    match pcap_file::DataLink::from(link.0) {
        pcap_file::DataLink::Unknown(_) => None,
        d => Some(format!("{d:?}")),
    }
}

/// Whether flowpol's link layer decodes this link type. Asked of the decoder itself, so a
/// link type it learns is known here at once: a frame too short for any header is cut short
/// ("malformed") on a link type it decodes, and "other" on one it does not.
pub fn decoded(link: LinkType) -> bool {
    link.is_decoded()
}

#[cfg(test)]
mod link_type_tests {
    use super::*;

    #[test]
    fn the_link_types_flowpol_decodes_are_told_from_the_others() {
        for l in [
            LinkType::NULL,
            LinkType::ETHERNET,
            LinkType::RAW,
            LinkType::RAW_BSD12,
            LinkType::RAW_BSD14,
            LinkType::LOOP,
            LinkType::LINUX_SLL,
            LinkType::IPV4,
            LinkType::IPV6,
            LinkType::LINUX_SLL2,
        ] {
            assert!(decoded(l), "{l}");
        }
        // 802.11 with radiotap, USB, 802.15.4: no IPv6 decoder will ever read these.
        for n in [127, 189, 195] {
            assert!(!decoded(LinkType(n)), "{n}");
        }
    }

    #[test]
    fn link_types_are_named_from_the_registry() {
        assert_eq!(
            LinkTypeCount::new(LinkType(127), 812, 9000).label(),
            "link type 127 (IEEE802_11_RADIOTAP)"
        );
        assert_eq!(
            link_type_name(LinkType::ETHERNET).as_deref(),
            Some("ETHERNET")
        );
        assert_eq!(link_type_name(LinkType::RAW_BSD14).as_deref(), Some("RAW"));
        assert_eq!(link_type_name(LinkType(60_000)), None);
    }
}
