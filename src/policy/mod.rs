//! The policy language: syntax tree with spans, the nom parser, the checks that turn a tree
//! into a [`Policy`], rustc-style diagnostics, and the canonical formatter.

pub mod model;
pub mod syntax;

pub use model::{Action, Policy};
