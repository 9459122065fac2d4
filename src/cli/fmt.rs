//! `flowpol fmt`: print a policy in canonical form, comments kept.

use crate::cli::{EXIT_FINDINGS, EXIT_OK};
use crate::policy::fmt::FmtError;
use crate::policy::{self, Source, diagnostic};
use std::path::PathBuf;

/// Print a policy in canonical form, comments kept.
///
/// The canonical form has one rule a line, fields in a fixed order, `any` fields
/// left out, labels in hex, blocks of one kind merged. Comments are kept: a comment on its own
/// line goes before the item that follows it, a comment after an item stays at the end of its
/// line (two spaces after it). With --check, print nothing and exit 1 when the file is not
/// already canonical.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The policy file; `-` reads standard input.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Exit 1 if the file differs from its canonical form, instead of printing it.
    #[arg(long)]
    pub check: bool,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let (name, text) = crate::cli::check::read(&args.file)?;
    let canonical = match policy::fmt::format_source(&text) {
        Ok(c) => c,
        Err(FmtError::Invalid(errors)) => {
            let render = diagnostic::Renderer::new(Source {
                name: &name,
                text: &text,
            });
            for d in &errors {
                eprint!("{}", render.human(d));
            }
            return Ok(EXIT_FINDINGS);
        }
    };
    if args.check {
        if canonical != text {
            eprintln!("{name}: not in canonical form (run `flowpol fmt {name}`)");
            return Ok(EXIT_FINDINGS);
        }
        return Ok(EXIT_OK);
    }
    print!("{canonical}");
    Ok(EXIT_OK)
}
