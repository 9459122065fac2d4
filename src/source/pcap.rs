//! Capture files: a reader for pcap (micro- and nanosecond, either byte order) and pcapng
//! (sections of either byte order, several interfaces, enhanced/simple/obsolete packet blocks,
//! `if_tsresol`), and writers for both.
//!
//! The reader lends each frame from one reused buffer. Frames are numbered from 1 in file
//! order, like tshark's `frame.number`. A file that ends inside a record, or whose record
//! lengths make no sense, gives a [`CaptureError`] carrying the byte offset of the bad record
//! and the number of frames read before it, so a caller can report what was read first.
//!
//! ```text
//! pcap:    file header (24): magic a1b2c3d4 (us) | a1b23c4d (ns), version, zone, sigfigs,
//!                            snaplen, link type
//!          record (16 + n):  ts sec, ts us|ns, captured length n, original length, data
//! pcapng:  block:            type (4), total length (4), body, total length (4)
//!          SHB 0x0a0d0d0a:   byte-order magic 1a2b3c4d, version, section length, options
//!          IDB 1:            link type (2), reserved (2), snaplen (4), options (if_tsresol = 9)
//!          EPB 6:            interface, ts high, ts low, captured len, original len, data
//!          SPB 3:            original len, data      PB 2 (obsolete): like EPB, 16-bit interface
//! ```

use crate::packet::{Frame, LinkType};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::time::Duration;

/// The largest frame accepted, whatever the snapshot length says (16 MiB).
pub const MAX_FRAME: u32 = 16 << 20;
/// Frames up to this size are accepted even when the snapshot length says less (tshark's limit).
const STANDARD_MAX_FRAME: u32 = 262_144;

const PCAP_MAGIC_US: u32 = 0xa1b2_c3d4;
const PCAP_MAGIC_NS: u32 = 0xa1b2_3c4d;
const NG_SHB: u32 = 0x0a0d_0d0a;
const NG_BOM: u32 = 0x1a2b_3c4d;
const NG_IDB: u32 = 1;
const NG_PB: u32 = 2;
const NG_SPB: u32 = 3;
const NG_EPB: u32 = 6;

/// What went wrong reading a capture; every variant says where.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("reading the capture at byte {offset}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("not a pcap or pcapng file (it starts with {magic:02x?})")]
    NotACapture { magic: [u8; 4] },
    #[error(
        "capture truncated at byte {offset}: the file ends inside {what} (after {frames} frames)"
    )]
    Truncated {
        offset: u64,
        what: &'static str,
        frames: u64,
    },
    #[error("capture corrupt at byte {offset}: {what} (after {frames} frames)")]
    Corrupt {
        offset: u64,
        what: &'static str,
        frames: u64,
    },
}

impl CaptureError {
    /// The byte offset of the record or block where reading stopped.
    pub fn offset(&self) -> u64 {
        match self {
            CaptureError::Io { offset, .. }
            | CaptureError::Truncated { offset, .. }
            | CaptureError::Corrupt { offset, .. } => *offset,
            CaptureError::NotACapture { .. } => 0,
        }
    }
}

/// The file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Pcap,
    Pcapng,
}

#[derive(Clone, Copy, Debug)]
enum TsRes {
    /// 10^-n seconds per unit.
    Decimal(u32),
    /// 2^-n seconds per unit.
    Binary(u32),
}

impl TsRes {
    fn duration(self, units: u64) -> Duration {
        match self {
            TsRes::Decimal(e) => {
                let e = e.min(19);
                let per = 10u64.pow(e);
                let frac = units % per;
                let nanos = if e <= 9 {
                    frac * 10u64.pow(9 - e)
                } else {
                    frac / 10u64.pow(e - 9)
                };
                Duration::new(units / per, nanos as u32)
            }
            TsRes::Binary(p) => {
                let p = p.min(63);
                let frac = u128::from(units & ((1u64 << p) - 1));
                Duration::new(units >> p, ((frac * 1_000_000_000) >> p) as u32)
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Iface {
    link: LinkType,
    snaplen: u32,
    tsres: TsRes,
}

#[derive(Debug)]
enum Kind {
    Pcap {
        big: bool,
        nanos: bool,
        link: LinkType,
        max: u32,
    },
    Pcapng {
        big: bool,
        ifaces: Vec<Iface>,
    },
}

/// A pcap or pcapng reader that lends one frame at a time from a reused buffer.
#[derive(Debug)]
pub struct CaptureReader<R> {
    r: R,
    buf: Vec<u8>,
    offset: u64,
    frames: u64,
    kind: Kind,
}

/// Reads `n` bytes into `buf`; `Ok(false)` on a clean end of file before the first byte.
fn read_n<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<Option<usize>> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => return Ok(Some(got)),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

fn u16_at(b: &[u8], at: usize, big: bool) -> u16 {
    let a = [b[at], b[at + 1]];
    if big {
        u16::from_be_bytes(a)
    } else {
        u16::from_le_bytes(a)
    }
}

fn u32_at(b: &[u8], at: usize, big: bool) -> u32 {
    let a = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    if big {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

impl CaptureReader<BufReader<File>> {
    /// Opens a capture file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CaptureError> {
        let f = File::open(path).map_err(|source| CaptureError::Io { offset: 0, source })?;
        Self::new(BufReader::with_capacity(1 << 16, f))
    }
}

impl<R: Read> CaptureReader<R> {
    /// Reads the file header (pcap) or the first section header (pcapng).
    pub fn new(r: R) -> Result<Self, CaptureError> {
        let mut me = CaptureReader {
            r,
            buf: vec![0; 1 << 16],
            offset: 0,
            frames: 0,
            kind: Kind::Pcap {
                big: false,
                nanos: false,
                link: LinkType::ETHERNET,
                max: 0,
            },
        };
        let mut magic = [0u8; 4];
        match read_n(&mut me.r, &mut magic) {
            Err(source) => return Err(CaptureError::Io { offset: 0, source }),
            Ok(Some(_)) => return Err(me.truncated(0, "the file header")),
            Ok(None) => {}
        }
        let le = u32::from_le_bytes(magic);
        let be = u32::from_be_bytes(magic);
        if le == NG_SHB {
            me.kind = Kind::Pcapng {
                big: false,
                ifaces: Vec::new(),
            };
            me.offset = 4;
            me.read_shb(0)?;
            return Ok(me);
        }
        let (big, nanos) = match (le, be) {
            (PCAP_MAGIC_US, _) => (false, false),
            (PCAP_MAGIC_NS, _) => (false, true),
            (_, PCAP_MAGIC_US) => (true, false),
            (_, PCAP_MAGIC_NS) => (true, true),
            _ => return Err(CaptureError::NotACapture { magic }),
        };
        let mut h = [0u8; 20];
        me.fill_exact(&mut h, 0, "the file header")?;
        let snaplen = u32_at(&h, 12, big);
        let link = LinkType(u32_at(&h, 16, big) & 0xffff);
        let max = snaplen.clamp(STANDARD_MAX_FRAME, MAX_FRAME);
        me.kind = Kind::Pcap {
            big,
            nanos,
            link,
            max,
        };
        me.offset = 24;
        Ok(me)
    }

    /// The file format.
    pub fn format(&self) -> Format {
        match self.kind {
            Kind::Pcap { .. } => Format::Pcap,
            Kind::Pcapng { .. } => Format::Pcapng,
        }
    }

    /// The link type of a pcap file, or of a pcapng file's first interface (once one is read).
    pub fn link_type(&self) -> Option<LinkType> {
        match &self.kind {
            Kind::Pcap { link, .. } => Some(*link),
            Kind::Pcapng { ifaces, .. } => ifaces.first().map(|i| i.link),
        }
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Frames lent so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    fn truncated(&self, at: u64, what: &'static str) -> CaptureError {
        CaptureError::Truncated {
            offset: at,
            what,
            frames: self.frames,
        }
    }

    fn corrupt(&self, at: u64, what: &'static str) -> CaptureError {
        CaptureError::Corrupt {
            offset: at,
            what,
            frames: self.frames,
        }
    }

    /// Reads exactly `out.len()` bytes of a record that starts at `at`.
    fn fill_exact(
        &mut self,
        out: &mut [u8],
        at: u64,
        what: &'static str,
    ) -> Result<(), CaptureError> {
        match read_n(&mut self.r, out) {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err(self.truncated(at, what)),
            Err(source) => Err(CaptureError::Io { offset: at, source }),
        }
    }

    /// Reads `n` bytes into the reused buffer.
    fn fill_buf(&mut self, n: usize, at: u64, what: &'static str) -> Result<(), CaptureError> {
        if self.buf.len() < n {
            self.buf.resize(n, 0);
        }
        let mut buf = std::mem::take(&mut self.buf);
        let r = self.fill_exact(&mut buf[..n], at, what);
        self.buf = buf;
        r
    }

    /// Reads the rest of a section header block whose 4-byte type was read at `at`.
    fn read_shb(&mut self, at: u64) -> Result<(), CaptureError> {
        let mut h = [0u8; 8];
        self.fill_exact(&mut h, at, "a section header block")?;
        let big = match (
            u32::from_le_bytes([h[4], h[5], h[6], h[7]]),
            u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        ) {
            (NG_BOM, _) => false,
            (_, NG_BOM) => true,
            _ => return Err(self.corrupt(at, "section header with an unknown byte-order magic")),
        };
        let total = u32_at(&h, 0, big);
        if total < 28 || !total.is_multiple_of(4) || total > MAX_FRAME {
            return Err(self.corrupt(at, "section header block length is impossible"));
        }
        let rest = total as usize - 12;
        self.fill_buf(rest, at, "a section header block")?;
        if u32_at(&self.buf, rest - 4, big) != total {
            return Err(self.corrupt(at, "section header block lengths disagree"));
        }
        self.kind = Kind::Pcapng {
            big,
            ifaces: Vec::new(),
        };
        self.offset = at + u64::from(total);
        Ok(())
    }

    /// The next frame, `None` at the end of the file.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        match self.kind {
            Kind::Pcap {
                big,
                nanos,
                link,
                max,
            } => self.next_pcap(big, nanos, link, max),
            Kind::Pcapng { .. } => self.next_pcapng(),
        }
    }

    /// Lends every remaining frame to `f`; returns how many frames the file held in all.
    pub fn for_each(&mut self, mut f: impl FnMut(Frame<'_>)) -> Result<u64, CaptureError> {
        while let Some(frame) = self.next_frame()? {
            f(frame);
        }
        Ok(self.frames)
    }

    fn next_pcap(
        &mut self,
        big: bool,
        nanos: bool,
        link: LinkType,
        max: u32,
    ) -> Result<Option<Frame<'_>>, CaptureError> {
        let at = self.offset;
        let mut h = [0u8; 16];
        match read_n(&mut self.r, &mut h) {
            Err(source) => return Err(CaptureError::Io { offset: at, source }),
            Ok(Some(0)) => return Ok(None),
            Ok(Some(_)) => return Err(self.truncated(at, "a record header")),
            Ok(None) => {}
        }
        let secs = u32_at(&h, 0, big);
        let frac = u32_at(&h, 4, big);
        let caplen = u32_at(&h, 8, big);
        let orig_len = u32_at(&h, 12, big);
        if caplen > max {
            return Err(self.corrupt(at, "record length is larger than any frame"));
        }
        let frac_ns = if nanos {
            frac
        } else {
            frac.saturating_mul(1000)
        };
        if frac_ns >= 1_000_000_000 {
            return Err(self.corrupt(at, "record timestamp fraction is out of range"));
        }
        self.fill_buf(caplen as usize, at, "a record's data")?;
        self.offset = at + 16 + u64::from(caplen);
        self.frames += 1;
        Ok(Some(Frame {
            number: self.frames,
            link,
            ts: Duration::new(u64::from(secs), frac_ns),
            orig_len: orig_len.max(caplen),
            data: &self.buf[..caplen as usize],
        }))
    }

    fn next_pcapng(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        loop {
            let at = self.offset;
            let mut h = [0u8; 8];
            match read_n(&mut self.r, &mut h) {
                Err(source) => return Err(CaptureError::Io { offset: at, source }),
                Ok(Some(0)) => return Ok(None),
                Ok(Some(_)) => return Err(self.truncated(at, "a block header")),
                Ok(None) => {}
            }
            if u32::from_le_bytes([h[0], h[1], h[2], h[3]]) == NG_SHB {
                // A new section: its own byte order, its own interfaces.
                let mut b = std::io::Cursor::new(h[4..].to_vec()).chain(&mut self.r);
                let mut me = CaptureReader {
                    r: &mut b,
                    buf: std::mem::take(&mut self.buf),
                    offset: at,
                    frames: self.frames,
                    kind: Kind::Pcapng {
                        big: false,
                        ifaces: Vec::new(),
                    },
                };
                let r = me.read_shb(at);
                let (buf, kind, offset) = (me.buf, me.kind, me.offset);
                self.buf = buf;
                r?;
                self.kind = kind;
                self.offset = offset;
                continue;
            }
            let Kind::Pcapng { big, .. } = self.kind else {
                unreachable!()
            };
            let ty = u32_at(&h, 0, big);
            let total = u32_at(&h, 4, big);
            if total < 12 || !total.is_multiple_of(4) || total > MAX_FRAME {
                return Err(self.corrupt(at, "block length is impossible"));
            }
            let body = total as usize - 12;
            self.fill_buf(body + 4, at, "a block")?;
            if u32_at(&self.buf, body, big) != total {
                return Err(self.corrupt(at, "block lengths disagree"));
            }
            self.offset = at + u64::from(total);
            let b = &self.buf[..body];
            let Kind::Pcapng {
                big,
                ref mut ifaces,
            } = self.kind
            else {
                unreachable!()
            };
            let (iface, ts_units, caplen, orig_len, data_at) = match ty {
                NG_IDB => {
                    if body < 8 {
                        return Err(CaptureError::Corrupt {
                            offset: at,
                            what: "interface description block is too short",
                            frames: self.frames,
                        });
                    }
                    let link = LinkType(u32::from(u16_at(b, 0, big)));
                    let snaplen = u32_at(b, 4, big);
                    let tsres = parse_tsresol(&b[8..], big);
                    ifaces.push(Iface {
                        link,
                        snaplen,
                        tsres,
                    });
                    continue;
                }
                NG_EPB | NG_PB => {
                    if body < 20 {
                        return Err(CaptureError::Corrupt {
                            offset: at,
                            what: "packet block is too short",
                            frames: self.frames,
                        });
                    }
                    let iface = if ty == NG_EPB {
                        u32_at(b, 0, big) as usize
                    } else {
                        usize::from(u16_at(b, 0, big))
                    };
                    let ts = (u64::from(u32_at(b, 4, big)) << 32) | u64::from(u32_at(b, 8, big));
                    (iface, ts, u32_at(b, 12, big), u32_at(b, 16, big), 20usize)
                }
                NG_SPB => {
                    if body < 4 {
                        return Err(CaptureError::Corrupt {
                            offset: at,
                            what: "simple packet block is too short",
                            frames: self.frames,
                        });
                    }
                    let orig = u32_at(b, 0, big);
                    let snap = ifaces.first().map_or(u32::MAX, |i| i.snaplen);
                    let snap = if snap == 0 { u32::MAX } else { snap };
                    let cap = orig.min(snap).min((body - 4) as u32);
                    (0, 0, cap, orig, 4usize)
                }
                _ => continue,
            };
            let Some(&Iface { link, tsres, .. }) = ifaces.get(iface) else {
                return Err(CaptureError::Corrupt {
                    offset: at,
                    what: "packet block names an interface that was not described",
                    frames: self.frames,
                });
            };
            let end = data_at + caplen as usize;
            if end > body {
                return Err(CaptureError::Corrupt {
                    offset: at,
                    what: "packet block's captured length runs past the block",
                    frames: self.frames,
                });
            }
            self.frames += 1;
            return Ok(Some(Frame {
                number: self.frames,
                link,
                ts: tsres.duration(ts_units),
                orig_len: orig_len.max(caplen),
                data: &self.buf[data_at..end],
            }));
        }
    }
}

/// The `if_tsresol` option (code 9) of an interface description block, default microseconds.
fn parse_tsresol(mut opts: &[u8], big: bool) -> TsRes {
    while opts.len() >= 4 {
        let code = u16_at(opts, 0, big);
        let len = usize::from(u16_at(opts, 2, big));
        let padded = len.div_ceil(4) * 4;
        if code == 0 || opts.len() < 4 + padded {
            break;
        }
        if code == 9 && len == 1 {
            let v = opts[4];
            return if v & 0x80 != 0 {
                TsRes::Binary(u32::from(v & 0x7f))
            } else {
                TsRes::Decimal(u32::from(v))
            };
        }
        opts = &opts[4 + padded..];
    }
    TsRes::Decimal(6)
}

/// Something frames can be written to: a pcap or pcapng file.
pub trait FrameWriter {
    /// Writes one frame.
    fn write_packet(&mut self, ts: Duration, orig_len: u32, data: &[u8]) -> io::Result<()>;
    /// Flushes what is buffered.
    fn flush(&mut self) -> io::Result<()>;
    /// Writes a lent frame.
    fn write_frame(&mut self, f: &Frame<'_>) -> io::Result<()> {
        self.write_packet(f.ts, f.orig_len, f.data)
    }
}

/// A pcap writer (little-endian, nanosecond timestamps, one link type).
pub struct PcapWriter<W: Write> {
    w: W,
    link: LinkType,
}

impl PcapWriter<BufWriter<File>> {
    /// Creates (or truncates) a pcap file.
    pub fn create(path: impl AsRef<Path>, link: LinkType) -> io::Result<Self> {
        PcapWriter::new(BufWriter::new(File::create(path)?), link)
    }
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header.
    pub fn new(mut w: W, link: LinkType) -> io::Result<Self> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&PCAP_MAGIC_NS.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&STANDARD_MAX_FRAME.to_le_bytes());
        h.extend_from_slice(&link.0.to_le_bytes());
        w.write_all(&h)?;
        Ok(PcapWriter { w, link })
    }

    /// The link type every frame must have.
    pub fn link(&self) -> LinkType {
        self.link
    }

    /// Flushes and returns the inner writer.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.w.flush()?;
        Ok(self.w)
    }
}

impl<W: Write> FrameWriter for PcapWriter<W> {
    fn write_packet(&mut self, ts: Duration, orig_len: u32, data: &[u8]) -> io::Result<()> {
        let caplen = u32::try_from(data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&(ts.as_secs() as u32).to_le_bytes());
        h[4..8].copy_from_slice(&ts.subsec_nanos().to_le_bytes());
        h[8..12].copy_from_slice(&caplen.to_le_bytes());
        h[12..16].copy_from_slice(&orig_len.max(caplen).to_le_bytes());
        self.w.write_all(&h)?;
        self.w.write_all(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

/// A pcapng writer: one little-endian section, one interface with nanosecond timestamps.
pub struct PcapNgWriter<W: Write> {
    w: W,
}

impl<W: Write> PcapNgWriter<W> {
    /// Writes the section header and the interface description.
    pub fn new(mut w: W, link: LinkType) -> io::Result<Self> {
        let mut b = Vec::with_capacity(64);
        // Section header block, no options, section length unknown (-1).
        b.extend_from_slice(&NG_SHB.to_le_bytes());
        b.extend_from_slice(&28u32.to_le_bytes());
        b.extend_from_slice(&NG_BOM.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&(-1i64).to_le_bytes());
        b.extend_from_slice(&28u32.to_le_bytes());
        // Interface description block with if_tsresol = 9 (nanoseconds) and opt_endofopt.
        b.extend_from_slice(&NG_IDB.to_le_bytes());
        b.extend_from_slice(&32u32.to_le_bytes());
        b.extend_from_slice(&(link.0 as u16).to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&STANDARD_MAX_FRAME.to_le_bytes());
        b.extend_from_slice(&9u16.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&[9, 0, 0, 0]);
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&32u32.to_le_bytes());
        w.write_all(&b)?;
        Ok(PcapNgWriter { w })
    }

    /// Flushes and returns the inner writer.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.w.flush()?;
        Ok(self.w)
    }
}

impl<W: Write> FrameWriter for PcapNgWriter<W> {
    fn write_packet(&mut self, ts: Duration, orig_len: u32, data: &[u8]) -> io::Result<()> {
        let caplen = u32::try_from(data.len())
            .ok()
            .filter(|&l| l <= MAX_FRAME - 64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
        let padded = caplen.div_ceil(4) * 4;
        let total = 32 + padded;
        let units = ts.as_nanos() as u64;
        let mut h = [0u8; 28];
        h[0..4].copy_from_slice(&NG_EPB.to_le_bytes());
        h[4..8].copy_from_slice(&total.to_le_bytes());
        h[8..12].copy_from_slice(&0u32.to_le_bytes());
        h[12..16].copy_from_slice(&((units >> 32) as u32).to_le_bytes());
        h[16..20].copy_from_slice(&(units as u32).to_le_bytes());
        h[20..24].copy_from_slice(&caplen.to_le_bytes());
        h[24..28].copy_from_slice(&orig_len.max(caplen).to_le_bytes());
        self.w.write_all(&h)?;
        self.w.write_all(data)?;
        self.w.write_all(&[0u8; 3][..(padded - caplen) as usize])?;
        self.w.write_all(&total.to_le_bytes())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames() -> Vec<(Duration, Vec<u8>)> {
        (1..=5u8)
            .map(|i| {
                (
                    Duration::new(1_700_000_000 + u64::from(i), u32::from(i) * 1001),
                    vec![i; usize::from(i) * 3],
                )
            })
            .collect()
    }

    type Got = Vec<(u64, LinkType, Duration, Vec<u8>)>;

    fn read_all(bytes: &[u8]) -> (Got, Option<CaptureError>) {
        let mut out = Vec::new();
        let mut r = match CaptureReader::new(bytes) {
            Ok(r) => r,
            Err(e) => return (out, Some(e)),
        };
        let res = r.for_each(|f| out.push((f.number, f.link, f.ts, f.data.to_vec())));
        (out, res.err())
    }

    #[test]
    fn pcap_round_trip() {
        let mut w = PcapWriter::new(Vec::new(), LinkType::RAW).unwrap();
        for (ts, d) in frames() {
            w.write_packet(ts, d.len() as u32, &d).unwrap();
        }
        let bytes = w.into_inner().unwrap();
        let (got, err) = read_all(&bytes);
        assert!(err.is_none());
        assert_eq!(got.len(), 5);
        for ((n, link, ts, d), (ts0, d0)) in got.iter().zip(frames()) {
            assert_eq!(*link, LinkType::RAW);
            assert_eq!((*ts, d), (ts0, &d0));
            assert_eq!(*n, u64::from(d0[0]));
        }
    }

    #[test]
    fn pcapng_round_trip() {
        let mut w = PcapNgWriter::new(Vec::new(), LinkType::ETHERNET).unwrap();
        for (ts, d) in frames() {
            w.write_packet(ts, d.len() as u32, &d).unwrap();
        }
        let bytes = w.into_inner().unwrap();
        let r = CaptureReader::new(&bytes[..]).unwrap();
        assert_eq!(r.format(), Format::Pcapng);
        let (got, err) = read_all(&bytes);
        assert!(err.is_none(), "{err:?}");
        let want: Vec<_> = frames()
            .into_iter()
            .enumerate()
            .map(|(i, (ts, d))| (i as u64 + 1, LinkType::ETHERNET, ts, d))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn big_endian_microsecond_pcap() {
        let mut b = Vec::new();
        b.extend_from_slice(&PCAP_MAGIC_US.to_be_bytes());
        b.extend_from_slice(&[
            0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0,
        ]);
        b.extend_from_slice(&[0, 0, 0, 10, 0, 0, 0, 7, 0, 0, 0, 2, 0, 0, 0, 60, 0xab, 0xcd]);
        let (got, err) = read_all(&b);
        assert!(err.is_none());
        assert_eq!(
            got,
            vec![(1, LinkType::NULL, Duration::new(10, 7000), vec![0xab, 0xcd])]
        );
    }

    #[test]
    fn truncated_record_reports_offset_and_frames_read() {
        let mut w = PcapWriter::new(Vec::new(), LinkType::RAW).unwrap();
        for (ts, d) in frames() {
            w.write_packet(ts, d.len() as u32, &d).unwrap();
        }
        let bytes = w.into_inner().unwrap();
        // Records: 24 + (16+3) + (16+6) + (16+9) ...; cut inside the third record's data.
        let third = 24 + 19 + 22;
        let (got, err) = read_all(&bytes[..third + 20]);
        assert_eq!(got.len(), 2);
        match err {
            Some(CaptureError::Truncated { offset, frames, .. }) => {
                assert_eq!((offset, frames), (third as u64, 2));
            }
            e => panic!("{e:?}"),
        }
        // Cut inside a record header.
        let (got, err) = read_all(&bytes[..third + 5]);
        assert_eq!(got.len(), 2);
        assert_eq!(err.unwrap().offset(), third as u64);
        // Cut inside the file header.
        assert!(matches!(
            read_all(&bytes[..10]).1,
            Some(CaptureError::Truncated { offset: 0, .. })
        ));
        assert!(matches!(
            read_all(&[]).1,
            Some(CaptureError::Truncated { offset: 0, .. })
        ));
    }

    #[test]
    fn corrupt_lengths() {
        let mut w = PcapWriter::new(Vec::new(), LinkType::RAW).unwrap();
        w.write_packet(Duration::ZERO, 3, &[1, 2, 3]).unwrap();
        w.write_packet(Duration::ZERO, 3, &[1, 2, 3]).unwrap();
        let mut bytes = w.into_inner().unwrap();
        bytes[24 + 19 + 8..24 + 19 + 12].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        let (got, err) = read_all(&bytes);
        assert_eq!(got.len(), 1);
        assert!(
            matches!(
                err,
                Some(CaptureError::Corrupt {
                    offset: 43,
                    frames: 1,
                    ..
                })
            ),
            "{err:?}"
        );

        let mut w = PcapNgWriter::new(Vec::new(), LinkType::RAW).unwrap();
        w.write_packet(Duration::ZERO, 3, &[1, 2, 3]).unwrap();
        let mut bytes = w.into_inner().unwrap();
        let n = bytes.len();
        bytes[n - 4] ^= 0xff;
        let (got, err) = read_all(&bytes);
        assert!(got.is_empty());
        assert!(
            matches!(err, Some(CaptureError::Corrupt { offset: 60, .. })),
            "{err:?}"
        );
        assert!(matches!(
            read_all(b"GIF89a").1,
            Some(CaptureError::NotACapture { .. })
        ));
    }

    #[test]
    fn pcapng_big_endian_sections_and_simple_packets() {
        // Section 1 (big-endian): IDB raw IP with microseconds, then an SPB.
        let mut b = Vec::new();
        b.extend_from_slice(&[0x0a, 0x0d, 0x0d, 0x0a, 0, 0, 0, 28, 0x1a, 0x2b, 0x3c, 0x4d]);
        b.extend_from_slice(&[
            0, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 28,
        ]);
        b.extend_from_slice(&[
            0, 0, 0, 1, 0, 0, 0, 20, 0, 101, 0, 0, 0, 0, 0, 0, 0, 0, 0, 20,
        ]);
        b.extend_from_slice(&[
            0, 0, 0, 3, 0, 0, 0, 20, 0, 0, 0, 3, 0x60, 1, 2, 0, 0, 0, 0, 20,
        ]);
        // An unknown block to skip.
        b.extend_from_slice(&[0, 0, 0, 0x99, 0, 0, 0, 12, 0, 0, 0, 12]);
        // Section 2 (little-endian): IDB Ethernet, tsresol 2^-10, EPB.
        b.extend_from_slice(&[0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a]);
        b.extend_from_slice(&[
            1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 28, 0, 0, 0,
        ]);
        b.extend_from_slice(&[1, 0, 0, 0, 28, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        b.extend_from_slice(&[9, 0, 1, 0, 0x8a, 0, 0, 0, 28, 0, 0, 0]);
        b.extend_from_slice(&[
            6, 0, 0, 0, 36, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x06, 0, 0,
        ]);
        b.extend_from_slice(&[2, 0, 0, 0, 2, 0, 0, 0, 0xee, 0xff, 0, 0, 36, 0, 0, 0]);
        let (got, err) = read_all(&b);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(
            got,
            vec![
                (1, LinkType::RAW, Duration::ZERO, vec![0x60, 1, 2]),
                (
                    2,
                    LinkType::ETHERNET,
                    Duration::new(1, 500_000_000),
                    vec![0xee, 0xff]
                ),
            ]
        );
    }

    #[test]
    fn timestamp_resolutions() {
        assert_eq!(
            TsRes::Decimal(6).duration(1_500_000),
            Duration::new(1, 500_000_000)
        );
        assert_eq!(
            TsRes::Decimal(9).duration(1_000_000_007),
            Duration::new(1, 7)
        );
        assert_eq!(
            TsRes::Decimal(12).duration(2_000_000_001_000),
            Duration::new(2, 1)
        );
        assert_eq!(TsRes::Binary(1).duration(3), Duration::new(1, 500_000_000));
    }

    fn sample(ng: bool) -> Vec<u8> {
        let frames = frames();
        if ng {
            let mut w = PcapNgWriter::new(Vec::new(), LinkType::ETHERNET).unwrap();
            for (ts, d) in &frames {
                w.write_packet(*ts, d.len() as u32, d).unwrap();
            }
            w.into_inner().unwrap()
        } else {
            let mut w = PcapWriter::new(Vec::new(), LinkType::ETHERNET).unwrap();
            for (ts, d) in &frames {
                w.write_packet(*ts, d.len() as u32, d).unwrap();
            }
            w.into_inner().unwrap()
        }
    }

    proptest::proptest! {
        #[test]
        fn damaged_files_never_panic(
            ng in proptest::bool::ANY,
            flips in proptest::collection::vec((0usize..200, proptest::num::u8::ANY), 0..6),
            cut in 0usize..220,
        ) {
            let mut b = sample(ng);
            for (at, x) in flips {
                let n = b.len();
                b[at % n] ^= x;
            }
            b.truncate(cut.min(b.len()));
            let len = b.len() as u64;
            let (got, err) = read_all(&b);
            proptest::prop_assert!(got.len() <= 5);
            if let Some(e) = err {
                proptest::prop_assert!(e.offset() <= len, "{e} beyond {len}");
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = read_all(&b);
        }
    }
}
