//! `flowpol gen`: generated test material. (Minimal group holding only `gen rules`, from the
//! `fast` branch; the packet branch owns this file and its other subcommands.)

use super::gen_rules;

#[derive(clap::Subcommand, Debug)]
pub enum Gen {
    /// Generate an IPv6-native rule set (acl, fw or ipc shape) as a policy on standard output.
    Rules(gen_rules::Args),
}

pub fn run(g: Gen) -> anyhow::Result<u8> {
    match g {
        Gen::Rules(a) => gen_rules::run(a),
    }
}
