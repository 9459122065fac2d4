//! The AF_PACKET socket (`packet(7)`): its bind, promiscuous membership, `PACKET_FANOUT`,
//! `PACKET_STATISTICS`, the drop-all socket filter that keeps sockets silent while a fanout group
//! forms and once a capture stops, and sending whole frames (`replay`).
//!
//! Layouts, from `/usr/include/linux/if_packet.h`:
//!
//! ```text
//! struct packet_mreq      { int mr_ifindex; u16 mr_type, mr_alen; u8 mr_address[8]; } 16 bytes
//! struct tpacket_stats_v3 { u32 tp_packets, tp_drops, tp_freeze_q_cnt; }              12 bytes
//! struct tpacket_stats    { u32 tp_packets, tp_drops; }                                 8 bytes
//! ```

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use libc::{c_int, c_uint, c_void, socklen_t};

use super::fd::{getsockopt, setsockopt};

pub const SOL_PACKET: c_int = 263;
pub const PACKET_ADD_MEMBERSHIP: c_int = 1;
pub const PACKET_RX_RING: c_int = 5;
pub const PACKET_STATISTICS: c_int = 6;
pub const PACKET_VERSION: c_int = 10;
pub const PACKET_FANOUT: c_int = 18;
pub const PACKET_MR_PROMISC: u16 = 1;
pub const PACKET_FANOUT_HASH: u32 = 0;
/// `PACKET_FANOUT_FLAG_UNIQUEID`: the kernel picks an unused group id (the id passed must be 0).
pub const PACKET_FANOUT_FLAG_UNIQUEID: u32 = 0x2000;
pub const TPACKET_V3: c_int = 2;
pub const ETH_P_ALL: u16 = 0x0003;

/// `asm-generic/socket.h` (the value on every architecture but parisc).
pub const SO_ATTACH_FILTER: c_int = 26;
pub const SO_DETACH_FILTER: c_int = 27;

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

/// An AF_PACKET raw socket that receives nothing until [`bind`] (protocol 0), so no frame of
/// another interface slips in between creation and bind. `EPERM` without CAP_NET_RAW.
pub fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with constant arguments; the returned descriptor is checked.
    let fd = syscall!(socket(
        libc::AF_PACKET,
        libc::SOCK_RAW | libc::SOCK_CLOEXEC,
        0
    ))?;
    // SAFETY: `fd` was just returned by socket(2), is open and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Binds a packet socket to interface `ifindex` for `protocol` (host order; 0 receives nothing).
fn bind_protocol(fd: RawFd, ifindex: u32, protocol: u16) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = protocol.to_be();
    sll.sll_ifindex = ifindex as c_int;
    // SAFETY: `sll` is a valid sockaddr_ll and its exact size is passed.
    syscall!(bind(
        fd,
        (&sll as *const libc::sockaddr_ll).cast::<libc::sockaddr>(),
        size_of::<libc::sockaddr_ll>() as socklen_t,
    ))
    .map(drop)
}

/// Binds the socket to one interface, receiving every protocol (`ETH_P_ALL`).
pub fn bind(fd: &OwnedFd, ifindex: u32) -> io::Result<()> {
    bind_protocol(fd.as_raw_fd(), ifindex, ETH_P_ALL)
}

/// Opens an AF_PACKET SOCK_RAW socket bound to interface `ifindex` for sending whole frames.
/// Protocol 0: the socket receives nothing, so it needs no reading.
pub fn packet_send_socket(ifindex: u32) -> io::Result<OwnedFd> {
    let owned = packet_socket()?;
    bind_protocol(owned.as_raw_fd(), ifindex, 0)?;
    Ok(owned)
}

/// Sends one whole frame (link-layer header included) on a bound packet socket.
pub fn packet_send(fd: &impl AsRawFd, frame: &[u8]) -> io::Result<usize> {
    // SAFETY: `frame` is a valid buffer of `frame.len()` bytes, only read by the kernel.
    syscall!(send(
        fd.as_raw_fd(),
        frame.as_ptr().cast::<c_void>(),
        frame.len(),
        0,
    ))
    .map(|n| n as usize)
}

/// Puts the interface in promiscuous mode for as long as the socket lives.
pub fn promiscuous(fd: &OwnedFd, ifindex: u32) -> io::Result<()> {
    let mut m = PacketMreq {
        mr_ifindex: ifindex as c_int,
        mr_type: PACKET_MR_PROMISC,
        ..Default::default()
    };
    setsockopt(fd.as_raw_fd(), SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mut m)
}

/// Joins fanout group `group` in hash mode (the socket must be bound).
pub fn fanout_hash(fd: RawFd, group: u16) -> io::Result<()> {
    let mut arg: c_uint = u32::from(group) | (PACKET_FANOUT_HASH << 16);
    setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &mut arg)
}

/// Creates a new hash-mode fanout group with an id no other socket of this network namespace
/// uses, and returns the id (for the other workers to join with [`fanout_hash`]).
pub fn fanout_hash_new(fd: RawFd) -> io::Result<u16> {
    let mut arg: c_uint = (PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_UNIQUEID) << 16;
    setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &mut arg)?;
    let mut v: c_uint = 0;
    getsockopt(fd, SOL_PACKET, PACKET_FANOUT, &mut v)?;
    // id | type << 16 | flags << 24
    Ok((v & 0xffff) as u16)
}

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
    let mut prog = libc::sock_fprog {
        len: DROP_ALL.len() as u16,
        // The kernel only reads the program (it copies it in during the call).
        filter: DROP_ALL.as_ptr().cast_mut(),
    };
    // `prog` and the static program it points to are live for the call, as `setsockopt` needs.
    setsockopt(fd, libc::SOL_SOCKET, SO_ATTACH_FILTER, &mut prog)
}

/// Removes the socket's filter: from here on every frame reaches the socket.
pub fn detach_filter(fd: RawFd) -> io::Result<()> {
    let mut unused: c_int = 0;
    setsockopt(fd, libc::SOL_SOCKET, SO_DETACH_FILTER, &mut unused)
}

/// Raises the socket receive buffer (SO_RCVBUFFORCE as root, else SO_RCVBUF up to rmem_max).
pub fn set_rcvbuf(fd: &OwnedFd, bytes: usize) -> io::Result<()> {
    let mut v = c_int::try_from(bytes).unwrap_or(c_int::MAX);
    setsockopt(
        fd.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_RCVBUFFORCE,
        &mut v,
    )
    .or_else(|_| setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, &mut v))
}

/// Reads and resets the socket's counters. `v3` selects the TPACKET_V3 layout (ring sockets):
/// `struct tpacket_stats_v3` (12 bytes) instead of `struct tpacket_stats` (8 bytes).
pub fn statistics(fd: RawFd, v3: bool) -> io::Result<RawStats> {
    if v3 {
        let mut s = [0u32; 3];
        let wrote = getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &mut s)?;
        Ok(RawStats {
            packets: s[0],
            drops: s[1],
            freeze_q: if wrote >= size_of::<[u32; 3]>() {
                s[2]
            } else {
                0
            },
        })
    } else {
        let mut s = [0u32; 2];
        getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &mut s)?;
        Ok(RawStats {
            packets: s[0],
            drops: s[1],
            freeze_q: 0,
        })
    }
}
