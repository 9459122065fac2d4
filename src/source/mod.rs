//! Where frames come from: capture files ([`pcap`], pcap and pcapng, read and write) and live
//! interfaces ([`live`]: pnet's AF_PACKET channel or a TPACKET_V3 [`ring`], with fanout
//! workers and the kernel's drop counters). A source lends each frame to its caller
//! ([`crate::packet::Frame`]) from a buffer it reuses, so reading allocates nothing per frame.

pub mod iface;
pub mod pcap;
pub mod ring;
