//! The IPv4/IPv6 interoperability probe: which server listen address accepts which client
//! connect address on this host, what peer address the server sees, and, for every failure,
//! the step that failed and the error in words.
//!
//! [`plan`] turns the host's addresses into the listen and connect lists (a pure function),
//! [`probe_pair`] measures one pair with real sockets, every step bounded by a deadline, and
//! [`run`] measures the whole matrix. Only the host's own addresses are ever contacted: the
//! connect list holds loopback addresses and addresses found on the host's interfaces.
//! [`render_table`], [`render_markdown`] and [`render_json`] present a [`Report`].

use super::{AddrKind, Context, HostAddr};
use crate::sys::errno;
use serde::Serialize;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The transport protocol probed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// bind, listen, connect, accept.
    Tcp,
    /// bind, connect, send a datagram, receive it, reply, receive the reply.
    Udp,
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// How the server socket is set up and bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listen {
    /// The address bound.
    pub ip: IpAddr,
    /// `sin6_scope_id` given to bind(2); 0 for none.
    pub scope_id: u32,
    /// IPV6_V6ONLY set before bind; None leaves the default (`net.ipv6.bindv6only`).
    pub v6only: Option<bool>,
    /// Interface the socket is bound to with SO_BINDTODEVICE before bind(2).
    pub device: Option<String>,
    /// Name of the interface of a link-local address (for display).
    pub iface: Option<String>,
}

impl Listen {
    fn plain(ip: IpAddr) -> Listen {
        Listen {
            ip,
            scope_id: 0,
            v6only: None,
            device: None,
            iface: None,
        }
    }

    /// The address as text, with `%iface` when a scope id is given.
    pub fn addr_text(&self) -> String {
        scoped_text(self.ip, self.scope_id, self.iface.as_deref())
    }

    /// The address with the socket options that matter, for tables.
    pub fn label(&self) -> String {
        let base = self.addr_text();
        match (&self.device, self.v6only) {
            (Some(dev), _) => format!("{base} (SO_BINDTODEVICE {dev})"),
            (None, Some(v)) => format!("{base} (V6ONLY {})", if v { "on" } else { "off" }),
            (None, None)
                if AddrKind::of(self.ip) == AddrKind::LinkLocal
                    && self.ip.is_ipv6()
                    && self.scope_id == 0 =>
            {
                format!("{base} (no scope id)")
            }
            (None, None) => base,
        }
    }

    /// The socket address handed to bind(2) (port 0: the kernel picks one).
    pub fn sockaddr(&self) -> SocketAddr {
        sockaddr(self.ip, 0, self.scope_id)
    }
}

/// Where the client connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connect {
    /// The address connected to.
    pub ip: IpAddr,
    /// `sin6_scope_id` given to connect(2); 0 for none.
    pub scope_id: u32,
    /// Name of the interface of a link-local address (for display).
    pub iface: Option<String>,
}

impl Connect {
    fn plain(ip: IpAddr) -> Connect {
        Connect {
            ip,
            scope_id: 0,
            iface: None,
        }
    }

    /// The address as text, with `%iface` when a scope id is given.
    pub fn addr_text(&self) -> String {
        scoped_text(self.ip, self.scope_id, self.iface.as_deref())
    }

    /// The socket address handed to connect(2).
    pub fn sockaddr(&self, port: u16) -> SocketAddr {
        sockaddr(self.ip, port, self.scope_id)
    }
}

fn scoped_text(ip: IpAddr, scope_id: u32, iface: Option<&str>) -> String {
    match (ip, scope_id) {
        (IpAddr::V6(_), 0) | (IpAddr::V4(_), _) => ip.to_string(),
        (IpAddr::V6(_), s) => match iface {
            Some(name) => format!("{ip}%{name}"),
            None => format!("{ip}%{s}"),
        },
    }
}

fn sockaddr(ip: IpAddr, port: u16, scope_id: u32) -> SocketAddr {
    match ip {
        IpAddr::V4(a) => SocketAddr::V4(SocketAddrV4::new(a, port)),
        IpAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(a, port, 0, scope_id)),
    }
}

/// The listen and connect lists for the host addresses `addrs` (discovered and `--addr`):
///
/// - listen: `::` with IPV6_V6ONLY off and on, `::1`, `0.0.0.0`, `127.0.0.1`, then each other
///   loopback, routable IPv4, routable IPv6 address, each IPv6 link-local address three times
///   (without scope id, with scope id, with SO_BINDTODEVICE), each IPv4 link-local address;
/// - connect: `127.0.0.1`, `::1`, then the same addresses once each (IPv6 link-local with its
///   scope id).
///
/// Duplicates, unspecified, multicast and IPv4-mapped addresses are left out. Within a group
/// the order of `addrs` is kept.
pub fn plan(addrs: &[HostAddr]) -> (Vec<Listen>, Vec<Connect>) {
    let lo4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let lo6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let mut listens = vec![
        Listen {
            v6only: Some(false),
            ..Listen::plain(Ipv6Addr::UNSPECIFIED.into())
        },
        Listen {
            v6only: Some(true),
            ..Listen::plain(Ipv6Addr::UNSPECIFIED.into())
        },
        Listen::plain(lo6),
        Listen::plain(Ipv4Addr::UNSPECIFIED.into()),
        Listen::plain(lo4),
    ];
    let mut connects = vec![Connect::plain(lo4), Connect::plain(lo6)];

    // Group rank: extra loopbacks, routable v4, routable v6, link-local v6, link-local v4.
    let rank = |a: &HostAddr| match (a.kind(), a.ip.is_ipv4()) {
        (AddrKind::Loopback, _) => Some(0),
        (AddrKind::Routable, true) => Some(1),
        (AddrKind::Routable, false) => Some(2),
        (AddrKind::LinkLocal, false) => Some(3),
        (AddrKind::LinkLocal, true) => Some(4),
        _ => None,
    };
    let mut chosen: Vec<(u8, &HostAddr)> = Vec::new();
    for a in addrs {
        let Some(r) = rank(a) else { continue };
        if a.ip == lo4 || a.ip == lo6 {
            continue;
        }
        // A link-local IPv6 address is distinct per interface; any other only by value.
        let dup = chosen
            .iter()
            .any(|(_, b)| b.ip == a.ip && (r != 3 || b.ifindex == a.ifindex));
        if !dup {
            chosen.push((r, a));
        }
    }
    chosen.sort_by_key(|(r, _)| *r); // stable: keeps the order of `addrs` within a group

    for (r, a) in chosen {
        if r == 3 {
            let iface = Some(a.iface.clone());
            listens.push(Listen::plain(a.ip));
            listens.push(Listen {
                scope_id: a.ifindex,
                iface: iface.clone(),
                ..Listen::plain(a.ip)
            });
            listens.push(Listen {
                device: Some(a.iface.clone()),
                ..Listen::plain(a.ip)
            });
            connects.push(Connect {
                ip: a.ip,
                scope_id: a.ifindex,
                iface,
            });
        } else {
            listens.push(Listen::plain(a.ip));
            connects.push(Connect::plain(a.ip));
        }
    }
    (listens, connects)
}

/// The step of an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// socket(2).
    Socket,
    /// setsockopt(2): IPV6_V6ONLY, SO_BINDTODEVICE or a timeout.
    Setsockopt,
    /// bind(2) of the server.
    Bind,
    /// listen(2) of the TCP server.
    Listen,
    /// connect(2) of the client.
    Connect,
    /// accept(2) of the TCP server.
    Accept,
    /// send(2) of a UDP datagram (client's request or server's reply).
    Send,
    /// Receiving a UDP datagram (server's request, or client's reply or ICMP error).
    Recv,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::Socket => "socket",
            Step::Setsockopt => "setsockopt",
            Step::Bind => "bind",
            Step::Listen => "listen",
            Step::Connect => "connect",
            Step::Accept => "accept",
            Step::Send => "send",
            Step::Recv => "recv",
        })
    }
}

/// Which end a step belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The listening end.
    Server,
    /// The connecting end.
    Client,
}

/// Outcome of one pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The server received the client (TCP: accepted it; UDP: a datagram each way).
    Ok,
    /// A step failed.
    Fail,
}

/// The sockaddr_in / sockaddr_in6 view of one end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SockAddrView {
    /// `AF_INET` or `AF_INET6`.
    pub family: &'static str,
    /// The address (`sin_addr` / `sin6_addr`).
    pub addr: String,
    /// `sin_port` / `sin6_port`.
    pub port: u16,
    /// `sin6_flowinfo`; null for sockaddr_in, which has none.
    pub flowinfo: Option<u32>,
    /// `sin6_scope_id`; null for sockaddr_in, which has none.
    pub scope_id: Option<u32>,
}

impl From<SocketAddr> for SockAddrView {
    fn from(sa: SocketAddr) -> SockAddrView {
        match sa {
            SocketAddr::V4(a) => SockAddrView {
                family: "AF_INET",
                addr: a.ip().to_string(),
                port: a.port(),
                flowinfo: None,
                scope_id: None,
            },
            SocketAddr::V6(a) => SockAddrView {
                family: "AF_INET6",
                addr: a.ip().to_string(),
                port: a.port(),
                flowinfo: Some(a.flowinfo()),
                scope_id: Some(a.scope_id()),
            },
        }
    }
}

/// The measurement of one listen/connect pair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PairResult {
    /// The protocol.
    pub proto: Proto,
    /// The server's address (`%iface` when bound with a scope id).
    pub listen: String,
    /// Its class.
    pub listen_kind: AddrKind,
    /// The address with the relevant socket options, as shown in tables.
    pub listen_label: String,
    /// The client's destination (`%iface` for a link-local IPv6 address).
    pub connect: String,
    /// Its class.
    pub connect_kind: AddrKind,
    /// IPV6_V6ONLY of the server socket as read back before bind; null for IPv4 sockets.
    pub v6only: Option<bool>,
    /// Whether the server socket was bound to a device with SO_BINDTODEVICE.
    pub bind_device: bool,
    /// That device.
    pub device: Option<String>,
    /// `ok` or `fail`.
    pub result: Outcome,
    /// The step that failed.
    pub step: Option<Step>,
    /// The end whose step failed.
    pub side: Option<Side>,
    /// The error in words (`connection refused`, `invalid argument`, `timed out`, ...).
    pub error: Option<String>,
    /// The errno name (`ECONNREFUSED`, ...).
    pub errno: Option<String>,
    /// The client address the server saw (e.g. `::ffff:127.0.0.1`), `%iface` when scoped.
    pub peer: Option<String>,
    /// The client's own address (getsockname of the client).
    pub local: Option<String>,
    /// The server's sockaddr: as bound (getsockname) or, when bind failed, as attempted.
    pub listen_sockaddr: SockAddrView,
    /// The sockaddr the client connected to.
    pub connect_sockaddr: SockAddrView,
    /// The peer sockaddr returned by accept(2) / recvfrom(2).
    pub peer_sockaddr: Option<SockAddrView>,
    /// The client's sockaddr from getsockname(2).
    pub local_sockaddr: Option<SockAddrView>,
}

impl PairResult {
    /// The result column of the table: `ok, peer X` or `fail: STEP: ERROR`.
    pub fn result_text(&self) -> String {
        match self.result {
            Outcome::Ok => format!("ok, peer {}", self.peer.as_deref().unwrap_or("?")),
            Outcome::Fail => format!(
                "fail: {}: {}",
                self.step
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "?".into()),
                self.error.as_deref().unwrap_or("?")
            ),
        }
    }
}

/// The errno name and words for an error (`ECONNREFUSED`, `connection refused`). Timeouts,
/// whether ETIMEDOUT, EAGAIN from SO_RCVTIMEO or a deadline of the probe, are `timed out`.
pub fn error_words(e: &io::Error) -> (Option<&'static str>, String) {
    let known = |code: i32| -> Option<(&'static str, &'static str)> {
        // EAGAIN here is SO_RCVTIMEO running out.
        let code = if code == libc::EAGAIN {
            libc::ETIMEDOUT
        } else {
            code
        };
        Some((errno::name(code)?, errno::words(code)?))
    };
    match e.raw_os_error() {
        Some(code) => match known(code) {
            Some((name, words)) => (Some(name), words.to_string()),
            None => {
                let text = io::Error::from_raw_os_error(code).to_string();
                let text = text
                    .split(" (os error")
                    .next()
                    .unwrap_or(&text)
                    .to_lowercase();
                (None, format!("{text} (errno {code})"))
            }
        },
        None if matches!(
            e.kind(),
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
        ) =>
        {
            (Some("ETIMEDOUT"), "timed out".into())
        }
        None => (None, e.to_string()),
    }
}

struct Failure {
    step: Step,
    side: Side,
    err: io::Error,
}

fn at(step: Step, side: Side) -> impl FnOnce(io::Error) -> Failure {
    move |err| Failure { step, side, err }
}

fn timed_out(step: Step, side: Side) -> Failure {
    Failure {
        step,
        side,
        err: io::ErrorKind::TimedOut.into(),
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// What an attempt observed, filled in as it goes.
struct Observed {
    listen_sa: SocketAddr,
    connect_sa: SocketAddr,
    v6only: Option<bool>,
    peer: Option<SocketAddr>,
    local: Option<SocketAddr>,
}

/// Time left before `deadline`, at least 1 ms (a zero socket timeout would mean "forever").
fn left(deadline: Instant) -> Option<Duration> {
    let now = Instant::now();
    (now < deadline).then(|| (deadline - now).max(Duration::from_millis(1)))
}

fn same_endpoint(a: SocketAddr, b: SocketAddr) -> bool {
    a.ip().to_canonical() == b.ip().to_canonical() && a.port() == b.port()
}

static TOKEN: AtomicU64 = AtomicU64::new(0);

fn token() -> Vec<u8> {
    let n = TOKEN.fetch_add(1, Ordering::Relaxed);
    format!("flowpol-interop {} {n}", std::process::id()).into_bytes()
}

fn new_socket(sa: SocketAddr, proto: Proto, side: Side) -> Result<Socket, Failure> {
    let (ty, p) = match proto {
        Proto::Tcp => (Type::STREAM, Protocol::TCP),
        Proto::Udp => (Type::DGRAM, Protocol::UDP),
    };
    Socket::new(Domain::for_address(sa), ty, Some(p)).map_err(at(Step::Socket, side))
}

fn attempt(
    proto: Proto,
    l: &Listen,
    c: &Connect,
    timeout: Duration,
    obs: &mut Observed,
) -> Result<(), Failure> {
    let server = new_socket(obs.listen_sa, proto, Side::Server)?;
    if l.ip.is_ipv6() {
        if let Some(v) = l.v6only {
            server
                .set_only_v6(v)
                .map_err(at(Step::Setsockopt, Side::Server))?;
        }
        obs.v6only = server.only_v6().ok();
    }
    if let Some(dev) = &l.device {
        server
            .bind_device(Some(dev.as_bytes()))
            .map_err(at(Step::Setsockopt, Side::Server))?;
    }
    server
        .bind(&SockAddr::from(obs.listen_sa))
        .map_err(at(Step::Bind, Side::Server))?;
    if let Some(sa) = server.local_addr().ok().and_then(|s| s.as_socket()) {
        obs.listen_sa = sa;
    }
    obs.connect_sa = c.sockaddr(obs.listen_sa.port());
    let deadline = Instant::now() + timeout;
    match proto {
        Proto::Tcp => tcp(server, obs, deadline),
        Proto::Udp => udp(server, obs, deadline),
    }
}

fn tcp(server: Socket, obs: &mut Observed, deadline: Instant) -> Result<(), Failure> {
    server.listen(16).map_err(at(Step::Listen, Side::Server))?;
    let client = new_socket(obs.connect_sa, Proto::Tcp, Side::Client)?;
    let wait = left(deadline).ok_or_else(|| timed_out(Step::Connect, Side::Client))?;
    client
        .connect_timeout(&SockAddr::from(obs.connect_sa), wait)
        .map_err(at(Step::Connect, Side::Client))?;
    obs.local = client.local_addr().ok().and_then(|s| s.as_socket());
    loop {
        let wait = left(deadline).ok_or_else(|| timed_out(Step::Accept, Side::Server))?;
        server
            .set_read_timeout(Some(wait))
            .map_err(at(Step::Setsockopt, Side::Server))?;
        match server.accept() {
            Ok((_conn, peer)) => {
                let Some(peer) = peer.as_socket() else {
                    continue;
                };
                // A connection from elsewhere (not this client) is not the answer.
                if obs.local.is_none_or(|l| same_endpoint(l, peer)) {
                    obs.peer = Some(peer);
                    return Ok(());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // The client connected but not to this server (another socket on the port).
            Err(e) if is_timeout(&e) => return Err(timed_out(Step::Accept, Side::Server)),
            Err(e) => {
                return Err(Failure {
                    step: Step::Accept,
                    side: Side::Server,
                    err: e,
                });
            }
        }
    }
}

fn udp(server: Socket, obs: &mut Observed, deadline: Instant) -> Result<(), Failure> {
    let server = std::net::UdpSocket::from(server);
    // The kernel may give the client the server's port number on another address; connected
    // to itself, the client would swallow its own datagram. Such a client is replaced.
    let mut tries = 0;
    let client = loop {
        let client =
            std::net::UdpSocket::from(new_socket(obs.connect_sa, Proto::Udp, Side::Client)?);
        client
            .connect(obs.connect_sa)
            .map_err(at(Step::Connect, Side::Client))?;
        obs.local = client.local_addr().ok();
        tries += 1;
        if tries >= 3 || obs.local.is_none_or(|l| !same_endpoint(l, obs.connect_sa)) {
            break client;
        }
    };
    let token = token();
    client.send(&token).map_err(at(Step::Send, Side::Client))?;

    // Wait for the datagram at the server, watching the client for an ICMP error (a connected
    // UDP socket reports "port unreachable" as ECONNREFUSED).
    let slice = Duration::from_millis(10);
    server
        .set_read_timeout(Some(slice))
        .map_err(at(Step::Setsockopt, Side::Server))?;
    let mut buf = [0u8; 128];
    let peer = loop {
        match server.recv_from(&mut buf) {
            Ok((n, from)) if buf[..n] == token[..] => break from,
            Ok(_) => {}
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(Failure {
                    step: Step::Recv,
                    side: Side::Server,
                    err: e,
                });
            }
        }
        if let Ok(Some(e)) = client.take_error() {
            return Err(Failure {
                step: Step::Recv,
                side: Side::Client,
                err: e,
            });
        }
        if left(deadline).is_none() {
            return Err(timed_out(Step::Recv, Side::Server));
        }
    };
    obs.peer = Some(peer);

    server
        .send_to(&token, peer)
        .map_err(at(Step::Send, Side::Server))?;
    loop {
        let wait = left(deadline).ok_or_else(|| timed_out(Step::Recv, Side::Client))?;
        client
            .set_read_timeout(Some(wait))
            .map_err(at(Step::Setsockopt, Side::Client))?;
        match client.recv(&mut buf) {
            Ok(n) if buf[..n] == token[..] => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err(timed_out(Step::Recv, Side::Client)),
            Err(e) => {
                return Err(Failure {
                    step: Step::Recv,
                    side: Side::Client,
                    err: e,
                });
            }
        }
    }
}

fn addr_text(sa: SocketAddr) -> String {
    match sa {
        SocketAddr::V6(a) if a.scope_id() != 0 => {
            format!("{}%{}", a.ip(), super::ifname(a.scope_id()))
        }
        _ => sa.ip().to_string(),
    }
}

/// Measures one pair: binds the server as `l` says, connects a client to `c`, and reports
/// what happened. Each blocking step is bounded by `timeout` (connect and accept / the
/// datagram exchange share one deadline after bind).
pub fn probe_pair(proto: Proto, l: &Listen, c: &Connect, timeout: Duration) -> PairResult {
    let mut obs = Observed {
        listen_sa: l.sockaddr(),
        connect_sa: c.sockaddr(0),
        v6only: None,
        peer: None,
        local: None,
    };
    let outcome = attempt(proto, l, c, timeout, &mut obs);
    let (result, step, side, errno, error) = match outcome {
        Ok(()) => (Outcome::Ok, None, None, None, None),
        Err(f) => {
            let (errno, words) = error_words(&f.err);
            (
                Outcome::Fail,
                Some(f.step),
                Some(f.side),
                errno.map(str::to_string),
                Some(words),
            )
        }
    };
    PairResult {
        proto,
        listen: l.addr_text(),
        listen_kind: AddrKind::of(l.ip),
        listen_label: l.label(),
        connect: c.addr_text(),
        connect_kind: AddrKind::of(c.ip),
        v6only: obs.v6only,
        bind_device: l.device.is_some(),
        device: l.device.clone(),
        result,
        step,
        side,
        error,
        errno,
        peer: obs.peer.map(addr_text),
        local: obs.local.map(addr_text),
        listen_sockaddr: obs.listen_sa.into(),
        connect_sockaddr: obs.connect_sa.into(),
        peer_sockaddr: obs.peer.map(Into::into),
        local_sockaddr: obs.local.map(Into::into),
    }
}

/// The whole measurement.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The kernel facts.
    pub context: Context,
    /// The protocol.
    pub proto: Proto,
    /// The per-attempt bound.
    pub timeout_ms: u64,
    /// One result per listen × connect pair, listen-major.
    pub results: Vec<PairResult>,
}

impl Report {
    /// Number of pairs that worked.
    pub fn ok_count(&self) -> usize {
        self.results
            .iter()
            .filter(|r| r.result == Outcome::Ok)
            .count()
    }
}

/// Measures every listen × connect pair, calling `each` after each one (for progress).
pub fn run(
    proto: Proto,
    timeout: Duration,
    listens: &[Listen],
    connects: &[Connect],
    mut each: impl FnMut(&PairResult),
) -> Report {
    let mut results = Vec::with_capacity(listens.len() * connects.len());
    for l in listens {
        for c in connects {
            let r = probe_pair(proto, l, c, timeout);
            tracing::debug!(listen = %r.listen_label, connect = %r.connect, result = %r.result_text(), "pair");
            each(&r);
            results.push(r);
        }
    }
    Report {
        context: Context::read(),
        proto,
        timeout_ms: timeout.as_millis() as u64,
        results,
    }
}

/// `kernel K, net.ipv6.bindv6only = B`.
fn context_line(c: &Context) -> String {
    let v6only = c.bindv6only.map_or("absent".to_string(), |v| v.to_string());
    format!("kernel {}, net.ipv6.bindv6only = {v6only}", c.kernel)
}

/// `proto P, timeout T ms: N pairs, K ok, F fail`.
fn summary_line(report: &Report) -> String {
    let ok = report.ok_count();
    format!(
        "proto {}, timeout {} ms: {} pairs, {ok} ok, {} fail",
        report.proto,
        report.timeout_ms,
        report.results.len(),
        report.results.len() - ok
    )
}

/// The human table: server listen addr | client connect addr | result, context line above.
pub fn render_table(report: &Report) -> String {
    let mut t =
        crate::report::table::table(&["server listen addr", "client connect addr", "result"]);
    for r in &report.results {
        t.add_row(vec![
            r.listen_label.clone(),
            r.connect.clone(),
            r.result_text(),
        ]);
    }
    format!(
        "{}, {}\n{t}\n",
        context_line(&report.context),
        summary_line(report)
    )
}

/// The table in Markdown (for a README), context line above.
pub fn render_markdown(report: &Report) -> String {
    let esc = |s: &str| s.replace('|', "\\|");
    let mut out = format!(
        "Measured by `flowpol interop --proto {} --format markdown` on Linux: {}; {}.\n\n",
        report.proto,
        context_line(&report.context),
        summary_line(report)
    );
    out.push_str("| server listen addr | client connect addr | result |\n|---|---|---|\n");
    for r in &report.results {
        let result = match r.result {
            Outcome::Ok => format!("ok, peer `{}`", esc(r.peer.as_deref().unwrap_or("?"))),
            Outcome::Fail => esc(&r.result_text()),
        };
        out.push_str(&format!(
            "| `{}` | `{}` | {} |\n",
            esc(&r.listen_label),
            esc(&r.connect),
            result
        ));
    }
    out
}

/// The results as a JSON array (one object per pair).
pub fn render_json(report: &Report) -> serde_json::Result<String> {
    serde_json::to_string_pretty(&report.results)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(ip: &str, iface: &str, ifindex: u32) -> HostAddr {
        HostAddr {
            ip: ip.parse().unwrap(),
            iface: iface.into(),
            ifindex,
        }
    }

    fn labels(l: &[Listen]) -> Vec<String> {
        l.iter().map(Listen::label).collect()
    }

    #[test]
    fn plan_orders_and_expands_addresses() {
        let host = [
            h("127.0.0.1", "lo", 1),
            h("::1", "lo", 1),
            h("fe80::1", "va", 2),
            h("10.1.0.1", "va", 2),
            h("fd00:1::1", "va", 2),
            h("169.254.1.1", "va", 2),
            h("10.1.0.1", "va", 2), // duplicate
            h("fe80::1", "vb", 3),  // same link-local on another link: distinct
            h("127.0.1.1", "lo", 1),
            h("ff02::1", "va", 2), // multicast: never
        ];
        let (l, c) = plan(&host);
        assert_eq!(
            labels(&l),
            [
                ":: (V6ONLY off)",
                ":: (V6ONLY on)",
                "::1",
                "0.0.0.0",
                "127.0.0.1",
                "127.0.1.1",
                "10.1.0.1",
                "fd00:1::1",
                "fe80::1 (no scope id)",
                "fe80::1%va",
                "fe80::1 (SO_BINDTODEVICE va)",
                "fe80::1 (no scope id)",
                "fe80::1%vb",
                "fe80::1 (SO_BINDTODEVICE vb)",
                "169.254.1.1",
            ]
        );
        let ctext: Vec<String> = c.iter().map(Connect::addr_text).collect();
        assert_eq!(
            ctext,
            [
                "127.0.0.1",
                "::1",
                "127.0.1.1",
                "10.1.0.1",
                "fd00:1::1",
                "fe80::1%va",
                "fe80::1%vb",
                "169.254.1.1"
            ]
        );
        // The socket addresses handed to the kernel.
        assert_eq!(l[9].sockaddr(), "[fe80::1%2]:0".parse().unwrap());
        assert_eq!(l[8].sockaddr(), "[fe80::1]:0".parse().unwrap());
        assert_eq!(l[10].device.as_deref(), Some("va"));
        assert_eq!(l[10].scope_id, 0);
        assert_eq!(c[5].sockaddr(80), "[fe80::1%2]:80".parse().unwrap());
        assert_eq!(l[0].v6only, Some(false));
        assert_eq!(l[1].v6only, Some(true));
        assert!(l[2..].iter().all(|x| x.v6only.is_none()));
    }

    #[test]
    fn plan_without_interfaces_has_the_fixed_addresses() {
        let (l, c) = plan(&[]);
        assert_eq!(
            labels(&l),
            [
                ":: (V6ONLY off)",
                ":: (V6ONLY on)",
                "::1",
                "0.0.0.0",
                "127.0.0.1"
            ]
        );
        assert_eq!(
            c.iter().map(Connect::addr_text).collect::<Vec<_>>(),
            ["127.0.0.1", "::1"]
        );
    }

    #[test]
    fn errors_are_named_in_words() {
        let w = |code| error_words(&io::Error::from_raw_os_error(code));
        assert_eq!(
            w(libc::ECONNREFUSED),
            (Some("ECONNREFUSED"), "connection refused".into())
        );
        assert_eq!(w(libc::EINVAL), (Some("EINVAL"), "invalid argument".into()));
        assert_eq!(
            w(libc::ENETUNREACH),
            (Some("ENETUNREACH"), "network unreachable".into())
        );
        assert_eq!(
            w(libc::EADDRNOTAVAIL),
            (Some("EADDRNOTAVAIL"), "address not available".into())
        );
        assert_eq!(w(libc::EAGAIN).1, "timed out");
        assert_eq!(w(libc::ETIMEDOUT).1, "timed out");
        assert_eq!(error_words(&io::ErrorKind::TimedOut.into()).1, "timed out");
        // Unknown errno: the system's words, lower case, with the number.
        let (name, words) = w(libc::ENOTSOCK);
        assert_eq!(name, None);
        assert!(
            words.contains("socket") && words.ends_with(&format!("(errno {})", libc::ENOTSOCK)),
            "{words}"
        );
        assert!(!words.contains("os error"));
    }

    #[test]
    fn sockaddr_views_follow_the_c_structs() {
        let v4 = SockAddrView::from("127.0.0.1:80".parse::<SocketAddr>().unwrap());
        assert_eq!(
            (v4.family, v4.port, v4.flowinfo, v4.scope_id),
            ("AF_INET", 80, None, None)
        );
        let v6 = SockAddrView::from(SocketAddr::V6(SocketAddrV6::new(
            "fe80::1".parse().unwrap(),
            5,
            0x12345,
            7,
        )));
        assert_eq!(
            (v6.family, v6.port, v6.flowinfo, v6.scope_id),
            ("AF_INET6", 5, Some(0x12345), Some(7))
        );
    }

    #[test]
    fn loopback_pairs_on_this_host() {
        // Loopback only, and only pairs that hold even where IPv6 addresses are disabled (an
        // AF_INET6 socket on `::` still takes IPv4 clients then). The full matrix is measured
        // in namespaces by tests/interop.rs.
        let t = Duration::from_millis(500);
        let any = |v6only| Listen {
            v6only: Some(v6only),
            ..Listen::plain(Ipv6Addr::UNSPECIFIED.into())
        };
        let lo4 = Connect::plain(Ipv4Addr::LOCALHOST.into());
        for proto in [Proto::Tcp, Proto::Udp] {
            let r = probe_pair(proto, &any(false), &lo4, t);
            assert_eq!(
                (r.result, r.peer.as_deref(), r.v6only),
                (Outcome::Ok, Some("::ffff:127.0.0.1"), Some(false)),
                "{r:?}"
            );
            let r = probe_pair(proto, &any(true), &lo4, t);
            let step = if proto == Proto::Tcp {
                Step::Connect
            } else {
                Step::Recv
            };
            assert_eq!(
                (r.result, r.step, r.error.as_deref(), r.v6only),
                (
                    Outcome::Fail,
                    Some(step),
                    Some("connection refused"),
                    Some(true)
                ),
                "{r:?}"
            );
            assert_eq!(r.connect_sockaddr.port, r.listen_sockaddr.port);
            assert_ne!(r.listen_sockaddr.port, 0);
        }
        let r = probe_pair(
            Proto::Tcp,
            &Listen::plain(Ipv4Addr::LOCALHOST.into()),
            &lo4,
            t,
        );
        assert_eq!(r.result_text(), "ok, peer 127.0.0.1");
        assert_eq!(r.local, Some("127.0.0.1".into()));
    }

    #[test]
    fn result_text_names_step_and_error() {
        let mut r = probe_pair(
            Proto::Tcp,
            &Listen::plain("fe80::1".parse().unwrap()),
            &Connect::plain(Ipv4Addr::LOCALHOST.into()),
            Duration::from_millis(100),
        );
        // bind(2) of a link-local address without a scope id: EINVAL, nothing sent.
        assert_eq!(r.result_text(), "fail: bind: invalid argument");
        assert_eq!(
            (r.errno.as_deref(), r.side),
            (Some("EINVAL"), Some(Side::Server))
        );
        assert!(r.peer.is_none() && r.local.is_none());
        r.result = Outcome::Ok;
        r.peer = Some("::ffff:127.0.0.1".into());
        assert_eq!(r.result_text(), "ok, peer ::ffff:127.0.0.1");
    }
}
