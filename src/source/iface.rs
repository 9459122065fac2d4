//! Live capture from a network interface (AF_PACKET, root or CAP_NET_RAW): the sockets a
//! capture reads, which only produce frames. The session that reads them (workers, counts, the
//! exact stop) is `pipeline::live`.
//!
//! Two sources behind one [`Source`]:
//! - **ring** (the default): a TPACKET_V3 memory-mapped ring ([`super::ring`]); under a flood it
//!   keeps up with tcpdump where the pnet path falls far behind (docs/watch-keeping-up.md).
//! - **pnet** (`--source pnet`, the portable path): pnet's datalink channel, one `poll` +
//!   `recvfrom` per frame, on a socket opened here (`crate::sys`) and handed to pnet with
//!   `Config::socket_fd`, so its `PACKET_STATISTICS` can be read (and fanout joined) through a
//!   second descriptor. The read buffer holds 256 KiB frames (pnet's default 4096 bytes would
//!   cut loopback and GRO/GSO frames). VLAN tags the kernel stripped are lost on this path:
//!   the kernel hands them over only as `PACKET_AUXDATA` control messages, which pnet's
//!   `recvfrom` drops (restoring them would mean reading the socket with `recvmsg` ourselves,
//!   that is, not through pnet). The classification is the same (flowpol reads the IPv6 header
//!   behind the tags); byte counts and `--write` frames lack the tag. A one-time warning says so
//!   when the interface is or carries a VLAN device.
//!
//! With more than one worker the first socket creates a fanout group whose id the kernel picks
//! (`PACKET_FANOUT_FLAG_UNIQUEID`) and the others join it; the kernel's flow hash keeps each
//! flow on one worker. While the group forms every socket drops all frames with a socket filter,
//! so no frame is captured twice ([`Source::open_all`]). The kernel's counters are read with
//! `PACKET_STATISTICS`, which resets them on every read, so each worker accumulates its own, from
//! the moment its socket receives on.

use super::ring::RingSource;
use crate::packet::{Frame, LinkType};
use crate::sys;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// The pnet read buffer: room for any GSO/GRO frame up to 256 KiB (BIG TCP included).
pub const READ_BUFFER: usize = 256 * 1024;
/// The socket receive buffer asked for on the pnet path.
pub const RCVBUF: usize = 4 << 20;
/// How long a worker waits for a frame before looking at the stop flag again.
pub const POLL: Duration = Duration::from_millis(100);

/// Why a capture socket could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum IfaceError {
    #[error("{}", sys::caps::missing(&format_args!("capturing on {iface}"), sys::Capability::NetRaw))]
    NoCapability { iface: String },
    #[error("no network interface named {iface}")]
    NoInterface { iface: String },
    #[error("{what} on {iface}")]
    Io {
        what: &'static str,
        iface: String,
        source: io::Error,
    },
}

impl IfaceError {
    /// An I/O error doing `what` on `iface`.
    pub fn io<'a>(what: &'static str, iface: &'a str) -> impl FnOnce(io::Error) -> IfaceError + 'a {
        move |source| IfaceError::Io {
            what,
            iface: iface.to_string(),
            source,
        }
    }
}

/// The kernel's counters for the capture sockets, summed over workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelStats {
    /// Frames the kernel passed to the capture sockets (captured plus dropped).
    pub packets: u64,
    /// Frames the kernel dropped because a socket's buffer or ring was full.
    pub drops: u64,
    /// Times a TPACKET_V3 ring was frozen because user space had no free block (ring only).
    pub freeze_queue: u64,
}

impl KernelStats {
    fn add(&mut self, r: sys::RawStats) {
        self.packets += u64::from(r.packets);
        self.drops += u64::from(r.drops);
        self.freeze_queue += u64::from(r.freeze_q);
    }
    pub fn merge(&mut self, o: &KernelStats) {
        self.packets += o.packets;
        self.drops += o.drops;
        self.freeze_queue += o.freeze_queue;
    }
}

/// Which capture mechanism.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceKind {
    /// A TPACKET_V3 memory-mapped ring (the default: it keeps up with tcpdump under a flood,
    /// see docs/watch-keeping-up.md, and restores stripped VLAN tags as libpcap does).
    #[default]
    Ring,
    /// pnet's datalink channel: portable, but one poll + recvfrom per frame, and VLAN tags the
    /// kernel stripped are lost (pnet's `recvfrom` returns no `PACKET_AUXDATA`): tagged frames
    /// are classified alike but counted 4 bytes short and written untagged.
    Pnet,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Pnet => "pnet",
            SourceKind::Ring => "ring",
        }
    }
}

/// The pcap link type of an interface, from its ARPHRD type in sysfs.
pub fn link_type(iface: &str) -> LinkType {
    let t = std::fs::read_to_string(format!("/sys/class/net/{iface}/type")).unwrap_or_default();
    match t.trim() {
        // ARPHRD_NONE (tun) and ARPHRD_RAWIP: frames start at the IP header.
        "65534" | "519" => LinkType::RAW,
        // Ethernet, loopback (with a zeroed Ethernet header) and the rest.
        _ => LinkType::ETHERNET,
    }
}

/// True when `iface` is a VLAN device or has one on top (`ip link add link IF ... type vlan`),
/// read from sysfs under `root` (`/sys/class/net`): tagged frames then reach it, and the kernel
/// moves their outer tag into packet metadata, which pnet's `recvfrom` does not return.
fn carries_vlans_in(root: &Path, iface: &str) -> bool {
    let is_vlan = |dev: &Path| {
        std::fs::read_to_string(dev.join("uevent"))
            .is_ok_and(|u| u.lines().any(|l| l.trim() == "DEVTYPE=vlan"))
    };
    let dev = root.join(iface);
    is_vlan(&dev)
        || std::fs::read_dir(&dev)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("upper_") && is_vlan(&e.path()))
}

/// Says once, when pnet captures an interface known to carry VLAN tags, that it cannot see
/// the tags the kernel strips (pnet reads with `recvfrom`, without `PACKET_AUXDATA`; the ring
/// reads them from each frame's header). Interfaces that carry tagged frames without a VLAN
/// device (a mirror port, a veth) are not detected: the flag's documentation says it for all.
pub fn warn_pnet_vlans(iface: &str, link: LinkType) {
    if link == LinkType::ETHERNET && carries_vlans_in(Path::new("/sys/class/net"), iface) {
        tracing::warn!(
            "{iface} carries VLANs: with --source pnet, tags the kernel strips are not seen, so \
             tagged frames are counted 4 bytes short and --write saves them untagged (the \
             classification is the same); the default ring source puts them back"
        );
    }
}

/// A capture from pnet's datalink channel.
pub struct PnetSource {
    rx: Box<dyn pnet::datalink::DataLinkReceiver>,
    _tx: Box<dyn pnet::datalink::DataLinkSender>,
    /// A second descriptor of pnet's socket, for `PACKET_STATISTICS`.
    stats_fd: OwnedFd,
    link: LinkType,
    number: u64,
    /// Read the clock for each frame (only `--write` needs timestamps: pnet gives none, and a
    /// clock read costs as much as classifying on some machines).
    timestamps: bool,
}

impl PnetSource {
    /// Lends the next frame (if one arrives within the channel's timeout) to `f`.
    pub fn dispatch<F>(&mut self, mut f: F) -> io::Result<bool>
    where
        F: FnMut(&Frame<'_>) -> bool,
    {
        match self.rx.next() {
            Ok(data) => {
                self.number += 1;
                let ts = if self.timestamps {
                    SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap_or_default()
                } else {
                    Duration::ZERO
                };
                let frame = Frame {
                    number: self.number,
                    link: self.link,
                    ts,
                    orig_len: u32::try_from(data.len()).unwrap_or(u32::MAX),
                    data,
                };
                Ok(f(&frame))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(true)
            }
            // pnet reports a poll error as "Unexpected poll event" without reading it; the
            // socket's pending error says what happened (ENETDOWN when the interface went down
            // or away), as on the ring path.
            Err(e) => Err(sys::socket_error(self.stats_fd.as_raw_fd())
                .ok()
                .flatten()
                .unwrap_or(e)),
        }
    }
}

/// How a source takes part in fanout.
#[derive(Clone, Copy)]
enum Fanout<'a> {
    /// Create a group (the kernel picks a unique id) and store its id here.
    New(&'a std::cell::Cell<Option<u16>>),
    /// Join this group.
    Join(u16),
}

/// One worker's source.
pub enum Source {
    Pnet(PnetSource),
    Ring(RingSource),
}

fn socket(iface: &str) -> Result<OwnedFd, IfaceError> {
    sys::packet_socket().map_err(|e| match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => IfaceError::NoCapability {
            iface: iface.to_string(),
        },
        _ => IfaceError::io("opening a packet socket", iface)(e),
    })
}

impl Source {
    /// Opens a source on `iface`, in a fanout group when asked. `timestamps`: frames need
    /// their capture time (the ring always has it).
    fn open(
        kind: SourceKind,
        iface: &str,
        fanout: Option<Fanout<'_>>,
        timestamps: bool,
    ) -> Result<Source, IfaceError> {
        let ifindex = sys::if_index(iface).map_err(|_| IfaceError::NoInterface {
            iface: iface.to_string(),
        })?;
        let link = link_type(iface);
        let fd = socket(iface)?;
        if fanout.is_some() {
            // Silent until [`Source::open_all`] has the whole group formed (see there).
            sys::attach_drop_all(fd.as_raw_fd())
                .map_err(IfaceError::io("SO_ATTACH_FILTER", iface))?;
        }
        match kind {
            SourceKind::Pnet => {
                // Best effort: a larger buffer absorbs bursts; failure leaves the default.
                let _ = sys::set_rcvbuf(&fd, RCVBUF);
                let stats_fd = sys::dup(&fd).map_err(IfaceError::io("dup", iface))?;
                let ni = pnet::datalink::interfaces()
                    .into_iter()
                    .find(|i| i.name == iface)
                    .ok_or_else(|| IfaceError::NoInterface {
                        iface: iface.to_string(),
                    })?;
                let config = pnet::datalink::Config {
                    read_buffer_size: READ_BUFFER,
                    read_timeout: Some(POLL),
                    promiscuous: true,
                    // Fanout is joined below, once pnet has bound the socket.
                    linux_fanout: None,
                    socket_fd: Some(sys::into_raw(fd)),
                    ..Default::default()
                };
                match pnet::datalink::channel(&ni, config) {
                    Ok(pnet::datalink::Channel::Ethernet(tx, rx)) => {
                        let src = Source::Pnet(PnetSource {
                            rx,
                            _tx: tx,
                            stats_fd,
                            link,
                            number: 0,
                            timestamps,
                        });
                        src.join_fanout(fanout, iface)?;
                        Ok(src)
                    }
                    Ok(_) => Err(IfaceError::io("opening the pnet channel", iface)(
                        io::Error::other("unknown channel type"),
                    )),
                    Err(e) => Err(IfaceError::io("opening the pnet channel", iface)(e)),
                }
            }
            SourceKind::Ring => {
                let ring =
                    RingSource::new(fd, link).map_err(IfaceError::io("mapping the ring", iface))?;
                sys::bind(ring.fd(), ifindex).map_err(IfaceError::io("bind", iface))?;
                sys::promiscuous(ring.fd(), ifindex)
                    .map_err(IfaceError::io("promiscuous mode", iface))?;
                let src = Source::Ring(ring);
                src.join_fanout(fanout, iface)?;
                Ok(src)
            }
        }
    }

    fn raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            Source::Pnet(p) => p.stats_fd.as_raw_fd(),
            Source::Ring(r) => r.fd().as_raw_fd(),
        }
    }

    fn join_fanout(&self, fanout: Option<Fanout>, iface: &str) -> Result<(), IfaceError> {
        match fanout {
            None => Ok(()),
            Some(Fanout::Join(g)) => {
                sys::fanout_hash(self.raw_fd(), g).map_err(IfaceError::io("PACKET_FANOUT", iface))
            }
            Some(Fanout::New(cell)) => {
                let g = sys::fanout_hash_new(self.raw_fd())
                    .map_err(IfaceError::io("PACKET_FANOUT", iface))?;
                cell.set(Some(g));
                Ok(())
            }
        }
    }

    /// Opens the sources of `workers` workers on `iface`, joined in one new hash-mode fanout
    /// group (with a kernel-chosen id) when there is more than one.
    ///
    /// A socket must be bound (receiving) before it can join a group (`fanout_add` wants it
    /// running), and until it joins it gets every frame of the interface on its own hook, besides
    /// the group's copy. So each socket of a group starts with a drop-all filter (attached before
    /// bind, so nothing is ever queued and no drain is needed), and the filters come off only once
    /// every socket has joined: from then on the group's hook is the only path, and each frame
    /// goes to exactly one worker. In a group, a member's filter still applies to the frames the
    /// group hands it, so frames hashed to a member still filtered while the filters come off
    /// are dropped (a few microseconds before the workers start). Frames the filter drops are
    /// not accounted by the kernel at all: neither in `tp_packets` nor in `tp_drops`. A single
    /// worker has no group and no filter.
    pub fn open_all(
        kind: SourceKind,
        iface: &str,
        workers: usize,
        timestamps: bool,
    ) -> Result<Vec<Source>, IfaceError> {
        if workers <= 1 {
            return Ok(vec![Source::open(kind, iface, None, timestamps)?]);
        }
        let group = std::cell::Cell::new(None);
        let mut v = Vec::with_capacity(workers);
        for _ in 0..workers {
            let fanout = match group.get() {
                None => Fanout::New(&group),
                Some(g) => Fanout::Join(g),
            };
            v.push(Source::open(kind, iface, Some(fanout), timestamps)?);
        }
        for s in &v {
            sys::detach_filter(s.raw_fd()).map_err(IfaceError::io("SO_DETACH_FILTER", iface))?;
        }
        Ok(v)
    }

    pub fn link(&self) -> LinkType {
        match self {
            Source::Pnet(p) => p.link,
            Source::Ring(r) => r.link(),
        }
    }

    /// Waits up to `timeout` (the ring; pnet waits its channel's [`POLL`]) and lends frames to
    /// `f` until none is waiting or `f` returns false.
    #[inline]
    pub fn dispatch<F>(&mut self, timeout: Duration, f: F) -> io::Result<bool>
    where
        F: FnMut(&Frame<'_>) -> bool,
    {
        match self {
            Source::Pnet(p) => p.dispatch(f),
            Source::Ring(r) => r.dispatch(timeout, f),
        }
    }

    /// Frames taken from the socket so far, whatever was done with them.
    pub fn frames_read(&self) -> u64 {
        match self {
            Source::Pnet(p) => p.number,
            Source::Ring(r) => r.frames_read(),
        }
    }

    /// Stops the kernel from accepting frames for this socket (the drop-all filter): from here
    /// on the frames it accepted, counted in `PACKET_STATISTICS`, are a closed set to read.
    pub fn stop_accepting(&self) -> io::Result<()> {
        sys::attach_drop_all(self.raw_fd())
    }

    /// Reads (and resets) the kernel's counters of this socket.
    pub fn statistics(&self) -> io::Result<KernelStats> {
        let raw = match self {
            Source::Pnet(p) => sys::statistics(p.stats_fd.as_raw_fd(), false),
            Source::Ring(r) => r.statistics(),
        }?;
        let mut k = KernelStats::default();
        k.add(raw);
        Ok(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_type_of_unknown_interface_is_ethernet() {
        assert_eq!(link_type("no-such-if-0"), LinkType::ETHERNET);
    }

    #[test]
    fn vlan_devices_are_found_in_sysfs() {
        // A sysfs-like tree: eth0 with eth0.100 on top, eth1 alone, and a bridge on eth2.
        let root = tempfile::tempdir().unwrap();
        let dev = |name: &str, devtype: Option<&str>| {
            let d = root.path().join(name);
            std::fs::create_dir(&d).unwrap();
            let ty = devtype
                .map(|t| format!("DEVTYPE={t}\n"))
                .unwrap_or_default();
            std::fs::write(
                d.join("uevent"),
                format!("{ty}INTERFACE={name}\nIFINDEX=3\n"),
            )
            .unwrap();
        };
        dev("eth0", None);
        dev("eth0.100", Some("vlan"));
        dev("eth1", None);
        dev("eth2", None);
        dev("br0", Some("bridge"));
        let up = |lower: &str, upper: &str| {
            std::os::unix::fs::symlink(
                root.path().join(upper),
                root.path().join(lower).join(format!("upper_{upper}")),
            )
            .unwrap();
        };
        up("eth0", "eth0.100");
        up("eth2", "br0");
        let r = root.path();
        assert!(carries_vlans_in(r, "eth0"));
        assert!(carries_vlans_in(r, "eth0.100"));
        assert!(!carries_vlans_in(r, "eth1"));
        assert!(!carries_vlans_in(r, "eth2"));
        assert!(!carries_vlans_in(r, "no-such-if"));
    }
}
