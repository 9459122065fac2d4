//! `send`: UDP datagrams or one TCP connection with the flow label the user chose, set the
//! kernel's way, or with the label the kernel chooses (`--auto`), reported back.
//!
//! Call sequence for a chosen label L (as in the kernel selftest `ipv6_flowlabel.c`):
//! 1. `socket(AF_INET6, ...)`, optional `SO_BINDTODEVICE`, `bind(--from)`, `IPV6_TCLASS`;
//! 2. `setsockopt(IPV6_FLOWLABEL_MGR, {action GET, flags CREATE, share, linger, dst, htonl(L)})`;
//! 3. `setsockopt(IPV6_FLOWINFO_SEND, 1)`;
//! 4. `sendto`/`connect` with `sin6_flowinfo = htonl(L)` — std and socket2 do not convert
//!    (rust-lang/rust#101605), so [`sys::flowinfo_for_label`] does;
//! 5. `setsockopt(IPV6_FLOWLABEL_MGR, {action PUT, htonl(L)})` when done (TCP: after the peer
//!    closed, because PUT clears the socket's label and later segments would go unlabelled).
//!
//! `--auto`: IPV6_AUTOFLOWLABEL on. The kernel derives the label from the flow hash when the
//! packet is built, and no socket option reads it back (getsockopt IPV6_FLOWLABEL_MGR only knows
//! leased, reflected or remote labels). So the sender asks the kernel to loop every sent packet
//! back to the socket's error queue as the packet scheduler saw it (SO_TIMESTAMPING with
//! SOF_TIMESTAMPING_TX_SCHED, without OPT_TSONLY, allowed by default `net.core.tstamp_allow_data=1`)
//! and reads the label from the IPv6 header of those copies. This is exact (the bytes handed to
//! the device) and needs no privilege.

use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};

use super::errors::{self, LeaseFacts, LeaseRequest, SendError};
use super::{Proto, Share, sys};
use crate::FlowLabel;

/// How long `--auto` waits for the looped-back copies: the first packets to a new neighbour
/// wait for neighbour discovery, which retries after one second.
const AUTO_WAIT: Duration = Duration::from_secs(3);

/// Largest UDP payload over IPv6 (65535 - 8) and IPv4 (65535 - 20 - 8).
pub const MAX_UDP_PAYLOAD_V6: usize = 65527;
/// Largest UDP payload over IPv4.
pub const MAX_UDP_PAYLOAD_V4: usize = 65507;

/// How the label is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelMode {
    /// Label 0: IPV6_AUTOFLOWLABEL off, no lease.
    Unlabelled,
    /// This label, leased through IPV6_FLOWLABEL_MGR.
    Fixed(FlowLabel),
    /// The kernel chooses (IPV6_AUTOFLOWLABEL on); the label seen is reported.
    Auto,
}

/// Whether the lease creates the label (`flr_flags`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CreateMode {
    /// IPV6_FL_F_CREATE: create it, or join it if it exists and the share mode allows.
    #[default]
    Create,
    /// IPV6_FL_F_CREATE | IPV6_FL_F_EXCL: create it, fail (EEXIST) if it exists.
    Fresh,
    /// No flag: only join an existing label (ENOENT otherwise).
    Join,
}

/// Everything `send` needs.
#[derive(Clone, Debug)]
pub struct SendConfig {
    /// Destination address.
    pub to: IpAddr,
    /// Destination port.
    pub port: u16,
    /// UDP or TCP.
    pub proto: Proto,
    /// The label.
    pub label: LabelMode,
    /// Datagrams (UDP) or writes (TCP).
    pub count: u64,
    /// Packets (writes) per second; `None` is as fast as possible.
    pub rate: Option<f64>,
    /// Payload bytes per datagram or write.
    pub size: usize,
    /// Source address to bind.
    pub from: Option<IpAddr>,
    /// Interface: SO_BINDTODEVICE and the scope id of a link-local destination.
    pub iface: Option<String>,
    /// Traffic class (IPV6_TCLASS).
    pub tclass: Option<u8>,
    /// Share mode of the lease.
    pub share: Share,
    /// Linger of the lease in seconds (kernel minimum 6; above 150 needs CAP_NET_ADMIN).
    pub linger: u16,
    /// Expiry of the lease in seconds.
    pub expires: u16,
    /// Create, create-fresh or join.
    pub create: CreateMode,
    /// Connect and close timeout for TCP.
    pub timeout: Duration,
    /// The scope id of a link-local destination given as `fe80::1%IFACE` or `%INDEX` (`--iface`
    /// gives it too, and binds to the device).
    pub scope_id: Option<u32>,
    /// Stop early (with a report of what was sent) when this signal arrives.
    pub stop: Option<crate::sys::signals::StopSignal>,
}

impl SendConfig {
    /// A UDP config with defaults: one 64-byte datagram, share excl, linger 6 s.
    pub fn new(to: IpAddr, port: u16, label: LabelMode) -> Self {
        SendConfig {
            to,
            port,
            proto: Proto::Udp,
            label,
            count: 1,
            rate: None,
            size: 64,
            from: None,
            iface: None,
            tclass: None,
            share: Share::Excl,
            linger: 6,
            expires: 0,
            create: CreateMode::Create,
            timeout: Duration::from_secs(5),
            scope_id: None,
            stop: None,
        }
    }
}

/// What `send` did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SendReport {
    /// `udp` or `tcp`.
    pub proto: Proto,
    /// Destination.
    pub to: String,
    /// The local address the kernel used.
    pub local: Option<String>,
    /// `leased`, `auto` or `none`.
    pub label_mode: &'static str,
    /// The label the packets carried (auto: the one seen on the looped-back copies, if unique).
    pub flow_label: Option<FlowLabel>,
    /// Auto: every distinct label seen on the looped-back copies, in order of appearance.
    pub observed_labels: Vec<FlowLabel>,
    /// Datagrams (UDP) or writes (TCP) sent.
    pub packets: u64,
    /// Payload bytes sent.
    pub bytes: u64,
    /// Wall time from the first to the last send, seconds.
    pub elapsed_s: f64,
    /// Achieved packets (writes) per second.
    pub rate_pps: f64,
    /// The signal that stopped the run before `count` (`SIGINT`, `SIGTERM`), if one did.
    pub stopped_by: Option<&'static str>,
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> SendError {
    let c = context.into();
    move |e| SendError::io(c, e)
}

/// Checks the configuration before any socket is opened.
fn validate(cfg: &SendConfig) -> Result<(), SendError> {
    if cfg.to.is_ipv4() && cfg.label != LabelMode::Unlabelled {
        return Err(SendError::Usage(format!(
            "{} is an IPv4 address: IPv4 has no flow label, so --label and --auto need an IPv6 destination",
            cfg.to
        )));
    }
    if let (Some(f), to) = (cfg.from, cfg.to)
        && f.is_ipv4() != to.is_ipv4()
    {
        return Err(SendError::Usage(format!(
            "--from {f} and --to {to} are of different address families"
        )));
    }
    if cfg.port == 0 {
        return Err(SendError::Usage(
            "--port 0 is not a destination port: the kernel refuses to send to port 0 (EINVAL); \
             give a port from 1 to 65535"
                .to_string(),
        ));
    }
    if let IpAddr::V6(a) = cfg.to
        && is_link_local(a)
        && cfg.iface.is_none()
        && cfg.scope_id.is_none()
    {
        return Err(SendError::Usage(format!(
            "{a} is a link-local address: say which link with --iface or {a}%IFACE"
        )));
    }
    if cfg.proto == Proto::Udp {
        let max = if cfg.to.is_ipv4() {
            MAX_UDP_PAYLOAD_V4
        } else {
            MAX_UDP_PAYLOAD_V6
        };
        if cfg.size > max {
            return Err(SendError::Usage(format!(
                "--size {} is larger than the largest UDP payload ({max} bytes)",
                cfg.size
            )));
        }
    }
    if let Some(r) = cfg.rate
        && !(r.is_finite() && r > 0.0)
    {
        return Err(SendError::Usage(format!(
            "--rate must be a positive number of packets per second, not {r}"
        )));
    }
    if matches!(cfg.label, LabelMode::Fixed(_))
        && (cfg.linger > errors::MAX_UNPRIVILEGED_LINGER
            || cfg.expires > errors::MAX_UNPRIVILEGED_LINGER)
        && !errors::Capability::NetAdmin.held()
    {
        return Err(SendError::MissingCapability {
            cap: errors::Capability::NetAdmin,
            what: format!(
                "a flow-label linger/expiry above {} s (asked {} s / {} s)",
                errors::MAX_UNPRIVILEGED_LINGER,
                cfg.linger,
                cfg.expires
            ),
        });
    }
    Ok(())
}

/// Opens and prepares the socket: device, source, traffic class.
fn open_socket(cfg: &SendConfig) -> Result<(Socket, u32), SendError> {
    let sock = cfg.proto.socket(cfg.to)?;
    let mut scope = cfg.scope_id.unwrap_or(0);
    if let Some(ifname) = &cfg.iface {
        scope = nix::net::if_::if_nametoindex(ifname.as_str())
            .map_err(|e| SendError::io(format!("interface {ifname}"), std::io::Error::from(e)))?;
        if let Some(id) = cfg.scope_id
            && id != scope
        {
            return Err(SendError::Usage(format!(
                "the destination's scope id {id} is not --iface {ifname} (index {scope})"
            )));
        }
        sock.bind_device(Some(ifname.as_bytes())).map_err(|e| {
            if e.raw_os_error() == Some(libc::EPERM) {
                SendError::MissingCapability {
                    cap: errors::Capability::NetRaw,
                    what: format!("binding to interface {ifname}"),
                }
            } else {
                SendError::io(format!("binding to interface {ifname}"), e)
            }
        })?;
    }
    if let Some(from) = cfg.from {
        let sa = match from {
            IpAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(
                a,
                0,
                0,
                if is_link_local(a) { scope } else { 0 },
            )),
            IpAddr::V4(a) => SocketAddr::new(IpAddr::V4(a), 0),
        };
        sock.bind(&sa.into())
            .map_err(io_err(format!("binding to source {from}")))?;
    }
    if let Some(tc) = cfg.tclass {
        if cfg.to.is_ipv4() {
            sock.set_tos_v4(u32::from(tc))
                .map_err(io_err("setting the TOS"))?;
        } else {
            sock.set_tclass_v6(u32::from(tc))
                .map_err(io_err("setting IPV6_TCLASS"))?;
        }
    }
    Ok((sock, scope))
}

fn is_link_local(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// Leases `label` on `sock` for destination `dst` and turns IPV6_FLOWINFO_SEND on.
fn lease(
    sock: &Socket,
    cfg: &SendConfig,
    dst: Ipv6Addr,
    label: FlowLabel,
) -> Result<(), SendError> {
    let flags = match cfg.create {
        CreateMode::Create => sys::IPV6_FL_F_CREATE,
        CreateMode::Fresh => sys::IPV6_FL_F_CREATE | sys::IPV6_FL_F_EXCL,
        CreateMode::Join => 0,
    };
    let mut req = sys::In6FlowlabelReq::new(
        dst,
        label.value(),
        sys::IPV6_FL_A_GET,
        cfg.share.raw(),
        flags,
    );
    req.flr_linger = cfg.linger;
    req.flr_expires = cfg.expires;
    if let Err(e) = sys::flowlabel_mgr(sock, &mut req) {
        let errno = e.raw_os_error().unwrap_or(0);
        let lr = LeaseRequest {
            label,
            share: cfg.share,
            linger: cfg.linger,
            expires: cfg.expires,
            create: flags & sys::IPV6_FL_F_CREATE != 0,
            exclusive_create: flags & sys::IPV6_FL_F_EXCL != 0,
        };
        return Err(SendError::Refused(Box::new(errors::explain_lease(
            errno,
            &lr,
            &LeaseFacts::current(label),
        ))));
    }
    tracing::debug!(label = %label, share = cfg.share.name(), "leased flow label");
    sys::set_int(sock, libc::IPPROTO_IPV6, sys::IPV6_FLOWINFO_SEND, 1)
        .map_err(io_err("setting IPV6_FLOWINFO_SEND"))
}

/// Releases the lease (IPV6_FL_A_PUT).
fn release(sock: &Socket, label: FlowLabel) -> Result<(), SendError> {
    let mut req = sys::In6FlowlabelReq::new(
        Ipv6Addr::UNSPECIFIED,
        label.value(),
        sys::IPV6_FL_A_PUT,
        0,
        0,
    );
    sys::flowlabel_mgr(sock, &mut req).map_err(|e| {
        SendError::Refused(Box::new(errors::explain_release(
            e.raw_os_error().unwrap_or(0),
            label,
        )))
    })
}

/// Finds the IPv6 header of a looped-back copy (no link header, Ethernet, SLL, VLAN) by its
/// destination address and returns its label.
pub fn label_in_looped_packet(buf: &[u8], dst: Ipv6Addr) -> Option<FlowLabel> {
    [0usize, 14, 18, 16, 4].into_iter().find_map(|off| {
        let h = buf.get(off..off + 40)?;
        (h[0] >> 4 == 6 && h[24..40] == dst.octets())
            .then(|| FlowLabel::from_low_bits(u32::from_be_bytes([h[0], h[1], h[2], h[3]])))
    })
}

/// Collects the labels of the looped-back copies of what was sent: the label `--auto` reports,
/// and a check that a leased label really went out.
struct WireObserver {
    dst: Ipv6Addr,
    buf: Vec<u8>,
    seen: u64,
    labels: Vec<FlowLabel>,
}

impl WireObserver {
    fn new(sock: &Socket, dst: Ipv6Addr) -> Result<Self, SendError> {
        sys::enable_tx_loopback(sock)
            .map_err(io_err("enabling SO_TIMESTAMPING packet loopback"))?;
        Ok(WireObserver {
            dst,
            buf: vec![0; 65536 + 128],
            seen: 0,
            labels: Vec::new(),
        })
    }

    /// Reads whatever is queued, without blocking.
    fn drain(&mut self, sock: &Socket) {
        while let Ok(n) = sys::recv_errqueue(sock, &mut self.buf) {
            if let Some(l) = label_in_looped_packet(&self.buf[..n], self.dst) {
                self.seen += 1;
                if !self.labels.contains(&l) {
                    self.labels.push(l);
                }
            }
        }
    }

    /// Waits up to `limit` for at least `want` copies.
    fn wait(&mut self, sock: &Socket, want: u64, limit: Duration) {
        let end = Instant::now() + limit;
        loop {
            self.drain(sock);
            if self.seen >= want || Instant::now() >= end {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The source address the kernel's route lookup picks for `dest`; no packet is sent.
fn route_source(cfg: &SendConfig, dest: &SockAddr) -> Option<IpAddr> {
    let domain = if cfg.to.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, None).ok()?;
    if let Some(i) = &cfg.iface {
        s.bind_device(Some(i.as_bytes())).ok()?;
    }
    s.connect(dest).ok()?;
    s.local_addr().ok()?.as_socket().map(|a| a.ip())
}

/// Sleeps until packet `i` is due under `rate`; false when a stop signal came first.
fn pace(
    start: Instant,
    i: u64,
    rate: Option<f64>,
    stop: Option<&sys::signals::StopSignal>,
) -> bool {
    match rate {
        Some(r) => super::sleep_until(start + Duration::from_secs_f64(i as f64 / r), stop),
        None => !super::stop_asked(stop),
    }
}

/// Sends as configured and reports what was sent.
pub fn send(cfg: &SendConfig) -> Result<SendReport, SendError> {
    send_with_progress(cfg, |_| {})
}

/// Like [`send`], calling `progress(packets sent)` after every datagram or write.
pub fn send_with_progress(
    cfg: &SendConfig,
    mut progress: impl FnMut(u64),
) -> Result<SendReport, SendError> {
    // Label 0 is "unlabelled". Leasing it would make the kernel pick a random label instead.
    let normalized;
    let cfg = if cfg.label == LabelMode::Fixed(FlowLabel::ZERO) {
        normalized = SendConfig {
            label: LabelMode::Unlabelled,
            ..cfg.clone()
        };
        &normalized
    } else {
        cfg
    };
    validate(cfg)?;
    let (sock, scope) = open_socket(cfg)?;
    let dst6 = match cfg.to {
        IpAddr::V6(a) => Some(a),
        IpAddr::V4(_) => None,
    };
    let mut flowinfo = 0;
    let mut observer = None;
    if let Some(dst) = dst6 {
        flowinfo = label_socket(&sock, cfg, dst)?;
        observer = Some(WireObserver::new(&sock, dst)?);
    }
    let dest = destination(cfg, flowinfo, scope);
    let fixed = match cfg.label {
        LabelMode::Fixed(l) if dst6.is_some() => Some(l),
        _ => None,
    };
    let send_refusal = |e: std::io::Error, op: &str| match (fixed, e.raw_os_error()) {
        (Some(l), Some(errno)) if errno == libc::EINVAL => {
            SendError::Refused(Box::new(errors::explain_send(errno, l, op)))
        }
        _ => SendError::io(format!("{op} {}", cfg.to), e),
    };

    let mut run = Run {
        sock: &sock,
        cfg,
        dest: &dest,
        observer: observer.as_mut(),
        packets: 0,
        bytes: 0,
        clock: super::SendClock::default(),
    };
    match cfg.proto {
        Proto::Udp => run.udp(&send_refusal, &mut progress)?,
        Proto::Tcp => run.tcp(&send_refusal, &mut progress)?,
    }
    let (packets, bytes, clock) = (run.packets, run.bytes, run.clock);
    let local = local_text(&sock, cfg, &dest);
    if let Some(l) = fixed {
        release(&sock, l)?;
    }
    let observed = observer.map(|o| o.labels).unwrap_or_default();
    let (label_mode, flow_label) = reported_label(cfg, dst6, &observed);
    Ok(SendReport {
        proto: cfg.proto,
        to: match cfg.to {
            IpAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(a, cfg.port, 0, 0)).to_string(),
            IpAddr::V4(a) => SocketAddr::new(IpAddr::V4(a), cfg.port).to_string(),
        },
        local,
        label_mode,
        flow_label,
        observed_labels: observed,
        packets,
        bytes,
        elapsed_s: clock.elapsed_s(),
        rate_pps: clock.rate(packets),
        stopped_by: cfg.stop.as_ref().and_then(|s| s.received()),
    })
}

/// Sets the IPv6 socket up for the label of `cfg` towards `dst`: fragmentation allowed for UDP,
/// then the label leased (fixed), or automatic labels on or off. Returns the flowinfo to send
/// with (the leased label, or 0).
fn label_socket(sock: &Socket, cfg: &SendConfig, dst: Ipv6Addr) -> Result<u32, SendError> {
    if cfg.proto == Proto::Udp {
        // Datagrams above the path MTU are fragmented by the kernel (this is the default;
        // set explicitly so a changed default cannot turn --size into EMSGSIZE).
        sys::set_int(sock, libc::IPPROTO_IPV6, sys::IPV6_DONTFRAG, 0)
            .map_err(io_err("clearing IPV6_DONTFRAG"))?;
    }
    let mut flowinfo = 0;
    match cfg.label {
        LabelMode::Fixed(l) => {
            lease(sock, cfg, dst, l)?;
            flowinfo = sys::flowinfo_for_label(l.value(), 0);
        }
        LabelMode::Auto => {
            sys::set_int(sock, libc::IPPROTO_IPV6, sys::IPV6_AUTOFLOWLABEL, 1)
                .map_err(io_err("setting IPV6_AUTOFLOWLABEL"))?;
        }
        LabelMode::Unlabelled => {
            sys::set_int(sock, libc::IPPROTO_IPV6, sys::IPV6_AUTOFLOWLABEL, 0)
                .map_err(io_err("turning IPV6_AUTOFLOWLABEL off"))?;
        }
    }
    Ok(flowinfo)
}

/// The address to send to: with the flowinfo, and the scope id for a link-local IPv6 address.
fn destination(cfg: &SendConfig, flowinfo: u32, scope: u32) -> SockAddr {
    match cfg.to {
        IpAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(
            a,
            cfg.port,
            flowinfo,
            if is_link_local(a) { scope } else { 0 },
        ))
        .into(),
        IpAddr::V4(a) => SocketAddr::new(IpAddr::V4(a), cfg.port).into(),
    }
}

/// One send in progress: the socket, where to, the observer of the looped-back copies, and
/// what has been sent so far.
struct Run<'a> {
    sock: &'a Socket,
    cfg: &'a SendConfig,
    dest: &'a SockAddr,
    observer: Option<&'a mut WireObserver>,
    packets: u64,
    bytes: u64,
    clock: super::SendClock,
}

impl Run<'_> {
    /// Counts one datagram or write of `n` bytes and collects the labels seen so far.
    fn sent(&mut self, n: usize, progress: &mut impl FnMut(u64)) {
        self.packets += 1;
        progress(self.packets);
        self.bytes += n as u64;
        self.clock.tick();
        if let Some(o) = self.observer.as_mut() {
            o.drain(self.sock);
        }
    }

    /// `count` datagrams at the configured rate, then a wait for the copies of all of them.
    fn udp(
        &mut self,
        refusal: &dyn Fn(std::io::Error, &str) -> SendError,
        progress: &mut impl FnMut(u64),
    ) -> Result<(), SendError> {
        let cfg = self.cfg;
        let mut payload = vec![b'f'; cfg.size];
        let start = Instant::now();
        for i in 0..cfg.count {
            if !pace(start, i, cfg.rate, cfg.stop.as_ref()) {
                break;
            }
            stamp(&mut payload, i);
            let n = self
                .sock
                .send_to(&payload, self.dest)
                .map_err(|e| refusal(e, "sending to"))?;
            self.sent(n, progress);
        }
        if let Some(o) = self.observer.as_mut() {
            o.wait(self.sock, self.packets, AUTO_WAIT);
        }
        Ok(())
    }

    /// Connects, writes `count` times at the configured rate, closes our side and waits for
    /// the peer to close.
    fn tcp(
        &mut self,
        refusal: &dyn Fn(std::io::Error, &str) -> SendError,
        progress: &mut impl FnMut(u64),
    ) -> Result<(), SendError> {
        let (sock, cfg) = (self.sock, self.cfg);
        let mut payload = vec![b'f'; cfg.size];
        sock.connect_timeout(self.dest, cfg.timeout)
            .map_err(|e| refusal(e, "connecting to"))?;
        sock.set_tcp_nodelay(true)
            .map_err(io_err("setting TCP_NODELAY"))?;
        // The rate schedule starts with the first write, not with the handshake.
        let start = Instant::now();
        for i in 0..cfg.count {
            if !pace(start, i, cfg.rate, cfg.stop.as_ref()) {
                break;
            }
            stamp(&mut payload, i);
            write_all(sock, &payload).map_err(io_err(format!("writing to {}", cfg.to)))?;
            self.sent(payload.len(), progress);
        }
        if let Some(o) = self.observer.as_mut() {
            o.wait(sock, self.packets.min(1), AUTO_WAIT);
        }
        // Close our side, then wait for the peer to close, so every segment of ours (FIN
        // included) leaves while the socket still holds the label.
        sock.shutdown(std::net::Shutdown::Write)
            .map_err(io_err("closing the connection"))?;
        sock.set_read_timeout(Some(cfg.timeout))
            .map_err(io_err("setting a read timeout"))?;
        let mut sink = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        loop {
            match sock.recv(&mut sink) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!("waiting for {} to close: {e}", cfg.to);
                    break;
                }
            }
        }
        Ok(())
    }
}

/// The local address as text; for an unbound UDP socket (`::`), the source the route lookup
/// picks.
fn local_text(sock: &Socket, cfg: &SendConfig, dest: &SockAddr) -> Option<String> {
    sock.local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map(|mut a| {
            // An unbound UDP socket shows `::`; report the source the route lookup picks.
            if a.ip().is_unspecified()
                && let Some(ip) = route_source(cfg, dest)
            {
                a.set_ip(ip);
            }
            a.to_string()
        })
}

/// The label mode and label to report, from what was asked and the labels `observed` on the
/// looped-back copies, warning when they disagree or when nothing could be seen.
fn reported_label(
    cfg: &SendConfig,
    dst6: Option<Ipv6Addr>,
    observed: &[FlowLabel],
) -> (&'static str, Option<FlowLabel>) {
    let single = if observed.len() == 1 {
        Some(observed[0])
    } else {
        None
    };
    match (cfg.label, dst6) {
        (_, None) => ("none", None),
        (LabelMode::Fixed(l), _) => {
            if observed.iter().any(|&o| o != l) {
                tracing::warn!("asked for label {l} but the kernel sent {observed:?}");
            }
            ("leased", Some(l))
        }
        // Label 0 unless the kernel forces automatic labels (net.ipv6.auto_flowlabels=3).
        (LabelMode::Unlabelled, _) => ("none", Some(single.unwrap_or(FlowLabel::ZERO))),
        (LabelMode::Auto, _) => {
            if observed.is_empty() {
                tracing::warn!(
                    "no looped-back copy of the sent packets was seen, so the label is unknown \
                     (net.core.tstamp_allow_data is {}; 0 withholds packet copies from \
                     processes without CAP_NET_RAW)",
                    errors::read_sysctl("net/core/tstamp_allow_data")
                        .map_or("unknown".into(), |v| v.to_string())
                );
            }
            if single == Some(FlowLabel::ZERO) {
                tracing::warn!(
                    "the kernel sent label 0: net.ipv6.auto_flowlabels is {} (0 disables automatic labels)",
                    errors::read_sysctl("net/ipv6/auto_flowlabels")
                        .map_or("unknown".into(), |v| v.to_string())
                );
            }
            ("auto", single)
        }
    }
}

/// Writes the sequence number into the first 8 payload bytes (when there is room).
fn stamp(payload: &mut [u8], seq: u64) {
    if let Some(head) = payload.get_mut(..8) {
        head.copy_from_slice(&seq.to_be_bytes());
    }
}

fn write_all(sock: &Socket, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        match sock.send(buf) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_label_behind_ethernet() {
        let dst: Ipv6Addr = "fd00::2".parse().unwrap();
        let mut frame = vec![0u8; 14 + 40];
        frame[12..14].copy_from_slice(&[0x86, 0xdd]);
        frame[14..18].copy_from_slice(&[0x60, 0x0a, 0xbc, 0xde]);
        frame[14 + 24..14 + 40].copy_from_slice(&dst.octets());
        assert_eq!(
            label_in_looped_packet(&frame, dst),
            Some(FlowLabel::new(0xabcde).unwrap())
        );
        assert_eq!(
            label_in_looped_packet(&frame[14..], dst),
            Some(FlowLabel::new(0xabcde).unwrap())
        );
        assert_eq!(label_in_looped_packet(&frame[..30], dst), None);
        assert_eq!(
            label_in_looped_packet(&frame, "fd00::3".parse().unwrap()),
            None
        );
    }

    #[test]
    fn rejects_label_for_ipv4_and_oversize() {
        let l = LabelMode::Fixed(FlowLabel::new(1).unwrap());
        let cfg = SendConfig::new("10.0.0.1".parse().unwrap(), 9, l);
        assert!(matches!(validate(&cfg), Err(SendError::Usage(_))));
        let mut cfg = SendConfig::new("fd00::1".parse().unwrap(), 9, l);
        cfg.size = MAX_UDP_PAYLOAD_V6 + 1;
        assert!(matches!(validate(&cfg), Err(SendError::Usage(_))));
        cfg.size = MAX_UDP_PAYLOAD_V6;
        assert!(validate(&cfg).is_ok());
        let cfg = SendConfig::new("fe80::1".parse().unwrap(), 9, l);
        assert!(matches!(validate(&cfg), Err(SendError::Usage(m)) if m.contains("--iface")));
    }

    #[test]
    fn stamps_sequence() {
        let mut p = [0u8; 10];
        stamp(&mut p, 0x0102);
        assert_eq!(&p[..8], &[0, 0, 0, 0, 0, 0, 1, 2]);
        let mut short = [9u8; 3];
        stamp(&mut short, 7);
        assert_eq!(short, [9; 3]);
    }

    proptest::proptest! {
        #[test]
        fn looped_packet_parsing_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..120)) {
            let _ = label_in_looped_packet(&data, Ipv6Addr::LOCALHOST);
        }
    }
}
