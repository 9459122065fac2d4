//! `flowpol import`: ClassBench rule sets as flowpol policies, ClassBench traces as pcaps.

use crate::cli::{EXIT_FINDINGS, EXIT_OK};
use crate::r#gen::classbench::{self, As};
use crate::r#gen::trace_check;
use crate::policy::model::Prefix;
use anyhow::Context;
use std::io::Write;
use std::path::PathBuf;

/// Import rule sets and traces from the ClassBench packet-classification benchmark.
///
/// IPv4 addresses are mapped under a /96: `a.b.c.d/N` becomes `MAP + a.b.c.d` with length
/// `96 + N`. Rule `i` of the file is named `cb<i>` and passes; the default drops. Protocol
/// `0x00/0x00` is any, `0xNN/0xFF` is protocol NN; TCP flags are ignored. See
/// docs/classbench.md.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(clap::Subcommand, Debug)]
pub enum What {
    /// Print a ClassBench rule set as a flowpol policy (canonical text, on standard output).
    ///
    /// IPv4 `a.b.c.d/N` becomes `MAP + a.b.c.d` with length `96 + N` under --map-v4. Rule `i`
    /// of the file is named `cb<i>` and passes; the default drops. Protocol `0x00/0x00` is any,
    /// `0xNN/0xFF` is protocol NN (other masks are rejected); TCP flags are ignored. With
    /// `--as three`, protocol and source port are dropped and the destination-port range becomes
    /// a flow-label range with the same bounds (ports are 16 bits, so it always fits in 20);
    /// `import classbench-trace` sets each packet's label to its destination port to match.
    ///
    /// ClassBench matches port ranges whatever the protocol; flowpol's 5-tuple has ports only
    /// for tcp, udp, sctp, dccp and udplite (0 and 0 for any other protocol), and none at all
    /// when the protocol number is an IPv6 extension header. Each `five` rule is written the
    /// faithful way, and standard error says how many rules went each way (one line per way):
    ///
    ///   exact: as written.
    ///
    ///   ports-dropped: a protocol without ports whose port ranges hold 0: written without
    ///   ports (its packets have ports 0, so it matches the same packets).
    ///
    ///   any-protocol-ports: any protocol with port ranges: one rule per protocol that has
    ///   ports, named `cb<i>.tcp`, `cb<i>.udp`, ... (packets of other protocols, which have ports
    ///   0, are not matched through port 0).
    ///
    ///   ports-exclude-zero: a protocol without ports and a port range without 0: it never
    ///   matches; written as a comment in its place.
    ///
    ///   no-five-tuple: protocol 0, 43, 44, 50, 51, 59, 60, 135, 139, 140, 253 or 254 (IPv6
    ///   extension headers, no next header): such a packet has no 5-tuple, so it never matches;
    ///   written as a comment in its place.
    ///
    /// `three` rules are `exact` (any protocol, any source port) or `widened` (protocol and/or
    /// source port dropped: they match more).
    Classbench(RulesArgs),
    /// Write a ClassBench trace as a pcap of Ethernet + IPv6 + TCP/UDP packets.
    ///
    /// Each packet's flow label is its destination port, matching `import classbench --as three`.
    /// Other protocols get their number as next header and 8 bytes of payload: the ports for
    /// sctp, dccp and udplite; for an extension header (0, 43, 44, 51, 60), that header with no
    /// next header after it (the packet has no 5-tuple); zeros otherwise.
    ///
    /// With --rules, the trace's last column (the 0-based rule each header was drawn from) is
    /// checked against the linear engine's first match on the imported rules, for both tuples;
    /// standard error gives checked, same, earlier, later and column rule misses by reason
    /// (see docs/classbench.md), and the exit code is 1 when a first match comes after the
    /// column or a miss is unexplained.
    ClassbenchTrace(TraceArgs),
}

/// Which rule block the import fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Kind {
    /// `five` block: src, dst, proto, sport, dport as in the file, translated where flowpol's
    /// 5-tuple reads a packet differently (see above).
    #[default]
    Five,
    /// `three` block: src, dst, and the destination-port range as a flow-label range (same
    /// bounds; exact when LO = HI, any for 0-65535); protocol and source port are dropped.
    Three,
    /// Both blocks (same rule names), for running both tuple kinds from one policy, e.g. with
    /// `flowpol bench`.
    Both,
}

#[derive(clap::Args, Debug)]
pub struct RulesArgs {
    /// The ClassBench rule file (`@SRC/LEN DST/LEN SLO : SHI DLO : DHI 0xP/0xM 0xF/0xM`).
    #[arg(value_name = "RULES")]
    pub rules: PathBuf,
    /// Which tuple kind to produce.
    #[arg(long = "as", value_enum, default_value_t = Kind::Five)]
    pub kind: Kind,
    /// The IPv6 /96 IPv4 addresses are mapped under.
    #[arg(long, value_name = "PREFIX/96", default_value = "::ffff:0:0/96", value_parser = classbench::parse_map)]
    pub map_v4: Prefix,
}

#[derive(clap::Args, Debug)]
pub struct TraceArgs {
    /// The ClassBench trace (`SRC DST SPORT DPORT PROTO FLAGS RULE`, decimal).
    #[arg(value_name = "TRACE")]
    pub trace: PathBuf,
    /// The pcap file to write.
    #[arg(long, value_name = "FILE.pcap")]
    pub out: PathBuf,
    /// The ClassBench rule set the trace was generated from: check the trace's rule column.
    #[arg(long, value_name = "RULES")]
    pub rules: Option<PathBuf>,
    /// The IPv6 /96 IPv4 addresses are mapped under.
    #[arg(long, value_name = "PREFIX/96", default_value = "::ffff:0:0/96", value_parser = classbench::parse_map)]
    pub map_v4: Prefix,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    match args.what {
        What::Classbench(a) => rules(a),
        What::ClassbenchTrace(a) => trace(a),
    }
}

fn rules(a: RulesArgs) -> anyhow::Result<u8> {
    let text = std::fs::read_to_string(&a.rules)
        .with_context(|| format!("reading {}", a.rules.display()))?;
    let cb = classbench::parse_rules(&text).with_context(|| a.rules.display().to_string())?;
    let kind = match a.kind {
        Kind::Five => As::Five,
        Kind::Three => As::Three,
        Kind::Both => As::Both,
    };
    let import = classbench::import(&cb, kind, a.map_v4);
    for (tuple, five) in [("five", true), ("three", false)] {
        for (how, n) in import.counts(five) {
            eprintln!("{tuple} {how}: {n} rules, {}", how.describe());
        }
    }
    let out = import.text(&cb);
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .context("writing the policy")?;
    stdout.flush().context("writing the policy")?;
    Ok(EXIT_OK)
}

fn trace(a: TraceArgs) -> anyhow::Result<u8> {
    let text = std::fs::read_to_string(&a.trace)
        .with_context(|| format!("reading {}", a.trace.display()))?;
    let packets = classbench::parse_trace(&text).with_context(|| a.trace.display().to_string())?;
    let file =
        std::fs::File::create(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut w = std::io::BufWriter::new(file);
    let n = classbench::write_trace_pcap(&packets, a.map_v4, &mut w)
        .with_context(|| format!("writing {}", a.out.display()))?;
    w.flush()
        .with_context(|| format!("writing {}", a.out.display()))?;
    tracing::info!(packets = n, out = %a.out.display(), "trace written");
    let Some(rules) = &a.rules else {
        return Ok(EXIT_OK);
    };
    let text =
        std::fs::read_to_string(rules).with_context(|| format!("reading {}", rules.display()))?;
    let cb = classbench::parse_rules(&text).with_context(|| rules.display().to_string())?;
    let import = classbench::import(&cb, As::Both, a.map_v4);
    let p = &import.policy;
    let five = trace_check::first_matches_five(p, a.map_v4, &packets);
    let five = trace_check::check_five(&import, a.map_v4, &packets, &five)
        .with_context(|| format!("checking {} against {}", a.trace.display(), rules.display()))?;
    let three = trace_check::first_matches_three(p, a.map_v4, &packets);
    let three = trace_check::check_three(&import, a.map_v4, &packets, &three)
        .with_context(|| format!("checking {} against {}", a.trace.display(), rules.display()))?;
    eprintln!("trace check five: {five}");
    eprintln!("trace check three: {three}");
    Ok(if five.passes() && three.passes() {
        EXIT_OK
    } else {
        EXIT_FINDINGS
    })
}
