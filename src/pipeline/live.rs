//! The live driver of `flowpol watch`: N worker threads, each reading its own capture socket
//! ([`crate::source::iface::Source`]) joined to one `PACKET_FANOUT_HASH` group, each passing its
//! frames through the same per-frame [`Step`] as `classify` (which times only a sample of
//! packets) into a tally of its own; the session merges them for every summary and at the end.
//!
//! Stopping is exact: each worker first stops its socket from accepting frames (the same drop-all
//! filter; frames it rejects are in neither kernel counter), then reads every frame the socket
//! accepted before that, including those of the ring block the kernel is still filling, until
//! the frames read equal the kernel's packets less its drops, and reads the counters last
//! (`Worker::drain`). So the final numbers reconcile: kernel packets = frames read + kernel
//! drops ([`Reconciliation`]).

use super::Step;
use super::meter::{FlowTable, MeterConfig, MeterStats, Packet, RecordSink};
use crate::classify::Classifier;
use crate::packet::{FiveTuple, Frame, LinkType, ThreeTuple};
use crate::policy::model::Policy;
use crate::report::Tally;
use crate::source::iface::{self, IfaceError, KernelStats, POLL, Source, SourceKind};
use crate::source::pcap::{FrameWriter, PcapWriter};
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the drain at the stop goes on without a frame while the kernel has counted frames it
/// has not handed over yet. A ring hands over its partly filled block within two retire periods
/// (2 × [`crate::source::ring::RETIRE_MS`]); a socket queue (pnet) has every counted frame ready at once.
/// The rest is margin for a loaded machine: the drain ends as soon as the numbers meet, so this
/// is reached only when something is wrong, and the summary then shows the mismatch.
pub const DRAIN_IDLE: Duration = Duration::from_millis(500);
/// How long the drain of a ring waits in `poll` for the next block (pnet waits [`POLL`]).
const DRAIN_POLL: Duration = Duration::from_millis(crate::source::ring::RETIRE_MS as u64);

/// Why a live capture could not start or went on.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// A capture socket could not be opened or read.
    #[error(transparent)]
    Source(#[from] IfaceError),
    /// The `--write` file could not be created.
    #[error("cannot create the capture file {}: {error}", path.display())]
    CreateFile { path: PathBuf, error: io::Error },
    /// Writing the `--write` file failed; it was cut back to its last whole record.
    #[error(
        "writing the capture file {}: {error}; the file holds the first {frames} frame(s), cut back to the last whole record",
        path.display()
    )]
    Write {
        path: PathBuf,
        /// Frames in the file (whole records).
        frames: u64,
        error: io::Error,
    },
    #[error("a capture worker panicked")]
    Panicked,
}

fn io_err<'a>(what: &'static str, iface: &'a str) -> impl FnOnce(io::Error) -> LiveError + 'a {
    move |e| LiveError::Source(IfaceError::io(what, iface)(e))
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

/// How often each worker ends the flows that timed out (by the wall clock).
pub const EXPIRE_EVERY: Duration = Duration::from_secs(1);

/// A policy and the engines built from it, as the workers classify with them. A reload
/// replaces them as a whole, with the next generation number.
pub struct Engines<C3, C5> {
    /// 0 for the policy the session started with; each reload adds 1.
    pub generation: u32,
    pub policy: Arc<Policy>,
    pub c3: Arc<C3>,
    pub c5: Arc<C5>,
}

/// The engines the workers should use: the generation is read (one relaxed load) with every
/// frame, the lock taken only by a worker that sees it change, so the hot path takes no lock.
struct Current<C3, C5> {
    generation: AtomicU32,
    engines: Mutex<Arc<Engines<C3, C5>>>,
}

impl<C3, C5> Current<C3, C5> {
    fn get(&self) -> Arc<Engines<C3, C5>> {
        match self.engines.lock() {
            Ok(e) => e.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// Swaps the workers' policy and engines while they capture (`watch`'s SIGHUP).
pub struct Reloader<C3, C5> {
    current: Arc<Current<C3, C5>>,
}

impl<C3, C5> Reloader<C3, C5> {
    /// The generation the next [`Reloader::swap`] will get.
    pub fn next_generation(&self) -> u32 {
        self.current.generation.load(Ordering::Relaxed) + 1
    }

    /// Installs `policy` and its engines: every worker classifies its next frame with them and
    /// restarts its tally for the new policy (see [`Counts::generation`]). Returns the new
    /// generation.
    pub fn swap(&self, policy: Arc<Policy>, c3: Arc<C3>, c5: Arc<C5>) -> u32 {
        let mut e = match self.current.engines.lock() {
            Ok(e) => e,
            Err(p) => p.into_inner(),
        };
        let generation = e.generation + 1;
        *e = Arc::new(Engines {
            generation,
            policy,
            c3,
            c5,
        });
        self.current.generation.store(generation, Ordering::Release);
        generation
    }
}

/// The flow meter of a live capture: each worker meters the frames it reads in a table of its
/// own (the fanout sends a flow's frames to one worker), `max_flows / workers` flows each, and
/// hands the ended flows to `sink`.
#[derive(Clone)]
pub struct LiveMeter {
    pub cfg: MeterConfig,
    pub sink: Arc<dyn RecordSink>,
}

impl std::fmt::Debug for LiveMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveMeter").field("cfg", &self.cfg).finish()
    }
}

/// The meters' numbers, summed over workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MeterNumbers {
    /// Flows held now.
    pub flows_now: usize,
    /// The most flows held at once (summed over the workers' tables).
    pub peak_flows: usize,
    /// Heap bytes the tables reserved.
    pub memory_bytes: usize,
    /// The bound over all workers.
    pub max_flows: usize,
    #[serde(flatten)]
    pub stats: MeterStats,
}

impl MeterNumbers {
    fn merge(&mut self, o: &MeterNumbers) {
        self.flows_now += o.flows_now;
        self.peak_flows += o.peak_flows;
        self.memory_bytes += o.memory_bytes;
        self.max_flows += o.max_flows;
        self.stats.merge(&o.stats);
    }
}

/// A worker's meter: its table, where records go, and when it last expired flows.
struct WorkerMeter {
    table: FlowTable,
    sink: Arc<dyn RecordSink>,
    last_expire: Instant,
}

impl WorkerMeter {
    fn numbers(&self) -> MeterNumbers {
        MeterNumbers {
            flows_now: self.table.len(),
            peak_flows: self.table.peak(),
            memory_bytes: self.table.memory_bytes(),
            max_flows: self.table.config().max_flows,
            stats: self.table.stats(),
        }
    }

    /// Ends the flows that timed out by the wall clock, at most every [`EXPIRE_EVERY`].
    fn expire(&mut self) {
        if self.last_expire.elapsed() < EXPIRE_EVERY {
            return;
        }
        self.last_expire = Instant::now();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let sink = &*self.sink;
        self.table.expire(now, &mut |r| sink.record(r));
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
    /// Which IPv6 header of a tunnelled packet is keyed (`--tunnel`).
    pub tunnel: crate::packet::tunnel::Mode,
    /// Meter the flows, and where their records go.
    pub meter: Option<LiveMeter>,
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
    /// The policy generation `tally` counts for. After a reload the tally restarts for the new
    /// policy (its rules differ); the frames counted under earlier policies are in `earlier`.
    pub generation: u32,
    /// Frames counted under earlier policy generations (before the last reload).
    pub earlier: u64,
    /// The flow meters' numbers (all 0 without a meter).
    pub meter: MeterNumbers,
}

impl Counts {
    fn merge(&mut self, o: &Counts) {
        // Workers pick a reload up one by one: a tally of an older generation than the newest
        // counts as frames of earlier policies.
        if o.generation > self.generation {
            self.earlier += self.tally.frames.packets;
            self.tally.clone_from(&o.tally);
            self.generation = o.generation;
        } else if o.generation < self.generation {
            self.earlier += o.tally.frames.packets;
        } else {
            self.tally.merge(&o.tally);
        }
        self.earlier += o.earlier;
        self.kernel.merge(&o.kernel);
        self.read += o.read;
        self.meter.merge(&o.meter);
    }

    /// Frames counted under every policy generation.
    pub fn counted(&self) -> u64 {
        self.tally.frames.packets + self.earlier
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
            frames_counted: self.counted(),
            read_not_counted: self.read.saturating_sub(self.counted()),
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

/// Bytes buffered before the capture file is written to.
const WRITE_BUFFER: usize = 64 * 1024;
/// The longest a frame waits in the buffer: a write error (a full disk) shows within this time
/// on a quiet link, not only at the end.
pub const WRITE_FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How often each worker looks whether the buffer is due (the buffer is written once it is
/// `WRITE_FLUSH_EVERY - FLUSH_CHECK` old, so no frame waits longer than `WRITE_FLUSH_EVERY`).
const FLUSH_CHECK: Duration = Duration::from_millis(250);

/// The bytes of whole pcap records on their way to the file. Nothing is written until
/// [`Write::flush`], which the [`CaptureFile`] calls only between records, so the file always
/// ends in a whole record: a failed write (ENOSPC) is cut back to where the file ended before
/// it, and every later write fails.
struct RecordBuffer {
    file: File,
    buf: Vec<u8>,
    /// Bytes the file holds (whole records only).
    in_file: u64,
    failed: bool,
}

impl io::Write for RecordBuffer {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::other(
                "an earlier write to the capture file failed",
            ));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.failed {
            return Err(io::Error::other(
                "an earlier write to the capture file failed",
            ));
        }
        match self.file.write_all(&self.buf) {
            Ok(()) => {
                self.in_file += self.buf.len() as u64;
                self.buf.clear();
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                self.buf.clear();
                // Part of the buffer may have reached the file: cut it back to the last whole
                // record, which frees the space it took, too.
                if let Err(t) = self.file.set_len(self.in_file) {
                    tracing::warn!("truncating the capture file after a failed write: {t}");
                }
                Err(e)
            }
        }
    }
}

/// The `--write` file: pcap records buffered and written whole, at least every
/// [`WRITE_FLUSH_EVERY`], counting the frames that reached the file.
pub struct CaptureFile {
    pcap: PcapWriter<RecordBuffer>,
    path: PathBuf,
    /// Frames in the buffer, and their bytes.
    buffered: u64,
    buffered_bytes: usize,
    /// Frames in the file.
    in_file: u64,
    last_flush: Instant,
}

impl CaptureFile {
    /// Creates (or truncates) the file and writes the pcap header to it at once.
    pub fn create(path: &std::path::Path, link: LinkType) -> Result<CaptureFile, LiveError> {
        let fail = |error| LiveError::CreateFile {
            path: path.to_path_buf(),
            error,
        };
        let file = File::create(path).map_err(fail)?;
        let buf = RecordBuffer {
            file,
            buf: Vec::with_capacity(WRITE_BUFFER + iface::READ_BUFFER),
            in_file: 0,
            failed: false,
        };
        let mut pcap = PcapWriter::new(buf, link).map_err(fail)?;
        FrameWriter::flush(&mut pcap).map_err(fail)?;
        Ok(CaptureFile {
            pcap,
            path: path.to_path_buf(),
            buffered: 0,
            buffered_bytes: 0,
            in_file: 0,
            last_flush: Instant::now(),
        })
    }

    /// Buffers one frame's record; writes the buffer once it is full. Nothing allocated (the
    /// buffer has room for a full buffer plus the largest frame).
    pub fn write(&mut self, frame: &Frame<'_>) -> io::Result<()> {
        self.pcap.write_frame(frame)?;
        self.buffered += 1;
        self.buffered_bytes += 16 + frame.data.len();
        if self.buffered_bytes >= WRITE_BUFFER {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the buffered records to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        let r = FrameWriter::flush(&mut self.pcap);
        if r.is_ok() {
            self.in_file += self.buffered;
        }
        self.buffered = 0;
        self.buffered_bytes = 0;
        self.last_flush = Instant::now();
        r
    }

    /// Writes the buffered records when the last write is `WRITE_FLUSH_EVERY - FLUSH_CHECK`
    /// ago (the caller looks every `FLUSH_CHECK`).
    pub fn flush_if_due(&mut self) -> io::Result<()> {
        if self.buffered > 0 && self.last_flush.elapsed() >= WRITE_FLUSH_EVERY - FLUSH_CHECK {
            self.flush()
        } else {
            Ok(())
        }
    }

    /// Frames that reached the file (whole records).
    pub fn frames_in_file(&self) -> u64 {
        self.in_file
    }

    /// The file's path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

type Writer = Arc<Mutex<CaptureFile>>;
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
        C3: Classifier<ThreeTuple> + Send + Sync + 'static,
        C5: Classifier<FiveTuple> + Send + Sync + 'static,
    {
        Self::start_reloadable(cfg, Arc::new(policy.clone()), c3, c5).map(|(s, _)| s)
    }

    /// [`Session::start`], also giving the handle that swaps the policy and engines while the
    /// capture runs.
    pub fn start_reloadable<C3, C5>(
        cfg: &WatchConfig,
        policy: Arc<Policy>,
        c3: Arc<C3>,
        c5: Arc<C5>,
    ) -> Result<(Session, Reloader<C3, C5>), LiveError>
    where
        C3: Classifier<ThreeTuple> + Send + Sync + 'static,
        C5: Classifier<FiveTuple> + Send + Sync + 'static,
    {
        let workers = cfg.workers.max(1);
        // The meter needs each frame's time: pnet reads the clock only when asked.
        let timestamps = cfg.write.is_some() || cfg.meter.is_some();
        let sources = Source::open_all(cfg.source, &cfg.iface, workers, timestamps)?;
        let link = sources[0].link();
        if cfg.source == SourceKind::Pnet {
            iface::warn_pnet_vlans(&cfg.iface, link);
        }
        let writer = match &cfg.write {
            Some(p) => Some(Arc::new(Mutex::new(CaptureFile::create(p, link)?))),
            None => None,
        };
        // The kernel's counters start when the sockets receive (bind, or the end of the fanout
        // startup filter), like the frames the workers will read: every frame the sockets see is
        // either counted by a worker or reported dropped.
        let control = Arc::new(Control::default());
        let mut slots = Vec::new();
        let mut handles = Vec::new();
        let blank = Tally::new(&policy, c3.name(), c5.name());
        let current = Arc::new(Current {
            generation: AtomicU32::new(0),
            engines: Mutex::new(Arc::new(Engines {
                generation: 0,
                policy,
                c3,
                c5,
            })),
        });
        for src in sources {
            let counts = Counts {
                tally: blank.clone(),
                kernel: KernelStats::default(),
                read: 0,
                generation: 0,
                earlier: 0,
                meter: MeterNumbers::default(),
            };
            let slot = Arc::new(Mutex::new(Snapshot {
                generation: 0,
                done: false,
                counts: counts.clone(),
            }));
            slots.push(slot.clone());
            let meter = cfg.meter.as_ref().map(|m| WorkerMeter {
                table: FlowTable::new(MeterConfig {
                    max_flows: m.cfg.max_flows.div_ceil(workers).max(1),
                    ..m.cfg
                }),
                sink: m.sink.clone(),
                last_expire: Instant::now(),
            });
            let w = Worker {
                iface: cfg.iface.clone(),
                tunnel: cfg.tunnel,
                src,
                slot,
                handler: FrameHandler {
                    counts,
                    control: control.clone(),
                    writer: writer.clone(),
                    count: cfg.count,
                    write_err: None,
                    meter,
                    next_flush_check: Instant::now(),
                },
            };
            let current = current.clone();
            handles.push(std::thread::spawn(move || w.run(&current)));
        }
        Ok((
            Session {
                control,
                slots,
                handles,
                writer,
                link,
                started: Instant::now(),
            },
            Reloader { current },
        ))
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
        let mut written = None;
        if let Some(w) = self.writer {
            match Arc::try_unwrap(w).map(Mutex::into_inner) {
                Ok(Ok(mut file)) => {
                    let flushed = file.flush();
                    let frames = file.frames_in_file();
                    written = Some(frames);
                    match (&mut error, flushed) {
                        // A worker's write error: now the frames in the file are known.
                        (Some(LiveError::Write { frames: f, .. }), _) => *f = frames,
                        (_, Err(e)) => {
                            error.get_or_insert(LiveError::Write {
                                path: file.path().to_path_buf(),
                                frames,
                                error: e,
                            });
                        }
                        _ => {}
                    }
                }
                _ => {
                    error.get_or_insert(LiveError::Panicked);
                }
            }
        }
        Finished {
            counts: all.expect("at least one worker"),
            per_worker,
            error,
            written,
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
    /// With `--write`: the frames in the file (whole records).
    pub written: Option<u64>,
}

struct Worker {
    iface: String,
    tunnel: crate::packet::tunnel::Mode,
    src: Source,
    slot: Arc<Mutex<Snapshot>>,
    handler: FrameHandler,
}

/// What a worker does with the frames it reads (apart from its source, so that both can be
/// borrowed at once): the step's outcome counted, the frame written.
struct FrameHandler {
    counts: Counts,
    control: Arc<Control>,
    writer: Option<Writer>,
    count: Option<u64>,
    /// The first error writing the capture file ([`LiveError::Write`], its frame count filled
    /// in at the end); this worker writes no frame after it.
    write_err: Option<LiveError>,
    /// When this worker next looks whether the capture file's buffer is due to be written.
    next_flush_check: Instant,
    /// This worker's flow meter shard.
    meter: Option<WorkerMeter>,
}

impl FrameHandler {
    /// Counts a frame the worker read: classifies it and writes it, unless `--count` frames
    /// have been counted already (the frame is then read but not counted). Asks every worker to
    /// stop once `--count` is reached or writing failed. The hot path: nothing allocated.
    #[inline]
    fn take<C3, C5>(&mut self, frame: &Frame<'_>, step: &mut Step<'_, C3, C5>)
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
        let outcome = step.count(frame, &mut self.counts.tally);
        if let Some(m) = &mut self.meter
            && let Some(p) = Packet::of(&outcome, frame.ts, self.counts.generation)
        {
            let sink = &*m.sink;
            m.table.observe(&p, &mut |r| sink.record(r));
        }
        if let Some(w) = &self.writer {
            let r = match w.lock() {
                Ok(mut w) => w.write(frame),
                Err(_) => Err(io::Error::other("writer poisoned")),
            };
            if let Err(e) = r {
                self.write_failed(e);
            }
        }
        if last {
            self.control.stop();
        }
    }

    /// Writes the capture file's buffer when it is due (called between reads, so a write
    /// error shows while the capture runs, even on a quiet link).
    fn flush_if_due(&mut self) {
        // The shared writer is locked only a few times a second per worker, not per read.
        let now = Instant::now();
        if self.writer.is_none() || now < self.next_flush_check {
            return;
        }
        self.next_flush_check = now + FLUSH_CHECK;
        if let Some(w) = &self.writer {
            let r = match w.lock() {
                Ok(mut w) => w.flush_if_due(),
                Err(_) => Err(io::Error::other("writer poisoned")),
            };
            if let Err(e) = r {
                self.write_failed(e);
            }
        }
    }

    /// Remembers the first write error, writes nothing more, and stops every worker.
    fn write_failed(&mut self, e: io::Error) {
        let path = self
            .writer
            .take()
            .and_then(|w| w.lock().ok().map(|w| w.path().to_path_buf()))
            .unwrap_or_default();
        self.write_err = Some(LiveError::Write {
            path,
            frames: 0,
            error: e,
        });
        self.control.stop();
    }
}

impl Worker {
    /// Adds the kernel's counters (reading them resets them) to the worker's totals, and notes
    /// the frames read so far.
    fn add_statistics(&mut self) {
        if let Ok(k) = self.src.statistics() {
            self.handler.counts.kernel.merge(&k);
        }
        self.handler.counts.read = self.src.frames_read();
    }

    fn publish(&mut self, generation: u64, done: bool) {
        self.add_statistics();
        let counts = &self.handler.counts;
        if let Ok(mut s) = self.slot.lock() {
            s.counts.tally.clone_from(&counts.tally);
            s.counts.kernel = counts.kernel;
            s.counts.read = counts.read;
            s.counts.generation = counts.generation;
            s.counts.earlier = counts.earlier;
            s.counts.meter = self
                .handler
                .meter
                .as_ref()
                .map(WorkerMeter::numbers)
                .unwrap_or_default();
            s.generation = generation;
            s.done = done;
        }
    }

    /// Starts counting for the policy of `engines` (a reload): the tally restarts for it, the
    /// frames counted so far move to `earlier`.
    fn adopt<C3, C5>(&mut self, engines: &Engines<C3, C5>, step: &Step<'_, C3, C5>)
    where
        C3: Classifier<ThreeTuple>,
        C5: Classifier<FiveTuple>,
    {
        let c = &mut self.handler.counts;
        if c.generation == engines.generation {
            return;
        }
        c.earlier += c.tally.frames.packets;
        c.tally = step.tally(&engines.policy);
        c.generation = engines.generation;
    }

    /// The capture loop: the same per-frame hot path as `classify`, nothing allocated per frame.
    /// The engines are swapped between two frames when a reload's generation shows up (one
    /// relaxed load per frame; the lock only then). Then, once a stop was asked for (or
    /// receiving failed), the drain, and the meter's flows are flushed.
    fn run<C3, C5>(mut self, current: &Current<C3, C5>) -> WorkerResult
    where
        C3: Classifier<ThreeTuple> + 'static,
        C5: Classifier<FiveTuple> + 'static,
    {
        let mut published = 0u64;
        let mut error = None;
        let mut engines = current.get();
        loop {
            let mut step = Step::new(&*engines.c3, &*engines.c5).with_tunnel(self.tunnel);
            self.adopt(&engines, &step);
            let mine = engines.generation;
            let mut reload = false;
            while !self.handler.control.stopped() {
                let handler = &mut self.handler;
                let r = self.src.dispatch(POLL, |frame| {
                    handler.take(frame, &mut step);
                    let control = &*handler.control;
                    control.generation.load(Ordering::Relaxed) == published
                        && !control.stopped()
                        && current.generation.load(Ordering::Acquire) == mine
                });
                if let Err(e) = r {
                    error = Some(io_err("receiving", &self.iface)(e));
                    break;
                }
                if let Some(m) = &mut self.handler.meter {
                    m.expire();
                }
                self.handler.flush_if_due();
                let g = self.handler.control.generation.load(Ordering::Relaxed);
                if g != published {
                    published = g;
                    self.publish(g, false);
                }
                if current.generation.load(Ordering::Acquire) != mine {
                    reload = true;
                    break;
                }
            }
            if reload {
                // The step borrowed the old engines; it is not used past this point.
                engines = current.get();
                continue;
            }
            if let Err(e) = self.drain(&mut step) {
                error.get_or_insert(e);
            }
            break;
        }
        if let Some(m) = &mut self.handler.meter {
            let sink = &*m.sink;
            m.table.flush(&mut |r| sink.record(r));
        }
        self.publish(published, true);
        let error = self.handler.write_err.take().or(error);
        let meter = self.handler.meter.as_ref().map(WorkerMeter::numbers);
        let mut counts = self.handler.counts;
        counts.meter = meter.unwrap_or_default();
        (counts, error)
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
    fn drain<C3, C5>(&mut self, step: &mut Step<'_, C3, C5>) -> Result<(), LiveError>
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
            let k = self.handler.counts.kernel;
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
            let handler = &mut self.handler;
            self.src
                .dispatch(DRAIN_POLL, |frame| {
                    handler.take(frame, step);
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
            generation: 0,
            earlier: 0,
            meter: MeterNumbers::default(),
        }
    }

    #[test]
    fn counts_of_workers_on_different_policy_generations_merge_into_the_newest_tally() {
        // Worker a has picked up reload 1 (5 frames since, 20 before); worker b is still on the
        // first policy (7 frames).
        let mut a = counts(25, 0, 25, 5);
        a.generation = 1;
        a.earlier = 20;
        let b = counts(7, 0, 7, 7);
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        for m in [ab, ba] {
            assert_eq!(m.generation, 1);
            assert_eq!(m.tally.frames.packets, 5);
            assert_eq!(m.earlier, 27);
            assert_eq!(m.counted(), 32);
            let r = m.reconciliation();
            assert_eq!((r.frames_counted, r.read_not_counted), (32, 0));
            assert!(r.exact);
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
}
