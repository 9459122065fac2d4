//! `flowpol compile`: a policy to an nftables ruleset or to pcap-filter (BPF) expressions.

use crate::compile::{MarkPolicy, bpf, nft};
use crate::policy::syntax::TupleKind;
use anyhow::Context as _;
use std::io::Write as _;
use std::path::PathBuf;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// An nftables ruleset for `nft -f` (table ip6 flowpol).
    Nft,
    /// pcap-filter expressions for tcpdump, tshark -f and libpcap.
    Bpf,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookArg {
    Prerouting,
    Input,
    Forward,
    Output,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodingArg {
    /// Verdict maps for runs of pairwise-disjoint rules, plain rules elsewhere.
    Auto,
    /// One nft rule per policy rule.
    Plain,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// Compile a policy to an nftables ruleset or pcap-filter (BPF) expressions.
///
/// The 5-tuple is what the kernel can enforce: its protocol is netfilter's `meta l4proto`,
/// which stops at an IPsec Authentication Header (TCP/UDP behind AH is protocol 51, with no
/// ports, in flowpol as in the kernel: ports behind AH cannot be matched). A packet whose
/// transport header the kernel cannot read (a non-first fragment: an offset in any fragment
/// header, of which the kernel sees a second only right behind a first at byte 40; ESP; next header 59; a header cut short; payload length 0 without hop-by-hop) has no
/// 5-tuple: the nft ruleset counts it in `unavailable` with the default's verdict. Both nft
/// encodings give every packet the same rule. BPF 5-tuple expressions are not exact (each
/// says why); an expression too long for one argument or the kernel's 4,096 instructions is
/// flagged: write them to files with --filter-dir for `tcpdump -F`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The policy file.
    pub policy: PathBuf,
    /// What to emit.
    #[arg(long, value_enum)]
    pub target: Target,
    /// Which block of rules to compile.
    #[arg(long, value_enum, default_value = "three")]
    pub engine: TupleKind,
    /// nft: the netfilter hook of the base chain.
    #[arg(long, value_enum, default_value = "input")]
    pub hook: HookArg,
    /// nft: the base chain's priority.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,
    /// nft: rule layout. auto puts runs of disjoint rules in verdict maps where a map loads
    /// faster than the same rules written plain (measured costs; single-address rules stay
    /// plain unless some 150 of them share a map); both layouts give every packet the same rule.
    #[arg(long, value_enum, default_value = "auto")]
    pub encoding: EncodingArg,
    /// nft: fail when a class used by the rules has no `mark` (default: assign free marks from
    /// 1 up, listed in the ruleset's header).
    #[arg(long)]
    pub explicit_marks: bool,
    /// bpf: how many VLAN tags (802.1Q, 802.1ad) the expressions look behind on Ethernet, at
    /// most 4 as flowpol reads. Each level adds a copy of the tests at `ether[..]` offsets
    /// (about 5x the program with 4); 0 gives expressions for any link type (`tcpdump -i any`,
    /// tun, Linux cooked captures) that select no VLAN-tagged frame.
    #[arg(long, default_value_t = bpf::MAX_TAGS as u8, value_parser = clap::value_parser!(u8).range(0..=bpf::MAX_TAGS as i64))]
    pub vlan_tags: u8,
    /// Output format: the target's text, or JSON (nft: the ruleset and its counter map; bpf:
    /// one object per filter with `exact` and `reason`).
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Write to this file instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// bpf: also write each expression to its own file in this directory (created if absent),
    /// for `tcpdump -F FILE`: long expressions exceed the 128 KiB limit of one argument.
    #[arg(long)]
    pub filter_dir: Option<PathBuf>,
    /// nft: load the ruleset with `nft -f -` in the current network namespace (replacing
    /// `table ip6 flowpol` atomically) instead of printing it.
    #[arg(long, conflicts_with_all = ["output", "dry_run"])]
    pub apply: bool,
    /// nft: validate the ruleset with `nft -c -f -` (the kernel checks it, nothing changes)
    /// instead of printing it.
    #[arg(long, conflicts_with = "output")]
    pub dry_run: bool,
}

fn policy_rules(p: &crate::policy::Policy, e: TupleKind) -> usize {
    match e {
        TupleKind::Three => p.three.len(),
        TupleKind::Five => p.five.len(),
    }
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let policy = crate::policy::load_file(&args.policy)?;
    let engine = args.engine;
    let text = match args.target {
        Target::Nft => {
            let opts = nft::NftOptions {
                engine,
                hook: match args.hook {
                    HookArg::Prerouting => nft::Hook::Prerouting,
                    HookArg::Input => nft::Hook::Input,
                    HookArg::Forward => nft::Hook::Forward,
                    HookArg::Output => nft::Hook::Output,
                },
                priority: args.priority,
                encoding: match args.encoding {
                    EncodingArg::Auto => nft::Encoding::Auto,
                    EncodingArg::Plain => nft::Encoding::Plain,
                },
                marks: if args.explicit_marks {
                    MarkPolicy::Explicit
                } else {
                    MarkPolicy::Auto
                },
                ..Default::default()
            };
            let r = nft::compile(&policy, &opts)
                .with_context(|| format!("{}", args.policy.display()))?;
            tracing::info!(
                groups = r.groups,
                grouped_rules = r.grouped_rules,
                "compiled"
            );
            if args.apply || args.dry_run {
                // nft talks netlink for both; without CAP_NET_ADMIN it prints two lines of raw
                // netlink errors, so the capability is named first, in one line.
                let cap = crate::sys::Capability::NetAdmin;
                if !cap.held() {
                    let what = if args.dry_run {
                        "checking the ruleset against the kernel (--dry-run, nft -c)"
                    } else {
                        "loading the ruleset (--apply)"
                    };
                    anyhow::bail!("{}", crate::sys::caps::missing(&what, cap));
                }
                nft::load(&r.text, args.dry_run)?;
                let verb = if args.dry_run {
                    "nft accepts"
                } else {
                    "loaded"
                };
                eprintln!(
                    "{verb} table ip6 {}: {} {} rules, {} counters, {} verdict maps",
                    nft::TABLE,
                    policy_rules(&policy, engine),
                    engine.keyword(),
                    r.counters.len(),
                    r.groups
                );
                return Ok(super::EXIT_OK);
            }
            match args.format {
                Format::Text => r.text,
                Format::Json => {
                    let counters: Vec<serde_json::Value> = r
                        .counters
                        .iter()
                        .map(|(name, tag)| serde_json::json!({ "counter": name, "tag": tag }))
                        .collect();
                    let marks: Vec<serde_json::Value> = r
                        .marks
                        .entries
                        .iter()
                        .map(|(c, m, auto)| serde_json::json!({ "class": c, "mark": m, "assigned": auto }))
                        .collect();
                    let v = serde_json::json!({
                        "table": nft::TABLE,
                        "engine": engine.keyword(),
                        "groups": r.groups,
                        "grouped_rules": r.grouped_rules,
                        "counters": counters,
                        "marks": marks,
                        "ruleset": r.text,
                    });
                    serde_json::to_string_pretty(&v)? + "\n"
                }
            }
        }
        Target::Bpf => {
            if args.apply || args.dry_run {
                anyhow::bail!("--apply and --dry-run are for --target nft");
            }
            let f = bpf::compile(&policy, engine, args.vlan_tags.into())
                .with_context(|| format!("{}", args.policy.display()))?;
            for x in &f {
                for w in x.size_warnings() {
                    eprintln!("warning: filter {} ({:?}): {w}", x.name, x.kind);
                }
            }
            if let Some(dir) = &args.filter_dir {
                let paths = bpf::write_files(&f, dir)
                    .with_context(|| format!("writing filters to {}", dir.display()))?;
                eprintln!("wrote {} filter files to {}", paths.len(), dir.display());
            }
            match args.format {
                Format::Text => bpf::to_text(&f, engine, args.vlan_tags.into()),
                Format::Json => serde_json::to_string_pretty(&f)? + "\n",
            }
        }
    };
    match &args.output {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?,
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
    }
    Ok(super::EXIT_OK)
}
