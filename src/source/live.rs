//! Live capture from a network interface (AF_PACKET, root or CAP_NET_RAW), and the capture
//! session of `flowpol watch`: N worker threads, each with its own socket joined to one
//! `PACKET_FANOUT_HASH` group, each classifying its frames with both engines through the same
//! hot path as `classify` ([`Tally::classify`], which times only a sample of packets) into a tally
//! of its own; the session merges them for every summary and at the end.
//!
//! Two sources behind one [`Source`]:
//! - **ring** (the default): a TPACKET_V3 memory-mapped ring ([`super::ring`]); under a flood it
//!   keeps up with tcpdump where the pnet path falls far behind (docs/watch-keeping-up.md).
//! - **pnet** (`--source pnet`, the portable path): pnet's datalink channel, one `poll` +
//!   `recvfrom` per frame, on a socket opened here (`crate::sys`) and handed to pnet with
//!   `Config::socket_fd`, so its `PACKET_STATISTICS` can be read (and fanout joined) through a
//!   second descriptor. The read buffer holds 256 KiB frames (pnet's default 4096 bytes would
//!   cut loopback and GRO/GSO frames). VLAN tags the kernel stripped are lost on this path:
//!   the kernel hands them over only as `PACKET_AUXDATA` control messages, which pnet's
//!   `recvfrom` drops (restoring them would mean reading the socket with `recvmsg` ourselves,
//!   that is, not through pnet). The classification is the same (flowpol reads the IPv6 header
//!   behind the tags); byte counts and `--write` frames lack the tag. A one-time warning says so
//!   when the interface is or carries a VLAN device.
//!
//! With more than one worker the first socket creates a fanout group whose id the kernel picks
//! (`PACKET_FANOUT_FLAG_UNIQUEID`) and the others join it; the kernel's flow hash keeps each
//! flow on one worker. While the group forms every socket drops all frames with a socket filter,
//! so no frame is captured twice ([`Source::open_all`]). The kernel's counters are read with
//! `PACKET_STATISTICS`, which resets them on every read, so each worker accumulates its own, from
//! the moment its socket receives on.
//!
//! Stopping is exact: each worker first stops its socket from accepting frames (the same drop-all
//! filter; frames it rejects are in neither kernel counter), then reads every frame the socket
//! accepted before that, including those of the ring block the kernel is still filling, until
//! the frames read equal the kernel's packets less its drops, and reads the counters last
//! (`Worker::drain`). So the final numbers reconcile: kernel packets = frames read + kernel
//! drops ([`Reconciliation`]).

use super::pcap::{FrameWriter, PcapWriter};
use super::ring::RingSource;
use crate::classify::Classifier;
use crate::packet::{FiveTuple, Frame, LinkType, ThreeTuple};
use crate::policy::model::Policy;
use crate::report::Tally;
use crate::sys;
use std::fs::File;
use std::io::{self, BufWriter};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// The pnet read buffer: room for any GSO/GRO frame up to 256 KiB (BIG TCP included).
pub const READ_BUFFER: usize = 256 * 1024;
/// The socket receive buffer asked for on the pnet path.
pub const RCVBUF: usize = 4 << 20;
/// How long a worker waits for a frame before looking at the stop flag again.
pub const POLL: Duration = Duration::from_millis(100);
/// How long the drain at the stop goes on without a frame while the kernel has counted frames it
/// has not handed over yet. A ring hands over its partly filled block within two retire periods
/// (2 × [`super::ring::RETIRE_MS`]); a socket queue (pnet) has every counted frame ready at once.
/// The rest is margin for a loaded machine: the drain ends as soon as the numbers meet, so this
/// is reached only when something is wrong, and the summary then shows the mismatch.
pub const DRAIN_IDLE: Duration = Duration::from_millis(500);
/// How long the drain of a ring waits in `poll` for the next block (pnet waits [`POLL`]).
const DRAIN_POLL: Duration = Duration::from_millis(super::ring::RETIRE_MS as u64);

/// Why a live capture could not start or went on.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("{}", sys::caps::missing(&format_args!("capturing on {iface}"), sys::Capability::NetRaw))]
    NoCapability { iface: String },
    #[error("no network interface named {iface}")]
    NoInterface { iface: String },
    #[error("{what} on {iface}")]
    Io {
        what: &'static str,
        iface: String,
        source: io::Error,
    },
    #[error("writing the capture file: {0}")]
    Write(io::Error),
    #[error("a capture worker panicked")]
    Panicked,
}

/// The kernel's counters for the capture sockets, summed over workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelStats {
    /// Frames the kernel passed to the capture sockets (captured plus dropped).
    pub packets: u64,
    /// Frames the kernel dropped because a socket's buffer or ring was full.
    pub drops: u64,
    /// Times a TPACKET_V3 ring was frozen because user space had no free block (ring only).
    pub freeze_queue: u64,
}

impl KernelStats {
    fn add(&mut self, r: sys::RawStats) {
        self.packets += u64::from(r.packets);
        self.drops += u64::from(r.drops);
        self.freeze_queue += u64::from(r.freeze_q);
    }
    pub fn merge(&mut self, o: &KernelStats) {
        self.packets += o.packets;
        self.drops += o.drops;
        self.freeze_queue += o.freeze_queue;
    }
}

/// The final accounting of a capture: every frame the kernel passed to the capture sockets was
/// read by a worker or dropped by the kernel (`kernel_packets = frames_read + kernel_drops`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Reconciliation {
    /// Frames the kernel passed to the capture sockets (`PACKET_STATISTICS`, summed).
    pub kernel_packets: u64,
    /// Frames the workers read from the sockets.
    pub frames_read: u64,
    /// Of those, the frames counted: classified, and written with `--write`.
    pub frames_counted: u64,
    /// Of those, the frames read after `--count` was reached: the sockets had accepted them
    /// before they stopped accepting; they are neither classified nor written.
    pub read_not_counted: u64,
    /// Frames the kernel dropped because a socket's buffer or ring was full.
    pub kernel_drops: u64,
    /// `kernel_packets - frames_read - kernel_drops`: frames the kernel counted that were
    /// neither read nor dropped (negative: read but not counted by the kernel). 0 when exact.
    pub unaccounted: i64,
    /// The numbers reconcile: `unaccounted` is 0.
    pub exact: bool,
}

/// Which capture mechanism.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceKind {
    /// A TPACKET_V3 memory-mapped ring (the default: it keeps up with tcpdump under a flood,
    /// see docs/watch-keeping-up.md, and restores stripped VLAN tags as libpcap does).
    #[default]
    Ring,
    /// pnet's datalink channel: portable, but one poll + recvfrom per frame, and VLAN tags the
    /// kernel stripped are lost (pnet's `recvfrom` returns no `PACKET_AUXDATA`): tagged frames
    /// are classified alike but counted 4 bytes short and written untagged.
    Pnet,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Pnet => "pnet",
            SourceKind::Ring => "ring",
        }
    }
}

/// The pcap link type of an interface, from its ARPHRD type in sysfs.
pub fn link_type(iface: &str) -> LinkType {
    let t = std::fs::read_to_string(format!("/sys/class/net/{iface}/type")).unwrap_or_default();
    match t.trim() {
        // ARPHRD_NONE (tun) and ARPHRD_RAWIP: frames start at the IP header.
        "65534" | "519" => LinkType::RAW,
        // Ethernet, loopback (with a zeroed Ethernet header) and the rest.
        _ => LinkType::ETHERNET,
    }
}

/// True when `iface` is a VLAN device or has one on top (`ip link add link IF ... type vlan`),
/// read from sysfs under `root` (`/sys/class/net`): tagged frames then reach it, and the kernel
/// moves their outer tag into packet metadata, which pnet's `recvfrom` does not return.
fn carries_vlans_in(root: &Path, iface: &str) -> bool {
    let is_vlan = |dev: &Path| {
        std::fs::read_to_string(dev.join("uevent"))
            .is_ok_and(|u| u.lines().any(|l| l.trim() == "DEVTYPE=vlan"))
    };
    let dev = root.join(iface);
    is_vlan(&dev)
        || std::fs::read_dir(&dev)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("upper_") && is_vlan(&e.path()))
}

/// Says once, when pnet captures an interface known to carry VLAN tags, that it cannot see
/// the tags the kernel strips (pnet reads with `recvfrom`, without `PACKET_AUXDATA`; the ring
/// reads them from each frame's header). Interfaces that carry tagged frames without a VLAN
/// device (a mirror port, a veth) are not detected: the flag's documentation says it for all.
fn warn_pnet_vlans(iface: &str, link: LinkType) {
    if link == LinkType::ETHERNET && carries_vlans_in(Path::new("/sys/class/net"), iface) {
        tracing::warn!(
            "{iface} carries VLANs: with --source pnet, tags the kernel strips are not seen, so \
             tagged frames are counted 4 bytes short and --write saves them untagged (the \
             classification is the same); the default ring source puts them back"
        );
    }
}

/// A capture from pnet's datalink channel.
pub struct PnetSource {
    rx: Box<dyn pnet::datalink::DataLinkReceiver>,
    _tx: Box<dyn pnet::datalink::DataLinkSender>,
    /// A second descriptor of pnet's socket, for `PACKET_STATISTICS`.
    stats_fd: OwnedFd,
    link: LinkType,
    number: u64,
    /// Read the clock for each frame (only `--write` needs timestamps: pnet gives none, and a
    /// clock read costs as much as classifying on some machines).
    timestamps: bool,
}

impl PnetSource {
    /// Lends the next frame (if one arrives within the channel's timeout) to `f`.
    pub fn dispatch<F>(&mut self, mut f: F) -> io::Result<bool>
    where
        F: FnMut(&Frame<'_>) -> bool,
    {
        match self.rx.next() {
            Ok(data) => {
                self.number += 1;
                let ts = if self.timestamps {
                    SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap_or_default()
                } else {
                    Duration::ZERO
                };
                let frame = Frame {
                    number: self.number,
                    link: self.link,
                    ts,
                    orig_len: u32::try_from(data.len()).unwrap_or(u32::MAX),
                    data,
                };
                Ok(f(&frame))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }
}

/// How a source takes part in fanout.
#[derive(Clone, Copy)]
enum Fanout<'a> {
    /// Create a group (the kernel picks a unique id) and store its id here.
    New(&'a std::cell::Cell<Option<u16>>),
    /// Join this group.
    Join(u16),
}

/// One worker's source.
pub enum Source {
    Pnet(PnetSource),
    Ring(RingSource),
}

fn io_err<'a>(what: &'static str, iface: &'a str) -> impl FnOnce(io::Error) -> LiveError + 'a {
    move |source| LiveError::Io {
        what,
        iface: iface.to_string(),
        source,
    }
}

fn socket(iface: &str) -> Result<OwnedFd, LiveError> {
    sys::packet_socket().map_err(|e| match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => LiveError::NoCapability {
            iface: iface.to_string(),
        },
        _ => io_err("opening a packet socket", iface)(e),
    })
}

impl Source {
    /// Opens a source on `iface`, in a fanout group when asked. `timestamps`: frames need
    /// their capture time (the ring always has it).
    fn open(
        kind: SourceKind,
        iface: &str,
        fanout: Option<Fanout<'_>>,
        timestamps: bool,
    ) -> Result<Source, LiveError> {
        let ifindex = sys::if_index(iface).map_err(|_| LiveError::NoInterface {
            iface: iface.to_string(),
        })?;
        let link = link_type(iface);
        let fd = socket(iface)?;
        if fanout.is_some() {
            // Silent until [`Source::open_all`] has the whole group formed (see there).
            sys::attach_drop_all(fd.as_raw_fd()).map_err(io_err("SO_ATTACH_FILTER", iface))?;
        }
        match kind {
            SourceKind::Pnet => {
                // Best effort: a larger buffer absorbs bursts; failure leaves the default.
                let _ = sys::set_rcvbuf(&fd, RCVBUF);
                let stats_fd = sys::dup(&fd).map_err(io_err("dup", iface))?;
                let ni = pnet::datalink::interfaces()
                    .into_iter()
                    .find(|i| i.name == iface)
                    .ok_or_else(|| LiveError::NoInterface {
                        iface: iface.to_string(),
                    })?;
                let config = pnet::datalink::Config {
                    read_buffer_size: READ_BUFFER,
                    read_timeout: Some(POLL),
                    promiscuous: true,
                    // Fanout is joined below, once pnet has bound the socket.
                    linux_fanout: None,
                    socket_fd: Some(sys::into_raw(fd)),
                    ..Default::default()
                };
                match pnet::datalink::channel(&ni, config) {
                    Ok(pnet::datalink::Channel::Ethernet(tx, rx)) => {
                        let src = Source::Pnet(PnetSource {
                            rx,
                            _tx: tx,
                            stats_fd,
                            link,
                            number: 0,
                            timestamps,
                        });
                        src.join_fanout(fanout, iface)?;
                        Ok(src)
                    }
                    Ok(_) => Err(io_err("opening the pnet channel", iface)(io::Error::other(
                        "unknown channel type",
                    ))),
                    Err(e) => Err(io_err("opening the pnet channel", iface)(e)),
                }
            }
            SourceKind::Ring => {
                let ring = RingSource::new(fd, link).map_err(io_err("mapping the ring", iface))?;
                sys::bind(ring.fd(), ifindex).map_err(io_err("bind", iface))?;
                sys::promiscuous(ring.fd(), ifindex).map_err(io_err("promiscuous mode", iface))?;
                let src = Source::Ring(ring);
                src.join_fanout(fanout, iface)?;
                Ok(src)
            }
        }
    }

    fn raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            Source::Pnet(p) => p.stats_fd.as_raw_fd(),
            Source::Ring(r) => r.fd().as_raw_fd(),
        }
    }

    fn join_fanout(&self, fanout: Option<Fanout>, iface: &str) -> Result<(), LiveError> {
        match fanout {
            None => Ok(()),
            Some(Fanout::Join(g)) => {
                sys::fanout_hash(self.raw_fd(), g).map_err(io_err("PACKET_FANOUT", iface))
            }
            Some(Fanout::New(cell)) => {
                let g =
                    sys::fanout_hash_new(self.raw_fd()).map_err(io_err("PACKET_FANOUT", iface))?;
                cell.set(Some(g));
                Ok(())
            }
        }
    }

    /// Opens the sources of `workers` workers on `iface`, joined in one new hash-mode fanout
    /// group (with a kernel-chosen id) when there is more than one.
    ///
    /// A socket must be bound (receiving) before it can join a group (`fanout_add` wants it
    /// running), and until it joins it gets every frame of the interface on its own hook, besides
    /// the group's copy. So each socket of a group starts with a drop-all filter (attached before
    /// bind, so nothing is ever queued and no drain is needed), and the filters come off only once
    /// every socket has joined: from then on the group's hook is the only path, and each frame
    /// goes to exactly one worker. In a group, a member's filter still applies to the frames the
    /// group hands it, so frames hashed to a member still filtered while the filters come off
    /// are dropped (a few microseconds before the workers start). Frames the filter drops are
    /// not accounted by the kernel at all: neither in `tp_packets` nor in `tp_drops`. A single
    /// worker has no group and no filter.
    pub fn open_all(
        kind: SourceKind,
        iface: &str,
        workers: usize,
        timestamps: bool,
    ) -> Result<Vec<Source>, LiveError> {
        if workers <= 1 {
            return Ok(vec![Source::open(kind, iface, None, timestamps)?]);
        }
        let group = std::cell::Cell::new(None);
        let mut v = Vec::with_capacity(workers);
        for _ in 0..workers {
            let fanout = match group.get() {
                None => Fanout::New(&group),
                Some(g) => Fanout::Join(g),
            };
            v.push(Source::open(kind, iface, Some(fanout), timestamps)?);
        }
        for s in &v {
            sys::detach_filter(s.raw_fd()).map_err(io_err("SO_DETACH_FILTER", iface))?;
        }
        Ok(v)
    }

    pub fn link(&self) -> LinkType {
        match self {
            Source::Pnet(p) => p.link,
            Source::Ring(r) => r.link(),
        }
    }

    /// Waits up to `timeout` (the ring; pnet waits its channel's [`POLL`]) and lends frames to
    /// `f` until none is waiting or `f` returns false.
    #[inline]
    pub fn dispatch<F>(&mut self, timeout: Duration, f: F) -> io::Result<bool>
    where
        F: FnMut(&Frame<'_>) -> bool,
    {
        match self {
            Source::Pnet(p) => p.dispatch(f),
            Source::Ring(r) => r.dispatch(timeout, f),
        }
    }

    /// Frames taken from the socket so far, whatever was done with them.
    pub fn frames_read(&self) -> u64 {
        match self {
            Source::Pnet(p) => p.number,
            Source::Ring(r) => r.frames_read(),
        }
    }

    /// Stops the kernel from accepting frames for this socket (the drop-all filter): from here
    /// on the frames it accepted, counted in `PACKET_STATISTICS`, are a closed set to read.
    pub fn stop_accepting(&self) -> io::Result<()> {
        sys::attach_drop_all(self.raw_fd())
    }

    /// Reads (and resets) the kernel's counters of this socket.
    pub fn statistics(&self) -> io::Result<sys::RawStats> {
        match self {
            Source::Pnet(p) => sys::statistics(p.stats_fd.as_raw_fd(), false),
            Source::Ring(r) => r.statistics(),
        }
    }
}

/// What a session captures and how.
#[derive(Clone, Debug)]
pub struct WatchConfig {
    pub iface: String,
    pub source: SourceKind,
    /// Capture threads (fanout group when more than one).
    pub workers: usize,
    /// Stop after this many frames in total.
    pub count: Option<u64>,
    /// Write every captured frame to this pcap file.
    pub write: Option<PathBuf>,
}

/// Counts of (part of) a run.
#[derive(Clone, Debug)]
pub struct Counts {
    /// The frames counted (classified).
    pub tally: Tally,
    pub kernel: KernelStats,
    /// Frames read from the sockets: the counted ones and those read after `--count` was
    /// reached.
    pub read: u64,
}

impl Counts {
    fn merge(&mut self, o: &Counts) {
        self.tally.merge(&o.tally);
        self.kernel.merge(&o.kernel);
        self.read += o.read;
    }

    /// The kernel's numbers against the frames read. Exact at the end of a session; while it
    /// runs, the kernel is ahead by the frames not yet handed over.
    pub fn reconciliation(&self) -> Reconciliation {
        let k = &self.kernel;
        let unaccounted = i128::from(k.packets) - i128::from(self.read) - i128::from(k.drops);
        let unaccounted = i64::try_from(unaccounted).unwrap_or(i64::MAX);
        Reconciliation {
            kernel_packets: k.packets,
            frames_read: self.read,
            frames_counted: self.tally.frames.packets,
            read_not_counted: self.read.saturating_sub(self.tally.frames.packets),
            kernel_drops: k.drops,
            unaccounted,
            exact: unaccounted == 0,
        }
    }
}

/// A worker's latest published counts.
struct Snapshot {
    generation: u64,
    done: bool,
    counts: Counts,
}

/// State shared between the session and its workers.
#[derive(Debug, Default)]
pub struct Control {
    stop: AtomicBool,
    counted: AtomicU64,
    generation: AtomicU64,
}

impl Control {
    /// Asks every worker to stop (safe to call from a signal handler thread).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

type Writer = Arc<Mutex<PcapWriter<BufWriter<File>>>>;
/// A worker's counts, and the error that ended it early, if one did.
type WorkerResult = (Counts, Option<LiveError>);

/// A running capture: workers started, counts available with [`Session::snapshot`], ended with
/// [`Session::finish`].
pub struct Session {
    control: Arc<Control>,
    slots: Vec<Arc<Mutex<Snapshot>>>,
    handles: Vec<JoinHandle<WorkerResult>>,
    writer: Option<Writer>,
    link: LinkType,
    started: Instant,
}

impl Session {
    /// Opens every worker's socket (so a missing privilege is reported before anything runs),
    /// then starts the workers. The engines are built once and shared.
    pub fn start<C3, C5>(
        cfg: &WatchConfig,
        policy: &Policy,
        c3: Arc<C3>,
        c5: Arc<C5>,
    ) -> Result<Session, LiveError>
    where
        C3: Classifier<ThreeTuple> + 'static,
        C5: Classifier<FiveTuple> + 'static,
    {
        let workers = cfg.workers.max(1);
        let sources = Source::open_all(cfg.source, &cfg.iface, workers, cfg.write.is_some())?;
        let link = sources[0].link();
        if cfg.source == SourceKind::Pnet {
            warn_pnet_vlans(&cfg.iface, link);
        }
        let writer = match &cfg.write {
            Some(p) => Some(Arc::new(Mutex::new(
                PcapWriter::create(p, link).map_err(LiveError::Write)?,
            ))),
            None => None,
        };
        // The kernel's counters start when the sockets receive (bind, or the end of the fanout
        // startup filter), like the frames the workers will read: every frame the sockets see is
        // either counted by a worker or reported dropped.
        let control = Arc::new(Control::default());
        let mut slots = Vec::new();
        let mut handles = Vec::new();
        let blank = Tally::new(policy, c3.name(), c5.name());
        for src in sources {
            let counts = Counts {
                tally: blank.clone(),
                kernel: KernelStats::default(),
                read: 0,
            };
            let slot = Arc::new(Mutex::new(Snapshot {
                generation: 0,
                done: false,
                counts: counts.clone(),
            }));
            slots.push(slot.clone());
            let w = Worker {
                iface: cfg.iface.clone(),
                src,
                slot,
                counter: Counter {
                    counts,
                    control: control.clone(),
                    writer: writer.clone(),
                    count: cfg.count,
                    write_err: None,
                },
            };
            let (c3, c5) = (c3.clone(), c5.clone());
            handles.push(std::thread::spawn(move || w.run(&*c3, &*c5)));
        }
        Ok(Session {
            control,
            slots,
            handles,
            writer,
            link,
            started: Instant::now(),
        })
    }

    /// The shared stop flag (for a signal handler).
    pub fn control(&self) -> Arc<Control> {
        self.control.clone()
    }

    pub fn link(&self) -> LinkType {
        self.link
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// True when every worker has ended (stop asked, `--count` reached, or an error).
    pub fn finished(&self) -> bool {
        self.handles.iter().all(JoinHandle::is_finished)
    }

    /// Current counts: asks every worker to publish, waits for them (at most a few poll
    /// periods), merges.
    pub fn snapshot(&self) -> Counts {
        let g = self.control.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let deadline = Instant::now() + POLL * 3;
        loop {
            let fresh = self.slots.iter().all(|s| {
                s.lock()
                    .map(|s| s.generation >= g || s.done)
                    .unwrap_or(true)
            }) || self.finished();
            if fresh || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut all: Option<Counts> = None;
        for s in &self.slots {
            if let Ok(s) = s.lock() {
                match &mut all {
                    None => all = Some(s.counts.clone()),
                    Some(a) => a.merge(&s.counts),
                }
            }
        }
        all.expect("at least one worker")
    }

    /// Stops the workers, merges their final counts and completes the capture file. The counts
    /// are there even when a worker failed (`error` says why it stopped).
    pub fn finish(self) -> Finished {
        self.control.stop();
        let mut per_worker = Vec::new();
        let mut all: Option<Counts> = None;
        let mut error = None;
        for (h, slot) in self.handles.into_iter().zip(&self.slots) {
            let (c, e) = match h.join() {
                Ok(r) => r,
                // A panicked worker: its last published counts.
                Err(_) => match slot.lock() {
                    Ok(s) => (s.counts.clone(), Some(LiveError::Panicked)),
                    Err(_) => continue,
                },
            };
            if let Some(e) = e {
                error.get_or_insert(e);
            }
            per_worker.push(c.tally.frames.packets);
            match &mut all {
                None => all = Some(c),
                Some(a) => a.merge(&c),
            }
        }
        if let Some(w) = self.writer {
            let flushed = match Arc::try_unwrap(w) {
                Ok(m) => match m.into_inner() {
                    Ok(w) => w.into_inner().map(drop).map_err(LiveError::Write),
                    Err(_) => Err(LiveError::Panicked),
                },
                Err(_) => Err(LiveError::Panicked),
            };
            if let Err(e) = flushed {
                error.get_or_insert(e);
            }
        }
        Finished {
            counts: all.expect("at least one worker"),
            per_worker,
            error,
        }
    }
}

/// The final counts of a session.
#[derive(Debug)]
pub struct Finished {
    /// All workers' counts merged.
    pub counts: Counts,
    /// Frames each worker captured (how the fanout spread them).
    pub per_worker: Vec<u64>,
    /// What ended the capture early (interface gone, write error), if anything.
    pub error: Option<LiveError>,
}

struct Worker {
    iface: String,
    src: Source,
    slot: Arc<Mutex<Snapshot>>,
    counter: Counter,
}

/// What a worker does with the frames it reads (apart from its source, so that both can be
/// borrowed at once).
struct Counter {
    counts: Counts,
    control: Arc<Control>,
    writer: Option<Writer>,
    count: Option<u64>,
    /// The first error writing the capture file; this worker writes no frame after it.
    write_err: Option<io::Error>,
}

impl Counter {
    /// Counts a frame the worker read: classifies it and writes it, unless `--count` frames
    /// have been counted already (the frame is then read but not counted). Asks every worker to
    /// stop once `--count` is reached or writing failed. The hot path: nothing allocated.
    #[inline]
    fn take<C3, C5>(&mut self, frame: &Frame<'_>, c3: &C3, c5: &C5)
    where
        C3: Classifier<ThreeTuple> + ?Sized,
        C5: Classifier<FiveTuple> + ?Sized,
    {
        let control = &*self.control;
        // Whether this frame is the N-th of `--count`: one atomic step decides both that the
        // frame counts and whether it is the last one.
        let last = match self.count {
            Some(n) => {
                let before = control.counted.fetch_add(1, Ordering::Relaxed);
                if before >= n {
                    control.stop();
                    return;
                }
                before + 1 == n
            }
            None => false,
        };
        self.counts.tally.classify(frame, c3, c5);
        if let Some(w) = &self.writer {
            let r = match w.lock() {
                Ok(mut w) => w.write_frame(frame),
                Err(_) => Err(io::Error::other("writer poisoned")),
            };
            if let Err(e) = r {
                self.write_err = Some(e);
                self.writer = None;
                control.stop();
            }
        }
        if last {
            control.stop();
        }
    }
}

impl Worker {
    /// Adds the kernel's counters (reading them resets them) to the worker's totals, and notes
    /// the frames read so far.
    fn add_statistics(&mut self) {
        if let Ok(r) = self.src.statistics() {
            self.counter.counts.kernel.add(r);
        }
        self.counter.counts.read = self.src.frames_read();
    }

    fn publish(&mut self, generation: u64, done: bool) {
        self.add_statistics();
        let counts = &self.counter.counts;
        if let Ok(mut s) = self.slot.lock() {
            s.counts.tally.clone_from(&counts.tally);
            s.counts.kernel = counts.kernel;
            s.counts.read = counts.read;
            s.generation = generation;
            s.done = done;
        }
    }

    /// The capture loop: the same per-frame hot path as `classify`, nothing allocated per frame.
    /// Then, once a stop was asked for (or receiving failed), the drain.
    fn run<C3, C5>(mut self, c3: &C3, c5: &C5) -> WorkerResult
    where
        C3: Classifier<ThreeTuple> + ?Sized,
        C5: Classifier<FiveTuple> + ?Sized,
    {
        let mut published = 0u64;
        let mut error = None;
        while !self.counter.control.stopped() {
            let counter = &mut self.counter;
            let r = self.src.dispatch(POLL, |frame| {
                counter.take(frame, c3, c5);
                let control = &*counter.control;
                control.generation.load(Ordering::Relaxed) == published && !control.stopped()
            });
            if let Err(e) = r {
                error = Some(io_err("receiving", &self.iface)(e));
                break;
            }
            let g = self.counter.control.generation.load(Ordering::Relaxed);
            if g != published {
                published = g;
                self.publish(g, false);
            }
        }
        if let Err(e) = self.drain(c3, c5) {
            error.get_or_insert(e);
        }
        self.publish(published, true);
        let write_err = self.counter.write_err.take();
        let error = write_err.map(LiveError::Write).or(error);
        (self.counter.counts, error)
    }

    /// Reads every frame the socket accepted before the stop. First the socket stops accepting
    /// (the drop-all filter: frames it rejects are in neither of the kernel's counters), so the
    /// frames it accepted are a closed set; then frames are read (and counted, up to `--count`)
    /// until the frames read equal the kernel's packets less its drops. The counters are read
    /// again on each round, after the frames, so the last read of them comes after the last
    /// frame: a frame that passed the filter check just as it was attached is either in both
    /// numbers or in neither. On a ring the last frames can sit in the block the kernel is still
    /// filling, handed over when the block's retire timer fires; the drain waits for it, giving
    /// up after [`DRAIN_IDLE`] without a frame (the summary then shows what is missing).
    fn drain<C3, C5>(&mut self, c3: &C3, c5: &C5) -> Result<(), LiveError>
    where
        C3: Classifier<ThreeTuple> + ?Sized,
        C5: Classifier<FiveTuple> + ?Sized,
    {
        self.src
            .stop_accepting()
            .map_err(io_err("SO_ATTACH_FILTER", &self.iface))?;
        let mut progress = Instant::now();
        loop {
            self.add_statistics();
            let k = self.counter.counts.kernel;
            let accepted = k.packets.saturating_sub(k.drops);
            let read = self.src.frames_read();
            if read >= accepted {
                return Ok(());
            }
            if progress.elapsed() >= DRAIN_IDLE {
                tracing::warn!(
                    "{}: {} frames the kernel accepted were not handed over within {:?} of the \
                     stop; the final numbers will not reconcile",
                    self.iface,
                    accepted - read,
                    DRAIN_IDLE
                );
                return Ok(());
            }
            let counter = &mut self.counter;
            self.src
                .dispatch(DRAIN_POLL, |frame| {
                    counter.take(frame, c3, c5);
                    true
                })
                .map_err(io_err("receiving", &self.iface))?;
            if self.src.frames_read() > read {
                progress = Instant::now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(kernel_packets: u64, drops: u64, read: u64, counted: u64) -> Counts {
        let policy = crate::policy::load_str("p", "default pass\n").unwrap();
        let mut tally = Tally::new(&policy, "linear", "linear");
        for _ in 0..counted {
            tally.frames.add(60);
        }
        Counts {
            tally,
            kernel: KernelStats {
                packets: kernel_packets,
                drops,
                freeze_queue: 0,
            },
            read,
        }
    }

    #[test]
    fn reconciliation_of_the_kernel_numbers() {
        let r = counts(100, 3, 97, 90).reconciliation();
        assert_eq!(
            r,
            Reconciliation {
                kernel_packets: 100,
                frames_read: 97,
                frames_counted: 90,
                read_not_counted: 7,
                kernel_drops: 3,
                unaccounted: 0,
                exact: true,
            }
        );
        // Frames the kernel counted that nobody read; frames read the kernel never counted.
        let r = counts(100, 0, 95, 95).reconciliation();
        assert_eq!((r.unaccounted, r.exact), (5, false));
        let r = counts(10, 1, 12, 12).reconciliation();
        assert_eq!((r.unaccounted, r.exact), (-3, false));
        // Merged over workers.
        let mut all = counts(50, 2, 48, 48);
        all.merge(&counts(30, 0, 30, 25));
        let r = all.reconciliation();
        assert_eq!(
            (r.kernel_packets, r.frames_read, r.read_not_counted),
            (80, 78, 5)
        );
        assert!(r.exact);
    }

    #[test]
    fn link_type_of_unknown_interface_is_ethernet() {
        assert_eq!(link_type("no-such-if-0"), LinkType::ETHERNET);
    }

    #[test]
    fn vlan_devices_are_found_in_sysfs() {
        // A sysfs-like tree: eth0 with eth0.100 on top, eth1 alone, and a bridge on eth2.
        let root = tempfile::tempdir().unwrap();
        let dev = |name: &str, devtype: Option<&str>| {
            let d = root.path().join(name);
            std::fs::create_dir(&d).unwrap();
            let ty = devtype
                .map(|t| format!("DEVTYPE={t}\n"))
                .unwrap_or_default();
            std::fs::write(
                d.join("uevent"),
                format!("{ty}INTERFACE={name}\nIFINDEX=3\n"),
            )
            .unwrap();
        };
        dev("eth0", None);
        dev("eth0.100", Some("vlan"));
        dev("eth1", None);
        dev("eth2", None);
        dev("br0", Some("bridge"));
        let up = |lower: &str, upper: &str| {
            std::os::unix::fs::symlink(
                root.path().join(upper),
                root.path().join(lower).join(format!("upper_{upper}")),
            )
            .unwrap();
        };
        up("eth0", "eth0.100");
        up("eth2", "br0");
        let r = root.path();
        assert!(carries_vlans_in(r, "eth0"));
        assert!(carries_vlans_in(r, "eth0.100"));
        assert!(!carries_vlans_in(r, "eth1"));
        assert!(!carries_vlans_in(r, "eth2"));
        assert!(!carries_vlans_in(r, "no-such-if"));
    }
}
