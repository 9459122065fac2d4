//! `sink`: the receiving end. Binds, then reports one record per UDP datagram or per TCP
//! connection with the peer and the flow label it arrived with.
//!
//! - UDP: `setsockopt(IPV6_FLOWINFO, 1)`, then `recvmsg` returns the flow info as ancillary data
//!   (`cmsg_level IPPROTO_IPV6, cmsg_type IPV6_FLOWINFO`, network byte order). The kernel adds
//!   the cmsg only when the flow info is non-zero, so an IPv6 datagram without it had label 0.
//! - TCP: `IPV6_FLOWINFO` on the listening and the accepted socket makes the kernel remember the
//!   flow info of the last in-order segment; `getsockopt(IPV6_FLOWLABEL_MGR)` on a zeroed
//!   request with `flr_flags = IPV6_FL_F_REMOTE` reads its label.
//! - IPv4 peers (an IPv4 listener, or v4-mapped peers of a dual-stack one) have no label: `null`.

use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use socket2::Socket;

use super::errors::SendError;
use super::{Proto, sys};
use crate::FlowLabel;
use crate::sys::netstat::NetCounters;

/// What `sink` listens on.
#[derive(Clone, Debug)]
pub struct SinkConfig {
    /// Address and port; `[::]:PORT` receives both IPv6 and IPv4 (v4-mapped).
    pub listen: SocketAddr,
    /// UDP or TCP.
    pub proto: Proto,
    /// Stop after this many datagrams / connections.
    pub count: Option<u64>,
    /// Stop when nothing arrives (and no connection is open) for this long.
    pub idle_timeout: Option<Duration>,
    /// TCP: the listen backlog (the kernel caps it at `net.core.somaxconn`).
    pub backlog: i32,
    /// TCP: connections served at once; more wait in the backlog.
    pub max_connections: usize,
    /// TCP: a connection silent for this long is ended and reported with what it sent.
    pub read_timeout: Duration,
    /// SO_RCVBUF of the socket, when set.
    pub rcvbuf: Option<usize>,
    /// Stop (with the summary) when this signal arrives.
    pub stop: Option<crate::sys::signals::StopSignal>,
}

/// The default TCP listen backlog.
pub const DEFAULT_BACKLOG: i32 = 1024;
/// The default number of TCP connections served at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
/// The default TCP read timeout.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

impl SinkConfig {
    /// A config with the defaults: no count, no idle timeout, backlog [`DEFAULT_BACKLOG`].
    pub fn new(listen: SocketAddr, proto: Proto) -> SinkConfig {
        SinkConfig {
            listen,
            proto,
            count: None,
            idle_timeout: None,
            backlog: DEFAULT_BACKLOG,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            read_timeout: DEFAULT_READ_TIMEOUT,
            rcvbuf: None,
            stop: None,
        }
    }
}

/// One received datagram or TCP connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SinkRecord {
    /// `udp` or `tcp`.
    pub proto: Proto,
    /// The sender (IPv4-mapped addresses shown as IPv4).
    pub peer: Option<SocketAddr>,
    /// Payload bytes (the datagram, or the whole connection).
    pub bytes: u64,
    /// The flow label (TCP: of the last segment); `None` for IPv4 peers.
    pub flow_label: Option<FlowLabel>,
    /// The traffic class, when the kernel reported it (UDP over IPv6).
    pub tclass: Option<u8>,
}

/// What a `sink` run received, and what the kernel dropped meanwhile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SinkSummary {
    /// Records reported (datagrams or connections).
    pub records: u64,
    /// The growth of the namespace's drop counters over the run (listen overflows and drops,
    /// UDP receive-buffer errors). Per network namespace: other sockets' drops count too.
    pub kernel: NetCounters,
    /// The signal that stopped the run (`SIGINT`, `SIGTERM`), if one did.
    pub stopped_by: Option<&'static str>,
}

/// Maps a v4-mapped IPv6 peer to IPv4.
fn unmap(peer: SocketAddr) -> SocketAddr {
    match peer {
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => SocketAddr::V6(std::net::SocketAddrV6::new(
                *a.ip(),
                a.port(),
                0,
                a.scope_id(),
            )),
        },
        v4 => v4,
    }
}

/// Binds the listening socket.
fn bind(cfg: &SinkConfig) -> Result<Socket, SendError> {
    let sock = cfg.proto.socket(cfg.listen.ip())?;
    if cfg.listen.is_ipv6() {
        sock.set_only_v6(false)
            .map_err(|e| SendError::io("allowing IPv4 on the IPv6 socket", e))?;
        sys::set_int(&sock, libc::IPPROTO_IPV6, sys::IPV6_FLOWINFO, 1)
            .map_err(|e| SendError::io("enabling IPV6_FLOWINFO", e))?;
    }
    sock.set_reuse_address(true)
        .map_err(|e| SendError::io("setting SO_REUSEADDR", e))?;
    if let Some(n) = cfg.rcvbuf {
        sock.set_recv_buffer_size(n)
            .map_err(|e| SendError::io("setting SO_RCVBUF", e))?;
    }
    sock.bind(&cfg.listen.into())
        .map_err(|e| SendError::io(format!("binding {}", cfg.listen), e))?;
    if cfg.proto == Proto::Tcp {
        sock.listen(cfg.backlog.max(1))
            .map_err(|e| SendError::io("listening", e))?;
    }
    Ok(sock)
}

/// The address actually bound (port 0 resolved), for a caller that wants to announce it.
pub fn local_addr(sock: &Socket) -> Option<SocketAddr> {
    sock.local_addr().ok().and_then(|a| a.as_socket())
}

/// How often the receive loop looks at the stop signal, the idle time and finished connections.
const TICK: Duration = Duration::from_millis(100);

/// Receives until `count` records, the idle timeout or a stop signal, handing each record to
/// `on_record`; `on_ready` is called once with the bound address before the first receive.
/// TCP connections are served concurrently, at most `max_connections` at once, each ended by
/// the peer's close or `read_timeout` of silence; records come in the order connections end.
pub fn sink(
    cfg: &SinkConfig,
    on_ready: impl FnOnce(SocketAddr),
    mut on_record: impl FnMut(&SinkRecord) -> std::io::Result<()>,
) -> Result<SinkSummary, SendError> {
    let sock = bind(cfg)?;
    sock.set_read_timeout(Some(TICK))
        .map_err(|e| SendError::io("setting a receive timeout", e))?;
    let before = NetCounters::read();
    on_ready(local_addr(&sock).unwrap_or(cfg.listen));
    let mut emit =
        |rec: &SinkRecord| on_record(rec).map_err(|e| SendError::io("writing the record", e));
    let records = match cfg.proto {
        Proto::Udp => receive_udp(cfg, &sock, &mut emit)?,
        Proto::Tcp => serve_tcp(cfg, &sock, &mut emit)?,
    };
    Ok(SinkSummary {
        records,
        kernel: NetCounters::read().since(&before),
        stopped_by: cfg.stop.as_ref().and_then(|s| s.received()),
    })
}

/// Whether the run is over: a stop signal, or nothing for the idle timeout since `last`.
fn should_stop(cfg: &SinkConfig, last: Instant) -> bool {
    super::stop_asked(cfg.stop.as_ref()) || cfg.idle_timeout.is_some_and(|d| last.elapsed() >= d)
}

fn receive_udp(
    cfg: &SinkConfig,
    sock: &Socket,
    emit: &mut impl FnMut(&SinkRecord) -> Result<(), SendError>,
) -> Result<u64, SendError> {
    let mut n = 0u64;
    let mut buf = vec![0u8; 65536];
    let mut last = Instant::now();
    while cfg.count.is_none_or(|c| n < c) && !super::stop_asked(cfg.stop.as_ref()) {
        match sys::recv_with_flowinfo(sock, &mut buf, 0) {
            Ok(r) => {
                emit(&udp_record(&r))?;
                n += 1;
                last = Instant::now();
            }
            Err(e) if is_timeout(&e) || e.kind() == std::io::ErrorKind::Interrupted => {
                if should_stop(cfg, last) {
                    break;
                }
            }
            Err(e) => return Err(SendError::io("receiving", e)),
        }
    }
    Ok(n)
}

fn serve_tcp(
    cfg: &SinkConfig,
    sock: &Socket,
    emit: &mut impl FnMut(&SinkRecord) -> Result<(), SendError>,
) -> Result<u64, SendError> {
    let (tx, rx) = mpsc::channel::<Result<SinkRecord, SendError>>();
    let mut n = 0u64;
    let mut in_flight = 0usize;
    let mut last = Instant::now();
    let max = cfg.max_connections.max(1);
    loop {
        // Report the connections that ended.
        while let Ok(rec) = rx.try_recv() {
            in_flight -= 1;
            emit(&rec?)?;
            n += 1;
            last = Instant::now();
        }
        if cfg.count.is_some_and(|c| n >= c) || super::stop_asked(cfg.stop.as_ref()) {
            break;
        }
        if in_flight >= max {
            // No room for another connection: wait for one to end. (Connections beyond
            // --count are accepted too: an idle one must not keep a later one waiting.)
            if let Ok(rec) = rx.recv_timeout(TICK) {
                in_flight -= 1;
                emit(&rec?)?;
                n += 1;
                last = Instant::now();
            }
            continue;
        }
        match sock.accept() {
            Ok((conn, peer)) => {
                in_flight += 1;
                last = Instant::now();
                let tx = tx.clone();
                let timeout = cfg.read_timeout;
                std::thread::Builder::new()
                    .name("sink-conn".into())
                    .spawn(move || {
                        let mut buf = vec![0u8; 65536];
                        let _ = tx.send(tcp_record(&conn, peer.as_socket(), &mut buf, timeout));
                    })
                    .map_err(|e| SendError::io("starting a connection thread", e))?;
            }
            Err(e) if is_timeout(&e) || e.kind() == std::io::ErrorKind::Interrupted => {
                if in_flight == 0 && should_stop(cfg, last) {
                    break;
                }
            }
            Err(e) => return Err(SendError::io("accepting", e)),
        }
    }
    Ok(n)
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

fn udp_record(r: &sys::Received) -> SinkRecord {
    let peer = r.peer.map(unmap);
    let v6 = peer.is_some_and(|p| p.is_ipv6());
    SinkRecord {
        proto: Proto::Udp,
        peer,
        bytes: r.len as u64,
        // No cmsg on an IPv6 datagram means its flow info was zero.
        flow_label: v6.then(|| FlowLabel::from_low_bits(r.flowinfo.unwrap_or(0))),
        tclass: if v6 {
            Some(((r.flowinfo.unwrap_or(0) & sys::IPV6_FLOWINFO_PRIORITY) >> 20) as u8)
        } else {
            None
        },
    }
}

fn tcp_record(
    conn: &Socket,
    peer: Option<SocketAddr>,
    buf: &mut [u8],
    timeout: Duration,
) -> Result<SinkRecord, SendError> {
    let peer = peer.map(unmap);
    let v6 = peer.is_some_and(|p| p.is_ipv6());
    if v6 {
        sys::set_int(conn, libc::IPPROTO_IPV6, sys::IPV6_FLOWINFO, 1)
            .map_err(|e| SendError::io("enabling IPV6_FLOWINFO on the connection", e))?;
    }
    conn.set_read_timeout(Some(timeout))
        .map_err(|e| SendError::io("setting a read timeout", e))?;
    let mut bytes = 0u64;
    let mut label = None;
    loop {
        match sys::recv_with_flowinfo(conn, buf, 0) {
            Ok(r) if r.len == 0 => break,
            Ok(r) => {
                bytes += r.len as u64;
                if v6 {
                    label = sys::remote_flowlabel(conn).ok();
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => break,
            Err(e) => {
                tracing::warn!("reading from {peer:?}: {e}");
                break;
            }
        }
    }
    if v6 {
        // After EOF: the label of the last in-order segment (the FIN), or of the data.
        label = sys::remote_flowlabel(conn).ok().or(label);
    }
    Ok(SinkRecord {
        proto: Proto::Tcp,
        peer,
        bytes,
        flow_label: v6.then(|| FlowLabel::from_low_bits(label.unwrap_or(0))),
        tclass: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmaps_v4_peers() {
        let p: SocketAddr = "[::ffff:10.1.0.1]:5000".parse().unwrap();
        assert_eq!(unmap(p).to_string(), "10.1.0.1:5000");
        let p: SocketAddr = "[fd00::1]:5000".parse().unwrap();
        assert_eq!(unmap(p).to_string(), "[fd00::1]:5000");
    }

    #[test]
    fn udp_record_label_and_null_for_v4() {
        let r = sys::Received {
            len: 10,
            truncated: false,
            peer: Some("[fd00::1]:4".parse().unwrap()),
            flowinfo: Some(0x0b81_2345),
        };
        let rec = udp_record(&r);
        assert_eq!(rec.flow_label, Some(FlowLabel::new(0x12345).unwrap()));
        assert_eq!(rec.tclass, Some(0xb8));
        let r = sys::Received {
            flowinfo: None,
            ..r
        };
        assert_eq!(udp_record(&r).flow_label, Some(FlowLabel::ZERO));
        let r = sys::Received {
            peer: Some("[::ffff:10.0.0.1]:4".parse().unwrap()),
            ..r
        };
        assert_eq!(udp_record(&r).flow_label, None);
        assert_eq!(udp_record(&r).peer.unwrap().to_string(), "10.0.0.1:4");
        // Serialized without allocating per record: the address as a string, the label as an integer.
        let json = serde_json::to_string(&udp_record(&r)).unwrap();
        assert_eq!(
            json,
            r#"{"proto":"udp","peer":"10.0.0.1:4","bytes":10,"flow_label":null,"tclass":null}"#
        );
    }
}
