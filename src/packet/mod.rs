//! Keys from frames: the link layer, the fixed IPv6 header (3-tuple) and the extension-header
//! walk to the transport header (5-tuple, or the reason it is unavailable).

pub mod key;

pub use key::{FiveTuple, ThreeTuple, Unavailable};
