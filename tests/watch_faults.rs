//! `flowpol watch` under faults: a full disk under `--write` (a small tmpfs of the test's own),
//! a write error on a quiet link, a missing directory, a stop by signal and an interface that
//! vanishes under the pnet source. Each ends with exit 2 (or the summary), one clear message,
//! and a capture file that ends in a whole record. Root only, in namespaces of the test's own.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::netns::{VethPair, sh};
use support::{OutputExt, flowpol};

const POLICY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/policies/valid/minimal.fpol"
);

/// A tmpfs of `size` mounted on a fresh temporary folder, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn new(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        sh(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size}"),
            "tmpfs",
            dir.path().to_str().unwrap(),
        ]);
        Tmpfs { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// The frames of a pcap file, checking that it ends in a whole record: (frames, file length
/// equals the header plus every record).
fn whole_records(path: &Path) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    assert!(bytes.len() >= 24, "{} has no pcap header", path.display());
    let mut at = 24usize;
    let mut n = 0;
    while at < bytes.len() {
        assert!(at + 16 <= bytes.len(), "torn record header at byte {at}");
        let caplen = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        assert!(at + 16 + caplen <= bytes.len(), "torn record at byte {at}");
        at += 16 + caplen;
        n += 1;
    }
    // The outside reader agrees.
    assert_eq!(support::capture::read_pcap(path).len() as u64, n);
    n
}

/// `watch --iface vb` in b with `args`, started and ready.
fn watch(p: &VethPair, args: &[&str]) -> support::proc::Running {
    let mut run = flowpol!()
        .in_ns(&p.b)
        .args(["watch", "--iface", &p.b_if, "--policy", POLICY])
        .args(args)
        .spawn("watching ");
    run.wait_ready();
    run
}

/// `count` UDP datagrams of `size` bytes from a to b at `rate` per second.
fn send(p: &VethPair, count: u32, size: u32, rate: u32) {
    flowpol!()
        .in_ns(&p.a)
        .args(["send", "--to", &p.b_addr, "--port", "7000"])
        .args(["--count", &count.to_string(), "--size", &size.to_string()])
        .args(["--rate", &rate.to_string()])
        .output_ok();
}

/// N in "the file holds the first N frame(s)".
fn frames_in_message(err: &str) -> u64 {
    let at = err
        .find("the file holds the first ")
        .unwrap_or_else(|| panic!("no frame count in: {err}"));
    err[at + "the file holds the first ".len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number in: {err}"))
}

#[test]
fn a_full_disk_leaves_whole_records_and_says_how_many() {
    if !support::gate::require_root("watch_full") {
        return;
    }
    let p = VethPair::new("wfd");
    let fs = Tmpfs::new("64k");
    let file = fs.path("cap.pcap");
    let mut run = watch(&p, &["--write", file.to_str().unwrap(), "--duration", "30"]);
    // About 42 KB a second: the first second's records fit, the second's do not.
    send(&p, 200, 1000, 40);
    let (status, out, err) = run.finish(Duration::from_secs(20));
    assert_eq!(status.code(), Some(2), "{out}\n{err}");
    assert_eq!(err.matches("No space left on device").count(), 1, "{err}");
    let n = frames_in_message(&err);
    assert!(n > 0, "{err}");
    assert_eq!(whole_records(&file), n, "{err}");
    // The summary came first.
    assert!(out.contains("frames"), "{out}");
}

#[test]
fn on_a_quiet_link_a_write_error_shows_within_seconds() {
    if !support::gate::require_root("watch_quiet") {
        return;
    }
    let p = VethPair::new("wqd");
    let fs = Tmpfs::new("64k");
    // Leave one page: the pcap header and three records of 1 KB fit, not five.
    sh(&[
        "dd",
        "if=/dev/zero",
        &format!("of={}", fs.path("fill").display()),
        "bs=4096",
        "count=15",
    ]);
    let file = fs.path("cap.pcap");
    let mut run = watch(&p, &["--write", file.to_str().unwrap(), "--duration", "60"]);
    let start = Instant::now();
    send(&p, 5, 1000, 10);
    let (status, out, err) = run.finish(Duration::from_secs(15));
    let took = start.elapsed();
    assert_eq!(status.code(), Some(2), "{out}\n{err}");
    assert!(took < Duration::from_secs(10), "the error took {took:?}");
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(whole_records(&file), frames_in_message(&err), "{err}");
}

#[test]
fn write_to_a_missing_directory_names_the_path() {
    if !support::gate::require_root("watch_nodir") {
        return;
    }
    let p = VethPair::new("wmd");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("no/such/dir/cap.pcap");
    let out = flowpol!()
        .in_ns(&p.b)
        .args(["watch", "--iface", &p.b_if, "--policy", POLICY, "--write"])
        .arg(&file)
        .output();
    assert_eq!(out.code(), Some(2), "{out:?}");
    let err = out.stderr_text();
    assert!(err.contains(file.to_str().unwrap()), "{err}");
    assert!(err.contains("No such file or directory"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn the_json_stopped_field_names_the_signal() {
    if !support::gate::require_root("watch_stopped") {
        return;
    }
    let p = VethPair::new("wss");
    for (sig, name) in [("INT", "SIGINT"), ("TERM", "SIGTERM")] {
        let mut run = watch(&p, &["--format", "json"]);
        sh(&["kill", &format!("-{sig}"), &run.child.id().to_string()]);
        let (status, out, err) = run.finish(Duration::from_secs(10));
        assert!(status.success(), "{out}\n{err}");
        let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(v["stopped"]["message"], name, "{v}");
    }
    // Without a signal or an error it stays null.
    let mut run = watch(&p, &["--format", "json", "--duration", "0.5"]);
    let (status, out, _) = run.finish(Duration::from_secs(10));
    assert!(status.success());
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["stopped"], Value::Null, "{v}");
}

#[test]
fn pnet_says_network_is_down_when_the_interface_vanishes() {
    if !support::gate::require_root("watch_pnet_gone") {
        return;
    }
    let p = VethPair::new("wpg");
    sh(&[
        "ip", "-n", &p.b, "link", "add", "x1", "type", "veth", "peer", "name", "x2",
    ]);
    sh(&["ip", "-n", &p.b, "link", "set", "x1", "up"]);
    sh(&["ip", "-n", &p.b, "link", "set", "x2", "up"]);
    let mut run = flowpol!()
        .in_ns(&p.b)
        .args([
            "watch", "--iface", "x1", "--policy", POLICY, "--source", "pnet",
        ])
        .args(["--format", "json"])
        .spawn("watching ");
    run.wait_ready();
    sh(&["ip", "-n", &p.b, "link", "del", "x1"]);
    let (status, out, err) = run.finish(Duration::from_secs(10));
    assert_eq!(status.code(), Some(2), "{out}\n{err}");
    assert!(err.contains("Network is down"), "{err}");
    assert!(!err.contains("Unexpected poll event"), "{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let stopped = v["stopped"]["message"].as_str().unwrap_or_default();
    assert!(stopped.contains("Network is down"), "{v}");
}
