//! `struct in6_flowlabel_req` and the IPv6 flow-label socket options of `linux/in6.h`.
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

use std::io;
use std::mem::size_of;
use std::net::Ipv6Addr;
use std::os::fd::AsRawFd;

use libc::c_int;

use super::fd::{getsockopt, setsockopt};

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

/// `setsockopt(IPV6_FLOWLABEL_MGR, req)`; the kernel may write `flr_label` back.
pub fn flowlabel_mgr(fd: &impl AsRawFd, req: &mut In6FlowlabelReq) -> io::Result<()> {
    setsockopt(fd.as_raw_fd(), libc::IPPROTO_IPV6, IPV6_FLOWLABEL_MGR, req)
}

/// `getsockopt(IPV6_FLOWLABEL_MGR, req)`: `req` is read (action GET, flags) and overwritten.
pub fn flowlabel_mgr_query(fd: &impl AsRawFd, req: &mut In6FlowlabelReq) -> io::Result<()> {
    getsockopt(fd.as_raw_fd(), libc::IPPROTO_IPV6, IPV6_FLOWLABEL_MGR, req).map(drop)
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
