//! Generators: synthetic captures ([`trace`]) for tests, benchmarks and the bundled demo.

pub mod trace;
