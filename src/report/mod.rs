//! Counting and showing: the [`tally::Tally`] of a run (per rule and per class packets and
//! bytes under each engine, the agreement matrix, why the 5-tuple was unavailable, non-IPv6
//! frames, time per packet), the serialisable [`json::Report`] built from it, and the human
//! [`table`]. `classify` (offline) and a live `watch` share all of it, so both print the same
//! table and the same JSON shape.

pub mod flows;
pub mod json;
pub mod prometheus;
pub mod table;
pub mod tally;

pub use json::Report;
pub use tally::{Counter, Tally, Verdicts};
