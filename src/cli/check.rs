//! `flowpol check`: validate policy files for CI, reporting every finding in every file.

use crate::cli::{EXIT_ERROR, EXIT_FINDINGS, EXIT_OK};
use crate::policy::diagnostic::{Diagnostic, Renderer};
use crate::policy::sarif::SarifLog;
use crate::policy::{self, Severity, Source};
use anyhow::Context;
use std::io::{Read, Write};
use std::path::PathBuf;

/// How findings are printed.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CheckFormat {
    /// rustc-style: `error[CODE]: message`, `--> file:line:col`, the source line and carets.
    #[default]
    Human,
    /// One JSON array of findings: file, line, column, end_line, end_column, severity, code,
    /// message (and help when known). Lines and columns are 1-based.
    Json,
    /// GitHub Actions workflow commands: `::error file=F,line=L,col=C::message`.
    Github,
    /// One SARIF 2.1.0 log (GitHub code scanning).
    Sarif,
}

/// Validate policy files: syntax, value widths and ranges, names, unreachable rules.
///
/// Exit codes: 0 no errors (warnings allowed), 1 errors found (or warnings with
/// --deny-warnings), 2 a file could not be read or the arguments are wrong.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Policy files to check; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: CheckFormat,
    /// Treat warnings as errors for the exit code.
    #[arg(long)]
    pub deny_warnings: bool,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let mut io_failed = false;
    let (mut errors, mut warnings) = (0usize, 0usize);
    let mut printer = Printer::new(args.format);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for path in &args.files {
        let (name, text) = match read(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e:#}");
                io_failed = true;
                continue;
            }
        };
        let (_, diags) = policy::check_source(&text);
        let render = Renderer::new(Source {
            name: &name,
            text: &text,
        });
        for d in &diags {
            match d.severity {
                Severity::Error => errors += 1,
                Severity::Warning => warnings += 1,
            }
            printer.add(&mut out, &render, d)?;
        }
    }
    match args.format {
        CheckFormat::Human => {
            let files = args.files.len();
            let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
            writeln!(
                out,
                "checked {}: {}, {}",
                plural(files, "file"),
                plural(errors, "error"),
                plural(warnings, "warning")
            )?;
        }
        _ => printer.finish(&mut out)?,
    }
    out.flush()?;
    Ok(if io_failed {
        EXIT_ERROR
    } else if errors > 0 || (args.deny_warnings && warnings > 0) {
        EXIT_FINDINGS
    } else {
        EXIT_OK
    })
}

/// Prints findings in one [`CheckFormat`], for `check` and `test`: human and GitHub lines as
/// they come, JSON and SARIF gathered into the one document [`Printer::finish`] writes.
pub struct Printer {
    format: CheckFormat,
    json: Vec<serde_json::Value>,
    sarif: SarifLog,
}

impl Printer {
    pub fn new(format: CheckFormat) -> Printer {
        Printer {
            format,
            json: Vec::new(),
            sarif: SarifLog::new(),
        }
    }

    /// Prints (or gathers) one finding of the file `render` places it in.
    pub fn add(
        &mut self,
        out: &mut impl Write,
        render: &Renderer<'_>,
        d: &Diagnostic,
    ) -> anyhow::Result<()> {
        match self.format {
            CheckFormat::Human => out.write_all(render.human(d).as_bytes())?,
            CheckFormat::Github => writeln!(out, "{}", render.github(d))?,
            CheckFormat::Json => self.json.push(serde_json::to_value(render.json(d))?),
            CheckFormat::Sarif => self.sarif.add(render, d),
        }
        Ok(())
    }

    /// Writes the JSON array or the SARIF log; the human and GitHub formats have nothing left
    /// (a human summary line is the caller's).
    pub fn finish(self, out: &mut impl Write) -> anyhow::Result<()> {
        match self.format {
            CheckFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&self.json)?)?,
            CheckFormat::Sarif => writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&self.sarif.to_value())?
            )?,
            CheckFormat::Human | CheckFormat::Github => {}
        }
        Ok(())
    }
}

/// Reads a policy file, or standard input for `-`; returns the display name and the text.
pub fn read(path: &PathBuf) -> anyhow::Result<(String, String)> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read policy from standard input")?;
        return Ok(("<stdin>".into(), s));
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read policy {}", path.display()))?;
    Ok((path.display().to_string(), text))
}
