//! The fixed 40-byte IPv6 header, and the 3-tuple read from it and nothing else.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Traffic Class |           Flow Label                  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Payload Length        |  Next Header  |   Hop Limit   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Source Address (bytes 8..24)               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 Destination Address (bytes 24..40)            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The view is etherparse's [`Ipv6HeaderSlice`], which checks the version and the 40 bytes once;
//! after [`Fixed::new`] succeeds no accessor can panic.

use super::NonIpv6;
use super::key::ThreeTuple;
use crate::label::FlowLabel;
use etherparse::Ipv6HeaderSlice;

/// Length of the fixed header.
pub const HEADER_LEN: usize = 40;

/// A checked view of an IPv6 packet's fixed header, and the bytes behind it.
#[derive(Clone, Copy, Debug)]
pub struct Fixed<'a> {
    header: Ipv6HeaderSlice<'a>,
    packet: &'a [u8],
}

/// The bytes after the fixed header, and whether they are all the header says there should be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Payload<'a> {
    /// At most `payload length` bytes.
    pub bytes: &'a [u8],
    /// True when the capture holds the whole payload the header announces, so a header that
    /// runs past the end is malformed rather than cut off by the snapshot length.
    pub complete: bool,
}

impl<'a> Fixed<'a> {
    /// Checks the version nibble and the length of the fixed header.
    #[inline]
    pub fn new(packet: &'a [u8]) -> Result<Self, NonIpv6> {
        let header = Ipv6HeaderSlice::from_slice(packet).map_err(|_| NonIpv6::Malformed)?;
        Ok(Fixed { header, packet })
    }

    /// The 3-tuple: addresses and the 20-bit flow label.
    #[inline]
    pub fn three(&self) -> ThreeTuple {
        ThreeTuple {
            src: u128::from_be_bytes(self.header.source()),
            dst: u128::from_be_bytes(self.header.destination()),
            label: FlowLabel::from_low_bits(self.header.flow_label().value()),
        }
    }

    /// The first next-header value (the fixed header's).
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.header.next_header().0
    }

    /// The IPv6 packet this header starts (link-layer padding included).
    #[inline]
    pub fn packet(&self) -> &'a [u8] {
        self.packet
    }

    /// The payload length field.
    #[inline]
    pub fn payload_length(&self) -> u16 {
        self.header.payload_length()
    }

    /// The payload, trimmed to the payload length (link-layer padding removed). A payload length
    /// of 0 (a jumbogram, RFC 2675, as Linux BIG TCP sends) takes everything captured.
    #[inline]
    pub fn payload(&self) -> Payload<'a> {
        let rest = &self.packet[HEADER_LEN..];
        let declared = usize::from(self.payload_length());
        if declared == 0 {
            Payload {
                bytes: rest,
                complete: false,
            }
        } else if rest.len() >= declared {
            Payload {
                bytes: &rest[..declared],
                complete: true,
            }
        } else {
            Payload {
                bytes: rest,
                complete: false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UDP packet with flow label 0x12345, 2001:db8::1 -> 2001:db8::2, 8 bytes of payload
    /// plus 2 bytes of Ethernet padding.
    pub const UDP_PADDED: [u8; 50] = [
        0x60, 0x01, 0x23, 0x45, 0x00, 0x08, 17, 64, //
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, //
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, //
        0x30, 0x39, 0x00, 0x35, 0x00, 0x08, 0, 0, //
        0xee, 0xee,
    ];

    #[test]
    fn three_tuple_from_fixed_header() {
        let f = Fixed::new(&UDP_PADDED).unwrap();
        let t = f.three();
        assert_eq!(t.src_addr().to_string(), "2001:db8::1");
        assert_eq!(t.dst_addr().to_string(), "2001:db8::2");
        assert_eq!(t.label.value(), 0x12345);
        assert_eq!(f.next_header(), 17);
        let p = f.payload();
        assert_eq!(p.bytes.len(), 8);
        assert!(p.complete);
    }

    #[test]
    fn short_or_wrong_version_is_malformed() {
        assert_eq!(
            Fixed::new(&UDP_PADDED[..39]).unwrap_err(),
            NonIpv6::Malformed
        );
        let mut v4 = UDP_PADDED;
        v4[0] = 0x45;
        assert_eq!(Fixed::new(&v4).unwrap_err(), NonIpv6::Malformed);
        // The fixed header alone is enough for the 3-tuple.
        let f = Fixed::new(&UDP_PADDED[..40]).unwrap();
        assert_eq!(f.three().label.value(), 0x12345);
        assert_eq!(
            f.payload(),
            Payload {
                bytes: &[],
                complete: false
            }
        );
    }

    #[test]
    fn jumbo_payload_takes_everything() {
        let mut p = UDP_PADDED;
        p[4] = 0;
        p[5] = 0;
        let f = Fixed::new(&p).unwrap();
        assert_eq!(f.payload().bytes.len(), 10);
        assert!(!f.payload().complete);
    }
}
