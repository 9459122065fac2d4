//! The report's data model: built once from a [`Tally`] and the policy, serialised as the JSON
//! of `--format json` and rendered as the human table by [`crate::report::table`].

use super::tally::{EngineTally, LinkTypeCount, PacketBytes, Tally};
use crate::packet::{NonIpv6, Unavailable};
use crate::policy::model::Policy;
use serde::Serialize;

/// Where the packets came from.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SourceInfo {
    /// "pcap", "pcapng", or a live source kind.
    pub kind: String,
    /// File name or interface.
    pub name: String,
}

/// A problem that ended reading early (the counts cover what was read before it).
#[derive(Clone, Debug, Serialize)]
pub struct Stopped {
    /// Byte offset in the capture of the record that could not be read.
    pub offset: u64,
    pub message: String,
}

/// What reading the capture file noticed, apart from the packets: its link types (with the
/// frames of each, and whether flowpol decodes them), records read although their timestamp
/// was out of range, and whether it was gzip-compressed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CaptureNotes {
    /// Every link type the capture's frames have, in order of first appearance.
    pub link_types: Vec<LinkTypeCount>,
    /// Records whose timestamp fraction was out of range (read anyway).
    pub bad_timestamps: u64,
    /// The first frame with a bad timestamp.
    pub first_bad_timestamp: Option<u64>,
    pub gzip: bool,
}

impl CaptureNotes {
    /// Link types with frames that flowpol does not decode.
    pub fn undecoded(&self) -> impl Iterator<Item = &LinkTypeCount> {
        self.link_types
            .iter()
            .filter(|l| !l.decoded && l.frames > 0)
    }

    /// Frames of a link type flowpol decodes.
    pub fn decodable_frames(&self) -> u64 {
        self.link_types
            .iter()
            .filter(|l| l.decoded)
            .map(|l| l.frames)
            .sum()
    }

    /// What a user should be told on stderr, one sentence each: every link type not decoded,
    /// a file with frames but none decodable, bad timestamps.
    pub fn warnings(&self) -> Vec<String> {
        let mut w: Vec<String> = self
            .undecoded()
            .map(|l| {
                format!(
                    "the capture has {}: {} frame{}, not decoded (counted as other)",
                    l.label(),
                    l.frames,
                    if l.frames == 1 { "" } else { "s" }
                )
            })
            .collect();
        let frames: u64 = self.link_types.iter().map(|l| l.frames).sum();
        if frames > 0 && self.decodable_frames() == 0 {
            w.push(format!(
                "no frame of the capture could be decoded: all {frames} are of link types flowpol does not read, so no IPv6 packet was seen"
            ));
        }
        if self.bad_timestamps > 0 {
            w.push(format!(
                "{} record{} of the capture had a timestamp fraction out of range (first: frame {}); read anyway, the excess carried into the seconds",
                self.bad_timestamps,
                if self.bad_timestamps == 1 { "" } else { "s" },
                self.first_bad_timestamp.unwrap_or(0)
            ));
        }
        w
    }
}

/// One rule's line, under one engine.
#[derive(Clone, Debug, Serialize)]
pub struct RuleRow {
    /// Rule name, or "default".
    pub name: String,
    /// "pass", "drop" or "class NAME".
    pub action: String,
    pub packets: u64,
    pub bytes: u64,
}

/// Rules of both engines.
#[derive(Clone, Debug, Serialize)]
pub struct Rules {
    pub three: Vec<RuleRow>,
    pub five: Vec<RuleRow>,
}

/// One outcome (class, pass or drop) under both engines.
#[derive(Clone, Debug, Serialize)]
pub struct ClassRow {
    pub name: String,
    pub three: PacketBytes,
    pub five: PacketBytes,
}

/// Non-IPv6 frames by kind.
#[derive(Clone, Debug, Serialize)]
pub struct NonIpv6Counts {
    pub ipv4: PacketBytes,
    pub arp: PacketBytes,
    pub other: PacketBytes,
    pub malformed: PacketBytes,
    /// IPv4 with IPv6 inside, read with `--tunnel outer`.
    #[serde(rename = "ipv4-carrying-ipv6")]
    pub ipv4_carrying_ipv6: PacketBytes,
    #[serde(rename = "mpls-pseudowire")]
    pub mpls_pseudowire: PacketBytes,
}

/// IPv6 packets the 5-tuple engine could not classify, by reason.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct UnavailableCounts {
    pub non_first_fragment: PacketBytes,
    pub esp: PacketBytes,
    pub unknown_header: PacketBytes,
    pub truncated: PacketBytes,
    pub malformed: PacketBytes,
    pub total: PacketBytes,
}

/// The agreement matrix: `counts[i][j]` packets got outcome `rows[i]` from the 3-tuple engine
/// and `columns[j]` from the 5-tuple engine (the last column: no 5-tuple).
#[derive(Clone, Debug, Serialize)]
pub struct Agreement {
    pub rows: Vec<String>,
    pub columns: Vec<String>,
    pub counts: Vec<Vec<u64>>,
    /// Packets with the same outcome under both engines.
    pub agree: u64,
    /// Packets with a 5-tuple and a different outcome.
    pub disagree: u64,
    /// Packets without a 5-tuple.
    pub unavailable: u64,
}

/// Time per packet for one engine.
#[derive(Clone, Debug, Serialize)]
pub struct EngineTiming {
    pub engine: String,
    /// Key extraction (for the 5-tuple: fixed header and extension-header walk), per packet,
    /// averaged over the timed sample.
    pub extract_ns_per_packet: f64,
    /// Matching, per packet classified, averaged over the timed sample.
    pub match_ns_per_packet: f64,
    /// Packets classified.
    pub packets: u64,
    /// Packets timed (all of the first 1024, then one in 64).
    pub timed: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Timing {
    pub three: EngineTiming,
    pub five: EngineTiming,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub source: SourceInfo,
    pub policy: String,
    pub frames: PacketBytes,
    pub ipv6: PacketBytes,
    pub non_ipv6: NonIpv6Counts,
    /// With `--tunnel inner`: frames whose IPv6 packet was found inside a tunnel, by the kind of
    /// the outermost tunnel (only kinds seen).
    pub tunnels: std::collections::BTreeMap<&'static str, PacketBytes>,
    pub rules: Rules,
    pub classes: Vec<ClassRow>,
    pub agreement: Agreement,
    pub five_unavailable: UnavailableCounts,
    pub timing: Timing,
    /// The capture's link types, bad timestamps and compression (empty for a live source).
    pub capture: CaptureNotes,
    /// Set when reading stopped early on a corrupt or truncated capture.
    pub stopped: Option<Stopped>,
}

fn rule_rows<M>(
    rules: &[crate::policy::model::Rule<M>],
    e: &EngineTally,
    default: String,
) -> Vec<RuleRow> {
    let mut rows: Vec<RuleRow> = rules
        .iter()
        .zip(&e.rules)
        .map(|(r, c)| RuleRow {
            name: r.name.clone(),
            action: r.action.to_string(),
            packets: c.packets,
            bytes: c.bytes,
        })
        .collect();
    rows.push(RuleRow {
        name: "default".into(),
        action: default,
        packets: e.default.packets,
        bytes: e.default.bytes,
    });
    rows
}

fn timing(e: &EngineTally) -> EngineTiming {
    let per = |ns: u64, n: u64| {
        if n == 0 {
            0.0
        } else {
            (ns as f64 / n as f64 * 10.0).round() / 10.0
        }
    };
    EngineTiming {
        engine: e.engine.to_string(),
        extract_ns_per_packet: per(e.extract_ns, e.timed_extract),
        match_ns_per_packet: per(e.match_ns, e.timed_match),
        packets: e.classified,
        timed: e.timed_match,
    }
}

impl Report {
    /// Builds the report of a tally over `policy` (the policy the tally was built for).
    pub fn new(tally: &Tally, policy: &Policy, policy_name: &str, source: SourceInfo) -> Report {
        let v = &tally.verdicts;
        let n = v.names.len();
        let mut classes: Vec<ClassRow> = v
            .names
            .iter()
            .map(|name| ClassRow {
                name: name.clone(),
                three: PacketBytes::default(),
                five: PacketBytes::default(),
            })
            .collect();
        for (i, c) in tally.three.rules.iter().enumerate() {
            classes[v.three[i]].three.merge(c);
        }
        classes[v.default].three.merge(&tally.three.default);
        for (i, c) in tally.five.rules.iter().enumerate() {
            classes[v.five[i]].five.merge(c);
        }
        classes[v.default].five.merge(&tally.five.default);

        let cols = tally.agreement_columns();
        let counts: Vec<Vec<u64>> = tally.agreement.chunks(cols).map(|r| r.to_vec()).collect();
        let agree = (0..n).map(|i| counts[i][i]).sum();
        let unavailable = counts.iter().map(|r| r[n]).sum();
        let total: u64 = tally.agreement.iter().sum();
        let mut columns = v.names.clone();
        columns.push("unavailable".into());

        let u = |r: Unavailable| tally.unavailable[r.index()];
        let mut utotal = PacketBytes::default();
        for c in &tally.unavailable {
            utotal.merge(c);
        }
        let k = |x: NonIpv6| tally.non_ipv6[x.index()];
        let default = policy.default.to_string();
        Report {
            source,
            policy: policy_name.to_string(),
            frames: tally.frames,
            ipv6: tally.ipv6,
            non_ipv6: NonIpv6Counts {
                ipv4: k(NonIpv6::Ipv4),
                arp: k(NonIpv6::Arp),
                other: k(NonIpv6::Other),
                malformed: k(NonIpv6::Malformed),
                ipv4_carrying_ipv6: k(NonIpv6::Ipv4CarryingIpv6),
                mpls_pseudowire: k(NonIpv6::MplsPseudowire),
            },
            tunnels: crate::packet::tunnel::Kind::ALL
                .iter()
                .zip(&tally.tunnels)
                .filter(|(_, c)| c.packets > 0)
                .map(|(k, c)| (k.as_str(), *c))
                .collect(),
            rules: Rules {
                three: rule_rows(&policy.three, &tally.three, default.clone()),
                five: rule_rows(&policy.five, &tally.five, default),
            },
            classes,
            agreement: Agreement {
                rows: v.names.clone(),
                columns,
                counts,
                agree,
                disagree: total - agree - unavailable,
                unavailable,
            },
            five_unavailable: UnavailableCounts {
                non_first_fragment: u(Unavailable::NonFirstFragment),
                esp: u(Unavailable::Esp),
                unknown_header: u(Unavailable::UnknownHeader),
                truncated: u(Unavailable::Truncated),
                malformed: u(Unavailable::Malformed),
                total: utotal,
            },
            timing: Timing {
                three: timing(&tally.three),
                five: timing(&tally.five),
            },
            capture: CaptureNotes::default(),
            stopped: None,
        }
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}
