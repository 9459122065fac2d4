//! IPFIX.
