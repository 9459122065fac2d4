//! `flows`: what the flow labels of a capture say about replacing a 5-tuple policy with a
//! 3-tuple one. Per 5-tuple flow (one direction), the labels seen: constant, zero, or changed
//! and how often (Linux re-draws a TCP socket's label after a retransmission timeout). Per
//! 3-tuple, how many 5-tuple flows share it. And a verdict, in words and as data: a 3-tuple
//! policy stands in for a 5-tuple one when every flow keeps one label and no two flows share a
//! 3-tuple; otherwise the flows that break it are listed.
//!
//! The analysis is built from the flow meter's records ([`MeteredFlow`], one per ended flow),
//! not from packets, so its memory is bounded: at most `limit` 5-tuple flows are tracked (the
//! records of one 5-tuple, split by timeouts, are joined into one row), and at most
//! `4 x limit` (3-tuple, flow) pairs. Records of further 5-tuples are still counted in the
//! label summary, each as a flow of its own, but get no row and are not checked for sharing a
//! 3-tuple; [`Bounds`] says how many there were.

use crate::FlowLabel;
use crate::classify::Outcome;
use crate::packet::{FiveTuple, Frame, ThreeTuple};
use crate::report::model::SourceInfo;
use crate::report::tally::PacketBytes;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;
use std::fmt::Write;
use std::net::Ipv6Addr;

/// Distinct labels remembered per flow (the count of changes is exact regardless).
pub const MAX_LABELS: usize = 16;

/// The default number of 5-tuple flows the report tracks (`flows --report-flows`).
pub const DEFAULT_REPORT_FLOWS: usize = 100_000;

/// (3-tuple, flow) pairs tracked per tracked flow.
pub const PAIRS_PER_FLOW: usize = 4;

#[derive(Clone, Debug)]
struct FlowState {
    key: FiveTuple,
    count: PacketBytes,
    first: u32,
    last: u32,
    changes: u64,
    labels: Vec<u32>,
}

/// One ended flow as the report takes it: the values of a flow meter record of a 5-tuple flow.
#[derive(Clone, Copy, Debug)]
pub struct MeteredFlow<'a> {
    pub key: FiveTuple,
    pub packets: u64,
    /// IP bytes (header and payload).
    pub bytes: u64,
    pub first_label: u32,
    pub last_label: u32,
    /// Times a packet's label differed from the previous packet's, within the record.
    pub label_changes: u64,
    /// Distinct labels seen, in order (the meter keeps a few; more are flagged below).
    pub labels: &'a [u32],
    /// More distinct labels were seen than `labels` holds.
    pub labels_overflow: bool,
}

/// What the bounds of the analysis left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Bounds {
    /// The most 5-tuple flows tracked (rows).
    pub report_flows: usize,
    /// Records of 5-tuples beyond the bound: counted in the label summary (each as a flow),
    /// without a row and unchecked for sharing.
    pub flows_untracked: u64,
    /// Their packets.
    pub packets_untracked: u64,
    /// (3-tuple, flow) pairs not tracked because the pair bound was reached, or because a
    /// record had more distinct labels than the meter keeps.
    pub three_tuples_untracked: u64,
}

/// Accumulates metered flows over a capture, in bounded memory (see the module docs).
#[derive(Debug)]
pub struct FlowAnalysis {
    flows: Vec<FlowState>,
    index: FxHashMap<FiveTuple, usize>,
    pairs: FxHashSet<(ThreeTuple, usize)>,
    bounds: Bounds,
    /// Label kinds of the untracked records: constant, zero, changed, changes.
    untracked: [u64; 4],
    /// Frames read.
    pub frames: PacketBytes,
    /// IPv6 packets.
    pub ipv6: PacketBytes,
    /// IPv6 packets without a 5-tuple (ESP, non-first fragments, ...): a 3-tuple policy still
    /// classifies them, a 5-tuple policy cannot.
    pub no_five: PacketBytes,
}

impl Default for FlowAnalysis {
    fn default() -> Self {
        Self::new(DEFAULT_REPORT_FLOWS)
    }
}

/// How a flow's labels behaved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelKind {
    /// One non-zero label throughout.
    Constant,
    /// Label 0 throughout (unlabelled).
    Zero,
    /// More than one label.
    Changed,
}

/// One 5-tuple flow in the report.
#[derive(Clone, Debug, Serialize)]
pub struct FlowRow {
    pub src: String,
    pub dst: String,
    pub proto: u8,
    /// Null for a protocol without ports (ICMPv6, ...), as in every flowpol JSON output.
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub packets: u64,
    pub bytes: u64,
    pub labels: LabelKind,
    pub first_label: u32,
    pub last_label: u32,
    /// Times the label differed from the previous packet's.
    pub changes: u64,
    /// Distinct labels seen (at most [`MAX_LABELS`] listed).
    pub distinct_labels: Vec<u32>,
    /// 3-tuples this flow used.
    pub three_tuples: usize,
    /// True when one of its 3-tuples is also used by another 5-tuple flow.
    pub shared: bool,
}

/// A 3-tuple and the number of 5-tuple flows behind it.
#[derive(Clone, Debug, Serialize)]
pub struct ThreeRow {
    pub src: String,
    pub dst: String,
    pub flow_label: u32,
    pub flows: usize,
}

/// 3-tuple statistics.
#[derive(Clone, Debug, Serialize)]
pub struct ThreeStats {
    /// Distinct 3-tuples with a 5-tuple flow behind them.
    pub total: usize,
    /// Of which used by more than one 5-tuple flow.
    pub shared: usize,
    /// The most 5-tuple flows behind one 3-tuple.
    pub max_flows: usize,
    /// Every 3-tuple with the number of 5-tuple flows sharing it, most-shared first.
    pub list: Vec<ThreeRow>,
}

/// Label behaviour over all flows.
#[derive(Clone, Debug, Serialize)]
pub struct LabelSummary {
    pub flows: usize,
    pub constant: usize,
    pub zero: usize,
    pub changed: usize,
    /// Label changes over all flows.
    pub changes: u64,
}

/// A flow that a 3-tuple policy cannot treat like its 5-tuple counterpart, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Breaking {
    pub src: String,
    pub dst: String,
    pub proto: u8,
    /// Null for a protocol without ports (ICMPv6, ...), as in every flowpol JSON output.
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub why: String,
}

/// The answer.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    /// True when a 3-tuple policy can stand in for a 5-tuple policy on this traffic; null
    /// (no verdict) when the capture holds no IPv6 flow with a 5-tuple to judge by.
    pub stands_in: Option<bool>,
    /// Share of 5-tuple-keyed packets in flows a 3-tuple identifies exactly (0..=1).
    pub clean_packet_share: f64,
    pub text: String,
    pub breaking: Vec<Breaking>,
}

/// The `flows` report.
#[derive(Clone, Debug, Serialize)]
pub struct FlowsReport {
    pub source: SourceInfo,
    pub frames: PacketBytes,
    pub ipv6: PacketBytes,
    pub no_five_tuple: PacketBytes,
    pub labels: LabelSummary,
    pub three_tuples: ThreeStats,
    pub verdict: Verdict,
    pub flows: Vec<FlowRow>,
    /// What the analysis' memory bound left out (all 0 but `report_flows` when nothing).
    pub bounds: Bounds,
    /// Set when reading stopped early on a corrupt or truncated capture.
    pub stopped: Option<crate::report::model::Stopped>,
}

/// The ports of a flow whose protocol has them.
fn ports(k: &FiveTuple) -> Option<(u16, u16)> {
    crate::packet::IpNumber(k.proto)
        .has_ports()
        .then_some((k.sport, k.dport))
}

fn addr(a: u128) -> String {
    Ipv6Addr::from(a).to_string()
}

impl FlowAnalysis {
    /// An analysis tracking at most `limit` 5-tuple flows (at least 1).
    pub fn new(limit: usize) -> Self {
        let limit = limit.max(1);
        FlowAnalysis {
            flows: Vec::new(),
            index: FxHashMap::default(),
            pairs: FxHashSet::default(),
            bounds: Bounds {
                report_flows: limit,
                ..Bounds::default()
            },
            untracked: [0; 4],
            frames: PacketBytes::default(),
            ipv6: PacketBytes::default(),
            no_five: PacketBytes::default(),
        }
    }

    /// Counts one frame by what the step made of it (frames, IPv6 packets, packets without a
    /// 5-tuple); the flows come from the meter's records ([`FlowAnalysis::add`]).
    pub fn count(&mut self, frame: &Frame<'_>, outcome: &Outcome<'_>) {
        self.frames.add(frame.orig_len);
        if let Outcome::Ipv6 { keys, .. } = outcome {
            self.ipv6.add(frame.orig_len);
            if keys.five.is_err() {
                self.no_five.add(frame.orig_len);
            }
        }
    }

    /// Adds one ended 5-tuple flow. Records of a 5-tuple already tracked are joined to it (a
    /// label that differs from the previous record's last label counts as a change). Allocates
    /// only for a new tracked flow or pair, and never beyond the bounds.
    pub fn add(&mut self, f: &MeteredFlow<'_>) {
        let i = match self.index.get(&f.key) {
            Some(&i) => {
                let s = &mut self.flows[i];
                if s.last != f.first_label {
                    s.changes += 1;
                }
                i
            }
            None if self.flows.len() < self.bounds.report_flows => {
                self.flows.push(FlowState {
                    key: f.key,
                    count: PacketBytes::default(),
                    first: f.first_label,
                    last: f.first_label,
                    changes: 0,
                    labels: Vec::new(),
                });
                self.index.insert(f.key, self.flows.len() - 1);
                self.flows.len() - 1
            }
            None => {
                self.bounds.flows_untracked += 1;
                self.bounds.packets_untracked += f.packets;
                let kind = if f.label_changes > 0 {
                    2
                } else if f.first_label == 0 {
                    1
                } else {
                    0
                };
                self.untracked[kind] += 1;
                self.untracked[3] += f.label_changes;
                return;
            }
        };
        let s = &mut self.flows[i];
        s.count.packets += f.packets;
        s.count.bytes += f.bytes;
        s.changes += f.label_changes;
        s.last = f.last_label;
        for &l in f.labels {
            if s.labels.len() < MAX_LABELS && !s.labels.contains(&l) {
                s.labels.push(l);
            }
        }
        if f.labels_overflow {
            self.bounds.three_tuples_untracked += 1;
        }
        for &l in f.labels {
            let t = ThreeTuple {
                src: f.key.src,
                dst: f.key.dst,
                label: FlowLabel::from_low_bits(l),
            };
            if self.pairs.len() < PAIRS_PER_FLOW * self.bounds.report_flows {
                self.pairs.insert((t, i));
            } else if !self.pairs.contains(&(t, i)) {
                self.bounds.three_tuples_untracked += 1;
            }
        }
    }

    /// The report: which flows share a 3-tuple, the per-flow rows with what breaks a 3-tuple
    /// policy, and the verdict.
    pub fn report(&self, source: SourceInfo) -> FlowsReport {
        let sharing = self.sharing();
        let three_tuples = sharing.stats();
        let mut flows = self.flow_rows(&sharing);
        let verdict = self.verdict(&mut flows, &sharing);
        FlowsReport {
            source,
            frames: self.frames,
            ipv6: self.ipv6,
            no_five_tuple: self.no_five,
            labels: flows.summary,
            three_tuples,
            verdict,
            flows: flows.rows,
            bounds: self.bounds,
            stopped: None,
        }
    }

    /// Which flows share a 3-tuple: flows per 3-tuple, 3-tuples per flow, and per flow the
    /// most other flows on one of its 3-tuples.
    fn sharing(&self) -> Sharing {
        let mut per_three: FxHashMap<ThreeTuple, usize> = FxHashMap::default();
        let mut threes_of = vec![0usize; self.flows.len()];
        for (t, i) in &self.pairs {
            *per_three.entry(*t).or_default() += 1;
            threes_of[*i] += 1;
        }
        let mut others_of = vec![0usize; self.flows.len()];
        for (t, i) in &self.pairs {
            others_of[*i] = others_of[*i].max(per_three[t] - 1);
        }
        Sharing {
            per_three,
            threes_of,
            others_of,
        }
    }

    /// One row per flow, with why it breaks a 3-tuple policy (if it does) and the label summary.
    fn flow_rows(&self, sharing: &Sharing) -> FlowRows {
        let mut rows = Vec::with_capacity(self.flows.len());
        let mut breaking = Vec::new();
        // Untracked records count as flows of their own (see [`Bounds`]).
        let [uc, uz, ux, un] = self.untracked;
        let mut summary = LabelSummary {
            flows: self.flows.len() + (uc + uz + ux) as usize,
            constant: uc as usize,
            zero: uz as usize,
            changed: ux as usize,
            changes: un,
        };
        let (mut clean, mut keyed) = (0u64, 0u64);
        for (i, f) in self.flows.iter().enumerate() {
            let kind = if f.changes > 0 {
                summary.changed += 1;
                LabelKind::Changed
            } else if f.first == 0 {
                summary.zero += 1;
                LabelKind::Zero
            } else {
                summary.constant += 1;
                LabelKind::Constant
            };
            summary.changes += f.changes;
            keyed += f.count.packets;
            let k = f.key;
            let shared = sharing.shared(i);
            let why = f.why(shared.then_some(sharing.others_of[i]));
            if why.is_empty() {
                clean += f.count.packets;
            } else {
                breaking.push(Breaking {
                    src: addr(k.src),
                    dst: addr(k.dst),
                    proto: k.proto,
                    sport: ports(&k).map(|p| p.0),
                    dport: ports(&k).map(|p| p.1),
                    why: why.join("; "),
                });
            }
            rows.push(FlowRow {
                src: addr(k.src),
                dst: addr(k.dst),
                proto: k.proto,
                sport: ports(&k).map(|p| p.0),
                dport: ports(&k).map(|p| p.1),
                packets: f.count.packets,
                bytes: f.count.bytes,
                labels: kind,
                first_label: f.first,
                last_label: f.last,
                changes: f.changes,
                distinct_labels: f.labels.clone(),
                three_tuples: sharing.threes_of[i],
                shared,
            });
        }
        FlowRows {
            rows,
            breaking,
            summary,
            clean,
            keyed,
        }
    }

    /// Whether a 3-tuple policy can stand in for a 5-tuple policy, and the sentence saying so.
    /// Takes the breaking flows from `flows`.
    fn verdict(&self, flows: &mut FlowRows, sharing: &Sharing) -> Verdict {
        let share = if flows.keyed == 0 {
            1.0
        } else {
            flows.clean as f64 / flows.keyed as f64
        };
        let breaking = std::mem::take(&mut flows.breaking);
        let untracked_changed = self.untracked[2];
        let stands_in = breaking.is_empty() && untracked_changed == 0;
        let n_changed = self.flows.iter().filter(|f| f.changes > 0).count();
        let n_shared = (0..self.flows.len()).filter(|&i| sharing.shared(i)).count();
        let mut text = if self.ipv6.packets == 0 {
            format!(
                "No verdict: none of the {} frames is an IPv6 packet flowpol can read.",
                self.frames.packets
            )
        } else if self.flows.is_empty() {
            format!(
                "No verdict: none of the {} IPv6 packets has a 5-tuple, so there is no 5-tuple flow to compare with.",
                self.ipv6.packets
            )
        } else if stands_in {
            format!(
                "Yes: each of the {} flows keeps one flow label and no two flows share a 3-tuple, so a 3-tuple policy can identify every flow a 5-tuple policy can.",
                self.flows.len()
            )
        } else {
            format!(
                "No: {} of {} flows break a 3-tuple policy ({} changed their label mid-flow, {} share a 3-tuple with another flow); {:.1}% of the packets are in flows a 3-tuple identifies exactly.",
                breaking.len(),
                self.flows.len(),
                n_changed,
                n_shared,
                share * 100.0
            )
        };
        let b = &self.bounds;
        if b.flows_untracked > 0 {
            let _ = write!(
                text,
                " Only the first {} flows were tracked (--report-flows): {} more flow records ({} packets, {} with a changed label) were counted but not checked for a shared 3-tuple.",
                b.report_flows, b.flows_untracked, b.packets_untracked, untracked_changed
            );
        }
        if self.no_five.packets > 0 {
            let _ = write!(
                text,
                " {} packets have no 5-tuple at all (ESP, non-first fragments, ...): only a 3-tuple policy can classify them.",
                self.no_five.packets
            );
        }
        Verdict {
            stands_in: (!self.flows.is_empty()).then_some(stands_in),
            clean_packet_share: (share * 10000.0).round() / 10000.0,
            text,
            breaking,
        }
    }
}

/// Which flows share a 3-tuple (see [`FlowAnalysis::report`]).
struct Sharing {
    /// Flows per 3-tuple.
    per_three: FxHashMap<ThreeTuple, usize>,
    /// 3-tuples per flow.
    threes_of: Vec<usize>,
    /// Per flow: the most other flows on one of its 3-tuples.
    others_of: Vec<usize>,
}

impl Sharing {
    /// Flow `i` shares a 3-tuple with another flow.
    fn shared(&self, i: usize) -> bool {
        self.others_of[i] > 0
    }

    /// The 3-tuples, most flows first.
    fn stats(&self) -> ThreeStats {
        let mut list: Vec<ThreeRow> = self
            .per_three
            .iter()
            .map(|(t, n)| ThreeRow {
                src: addr(t.src),
                dst: addr(t.dst),
                flow_label: t.label.value(),
                flows: *n,
            })
            .collect();
        list.sort_by(|a, b| {
            b.flows
                .cmp(&a.flows)
                .then_with(|| (&a.src, &a.dst, a.flow_label).cmp(&(&b.src, &b.dst, b.flow_label)))
        });
        ThreeStats {
            total: self.per_three.len(),
            shared: list.iter().filter(|x| x.flows > 1).count(),
            max_flows: self.per_three.values().copied().max().unwrap_or(0),
            list,
        }
    }
}

/// The per-flow phase of the report.
struct FlowRows {
    rows: Vec<FlowRow>,
    breaking: Vec<Breaking>,
    summary: LabelSummary,
    /// Packets in flows a 3-tuple identifies exactly.
    clean: u64,
    /// Packets in flows with a 5-tuple.
    keyed: u64,
}

impl FlowState {
    /// Why this flow breaks a 3-tuple policy (empty: it does not). `others`: the most other
    /// flows on one of its 3-tuples, when it shares one.
    fn why(&self, others: Option<usize>) -> Vec<String> {
        let mut why = Vec::new();
        if self.changes > 0 {
            why.push(format!(
                "label changed {} time{} ({} labels)",
                self.changes,
                if self.changes == 1 { "" } else { "s" },
                self.labels.len()
            ));
        }
        if let Some(others) = others {
            let zero_note = if self.first == 0 && self.changes == 0 {
                " (unlabelled)"
            } else {
                ""
            };
            why.push(format!(
                "shares its 3-tuple with {others} other flow{}{zero_note}",
                if others == 1 { "" } else { "s" }
            ));
        }
        why
    }
}

/// The human rendering: label summary, flows (the `limit` biggest), shared 3-tuples, verdict.
pub fn render(r: &FlowsReport, limit: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} ({}): {} frames, {} IPv6 packets, {} without a 5-tuple",
        r.source.name, r.source.kind, r.frames.packets, r.ipv6.packets, r.no_five_tuple.packets
    );
    if let Some(st) = &r.stopped {
        let _ = writeln!(s, "STOPPED EARLY at byte {}: {}", st.offset, st.message);
    }
    let l = &r.labels;
    let _ = writeln!(
        s,
        "{} flows: {} constant label, {} unlabelled (zero), {} changed ({} changes in all)",
        l.flows, l.constant, l.zero, l.changed, l.changes
    );
    let _ = writeln!(
        s,
        "{} 3-tuples; {} shared by more than one flow (at most {} flows on one)\n",
        r.three_tuples.total, r.three_tuples.shared, r.three_tuples.max_flows
    );
    let mut order: Vec<&FlowRow> = r.flows.iter().collect();
    order.sort_by_key(|f| std::cmp::Reverse(f.packets));
    let mut t = crate::report::table::table(&[
        "src", "sport", "dst", "dport", "proto", "packets", "labels", "changes", "3-tuples",
        "shared",
    ]);
    for f in order.iter().take(limit) {
        let labels = match f.labels {
            LabelKind::Constant => format!("constant {:#07x}", f.first_label),
            LabelKind::Zero => "zero".to_string(),
            LabelKind::Changed => {
                format!(
                    "changed {:#07x} -> {:#07x} ({} labels)",
                    f.first_label,
                    f.last_label,
                    f.distinct_labels.len()
                )
            }
        };
        t.add_row(vec![
            f.src.clone(),
            f.sport.map_or("-".into(), |p| p.to_string()),
            f.dst.clone(),
            f.dport.map_or("-".into(), |p| p.to_string()),
            crate::packet::IpNumber(f.proto).to_string(),
            f.packets.to_string(),
            labels,
            f.changes.to_string(),
            f.three_tuples.to_string(),
            if f.shared { "yes" } else { "" }.to_string(),
        ]);
    }
    let _ = writeln!(
        s,
        "Flows{}",
        if r.flows.len() > limit {
            format!(" (the {limit} largest of {})", r.flows.len())
        } else {
            String::new()
        }
    );
    let _ = writeln!(s, "{t}");
    if r.three_tuples.shared > 0 {
        let mut t = crate::report::table::table(&["src", "dst", "flow label", "flows"]);
        for x in r
            .three_tuples
            .list
            .iter()
            .filter(|x| x.flows > 1)
            .take(limit)
        {
            t.add_row(vec![
                x.src.clone(),
                x.dst.clone(),
                format!("{:#07x}", x.flow_label),
                x.flows.to_string(),
            ]);
        }
        let _ = writeln!(s, "\nShared 3-tuples\n{t}");
    }
    let _ = writeln!(s, "\nVerdict: {}", r.verdict.text);
    if !r.verdict.breaking.is_empty() {
        let mut t = crate::report::table::table(&["src", "sport", "dst", "dport", "proto", "why"]);
        for b in r.verdict.breaking.iter().take(limit) {
            t.add_row(vec![
                b.src.clone(),
                b.sport.map_or("-".into(), |p| p.to_string()),
                b.dst.clone(),
                b.dport.map_or("-".into(), |p| p.to_string()),
                crate::packet::IpNumber(b.proto).to_string(),
                b.why.clone(),
            ]);
        }
        let _ = writeln!(
            s,
            "Flows that break it{}:\n{t}",
            if r.verdict.breaking.len() > limit {
                format!(" (first {limit} of {})", r.verdict.breaking.len())
            } else {
                String::new()
            }
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Decoded, LinkType, decode};
    use std::time::Duration;

    fn udp(src: u8, sport: u16, label: u32) -> Vec<u8> {
        let mut p = vec![
            0x60,
            (label >> 16) as u8,
            (label >> 8) as u8,
            label as u8,
            0,
            8,
            17,
            64,
        ];
        let mut a = [0u8; 16];
        a[0] = 0x20;
        a[1] = 0x01;
        a[15] = src;
        p.extend_from_slice(&a);
        a[15] = 0xff;
        p.extend_from_slice(&a);
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&[0, 53, 0, 8, 0, 0]);
        p
    }

    /// Each packet as a one-packet record (as a meter with a tiny idle timeout would end
    /// them), so records of one 5-tuple are joined by the analysis.
    fn run_limited(pkts: &[Vec<u8>], limit: usize) -> FlowsReport {
        let mut a = FlowAnalysis::new(limit);
        for (i, p) in pkts.iter().enumerate() {
            let frame = Frame {
                number: i as u64 + 1,
                link: LinkType::RAW,
                ts: Duration::ZERO,
                orig_len: p.len() as u32,
                data: p,
            };
            let Decoded::Ipv6(keys) = decode(frame.link, frame.data) else {
                panic!("not IPv6");
            };
            let outcome = Outcome::Ipv6 {
                keys,
                three: None,
                five: Ok(None),
            };
            a.count(&frame, &outcome);
            let label = keys.three.label.value();
            a.add(&MeteredFlow {
                key: keys.five.unwrap(),
                packets: 1,
                bytes: u64::from(frame.orig_len),
                first_label: label,
                last_label: label,
                label_changes: 0,
                labels: &[label],
                labels_overflow: false,
            });
        }
        a.report(SourceInfo::default())
    }

    fn run(pkts: &[Vec<u8>]) -> FlowsReport {
        run_limited(pkts, DEFAULT_REPORT_FLOWS)
    }

    #[test]
    fn flows_beyond_the_bound_are_counted_without_rows_and_said_so() {
        let r = run_limited(
            &[
                udp(1, 1000, 5),
                udp(2, 1000, 6),
                udp(3, 1000, 0),
                udp(1, 1000, 5),
            ],
            1,
        );
        assert_eq!(r.flows.len(), 1);
        assert_eq!(r.flows[0].packets, 2);
        assert_eq!(
            (r.labels.flows, r.labels.constant, r.labels.zero),
            (3, 2, 1)
        );
        assert_eq!(
            (r.bounds.flows_untracked, r.bounds.packets_untracked),
            (2, 2)
        );
        assert!(
            r.verdict.text.contains("Only the first 1 flows"),
            "{}",
            r.verdict.text
        );
    }

    #[test]
    fn constant_labels_stand_in() {
        let r = run(&[udp(1, 1000, 5), udp(1, 1000, 5), udp(2, 1000, 6)]);
        assert_eq!(r.verdict.stands_in, Some(true), "{}", r.verdict.text);
        assert_eq!(
            (r.labels.flows, r.labels.constant, r.labels.changed),
            (2, 2, 0)
        );
        assert_eq!(r.three_tuples.total, 2);
    }

    #[test]
    fn changed_and_shared_labels_break_it() {
        // Flow A re-draws its label twice; flows B and C (same hosts, other ports) share label 0.
        let r = run(&[
            udp(1, 1000, 5),
            udp(1, 1000, 9),
            udp(1, 1000, 9),
            udp(1, 1000, 7),
            udp(3, 2000, 0),
            udp(3, 2001, 0),
            udp(3, 2001, 0),
        ]);
        assert_eq!(r.verdict.stands_in, Some(false));
        assert_eq!(
            (
                r.labels.flows,
                r.labels.changed,
                r.labels.zero,
                r.labels.changes
            ),
            (3, 1, 2, 2)
        );
        assert_eq!(r.flows[0].distinct_labels, vec![5, 9, 7]);
        assert_eq!(r.flows[0].three_tuples, 3);
        assert_eq!(r.three_tuples.shared, 1);
        assert_eq!(r.three_tuples.list[0].flows, 2);
        assert_eq!(r.three_tuples.list.len(), 4);
        assert_eq!(r.three_tuples.list[1].flows, 1);
        assert_eq!(r.verdict.breaking.len(), 3);
        assert!(r.verdict.breaking[0].why.contains("changed 2 times"));
        assert!(
            r.verdict.breaking[1]
                .why
                .contains("shares its 3-tuple with 1 other flow (unlabelled)")
        );
        assert_eq!(r.verdict.clean_packet_share, 0.0);
        assert!(r.verdict.text.starts_with("No: 3 of 3 flows"));
    }
}
