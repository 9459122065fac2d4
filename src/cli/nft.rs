//! `flowpol nft`: talks to the kernel's nftables about a ruleset from `flowpol compile`.

use crate::compile::{nft::TABLE, stats};
use anyhow::Context as _;
use std::io::Write as _;
use std::path::PathBuf;

/// Work with a compiled ruleset in nftables (read its counters back).
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: NftCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum NftCommand {
    /// Per-rule and per-class packet counts from the kernel's named counters
    /// (`nft -j list counters table ip6 flowpol`, in the current network namespace).
    Stats(StatsArgs),
}

use crate::cli::OutputFormat;

#[derive(clap::Args, Debug)]
pub struct StatsArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
    /// The nftables table (family ip6).
    #[arg(long, default_value = TABLE)]
    pub table: String,
    /// Read `nft -j list counters` output from this file instead of running nft.
    #[arg(long)]
    pub input: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    match args.command {
        NftCommand::Stats(a) => stats_cmd(a),
    }
}

fn stats_cmd(a: StatsArgs) -> anyhow::Result<u8> {
    let rows = match &a.input {
        Some(p) => {
            let s =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            let rows =
                stats::parse_counters(&s, &a.table).with_context(|| format!("{}", p.display()))?;
            stats::check_flowpol(&a.table, &rows).with_context(|| format!("{}", p.display()))?;
            rows
        }
        // One line: the missing capability, the missing or foreign table, or nft's error.
        None => stats::read_kernel(&a.table).map_err(|e| anyhow::anyhow!("nft stats: {e}"))?,
    };
    let r = stats::report(&a.table, &rows);
    let text = match a.format {
        OutputFormat::Table => stats::render_table(&r),
        OutputFormat::Json => serde_json::to_string_pretty(&r)? + "\n",
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(super::EXIT_OK)
}
