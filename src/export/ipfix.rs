//! IPFIX export (RFC 7011) of the meter's flow records, over UDP or into an IPFIX file (RFC 5655:
//! the file is the stream of messages, nothing more).
//!
//! A message is a header, then sets; flowpol sends one Template Set (in the first message, and
//! again periodically over UDP, RFC 7011 §8.4) and Data Sets of template [`TEMPLATE_ID`]:
//!
//! ```text
//! message header (16 bytes)
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |       version (10)            |        length (whole message) |
//! |                  export time (seconds since the epoch)        |
//! |   sequence number (data records sent before this message)     |
//! |                   observation domain id                       |
//! set header (4 bytes), then the set's records
//! |       set id (2 template, >= 256 data)  |  length (with header) |
//! template record: | template id | field count | then per field: | IE id | length (65535 = variable) |
//! ```
//!
//! The data record is [`TEMPLATE`] in order: 80 fixed bytes, then the two class names as
//! variable-length strings (one length byte; names are cut to 254 bytes on a character boundary).
//!
//! Export runs off the hot path: [`Exporter::send`] puts a record (a `Copy` value) in a bounded
//! channel without blocking or allocating, and counts it as dropped when the channel is full. A
//! thread packs records into messages of at most `mtu` bytes and writes them: over UDP through a
//! connected non-blocking socket, so a collector that is down or slow never stalls the capture;
//! every record in a message whose send fails (ECONNREFUSED after an ICMP unreachable, a full
//! socket buffer) is counted as lost.

use crate::pipeline::meter::{Class, FlowKey, FlowRecord, RecordSink};
use crate::policy::model::{Action, Policy};
use std::io::{self, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// IPFIX version number in the message header.
pub const VERSION: u16 = 10;
/// Set id of a Template Set.
pub const TEMPLATE_SET_ID: u16 = 2;
/// The template id of flowpol's data records (the first id free for data sets).
pub const TEMPLATE_ID: u16 = 256;
/// Field length meaning "variable length" (RFC 7011 §7).
pub const VARIABLE: u16 = 65535;
/// The IANA port for IPFIX.
pub const PORT: u16 = 4739;

/// Byte offsets of the message header and a set header.
pub mod field {
    use std::ops::Range;
    pub const VERSION: Range<usize> = 0..2;
    pub const LENGTH: Range<usize> = 2..4;
    pub const EXPORT_TIME: Range<usize> = 4..8;
    pub const SEQUENCE: Range<usize> = 8..12;
    pub const DOMAIN: Range<usize> = 12..16;
    /// Length of the message header.
    pub const HEADER_LEN: usize = 16;
    /// In a set header, relative to the set's start.
    pub const SET_ID: Range<usize> = 0..2;
    pub const SET_LENGTH: Range<usize> = 2..4;
    pub const SET_HEADER_LEN: usize = 4;
}

/// Information element ids (IANA "IPFIX Information Elements" registry).
pub mod ie {
    pub const OCTET_DELTA_COUNT: u16 = 1;
    pub const PACKET_DELTA_COUNT: u16 = 2;
    pub const PROTOCOL_IDENTIFIER: u16 = 4;
    pub const TCP_CONTROL_BITS: u16 = 6;
    pub const SOURCE_TRANSPORT_PORT: u16 = 7;
    pub const DESTINATION_TRANSPORT_PORT: u16 = 11;
    pub const SOURCE_IPV6_ADDRESS: u16 = 27;
    pub const DESTINATION_IPV6_ADDRESS: u16 = 28;
    pub const FLOW_LABEL_IPV6: u16 = 31;
    pub const APPLICATION_DESCRIPTION: u16 = 94;
    pub const APPLICATION_NAME: u16 = 96;
    pub const FLOW_END_REASON: u16 = 136;
    pub const OBSERVATION_DOMAIN_ID: u16 = 149;
    pub const FLOW_START_MILLISECONDS: u16 = 152;
    pub const FLOW_END_MILLISECONDS: u16 = 153;
}

/// The template: (IE id, length), in record order. The 3-tuple class is applicationName (96)
/// and the 5-tuple class applicationDescription (94): standard string elements that tshark
/// decodes (`cflow.appl_name`, `cflow.appl_desc`); see docs/flows.md.
pub const TEMPLATE: [(u16, u16); 15] = [
    (ie::SOURCE_IPV6_ADDRESS, 16),
    (ie::DESTINATION_IPV6_ADDRESS, 16),
    (ie::FLOW_LABEL_IPV6, 4),
    (ie::PROTOCOL_IDENTIFIER, 1),
    (ie::SOURCE_TRANSPORT_PORT, 2),
    (ie::DESTINATION_TRANSPORT_PORT, 2),
    (ie::OCTET_DELTA_COUNT, 8),
    (ie::PACKET_DELTA_COUNT, 8),
    (ie::FLOW_START_MILLISECONDS, 8),
    (ie::FLOW_END_MILLISECONDS, 8),
    (ie::FLOW_END_REASON, 1),
    (ie::TCP_CONTROL_BITS, 2),
    (ie::OBSERVATION_DOMAIN_ID, 4),
    (ie::APPLICATION_NAME, VARIABLE),
    (ie::APPLICATION_DESCRIPTION, VARIABLE),
];

/// The fixed part of a data record, in bytes.
pub const FIXED_RECORD_LEN: usize = 80;
/// The longest class name sent (longer names are cut).
pub const MAX_NAME: usize = 254;
/// The longest data record.
pub const MAX_RECORD_LEN: usize = FIXED_RECORD_LEN + 2 * (1 + MAX_NAME);
/// The default message size bound: fits a 1500-byte MTU behind IPv6 and UDP headers.
pub const DEFAULT_MTU: usize = 1400;

/// The names a flow's classes are exported as, resolved from rule indices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassNames {
    three: Vec<String>,
    five: Vec<String>,
    default: String,
}

/// The exported name of an action: the class name, or `pass` / `drop`.
pub fn action_name(a: &Action) -> &str {
    match a {
        Action::Pass => "pass",
        Action::Drop => "drop",
        Action::Class(c) => c,
    }
}

impl ClassNames {
    /// Names of the 3-tuple rules and the 5-tuple rules by index, and of the default.
    pub fn new(three: Vec<String>, five: Vec<String>, default: String) -> ClassNames {
        ClassNames {
            three,
            five,
            default,
        }
    }

    /// Each rule's action as its name (`gold` for `-> class gold`, `pass`, `drop`).
    pub fn from_policy(p: &Policy) -> ClassNames {
        ClassNames {
            three: names_of(&p.three),
            five: names_of(&p.five),
            default: action_name(&p.default).to_string(),
        }
    }

    /// The exported text of a class: the rule's name, the default's, or `unavailable:REASON`
    /// (as `unavailable:esp`) when the 5-tuple could not be read.
    pub fn write(&self, c: Class, five: bool, out: &mut impl Write) -> io::Result<()> {
        let rules = if five { &self.five } else { &self.three };
        match c {
            Class::Rule(i) => match rules.get(i as usize) {
                Some(n) => out.write_all(n.as_bytes()),
                None => write!(out, "rule{i}"),
            },
            Class::Default => out.write_all(self.default.as_bytes()),
            Class::Unavailable(u) => write!(out, "unavailable:{}", u.as_str()),
        }
    }
}

fn names_of<M>(rs: &[crate::policy::model::Rule<M>]) -> Vec<String> {
    rs.iter()
        .map(|r| action_name(&r.action).to_string())
        .collect()
}

fn put(buf: &mut [u8], at: std::ops::Range<usize>, v: &[u8]) {
    buf[at].copy_from_slice(v);
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Packs records into IPFIX messages in a reused buffer. Allocates only when created.
#[derive(Debug)]
pub struct MessageWriter {
    buf: Vec<u8>,
    name: Vec<u8>,
    mtu: usize,
    domain: u32,
    /// Data records in messages finished so far (the next message's sequence number).
    sequence: u32,
    records: u32,
    data_set: Option<usize>,
}

impl MessageWriter {
    /// A writer of messages of at most `mtu` bytes (at least room for the template and one
    /// record) for observation domain `domain`.
    pub fn new(domain: u32, mtu: usize) -> MessageWriter {
        let mtu = mtu.max(field::HEADER_LEN + Self::template_len() + MAX_RECORD_LEN + 4);
        MessageWriter {
            buf: Vec::with_capacity(mtu),
            name: Vec::with_capacity(MAX_NAME + 64),
            mtu,
            domain,
            sequence: 0,
            records: 0,
            data_set: None,
        }
    }

    /// The template set's length.
    pub fn template_len() -> usize {
        field::SET_HEADER_LEN + 4 + 4 * TEMPLATE.len()
    }

    /// The sequence number the next message will carry.
    pub fn sequence(&self) -> u32 {
        self.sequence
    }

    /// Data records in the message being built.
    pub fn pending(&self) -> u32 {
        self.records
    }

    /// True when a message is being built.
    pub fn is_open(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Starts a message exported at `export_time` (seconds since the epoch), with the template
    /// set first when `template` is true.
    pub fn begin(&mut self, export_time: u32, template: bool) {
        self.buf.clear();
        self.records = 0;
        self.data_set = None;
        self.buf.extend_from_slice(&VERSION.to_be_bytes());
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&export_time.to_be_bytes());
        self.buf.extend_from_slice(&self.sequence.to_be_bytes());
        self.buf.extend_from_slice(&self.domain.to_be_bytes());
        if template {
            self.buf.extend_from_slice(&TEMPLATE_SET_ID.to_be_bytes());
            self.buf
                .extend_from_slice(&(Self::template_len() as u16).to_be_bytes());
            self.buf.extend_from_slice(&TEMPLATE_ID.to_be_bytes());
            self.buf
                .extend_from_slice(&(TEMPLATE.len() as u16).to_be_bytes());
            for (id, len) in TEMPLATE {
                self.buf.extend_from_slice(&id.to_be_bytes());
                self.buf.extend_from_slice(&len.to_be_bytes());
            }
        }
    }

    fn put_name(&mut self, names: &ClassNames, c: Class, five: bool) {
        self.name.clear();
        // Writing into a Vec cannot fail.
        let _ = names.write(c, five, &mut self.name);
        let mut n = self.name.len().min(MAX_NAME);
        while n > 0 && std::str::from_utf8(&self.name[..n]).is_err() {
            n -= 1;
        }
        self.buf.push(n as u8);
        self.buf.extend_from_slice(&self.name[..n]);
    }

    /// Appends a data record; false (and nothing written) when it would not fit the message.
    pub fn push(&mut self, r: &FlowRecord, names: &ClassNames) -> bool {
        let start = self.buf.len();
        let set_header = if self.data_set.is_none() {
            field::SET_HEADER_LEN
        } else {
            0
        };
        if start + set_header + MAX_RECORD_LEN > self.mtu {
            return false;
        }
        if self.data_set.is_none() {
            self.data_set = Some(start);
            self.buf.extend_from_slice(&TEMPLATE_ID.to_be_bytes());
            self.buf.extend_from_slice(&[0, 0]);
        }
        let (sport, dport) = match r.key {
            FlowKey::Five(f) => (f.sport, f.dport),
            // No 5-tuple: no ports; the protocol is the header the walk stopped at (50 for ESP).
            FlowKey::Three(_) => (0, 0),
        };
        let proto = r.proto;
        self.buf.extend_from_slice(&r.key.src().to_be_bytes());
        self.buf.extend_from_slice(&r.key.dst().to_be_bytes());
        self.buf.extend_from_slice(&r.last_label.to_be_bytes());
        self.buf.push(proto);
        self.buf.extend_from_slice(&sport.to_be_bytes());
        self.buf.extend_from_slice(&dport.to_be_bytes());
        self.buf.extend_from_slice(&r.bytes.to_be_bytes());
        self.buf.extend_from_slice(&r.packets.to_be_bytes());
        self.buf.extend_from_slice(&ms(r.first).to_be_bytes());
        self.buf.extend_from_slice(&ms(r.last).to_be_bytes());
        self.buf.push(r.end.code());
        self.buf
            .extend_from_slice(&u16::from(r.tcp_flags).to_be_bytes());
        self.buf.extend_from_slice(&self.domain.to_be_bytes());
        self.put_name(names, r.class3, false);
        self.put_name(names, r.class5, true);
        self.records += 1;
        true
    }

    /// Drops the message being built (after [`MessageWriter::finish`], to start afresh).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.records = 0;
        self.data_set = None;
    }

    /// Finishes the message: fills in the lengths, advances the sequence number by its records,
    /// and lends the bytes.
    pub fn finish(&mut self) -> &[u8] {
        let len = self.buf.len();
        if let Some(s) = self.data_set {
            let set_len = (len - s) as u16;
            put(
                &mut self.buf[s..],
                field::SET_LENGTH,
                &set_len.to_be_bytes(),
            );
        }
        put(&mut self.buf, field::LENGTH, &(len as u16).to_be_bytes());
        self.sequence = self.sequence.wrapping_add(self.records);
        &self.buf
    }
}

/// Where finished messages go.
pub trait Transport: Send {
    /// Writes one message.
    fn send(&mut self, msg: &[u8]) -> io::Result<()>;
    /// True for datagram transports, which need the template re-sent periodically.
    fn needs_template_refresh(&self) -> bool;
    /// Writes out anything buffered.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A connected, non-blocking UDP socket.
#[derive(Debug)]
pub struct UdpTransport(UdpSocket);

impl UdpTransport {
    /// Binds an ephemeral port of the collector's family and connects it to `collector`.
    pub fn connect(collector: SocketAddr) -> io::Result<UdpTransport> {
        let local: SocketAddr = if collector.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let s = UdpSocket::bind(local)?;
        s.connect(collector)?;
        s.set_nonblocking(true)?;
        Ok(UdpTransport(s))
    }

    /// The socket's local address (the exporter's identity a collector sees).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl Transport for UdpTransport {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.0.send(msg).map(|_| ())
    }
    fn needs_template_refresh(&self) -> bool {
        true
    }
}

/// An IPFIX file (RFC 5655): the messages one after the other.
#[derive(Debug)]
pub struct FileTransport<W: Write + Send>(pub W);

impl FileTransport<io::BufWriter<std::fs::File>> {
    /// Creates (or truncates) the file at `path`.
    pub fn create(path: &Path) -> io::Result<Self> {
        Ok(FileTransport(io::BufWriter::new(std::fs::File::create(
            path,
        )?)))
    }
}

impl<W: Write + Send> Transport for FileTransport<W> {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.0.write_all(msg)
    }
    fn needs_template_refresh(&self) -> bool {
        false
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// The exporter's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportConfig {
    /// The observation domain id in every message header and record.
    pub domain: u32,
    /// The largest message, in bytes.
    pub mtu: usize,
    /// Records waiting for the export thread; more are dropped (and counted).
    pub queue: usize,
    /// A record waits at most this long before its message is sent.
    pub flush_after: Duration,
    /// Over UDP, the template is re-sent after this long (RFC 7011 §8.4) ...
    pub template_every: Duration,
    /// ... or in every this-many-th message, whichever comes first.
    pub template_every_messages: u32,
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            domain: 0,
            mtu: DEFAULT_MTU,
            queue: 65536,
            flush_after: Duration::from_secs(1),
            template_every: Duration::from_secs(30),
            template_every_messages: 20,
        }
    }
}

/// What the exporter did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExportStats {
    /// Records in messages written successfully.
    pub records_sent: u64,
    /// Records in messages whose send failed.
    pub records_lost: u64,
    /// Records dropped because the queue to the export thread was full.
    pub records_dropped: u64,
    pub messages_sent: u64,
    pub send_errors: u64,
    /// The OS error number of the last failed send, if any.
    pub last_errno: Option<i32>,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    lost: AtomicU64,
    dropped: AtomicU64,
    messages: AtomicU64,
    errors: AtomicU64,
    last_errno: AtomicI32,
}

impl Counters {
    fn snapshot(&self) -> ExportStats {
        let e = self.last_errno.load(Ordering::Relaxed);
        ExportStats {
            records_sent: self.sent.load(Ordering::Relaxed),
            records_lost: self.lost.load(Ordering::Relaxed),
            records_dropped: self.dropped.load(Ordering::Relaxed),
            messages_sent: self.messages.load(Ordering::Relaxed),
            send_errors: self.errors.load(Ordering::Relaxed),
            last_errno: (e != 0).then_some(e),
        }
    }
}

/// A running export thread and the channel to it.
#[derive(Debug)]
pub struct Exporter {
    tx: SyncSender<Msg>,
    counters: Arc<Counters>,
    thread: JoinHandle<io::Result<()>>,
}

fn now_secs() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

/// What the export thread is sent: a record, or the class names of a new policy generation.
enum Msg {
    Record(FlowRecord),
    Names(u32, Box<ClassNames>),
}

/// Policy generations whose names the export thread keeps (records of older generations, still
/// queued after this many reloads, are exported with `ruleN` names).
const KEEP_GENERATIONS: usize = 8;

struct Worker {
    w: MessageWriter,
    t: Box<dyn Transport>,
    /// Class names by policy generation, oldest first; the last is the current one.
    names: Vec<(u32, ClassNames)>,
    cfg: ExportConfig,
    counters: Arc<Counters>,
    last_template: Option<Instant>,
    messages_since_template: u32,
}

/// The names of generation `g`, or the newest when `g`'s were let go.
fn names_for(names: &[(u32, ClassNames)], g: u32) -> &ClassNames {
    let found = names.iter().rev().find(|(x, _)| *x == g).or(names.last());
    &found.expect("the names of the first generation").1
}

impl Worker {
    fn open(&mut self) {
        let refresh = self.t.needs_template_refresh();
        let template = match self.last_template {
            None => true,
            Some(at) => {
                refresh
                    && (at.elapsed() >= self.cfg.template_every
                        || self.messages_since_template >= self.cfg.template_every_messages)
            }
        };
        if template {
            self.last_template = Some(Instant::now());
            self.messages_since_template = 0;
        }
        self.w.begin(now_secs(), template);
    }

    fn push(&mut self, r: &FlowRecord) {
        if !self.w.is_open() {
            self.open();
        }
        if !self.w.push(r, names_for(&self.names, r.generation)) {
            self.send();
            self.open();
            // A fresh message always has room for one record.
            let _ = self.w.push(r, names_for(&self.names, r.generation));
        }
    }

    fn send(&mut self) {
        if !self.w.is_open() {
            return;
        }
        let n = u64::from(self.w.pending());
        let msg = self.w.finish();
        match self.t.send(msg) {
            Ok(()) => {
                self.counters.sent.fetch_add(n, Ordering::Relaxed);
                self.counters.messages.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::debug!("IPFIX send failed: {e}");
                self.counters.lost.fetch_add(n, Ordering::Relaxed);
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .last_errno
                    .store(e.raw_os_error().unwrap_or(-1), Ordering::Relaxed);
            }
        }
        self.messages_since_template += 1;
        self.w.clear();
    }

    fn run(mut self, rx: Receiver<Msg>) -> io::Result<()> {
        let mut oldest: Option<Instant> = None;
        loop {
            let wait = oldest.map_or(Duration::from_secs(3600), |t| {
                self.cfg.flush_after.saturating_sub(t.elapsed())
            });
            match rx.recv_timeout(wait) {
                Ok(Msg::Names(g, n)) => {
                    if self.names.len() >= KEEP_GENERATIONS {
                        self.names.remove(0);
                    }
                    self.names.push((g, *n));
                }
                Ok(Msg::Record(r)) => {
                    self.push(&r);
                    oldest.get_or_insert_with(Instant::now);
                    if oldest.is_some_and(|t| t.elapsed() >= self.cfg.flush_after) {
                        self.send();
                        oldest = None;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.send();
                    oldest = None;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.send();
                    return self.t.flush();
                }
            }
        }
    }
}

impl Exporter {
    /// Starts an export thread writing to `transport`.
    pub fn spawn(
        transport: Box<dyn Transport>,
        names: ClassNames,
        cfg: ExportConfig,
    ) -> io::Result<Exporter> {
        let (tx, rx) = std::sync::mpsc::sync_channel(cfg.queue.max(1));
        let counters = Arc::new(Counters::default());
        let worker = Worker {
            w: MessageWriter::new(cfg.domain, cfg.mtu),
            t: transport,
            names: vec![(0, names)],
            cfg,
            counters: Arc::clone(&counters),
            last_template: None,
            messages_since_template: 0,
        };
        let thread = std::thread::Builder::new()
            .name("ipfix-export".into())
            .spawn(move || worker.run(rx))?;
        Ok(Exporter {
            tx,
            counters,
            thread,
        })
    }

    /// Exports over UDP to `collector`.
    pub fn udp(
        collector: SocketAddr,
        names: ClassNames,
        cfg: ExportConfig,
    ) -> io::Result<Exporter> {
        Self::spawn(Box::new(UdpTransport::connect(collector)?), names, cfg)
    }

    /// Writes an IPFIX file at `path`.
    pub fn file(path: &Path, names: ClassNames, cfg: ExportConfig) -> io::Result<Exporter> {
        Self::spawn(Box::new(FileTransport::create(path)?), names, cfg)
    }

    /// Queues a record for export; never blocks, never allocates. A full queue drops the record
    /// and counts it.
    pub fn send(&self, r: FlowRecord) {
        match self.tx.try_send(Msg::Record(r)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Queues a record for export, waiting while the queue is full (offline, where nothing is
    /// lost by waiting). Never allocates.
    pub fn send_wait(&self, r: FlowRecord) {
        if self.tx.send(Msg::Record(r)).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The class names of policy generation `generation` (a reload): records classified by it
    /// are exported with these names, records of earlier generations still with theirs (the
    /// last [`KEEP_GENERATIONS`] are kept). Waits for room in the queue; call it before the new
    /// policy classifies anything. The template does not change.
    pub fn set_names(&self, generation: u32, names: ClassNames) {
        let _ = self.tx.send(Msg::Names(generation, Box::new(names)));
    }

    /// The counters so far.
    pub fn stats(&self) -> ExportStats {
        self.counters.snapshot()
    }

    /// Sends what is queued, stops the thread, and returns the final counters (or the error
    /// that ended a file export).
    pub fn finish(self) -> io::Result<ExportStats> {
        drop(self.tx);
        match self.thread.join() {
            Ok(r) => r?,
            Err(_) => return Err(io::Error::other("the IPFIX export thread panicked")),
        }
        Ok(self.counters.snapshot())
    }
}

impl RecordSink for Exporter {
    fn record(&self, r: FlowRecord) {
        self.send(r);
    }
}

/// The exporters of one run (`--ipfix` and `--ipfix-file` may both be given), fed alike.
#[derive(Debug, Default)]
pub struct Exports {
    pub list: Vec<Exporter>,
}

impl Exports {
    /// Sends a record to every exporter without blocking (live).
    pub fn send(&self, r: FlowRecord) {
        for e in &self.list {
            e.send(r);
        }
    }

    /// Sends a record to every exporter, waiting for queue room (offline).
    pub fn send_wait(&self, r: FlowRecord) {
        for e in &self.list {
            e.send_wait(r);
        }
    }

    /// The class names of a new policy generation, to every exporter.
    pub fn set_names(&self, generation: u32, names: &ClassNames) {
        for e in &self.list {
            e.set_names(generation, names.clone());
        }
    }

    /// The counters summed over the exporters.
    pub fn stats(&self) -> ExportStats {
        let mut all = ExportStats::default();
        for e in &self.list {
            all.add(&e.stats());
        }
        all
    }

    /// Finishes every exporter; the counters summed, or the first error.
    pub fn finish(self) -> io::Result<ExportStats> {
        let mut all = ExportStats::default();
        let mut err = None;
        for e in self.list {
            match e.finish() {
                Ok(s) => all.add(&s),
                Err(e) => {
                    err.get_or_insert(e);
                }
            }
        }
        err.map_or(Ok(all), Err)
    }
}

impl RecordSink for Exports {
    fn record(&self, r: FlowRecord) {
        self.send(r);
    }
}

impl ExportStats {
    fn add(&mut self, o: &ExportStats) {
        self.records_sent += o.records_sent;
        self.records_lost += o.records_lost;
        self.records_dropped += o.records_dropped;
        self.messages_sent += o.messages_sent;
        self.send_errors += o.send_errors;
        self.last_errno = o.last_errno.or(self.last_errno);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FlowLabel;
    use crate::packet::{FiveTuple, ThreeTuple, Unavailable};
    use crate::pipeline::meter::EndReason;

    fn record(src: u128) -> FlowRecord {
        FlowRecord {
            key: FlowKey::Five(FiveTuple {
                src,
                dst: 2,
                proto: 6,
                sport: 1000,
                dport: 443,
            }),
            proto: 6,
            first: Duration::from_millis(1_767_225_600_123),
            last: Duration::from_millis(1_767_225_601_456),
            packets: 3,
            bytes: 260,
            tcp_flags: 0x13,
            first_label: 5,
            last_label: 0x12345,
            label_changes: 1,
            labels: [5, 0x12345, 0, 0],
            n_labels: 2,
            labels_overflow: false,
            class3: Class::Rule(0),
            class5: Class::Unavailable(Unavailable::Esp),
            class3_changes: 0,
            end: EndReason::EndOfFlow,
            generation: 0,
        }
    }

    fn names() -> ClassNames {
        ClassNames::new(vec!["gold".into()], vec![], "pass".into())
    }

    #[test]
    fn a_message_with_template_and_one_record_has_the_rfc_7011_layout() {
        let mut w = MessageWriter::new(7, DEFAULT_MTU);
        w.begin(0x01020304, true);
        assert!(w.push(&record(1), &names()));
        let m = w.finish().to_vec();
        let tl = MessageWriter::template_len();
        assert_eq!(tl, 68);
        let rec_len = FIXED_RECORD_LEN + 1 + 4 + 1 + "unavailable:esp".len();
        assert_eq!(m.len(), 16 + tl + 4 + rec_len);
        assert_eq!(
            &m[..16],
            &[
                0,
                10,
                0,
                (m.len()) as u8,
                1,
                2,
                3,
                4,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                7
            ]
        );
        // Template set: id 2, length 68, template 256 with 15 fields, first field IE 27 / 16.
        assert_eq!(&m[16..28], &[0, 2, 0, 68, 1, 0, 0, 15, 0, 27, 0, 16]);
        // Last field: IE 94, variable length.
        assert_eq!(&m[16 + 64..16 + 68], &[0, 94, 0xff, 0xff]);
        let d = 16 + tl;
        assert_eq!(&m[d..d + 4], &[1, 0, 0, (4 + rec_len) as u8]);
        let r = &m[d + 4..];
        assert_eq!(r[15], 1, "source address");
        assert_eq!(r[31], 2, "destination address");
        assert_eq!(&r[32..36], &[0, 1, 0x23, 0x45], "flow label");
        assert_eq!(r[36], 6, "protocol");
        assert_eq!(&r[37..41], &[0x03, 0xe8, 0x01, 0xbb], "ports");
        assert_eq!(u64::from_be_bytes(r[41..49].try_into().unwrap()), 260);
        assert_eq!(u64::from_be_bytes(r[49..57].try_into().unwrap()), 3);
        assert_eq!(
            u64::from_be_bytes(r[57..65].try_into().unwrap()),
            1_767_225_600_123
        );
        assert_eq!(
            u64::from_be_bytes(r[65..73].try_into().unwrap()),
            1_767_225_601_456
        );
        assert_eq!(r[73], 3, "end of flow");
        assert_eq!(&r[74..76], &[0, 0x13], "tcp flags");
        assert_eq!(&r[76..80], &[0, 0, 0, 7], "observation domain");
        assert_eq!(&r[80..85], b"\x04gold");
        assert_eq!(&r[85..], b"\x0funavailable:esp");
        assert_eq!(w.sequence(), 1);
    }

    #[test]
    fn messages_stay_within_the_mtu_and_sequence_numbers_count_records() {
        let mut w = MessageWriter::new(0, 600);
        let mut seqs = Vec::new();
        let mut total = 0;
        for i in 0..100 {
            if !w.is_open() {
                w.begin(0, seqs.is_empty());
            }
            if !w.push(&record(i), &names()) {
                let m = w.finish();
                assert!(m.len() <= 600, "{}", m.len());
                seqs.push(u32::from_be_bytes(m[8..12].try_into().unwrap()));
                total += usize::from(u16::from_be_bytes([m[2], m[3]]));
                w.clear();
                w.begin(0, false);
                assert!(w.push(&record(i), &names()));
            }
        }
        w.finish();
        assert!(seqs.len() > 5 && total > 0);
        // Each message's sequence number is the number of records before it.
        let per = seqs[1] - seqs[0];
        assert!(per > 0);
        assert!(seqs.windows(2).all(|s| s[1] - s[0] == per));
        assert_eq!(w.sequence(), 100);
    }

    #[test]
    fn long_class_names_are_cut_on_a_character_boundary() {
        let long = "é".repeat(200);
        let n = ClassNames::new(vec![long], vec![], "pass".into());
        let mut w = MessageWriter::new(0, DEFAULT_MTU);
        w.begin(0, false);
        let mut r = record(1);
        r.key = FlowKey::Three(ThreeTuple {
            src: 1,
            dst: 2,
            label: FlowLabel::try_from(3).unwrap(),
        });
        assert!(w.push(&r, &n));
        let m = w.finish();
        let name = &m[16 + 4 + FIXED_RECORD_LEN..];
        assert_eq!(name[0], 254);
        assert!(std::str::from_utf8(&name[1..255]).is_ok());
        assert_eq!(&m[16 + 4 + 37..16 + 4 + 41], &[0, 0, 0, 0], "no ports");
    }

    /// Keeps every message; a datagram transport.
    struct Keep(std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

    impl Transport for Keep {
        fn send(&mut self, msg: &[u8]) -> io::Result<()> {
            self.0.lock().unwrap().push(msg.to_vec());
            Ok(())
        }
        fn needs_template_refresh(&self) -> bool {
            true
        }
    }

    #[test]
    fn over_udp_the_template_is_sent_first_and_again_every_few_messages() {
        let kept = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let cfg = ExportConfig {
            template_every_messages: 3,
            ..ExportConfig::default()
        };
        let e = Exporter::spawn(Box::new(Keep(kept.clone())), names(), cfg).unwrap();
        for i in 0..200 {
            e.send(record(i));
        }
        let s = e.finish().unwrap();
        assert_eq!(s.records_sent, 200);
        let msgs = kept.lock().unwrap();
        assert!(msgs.len() >= 10, "{}", msgs.len());
        let with_template: Vec<bool> = msgs.iter().map(|m| m[16..18] == [0, 2]).collect();
        for (i, t) in with_template.iter().enumerate() {
            assert_eq!(*t, i % 3 == 0, "message {i}: {with_template:?}");
        }
    }

    #[test]
    fn records_are_named_by_the_policy_generation_that_classified_them() {
        let kept = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let e = Exporter::spawn(
            Box::new(Keep(kept.clone())),
            names(),
            ExportConfig::default(),
        )
        .unwrap();
        let of_generation = |g: u32| FlowRecord {
            generation: g,
            ..record(1)
        };
        e.send(of_generation(0));
        e.set_names(
            1,
            ClassNames::new(vec!["silver".into()], vec![], "drop".into()),
        );
        // A record of the old policy still queued after the reload keeps its names.
        e.send(of_generation(1));
        e.send(of_generation(0));
        assert_eq!(e.finish().unwrap().records_sent, 3);
        let all: Vec<u8> = kept.lock().unwrap().concat();
        let count = |w: &[u8]| all.windows(w.len()).filter(|x| *x == w).count();
        assert_eq!((count(b"gold"), count(b"silver")), (2, 1));
    }

    #[test]
    fn a_collector_that_is_down_loses_records_without_stopping_the_sender() {
        // A port nobody listens on: sends fail with ECONNREFUSED once the ICMP error is back.
        let dead = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = dead.local_addr().unwrap();
        drop(dead);
        let cfg = ExportConfig {
            flush_after: Duration::from_millis(1),
            ..ExportConfig::default()
        };
        let e = Exporter::udp(addr, names(), cfg).unwrap();
        let start = Instant::now();
        for i in 0..2000 {
            e.send(record(i));
            if i % 100 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        assert!(start.elapsed() < Duration::from_secs(5));
        let s = e.finish().unwrap();
        assert!(s.send_errors > 0, "{s:?}");
        assert_eq!(s.last_errno, Some(libc::ECONNREFUSED));
        assert_eq!(s.records_sent + s.records_lost + s.records_dropped, 2000);
        assert!(s.records_lost > 0);
    }
}
