//! Measurements on the host flowpol runs on: the addresses its interfaces carry (getifaddrs),
//! the kernel facts that decide how IPv4 and IPv6 sockets meet (`net.ipv6.bindv6only`, kernel
//! release), and the IPv4/IPv6 interoperability probe built on them ([`interop`]).
//!
//! Everything here uses safe socket APIs (socket2, nix); no `unsafe` is needed.

pub mod interop;

use std::net::IpAddr;

/// Errors of host discovery and of reading the probe's arguments.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// getifaddrs(3) failed.
    #[error("cannot list the interface addresses (getifaddrs): {0}")]
    Getifaddrs(#[source] nix::Error),
    /// `--iface` names no interface of this host.
    #[error("no interface named {0:?} on this host")]
    NoSuchInterface(String),
    /// `--addr` is not an IP address (optionally `%scope`).
    #[error("{0:?} is not an IP address (expected e.g. 192.0.2.1, 2001:db8::1 or fe80::1%eth0)")]
    BadAddr(String),
    /// `--addr` is not an address of this host; the probe contacts only the host's own addresses.
    #[error("{0} is not an address of this host; the probe only contacts the host's own addresses")]
    NotLocal(String),
    /// A link-local `--addr` whose interface cannot be told.
    #[error("{0}: a link-local address needs its interface (e.g. fe80::1%eth0)")]
    NeedsScope(String),
}

/// The class of an address, which decides where it appears in the probe's matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AddrKind {
    /// `::` or `0.0.0.0`.
    Unspecified,
    /// `127.0.0.0/8` or `::1`.
    Loopback,
    /// `169.254.0.0/16` or `fe80::/10`.
    LinkLocal,
    /// Any other unicast address (global, ULA, private IPv4).
    Routable,
    /// Multicast, broadcast or IPv4-mapped: never probed.
    Other,
}

impl AddrKind {
    /// Classifies an address.
    pub fn of(ip: IpAddr) -> AddrKind {
        match ip {
            IpAddr::V4(a) if a.is_unspecified() => AddrKind::Unspecified,
            IpAddr::V4(a) if a.is_loopback() => AddrKind::Loopback,
            IpAddr::V4(a) if a.is_link_local() => AddrKind::LinkLocal,
            IpAddr::V4(a) if a.is_multicast() || a.is_broadcast() => AddrKind::Other,
            IpAddr::V4(_) => AddrKind::Routable,
            IpAddr::V6(a) if a.is_unspecified() => AddrKind::Unspecified,
            IpAddr::V6(a) if a.is_loopback() => AddrKind::Loopback,
            IpAddr::V6(a) if a.is_unicast_link_local() => AddrKind::LinkLocal,
            IpAddr::V6(a) if a.is_multicast() || a.to_ipv4_mapped().is_some() => AddrKind::Other,
            IpAddr::V6(_) => AddrKind::Routable,
        }
    }
}

/// One address carried by an interface of the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostAddr {
    /// The address.
    pub ip: IpAddr,
    /// The interface carrying it.
    pub iface: String,
    /// The interface index (the IPv6 scope id of a link-local address).
    pub ifindex: u32,
}

impl HostAddr {
    /// The class of the address.
    pub fn kind(&self) -> AddrKind {
        AddrKind::of(self.ip)
    }
}

/// Every IPv4/IPv6 address of the host's interfaces, in getifaddrs order.
pub fn host_addrs() -> Result<Vec<HostAddr>, ProbeError> {
    let mut out = Vec::new();
    for ifa in nix::ifaddrs::getifaddrs().map_err(ProbeError::Getifaddrs)? {
        let Some(sa) = ifa.address.as_ref() else {
            continue;
        };
        let (ip, scope) = if let Some(v4) = sa.as_sockaddr_in() {
            (IpAddr::V4(v4.ip()), 0)
        } else if let Some(v6) = sa.as_sockaddr_in6() {
            (IpAddr::V6(v6.ip()), v6.scope_id())
        } else {
            continue;
        };
        // A link-local address carries its interface as scope id; IPv4 labels such as
        // `eth0:1` are no interface names, so resolve the part before the colon.
        let base = ifa.interface_name.split(':').next().unwrap_or_default();
        let ifindex = match scope {
            0 => nix::net::if_::if_nametoindex(base).unwrap_or(0),
            s => s,
        };
        let a = HostAddr {
            ip,
            iface: ifa.interface_name,
            ifindex,
        };
        if !out.contains(&a) {
            out.push(a);
        }
    }
    Ok(out)
}

/// The index of interface `name`.
pub fn ifindex(name: &str) -> Result<u32, ProbeError> {
    nix::net::if_::if_nametoindex(name).map_err(|_| ProbeError::NoSuchInterface(name.to_string()))
}

/// The name of interface `index`, or the number as text when it has none.
pub fn ifname(index: u32) -> String {
    nix::net::if_::if_indextoname(index)
        .ok()
        .and_then(|c| c.into_string().ok())
        .unwrap_or_else(|| index.to_string())
}

/// Parses `ADDR` or `ADDR%IFACE` / `ADDR%INDEX` and checks that it is an address of this host
/// (`host` as returned by [`host_addrs`]); any 127.0.0.0/8 address is local on Linux.
pub fn resolve_local(spec: &str, host: &[HostAddr]) -> Result<HostAddr, ProbeError> {
    let (text, scope) = match spec.split_once('%') {
        Some((a, s)) => (a, Some(s)),
        None => (spec, None),
    };
    let ip: IpAddr = text
        .trim_matches(['[', ']'])
        .parse()
        .map_err(|_| ProbeError::BadAddr(spec.to_string()))?;
    let scope_index = match scope {
        None => None,
        Some(s) if !ip.is_ipv6() || s.is_empty() => {
            return Err(ProbeError::BadAddr(spec.to_string()));
        }
        Some(s) => Some(match s.parse::<u32>() {
            Ok(n) => n,
            Err(_) => ifindex(s)?,
        }),
    };
    let found: Vec<&HostAddr> = host
        .iter()
        .filter(|h| h.ip == ip && scope_index.is_none_or(|i| h.ifindex == i))
        .collect();
    if let Some(h) = found.first() {
        if AddrKind::of(ip) == AddrKind::LinkLocal && scope_index.is_none() && found.len() > 1 {
            return Err(ProbeError::NeedsScope(spec.to_string()));
        }
        return Ok((*h).clone());
    }
    match ip {
        IpAddr::V4(a) if a.is_loopback() => Ok(HostAddr {
            ip,
            iface: "lo".into(),
            ifindex: ifindex("lo").unwrap_or(1),
        }),
        _ => Err(ProbeError::NotLocal(spec.to_string())),
    }
}

/// The kernel facts that decide how IPv4 and IPv6 sockets meet.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Context {
    /// `net.ipv6.bindv6only` of the current network namespace: the default of IPV6_V6ONLY for
    /// new IPv6 sockets (None when IPv6 is absent).
    pub bindv6only: Option<u8>,
    /// The kernel release (`uname -r`).
    pub kernel: String,
}

impl Context {
    /// Reads the context from /proc.
    pub fn read() -> Context {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_string())
        };
        Context {
            bindv6only: read("/proc/sys/net/ipv6/bindv6only").and_then(|s| s.parse().ok()),
            kernel: read("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into()),
        }
    }
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

    #[test]
    fn kinds() {
        let k = |s: &str| AddrKind::of(s.parse().unwrap());
        assert_eq!(k("0.0.0.0"), AddrKind::Unspecified);
        assert_eq!(k("::"), AddrKind::Unspecified);
        assert_eq!(k("127.0.1.1"), AddrKind::Loopback);
        assert_eq!(k("::1"), AddrKind::Loopback);
        assert_eq!(k("169.254.3.4"), AddrKind::LinkLocal);
        assert_eq!(k("fe80::1"), AddrKind::LinkLocal);
        assert_eq!(k("10.1.0.1"), AddrKind::Routable);
        assert_eq!(k("fd00::1"), AddrKind::Routable);
        assert_eq!(k("2001:db8::1"), AddrKind::Routable);
        assert_eq!(k("ff02::1"), AddrKind::Other);
        assert_eq!(k("::ffff:10.0.0.1"), AddrKind::Other);
        assert_eq!(k("224.0.0.1"), AddrKind::Other);
    }

    #[test]
    fn resolve_local_accepts_only_host_addresses() {
        let host = [
            h("10.1.0.1", "va", 2),
            h("fe80::1", "va", 2),
            h("fe80::1", "vb", 3),
            h("fe80::2", "vb", 3),
        ];
        assert_eq!(resolve_local("10.1.0.1", &host).unwrap(), host[0]);
        assert_eq!(resolve_local("fe80::1%2", &host).unwrap(), host[1]);
        assert_eq!(resolve_local("fe80::1%3", &host).unwrap(), host[2]);
        assert_eq!(resolve_local("fe80::2", &host).unwrap(), host[3]);
        assert!(matches!(
            resolve_local("fe80::1", &host),
            Err(ProbeError::NeedsScope(_))
        ));
        assert!(matches!(
            resolve_local("10.1.0.2", &host),
            Err(ProbeError::NotLocal(_))
        ));
        assert!(matches!(
            resolve_local("fe80::1%9", &host),
            Err(ProbeError::NotLocal(_))
        ));
        assert!(matches!(
            resolve_local("10.1.0.1%2", &host),
            Err(ProbeError::BadAddr(_))
        ));
        assert!(matches!(
            resolve_local("nonsense", &host),
            Err(ProbeError::BadAddr(_))
        ));
        assert!(matches!(
            resolve_local("fe80::1%nosuchif0", &host),
            Err(ProbeError::NoSuchInterface(_))
        ));
        assert_eq!(
            resolve_local("127.0.0.2", &host).unwrap().ip,
            "127.0.0.2".parse::<IpAddr>().unwrap()
        );
        assert!(matches!(
            resolve_local("::2", &host),
            Err(ProbeError::NotLocal(_))
        ));
    }

    #[test]
    fn context_reads_proc() {
        let c = Context::read();
        assert!(!c.kernel.is_empty() && c.kernel != "unknown");
        assert!(matches!(c.bindv6only, None | Some(0) | Some(1)));
    }
}
