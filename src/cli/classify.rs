//! `flowpol classify --policy FILE --pcap FILE`: every packet of a capture classified on the
//! 3-tuple and on the 5-tuple, side by side; optional per-packet JSON lines and per-class pcaps.

use crate::classify::{Classifier, Linear};
use crate::packet::{FiveTuple, Frame, LinkType, ThreeTuple};
use crate::report::json::{SourceInfo, Stopped};
use crate::report::{Outcome, Report, Tally, table};
use crate::source::pcap::{CaptureReader, Format, FrameWriter, PcapWriter};
use anyhow::Context;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};

/// Report formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// Human tables.
    #[default]
    Table,
    /// One JSON object.
    Json,
}

/// Classification engines.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Engine {
    /// The linear first-match reference engine.
    #[default]
    Linear,
}

/// Classify every packet of a capture on the 3-tuple and on the 5-tuple.
///
/// Exit codes: 0 done; 2 unreadable policy or capture, or a capture that is corrupt or
/// truncated part way (the report of what was read comes first, then the error with its byte
/// offset).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The policy file.
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// The capture file (pcap or pcapng).
    #[arg(long, value_name = "FILE")]
    pub pcap: PathBuf,
    /// Report format.
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
    /// Also write one JSON object per IPv6 packet to this file (JSON lines): frame, src, dst,
    /// flow_label, next_header, proto, sport, dport, three, five, five_unavailable.
    #[arg(long, value_name = "FILE.jsonl")]
    pub packets: Option<PathBuf>,
    /// Also write one pcap per outcome and engine into this directory
    /// (three-CLASS.pcap, five-CLASS.pcap, five-unavailable.pcap).
    #[arg(long, value_name = "DIR")]
    pub split: Option<PathBuf>,
    /// The engine used for both key types.
    #[arg(long, value_enum, default_value_t)]
    pub engine: Engine,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let policy = crate::policy::load_file(&args.policy)?;
    match args.engine {
        Engine::Linear => {
            let c3 = Linear::<ThreeTuple>::new(&policy);
            let c5 = Linear::<FiveTuple>::new(&policy);
            run_with(&args, &policy, &c3, &c5)
        }
    }
}

/// A progress bar on the terminal only.
pub(crate) fn progress(path: &Path) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let pb = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} {bytes}/{total_bytes} [{wide_bar}] {msg} {eta}",
    ) {
        pb.set_style(style);
    }
    pb
}

pub(crate) fn source_info(path: &Path, format: Format) -> SourceInfo {
    SourceInfo {
        kind: match format {
            Format::Pcap => "pcap".into(),
            Format::Pcapng => "pcapng".into(),
        },
        name: path.display().to_string(),
    }
}

/// The run, generic over the two engines so the hot loop is monomorphised for each.
pub fn run_with<C3, C5>(
    args: &Args,
    policy: &crate::policy::Policy,
    c3: &C3,
    c5: &C5,
) -> anyhow::Result<u8>
where
    C3: Classifier<ThreeTuple>,
    C5: Classifier<FiveTuple>,
{
    let mut reader = CaptureReader::open(&args.pcap)
        .with_context(|| format!("reading {}", args.pcap.display()))?;
    let mut tally = Tally::new(policy, c3.name(), c5.name());
    let mut jsonl = match &args.packets {
        Some(p) => Some(PacketLines::create(p, policy)?),
        None => None,
    };
    let mut split = match &args.split {
        Some(d) => Some(Splitter::create(d, &tally)?),
        None => None,
    };
    let pb = progress(&args.pcap);
    let mut stopped = None;
    loop {
        let frame = match reader.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                stopped = Some(e);
                break;
            }
        };
        let outcome = tally.classify(&frame, c3, c5);
        if let Some(j) = jsonl.as_mut() {
            j.write(&frame, &outcome).context("writing --packets")?;
        }
        if let Some(s) = split.as_mut() {
            s.write(&frame, &outcome, &tally)
                .context("writing --split")?;
        }
        if frame.number.is_multiple_of(4096) {
            pb.set_position(reader.offset());
        }
    }
    pb.finish_and_clear();
    if let Some(j) = jsonl {
        j.finish().context("writing --packets")?;
    }
    if let Some(s) = split {
        s.finish().context("writing --split")?;
    }
    let mut report = Report::new(
        &tally,
        policy,
        &args.policy.display().to_string(),
        source_info(&args.pcap, reader.format()),
    );
    report.stopped = stopped.as_ref().map(|e| Stopped {
        offset: e.offset(),
        message: e.to_string(),
    });
    let mut out = std::io::stdout().lock();
    match args.format {
        OutputFormat::Table => write!(out, "{}", table::render(&report))?,
        OutputFormat::Json => writeln!(out, "{}", report.to_json())?,
    }
    out.flush()?;
    match stopped {
        Some(e) => Err(anyhow::Error::new(e).context(format!("reading {}", args.pcap.display()))),
        None => Ok(super::EXIT_OK),
    }
}

/// `--packets`: one JSON object per IPv6 packet, written without building a value per packet.
struct PacketLines {
    w: BufWriter<File>,
    /// JSON-encoded rule names, per engine.
    three: Vec<String>,
    five: Vec<String>,
}

impl PacketLines {
    fn create(path: &Path, policy: &crate::policy::Policy) -> anyhow::Result<Self> {
        let f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let enc = |n: &str| serde_json::to_string(n).unwrap_or_else(|_| "\"?\"".into());
        Ok(PacketLines {
            w: BufWriter::new(f),
            three: policy.three.iter().map(|r| enc(&r.name)).collect(),
            five: policy.five.iter().map(|r| enc(&r.name)).collect(),
        })
    }

    fn write(&mut self, frame: &Frame<'_>, o: &Outcome<'_>) -> std::io::Result<()> {
        let Outcome::Ipv6 { keys, three, five } = o else {
            return Ok(());
        };
        let w = &mut self.w;
        write!(
            w,
            "{{\"frame\":{},\"src\":\"{}\",\"dst\":\"{}\",\"flow_label\":{},\"next_header\":{},",
            frame.number,
            keys.three.src_addr(),
            keys.three.dst_addr(),
            keys.three.label.value(),
            keys.next_header
        )?;
        match keys.five {
            Ok(t) => write!(w, "\"proto\":{},", t.proto)?,
            Err(_) => w.write_all(b"\"proto\":null,")?,
        }
        match keys.ports() {
            Some((s, d)) => write!(w, "\"sport\":{s},\"dport\":{d},")?,
            None => w.write_all(b"\"sport\":null,\"dport\":null,")?,
        }
        let name = |names: &[String], r: Option<crate::classify::RuleId>| -> String {
            r.map_or_else(|| "\"default\"".to_string(), |r| names[r.index()].clone())
        };
        write!(w, "\"three\":{},", name(&self.three, *three))?;
        match five {
            Ok(r) => write!(
                w,
                "\"five\":{},\"five_unavailable\":null}}",
                name(&self.five, *r)
            )?,
            Err(why) => write!(
                w,
                "\"five\":null,\"five_unavailable\":\"{}\"}}",
                why.as_str()
            )?,
        }
        w.write_all(b"\n")
    }

    fn finish(mut self) -> std::io::Result<()> {
        self.w.flush()
    }
}

/// `--split`: one pcap per (engine, outcome), created when its first packet arrives.
struct Splitter {
    dir: PathBuf,
    writers: HashMap<(u8, usize, LinkType), PcapWriter<BufWriter<File>>>,
    first_link: HashMap<(u8, usize), LinkType>,
    names: Vec<String>,
}

impl Splitter {
    fn create(dir: &Path, tally: &Tally) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut names = tally.verdicts.names.clone();
        names.push("unavailable".into());
        Ok(Splitter {
            dir: dir.to_path_buf(),
            writers: HashMap::new(),
            first_link: HashMap::new(),
            names,
        })
    }

    fn put(&mut self, engine: u8, outcome: usize, frame: &Frame<'_>) -> std::io::Result<()> {
        let key = (engine, outcome, frame.link);
        if !self.writers.contains_key(&key) {
            let first = *self
                .first_link
                .entry((engine, outcome))
                .or_insert(frame.link);
            let prefix = if engine == 3 { "three" } else { "five" };
            let name = &self.names[outcome];
            let file = if first == frame.link {
                format!("{prefix}-{name}.pcap")
            } else {
                format!("{prefix}-{name}-link{}.pcap", frame.link.0)
            };
            self.writers
                .insert(key, PcapWriter::create(self.dir.join(file), frame.link)?);
        }
        match self.writers.get_mut(&key) {
            Some(w) => w.write_frame(frame),
            None => Ok(()),
        }
    }

    fn write(&mut self, frame: &Frame<'_>, o: &Outcome<'_>, tally: &Tally) -> std::io::Result<()> {
        let Outcome::Ipv6 { three, five, .. } = o else {
            return Ok(());
        };
        self.put(3, tally.verdicts.of_three(*three), frame)?;
        let col = match five {
            Ok(r) => tally.verdicts.of_five(*r),
            Err(_) => self.names.len() - 1,
        };
        self.put(5, col, frame)
    }

    fn finish(self) -> std::io::Result<()> {
        for (_, w) in self.writers {
            w.into_inner()?;
        }
        Ok(())
    }
}
