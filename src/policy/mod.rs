//! The policy language: syntax tree with spans ([`syntax`]), the nom parser ([`parse`]), the
//! checks that turn a tree into a [`Policy`] ([`check`], with the private `cover` module for
//! rules that several earlier rules cover together), rustc-style diagnostics
//! ([`diagnostic`]), and the canonical formatter, which keeps comments ([`fmt`]). The grammar is in
//! `docs/policy-language.md`.

pub mod check;
mod cover;
pub mod diagnostic;
pub mod diff;
pub mod explain;
pub mod fmt;
pub mod model;
pub mod parse;
pub mod sarif;
pub mod syntax;
pub mod testfile;

pub use diagnostic::{Diagnostic, Severity, Source};
pub use model::{Action, Policy};

use std::path::{Path, PathBuf};

/// Parses and checks a policy text: the policy when it has no error, and every finding (syntax
/// errors first-come, then checks), sorted by position.
pub fn check_source(src: &str) -> (Option<Policy>, Vec<Diagnostic>) {
    let (_, policy, diags) = parse_and_check(src);
    (policy, diags)
}

/// [`check_source`], also returning the syntax tree (with the file's comments), which
/// [`fmt::format_source`] places comments by.
pub fn parse_and_check(src: &str) -> (syntax::FileAst, Option<Policy>, Vec<Diagnostic>) {
    let (ast, mut diags) = parse::parse(src);
    let (policy, more) = check::check(&ast);
    diags.extend(more);
    diags.sort_by_key(|d| (d.span.start, d.span.end));
    let policy = if diags.iter().any(|d| d.severity == Severity::Error) {
        None
    } else {
        policy
    };
    (ast, policy, diags)
}

/// A policy that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("policy {name} has {errors} error(s):\n{rendered}")]
    Invalid {
        name: String,
        errors: usize,
        rendered: String,
    },
}

/// Parses and checks a policy; on error, the rendered diagnostics. Warnings are not errors.
pub fn load_str(name: &str, src: &str) -> Result<Policy, PolicyError> {
    let (policy, diags) = check_source(src);
    match policy {
        Some(p) => Ok(p),
        None => {
            let render = diagnostic::Renderer::new(Source { name, text: src });
            let errs: Vec<&Diagnostic> = diags
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .collect();
            let rendered = errs.iter().map(|d| render.human(d)).collect();
            Err(PolicyError::Invalid {
                name: name.to_string(),
                errors: errs.len(),
                rendered,
            })
        }
    }
}

/// Reads, parses and checks a policy file.
pub fn load_file(path: &Path) -> Result<Policy, PolicyError> {
    let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    load_str(&path.display().to_string(), &text)
}
