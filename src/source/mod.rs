//! Where frames come from: capture files ([`pcap`], pcap and pcapng, read and write). A source
//! lends each frame to its caller ([`crate::packet::Frame`]) from a buffer it reuses, so reading
//! allocates nothing per frame.

pub mod pcap;
