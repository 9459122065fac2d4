//! `replay`: puts the frames of a pcap or pcapng capture on an interface through an AF_PACKET
//! SOCK_RAW socket, at the captured timing, a multiple of it, a fixed rate or as fast as possible,
//! one or more times. What a normal socket cannot send (extension headers, fragments, ESP, any
//! label) goes out byte for byte.
//!
//! The capture is read with the shared reader [`crate::source::pcap`] (pcap and pcapng, several
//! interfaces). Every frame is converted to Ethernet once, into one buffer, before the first send,
//! so the send loop does not allocate. Link types:
//! - Ethernet (1): sent as captured;
//! - raw IP (101, 12, 14, 228 IPv4, 229 IPv6), BSD null/loopback (0, 108), Linux cooked SLL (113)
//!   and SLL2 (276): an Ethernet header is synthesized (destination `--dst-mac`, default
//!   broadcast; source the capture's SLL address when it has one, else the interface's MAC;
//!   EtherType from the IP version or the SLL protocol field);
//! - anything else: skipped and counted by reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::errors::SendError;
use crate::packet::LinkType;
use crate::source::pcap::{CaptureError, CaptureReader};
use crate::sys;

/// When frames go out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Timing {
    /// The captured gaps divided by this factor (1.0 = as captured, 2.0 = twice as fast).
    Captured {
        /// Speed-up factor, > 0.
        speed: f64,
    },
    /// A fixed number of frames per second.
    Rate(f64),
    /// Back to back.
    Fast,
}

/// Everything `replay` needs.
#[derive(Clone, Debug)]
pub struct ReplayConfig {
    /// The interface to send on.
    pub iface: String,
    /// The capture.
    pub file: PathBuf,
    /// Timing.
    pub timing: Timing,
    /// Passes over the capture (>= 1).
    pub loops: u32,
    /// Destination MAC of synthesized Ethernet headers (default broadcast).
    pub dst_mac: Option<[u8; 6]>,
    /// Stop early (with a report of what was sent) when this signal arrives.
    pub stop: Option<crate::sys::signals::StopSignal>,
}

/// What `replay` did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ReplayReport {
    /// The capture file.
    pub file: String,
    /// The interface.
    pub iface: String,
    /// Link types found in the capture, by name.
    pub link_types: Vec<String>,
    /// Frames in the capture.
    pub frames_in_file: u64,
    /// Frames ready to send per pass (after skipping).
    pub frames_per_loop: u64,
    /// Frames handed to the kernel.
    pub frames_sent: u64,
    /// Bytes handed to the kernel (Ethernet header included).
    pub bytes_sent: u64,
    /// Frames skipped while reading, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Frames the kernel refused, by reason.
    pub send_errors: BTreeMap<String, u64>,
    /// Frames captured shorter than they were on the wire (sent as captured).
    pub truncated: u64,
    /// Passes made.
    pub loops: u32,
    /// Seconds from the first to the last frame.
    pub elapsed_s: f64,
    /// Achieved frames per second.
    pub rate_pps: f64,
    /// The signal that stopped the replay early (`SIGINT`, `SIGTERM`), if one did.
    pub stopped_by: Option<&'static str>,
}

/// Frames ready to send: Ethernet bytes in one buffer, with capture timestamps.
#[derive(Debug, Default)]
pub struct Prepared {
    data: Vec<u8>,
    frames: Vec<(Duration, usize, usize)>,
    /// Frames read.
    pub frames_in_file: u64,
    /// Skipped frames by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Link types seen, in order of appearance.
    pub link_types: Vec<LinkType>,
    /// Frames captured shorter than on the wire.
    pub truncated: u64,
}

impl Prepared {
    /// Number of frames ready to send.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// True when nothing can be sent.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Frame `i`: capture timestamp and Ethernet bytes.
    pub fn frame(&self, i: usize) -> (Duration, &[u8]) {
        let (ts, start, len) = self.frames[i];
        (ts, &self.data[start..start + len])
    }

    fn skip(&mut self, reason: String) {
        *self.skipped.entry(reason).or_default() += 1;
    }

    fn note_link(&mut self, link: LinkType) {
        if !self.link_types.contains(&link) {
            self.link_types.push(link);
        }
    }

    /// The names of the link types seen, for reports.
    pub fn link_type_names(&self) -> Vec<String> {
        self.link_types
            .iter()
            .map(|l| match l.name() {
                "other" => format!("link type {}", l.0),
                n => n.to_string(),
            })
            .collect()
    }

    /// Converts one captured frame of link type `link` to Ethernet and stores it.
    fn push(&mut self, link: LinkType, ts: Duration, data: &[u8], orig_len: u32, macs: &Macs) {
        self.frames_in_file += 1;
        self.note_link(link);
        if (data.len() as u64) < u64::from(orig_len) {
            self.truncated += 1;
        }
        let start = self.data.len();
        match to_ethernet(link, data, macs, &mut self.data) {
            Ok(()) => self.frames.push((ts, start, self.data.len() - start)),
            Err(reason) => {
                self.data.truncate(start);
                self.skip(reason);
            }
        }
    }
}

/// Source and destination MACs for synthesized headers.
#[derive(Clone, Copy, Debug)]
pub struct Macs {
    /// Source: the interface's address.
    pub src: [u8; 6],
    /// Destination.
    pub dst: [u8; 6],
}

const ETH_IPV4: [u8; 2] = [0x08, 0x00];
const ETH_IPV6: [u8; 2] = [0x86, 0xdd];

fn ethertype_of_ip(packet: &[u8]) -> Result<[u8; 2], String> {
    match packet.first().map(|b| b >> 4) {
        Some(4) => Ok(ETH_IPV4),
        Some(6) => Ok(ETH_IPV6),
        Some(v) => Err(format!("raw frame with IP version {v}")),
        None => Err("empty frame".into()),
    }
}

fn emit(out: &mut Vec<u8>, dst: [u8; 6], src: [u8; 6], ethertype: [u8; 2], payload: &[u8]) {
    out.extend_from_slice(&dst);
    out.extend_from_slice(&src);
    out.extend_from_slice(&ethertype);
    out.extend_from_slice(payload);
}

/// Appends the Ethernet form of `data` (link type `link`) to `out`, or says why it cannot.
pub fn to_ethernet(
    link: LinkType,
    data: &[u8],
    macs: &Macs,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    match link {
        LinkType::ETHERNET => {
            if data.len() < 14 {
                return Err("Ethernet frame shorter than its header".into());
            }
            out.extend_from_slice(data);
        }
        LinkType::RAW
        | LinkType::RAW_BSD12
        | LinkType::RAW_BSD14
        | LinkType::IPV4
        | LinkType::IPV6 => {
            emit(out, macs.dst, macs.src, ethertype_of_ip(data)?, data);
        }
        LinkType::NULL | LinkType::LOOP => {
            let Some((fam, ip)) = data.split_first_chunk::<4>() else {
                return Err("loopback frame shorter than its header".into());
            };
            // NULL is in the capturing host's byte order, LOOP in network order: accept both.
            let family = if link == LinkType::LOOP {
                u32::from_be_bytes(*fam)
            } else {
                u32::from_le_bytes(*fam)
            };
            let family = if family > 0xffff {
                family.swap_bytes()
            } else {
                family
            };
            let ethertype = match family {
                2 => ETH_IPV4,
                10 | 24 | 28 | 30 => ETH_IPV6,
                f => return Err(format!("loopback frame with address family {f}")),
            };
            emit(out, macs.dst, macs.src, ethertype, ip);
        }
        LinkType::LINUX_SLL => {
            let Some((h, payload)) = data.split_first_chunk::<16>() else {
                return Err("Linux SLL frame shorter than its header".into());
            };
            let src =
                if u16::from_be_bytes([h[2], h[3]]) == 1 && u16::from_be_bytes([h[4], h[5]]) == 6 {
                    [h[6], h[7], h[8], h[9], h[10], h[11]]
                } else {
                    macs.src
                };
            emit(out, macs.dst, src, [h[14], h[15]], payload);
        }
        LinkType::LINUX_SLL2 => {
            let Some((h, payload)) = data.split_first_chunk::<20>() else {
                return Err("Linux SLL2 frame shorter than its header".into());
            };
            let src = if u16::from_be_bytes([h[8], h[9]]) == 1 && h[11] == 6 {
                [h[12], h[13], h[14], h[15], h[16], h[17]]
            } else {
                macs.src
            };
            emit(out, macs.dst, src, [h[0], h[1]], payload);
        }
        other => return Err(format!("unsupported link type {}", other.0)),
    }
    Ok(())
}

/// Reads a pcap or pcapng file and converts every frame.
pub fn prepare(path: &Path, macs: &Macs) -> Result<Prepared, SendError> {
    let reader = CaptureReader::open(path).map_err(|e| capture_error(path, e))?;
    read_all(reader, macs).map_err(|e| capture_error(path, e))
}

/// Like [`prepare`], from the bytes of a capture.
pub fn prepare_bytes(bytes: &[u8], macs: &Macs) -> Result<Prepared, CaptureError> {
    read_all(CaptureReader::new(bytes)?, macs)
}

fn capture_error(path: &Path, source: CaptureError) -> SendError {
    SendError::Capture {
        path: path.display().to_string(),
        source,
    }
}

/// Converts every frame. A capture cut short (the file ends inside a record) keeps the frames
/// read before the cut, and the cut is reported among the skipped reasons; a corrupt one fails.
fn read_all<R: std::io::Read>(
    mut r: CaptureReader<R>,
    macs: &Macs,
) -> Result<Prepared, CaptureError> {
    let mut p = Prepared::default();
    loop {
        match r.next_frame() {
            Ok(Some(f)) => p.push(f.link, f.ts, f.data, f.orig_len, macs),
            Ok(None) => break,
            Err(e @ CaptureError::Truncated { .. }) => {
                p.skip(e.to_string());
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(p)
}

/// The MAC address of an interface, from sysfs.
fn iface_mac(iface: &str) -> [u8; 6] {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/address"))
        .ok()
        .and_then(|s| parse_mac(s.trim()))
        .unwrap_or([0x02, 0, 0, 0, 0, 1])
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Replays the capture as configured.
pub fn replay(cfg: &ReplayConfig) -> Result<ReplayReport, SendError> {
    replay_with_progress(cfg, |_, _| {})
}

/// Like [`replay`], calling `progress(frames done, frames in total)` after every frame.
pub fn replay_with_progress(
    cfg: &ReplayConfig,
    mut progress: impl FnMut(u64, u64),
) -> Result<ReplayReport, SendError> {
    if let Timing::Captured { speed: x } | Timing::Rate(x) = cfg.timing
        && !(x.is_finite() && x > 0.0)
    {
        return Err(SendError::Usage(format!(
            "--rate and --speed must be positive, not {x}"
        )));
    }
    let ifindex = nix::net::if_::if_nametoindex(cfg.iface.as_str())
        .map_err(|e| SendError::io(format!("interface {}", cfg.iface), std::io::Error::from(e)))?;
    let macs = Macs {
        src: iface_mac(&cfg.iface),
        dst: cfg.dst_mac.unwrap_or([0xff; 6]),
    };
    let prepared = prepare(&cfg.file, &macs)?;
    let sock = sys::packet_send_socket(ifindex).map_err(|e| match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => SendError::MissingCapability {
            cap: crate::sys::Capability::NetRaw,
            what: format!("replaying onto {} (an AF_PACKET raw socket)", cfg.iface),
        },
        _ => SendError::io("opening an AF_PACKET socket", e),
    })?;
    let mut report = ReplayReport {
        file: cfg.file.display().to_string(),
        iface: cfg.iface.clone(),
        link_types: prepared.link_type_names(),
        frames_in_file: prepared.frames_in_file,
        frames_per_loop: prepared.len() as u64,
        skipped: prepared.skipped.clone(),
        truncated: prepared.truncated,
        ..ReplayReport::default()
    };
    let start = Instant::now();
    let mut clock = super::SendClock::default();
    let mut offset = Duration::ZERO; // where the current pass starts on the replay clock
    let mut sent_index = 0u64;
    let total = prepared.len() as u64 * u64::from(cfg.loops.max(1));
    for pass in 0..cfg.loops.max(1) {
        if prepared.is_empty() {
            break;
        }
        let t0 = prepared.frame(0).0;
        let mut pass_end = offset;
        for i in 0..prepared.len() {
            let (ts, frame) = prepared.frame(i);
            let due = match cfg.timing {
                Timing::Captured { speed } => {
                    let rel = offset + ts.saturating_sub(t0).div_f64(speed);
                    pass_end = pass_end.max(rel);
                    Some(start + rel)
                }
                Timing::Rate(pps) => Some(start + Duration::from_secs_f64(sent_index as f64 / pps)),
                Timing::Fast => None,
            };
            let on_time = match due {
                Some(due) => super::sleep_until(due, cfg.stop.as_ref()),
                None => !super::stop_asked(cfg.stop.as_ref()),
            };
            if !on_time {
                break;
            }
            sent_index += 1;
            progress(sent_index, total);
            match send_frame(&sock, frame) {
                Ok(n) => {
                    report.frames_sent += 1;
                    report.bytes_sent += n as u64;
                }
                Err(reason) => *report.send_errors.entry(reason?).or_default() += 1,
            }
            clock.tick();
        }
        offset = pass_end;
        report.loops = pass + 1;
        if super::stop_asked(cfg.stop.as_ref()) {
            break;
        }
    }
    report.stopped_by = cfg.stop.as_ref().and_then(|s| s.received());
    report.elapsed_s = clock.elapsed_s();
    report.rate_pps = clock.rate(report.frames_sent);
    Ok(report)
}

/// Sends one frame, retrying briefly when the device queue is full. `Err(Ok(reason))` is a
/// per-frame refusal to count; `Err(Err(e))` stops the replay.
fn send_frame(
    sock: &std::os::fd::OwnedFd,
    frame: &[u8],
) -> Result<usize, Result<String, SendError>> {
    let mut tries = 0;
    loop {
        match sys::packet_send(sock, frame) {
            Ok(n) => return Ok(n),
            Err(e) => match e.raw_os_error() {
                Some(libc::ENOBUFS) | Some(libc::EAGAIN) if tries < 100 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Some(libc::ENOBUFS) | Some(libc::EAGAIN) => {
                    return Err(Ok("device queue full (ENOBUFS)".into()));
                }
                Some(libc::EMSGSIZE) => {
                    return Err(Ok("frame larger than the interface MTU (EMSGSIZE)".into()));
                }
                Some(libc::EINVAL) => return Err(Ok("frame refused as malformed (EINVAL)".into())),
                Some(libc::EINTR) => {}
                _ => return Err(Err(SendError::io("sending a frame", e))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::DataLink;

    const MACS: Macs = Macs {
        src: [2, 0, 0, 0, 0, 1],
        dst: [0xff; 6],
    };

    #[test]
    fn synthesizes_ethernet_for_raw_and_sll() {
        let ip6 = [0x60u8, 0, 0, 1, 0, 0, 59, 64];
        let mut out = Vec::new();
        to_ethernet(LinkType::RAW, &ip6, &MACS, &mut out).unwrap();
        assert_eq!(&out[..6], &[0xff; 6]);
        assert_eq!(&out[6..12], &[2, 0, 0, 0, 0, 1]);
        assert_eq!(&out[12..14], &[0x86, 0xdd]);
        assert_eq!(&out[14..], &ip6);

        let mut sll = vec![
            0, 4, 0, 1, 0, 6, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0, 0, 0x86, 0xdd,
        ];
        sll.extend_from_slice(&ip6);
        out.clear();
        to_ethernet(LinkType::LINUX_SLL, &sll, &MACS, &mut out).unwrap();
        assert_eq!(&out[6..12], &[0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]);
        assert_eq!(&out[12..], &sll[14..]);

        let mut null = vec![30, 0, 0, 0];
        null.extend_from_slice(&ip6);
        out.clear();
        to_ethernet(LinkType::NULL, &null, &MACS, &mut out).unwrap();
        assert_eq!(&out[12..14], &[0x86, 0xdd]);
    }

    #[test]
    fn refuses_what_it_cannot_frame() {
        let mut out = Vec::new();
        assert!(to_ethernet(LinkType::ETHERNET, &[0; 10], &MACS, &mut out).is_err());
        assert!(to_ethernet(LinkType::RAW, &[0x50], &MACS, &mut out).is_err());
        assert!(to_ethernet(LinkType(105), &[0; 40], &MACS, &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn reads_pcap_and_counts_skips() {
        use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
        let header = PcapHeader {
            datalink: DataLink::RAW,
            ..PcapHeader::default()
        };
        let mut w = PcapWriter::with_header(Vec::new(), header).unwrap();
        let ip6 = [0x60u8, 0, 0, 1, 0, 0, 59, 64];
        w.write_packet(&PcapPacket::new(Duration::from_millis(1), 8, &ip6))
            .unwrap();
        w.write_packet(&PcapPacket::new(Duration::from_millis(2), 1, &[0x10]))
            .unwrap();
        w.write_packet(&PcapPacket::new(Duration::from_millis(3), 100, &ip6))
            .unwrap();
        let bytes = w.into_writer();
        let p = prepare_bytes(&bytes, &MACS).unwrap();
        assert_eq!(p.frames_in_file, 3);
        assert_eq!(p.len(), 2);
        assert_eq!(p.truncated, 1);
        assert_eq!(p.skipped.values().sum::<u64>(), 1);
        assert_eq!(p.frame(1).0, Duration::from_millis(3));
        assert_eq!(p.frame(1).1.len(), 22);
        assert!(prepare_bytes(b"xy", &MACS).is_err());
        assert!(matches!(
            prepare_bytes(b"garbage!", &MACS),
            Err(CaptureError::NotACapture { .. })
        ));
        // Cut inside the last record: the frames before the cut are kept, the cut is reported.
        let cut = prepare_bytes(&bytes[..bytes.len() - 3], &MACS).unwrap();
        assert_eq!(cut.frames_in_file, 2);
        assert!(
            cut.skipped.keys().any(|k| k.contains("truncated")),
            "{:?}",
            cut.skipped
        );
    }

    #[test]
    fn reads_pcapng_with_interfaces_of_different_link_types() {
        use pcap_file::pcapng::PcapNgWriter;
        use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
        use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
        let ip6 = [0x60u8, 0, 0, 1, 0, 0, 59, 64];
        let mut eth = vec![0xffu8; 6];
        eth.extend_from_slice(&[2, 0, 0, 0, 0, 9, 0x86, 0xdd]);
        eth.extend_from_slice(&ip6);
        let mut w = PcapNgWriter::new(Vec::new()).unwrap();
        w.write_pcapng_block(InterfaceDescriptionBlock::new(DataLink::ETHERNET, 0))
            .unwrap();
        w.write_pcapng_block(InterfaceDescriptionBlock::new(DataLink::RAW, 0))
            .unwrap();
        for (iface, data) in [(0u32, &eth[..]), (1, &ip6[..])] {
            let epb = EnhancedPacketBlock {
                interface_id: iface,
                timestamp: Duration::from_secs(1),
                original_len: data.len() as u32,
                data: std::borrow::Cow::Borrowed(data),
                options: vec![],
            };
            w.write_pcapng_block(epb).unwrap();
        }
        let p = prepare_bytes(&w.into_inner(), &MACS).unwrap();
        assert_eq!(p.frames_in_file, 2);
        assert_eq!(p.len(), 2);
        assert_eq!(p.frame(0).1, &eth[..]);
        assert_eq!(&p.frame(1).1[12..14], &[0x86, 0xdd]);
        assert_eq!(&p.frame(1).1[14..], &ip6);
        assert_eq!(p.link_types, vec![LinkType::ETHERNET, LinkType::RAW]);
        assert_eq!(p.link_type_names(), vec!["ethernet", "raw"]);
    }

    #[test]
    fn parses_macs() {
        assert_eq!(parse_mac("02:fb:00:00:00:01"), Some([2, 0xfb, 0, 0, 0, 1]));
        assert_eq!(parse_mac("02:fb:00:00:00"), None);
        assert_eq!(parse_mac("02:fb:00:00:00:01:02"), None);
    }

    proptest::proptest! {
        #[test]
        fn conversion_never_panics(link in proptest::prop_oneof![
            proptest::strategy::Just(0u32), proptest::strategy::Just(1), proptest::strategy::Just(101),
            proptest::strategy::Just(108), proptest::strategy::Just(113), proptest::strategy::Just(228),
            proptest::strategy::Just(229), proptest::strategy::Just(276), 0u32..300],
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let mut out = Vec::new();
            if to_ethernet(LinkType(link), &data, &MACS, &mut out).is_ok() {
                proptest::prop_assert!(out.len() >= 14);
            } else {
                proptest::prop_assert!(out.is_empty());
            }
            let _ = prepare_bytes(&data, &MACS);
        }
    }
}
