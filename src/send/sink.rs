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
use std::time::Duration;

use socket2::Socket;

use super::errors::SendError;
use super::{Proto, sys};
use crate::FlowLabel;

/// What `sink` listens on.
#[derive(Clone, Debug)]
pub struct SinkConfig {
    /// Address and port; `[::]:PORT` receives both IPv6 and IPv4 (v4-mapped).
    pub listen: SocketAddr,
    /// UDP or TCP.
    pub proto: Proto,
    /// Stop after this many datagrams / connections.
    pub count: Option<u64>,
    /// Stop when nothing arrives for this long.
    pub idle_timeout: Option<Duration>,
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
    sock.bind(&cfg.listen.into())
        .map_err(|e| SendError::io(format!("binding {}", cfg.listen), e))?;
    if cfg.proto == Proto::Tcp {
        sock.listen(16).map_err(|e| SendError::io("listening", e))?;
    }
    Ok(sock)
}

/// The address actually bound (port 0 resolved), for a caller that wants to announce it.
pub fn local_addr(sock: &Socket) -> Option<SocketAddr> {
    sock.local_addr().ok().and_then(|a| a.as_socket())
}

/// Receives until `count` records (or forever), handing each to `on_record`; `on_ready` is
/// called once with the bound address before the first receive. Returns the number of records.
pub fn sink(
    cfg: &SinkConfig,
    on_ready: impl FnOnce(SocketAddr),
    mut on_record: impl FnMut(&SinkRecord) -> std::io::Result<()>,
) -> Result<u64, SendError> {
    let sock = bind(cfg)?;
    sock.set_read_timeout(cfg.idle_timeout)
        .map_err(|e| SendError::io("setting the idle timeout", e))?;
    on_ready(local_addr(&sock).unwrap_or(cfg.listen));
    let mut n = 0u64;
    let mut buf = vec![0u8; 65536];
    while cfg.count.is_none_or(|c| n < c) {
        let rec = match cfg.proto {
            Proto::Udp => match sys::recv_with_flowinfo(&sock, &mut buf, 0) {
                Ok(r) => udp_record(&r),
                Err(e) if is_timeout(&e) => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(SendError::io("receiving", e)),
            },
            Proto::Tcp => match sock.accept() {
                Ok((conn, peer)) => {
                    tcp_record(&conn, peer.as_socket(), &mut buf, cfg.idle_timeout)?
                }
                Err(e) if is_timeout(&e) => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(SendError::io("accepting", e)),
            },
        };
        on_record(&rec).map_err(|e| SendError::io("writing the record", e))?;
        n += 1;
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
    timeout: Option<Duration>,
) -> Result<SinkRecord, SendError> {
    let peer = peer.map(unmap);
    let v6 = peer.is_some_and(|p| p.is_ipv6());
    if v6 {
        sys::set_int(conn, libc::IPPROTO_IPV6, sys::IPV6_FLOWINFO, 1)
            .map_err(|e| SendError::io("enabling IPV6_FLOWINFO on the connection", e))?;
    }
    conn.set_read_timeout(timeout.or(Some(Duration::from_secs(30))))
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
