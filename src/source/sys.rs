//! The raw kernel interface of live capture: the AF_PACKET socket (`packet(7)`), its bind,
//! `PACKET_FANOUT`, `PACKET_STATISTICS`, promiscuous membership, the drop-all socket filter that
//! keeps sockets silent while a fanout group forms and once a capture stops, and the TPACKET_V3
//! receive ring (`PACKET_RX_RING` + `mmap`). This is the only module of `source` with `unsafe`;
//! every other file calls the safe functions here.
//!
//! Layouts, from `/usr/include/linux/if_packet.h`:
//!
//! ```text
//! struct tpacket_req3 { u32 block_size, block_nr, frame_size, frame_nr,
//!                       retire_blk_tov, sizeof_priv, feature_req_word; }      28 bytes
//! struct tpacket_stats_v3 { u32 tp_packets, tp_drops, tp_freeze_q_cnt; }      12 bytes
//! struct tpacket_stats    { u32 tp_packets, tp_drops; }                        8 bytes
//!
//! struct tpacket_block_desc {            offset
//!     u32 version;                         0
//!     u32 offset_to_priv;                  4
//!     struct tpacket_hdr_v1 {
//!         u32 block_status;                8   TP_STATUS_KERNEL (0) / TP_STATUS_USER (1)
//!         u32 num_pkts;                   12
//!         u32 offset_to_first_pkt;        16
//!         u32 blk_len;                    20
//!         ...
//! struct tpacket3_hdr {
//!     u32 tp_next_offset;                  0
//!     u32 tp_sec, tp_nsec;                 4, 8
//!     u32 tp_snaplen, tp_len;             12, 16
//!     u32 tp_status;                      20
//!     u16 tp_mac, tp_net;                 24, 26
//!     u32 hv1.tp_rxhash, hv1.tp_vlan_tci; 28, 32
//!     u16 hv1.tp_vlan_tpid;               36
//! ```
//! The frames of a block are parsed in safe code ([`crate::source::ring`]); this module only
//! hands out a block's bytes while user space owns it.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

use libc::{c_int, c_uint, c_void, socklen_t};

pub const SOL_PACKET: c_int = 263;
pub const PACKET_ADD_MEMBERSHIP: c_int = 1;
pub const PACKET_RX_RING: c_int = 5;
pub const PACKET_STATISTICS: c_int = 6;
pub const PACKET_VERSION: c_int = 10;
pub const PACKET_FANOUT: c_int = 18;
pub const PACKET_MR_PROMISC: u16 = 1;
pub const PACKET_FANOUT_HASH: u32 = 0;
pub const TPACKET_V3: c_int = 2;
pub const ETH_P_ALL: u16 = 0x0003;

pub const TP_STATUS_KERNEL: u32 = 0;
pub const TP_STATUS_USER: u32 = 1;
pub const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
pub const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;

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

/// `struct packet_mreq`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PacketMreq {
    mr_ifindex: c_int,
    mr_type: u16,
    mr_alen: u16,
    mr_address: [u8; 8],
}
const _: () = assert!(size_of::<PacketMreq>() == 16);

/// The counters `PACKET_STATISTICS` returns (and resets): packets the socket saw, and of those
/// the ones it dropped because its buffer or ring was full; `freeze_q` only on TPACKET_V3.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawStats {
    pub packets: u32,
    pub drops: u32,
    pub freeze_q: u32,
}

fn cvt(r: c_int) -> io::Result<c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn setsockopt<T>(fd: RawFd, level: c_int, name: c_int, v: &T) -> io::Result<()> {
    // SAFETY: `v` points to a live, initialised `T` of `size_of::<T>()` bytes for the duration
    // of the call; the kernel only reads it (and, for `sock_fprog`, the program it points to,
    // which `attach_drop_all` keeps in a static).
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (v as *const T).cast::<c_void>(),
            size_of::<T>() as socklen_t,
        )
    })
    .map(drop)
}

/// An AF_PACKET raw socket that receives nothing until [`bind`] (protocol 0), so no frame of
/// another interface slips in between creation and bind. `EPERM` without CAP_NET_RAW.
pub fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with constant arguments; the returned descriptor is checked.
    let fd = cvt(unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` was just returned by socket(2), is open and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The index of a network interface by name.
pub fn if_index(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(i)
    }
}

/// Binds the socket to one interface, receiving every protocol (`ETH_P_ALL`).
pub fn bind(fd: &OwnedFd, ifindex: u32) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = ETH_P_ALL.to_be();
    sll.sll_ifindex = ifindex as c_int;
    // SAFETY: `sll` is a valid sockaddr_ll and its exact size is passed.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast::<libc::sockaddr>(),
            size_of::<libc::sockaddr_ll>() as socklen_t,
        )
    })
    .map(drop)
}

/// Puts the interface in promiscuous mode for as long as the socket lives.
pub fn promiscuous(fd: &OwnedFd, ifindex: u32) -> io::Result<()> {
    let m = PacketMreq {
        mr_ifindex: ifindex as c_int,
        mr_type: PACKET_MR_PROMISC,
        ..Default::default()
    };
    setsockopt(fd.as_raw_fd(), SOL_PACKET, PACKET_ADD_MEMBERSHIP, &m)
}

/// `PACKET_FANOUT_FLAG_UNIQUEID`: the kernel picks an unused group id (the id passed must be 0).
pub const PACKET_FANOUT_FLAG_UNIQUEID: u32 = 0x2000;

/// Joins fanout group `group` in hash mode (the socket must be bound).
pub fn fanout_hash(fd: RawFd, group: u16) -> io::Result<()> {
    let arg: c_uint = u32::from(group) | (PACKET_FANOUT_HASH << 16);
    setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &arg)
}

/// Creates a new hash-mode fanout group with an id no other socket of this network namespace
/// uses, and returns the id (for the other workers to join with [`fanout_hash`]).
pub fn fanout_hash_new(fd: RawFd) -> io::Result<u16> {
    let arg: c_uint = (PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_UNIQUEID) << 16;
    setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &arg)?;
    let mut v: c_uint = 0;
    let mut len = size_of::<c_uint>() as socklen_t;
    // SAFETY: `v` is a live c_uint and `len` its size; the kernel writes at most that.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            SOL_PACKET,
            PACKET_FANOUT,
            (&mut v as *mut c_uint).cast::<c_void>(),
            &mut len,
        )
    })?;
    // id | type << 16 | flags << 24
    Ok((v & 0xffff) as u16)
}

/// `asm-generic/socket.h` (the value on every architecture but parisc).
pub const SO_ATTACH_FILTER: c_int = 26;
pub const SO_DETACH_FILTER: c_int = 27;

/// The classic BPF program `ret #0`: keep 0 bytes of every frame, i.e. drop it. A `static`, so
/// the pointer handed to the kernel stays valid.
static DROP_ALL: [libc::sock_filter; 1] = [libc::sock_filter {
    code: (libc::BPF_RET | libc::BPF_K) as u16,
    jt: 0,
    jf: 0,
    k: 0,
}];

/// Attaches a socket filter that drops every frame before it is queued, counted in
/// `tp_packets` or counted as a drop in `tp_drops` (`packet_rcv`/`tpacket_rcv` run the filter
/// first and discard what it rejects without accounting). Removed with [`detach_filter`].
/// Used while a fanout group forms, and at the stop of a capture, so that the frames the
/// socket accepted are a closed set to read to the end.
pub fn attach_drop_all(fd: RawFd) -> io::Result<()> {
    let prog = libc::sock_fprog {
        len: DROP_ALL.len() as u16,
        // The kernel only reads the program (it copies it in during the call).
        filter: DROP_ALL.as_ptr().cast_mut(),
    };
    // `prog` and the static program it points to are live for the call, as `setsockopt` needs.
    setsockopt(fd, libc::SOL_SOCKET, SO_ATTACH_FILTER, &prog)
}

/// Removes the socket's filter: from here on every frame reaches the socket.
pub fn detach_filter(fd: RawFd) -> io::Result<()> {
    let unused: c_int = 0;
    setsockopt(fd, libc::SOL_SOCKET, SO_DETACH_FILTER, &unused)
}

/// Raises the socket receive buffer (SO_RCVBUFFORCE as root, else SO_RCVBUF up to rmem_max).
pub fn set_rcvbuf(fd: &OwnedFd, bytes: usize) -> io::Result<()> {
    let v = c_int::try_from(bytes).unwrap_or(c_int::MAX);
    setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &v)
        .or_else(|_| setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, &v))
}

/// Reads and resets the socket's counters. `v3` selects the TPACKET_V3 layout (ring sockets).
pub fn statistics(fd: RawFd, v3: bool) -> io::Result<RawStats> {
    let mut buf = [0u32; 3];
    let mut len: socklen_t = if v3 { 12 } else { 8 };
    // SAFETY: `buf` has room for 12 bytes, `len` says at most that much may be written, and the
    // kernel writes back how much it wrote.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            SOL_PACKET,
            PACKET_STATISTICS,
            buf.as_mut_ptr().cast::<c_void>(),
            &mut len,
        )
    })?;
    Ok(RawStats {
        packets: buf[0],
        drops: buf[1],
        freeze_q: if v3 && len >= 12 { buf[2] } else { 0 },
    })
}

/// A second descriptor for the same socket (for reading statistics while pnet owns the first).
pub fn dup(fd: &OwnedFd) -> io::Result<OwnedFd> {
    fd.try_clone()
}

/// Gives up ownership: the caller (pnet) closes it.
pub fn into_raw(fd: OwnedFd) -> RawFd {
    fd.into_raw_fd()
}

/// Waits up to `timeout_ms` for the descriptor to become readable. Ok(false) on timeout or EINTR.
pub fn poll_in(fd: RawFd, timeout_ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN | libc::POLLERR,
        revents: 0,
    };
    // SAFETY: one valid pollfd, count 1.
    let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    if r == -1 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(e);
    }
    if r > 0 && p.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
        // A pending socket error (e.g. ENETDOWN when the interface went down).
        let mut err: c_int = 0;
        let mut len = size_of::<c_int>() as socklen_t;
        // SAFETY: `err` is a live c_int and `len` its size; the kernel writes at most that.
        cvt(unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut err as *mut c_int).cast::<c_void>(),
                &mut len,
            )
        })?;
        if err != 0 {
            return Err(io::Error::from_raw_os_error(err));
        }
        if p.revents & libc::POLLIN == 0 {
            return Err(io::Error::other("capture socket closed"));
        }
    }
    Ok(r > 0)
}

/// A TPACKET_V3 receive ring mapped into this process. Blocks are handed back and forth with
/// their `block_status` word: the kernel fills a block and sets TP_STATUS_USER; user space reads
/// it and stores TP_STATUS_KERNEL.
pub struct Ring {
    fd: OwnedFd,
    map: *mut u8,
    len: usize,
    block_size: usize,
    block_nr: usize,
}

// SAFETY: the mapping is owned by the Ring alone and only touched through &self/&mut self.
unsafe impl Send for Ring {}

impl Ring {
    /// Switches `fd` (unbound) to TPACKET_V3 and maps a ring of `req` in.
    pub fn new(fd: OwnedFd, req: TpacketReq3) -> io::Result<Ring> {
        let v: c_int = TPACKET_V3;
        setsockopt(fd.as_raw_fd(), SOL_PACKET, PACKET_VERSION, &v)?;
        setsockopt(fd.as_raw_fd(), SOL_PACKET, PACKET_RX_RING, &req)?;
        let len = req.block_size as usize * req.block_nr as usize;
        // SAFETY: a fresh shared mapping of the socket's ring, of exactly the size the kernel
        // allocated; the result is checked against MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_LOCKED,
                fd.as_raw_fd(),
                0,
            )
        };
        let p = if p == libc::MAP_FAILED {
            // MAP_LOCKED can fail on RLIMIT_MEMLOCK; retry without it.
            // SAFETY: as above.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd.as_raw_fd(),
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            p
        } else {
            p
        };
        Ok(Ring {
            fd,
            map: p.cast::<u8>(),
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

    fn status_word(&self, i: usize) -> &AtomicU32 {
        assert!(i < self.block_nr);
        // SAFETY: block `i` lies inside the mapping (checked above); offset 8 of a block is the
        // 4-byte aligned `block_status` word the kernel and we update atomically.
        unsafe { &*self.map.add(i * self.block_size + 8).cast::<AtomicU32>() }
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
        // SAFETY: the block lies inside the mapping (`status_word` checked `i`), and while its
        // status is TP_STATUS_USER the kernel neither reads nor writes it; the Acquire load in
        // `user_owned` orders our accesses after the kernel's writes. `&mut self` makes this the
        // only borrow of the mapping, and `release` (which hands the block back) needs `&mut self`
        // too, so the slice is gone before the kernel may touch the block again.
        Some(unsafe {
            std::slice::from_raw_parts_mut(self.map.add(i * self.block_size), self.block_size)
        })
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
            libc::munmap(self.map.cast::<c_void>(), self.len);
        }
    }
}
