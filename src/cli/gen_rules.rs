//! `flowpol gen rules`: IPv6-native rule sets with realistic prefix lengths, printed as a policy.

use crate::cli::EXIT_OK;
use crate::r#gen::rules::{self, Shape};
use crate::policy::syntax::TupleKind;
use anyhow::Context;
use std::io::Write;

/// The arguments of `gen rules` (its help text is on `GenCommand::Rules`).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The rule-set shape.
    #[arg(long, value_enum)]
    pub shape: Shape,
    /// How many rules.
    #[arg(long)]
    pub count: usize,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Which rule block to fill.
    #[arg(long, value_enum, default_value_t = TupleKind::Five)]
    pub tuple: TupleKind,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let policy = rules::generate(args.shape, args.count, args.seed, args.tuple);
    let text = crate::policy::fmt::format(&policy);
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .context("writing the policy")?;
    out.flush().context("writing the policy")?;
    Ok(EXIT_OK)
}
