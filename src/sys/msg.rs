//! `recvmsg` with its ancillary data: the `IPV6_FLOWINFO` control message a receiver reads the
//! label from, and the error queue `send --auto` reads its looped-back packets from.

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use libc::{c_int, c_void, socklen_t};

use super::fd::set_int;
use super::flowlabel::IPV6_FLOWINFO;

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
    let n = syscall!(recvmsg(fd.as_raw_fd(), &mut msg, flags))? as usize;
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
