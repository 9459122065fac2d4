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
use crate::classify::Classifier;
use crate::packet::{FiveTuple, Frame, LinkType, ThreeTuple};
use crate::policy::model::Policy;
use crate::report::Tally;
use crate::source::iface::{self, IfaceError, KernelStats, POLL, Source, SourceKind};
use crate::source::pcap::{FrameWriter, PcapWriter};
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
        C3: Classifier<ThreeTuple> + 'static,
        C5: Classifier<FiveTuple> + 'static,
    {
        let workers = cfg.workers.max(1);
        let sources = Source::open_all(cfg.source, &cfg.iface, workers, cfg.write.is_some())?;
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
                handler: FrameHandler {
                    counts,
                    control: control.clone(),
                    writer: writer.clone(),
                    count: cfg.count,
                    write_err: None,
                    next_flush_check: Instant::now(),
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
        step.count(frame, &mut self.counts.tally);
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
        let mut step = Step::new(c3, c5);
        let mut published = 0u64;
        let mut error = None;
        while !self.handler.control.stopped() {
            let handler = &mut self.handler;
            let r = self.src.dispatch(POLL, |frame| {
                handler.take(frame, &mut step);
                let control = &*handler.control;
                control.generation.load(Ordering::Relaxed) == published && !control.stopped()
            });
            if let Err(e) = r {
                error = Some(io_err("receiving", &self.iface)(e));
                break;
            }
            self.handler.flush_if_due();
            let g = self.handler.control.generation.load(Ordering::Relaxed);
            if g != published {
                published = g;
                self.publish(g, false);
            }
        }
        if let Err(e) = self.drain(&mut step) {
            error.get_or_insert(e);
        }
        self.publish(published, true);
        let error = self.handler.write_err.take().or(error);
        (self.handler.counts, error)
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
