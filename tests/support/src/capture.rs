//! Traffic seen from outside: capture with tcpdump on the far end of a veth pair, read fields
//! back with tshark, collect `flowpol sink` records, and read pcap/pcapng files with pcap-file.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::Flowpol;
use crate::netns;
use crate::proc::{Running, spawn_until};

/// A running tcpdump writing a pcap file.
pub struct Capture {
    run: Running,
    pub file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Capture {
    /// Starts `tcpdump -i IF -U -w FILE FILTER` in `ns` and waits until it listens.
    pub fn start(ns: &str, iface: &str, filter: &str) -> Capture {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cap.pcap");
        let f = file.to_str().unwrap().to_string();
        let mut args = vec![
            "tcpdump",
            "--immediate-mode",
            "-Z",
            "root",
            "-B",
            "8192",
            "-i",
            iface,
            "-n",
            "-U",
            "-s",
            "0",
            "-w",
            &f,
        ];
        args.extend(filter.split_whitespace());
        let (run, _) = spawn_until(netns::exec(ns, &args), "listening on", "tcpdump");
        Capture {
            run,
            file,
            _dir: dir,
        }
    }

    /// Lets stragglers arrive, stops tcpdump with SIGINT, and returns the file.
    pub fn stop(mut self) -> Capture {
        std::thread::sleep(Duration::from_millis(400));
        let pid = self.run.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let (_, _, err) = self.run.finish(Duration::from_secs(10));
        eprintln!("tcpdump: {}", err.trim());
        self
    }

    /// `tshark -r FILE [-Y display] -T fields -e F...`, one Vec per frame.
    pub fn fields(&self, display: Option<&str>, fields: &[&str]) -> Vec<Vec<String>> {
        let mut cmd = Command::new("tshark");
        cmd.arg("-r")
            .arg(&self.file)
            .args(["-o", "ipv6.defragment:FALSE"]);
        if let Some(d) = display {
            cmd.args(["-Y", d]);
        }
        cmd.args(["-T", "fields"]);
        for f in fields {
            cmd.args(["-e", f]);
        }
        let out = cmd.output().expect("running tshark");
        assert!(
            out.status.success(),
            "tshark: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect()
    }

    /// The frames of the capture file (data only), read with pcap-file.
    pub fn frames(&self) -> Vec<Vec<u8>> {
        read_pcap(&self.file)
    }
}

/// Reads the frames of a pcap file.
pub fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    read_pcap_timed(path).into_iter().map(|(_, d)| d).collect()
}

/// Reads the frames of a pcap file with their capture times (since the Unix epoch).
pub fn read_pcap_timed(path: &Path) -> Vec<(Duration, Vec<u8>)> {
    let f = std::fs::File::open(path).unwrap();
    let mut r = pcap_file::pcap::PcapReader::new(f).unwrap();
    let nanos = r.header().ts_resolution == pcap_file::TsResolution::NanoSecond;
    let mut v = Vec::new();
    // Raw records: no check of the lengths against the file's snapshot length.
    while let Some(p) = r.next_raw_packet() {
        let p = p.unwrap();
        let frac = if nanos { p.ts_frac } else { p.ts_frac * 1000 };
        v.push((Duration::new(p.ts_sec.into(), frac), p.data.into_owned()));
    }
    v
}

/// Parses a tshark `ipv6.flow` value such as `0x00012345`.
pub fn hex(s: &str) -> u32 {
    u32::from_str_radix(s.trim().trim_start_matches("0x"), 16)
        .unwrap_or_else(|_| panic!("not hex: {s:?}"))
}

/// A running `flowpol sink`.
pub struct Sink {
    run: Running,
    /// The address it announced (`listening on ADDR (proto)`).
    pub addr: std::net::SocketAddr,
}

impl Sink {
    /// Starts `flowpol sink ...` (the command given, e.g. `flowpol!().in_ns(ns).args(["sink",
    /// ...])`) and waits until it listens.
    pub fn start(cmd: Flowpol) -> Sink {
        let (run, line) = cmd.spawn_until("listening on");
        let addr = line
            .split_whitespace()
            .nth(2)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Sink { run, addr }
    }

    /// Waits for it to exit (it should have `--count` or `--idle-timeout`), returns its records.
    pub fn records(mut self) -> Vec<serde_json::Value> {
        let (_, out, err) = self.run.finish(Duration::from_secs(20));
        out.lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("sink line {l:?}: {e}\nstderr: {err}"))
            })
            .collect()
    }
}

/// Reads the frames of a pcap or pcapng file with the pcap-file crate.
pub fn read_any(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    if !bytes.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        return read_pcap(path);
    }
    let mut r = pcap_file::pcapng::PcapNgReader::new(&bytes[..]).unwrap();
    let mut v = Vec::new();
    while let Some(b) = r.next_block() {
        match b.unwrap() {
            pcap_file::pcapng::Block::EnhancedPacket(p) => v.push(p.data.into_owned()),
            pcap_file::pcapng::Block::SimplePacket(p) => v.push(p.data.into_owned()),
            _ => {}
        }
    }
    v
}
