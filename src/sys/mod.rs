//! The only folder with `unsafe`: the raw kernel interface every other module calls through safe
//! functions. Modelled on socket2's `src/sys/unix.rs`: one `syscall!` macro (in [`fd`]) that turns `-1`
//! into `io::Error::last_os_error()`, one generic [`setsockopt`]/[`getsockopt`], and a documented
//! safe function per option.
//!
//! - [`fd`]: the syscall helpers, `setsockopt<T>`/`getsockopt<T>`, interface index, `poll`.
//! - [`packet`]: the AF_PACKET socket (`packet(7)`): bind, promiscuous mode, fanout, the drop-all
//!   filter, `PACKET_STATISTICS`, sending whole frames.
//! - [`ring`]: the TPACKET_V3 receive ring (`PACKET_RX_RING` + `mmap`) and the byte layouts of its
//!   block descriptor and frame header.
//! - [`flowlabel`]: `struct in6_flowlabel_req` and the IPv6 flow-label socket options.
//! - [`msg`]: `recvmsg` with the `IPV6_FLOWINFO` ancillary data, and the error queue.
//! - [`errno`]: the one table of errno names and words.
//! - [`signals`]: SIGINT/SIGTERM as a stop request, remembering which arrived (safe code, here
//!   beside the other process-level interfaces).
//! - [`netstat`]: the namespace's drop counters (listen overflows, UDP receive-buffer errors).
//! - [`caps`]: Linux capabilities: which this process holds, and the one hint text for a missing one.
//!
//! Every item is also re-exported here, so callers write `sys::bind`, `sys::set_int`, ...
//! Every `unsafe` block carries a `// SAFETY:` comment (`clippy::undocumented_unsafe_blocks` is
//! denied here), and `.ci/run` fails when `unsafe` appears outside this folder.
#![allow(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

#[macro_use]
pub mod fd;
pub mod caps;
pub mod errno;
pub mod flowlabel;
pub mod msg;
pub mod netstat;
pub mod packet;
pub mod ring;
pub mod signals;

pub use caps::Capability;
pub use fd::{dup, getsockopt, if_index, into_raw, poll_in, set_int, setsockopt, socket_error};
pub use flowlabel::*;
pub use msg::{Received, enable_tx_loopback, recv_errqueue, recv_with_flowinfo};
pub use packet::*;
pub use ring::{
    Ring, TP_STATUS_KERNEL, TP_STATUS_USER, TP_STATUS_VLAN_TPID_VALID, TP_STATUS_VLAN_VALID,
    TpacketReq3,
};
