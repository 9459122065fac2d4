//! flowpol: a flow-label policy engine for Linux.
//!
//! Policies are ordered rules on the IPv6 3-tuple (src, dst, flow label), which needs only the
//! fixed 40-byte header, and, for contrast, on the classic 5-tuple, which needs the transport
//! header behind any extension headers. The library holds all logic; the `flowpol` binary is a
//! thin command line over it ([`cli`]).
#![deny(unsafe_code)]

pub mod bench;
pub mod classify;
pub mod cli;
pub mod compile;
pub mod export;
pub mod r#gen;
pub mod label;
pub mod packet;
pub mod pipeline;
pub mod policy;
pub mod probe;
pub mod report;
pub mod send;
pub mod source;
pub mod sys;

pub use label::FlowLabel;
