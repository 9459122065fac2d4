//! What flowpol's integration tests share. Each file under `tests/` is a crate of its own, so this
//! is a library crate (a dev-dependency named `support`) rather than a module every test file
//! would compile whole: a test file uses what it needs and nothing is dead code.
//!
//! - [`alloc`]: a counting global allocator for the no-allocation tests;
//! - [`cmd`]: the one `flowpol` command builder ([`flowpol!`] makes one for the binary under test);
//! - [`gate`]: whether a root-only test or one needing an outside tool runs (under `CI=true` it
//!   must), and the repository and shared data folders;
//! - [`netns`]: network namespaces and veth pairs of the test's own, removed on drop;
//! - [`proc`]: a child spawned and waited on until it says it is ready;
//! - [`tshark`]: tshark's reading of a capture, the outside truth;
//! - [`capture`]: tcpdump captures, `flowpol sink` and pcap/pcapng files read with pcap-file;
//! - [`compile`]: seeded policies and labelled frames for the compile tests;
//! - [`encap`]: frames for every encapsulation flowpol decodes, and what it should key in them.

pub mod alloc;
pub mod capture;
pub mod cmd;
pub mod compile;
pub mod encap;
pub mod gate;
pub mod netns;
pub mod proc;
pub mod tshark;

pub use cmd::{Flowpol, OutputExt};

/// A [`Flowpol`] command for the `flowpol` binary of the package under test. A macro because
/// Cargo tells only the integration test crates where that binary is
/// (`CARGO_BIN_EXE_flowpol`), and a macro's `env!` is read in the crate that calls it.
#[macro_export]
macro_rules! flowpol {
    () => {
        $crate::Flowpol::at(env!("CARGO_BIN_EXE_flowpol"))
    };
    ($($arg:expr),+ $(,)?) => {
        $crate::Flowpol::at(env!("CARGO_BIN_EXE_flowpol")).args([$($arg),+])
    };
}
