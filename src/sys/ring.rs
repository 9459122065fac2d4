//! The TPACKET_V3 receive ring (`PACKET_RX_RING` + `mmap`): the kernel writes frames into blocks
//! of a shared mapping and hands a whole block over at a time. Blocks go back and forth with
//! their `block_status` word: the kernel fills a block and sets `TP_STATUS_USER`; user space
//! reads it and stores `TP_STATUS_KERNEL`.
//!
//! Layouts, from `/usr/include/linux/if_packet.h` (native byte order):
//!
//! ```text
//! struct tpacket_req3 { u32 block_size, block_nr, frame_size, frame_nr,
//!                       retire_blk_tov, sizeof_priv, feature_req_word; }      28 bytes
//!
//! struct tpacket_block_desc              offset
//! +---------------------------------+
//! | version                    u32  |     0
//! | offset_to_priv             u32  |     4
//! | tpacket_hdr_v1:                 |
//! |   block_status             u32  |     8   TP_STATUS_KERNEL (0) / TP_STATUS_USER (1)
//! |   num_pkts                 u32  |    12
//! |   offset_to_first_pkt      u32  |    16
//! |   blk_len                  u32  |    20
//! |   seq_num                  u64  |    24
//! |   ts_first_pkt        2 x u32   |    32
//! |   ts_last_pkt         2 x u32   |    40
//! +---------------------------------+                                       48 bytes
//!
//! struct tpacket3_hdr                    offset
//! +---------------------------------+
//! | tp_next_offset             u32  |     0   0 on the last frame of a block
//! | tp_sec                     u32  |     4
//! | tp_nsec                    u32  |     8
//! | tp_snaplen                 u32  |    12
//! | tp_len                     u32  |    16
//! | tp_status                  u32  |    20   TP_STATUS_VLAN_VALID, ..._TPID_VALID
//! | tp_mac                     u16  |    24   frame bytes start here (from the header)
//! | tp_net                     u16  |    26
//! | hv1.tp_rxhash              u32  |    28
//! | hv1.tp_vlan_tci            u32  |    32
//! | hv1.tp_vlan_tpid           u16  |    36
//! | hv1.tp_padding, tp_padding      |    38..48
//! +---------------------------------+                                       48 bytes
//! ```
//!
//! The frames of a block are parsed in safe code (`source::ring`) with the offsets of [`block`]
//! and [`frame`]; [`Ring`] only hands out a block's bytes while user space owns it.

use std::io;
use std::mem::size_of;
use std::ops::Range;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use libc::{c_int, c_uint, c_void};

use super::fd::setsockopt;
use super::packet::{PACKET_RX_RING, PACKET_VERSION, SOL_PACKET, TPACKET_V3};

pub const TP_STATUS_KERNEL: u32 = 0;
pub const TP_STATUS_USER: u32 = 1;
pub const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
pub const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;

/// Byte ranges of `struct tpacket_block_desc` (see the diagram above).
pub mod block {
    use std::ops::Range;
    pub const VERSION: Range<usize> = 0..4;
    pub const OFFSET_TO_PRIV: Range<usize> = 4..8;
    pub const BLOCK_STATUS: Range<usize> = 8..12;
    pub const NUM_PKTS: Range<usize> = 12..16;
    pub const OFFSET_TO_FIRST_PKT: Range<usize> = 16..20;
    pub const BLK_LEN: Range<usize> = 20..24;
    /// Bytes of the descriptor (`BLK_HDR_LEN`); with no private area the first frame of a
    /// block starts here.
    pub const LEN: usize = 48;
}

/// Byte ranges of `struct tpacket3_hdr` (see the diagram above).
pub mod frame {
    use std::ops::Range;
    pub const NEXT_OFFSET: Range<usize> = 0..4;
    pub const SEC: Range<usize> = 4..8;
    pub const NSEC: Range<usize> = 8..12;
    pub const SNAPLEN: Range<usize> = 12..16;
    pub const LEN: Range<usize> = 16..20;
    pub const STATUS: Range<usize> = 20..24;
    pub const MAC: Range<usize> = 24..26;
    pub const NET: Range<usize> = 26..28;
    pub const RXHASH: Range<usize> = 28..32;
    pub const VLAN_TCI: Range<usize> = 32..36;
    pub const VLAN_TPID: Range<usize> = 36..38;
    /// Bytes of the header (the frame's bytes start `tp_mac` bytes after it begins).
    pub const HEADER_LEN: usize = 48;
}

/// `struct tpacket_req3`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TpacketReq3 {
    pub block_size: c_uint,
    pub block_nr: c_uint,
    pub frame_size: c_uint,
    pub frame_nr: c_uint,
    pub retire_blk_tov: c_uint,
    pub sizeof_priv: c_uint,
    pub feature_req_word: c_uint,
}
const _: () = assert!(size_of::<TpacketReq3>() == 28);

/// A TPACKET_V3 receive ring mapped into this process.
pub struct Ring {
    fd: OwnedFd,
    map: NonNull<u8>,
    len: usize,
    block_size: usize,
    block_nr: usize,
}

// SAFETY: the mapping is owned by the Ring alone and only touched through &self/&mut self; the
// words shared with the kernel are accessed atomically.
unsafe impl Send for Ring {}

/// `mmap` of `len` bytes of the socket's ring, shared, read-write, with `extra` flags.
fn map_ring(fd: &OwnedFd, len: usize, extra: c_int) -> io::Result<NonNull<u8>> {
    // SAFETY: a fresh shared mapping of the socket's ring, of exactly the size the kernel
    // allocated, at an address the kernel chooses; the result is checked against MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | extra,
            fd.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned a null mapping"))
}

impl Ring {
    /// Switches `fd` (unbound) to TPACKET_V3 and maps a ring of `req` in.
    pub fn new(fd: OwnedFd, mut req: TpacketReq3) -> io::Result<Ring> {
        let mut v: c_int = TPACKET_V3;
        setsockopt(fd.as_raw_fd(), SOL_PACKET, PACKET_VERSION, &mut v)?;
        setsockopt(fd.as_raw_fd(), SOL_PACKET, PACKET_RX_RING, &mut req)?;
        let len = req.block_size as usize * req.block_nr as usize;
        // MAP_LOCKED can fail on RLIMIT_MEMLOCK; retry without it.
        let map = map_ring(&fd, len, libc::MAP_LOCKED).or_else(|_| map_ring(&fd, len, 0))?;
        Ok(Ring {
            fd,
            map,
            len,
            block_size: req.block_size as usize,
            block_nr: req.block_nr as usize,
        })
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    pub fn block_nr(&self) -> usize {
        self.block_nr
    }

    /// The bytes of block `i` within the mapping.
    fn block_range(&self, i: usize) -> Range<usize> {
        assert!(
            i < self.block_nr,
            "block {i} of a ring of {}",
            self.block_nr
        );
        i * self.block_size..(i + 1) * self.block_size
    }

    fn status_word(&self, i: usize) -> &AtomicU32 {
        let at = self.block_range(i).start + block::BLOCK_STATUS.start;
        // SAFETY: block `i` lies inside the mapping (`block_range` checked `i`, and the blocks
        // tile the `len` bytes mapped); `block_status` is a 4-byte aligned u32 of the descriptor
        // (blocks start at page-aligned offsets) that the kernel and we update atomically.
        unsafe { &*self.map.as_ptr().add(at).cast::<AtomicU32>() }
    }

    /// True when block `i` belongs to user space.
    pub fn user_owned(&self, i: usize) -> bool {
        self.status_word(i).load(Ordering::Acquire) & TP_STATUS_USER != 0
    }

    /// The bytes of block `i` (read, and edited in place to restore VLAN tags); `None` unless
    /// the block is user-owned ([`Ring::user_owned`]).
    pub fn block_mut(&mut self, i: usize) -> Option<&mut [u8]> {
        if !self.user_owned(i) {
            return None;
        }
        let r = self.block_range(i);
        // SAFETY: the block lies inside the mapping (`block_range` checked `i`), and while its
        // status is TP_STATUS_USER the kernel neither reads nor writes it; the Acquire load in
        // `user_owned` orders our accesses after the kernel's writes. `&mut self` makes this the
        // only borrow of the mapping, and `release` (which hands the block back) needs `&mut self`
        // too, so the slice is gone before the kernel may touch the block again.
        Some(unsafe { std::slice::from_raw_parts_mut(self.map.as_ptr().add(r.start), r.len()) })
    }

    /// Hands block `i` back to the kernel.
    pub fn release(&mut self, i: usize) {
        self.status_word(i)
            .store(TP_STATUS_KERNEL, Ordering::Release);
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the region mapped in `new`; no borrow of it outlives `self`.
        unsafe {
            libc::munmap(self.map.as_ptr().cast::<c_void>(), self.len);
        }
    }
}
