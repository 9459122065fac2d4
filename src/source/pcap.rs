//! Capture files: a reader for pcap (micro- and nanosecond, either byte order, and the
//! "modified" pcap of Alexey Kuznetsov's patched libpcap, magic `a1b2cd34`) and pcapng
//! (sections of either byte order, several interfaces, enhanced/simple/obsolete packet blocks,
//! `if_tsresol`), either of them gzip-compressed; and writers for both.
//!
//! What the reader accepts is what libpcap and Wireshark accept:
//! - a gzip-compressed file (found by its magic `1f 8b`, not its name) is decompressed as it is
//!   read ([`CaptureReader::open`]); nothing is decompressed whole into memory;
//! - pcap magics `a1b2c3d4` (microseconds), `a1b23c4d` (nanoseconds) and `a1b2cd34`
//!   (microseconds, 24-byte record headers: libpcap reads these three, in either byte order).
//!   Files of version 2.2 and older have the captured and original lengths swapped, and 2.3
//!   files may have (libpcap's rule: swapped when the captured length is the larger);
//! - a record whose timestamp fraction is out of range (a microsecond part of a million or
//!   more) is read like any other, its excess carried into the seconds, and counted
//!   ([`CaptureReader::bad_timestamps`]), as tcpdump and tshark read every such frame;
//! - a pcapng block whose total length is not a multiple of 4 (written by old ntar-based
//!   tools, which left the packet data's padding out of the length) is read as if its length
//!   were rounded up to a multiple of 4, as Wireshark does; its trailing length must still
//!   repeat the leading one.
//!
//! A file that is not a capture is refused with what it looks like (gzip, bzip2, zip, text,
//! a snoop or NetMon capture, ...), never only its first bytes.
//!
//! The reader lends each frame from one reused buffer and counts frames per link type
//! ([`CaptureReader::link_types`]; a pcapng file may have interfaces of several link types).
//! Frames are numbered from 1 in file order, like tshark's `frame.number`. A file that ends
//! inside a record, or whose record lengths make no sense, gives a [`CaptureError`] carrying
//! the byte offset of the bad record and the number of frames read before it, so a caller can
//! report what was read first. In a gzip-compressed file, offsets are in the decompressed data.
//!
//! Every layout is written once below, as named byte ranges under its diagram: the pcap file
//! header ([`pcap_header`]) and record header ([`pcap_record`]); the pcapng block frame
//! ([`ng_block`]), section header ([`ng_shb`]), interface description ([`ng_idb`]), enhanced,
//! simple and obsolete packet blocks ([`ng_epb`], [`ng_spb`], [`ng_opb`]) and options
//! ([`ng_option`]). Fields are in the byte order the file's magic says.

use crate::packet::{Frame, LinkType};
use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

/// The largest frame accepted, whatever the snapshot length says (16 MiB).
pub const MAX_FRAME: u32 = 16 << 20;
/// Frames up to this size are accepted even when the snapshot length says less (tshark's limit).
const STANDARD_MAX_FRAME: u32 = 262_144;

const PCAP_MAGIC_US: u32 = 0xa1b2_c3d4;
const PCAP_MAGIC_NS: u32 = 0xa1b2_3c4d;
/// Alexey Kuznetsov's patched libpcap ("modified pcap"): microseconds, 24-byte record headers.
const PCAP_MAGIC_MODIFIED: u32 = 0xa1b2_cd34;
/// Navtel's nanosecond variant; neither libpcap nor Wireshark reads it.
const PCAP_MAGIC_NAVTEL: u32 = 0xa12b_3c4d;
/// Another patched libpcap's magic (Fabio Mesquita); no reader knows its record format.
const PCAP_MAGIC_FMESQUITA: u32 = 0xa1b2_34cd;
/// The first two bytes of a gzip member (RFC 1952).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const NG_SHB: u32 = 0x0a0d_0d0a;
const NG_BOM: u32 = 0x1a2b_3c4d;
const NG_IDB: u32 = 1;
const NG_PB: u32 = 2;
const NG_SPB: u32 = 3;
const NG_EPB: u32 = 6;

/// The pcap file header (24 bytes).
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |        Magic: a1b2c3d4 (microseconds) | a1b23c4d (nanoseconds) |  0
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |        Major version (2)      |       Minor version (4)       |  4
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                      Time zone (unused)                       |  8
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                     Sigfigs (unused)                          | 12
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                        Snapshot length                        | 16
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |          Link type (low 16 bits; FCS bits above)              | 20
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
pub mod pcap_header {
    use std::ops::Range;
    pub const MAGIC: Range<usize> = 0..4;
    pub const VERSION_MAJOR: Range<usize> = 4..6;
    pub const VERSION_MINOR: Range<usize> = 6..8;
    pub const THISZONE: Range<usize> = 8..12;
    pub const SIGFIGS: Range<usize> = 12..16;
    pub const SNAPLEN: Range<usize> = 16..20;
    pub const LINKTYPE: Range<usize> = 20..24;
    pub const LEN: usize = LINKTYPE.end;
}

/// A pcap record header (16 bytes), followed by the captured bytes.
///
/// ```text
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                     Timestamp (seconds)                       |  0
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |          Timestamp (micro- or nanoseconds, by the magic)      |  4
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                    Captured packet length                     |  8
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                    Original packet length                     | 12
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// /                  Packet data (captured length)                / 16
/// ```
pub mod pcap_record {
    use std::ops::Range;
    pub const TS_SEC: Range<usize> = 0..4;
    pub const TS_FRAC: Range<usize> = 4..8;
    pub const CAPLEN: Range<usize> = 8..12;
    pub const ORIG_LEN: Range<usize> = 12..16;
    pub const LEN: usize = ORIG_LEN.end;
}

/// A "modified pcap" record header (magic `a1b2cd34`, 24 bytes): the pcap record header, then
/// what the patched libpcap added. The added fields are read past, not used.
///
/// ```text
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |   Timestamp, captured and original lengths: as in pcap_record |  0
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                        Interface index                        | 16
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |      Protocol (EtherType)     |  Packet type  |    Padding    | 20
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// /                  Packet data (captured length)                / 24
/// ```
pub mod pcap_modified_record {
    use std::ops::Range;
    pub const IFINDEX: Range<usize> = 16..20;
    pub const PROTOCOL: Range<usize> = 20..22;
    pub const PKT_TYPE: usize = 22;
    pub const PAD: usize = 23;
    pub const LEN: usize = PAD + 1;
}

/// The frame of every pcapng block. Block bodies below are described from the body's start.
///
/// ```text
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                          Block Type                           |  0
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                      Block Total Length                       |  4
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// /                          Block Body                           /  8
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                      Block Total Length                       |  total - 4
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
pub mod ng_block {
    use std::ops::Range;
    pub const TYPE: Range<usize> = 0..4;
    pub const TOTAL_LEN: Range<usize> = 4..8;
    pub const BODY: usize = TOTAL_LEN.end;
    /// The trailing copy of the total length.
    pub const TRAILER_LEN: usize = 4;
    /// The smallest block: type, length, empty body, length.
    pub const MIN_LEN: usize = BODY + TRAILER_LEN;
}

/// Section Header Block (type 0x0a0d0d0a); offsets from the start of the block, since the
/// byte-order magic must be read before the length can be.
///
/// ```text
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                   Block Type = 0x0A0D0D0A                     |  0
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                      Block Total Length                       |  4
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                      Byte-Order Magic 1a2b3c4d                |  8
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |          Major Version        |         Minor Version         | 12
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                 Section Length (64 bits, -1 unknown)          | 16
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// /                      Options (variable)                       / 24
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                      Block Total Length                       |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
pub mod ng_shb {
    use std::ops::Range;
    pub const BYTE_ORDER_MAGIC: Range<usize> = 8..12;
    pub const VERSION_MAJOR: Range<usize> = 12..14;
    pub const VERSION_MINOR: Range<usize> = 14..16;
    pub const SECTION_LEN: Range<usize> = 16..24;
    pub const OPTIONS: usize = SECTION_LEN.end;
    /// The block up to the byte-order magic: what must be read to know the byte order.
    pub const HEAD_LEN: usize = BYTE_ORDER_MAGIC.end;
    /// The smallest section header block (no options).
    pub const MIN_LEN: usize = OPTIONS + super::ng_block::TRAILER_LEN;
}

/// Interface Description Block body (type 1).
///
/// ```text
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |           LinkType            |           Reserved            |  0
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                            SnapLen                            |  4
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// /                      Options (if_tsresol)                     /  8
/// ```
pub mod ng_idb {
    use std::ops::Range;
    pub const LINKTYPE: Range<usize> = 0..2;
    pub const RESERVED: Range<usize> = 2..4;
    pub const SNAPLEN: Range<usize> = 4..8;
    pub const OPTIONS: usize = SNAPLEN.end;
}

/// Enhanced Packet Block body (type 6).
///
/// ```text
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                         Interface ID                          |  0
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                        Timestamp (High)                       |  4
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                        Timestamp (Low)                        |  8
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                    Captured Packet Length                     | 12
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                    Original Packet Length                     | 16
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// /              Packet Data (padded to 32 bits), options         / 20
/// ```
pub mod ng_epb {
    use std::ops::Range;
    pub const INTERFACE_ID: Range<usize> = 0..4;
    pub const TS_HIGH: Range<usize> = 4..8;
    pub const TS_LOW: Range<usize> = 8..12;
    pub const CAPLEN: Range<usize> = 12..16;
    pub const ORIG_LEN: Range<usize> = 16..20;
    pub const DATA: usize = ORIG_LEN.end;
}

/// Obsolete Packet Block body (type 2): an EPB with a 16-bit interface id and a drops count.
///
/// ```text
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |         Interface ID          |          Drops Count          |  0
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |          Timestamp (High), Timestamp (Low), Captured Len,     |  4
/// |          Original Len: as in the EPB                          |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// /                      Packet Data, options                     / 20
/// ```
pub mod ng_opb {
    use std::ops::Range;
    pub const INTERFACE_ID: Range<usize> = 0..2;
    pub const DROPS_COUNT: Range<usize> = 2..4;
    pub const TS_HIGH: Range<usize> = super::ng_epb::TS_HIGH;
    pub const TS_LOW: Range<usize> = super::ng_epb::TS_LOW;
    pub const CAPLEN: Range<usize> = super::ng_epb::CAPLEN;
    pub const ORIG_LEN: Range<usize> = super::ng_epb::ORIG_LEN;
    pub const DATA: usize = super::ng_epb::DATA;
}

/// Simple Packet Block body (type 3): interface 0, no timestamp.
///
/// ```text
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                    Original Packet Length                     |  0
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// /      Packet Data (min(original length, snaplen), padded)      /  4
/// ```
pub mod ng_spb {
    use std::ops::Range;
    pub const ORIG_LEN: Range<usize> = 0..4;
    pub const DATA: usize = ORIG_LEN.end;
}

/// One option of a pcapng block; the list ends with code 0 (`opt_endofopt`).
///
/// ```text
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |      Option Code              |         Option Length         |  0
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// /              Option Value (length, padded to 32 bits)         /  4
/// ```
pub mod ng_option {
    use std::ops::Range;
    pub const CODE: Range<usize> = 0..2;
    pub const LEN: Range<usize> = 2..4;
    pub const VALUE: usize = LEN.end;
    /// `opt_endofopt`.
    pub const END: u16 = 0;
    /// `if_tsresol` of an interface description block: one byte, 10^-n or 2^-n (top bit) s.
    pub const IF_TSRESOL: u16 = 9;
}

/// What went wrong reading a capture; every variant says where.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("reading the capture at byte {offset}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error(
        "not a pcap or pcapng file: {}looks like {looks_like} (it starts with {magic:02x?}); flowpol reads pcap and pcapng, gzip-compressed or not",
        if *.gzip { "it is gzip-compressed, but what is inside " } else { "it " }
    )]
    NotACapture {
        magic: [u8; 4],
        /// What the file seems to be instead, in words ("a bzip2-compressed file", "text").
        looks_like: &'static str,
        /// The file is gzip-compressed and this is what was inside.
        gzip: bool,
    },
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

/// What a file that is not a capture looks like, from its first four bytes.
pub fn looks_like(magic: [u8; 4]) -> &'static str {
    let le = u32::from_le_bytes(magic);
    let be = u32::from_be_bytes(magic);
    match magic {
        [0x1f, 0x8b, ..] => "gzip-compressed data",
        [b'B', b'Z', b'h', _] => "a bzip2-compressed file (bunzip2 it first)",
        [0xfd, b'7', b'z', b'X'] => "an xz-compressed file (unxz it first)",
        [0x28, 0xb5, 0x2f, 0xfd] => "a zstd-compressed file (unzstd it first)",
        [b'P', b'K', 3, 4] => "a zip archive",
        [b'7', b'z', 0xbc, 0xaf] => "a 7-zip archive",
        [b's', b'n', b'o', b'o'] => "a Sun snoop capture (editcap -F pcap converts it)",
        [b'G', b'M', b'B', b'U'] | [b'R', b'T', b'S', b'S'] => {
            "a Microsoft Network Monitor capture (editcap -F pcap converts it)"
        }
        [0x7f, b'E', b'L', b'F'] => "an ELF executable",
        [b'%', b'P', b'D', b'F'] => "a PDF document",
        [0, 0, 0, 0] => "zeros (an empty or erased file)",
        _ if le == PCAP_MAGIC_NAVTEL || be == PCAP_MAGIC_NAVTEL => {
            "a Navtel pcap variant (magic a12b3c4d), which libpcap does not read"
        }
        _ if le == PCAP_MAGIC_FMESQUITA || be == PCAP_MAGIC_FMESQUITA => {
            "a patched-libpcap pcap variant (magic a1b234cd), which libpcap does not read"
        }
        [b'<', ..] => "XML or HTML text",
        [b'{', ..] | [b'[', ..] => "JSON text",
        _ if magic
            .iter()
            .all(|&b| b.is_ascii_graphic() || b.is_ascii_whitespace()) =>
        {
            "text"
        }
        _ => "none of the formats flowpol knows",
    }
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

    /// Marks a "not a capture" error as found inside a gzip-compressed file.
    fn inside_gzip(self) -> Self {
        match self {
            CaptureError::NotACapture {
                magic, looks_like, ..
            } => CaptureError::NotACapture {
                magic,
                looks_like,
                gzip: true,
            },
            e => e,
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

/// How a pcap file's record lengths are stored (libpcap's rule, by the file's version).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lengths {
    /// Captured, then original (version 2.4 and later).
    InOrder,
    /// Original, then captured (version 2.2 and older).
    Swapped,
    /// Version 2.3: swapped when the captured length is the larger.
    MaybeSwapped,
}

#[derive(Debug)]
enum Kind {
    Pcap {
        big: bool,
        nanos: bool,
        link: LinkType,
        max: u32,
        /// The record header's length: 16, or 24 for the modified pcap.
        record_len: usize,
        lengths: Lengths,
    },
    Pcapng {
        big: bool,
        ifaces: Vec<Iface>,
    },
}

/// Frames of one link type in a capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkCount {
    pub link: LinkType,
    pub frames: u64,
    /// Bytes on the wire (original lengths).
    pub bytes: u64,
}

/// A pcap or pcapng reader that lends one frame at a time from a reused buffer.
#[derive(Debug)]
pub struct CaptureReader<R> {
    r: R,
    buf: Vec<u8>,
    offset: u64,
    frames: u64,
    kind: Kind,
    /// Frames per link type, in order of first appearance.
    links: Vec<LinkCount>,
    /// Index into `links` of the last frame's link type.
    last_link: usize,
    bad_timestamps: u64,
    first_bad_timestamp: Option<u64>,
    gzip: bool,
}

/// What [`CaptureReader::open`] reads from: the file, or the file decompressed as it is read.
pub enum Input {
    Plain(BufReader<File>),
    Gzip(Box<BufReader<MultiGzDecoder<BufReader<File>>>>),
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Input::Plain(r) => r.read(buf),
            // Say where the error came from: the offsets are in the decompressed data.
            Input::Gzip(r) => r
                .read(buf)
                .map_err(|e| io::Error::new(e.kind(), format!("gzip-compressed file: {e}"))),
        }
    }
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Input::Plain(_) => "Input::Plain",
            Input::Gzip(_) => "Input::Gzip",
        })
    }
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

/// The u16 at `field` of `b` in the file's byte order; the caller has checked `b` holds it.
fn u16_at(b: &[u8], field: Range<usize>, big: bool) -> u16 {
    let a = [b[field.start], b[field.start + 1]];
    if big {
        u16::from_be_bytes(a)
    } else {
        u16::from_le_bytes(a)
    }
}

/// The u32 at `field` of `b` in the file's byte order; the caller has checked `b` holds it.
fn u32_at(b: &[u8], field: Range<usize>, big: bool) -> u32 {
    let at = field.start;
    let a = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    if big {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

impl CaptureReader<Input> {
    /// Opens a capture file, gzip-compressed or not: a file that starts with gzip's magic is
    /// decompressed as it is read (several concatenated gzip members are one stream, as gzip
    /// itself reads them).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CaptureError> {
        let io = |source| CaptureError::Io { offset: 0, source };
        let mut file = BufReader::with_capacity(1 << 16, File::open(path).map_err(io)?);
        let gzip = file.fill_buf().map_err(io)?.starts_with(&GZIP_MAGIC);
        if gzip {
            let inner = BufReader::with_capacity(1 << 16, MultiGzDecoder::new(file));
            let mut me =
                Self::new(Input::Gzip(Box::new(inner))).map_err(CaptureError::inside_gzip)?;
            me.gzip = true;
            Ok(me)
        } else {
            Self::new(Input::Plain(file))
        }
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
                record_len: pcap_record::LEN,
                lengths: Lengths::InOrder,
            },
            // Room for the link types of any usual capture, so counting them allocates nothing
            // while frames are read.
            links: Vec::with_capacity(8),
            last_link: 0,
            bad_timestamps: 0,
            first_bad_timestamp: None,
            gzip: false,
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
            me.read_shb(0, &magic)?;
            return Ok(me);
        }
        let (magic_value, big) = match (le, be) {
            (PCAP_MAGIC_US | PCAP_MAGIC_NS | PCAP_MAGIC_MODIFIED, _) => (le, false),
            (_, PCAP_MAGIC_US | PCAP_MAGIC_NS | PCAP_MAGIC_MODIFIED) => (be, true),
            _ => {
                return Err(CaptureError::NotACapture {
                    magic,
                    looks_like: looks_like(magic),
                    gzip: false,
                });
            }
        };
        let nanos = magic_value == PCAP_MAGIC_NS;
        let record_len = if magic_value == PCAP_MAGIC_MODIFIED {
            pcap_modified_record::LEN
        } else {
            pcap_record::LEN
        };
        let mut h = [0u8; pcap_header::LEN];
        h[pcap_header::MAGIC].copy_from_slice(&magic);
        me.fill_exact(&mut h[pcap_header::MAGIC.end..], 0, "the file header")?;
        let snaplen = u32_at(&h, pcap_header::SNAPLEN, big);
        let link = LinkType(u32_at(&h, pcap_header::LINKTYPE, big) & 0xffff);
        let max = snaplen.clamp(STANDARD_MAX_FRAME, MAX_FRAME);
        let version = (
            u16_at(&h, pcap_header::VERSION_MAJOR, big),
            u16_at(&h, pcap_header::VERSION_MINOR, big),
        );
        let lengths = match version {
            (2, 0..=2) => Lengths::Swapped,
            (2, 3) => Lengths::MaybeSwapped,
            _ => Lengths::InOrder,
        };
        me.kind = Kind::Pcap {
            big,
            nanos,
            link,
            max,
            record_len,
            lengths,
        };
        me.offset = pcap_header::LEN as u64;
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

    /// Frames per link type so far, in order of first appearance.
    pub fn link_types(&self) -> &[LinkCount] {
        &self.links
    }

    /// Records whose timestamp fraction was out of range (read anyway, see the module docs).
    pub fn bad_timestamps(&self) -> u64 {
        self.bad_timestamps
    }

    /// The number of the first frame with a bad timestamp.
    pub fn first_bad_timestamp(&self) -> Option<u64> {
        self.first_bad_timestamp
    }

    /// The file is gzip-compressed (and is being decompressed as it is read).
    pub fn gzip(&self) -> bool {
        self.gzip
    }

    /// Counts one more frame, of `link` and `orig_len` bytes on the wire; returns its number.
    #[inline]
    fn count_frame(&mut self, link: LinkType, orig_len: u32) -> u64 {
        self.frames += 1;
        let i = match self.links.get(self.last_link) {
            Some(c) if c.link == link => self.last_link,
            _ => match self.links.iter().position(|c| c.link == link) {
                Some(i) => i,
                None => {
                    self.links.push(LinkCount {
                        link,
                        frames: 0,
                        bytes: 0,
                    });
                    self.links.len() - 1
                }
            },
        };
        self.last_link = i;
        self.links[i].frames += 1;
        self.links[i].bytes += u64::from(orig_len);
        self.frames
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

    /// Reads the rest of a section header block that starts at `at`, of which `got` (the type,
    /// perhaps the length) was read already, and starts a new section: its own byte order, its
    /// own interfaces.
    fn read_shb(&mut self, at: u64, got: &[u8]) -> Result<(), CaptureError> {
        let mut h = [0u8; ng_shb::HEAD_LEN];
        h[..got.len()].copy_from_slice(got);
        self.fill_exact(&mut h[got.len()..], at, "a section header block")?;
        let bom = &h[ng_shb::BYTE_ORDER_MAGIC];
        let big = match (
            u32::from_le_bytes([bom[0], bom[1], bom[2], bom[3]]),
            u32::from_be_bytes([bom[0], bom[1], bom[2], bom[3]]),
        ) {
            (NG_BOM, _) => false,
            (_, NG_BOM) => true,
            _ => return Err(self.corrupt(at, "section header with an unknown byte-order magic")),
        };
        let total = u32_at(&h, ng_block::TOTAL_LEN, big);
        if total < ng_shb::MIN_LEN as u32 || total > MAX_FRAME {
            return Err(self.corrupt(at, "section header block length is impossible"));
        }
        // Rounded up to a multiple of 4 like any other block (see `read_block_body`).
        let total_on_disk = total.next_multiple_of(4);
        let rest = total_on_disk as usize - ng_shb::HEAD_LEN;
        self.fill_buf(rest, at, "a section header block")?;
        let trailer = rest - ng_block::TRAILER_LEN..rest;
        if u32_at(&self.buf, trailer, big) != total {
            return Err(self.corrupt(at, "section header block lengths disagree"));
        }
        self.kind = Kind::Pcapng {
            big,
            ifaces: Vec::new(),
        };
        self.offset = at + u64::from(total_on_disk);
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
                record_len,
                lengths,
            } => self.next_pcap(big, nanos, link, max, record_len, lengths),
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
        record_len: usize,
        lengths: Lengths,
    ) -> Result<Option<Frame<'_>>, CaptureError> {
        let at = self.offset;
        let mut h = [0u8; pcap_modified_record::LEN];
        let h = &mut h[..record_len];
        match read_n(&mut self.r, h) {
            Err(source) => return Err(CaptureError::Io { offset: at, source }),
            Ok(Some(0)) => return Ok(None),
            Ok(Some(_)) => return Err(self.truncated(at, "a record header")),
            Ok(None) => {}
        }
        let secs = u32_at(h, pcap_record::TS_SEC, big);
        let frac = u32_at(h, pcap_record::TS_FRAC, big);
        let mut caplen = u32_at(h, pcap_record::CAPLEN, big);
        let mut orig_len = u32_at(h, pcap_record::ORIG_LEN, big);
        if lengths == Lengths::Swapped || (lengths == Lengths::MaybeSwapped && caplen > orig_len) {
            std::mem::swap(&mut caplen, &mut orig_len);
        }
        if caplen > max {
            return Err(self.corrupt(at, "record length is larger than any frame"));
        }
        let frac_ns = if nanos {
            u64::from(frac)
        } else {
            u64::from(frac) * 1000
        };
        self.fill_buf(caplen as usize, at, "a record's data")?;
        self.offset = at + record_len as u64 + u64::from(caplen);
        let number = self.count_frame(link, orig_len.max(caplen));
        if frac_ns >= 1_000_000_000 {
            // Read anyway, as tcpdump and tshark do: the excess is carried into the seconds.
            self.bad_timestamps += 1;
            self.first_bad_timestamp.get_or_insert(number);
        }
        Ok(Some(Frame {
            number,
            link,
            ts: Duration::from_secs(u64::from(secs)) + Duration::from_nanos(frac_ns),
            orig_len: orig_len.max(caplen),
            data: &self.buf[..caplen as usize],
        }))
    }

    /// The next frame of a pcapng file: block headers are read until a packet block, section
    /// headers and interface descriptions update the state on the way, and blocks of other
    /// types are skipped.
    fn next_pcapng(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        loop {
            let at = self.offset;
            let Some(head) = self.read_block_head(at)? else {
                return Ok(None);
            };
            if u32::from_le_bytes([head[0], head[1], head[2], head[3]]) == NG_SHB {
                self.read_shb(at, &head)?;
                continue;
            }
            let big = self.ng_big_endian();
            let ty = u32_at(&head, ng_block::TYPE, big);
            let total = u32_at(&head, ng_block::TOTAL_LEN, big);
            let body = self.read_block_body(at, total, big)?;
            let packet = match ty {
                NG_IDB => {
                    self.describe_interface(at, body, big)?;
                    continue;
                }
                NG_EPB | NG_PB => self.packet_block(at, ty, body, big)?,
                NG_SPB => self.simple_packet_block(at, body, big)?,
                _ => continue,
            };
            return self.lend_packet(at, packet, body);
        }
    }

    /// Phase 1: the type and total length of the block at `at`; `None` at a clean end of file.
    fn read_block_head(&mut self, at: u64) -> Result<Option<[u8; ng_block::BODY]>, CaptureError> {
        let mut h = [0u8; ng_block::BODY];
        match read_n(&mut self.r, &mut h) {
            Err(source) => Err(CaptureError::Io { offset: at, source }),
            Ok(Some(0)) => Ok(None),
            Ok(Some(_)) => Err(self.truncated(at, "a block header")),
            Ok(None) => Ok(Some(h)),
        }
    }

    /// The byte order of the current section.
    fn ng_big_endian(&self) -> bool {
        match self.kind {
            Kind::Pcapng { big, .. } => big,
            Kind::Pcap { .. } => unreachable!("pcapng blocks are read only from a pcapng file"),
        }
    }

    /// Phase 2: reads the body and the trailing length of a block of `total` bytes into the
    /// buffer, checks both lengths, and moves past the block. Returns the body's length.
    fn read_block_body(&mut self, at: u64, total: u32, big: bool) -> Result<usize, CaptureError> {
        if total < ng_block::MIN_LEN as u32 || total > MAX_FRAME {
            return Err(self.corrupt(at, "block length is impossible"));
        }
        // Old ntar-written files leave the packet data's padding out of the length: the block
        // on disk is the length rounded up to a multiple of 4 (Wireshark reads it so).
        let on_disk = total.next_multiple_of(4);
        let body = on_disk as usize - ng_block::MIN_LEN;
        self.fill_buf(body + ng_block::TRAILER_LEN, at, "a block")?;
        if u32_at(&self.buf, body..body + ng_block::TRAILER_LEN, big) != total {
            return Err(self.corrupt(at, "block lengths disagree"));
        }
        self.offset = at + u64::from(on_disk);
        Ok(body)
    }

    /// Phase 3, interface description block: one more interface for this section.
    fn describe_interface(&mut self, at: u64, body: usize, big: bool) -> Result<(), CaptureError> {
        if body < ng_idb::OPTIONS {
            return Err(self.corrupt(at, "interface description block is too short"));
        }
        let b = &self.buf[..body];
        let iface = Iface {
            link: LinkType(u32::from(u16_at(b, ng_idb::LINKTYPE, big))),
            snaplen: u32_at(b, ng_idb::SNAPLEN, big),
            tsres: parse_tsresol(&b[ng_idb::OPTIONS..], big),
        };
        if let Kind::Pcapng { ifaces, .. } = &mut self.kind {
            ifaces.push(iface);
        }
        Ok(())
    }

    /// Phase 3, enhanced (`NG_EPB`) or obsolete (`NG_PB`) packet block.
    fn packet_block(
        &self,
        at: u64,
        ty: u32,
        body: usize,
        big: bool,
    ) -> Result<NgPacket, CaptureError> {
        if body < ng_epb::DATA {
            return Err(self.corrupt(at, "packet block is too short"));
        }
        let b = &self.buf[..body];
        let iface = if ty == NG_EPB {
            u32_at(b, ng_epb::INTERFACE_ID, big) as usize
        } else {
            usize::from(u16_at(b, ng_opb::INTERFACE_ID, big))
        };
        let ts_high = u64::from(u32_at(b, ng_epb::TS_HIGH, big));
        Ok(NgPacket {
            iface,
            ts_units: (ts_high << 32) | u64::from(u32_at(b, ng_epb::TS_LOW, big)),
            caplen: u32_at(b, ng_epb::CAPLEN, big),
            orig_len: u32_at(b, ng_epb::ORIG_LEN, big),
            data_at: ng_epb::DATA,
        })
    }

    /// Phase 3, simple packet block: interface 0, no timestamp, the captured length implied
    /// by the original length, the snapshot length and the block.
    fn simple_packet_block(
        &self,
        at: u64,
        body: usize,
        big: bool,
    ) -> Result<NgPacket, CaptureError> {
        if body < ng_spb::DATA {
            return Err(self.corrupt(at, "simple packet block is too short"));
        }
        let orig = u32_at(&self.buf, ng_spb::ORIG_LEN, big);
        let snap = match &self.kind {
            Kind::Pcapng { ifaces, .. } => ifaces.first().map_or(u32::MAX, |i| i.snaplen),
            Kind::Pcap { .. } => u32::MAX,
        };
        let snap = if snap == 0 { u32::MAX } else { snap };
        Ok(NgPacket {
            iface: 0,
            ts_units: 0,
            caplen: orig.min(snap).min((body - ng_spb::DATA) as u32),
            orig_len: orig,
            data_at: ng_spb::DATA,
        })
    }

    /// Phase 4: checks the packet against its interface and its block, and lends it.
    fn lend_packet(
        &mut self,
        at: u64,
        p: NgPacket,
        body: usize,
    ) -> Result<Option<Frame<'_>>, CaptureError> {
        let iface = match &self.kind {
            Kind::Pcapng { ifaces, .. } => ifaces.get(p.iface).copied(),
            Kind::Pcap { .. } => None,
        };
        let Some(Iface { link, tsres, .. }) = iface else {
            return Err(self.corrupt(at, "packet block names an interface that was not described"));
        };
        let end = p.data_at + p.caplen as usize;
        if end > body {
            return Err(self.corrupt(at, "packet block's captured length runs past the block"));
        }
        let number = self.count_frame(link, p.orig_len.max(p.caplen));
        Ok(Some(Frame {
            number,
            link,
            ts: tsres.duration(p.ts_units),
            orig_len: p.orig_len.max(p.caplen),
            data: &self.buf[p.data_at..end],
        }))
    }
}

/// A packet block's fields, before they are checked against its interface and its block.
#[derive(Clone, Copy, Debug)]
struct NgPacket {
    /// Index of the interface description in the section.
    iface: usize,
    /// Timestamp in the interface's units.
    ts_units: u64,
    caplen: u32,
    orig_len: u32,
    /// Where the packet data starts in the block body.
    data_at: usize,
}

/// The `if_tsresol` option (code 9) of an interface description block, default microseconds.
fn parse_tsresol(mut opts: &[u8], big: bool) -> TsRes {
    while opts.len() >= ng_option::VALUE {
        let code = u16_at(opts, ng_option::CODE, big);
        let len = usize::from(u16_at(opts, ng_option::LEN, big));
        let padded = len.div_ceil(4) * 4;
        if code == ng_option::END || opts.len() < ng_option::VALUE + padded {
            break;
        }
        if code == ng_option::IF_TSRESOL && len == 1 {
            let v = opts[ng_option::VALUE];
            return if v & 0x80 != 0 {
                TsRes::Binary(u32::from(v & 0x7f))
            } else {
                TsRes::Decimal(u32::from(v))
            };
        }
        opts = &opts[ng_option::VALUE + padded..];
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
        let mut h = [0u8; pcap_record::LEN];
        h[pcap_record::TS_SEC].copy_from_slice(&(ts.as_secs() as u32).to_le_bytes());
        h[pcap_record::TS_FRAC].copy_from_slice(&ts.subsec_nanos().to_le_bytes());
        h[pcap_record::CAPLEN].copy_from_slice(&caplen.to_le_bytes());
        h[pcap_record::ORIG_LEN].copy_from_slice(&orig_len.max(caplen).to_le_bytes());
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
        const HEAD: usize = ng_block::BODY + ng_epb::DATA;
        let total = (HEAD + ng_block::TRAILER_LEN) as u32 + padded;
        let units = ts.as_nanos() as u64;
        let mut h = [0u8; HEAD];
        h[ng_block::TYPE].copy_from_slice(&NG_EPB.to_le_bytes());
        h[ng_block::TOTAL_LEN].copy_from_slice(&total.to_le_bytes());
        let body = &mut h[ng_block::BODY..];
        body[ng_epb::INTERFACE_ID].copy_from_slice(&0u32.to_le_bytes());
        body[ng_epb::TS_HIGH].copy_from_slice(&((units >> 32) as u32).to_le_bytes());
        body[ng_epb::TS_LOW].copy_from_slice(&(units as u32).to_le_bytes());
        body[ng_epb::CAPLEN].copy_from_slice(&caplen.to_le_bytes());
        body[ng_epb::ORIG_LEN].copy_from_slice(&orig_len.max(caplen).to_le_bytes());
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

    /// A little-endian pcap of `magic` and `version`, each record `(caplen, origlen, data)`
    /// written with `extra` zero bytes after the 16-byte record header.
    fn pcap_with(
        magic: u32,
        version: (u16, u16),
        extra: usize,
        recs: &[(u32, u32, &[u8])],
    ) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&magic.to_le_bytes());
        b.extend_from_slice(&version.0.to_le_bytes());
        b.extend_from_slice(&version.1.to_le_bytes());
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&65535u32.to_le_bytes());
        b.extend_from_slice(&101u32.to_le_bytes());
        for (i, (cap, orig, d)) in recs.iter().enumerate() {
            b.extend_from_slice(&(i as u32).to_le_bytes());
            b.extend_from_slice(&0u32.to_le_bytes());
            b.extend_from_slice(&cap.to_le_bytes());
            b.extend_from_slice(&orig.to_le_bytes());
            b.resize(b.len() + extra, 0);
            b.extend_from_slice(d);
        }
        b
    }

    #[test]
    fn modified_pcap_records_have_24_byte_headers() {
        let b = pcap_with(
            PCAP_MAGIC_MODIFIED,
            (2, 4),
            8,
            &[(2, 60, &[0x60, 1]), (3, 3, &[0x60, 2, 3])],
        );
        let (got, err) = read_all(&b);
        assert!(err.is_none(), "{err:?}");
        let data: Vec<_> = got.iter().map(|g| g.3.clone()).collect();
        assert_eq!(data, vec![vec![0x60, 1], vec![0x60, 2, 3]]);
    }

    #[test]
    fn old_versions_have_their_lengths_swapped_as_libpcap_reads_them() {
        // 2.2: always (original, captured); 2.3: swapped only when "captured" is the larger.
        let b = pcap_with(PCAP_MAGIC_US, (2, 2), 0, &[(60, 2, &[7, 8])]);
        let mut r = CaptureReader::new(&b[..]).unwrap();
        let f = r.next_frame().unwrap().unwrap();
        assert_eq!((f.data, f.orig_len), (&[7u8, 8][..], 60));
        let b = pcap_with(
            PCAP_MAGIC_US,
            (2, 3),
            0,
            &[(60, 2, &[7, 8]), (2, 60, &[9, 10])],
        );
        let (got, err) = read_all(&b);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].3, vec![9, 10]);
    }

    #[test]
    fn an_out_of_range_timestamp_is_counted_and_carried_into_the_seconds() {
        let mut b = pcap_with(PCAP_MAGIC_US, (2, 4), 0, &[(1, 1, &[1]), (1, 1, &[2])]);
        // Second record: 1.5 million microseconds.
        let at = pcap_header::LEN + pcap_record::LEN + 1 + 4;
        b[at..at + 4].copy_from_slice(&1_500_000u32.to_le_bytes());
        let mut r = CaptureReader::new(&b[..]).unwrap();
        let mut ts = Vec::new();
        r.for_each(|f| ts.push(f.ts)).unwrap();
        assert_eq!(ts, vec![Duration::ZERO, Duration::new(2, 500_000_000)]);
        assert_eq!((r.bad_timestamps(), r.first_bad_timestamp()), (1, Some(2)));
    }

    #[test]
    fn frames_are_counted_per_link_type_across_interfaces() {
        let mut b = Vec::new();
        b.extend_from_slice(&[0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a]);
        b.extend_from_slice(&[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        b.extend_from_slice(&[28, 0, 0, 0]);
        for link in [1u8, 127, 1] {
            b.extend_from_slice(&[
                1, 0, 0, 0, 20, 0, 0, 0, link, 0, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0,
            ]);
        }
        for iface in [0u8, 1, 2, 1, 1] {
            b.extend_from_slice(&[
                6, 0, 0, 0, 36, 0, 0, 0, iface, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ]);
            b.extend_from_slice(&[4, 0, 0, 0, 4, 0, 0, 0, 1, 2, 3, 4, 36, 0, 0, 0]);
        }
        let mut r = CaptureReader::new(&b[..]).unwrap();
        assert_eq!(r.for_each(|_| {}).unwrap(), 5);
        let counts: Vec<_> = r
            .link_types()
            .iter()
            .map(|c| (c.link.0, c.frames))
            .collect();
        assert_eq!(counts, vec![(1, 2), (127, 3)]);
    }

    #[test]
    fn a_file_that_is_not_a_capture_is_named() {
        for (magic, says) in [
            (*b"BZh9", "bzip2"),
            ([0x1f, 0x8b, 8, 0], "gzip"),
            (*b"PK\x03\x04", "zip"),
            (*b"GMBU", "Network Monitor"),
            (*b"abc ", "text"),
            ([0x4d, 0x3c, 0x2b, 0xa1], "Navtel"),
            ([0xcd, 0x34, 0xb2, 0xa1], "patched-libpcap"),
            ([0x01, 0x02, 0x03, 0x04], "none of the formats"),
        ] {
            let e = CaptureReader::new(&[&magic[..], &[0u8; 40][..]].concat()[..]).unwrap_err();
            let m = e.to_string();
            assert!(
                m.contains(says) && m.starts_with("not a pcap or pcapng file"),
                "{m}"
            );
        }
    }

    #[test]
    fn a_gzip_compressed_file_is_read_and_a_damaged_one_stops_with_an_error() {
        use std::io::Write as _;
        let plain = sample(true);
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&plain).unwrap();
        let z = z.finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, &z).unwrap();
        let mut r = CaptureReader::open(&p).unwrap();
        assert!(r.gzip());
        assert_eq!(r.for_each(|_| {}).unwrap(), 5);
        // Cut short: the frames before the cut, then an error that says gzip.
        std::fs::write(&p, &z[..z.len() - 30]).unwrap();
        let mut r = CaptureReader::open(&p).unwrap();
        let e = r.for_each(|_| {}).unwrap_err();
        let chain = format!(
            "{e}: {}",
            std::error::Error::source(&e).map_or(String::new(), |s| s.to_string())
        );
        assert!(
            chain.contains("gzip") || matches!(e, CaptureError::Truncated { .. }),
            "{chain}"
        );
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
