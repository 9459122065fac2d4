//! The two keys a packet is classified on: the 3-tuple from the fixed IPv6 header, and the
//! 5-tuple that needs the transport header (or the reason it cannot be had).

use crate::label::FlowLabel;
use std::net::Ipv6Addr;

/// (src, dst, flow label): read from the fixed 40-byte IPv6 header and nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ThreeTuple {
    pub src: u128,
    pub dst: u128,
    pub label: FlowLabel,
}

/// (src, dst, proto, sport, dport). For a protocol without ports, both ports are 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    pub src: u128,
    pub dst: u128,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

impl ThreeTuple {
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.src)
    }
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.dst)
    }
}

/// Why no 5-tuple could be read from an IPv6 packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unavailable {
    /// A fragment with a non-zero offset: the transport header is in the first fragment.
    NonFirstFragment,
    /// Encapsulating Security Payload: everything after the ESP header is encrypted.
    Esp,
    /// A next-header value the walk does not know how to skip (or no next header, 59).
    UnknownHeader,
    /// The packet ends inside an extension or transport header.
    Truncated,
    /// A header's contents are inconsistent (e.g. a length that points past the payload).
    Malformed,
}

impl Unavailable {
    /// All reasons, in report order.
    pub const ALL: [Unavailable; 5] = [
        Unavailable::NonFirstFragment,
        Unavailable::Esp,
        Unavailable::UnknownHeader,
        Unavailable::Truncated,
        Unavailable::Malformed,
    ];

    /// The stable name used in reports and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Unavailable::NonFirstFragment => "non-first-fragment",
            Unavailable::Esp => "esp",
            Unavailable::UnknownHeader => "unknown-header",
            Unavailable::Truncated => "truncated",
            Unavailable::Malformed => "malformed",
        }
    }

    /// Index into [`Unavailable::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
