//! Generators: synthetic captures ([`trace`]) for tests, benchmarks and the bundled demo; the
//! ClassBench importer ([`classbench`]) and its trace check ([`trace_check`]); generated
//! IPv6-native rule sets and keys ([`rules`]).

pub mod classbench;
pub mod rules;
pub mod trace;
pub mod trace_check;
