//! `flowpol explain`: which rule a packet matches, in each block, and why not the ones before.

use crate::cli::{EXIT_OK, OutputFormat};
use crate::label::FlowLabel;
use crate::packet::IpNumber;
use crate::policy::explain::{self, Explanation, FiveFields, Verdict};
use crate::policy::{self, Policy, Source, diagnostic};
use anyhow::{Context, bail};
use std::io::Write;
use std::net::Ipv6Addr;
use std::path::PathBuf;

/// Show which rule a packet matches and why each earlier rule does not.
///
/// For the 3-tuple (with --label) and the 5-tuple (with --proto, and --sport/--dport for a
/// protocol with ports): the first matching rule and its action (or the default), and for each
/// earlier rule the first field the packet does not match. `--format json` prints
/// `{"three": {"rule": NAME|null, "action": ..., "skipped": [...]}, "five": ...}`, a block
/// `null` when its fields were not given. Exit codes: 0, or 2 for a usage error or a policy
/// that cannot be read or has errors.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The policy file; `-` reads standard input.
    #[arg(value_name = "POLICY")]
    pub policy: PathBuf,
    /// Source address.
    #[arg(long)]
    pub src: Ipv6Addr,
    /// Destination address.
    #[arg(long)]
    pub dst: Ipv6Addr,
    /// Flow label (decimal or 0x hex, 20 bits): explains the 3-tuple block.
    #[arg(long, value_parser = parse_label)]
    pub label: Option<FlowLabel>,
    /// Protocol (tcp, udp, sctp, icmpv6, dccp, udplite or a number): explains the 5-tuple block.
    #[arg(long, value_parser = parse_proto)]
    pub proto: Option<u8>,
    /// Source port (with a protocol that has ports).
    #[arg(long)]
    pub sport: Option<u16>,
    /// Destination port (with a protocol that has ports).
    #[arg(long)]
    pub dport: Option<u16>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
}

/// A flow label: decimal or `0x` hex, at most 20 bits.
pub(crate) fn parse_label(s: &str) -> Result<FlowLabel, String> {
    let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse::<u64>(),
    }
    .map_err(|e| format!("not a number: {e}"))?;
    FlowLabel::new(v).map_err(|e| e.to_string())
}

/// A protocol by name or number.
pub(crate) fn parse_proto(s: &str) -> Result<u8, String> {
    if let Some(p) = IpNumber::from_name(s) {
        return Ok(p.0);
    }
    s.parse::<u8>().map_err(|_| {
        format!(
            "`{s}` is not a protocol name (tcp, udp, sctp, icmpv6, dccp, udplite) or a number 0-255"
        )
    })
}

/// A policy read and checked, with its text for positions.
pub(crate) struct Loaded {
    pub name: String,
    pub text: String,
    pub policy: Policy,
}

/// Reads and checks a policy (`-` is standard input); errors are rendered into the error.
pub(crate) fn load(path: &PathBuf) -> anyhow::Result<Loaded> {
    let (name, text) = crate::cli::check::read(path)?;
    let policy = policy::load_str(&name, &text)?;
    Ok(Loaded { name, text, policy })
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let five = match (args.proto, args.sport, args.dport) {
        (None, None, None) => None,
        (None, _, _) => bail!("--sport and --dport need --proto"),
        (Some(p), s, d) if IpNumber(p).has_ports() => match (s, d) {
            (Some(sport), Some(dport)) => Some(FiveFields {
                proto: p,
                sport,
                dport,
            }),
            _ => bail!(
                "protocol {} has ports: give --sport and --dport",
                IpNumber(p)
            ),
        },
        (Some(p), None, None) => Some(FiveFields {
            proto: p,
            sport: 0,
            dport: 0,
        }),
        (Some(p), _, _) => bail!(
            "protocol {} has no ports: leave out --sport and --dport",
            IpNumber(p)
        ),
    };
    if args.label.is_none() && five.is_none() {
        bail!("give --label (3-tuple), --proto (5-tuple), or both");
    }
    let loaded = load(&args.policy)?;
    let e = explain::explain(&loaded.policy, args.src, args.dst, args.label, five);
    let text = args.format.render(&e, |e| human(e, &loaded))?;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .context("writing the explanation")?;
    out.flush()?;
    Ok(EXIT_OK)
}

fn human(e: &Explanation, l: &Loaded) -> String {
    let render = diagnostic::Renderer::new(Source {
        name: &l.name,
        text: &l.text,
    });
    let mut s = String::new();
    let mut block = |title: &str, v: &Verdict, spans: &dyn Fn(usize) -> usize| {
        let at = |i: usize| {
            let (line, col) = render.line_col(spans(i));
            format!("{}:{line}:{col}", l.name)
        };
        match (&v.rule, v.index) {
            (Some(r), Some(i)) => {
                s.push_str(&format!("{title}: {} by rule {r} ({})\n", v.action, at(i)))
            }
            _ => s.push_str(&format!("{title}: {} by the default\n", v.action)),
        }
        for m in &v.skipped {
            s.push_str(&format!(
                "  not {} ({}): {} {} does not match {}\n",
                m.rule,
                at(m.index),
                m.field,
                m.got,
                m.wants
            ));
        }
    };
    let p = &l.policy;
    if let Some(v) = &e.three {
        block("3-tuple", v, &|i| p.three[i].span.start);
    }
    if let Some(v) = &e.five {
        block("5-tuple", v, &|i| p.five[i].span.start);
    }
    s.trim_end().to_string()
}
