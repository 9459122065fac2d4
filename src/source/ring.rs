//! The TPACKET_V3 ring source: the kernel writes frames into blocks of a memory-mapped ring and
//! hands over a whole block at a time, so a busy capture costs one `poll` per block instead of
//! one `recvfrom` per frame. The ring itself (setup, mapping, block ownership) and the byte
//! layouts of its block descriptor and frame header are in [`crate::sys::ring`]; this module walks a block's frames in safe code, checking every offset
//! against the block before reading, so a corrupt block ends the walk instead of panicking.
//!
//! VLAN tags the kernel stripped into the frame's metadata (`tp_vlan_tci`) are put back into
//! the Ethernet header, as libpcap does, so `--write` files and byte counts match tcpdump's: in
//! place, by moving the two MAC addresses 4 bytes back into the gap the kernel leaves between
//! the frame header and the frame (no copy of the frame).

use crate::packet::{Frame, LinkType};
use crate::sys::ring::{block, frame};
use crate::sys::{self, Ring, TP_STATUS_VLAN_TPID_VALID, TP_STATUS_VLAN_VALID, TpacketReq3};
use std::io;
use std::ops::Range;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

/// Ring geometry: 8 blocks of 1 MiB (a 64 KiB GSO frame fits in a block), blocks retired after
/// 20 ms even when not full so a slow trickle is seen promptly. The kernel hands a partly filled
/// block over only when its retire timer fires, which happens within two retire periods (the
/// timer retires the block it finds still current since its last run), so the drain at the stop
/// waits for that (`pipeline::live::DRAIN_IDLE`).
pub const BLOCK_SIZE: u32 = 1 << 20;
pub const BLOCK_NR: u32 = 8;
pub const FRAME_SIZE: u32 = 2048;
pub const RETIRE_MS: u32 = 20;

/// Bytes of the two MAC addresses that open an Ethernet header; the VLAN tag goes after them.
const MACS_LEN: usize = 12;
/// Bytes of an 802.1Q tag (TPID + TCI).
const VLAN_TAG_LEN: usize = 4;
/// The TPID of an 802.1Q tag, when the kernel did not record one.
const ETH_P_8021Q: u16 = 0x8100;

/// The native-order u32 at `field` of `b`, if `b` holds it.
fn u32_at(b: &[u8], field: Range<usize>) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(field)?.try_into().ok()?))
}

/// The native-order u16 at `field` of `b`, if `b` holds it.
fn u16_at(b: &[u8], field: Range<usize>) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(field)?.try_into().ok()?))
}

/// One frame's header fields (`struct tpacket3_hdr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHdr {
    pub next_offset: u32,
    pub sec: u32,
    pub nsec: u32,
    pub snaplen: u32,
    pub len: u32,
    pub status: u32,
    pub mac: u16,
    pub vlan_tci: u32,
    pub vlan_tpid: u16,
}

impl FrameHdr {
    /// Parses the header at the start of `b`.
    pub fn parse(b: &[u8]) -> Option<FrameHdr> {
        Some(FrameHdr {
            next_offset: u32_at(b, frame::NEXT_OFFSET)?,
            sec: u32_at(b, frame::SEC)?,
            nsec: u32_at(b, frame::NSEC)?,
            snaplen: u32_at(b, frame::SNAPLEN)?,
            len: u32_at(b, frame::LEN)?,
            status: u32_at(b, frame::STATUS)?,
            mac: u16_at(b, frame::MAC)?,
            vlan_tci: u32_at(b, frame::VLAN_TCI)?,
            vlan_tpid: u16_at(b, frame::VLAN_TPID)?,
        })
    }
}

/// Where the walk of the current block stands, so a caller can pause and resume mid-block.
#[derive(Clone, Copy, Debug, Default)]
struct Cursor {
    /// Offset of the next frame header in the block (0: start the block).
    offset: usize,
    /// Frames left in the block.
    left: u32,
}

/// The walk over one block's frames, apart from the ring so it can be tested on any bytes.
struct Walk<'s> {
    cursor: &'s mut Cursor,
    link: LinkType,
    number: &'s mut u64,
    scratch: &'s mut Vec<u8>,
}

impl Walk<'_> {
    /// Lends the block's frames from the cursor on to `f`; false when `f` asked to pause (the
    /// cursor then points after the frame `f` refused to go past). A header or frame that does
    /// not fit the block ends the walk of the block.
    fn run<F>(&mut self, block: &mut [u8], f: &mut F) -> bool
    where
        F: FnMut(&Frame<'_>) -> bool,
    {
        if self.cursor.offset == 0 {
            let (Some(n), Some(first)) = (
                u32_at(block, block::NUM_PKTS),
                u32_at(block, block::OFFSET_TO_FIRST_PKT),
            ) else {
                return true;
            };
            *self.cursor = Cursor {
                offset: first as usize,
                left: n,
            };
        }
        while self.cursor.left > 0 {
            let off = self.cursor.offset;
            let Some(h) = block.get(off..).and_then(FrameHdr::parse) else {
                self.cursor.left = 0;
                break;
            };
            let start = off + h.mac as usize;
            let end = start + h.snaplen as usize;
            if off == 0 || block.get(start..end).is_none() {
                self.cursor.left = 0;
                break;
            }
            self.cursor.left -= 1;
            self.cursor.offset = off + h.next_offset as usize;
            if h.next_offset == 0 {
                self.cursor.left = 0;
            }
            *self.number += 1;
            let mut orig_len = h.len;
            let data: &[u8] = if h.status & TP_STATUS_VLAN_VALID != 0
                && self.link == LinkType::ETHERNET
                && h.snaplen as usize >= MACS_LEN
            {
                let tpid = if h.status & TP_STATUS_VLAN_TPID_VALID != 0 && h.vlan_tpid != 0 {
                    h.vlan_tpid
                } else {
                    ETH_P_8021Q
                };
                let mut tag = [0u8; VLAN_TAG_LEN];
                tag[..2].copy_from_slice(&tpid.to_be_bytes());
                tag[2..].copy_from_slice(&(h.vlan_tci as u16).to_be_bytes());
                orig_len = orig_len.saturating_add(VLAN_TAG_LEN as u32);
                let macs = start..start + MACS_LEN;
                if h.mac as usize >= frame::HEADER_LEN + VLAN_TAG_LEN {
                    // The gap holds the sockaddr_ll we do not read: move the MACs into it.
                    let tagged = start - VLAN_TAG_LEN;
                    block.copy_within(macs, tagged);
                    block[tagged + MACS_LEN..start + MACS_LEN].copy_from_slice(&tag);
                    &block[tagged..end]
                } else {
                    self.scratch.clear();
                    self.scratch.extend_from_slice(&block[macs.clone()]);
                    self.scratch.extend_from_slice(&tag);
                    self.scratch.extend_from_slice(&block[macs.end..end]);
                    &self.scratch[..]
                }
            } else {
                &block[start..end]
            };
            let frame = Frame {
                number: *self.number,
                link: self.link,
                ts: Duration::new(u64::from(h.sec), h.nsec),
                orig_len,
                data,
            };
            if !f(&frame) {
                return false;
            }
        }
        true
    }
}

/// A capture from a TPACKET_V3 ring.
pub struct RingSource {
    ring: Ring,
    link: LinkType,
    block: usize,
    cursor: Cursor,
    number: u64,
    /// A frame with its VLAN tag put back.
    scratch: Vec<u8>,
}

impl RingSource {
    /// Maps a ring on an unbound packet socket; the caller binds and joins fanout afterwards.
    pub fn new(fd: OwnedFd, link: LinkType) -> io::Result<RingSource> {
        let req = TpacketReq3 {
            block_size: BLOCK_SIZE,
            block_nr: BLOCK_NR,
            frame_size: FRAME_SIZE,
            frame_nr: BLOCK_SIZE / FRAME_SIZE * BLOCK_NR,
            retire_blk_tov: RETIRE_MS,
            sizeof_priv: 0,
            feature_req_word: 0,
        };
        Ok(RingSource {
            ring: Ring::new(fd, req)?,
            link,
            block: 0,
            cursor: Cursor::default(),
            number: 0,
            scratch: Vec::with_capacity(BLOCK_SIZE as usize + 8),
        })
    }

    pub fn fd(&self) -> &OwnedFd {
        self.ring.fd()
    }

    pub fn link(&self) -> LinkType {
        self.link
    }

    /// Frames lent to callers so far (whatever the callers did with them).
    pub fn frames_read(&self) -> u64 {
        self.number
    }

    /// Waits up to `timeout` for a block, then lends each frame to `f` until the ring is empty
    /// or `f` returns false (the walk resumes there next time). Returns what `f` last said.
    pub fn dispatch<F>(&mut self, timeout: Duration, mut f: F) -> io::Result<bool>
    where
        F: FnMut(&Frame<'_>) -> bool,
    {
        if !self.ring.user_owned(self.block) {
            let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
            sys::poll_in(self.ring.fd().as_raw_fd(), ms)?;
        }
        while self.ring.user_owned(self.block) {
            let go_on = self.walk_block(&mut f);
            if !go_on {
                return Ok(false);
            }
            self.ring.release(self.block);
            self.block = (self.block + 1) % self.ring.block_nr();
            self.cursor = Cursor::default();
        }
        Ok(true)
    }

    /// Walks the current (user-owned) block from the cursor. False when `f` asked to pause.
    fn walk_block<F>(&mut self, f: &mut F) -> bool
    where
        F: FnMut(&Frame<'_>) -> bool,
    {
        let Some(block) = self.ring.block_mut(self.block) else {
            return true;
        };
        let mut w = Walk {
            cursor: &mut self.cursor,
            link: self.link,
            number: &mut self.number,
            scratch: &mut self.scratch,
        };
        w.run(block, f)
    }

    /// Reads and resets the kernel's counters (TPACKET_V3 layout).
    pub fn statistics(&self) -> io::Result<sys::RawStats> {
        sys::statistics(self.ring.fd().as_raw_fd(), true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block as the kernel lays it out: descriptor, then frames at 16-byte aligned offsets,
    /// each `tpacket3_hdr` + gap + frame bytes at `mac`.
    fn block(frames: &[(&[u8], Option<u16>)]) -> Vec<u8> {
        const MAC: usize = 82;
        let mut b = vec![0u8; 4096];
        b[block::BLOCK_STATUS].copy_from_slice(&1u32.to_ne_bytes());
        b[block::NUM_PKTS].copy_from_slice(&(frames.len() as u32).to_ne_bytes());
        b[block::OFFSET_TO_FIRST_PKT].copy_from_slice(&(block::LEN as u32).to_ne_bytes());
        let mut off = block::LEN;
        for (i, (data, vlan)) in frames.iter().enumerate() {
            let size = (MAC + data.len()).next_multiple_of(16);
            let next = if i + 1 == frames.len() { 0 } else { size };
            let h = &mut b[off..];
            h[frame::NEXT_OFFSET].copy_from_slice(&(next as u32).to_ne_bytes());
            h[frame::SEC].copy_from_slice(&(100 + i as u32).to_ne_bytes());
            h[frame::SNAPLEN].copy_from_slice(&(data.len() as u32).to_ne_bytes());
            h[frame::LEN].copy_from_slice(&(data.len() as u32).to_ne_bytes());
            let mut status = 1u32;
            if let Some(tci) = vlan {
                status |= TP_STATUS_VLAN_VALID | TP_STATUS_VLAN_TPID_VALID;
                h[frame::VLAN_TCI].copy_from_slice(&u32::from(*tci).to_ne_bytes());
                h[frame::VLAN_TPID].copy_from_slice(&0x8100u16.to_ne_bytes());
            }
            h[frame::STATUS].copy_from_slice(&status.to_ne_bytes());
            h[frame::MAC].copy_from_slice(&(MAC as u16).to_ne_bytes());
            h[MAC..MAC + data.len()].copy_from_slice(data);
            off += size;
        }
        b
    }

    fn walk_all(b: &mut [u8], pause_after: Option<usize>) -> Vec<(u64, u32, Vec<u8>)> {
        let (mut cursor, mut number, mut scratch) = (Cursor::default(), 0, Vec::new());
        let mut got = Vec::new();
        loop {
            let mut w = Walk {
                cursor: &mut cursor,
                link: LinkType::ETHERNET,
                number: &mut number,
                scratch: &mut scratch,
            };
            let done = w.run(b, &mut |f: &Frame<'_>| {
                got.push((f.ts.as_secs(), f.orig_len, f.data.to_vec()));
                pause_after.is_none_or(|n| !got.len().is_multiple_of(n))
            });
            if done {
                return got;
            }
        }
    }

    #[test]
    fn walks_frames_and_restores_vlan_tags_in_place() {
        let plain: Vec<u8> = (0..60).collect();
        let tagged: Vec<u8> = (100..160).collect();
        let mut b = block(&[(&plain, None), (&tagged, Some(0x0064)), (&plain, None)]);
        for pause in [None, Some(1), Some(2)] {
            let got = walk_all(&mut b.clone(), pause);
            assert_eq!(got.len(), 3, "pause {pause:?}");
            assert_eq!(got[0], (100, 60, plain.clone()));
            let mut want = tagged[..12].to_vec();
            want.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
            want.extend_from_slice(&tagged[12..]);
            assert_eq!(got[1], (101, 64, want), "pause {pause:?}");
            assert_eq!(got[2], (102, 60, plain.clone()));
        }
        // A frame that claims to run past the block ends the walk without a panic.
        b[48 + 12..48 + 16].copy_from_slice(&100_000u32.to_ne_bytes());
        assert!(walk_all(&mut b, None).is_empty());
    }

    proptest::proptest! {
        #[test]
        fn any_block_bytes_never_panic(mut b in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            // Keep the walk short: at most 64 frames claimed.
            if b.len() >= 16 { b[13] = 0; b[14] = 0; b[15] = 0; b[12] &= 63; }
            let _ = walk_all(&mut b, None);
        }
    }

    #[test]
    fn frame_header_offsets() {
        let mut b = [0u8; 48];
        b[0..4].copy_from_slice(&64u32.to_ne_bytes());
        b[4..8].copy_from_slice(&7u32.to_ne_bytes());
        b[8..12].copy_from_slice(&9u32.to_ne_bytes());
        b[12..16].copy_from_slice(&60u32.to_ne_bytes());
        b[16..20].copy_from_slice(&1514u32.to_ne_bytes());
        b[20..24].copy_from_slice(&(TP_STATUS_VLAN_VALID | 1).to_ne_bytes());
        b[24..26].copy_from_slice(&66u16.to_ne_bytes());
        b[32..36].copy_from_slice(&100u32.to_ne_bytes());
        b[36..38].copy_from_slice(&0x88a8u16.to_ne_bytes());
        let h = FrameHdr::parse(&b).unwrap();
        assert_eq!(
            h,
            FrameHdr {
                next_offset: 64,
                sec: 7,
                nsec: 9,
                snaplen: 60,
                len: 1514,
                status: TP_STATUS_VLAN_VALID | 1,
                mac: 66,
                vlan_tci: 100,
                vlan_tpid: 0x88a8,
            }
        );
        assert_eq!(FrameHdr::parse(&b[..37]), None);
        assert_eq!(FrameHdr::parse(&[]), None);
    }
}
