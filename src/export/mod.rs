//! Exporters of flow records: IPFIX (RFC 7011) over UDP and IPFIX files (RFC 5655).

pub mod ipfix;
