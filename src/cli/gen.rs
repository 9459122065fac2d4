//! `flowpol gen ...`: generators. `gen trace` writes a deterministic synthetic capture.

use crate::r#gen::trace::{self, TraceConfig};
use crate::packet::LinkType;
use crate::source::pcap::{FrameWriter, PcapNgWriter, PcapWriter};
use anyhow::Context;
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

/// Generate test inputs: synthetic captures (`gen trace`) and rule sets (`gen rules`).
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: GenCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum GenCommand {
    /// Write a deterministic synthetic IPv6 capture (see the address plan in `flowpol::gen::trace`).
    Trace(TraceArgs),
    /// Generate an IPv6-native rule set (acl, fw or ipc shape) as a policy on standard output.
    ///
    /// Prefixes come from one address plan (/32 organisations, /48 sites, /64 subnets, hosts),
    /// so they nest and overlap. acl: specific destinations, exact ports; fw: wildcards and port
    /// ranges; ipc: host pairs. The same seed gives the same policy. With `--tuple three` the
    /// destination port becomes a flow label as in `import classbench --as three`, and one rule
    /// in ten has a value/mask label.
    Rules(super::gen_rules::Args),
}

/// Capture file formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureFormat {
    Pcap,
    Pcapng,
}

/// Link types `gen trace` can write.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Link {
    /// Ethernet II, with 802.1Q and QinQ tags per the address plan.
    #[default]
    Ethernet,
    /// Raw IP (LINKTYPE_RAW).
    Raw,
    /// BSD loopback (LINKTYPE_NULL).
    Null,
    /// Linux cooked capture v1.
    Sll,
    /// Linux cooked capture v2.
    Sll2,
}

impl Link {
    fn link_type(self) -> LinkType {
        match self {
            Link::Ethernet => LinkType::ETHERNET,
            Link::Raw => LinkType::RAW,
            Link::Null => LinkType::NULL,
            Link::Sll => LinkType::LINUX_SLL,
            Link::Sll2 => LinkType::LINUX_SLL2,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct TraceArgs {
    /// The capture file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of flows.
    #[arg(long, default_value_t = TraceConfig::default().flows)]
    pub flows: usize,
    /// Exact number of frames to write.
    #[arg(long, default_value_t = TraceConfig::default().packets)]
    pub packets: usize,
    /// Seed: the same seed gives the same bytes.
    #[arg(long, default_value_t = TraceConfig::default().seed)]
    pub seed: u64,
    /// Link type of the frames (VLAN tags on Ethernet, and on Linux cooked captures as libpcap
    /// writes them).
    #[arg(long, value_enum, default_value_t)]
    pub link: Link,
    /// File format (default: pcapng when --out ends in .pcapng, else pcap).
    #[arg(long, value_enum)]
    pub format: Option<CaptureFormat>,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    match args.command {
        GenCommand::Trace(a) => run_trace(a),
        GenCommand::Rules(a) => super::gen_rules::run(a),
    }
}

fn run_trace(a: TraceArgs) -> anyhow::Result<u8> {
    let format = a.format.unwrap_or_else(|| {
        if a.out
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("pcapng"))
        {
            CaptureFormat::Pcapng
        } else {
            CaptureFormat::Pcap
        }
    });
    let cfg = TraceConfig {
        flows: a.flows,
        packets: a.packets,
        seed: a.seed,
        link: a.link.link_type(),
    };
    let file = File::create(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let file = BufWriter::new(file);
    let mut w: Box<dyn FrameWriter> = match format {
        CaptureFormat::Pcap => Box::new(PcapWriter::new(file, cfg.link)?),
        CaptureFormat::Pcapng => Box::new(PcapNgWriter::new(file, cfg.link)?),
    };
    let s = trace::generate(&cfg, w.as_mut())
        .with_context(|| format!("writing {}", a.out.display()))?;
    eprintln!(
        "wrote {} frames ({} IPv6) of {} flows to {}",
        s.frames,
        s.ipv6,
        s.flows,
        a.out.display()
    );
    Ok(super::EXIT_OK)
}
