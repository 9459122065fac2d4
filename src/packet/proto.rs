//! IP protocol numbers (IANA "Assigned Internet Protocol Numbers", the IPv6 next-header values)
//! as one type, after etherparse's `IpNumber`: the names the policy language uses, which
//! protocols carry ports, and which values are IPv6 extension headers. The packet path (the
//! extension-header walk) and the policy model (parsing, checking, compiling) both ask here, so
//! "which protocols carry ports" is written once.

use std::fmt;

/// An IP protocol number (IPv4 protocol, IPv6 next header).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpNumber(pub u8);

impl IpNumber {
    /// IPv6 Hop-by-Hop Options (RFC 8200).
    pub const HOP_BY_HOP: IpNumber = IpNumber(0);
    /// Transmission Control Protocol.
    pub const TCP: IpNumber = IpNumber(6);
    /// User Datagram Protocol.
    pub const UDP: IpNumber = IpNumber(17);
    /// IPv4 encapsulation (IP in IP).
    pub const IPV4: IpNumber = IpNumber(4);
    /// IPv6 encapsulation (6in4, IPv6 in IPv6).
    pub const IPV6: IpNumber = IpNumber(41);
    /// Generic Routing Encapsulation.
    pub const GRE: IpNumber = IpNumber(47);
    /// Protocol Independent Multicast.
    pub const PIM: IpNumber = IpNumber(103);
    /// Datagram Congestion Control Protocol (RFC 4340).
    pub const DCCP: IpNumber = IpNumber(33);
    /// IPv6 Routing header (incl. the segment routing header, type 4).
    pub const IPV6_ROUTE: IpNumber = IpNumber(43);
    /// IPv6 Fragment header.
    pub const IPV6_FRAG: IpNumber = IpNumber(44);
    /// Encapsulating Security Payload (RFC 4303).
    pub const ESP: IpNumber = IpNumber(50);
    /// Authentication Header (RFC 4302).
    pub const AH: IpNumber = IpNumber(51);
    /// ICMP for IPv6.
    pub const ICMPV6: IpNumber = IpNumber(58);
    /// No next header.
    pub const NO_NEXT: IpNumber = IpNumber(59);
    /// IPv6 Destination Options.
    pub const IPV6_DEST_OPTS: IpNumber = IpNumber(60);
    /// Stream Control Transmission Protocol.
    pub const SCTP: IpNumber = IpNumber(132);
    /// Mobility header (RFC 6275).
    pub const MOBILITY: IpNumber = IpNumber(135);
    /// UDP-Lite (RFC 3828).
    pub const UDPLITE: IpNumber = IpNumber(136);
    /// Host Identity Protocol (RFC 7401).
    pub const HIP: IpNumber = IpNumber(139);
    /// Shim6 (RFC 5533).
    pub const SHIM6: IpNumber = IpNumber(140);
    /// Use for experimentation and testing (RFC 3692).
    pub const EXPERIMENT1: IpNumber = IpNumber(253);
    /// Use for experimentation and testing (RFC 3692).
    pub const EXPERIMENT2: IpNumber = IpNumber(254);

    /// The protocols the policy language names, with their names.
    pub const NAMED: [(IpNumber, &'static str); 6] = [
        (IpNumber::TCP, "tcp"),
        (IpNumber::UDP, "udp"),
        (IpNumber::SCTP, "sctp"),
        (IpNumber::ICMPV6, "icmpv6"),
        (IpNumber::DCCP, "dccp"),
        (IpNumber::UDPLITE, "udplite"),
    ];

    /// The policy-language name (`tcp`, `udp`, `sctp`, `icmpv6`, `dccp`, `udplite`), if it has one.
    pub fn name(self) -> Option<&'static str> {
        IpNumber::NAMED
            .iter()
            .find(|(n, _)| *n == self)
            .map(|(_, s)| *s)
    }

    /// The protocol the policy language calls `name`.
    pub fn from_name(name: &str) -> Option<IpNumber> {
        IpNumber::NAMED
            .iter()
            .find(|(_, s)| *s == name)
            .map(|(n, _)| *n)
    }

    /// True for the protocols whose header starts with a 16-bit source and destination port,
    /// which the 5-tuple can match: TCP, UDP, SCTP, DCCP, UDP-Lite.
    #[inline]
    pub const fn has_ports(self) -> bool {
        matches!(
            self,
            IpNumber::TCP | IpNumber::UDP | IpNumber::SCTP | IpNumber::DCCP | IpNumber::UDPLITE
        )
    }

    /// True for the IPv6 extension header types (IANA registry, RFC 7045): hop-by-hop, routing,
    /// fragment, ESP, AH, destination options, mobility, HIP, shim6 and the two experimental
    /// values.
    pub const fn is_ipv6_extension(self) -> bool {
        matches!(
            self,
            IpNumber::HOP_BY_HOP
                | IpNumber::IPV6_ROUTE
                | IpNumber::IPV6_FRAG
                | IpNumber::ESP
                | IpNumber::AH
                | IpNumber::IPV6_DEST_OPTS
                | IpNumber::MOBILITY
                | IpNumber::HIP
                | IpNumber::SHIM6
                | IpNumber::EXPERIMENT1
                | IpNumber::EXPERIMENT2
        )
    }
}

impl From<u8> for IpNumber {
    fn from(v: u8) -> Self {
        IpNumber(v)
    }
}

impl From<IpNumber> for u8 {
    fn from(v: IpNumber) -> Self {
        v.0
    }
}

/// The policy-language name when there is one, else the number (`tcp`, `89`).
impl fmt::Display for IpNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "{}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unnamed_numbers_print_as_numbers() {
        for (n, s) in IpNumber::NAMED {
            assert_eq!(IpNumber::from_name(s), Some(n));
            assert_eq!(n.to_string(), s);
        }
        assert_eq!(IpNumber::from_name("ospf"), None);
        assert_eq!(IpNumber(89).to_string(), "89");
        assert_eq!(IpNumber::ICMPV6.name(), Some("icmpv6"));
    }

    #[test]
    fn exactly_five_protocols_carry_ports() {
        let with: Vec<u8> = (0..=255u8).filter(|&p| IpNumber(p).has_ports()).collect();
        assert_eq!(with, [6, 17, 33, 132, 136]);
        assert!(!IpNumber::ICMPV6.has_ports());
    }

    #[test]
    fn extension_headers_are_the_iana_list() {
        let ext: Vec<u8> = (0..=255u8)
            .filter(|&p| IpNumber(p).is_ipv6_extension())
            .collect();
        assert_eq!(ext, [0, 43, 44, 50, 51, 60, 135, 139, 140, 253, 254]);
    }
}
