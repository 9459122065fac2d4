//! Counting and showing: the [`tally::Tally`] of a run (per rule and per class packets and
//! bytes under each engine, the agreement matrix, why the 5-tuple was unavailable, non-IPv6
//! frames, time per packet), recorded from the outcomes the pipeline hands it; the report's
//! data model ([`model::Report`], serialised as the JSON of `--format json`) built from it; the
//! human [`table`]; and Prometheus metrics. Nothing here opens a capture or a socket, or
//! knows where the frames came from. `classify` (offline) and a live `watch` share all of it, so both print the same
//! table and the same JSON shape.

pub mod flows;
pub mod model;
pub mod prometheus;
pub mod table;
pub mod tally;

pub use model::Report;
pub use tally::{PacketBytes, Tally, Verdicts};
