//! Per-packet output: one JSON object per IPv6 packet (`--packets FILE.jsonl`), and one pcap per
//! outcome and engine (`--split DIR`). Both are fed the [`Outcome`] of the step and write
//! without building a value per packet.

use crate::classify::{Outcome, RuleId};
use crate::packet::{Frame, LinkType};
use crate::policy::model::Policy;
use crate::report::Verdicts;
use crate::source::pcap::{FrameWriter, PcapWriter};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// JSON lines: `frame, src, dst, flow_label, next_header, proto, sport, dport, three, five,
/// five_unavailable` for every IPv6 packet. `sport` and `dport` are null when there is no
/// 5-tuple or its protocol has no ports (ICMPv6, ...), as in every JSON output of flowpol;
/// `proto` is null when there is no 5-tuple.
pub struct PacketLines<W: Write> {
    w: W,
    /// JSON-encoded rule names, per engine.
    three: Vec<String>,
    five: Vec<String>,
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"?\"".into())
}

impl PacketLines<BufWriter<File>> {
    /// Creates (or truncates) a JSON-lines file.
    pub fn create(path: &Path, policy: &Policy) -> io::Result<Self> {
        Ok(PacketLines::new(
            BufWriter::new(File::create(path)?),
            policy,
        ))
    }
}

impl<W: Write> PacketLines<W> {
    pub fn new(w: W, policy: &Policy) -> Self {
        PacketLines {
            w,
            three: policy.three.iter().map(|r| json_str(&r.name)).collect(),
            five: policy.five.iter().map(|r| json_str(&r.name)).collect(),
        }
    }

    fn name(names: &[String], r: Option<RuleId>) -> &str {
        r.map_or("\"default\"", |r| names[r.index()].as_str())
    }

    /// Writes the line of one frame (nothing for a non-IPv6 frame).
    pub fn write(&mut self, frame: &Frame<'_>, o: &Outcome<'_>) -> io::Result<()> {
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
        write!(w, "\"three\":{},", Self::name(&self.three, *three))?;
        match five {
            Ok(r) => write!(
                w,
                "\"five\":{},\"five_unavailable\":null}}",
                Self::name(&self.five, *r)
            )?,
            Err(why) => write!(
                w,
                "\"five\":null,\"five_unavailable\":\"{}\"}}",
                why.as_str()
            )?,
        }
        w.write_all(b"\n")
    }

    /// Flushes and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.w.flush()?;
        Ok(self.w)
    }
}

/// One pcap per (engine, outcome): `three-CLASS.pcap`, `five-CLASS.pcap`,
/// `five-unavailable.pcap`, created when their first packet arrives. A capture with several
/// link types (pcapng) gets `...-linkN.pcap` files for the link types after the first.
pub struct Splitter {
    dir: PathBuf,
    writers: HashMap<(u8, usize, LinkType), PcapWriter<BufWriter<File>>>,
    first_link: HashMap<(u8, usize), LinkType>,
    /// The outcome of each rule (the tally's).
    verdicts: Verdicts,
    names: Vec<String>,
}

impl Splitter {
    /// Creates the directory if needed. `verdicts`: the outcome of each rule, as the tally
    /// has them.
    pub fn create(dir: &Path, verdicts: &Verdicts) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut names = verdicts.names.clone();
        names.push("unavailable".into());
        Ok(Splitter {
            dir: dir.to_path_buf(),
            writers: HashMap::new(),
            first_link: HashMap::new(),
            verdicts: verdicts.clone(),
            names,
        })
    }

    fn put(&mut self, engine: u8, outcome: usize, frame: &Frame<'_>) -> io::Result<()> {
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

    /// Writes an IPv6 frame to its 3-tuple file and its 5-tuple file.
    pub fn write(&mut self, frame: &Frame<'_>, o: &Outcome<'_>) -> io::Result<()> {
        let Outcome::Ipv6 { three, five, .. } = o else {
            return Ok(());
        };
        self.put(3, self.verdicts.of_three(*three), frame)?;
        let col = match five {
            Ok(r) => self.verdicts.of_five(*r),
            Err(_) => self.names.len() - 1,
        };
        self.put(5, col, frame)
    }

    /// Flushes every file.
    pub fn finish(self) -> io::Result<()> {
        for (_, w) in self.writers {
            w.into_inner()?;
        }
        Ok(())
    }
}
