//! The flow meter: packets in, flow records out, in bounded memory.
//!
//! A flow is one direction of traffic keyed on the 5-tuple (src, dst, proto, sport, dport) or,
//! for an IPv6 packet without a 5-tuple (ESP, non-first fragments, unknown headers), on the
//! 3-tuple (src, dst, flow label). Per flow the meter keeps first and last timestamps, packets
//! and bytes, the OR of the TCP flags, the labels seen (up to [`MAX_LABELS`] distinct ones
//! inline, with the exact number of label changes), and the latest 3-tuple and 5-tuple class.
//!
//! A flow ends, giving a [`FlowRecord`] with the IPFIX flowEndReason ([`EndReason`]), when
//! - it saw no packet for the idle timeout (checked by [`FlowTable::expire`]);
//! - it has lasted the active timeout: checked when its next packet arrives (that packet starts
//!   a new flow) and, for the least recently updated flows, by [`FlowTable::expire`];
//! - a TCP packet with FIN or RST arrives (the packet is counted in the flow that ends);
//! - the table is full and a new flow must be inserted: the least recently updated flow is
//!   evicted early ("lack of resources"), and [`MeterStats::evictions`] counts it;
//! - the caller shuts down ([`FlowTable::flush`]).
//!
//! Time is whatever the caller says: packet timestamps offline, the wall clock live. The table is
//! a slab of `max_flows` entries allocated up front, an intrusive doubly linked list through it
//! in order of last update, and a [`hashbrown::HashTable`] of slab indices (4 bytes a bucket)
//! whose capacity is reserved up front: after [`FlowTable::new`] nothing is allocated, neither
//! per packet nor per flow. The hash is hashbrown's default (foldhash, seeded per process), so a
//! flood of crafted addresses cannot aim at one bucket.

use crate::classify::{Outcome, RuleId};
use crate::packet::five::tcp;
use crate::packet::{FiveTuple, ThreeTuple, Unavailable};
use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;
use std::time::Duration;

/// Distinct labels kept per flow (the number of label changes is exact regardless).
pub const MAX_LABELS: usize = 4;

/// The default active timeout (as softflowd's `maxlife` and nfdump's `nfpcapd -e`): 30 minutes.
pub const DEFAULT_ACTIVE: Duration = Duration::from_secs(1800);
/// The default idle timeout (as softflowd's `expint`/`general` and nfpcapd): 15 seconds.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(15);

/// Bytes the table holds per flow: one slab entry, a free-list slot (4), and the hash table's
/// share. The hash table is reserved for twice `max_flows` so that the tombstones removals leave
/// are always cleaned by a rehash in place, never a resize: 8 buckets per 7 entries, rounded up
/// to a power of two, a 4-byte index and a control byte each, so at most 2 x 2 x 8/7 x 5 bytes
/// per flow. Measured by `size_of`, stated in `docs/flows.md`.
pub const BYTES_PER_FLOW: usize = std::mem::size_of::<Entry>() + 4 + 2 * 2 * (4 + 1) * 8 / 7 + 1;

/// The default bound: as many flows as fit in 256 MiB.
pub const DEFAULT_MAX_FLOWS: usize = (256 << 20) / BYTES_PER_FLOW;

const NIL: u32 = u32::MAX;

/// What a flow is keyed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlowKey {
    /// The usual key: (src, dst, proto, sport, dport).
    Five(FiveTuple),
    /// For packets without a 5-tuple: (src, dst, flow label).
    Three(ThreeTuple),
}

impl FlowKey {
    /// Source address.
    pub fn src(&self) -> u128 {
        match self {
            FlowKey::Five(f) => f.src,
            FlowKey::Three(t) => t.src,
        }
    }
    /// Destination address.
    pub fn dst(&self) -> u128 {
        match self {
            FlowKey::Five(f) => f.dst,
            FlowKey::Three(t) => t.dst,
        }
    }
}

/// How a packet or flow was classified on one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// The rule at this index of the policy's rules for that key matched first.
    Rule(u32),
    /// No rule matched: the policy's default.
    Default,
    /// The key could not be read (only for the 5-tuple).
    Unavailable(Unavailable),
}

/// Why a flow ended: the values of IPFIX flowEndReason (IE 136, RFC 5102 §5.11.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u8)]
pub enum EndReason {
    /// No packet for the idle timeout.
    IdleTimeout = 1,
    /// The flow lasted the active timeout.
    ActiveTimeout = 2,
    /// TCP FIN or RST.
    EndOfFlow = 3,
    /// The meter was shut down.
    ForcedEnd = 4,
    /// Evicted early because the table was full.
    LackOfResources = 5,
}

impl EndReason {
    /// The IPFIX code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// The length of the IPv6 packet a fixed header starts: 40 plus the payload length, or for a
/// jumbogram (payload length 0, RFC 2675) the bytes captured.
#[inline]
pub fn ip_len(fixed: &crate::packet::ipv6::Fixed<'_>) -> u32 {
    match fixed.payload_length() {
        0 => u32::try_from(fixed.packet().len()).unwrap_or(u32::MAX),
        n => 40 + u32::from(n),
    }
}

/// One packet as the meter sees it: plain values from the packet and the classifiers.
#[derive(Clone, Copy, Debug)]
pub struct Packet {
    /// Capture time (offline) or arrival time (live), since the Unix epoch.
    pub ts: Duration,
    /// The IP packet's length: fixed header and payload, no link header, as IPFIX
    /// octetDeltaCount counts (RFC 7012: "includes IP header(s) and IP payload"); see [`ip_len`].
    pub ip_len: u32,
    pub three: ThreeTuple,
    pub five: Result<FiveTuple, Unavailable>,
    /// The last next-header value the extension-header walk reached
    /// ([`crate::packet::Ipv6Keys::proto`]): the transport protocol, or where the walk stopped.
    pub proto: u8,
    /// TCP flags (see [`crate::packet::five::tcp_flags`]); 0 for other protocols.
    pub tcp_flags: u8,
    /// The 3-tuple class.
    pub class3: Class,
    /// The 5-tuple class ([`Class::Unavailable`] when `five` is an error).
    pub class5: Class,
    /// The policy generation that classified it (0 for the policy a run started with; each
    /// reload of `watch` adds 1): which rule names the class indices refer to.
    pub generation: u32,
}

impl Packet {
    /// The meter's view of an IPv6 [`Outcome`] of the [`super::Step`] (`None` for a frame that
    /// is not IPv6). `ts` is the frame's time, `generation` the policy that classified it.
    #[inline]
    pub fn of(outcome: &Outcome<'_>, ts: Duration, generation: u32) -> Option<Packet> {
        let Outcome::Ipv6 { keys, three, five } = outcome else {
            return None;
        };
        let class = |r: Option<RuleId>| r.map_or(Class::Default, |r| Class::Rule(r.0));
        Some(Packet {
            ts,
            ip_len: ip_len_of(keys.packet),
            three: keys.three,
            five: keys.five,
            proto: keys.proto,
            tcp_flags: keys.tcp_flags,
            class3: class(*three),
            class5: match five {
                Ok(r) => class(*r),
                Err(u) => Class::Unavailable(*u),
            },
            generation,
        })
    }
}

/// [`ip_len`] from the packet bytes (fixed header onwards): 40 plus the payload length field,
/// or for a jumbogram the bytes captured.
#[inline]
fn ip_len_of(packet: &[u8]) -> u32 {
    match packet.get(4..6) {
        Some(&[a, b]) if u16::from_be_bytes([a, b]) != 0 => {
            40 + u32::from(u16::from_be_bytes([a, b]))
        }
        _ => u32::try_from(packet.len()).unwrap_or(u32::MAX),
    }
}

/// An ended flow, handed to exporters. `Copy`, no heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    pub key: FlowKey,
    /// The protocol: the 5-tuple's, or for a 3-tuple flow the header the walk stopped at (50
    /// for ESP), as of the flow's first packet.
    pub proto: u8,
    /// Timestamp of the first and the last packet.
    pub first: Duration,
    pub last: Duration,
    pub packets: u64,
    /// IP bytes ([`Packet::ip_len`] summed).
    pub bytes: u64,
    /// OR of the TCP flags of all packets.
    pub tcp_flags: u8,
    /// The first packet's label and the last packet's.
    pub first_label: u32,
    pub last_label: u32,
    /// Times a packet's label differed from the previous packet's.
    pub label_changes: u32,
    /// Distinct labels seen, in order of first appearance: the first `n_labels` entries.
    pub labels: [u32; MAX_LABELS],
    pub n_labels: u8,
    /// True when more distinct labels were seen than [`MAX_LABELS`].
    pub labels_overflow: bool,
    /// The 3-tuple and 5-tuple class of the last packet.
    pub class3: Class,
    pub class5: Class,
    /// Times the 3-tuple class differed from the previous packet's (it follows the label).
    pub class3_changes: u32,
    pub end: EndReason,
    /// The policy generation of the last packet's classes (see [`Packet::generation`]).
    pub generation: u32,
}

impl FlowRecord {
    /// The distinct labels seen (at most [`MAX_LABELS`]).
    pub fn labels(&self) -> &[u32] {
        &self.labels[..usize::from(self.n_labels)]
    }
}

/// The meter's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MeterConfig {
    pub active: Duration,
    pub idle: Duration,
    /// The most flows held at once; at least 1.
    pub max_flows: usize,
}

impl Default for MeterConfig {
    fn default() -> Self {
        MeterConfig {
            active: DEFAULT_ACTIVE,
            idle: DEFAULT_IDLE,
            max_flows: DEFAULT_MAX_FLOWS,
        }
    }
}

/// Counters over the meter's life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MeterStats {
    pub packets: u64,
    pub bytes: u64,
    /// Flows started.
    pub flows: u64,
    /// Records produced, per end reason.
    pub idle: u64,
    pub active: u64,
    pub end_of_flow: u64,
    pub forced: u64,
    /// Flows evicted early because the table was full.
    pub evictions: u64,
}

impl MeterStats {
    fn count(&mut self, r: EndReason) {
        match r {
            EndReason::IdleTimeout => self.idle += 1,
            EndReason::ActiveTimeout => self.active += 1,
            EndReason::EndOfFlow => self.end_of_flow += 1,
            EndReason::ForcedEnd => self.forced += 1,
            EndReason::LackOfResources => self.evictions += 1,
        }
    }

    /// Records produced so far.
    pub fn records(&self) -> u64 {
        self.idle + self.active + self.end_of_flow + self.forced + self.evictions
    }
}

impl MeterStats {
    /// Adds another meter's counters (the shards of a live capture).
    pub fn merge(&mut self, o: &MeterStats) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.flows += o.flows;
        self.idle += o.idle;
        self.active += o.active;
        self.end_of_flow += o.end_of_flow;
        self.forced += o.forced;
        self.evictions += o.evictions;
    }
}

/// Where ended flows go: the exporters, given to the live driver (which sits below `export`)
/// as a trait object. `record` must not block or allocate.
pub trait RecordSink: Send + Sync {
    fn record(&self, r: FlowRecord);
}

/// A slab entry: one flow and its links in the list of flows by last update.
#[derive(Clone, Copy, Debug)]
struct Entry {
    rec: FlowRecord,
    /// Towards the least recently updated flow.
    prev: u32,
    /// Towards the most recently updated flow.
    next: u32,
}

/// The bounded flow table.
pub struct FlowTable {
    cfg: MeterConfig,
    slab: Vec<Entry>,
    /// Free slab slots (all slots below `slab.len()` not in use).
    free: Vec<u32>,
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    /// Least recently updated flow.
    head: u32,
    /// Most recently updated flow.
    tail: u32,
    len: usize,
    /// The most flows held at once so far.
    peak: usize,
    stats: MeterStats,
}

impl std::fmt::Debug for FlowTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowTable")
            .field("cfg", &self.cfg)
            .field("len", &self.len)
            .field("stats", &self.stats)
            .finish()
    }
}

impl FlowTable {
    /// A table for `cfg.max_flows` flows (at least 1), with all its memory reserved.
    pub fn new(cfg: MeterConfig) -> FlowTable {
        let cfg = MeterConfig {
            max_flows: cfg.max_flows.clamp(1, NIL as usize - 1),
            ..cfg
        };
        FlowTable {
            slab: Vec::with_capacity(cfg.max_flows),
            free: Vec::with_capacity(cfg.max_flows),
            index: HashTable::with_capacity(2 * cfg.max_flows),
            hasher: DefaultHashBuilder::default(),
            head: NIL,
            tail: NIL,
            len: 0,
            peak: 0,
            stats: MeterStats::default(),
            cfg,
        }
    }

    /// The settings (with `max_flows` clamped).
    pub fn config(&self) -> MeterConfig {
        self.cfg
    }

    /// Flows held now.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn stats(&self) -> MeterStats {
        self.stats
    }

    /// The most flows held at once so far (at most `max_flows`).
    pub fn peak(&self) -> usize {
        self.peak
    }

    /// Heap bytes reserved by the table (fixed after [`FlowTable::new`]).
    pub fn memory_bytes(&self) -> usize {
        self.slab.capacity() * std::mem::size_of::<Entry>()
            + self.free.capacity() * 4
            + self.index.allocation_size()
    }

    /// The flows held now, least recently updated first, as records would be if they ended now
    /// (end reason [`EndReason::ForcedEnd`]).
    pub fn iter(&self) -> impl Iterator<Item = FlowRecord> + '_ {
        let mut at = self.head;
        std::iter::from_fn(move || {
            if at == NIL {
                return None;
            }
            let e = &self.slab[at as usize];
            at = e.next;
            Some(e.rec)
        })
    }

    fn hash(&self, key: &FlowKey) -> u64 {
        self.hasher.hash_one(key)
    }

    fn unlink(&mut self, i: u32) {
        let Entry { prev, next, .. } = self.slab[i as usize];
        if prev == NIL {
            self.head = next;
        } else {
            self.slab[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.slab[next as usize].prev = prev;
        }
    }

    fn push_tail(&mut self, i: u32) {
        let e = &mut self.slab[i as usize];
        e.prev = self.tail;
        e.next = NIL;
        if self.tail == NIL {
            self.head = i;
        } else {
            self.slab[self.tail as usize].next = i;
        }
        self.tail = i;
    }

    /// Ends the flow in slot `i`: removes it from the index and the list and hands its record
    /// to `sink`.
    fn end(&mut self, i: u32, why: EndReason, sink: &mut impl FnMut(FlowRecord)) {
        let mut rec = self.slab[i as usize].rec;
        rec.end = why;
        let h = self.hash(&rec.key);
        if let Ok(entry) = self.index.find_entry(h, |&j| j == i) {
            entry.remove();
        }
        self.unlink(i);
        self.free.push(i);
        self.len -= 1;
        self.stats.count(why);
        sink(rec);
    }

    fn fresh(p: &Packet, key: FlowKey) -> FlowRecord {
        let label = p.three.label.value();
        let mut labels = [0; MAX_LABELS];
        labels[0] = label;
        FlowRecord {
            key,
            proto: match key {
                FlowKey::Five(f) => f.proto,
                FlowKey::Three(_) => p.proto,
            },
            first: p.ts,
            last: p.ts,
            packets: 0,
            bytes: 0,
            tcp_flags: 0,
            first_label: label,
            last_label: label,
            label_changes: 0,
            labels,
            n_labels: 1,
            labels_overflow: false,
            class3: p.class3,
            class5: p.class5,
            class3_changes: 0,
            end: EndReason::ForcedEnd,
            generation: p.generation,
        }
    }

    /// Counts one packet. Flows that end because of it (active timeout reached, FIN/RST, an
    /// early eviction to make room) are handed to `sink`. Allocates nothing.
    pub fn observe(&mut self, p: &Packet, sink: &mut impl FnMut(FlowRecord)) {
        self.stats.packets += 1;
        self.stats.bytes += u64::from(p.ip_len);
        let key = match p.five {
            Ok(f) => FlowKey::Five(f),
            Err(_) => FlowKey::Three(p.three),
        };
        let h = self.hash(&key);
        let slab = &self.slab;
        let found = self
            .index
            .find(h, |&j| slab[j as usize].rec.key == key)
            .copied();
        let i = match found {
            Some(i) if p.ts.saturating_sub(self.slab[i as usize].rec.first) >= self.cfg.active => {
                // This packet starts the flow's next record.
                self.end(i, EndReason::ActiveTimeout, sink);
                self.insert(h, p, key, sink)
            }
            Some(i) => {
                self.unlink(i);
                self.push_tail(i);
                i
            }
            None => self.insert(h, p, key, sink),
        };
        let r = &mut self.slab[i as usize].rec;
        r.packets += 1;
        r.bytes += u64::from(p.ip_len);
        r.last = r.last.max(p.ts);
        r.tcp_flags |= p.tcp_flags;
        let label = p.three.label.value();
        if label != r.last_label {
            r.label_changes = r.label_changes.saturating_add(1);
            r.last_label = label;
            if !r.labels().contains(&label) {
                if usize::from(r.n_labels) < MAX_LABELS {
                    r.labels[usize::from(r.n_labels)] = label;
                    r.n_labels += 1;
                } else {
                    r.labels_overflow = true;
                }
            }
        }
        if p.class3 != r.class3 {
            r.class3_changes = r.class3_changes.saturating_add(1);
            r.class3 = p.class3;
        }
        r.class5 = p.class5;
        r.generation = p.generation;
        if p.tcp_flags & (tcp::FIN | tcp::RST) != 0 {
            self.end(i, EndReason::EndOfFlow, sink);
        }
    }

    /// Inserts a new flow for `p`, evicting the least recently updated flow when full.
    fn insert(
        &mut self,
        h: u64,
        p: &Packet,
        key: FlowKey,
        sink: &mut impl FnMut(FlowRecord),
    ) -> u32 {
        if self.len >= self.cfg.max_flows {
            self.end(self.head, EndReason::LackOfResources, sink);
        }
        let entry = Entry {
            rec: Self::fresh(p, key),
            prev: NIL,
            next: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = entry;
                i
            }
            None => {
                self.slab.push(entry);
                (self.slab.len() - 1) as u32
            }
        };
        let (slab, hasher) = (&self.slab, &self.hasher);
        self.index
            .insert_unique(h, i, |&j| hasher.hash_one(slab[j as usize].rec.key));
        self.push_tail(i);
        self.len += 1;
        self.peak = self.peak.max(self.len);
        self.stats.flows += 1;
        i
    }

    /// Ends the flows that timed out by `now`: idle (no packet for the idle timeout) or active
    /// (lasted the active timeout), walking from the least recently updated flow and stopping at
    /// the first that is neither. Cheap when nothing expires: call it per packet or per batch.
    pub fn expire(&mut self, now: Duration, sink: &mut impl FnMut(FlowRecord)) {
        while self.head != NIL {
            let r = &self.slab[self.head as usize].rec;
            let why = if now.saturating_sub(r.last) >= self.cfg.idle {
                EndReason::IdleTimeout
            } else if now.saturating_sub(r.first) >= self.cfg.active {
                EndReason::ActiveTimeout
            } else {
                break;
            };
            self.end(self.head, why, sink);
        }
    }

    /// Ends every flow (shutdown, end of capture), least recently updated first.
    pub fn flush(&mut self, sink: &mut impl FnMut(FlowRecord)) {
        while self.head != NIL {
            self.end(self.head, EndReason::ForcedEnd, sink);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FlowLabel;

    fn label(v: u32) -> FlowLabel {
        FlowLabel::try_from(v).unwrap()
    }

    fn udp(src: u128, sport: u16, l: u32, ts_ms: u64, len: u32) -> Packet {
        Packet {
            ts: Duration::from_millis(ts_ms),
            ip_len: len,
            three: ThreeTuple {
                src,
                dst: 0xff,
                label: label(l),
            },
            five: Ok(FiveTuple {
                src,
                dst: 0xff,
                proto: 17,
                sport,
                dport: 53,
            }),
            proto: 17,
            tcp_flags: 0,
            class3: Class::Default,
            class5: Class::Rule(0),
            generation: 0,
        }
    }

    fn run(t: &mut FlowTable, ps: &[Packet]) -> Vec<FlowRecord> {
        let mut out = Vec::new();
        for p in ps {
            t.observe(p, &mut |r| out.push(r));
        }
        out
    }

    fn small(max: usize) -> FlowTable {
        FlowTable::new(MeterConfig {
            max_flows: max,
            ..MeterConfig::default()
        })
    }

    #[test]
    fn packets_of_one_five_tuple_make_one_flow_with_its_labels_and_changes() {
        let mut t = small(8);
        let out = run(
            &mut t,
            &[
                udp(1, 1000, 5, 0, 100),
                udp(1, 1000, 9, 1, 100),
                udp(1, 1000, 9, 2, 50),
                udp(1, 1000, 5, 3, 50),
                udp(2, 1000, 5, 4, 10),
            ],
        );
        assert!(out.is_empty());
        assert_eq!(t.len(), 2);
        let mut recs = Vec::new();
        t.flush(&mut |r| recs.push(r));
        assert_eq!(recs.len(), 2);
        let a = recs[0];
        assert_eq!((a.packets, a.bytes), (4, 300));
        assert_eq!(
            (a.first, a.last),
            (Duration::ZERO, Duration::from_millis(3))
        );
        assert_eq!(a.labels(), &[5, 9]);
        assert_eq!((a.label_changes, a.first_label, a.last_label), (2, 5, 5));
        assert_eq!(a.end, EndReason::ForcedEnd);
        assert_eq!(recs[1].packets, 1);
        assert!(t.is_empty());
        assert_eq!(t.stats().forced, 2);
    }

    #[test]
    fn packets_without_a_five_tuple_are_keyed_on_the_three_tuple() {
        let mut t = small(8);
        let mut esp = udp(1, 0, 7, 0, 100);
        esp.five = Err(Unavailable::Esp);
        esp.proto = 50;
        esp.class5 = Class::Unavailable(Unavailable::Esp);
        let mut other_label = esp;
        other_label.three.label = label(8);
        run(&mut t, &[esp, esp, other_label]);
        let recs: Vec<_> = t.iter().collect();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].key, FlowKey::Three(esp.three));
        assert_eq!((recs[0].packets, recs[0].proto), (2, 50));
        assert_eq!(recs[0].class5, Class::Unavailable(Unavailable::Esp));
    }

    #[test]
    fn more_distinct_labels_than_kept_are_flagged_and_every_change_is_counted() {
        let mut t = small(8);
        let ps: Vec<_> = (0..10).map(|i| udp(1, 1, i + 1, 0, 1)).collect();
        run(&mut t, &ps);
        let r = t.iter().next().unwrap();
        assert_eq!(r.labels(), &[1, 2, 3, 4]);
        assert!(r.labels_overflow);
        assert_eq!(r.label_changes, 9);
    }

    #[test]
    fn idle_flows_expire_and_busy_ones_stay() {
        let mut t = FlowTable::new(MeterConfig {
            idle: Duration::from_secs(15),
            ..MeterConfig::default()
        });
        run(&mut t, &[udp(1, 1, 0, 0, 1), udp(2, 1, 0, 10_000, 1)]);
        let mut out = Vec::new();
        t.expire(Duration::from_millis(14_999), &mut |r| out.push(r));
        assert!(out.is_empty());
        t.expire(Duration::from_millis(15_000), &mut |r| out.push(r));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].key.src(), 1);
        assert_eq!(out[0].end, EndReason::IdleTimeout);
        assert_eq!(t.len(), 1);
        assert_eq!(t.stats().idle, 1);
    }

    #[test]
    fn a_flow_that_lasts_the_active_timeout_ends_and_its_next_packet_starts_a_new_record() {
        let mut t = FlowTable::new(MeterConfig {
            active: Duration::from_secs(60),
            idle: Duration::from_secs(15),
            max_flows: 8,
        });
        let ps: Vec<_> = (0..=60).map(|s| udp(1, 1, 0, s * 1000, 10)).collect();
        let out = run(&mut t, &ps);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].end, EndReason::ActiveTimeout);
        assert_eq!(out[0].packets, 60);
        assert_eq!(t.iter().next().unwrap().packets, 1);
        assert_eq!(t.stats().active, 1);
    }

    #[test]
    fn tcp_fin_or_rst_ends_the_flow_with_the_packet_counted() {
        let mut t = small(8);
        let mut p = udp(1, 1, 0, 0, 60);
        p.five = p.five.map(|f| FiveTuple { proto: 6, ..f });
        p.proto = 6;
        let mut fin = p;
        fin.tcp_flags = tcp::FIN | 0x10;
        let mut rst = p;
        rst.tcp_flags = tcp::RST;
        let out = run(&mut t, &[p, fin, p, rst]);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|r| r.end == EndReason::EndOfFlow));
        assert_eq!((out[0].packets, out[0].tcp_flags), (2, 0x11));
        assert_eq!(out[1].packets, 2);
        assert!(t.is_empty());
    }

    #[test]
    fn a_full_table_evicts_the_least_recently_updated_flow_and_counts_it() {
        let mut t = small(2);
        let out = run(
            &mut t,
            &[
                udp(1, 1, 0, 0, 1),
                udp(2, 1, 0, 1, 1),
                udp(1, 1, 0, 2, 1), // 1 is now the most recent
                udp(3, 1, 0, 3, 1), // evicts 2
            ],
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].key.src(), 2);
        assert_eq!(out[0].end, EndReason::LackOfResources);
        assert_eq!(t.stats().evictions, 1);
        let srcs: Vec<_> = t.iter().map(|r| r.key.src()).collect();
        assert_eq!(srcs, vec![1, 3]);
    }

    #[test]
    fn a_million_random_flows_stay_within_the_bound_with_every_eviction_counted() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(14);
        let mut t = small(10_000);
        let reserved = t.memory_bytes();
        let mut ended = 0u64;
        let (mut packets, mut bytes) = (0u64, 0u64);
        for i in 0..1_000_000u64 {
            let p = udp(rng.random(), rng.random(), 0, i, 64);
            t.observe(&p, &mut |r| {
                ended += 1;
                packets += r.packets;
                bytes += r.bytes;
            });
            assert!(t.len() <= 10_000);
        }
        assert_eq!(t.len(), 10_000);
        assert_eq!(t.memory_bytes(), reserved, "the table grew");
        let s = t.stats();
        assert_eq!(s.flows, 1_000_000);
        assert_eq!(s.evictions, 990_000);
        assert_eq!(ended, s.evictions);
        t.flush(&mut |r| {
            packets += r.packets;
            bytes += r.bytes;
        });
        assert_eq!((packets, bytes), (1_000_000, 64_000_000));
    }

    #[test]
    fn ip_len_is_the_header_and_payload_without_link_padding() {
        let mut p = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
        p.extend_from_slice(&[0; 32]);
        p.extend_from_slice(&[0; 8 + 6]); // UDP header, then Ethernet padding
        let f = crate::packet::ipv6::Fixed::new(&p).unwrap();
        assert_eq!(ip_len(&f), 48);
        p[5] = 0; // jumbogram: what was captured
        let f = crate::packet::ipv6::Fixed::new(&p).unwrap();
        assert_eq!(ip_len(&f), 54);
    }

    #[test]
    fn bytes_per_flow_stays_small() {
        // The figure docs/flows.md states; a change here must update the docs.
        const { assert!(BYTES_PER_FLOW <= 240) };
        const { assert!(DEFAULT_MAX_FLOWS >= 1_100_000) };
        eprintln!(
            "entry {} bytes, {BYTES_PER_FLOW} bytes per flow, default max {DEFAULT_MAX_FLOWS} flows",
            std::mem::size_of::<Entry>()
        );
        // The estimate covers what a table really reserves.
        let t = small(100_000);
        assert!(
            t.memory_bytes() <= 100_000 * BYTES_PER_FLOW,
            "{}",
            t.memory_bytes()
        );
    }
}
