//! `flowpol test FILE...`: run policy test files (the format is in `docs/testing.md`).

use crate::cli::check::{CheckFormat, Printer};
use crate::cli::{EXIT_ERROR, EXIT_FINDINGS, EXIT_OK};
use crate::policy::diagnostic::{Code, Diagnostic, Renderer};
use crate::policy::syntax::Span;
use crate::policy::{self, Severity, Source, testfile};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Run policy test files: packets and the action each block must give them.
///
/// Each file names its policy (`policy PATH`, relative to the file) and lists cases
/// (`case NAME src A dst B label L [proto P sport S dport D] -> three ACTION [by rule R],
/// five ACTION`); the format is in docs/testing.md. Every failing case is reported at its
/// file:line:col, as `check` reports findings. Exit codes: 0 every case passed, 1 a case
/// failed (or a test file or its policy has errors), 2 a file could not be read.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Test files.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: CheckFormat,
}

/// The findings of one file, with its text to place them.
struct Findings {
    name: String,
    text: String,
    diags: Vec<Diagnostic>,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let mut io_failed = false;
    let (mut passed, mut failed) = (0usize, 0usize);
    let mut all: Vec<Findings> = Vec::new();
    for path in &args.files {
        match test_file(path, &mut all) {
            Ok(n) => passed += n,
            Err(e) => {
                eprintln!("error: {e:#}");
                io_failed = true;
            }
        }
    }
    let mut out = std::io::stdout().lock();
    let mut printer = Printer::new(args.format);
    for f in &all {
        let render = Renderer::new(Source {
            name: &f.name,
            text: &f.text,
        });
        for d in &f.diags {
            if d.severity == Severity::Error {
                failed += 1;
            }
            printer.add(&mut out, &render, d)?;
        }
    }
    match args.format {
        CheckFormat::Human => writeln!(
            out,
            "tested {} file{}: {passed} passed, {failed} failed",
            args.files.len(),
            if args.files.len() == 1 { "" } else { "s" }
        )?,
        _ => printer.finish(&mut out)?,
    }
    out.flush()?;
    Ok(if io_failed {
        EXIT_ERROR
    } else if failed > 0 {
        EXIT_FINDINGS
    } else {
        EXIT_OK
    })
}

/// Runs one test file, appending its findings (and its policy's errors) to `all`; returns the
/// number of expectations that held. An error is a file that could not be read.
fn test_file(path: &Path, all: &mut Vec<Findings>) -> anyhow::Result<usize> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read test file {name}: {e}"))?;
    let (file, mut diags) = testfile::parse(&text);
    let Some((policy_path, policy_span)) = file.policy.clone() else {
        diags.push(
            Diagnostic::new(
                Code::TestInvalid,
                "the test file does not name its policy",
                Span::new(0, 0),
            )
            .with_help("start the file with `policy PATH` (relative to the test file)"),
        );
        all.push(Findings { name, text, diags });
        return Ok(0);
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let ppath = dir.join(&policy_path);
    let ptext = match std::fs::read_to_string(&ppath) {
        Ok(t) => t,
        Err(e) => {
            let (line, col) = Renderer::new(Source {
                name: &name,
                text: &text,
            })
            .line_col(policy_span.start);
            let msg = format!(
                "{name}:{line}:{col}: cannot read policy {}: {e}",
                ppath.display()
            );
            all.push(Findings { name, text, diags });
            anyhow::bail!(msg);
        }
    };
    let pname = ppath.display().to_string();
    let (policy, pdiags) = policy::check_source(&ptext);
    let Some(policy) = policy else {
        let errors: Vec<Diagnostic> = pdiags
            .into_iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        diags.push(
            Diagnostic::new(
                Code::TestInvalid,
                format!("policy {pname} has errors: no case can run"),
                policy_span,
            )
            .with_label("this policy"),
        );
        all.push(Findings { name, text, diags });
        all.push(Findings {
            name: pname,
            text: ptext,
            diags: errors,
        });
        return Ok(0);
    };
    let r = testfile::run(&file, &policy, &pname);
    diags.extend(r.findings);
    diags.sort_by_key(|d| (d.span.start, d.span.end));
    all.push(Findings { name, text, diags });
    Ok(r.passed)
}
