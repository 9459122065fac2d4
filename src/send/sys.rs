//! The raw kernel interface of the sender: `struct in6_flowlabel_req` and the IPv6 flow-label
//! socket options of `linux/in6.h`, `recvmsg` with its ancillary data, and the AF_PACKET socket
//! used by `replay`. This is the only module of `send` with `unsafe`; every other file calls the
//! safe functions here.
//!
//! Constants are checked against `/usr/include/linux/in6.h` (and `net/ipv6/ip6_flowlabel.c` for
//! their meaning):
//!
//! ```text
//! struct in6_flowlabel_req {          offset
//!     struct in6_addr flr_dst;         0   16 bytes
//!     __be32  flr_label;              16   network byte order
//!     __u8    flr_action;             20   IPV6_FL_A_GET / PUT / RENEW
//!     __u8    flr_share;              21   IPV6_FL_S_*
//!     __u16   flr_flags;              22   IPV6_FL_F_*
//!     __u16   flr_expires;            24   seconds
//!     __u16   flr_linger;             26   seconds
//!     __u32   __flr_pad;              28
//! };                                  32
//! ```
#![allow(unsafe_code)]

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use libc::{c_int, c_void, socklen_t};

/// `IPV6_FLOWINFO`: setsockopt enables the flow-info ancillary data on receive; also the cmsg type.
pub const IPV6_FLOWINFO: c_int = 11;
/// `IPV6_FLOWLABEL_MGR`: lease, release, renew (setsockopt) or query (getsockopt) a flow label.
pub const IPV6_FLOWLABEL_MGR: c_int = 32;
/// `IPV6_FLOWINFO_SEND`: take the label from `sin6_flowinfo` of the destination address.
pub const IPV6_FLOWINFO_SEND: c_int = 33;
/// `IPV6_AUTOFLOWLABEL`: let the kernel derive a label from the flow hash.
pub const IPV6_AUTOFLOWLABEL: c_int = 70;
/// `IPV6_MTU_DISCOVER` and its value `IPV6_PMTUDISC_DONT` (fragment locally, never set DF-like).
pub const IPV6_MTU_DISCOVER: c_int = 23;
pub const IPV6_PMTUDISC_DONT: c_int = 0;
/// `IPV6_DONTFRAG`: 0 lets the kernel fragment datagrams larger than the path MTU.
pub const IPV6_DONTFRAG: c_int = 62;

/// `flr_action`: lease a label.
pub const IPV6_FL_A_GET: u8 = 0;
/// `flr_action`: release a label leased on this socket.
pub const IPV6_FL_A_PUT: u8 = 1;
/// `flr_action`: extend linger/expiry.
pub const IPV6_FL_A_RENEW: u8 = 2;

/// `flr_flags`: create the label if it does not exist.
pub const IPV6_FL_F_CREATE: u16 = 1;
/// `flr_flags`: fail with EEXIST if the label exists.
pub const IPV6_FL_F_EXCL: u16 = 2;
/// `flr_flags`: reflect the peer's label (TCP only).
pub const IPV6_FL_F_REFLECT: u16 = 4;
/// `flr_flags` (getsockopt): read the label of the last packet received from the peer.
pub const IPV6_FL_F_REMOTE: u16 = 8;

/// `flr_share`: no sharing information (RENEW by an administrator).
pub const IPV6_FL_S_NONE: u8 = 0;
/// `flr_share`: only this socket.
pub const IPV6_FL_S_EXCL: u8 = 1;
/// `flr_share`: sockets of the same process.
pub const IPV6_FL_S_PROCESS: u8 = 2;
/// `flr_share`: sockets of the same user.
pub const IPV6_FL_S_USER: u8 = 3;
/// `flr_share`: anybody.
pub const IPV6_FL_S_ANY: u8 = 255;

/// `IPV6_FLOWINFO_FLOWLABEL`: the label bits of `sin6_flowinfo` (host order).
pub const IPV6_FLOWINFO_FLOWLABEL: u32 = 0x000f_ffff;
/// `IPV6_FLOWINFO_PRIORITY`: the traffic-class bits of `sin6_flowinfo` (host order).
pub const IPV6_FLOWINFO_PRIORITY: u32 = 0x0ff0_0000;

/// `struct in6_flowlabel_req` from `linux/in6.h`, byte for byte.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct In6FlowlabelReq {
    /// `flr_dst`: the destination the label is for (not `::` and not v4-mapped).
    pub flr_dst: libc::in6_addr,
    /// `flr_label`: the label in NETWORK byte order (`__be32`).
    pub flr_label: u32,
    pub flr_action: u8,
    pub flr_share: u8,
    pub flr_flags: u16,
    pub flr_expires: u16,
    pub flr_linger: u16,
    pub flr_pad: u32,
}

const _: () = assert!(size_of::<In6FlowlabelReq>() == 32);
const _: () = assert!(std::mem::offset_of!(In6FlowlabelReq, flr_label) == 16);
const _: () = assert!(std::mem::offset_of!(In6FlowlabelReq, flr_action) == 20);
const _: () = assert!(std::mem::offset_of!(In6FlowlabelReq, flr_flags) == 22);
const _: () = assert!(std::mem::offset_of!(In6FlowlabelReq, flr_linger) == 26);

impl In6FlowlabelReq {
    /// An all-zero request.
    pub fn zeroed() -> Self {
        In6FlowlabelReq {
            flr_dst: libc::in6_addr { s6_addr: [0; 16] },
            flr_label: 0,
            flr_action: 0,
            flr_share: 0,
            flr_flags: 0,
            flr_expires: 0,
            flr_linger: 0,
            flr_pad: 0,
        }
    }

    /// A request with `label` (host order, converted here to network order) and `dst`.
    pub fn new(dst: Ipv6Addr, label: u32, action: u8, share: u8, flags: u16) -> Self {
        let mut r = Self::zeroed();
        r.flr_dst.s6_addr = dst.octets();
        r.flr_label = label.to_be();
        r.flr_action = action;
        r.flr_share = share;
        r.flr_flags = flags;
        r
    }

    /// The label in host order.
    pub fn label(&self) -> u32 {
        u32::from_be(self.flr_label)
    }
}

/// The value to put in `SocketAddrV6::new(.., flowinfo, ..)` so the kernel sees `label`.
///
/// std and socket2 copy `flowinfo` into `sin6_flowinfo` without byte-order conversion
/// (rust-lang/rust#101605), while the kernel reads that field as `__be32`. So the host-order
/// label must be converted here, once.
pub fn flowinfo_for_label(label: u32, tclass: u8) -> u32 {
    ((u32::from(tclass) << 20) | (label & IPV6_FLOWINFO_FLOWLABEL)).to_be()
}

fn cvt(r: c_int) -> io::Result<c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cvt_size(r: isize) -> io::Result<usize> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// `setsockopt(fd, level, name, value, sizeof value)`. The value is passed mutably because the
/// kernel may write back (IPV6_FLOWLABEL_MGR GET with label 0 returns the label it chose).
fn setsockopt_raw<T>(fd: RawFd, level: c_int, name: c_int, value: &mut T) -> io::Result<()> {
    // SAFETY: `value` is a valid, writable object of `size_of::<T>()` bytes for the whole call.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *mut T).cast::<c_void>(),
            size_of::<T>() as socklen_t,
        )
    })
    .map(drop)
}

/// Sets an integer socket option.
pub fn set_int(fd: &impl AsRawFd, level: c_int, name: c_int, value: c_int) -> io::Result<()> {
    let mut v = value;
    setsockopt_raw(fd.as_raw_fd(), level, name, &mut v)
}

/// `setsockopt(IPV6_FLOWLABEL_MGR, req)`; the kernel may write `flr_label` back.
pub fn flowlabel_mgr(fd: &impl AsRawFd, req: &mut In6FlowlabelReq) -> io::Result<()> {
    setsockopt_raw(fd.as_raw_fd(), libc::IPPROTO_IPV6, IPV6_FLOWLABEL_MGR, req)
}

/// `getsockopt(IPV6_FLOWLABEL_MGR, req)`: `req` is read (action GET, flags) and overwritten.
pub fn flowlabel_mgr_query(fd: &impl AsRawFd, req: &mut In6FlowlabelReq) -> io::Result<()> {
    let mut len = size_of::<In6FlowlabelReq>() as socklen_t;
    // SAFETY: `req` is a valid writable `In6FlowlabelReq` and `len` holds its size.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IPV6,
            IPV6_FLOWLABEL_MGR,
            (req as *mut In6FlowlabelReq).cast::<c_void>(),
            &mut len,
        )
    })
    .map(drop)
}

/// The peer's last received label on a connected (TCP) socket with IPV6_FLOWINFO enabled:
/// getsockopt(IPV6_FLOWLABEL_MGR) on a zeroed request whose flags are IPV6_FL_F_REMOTE.
pub fn remote_flowlabel(fd: &impl AsRawFd) -> io::Result<u32> {
    let mut req = In6FlowlabelReq::zeroed();
    req.flr_action = IPV6_FL_A_GET;
    req.flr_flags = IPV6_FL_F_REMOTE;
    flowlabel_mgr_query(fd, &mut req)?;
    Ok(req.label() & IPV6_FLOWINFO_FLOWLABEL)
}

/// What `recv_with_flowinfo` received.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    /// Bytes of payload copied.
    pub len: usize,
    /// The datagram was longer than the buffer.
    pub truncated: bool,
    /// The sender.
    pub peer: Option<SocketAddr>,
    /// The IPV6_FLOWINFO ancillary data in host order (traffic class and label), if present.
    pub flowinfo: Option<u32>,
}

/// Converts a kernel socket address to std, IPv4 and IPv6 only.
fn sockaddr_to_std(ss: &libc::sockaddr_storage, len: socklen_t) -> Option<SocketAddr> {
    match c_int::from(ss.ss_family) {
        libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, which fits in it.
            let a = unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says the storage holds a sockaddr_in6, which fits in it.
            let a = unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                u32::from_be(a.sin6_flowinfo),
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// `recvmsg` one datagram into `buf`, returning the IPV6_FLOWINFO ancillary data if the socket
/// has it enabled (`set_int(fd, IPPROTO_IPV6, IPV6_FLOWINFO, 1)`) and the packet was IPv6.
pub fn recv_with_flowinfo(fd: &impl AsRawFd, buf: &mut [u8], flags: c_int) -> io::Result<Received> {
    // u64 array: cmsg buffers must be aligned for `cmsghdr`.
    let mut control = [0u64; 16];
    let mut ss = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast::<c_void>(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is a valid empty value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = ss.as_mut_ptr().cast::<c_void>();
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast::<c_void>();
    msg.msg_controllen = size_of::<[u64; 16]>() as _;
    // SAFETY: every pointer in `msg` refers to a live buffer of the stated length.
    let n = cvt_size(unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, flags) })?;
    // SAFETY: the storage was zeroed, and the kernel wrote at most `msg_namelen` bytes into it.
    let ss = unsafe { ss.assume_init() };
    let peer = sockaddr_to_std(&ss, msg.msg_namelen);
    let mut flowinfo = None;
    // SAFETY: CMSG_* walk the control buffer the kernel filled, bounded by msg_controllen.
    unsafe {
        let mut cm = libc::CMSG_FIRSTHDR(&msg);
        while !cm.is_null() {
            let h = &*cm;
            if h.cmsg_level == libc::IPPROTO_IPV6
                && h.cmsg_type == IPV6_FLOWINFO
                && h.cmsg_len as usize >= libc::CMSG_LEN(4) as usize
            {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(cm).cast::<u32>());
                flowinfo = Some(u32::from_be(v));
            }
            cm = libc::CMSG_NXTHDR(&msg, cm);
        }
    }
    Ok(Received {
        len: n,
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
        peer,
        flowinfo,
    })
}

/// Loops every sent packet back to the socket's error queue as the scheduler saw it (link-layer
/// header included): SO_TIMESTAMPING with SOF_TIMESTAMPING_TX_SCHED | SOF_TIMESTAMPING_SOFTWARE
/// and no OPT_TSONLY. `send --auto` reads the label the kernel chose from these copies.
pub fn enable_tx_loopback(fd: &impl AsRawFd) -> io::Result<()> {
    let flags = libc::SOF_TIMESTAMPING_TX_SCHED | libc::SOF_TIMESTAMPING_SOFTWARE;
    set_int(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPING, flags as c_int)
}

/// Reads one looped-back packet from the error queue without blocking.
pub fn recv_errqueue(fd: &impl AsRawFd, buf: &mut [u8]) -> io::Result<usize> {
    recv_with_flowinfo(fd, buf, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT).map(|r| r.len)
}

/// Opens an AF_PACKET SOCK_RAW socket bound to interface `ifindex` for sending whole frames.
/// Protocol 0: the socket receives nothing, so it needs no reading.
pub fn packet_socket(ifindex: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call.
    let fd = cvt(unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; all-zero is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = 0;
    sll.sll_ifindex = ifindex as c_int;
    // SAFETY: `sll` is a valid sockaddr_ll of the size passed.
    cvt(unsafe {
        libc::bind(
            owned.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast::<libc::sockaddr>(),
            size_of::<libc::sockaddr_ll>() as socklen_t,
        )
    })?;
    Ok(owned)
}

/// Sends one whole frame (link-layer header included) on a bound packet socket.
pub fn packet_send(fd: &impl AsRawFd, frame: &[u8]) -> io::Result<usize> {
    // SAFETY: `frame` is a valid buffer of `frame.len()` bytes.
    cvt_size(unsafe {
        libc::send(
            fd.as_raw_fd(),
            frame.as_ptr().cast::<c_void>(),
            frame.len(),
            0,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout_and_byte_order() {
        let r = In6FlowlabelReq::new(
            "fd00::1".parse().unwrap(),
            0x12345,
            IPV6_FL_A_GET,
            IPV6_FL_S_EXCL,
            IPV6_FL_F_CREATE,
        );
        // SAFETY: test-only view of a repr(C) plain-data struct as its 32 bytes.
        let bytes: [u8; 32] = unsafe { std::mem::transmute(r) };
        assert_eq!(bytes[0], 0xfd);
        assert_eq!(bytes[15], 1);
        assert_eq!(&bytes[16..20], &[0x00, 0x01, 0x23, 0x45]);
        assert_eq!(bytes[20], 0);
        assert_eq!(bytes[21], 1);
        assert_eq!(u16::from_ne_bytes([bytes[22], bytes[23]]), 1);
        assert_eq!(r.label(), 0x12345);
    }

    #[test]
    fn flowinfo_is_network_order() {
        let v = flowinfo_for_label(0x12345, 0);
        assert_eq!(v.to_ne_bytes(), [0x00, 0x01, 0x23, 0x45]);
        let v = flowinfo_for_label(0xfffff, 0xb8);
        assert_eq!(v.to_ne_bytes(), [0x0b, 0x8f, 0xff, 0xff]);
    }
}
