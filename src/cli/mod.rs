//! The command line: clap argument definitions and one small module per command that wires the
//! library's data path together. Parsing arguments is kept apart from doing the work.

pub mod bench;
pub mod check;
pub mod classify;
pub mod compile;
pub mod diff;
pub mod explain;
pub mod flows;
pub mod fmt;
pub mod r#gen;
pub mod gen_rules;
pub mod import;
pub mod interop;
pub mod nft;
pub mod replay;
pub mod send;
pub mod sink;
pub mod test;
pub mod watch;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Report format of the commands that print a report.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// Human tables.
    #[default]
    Table,
    /// One JSON object.
    Json,
}

impl OutputFormat {
    /// The report as text: `table` for humans, or pretty JSON, ending in a newline.
    pub fn render<T: serde::Serialize, D: std::fmt::Display>(
        self,
        report: &T,
        table: impl FnOnce(&T) -> D,
    ) -> anyhow::Result<String> {
        Ok(match self {
            OutputFormat::Table => format!("{}\n", table(report)),
            OutputFormat::Json => serde_json::to_string_pretty(report)? + "\n",
        })
    }
}

/// Exit code: success, no findings.
pub const EXIT_OK: u8 = 0;
/// Exit code: the command ran and found problems (policy errors, mismatches).
pub const EXIT_FINDINGS: u8 = 1;
/// Exit code: usage error, I/O error, or a missing privilege.
pub const EXIT_ERROR: u8 = 2;

/// flowpol: flow-label policy engine for Linux.
///
/// Exit codes: 0 ok, 1 findings (policy errors, or warnings with --deny-warnings), 2 usage,
/// I/O error or missing privilege.
#[derive(Parser, Debug)]
#[command(name = "flowpol", version, about, long_about = None)]
pub struct Cli {
    /// More logging on stderr (-v info, -vv debug, -vvv trace). RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// Each command's help is the doc comment of its `Args` struct: a one-line summary for the
/// command list, then the details `--help` prints. (A doc comment on a variant here would
/// replace it.)
#[derive(Subcommand, Debug)]
pub enum Command {
    Check(check::Args),
    Test(test::Args),
    Diff(diff::Args),
    Explain(explain::Args),
    Fmt(fmt::Args),
    Compile(compile::Args),
    Nft(nft::Args),
    Interop(interop::Args),
    Classify(classify::Args),
    Flows(flows::Args),
    Gen(r#gen::Args),
    Send(send::Args),
    Sink(sink::Args),
    Replay(replay::Args),
    Watch(watch::Args),
    Import(import::Args),
    Bench(bench::Args),
}

fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(log_colours(
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
            std::env::var_os("NO_COLOR").as_deref(),
        ))
        .try_init();
}

/// Whether log lines get ANSI colours: only on a terminal, and not when `NO_COLOR` is set to
/// anything but the empty string (<https://no-color.org>). A pipe or a file gets plain text.
fn log_colours(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Parses arguments, runs the command, maps errors to exit code 2.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_ERROR } else { EXIT_OK });
        }
    };
    init_logging(cli.verbose);
    match run(cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::from(EXIT_OK);
            }
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn run(command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Check(a) => check::run(a),
        Command::Test(a) => test::run(a),
        Command::Diff(a) => diff::run(a),
        Command::Explain(a) => explain::run(a),
        Command::Fmt(a) => fmt::run(a),
        Command::Compile(a) => compile::run(a),
        Command::Nft(a) => nft::run(a),
        Command::Interop(a) => interop::run(a),
        Command::Classify(a) => classify::run(a),
        Command::Flows(a) => flows::run(a),
        Command::Gen(a) => r#gen::run(a),
        Command::Send(a) => send::run(a),
        Command::Sink(a) => sink::run(a),
        Command::Replay(a) => replay::run(a),
        Command::Watch(a) => watch::run(a),
        Command::Import(a) => import::run(a),
        Command::Bench(a) => bench::run(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn logs_are_coloured_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(log_colours(true, None));
        assert!(log_colours(true, Some(OsStr::new(""))));
        assert!(!log_colours(true, Some(OsStr::new("1"))));
        assert!(!log_colours(false, None));
    }

    #[test]
    fn every_command_has_a_summary_and_its_details_reach_help() {
        let cli = Cli::command();
        for sub in cli.get_subcommands() {
            let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
            assert!(!about.is_empty(), "{} has no summary", sub.get_name());
            assert!(
                !about.contains('\n'),
                "{}: summary over one line",
                sub.get_name()
            );
        }
        // The details written on the Args structs are what `--help` prints.
        for (name, detail) in [
            ("check", "Exit codes"),
            ("test", "Exit codes"),
            ("diff", "incomplete"),
            ("explain", "first field"),
            ("classify", "Exit codes"),
            ("watch", "--interval"),
            ("fmt", "two spaces"),
            ("bench", "mismatches"),
            ("interop", "SO_BINDTODEVICE"),
        ] {
            let sub = cli.find_subcommand(name).unwrap();
            let long = sub
                .get_long_about()
                .map(|a| a.to_string())
                .unwrap_or_default();
            assert!(
                long.contains(detail),
                "{name} --help lacks {detail:?}: {long}"
            );
        }
    }
}
