//! Keeping up: a flood on a veth pair of the test's own (`flowpol replay --fast --loop`) watched
//! at the same time by `flowpol watch` and by `tcpdump -w /dev/null`, once per capture source
//! (pnet, ring). Prints the share of the sent frames each one captured; asserts that watch's own
//! accounting is exact (captured + dropped = what the kernel passed to its sockets, per the
//! kernel's PACKET_STATISTICS) and that both saw the flood. The figures of
//! docs/watch-keeping-up.md come from this test run with `--release --nocapture`; the flood size
//! can be raised with FLOWPOL_FLOOD_LOOPS. Root only (skips elsewhere, fails under CI=true).

use support::netns::{VethPair, sh};
use support::proc::spawn_until;
use support::{Flowpol, flowpol};

/// The flowpol under test: FLOWPOL_BIN (e.g. target/release/flowpol, for the figures) or the
/// binary cargo built for this test.
fn flowpol_under_test() -> Flowpol {
    match std::env::var_os("FLOWPOL_BIN") {
        Some(bin) => Flowpol::at(bin),
        None => flowpol!(),
    }
}
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::time::Duration;

/// tcpdump's three counters from its exit message.
#[derive(Debug, Default)]
struct TcpdumpCounts {
    captured: u64,
    received: u64,
    dropped: u64,
}

fn tcpdump_counts(err: &str) -> TcpdumpCounts {
    let mut c = TcpdumpCounts::default();
    for l in err.lines() {
        let n = l
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if l.contains("packets captured") {
            c.captured = n;
        } else if l.contains("received by filter") {
            c.received = n;
        } else if l.contains("dropped by kernel") {
            c.dropped = n;
        }
    }
    c
}

fn flood(p: &VethPair, trace: &str, loops: u32, extra: &[&str]) -> (Value, TcpdumpCounts, u64) {
    // tcpdump: its defaults (2 MiB TPACKET_V3 ring), writing to /dev/null.
    let (mut td, _) = spawn_until(
        support::netns::exec(
            &p.b,
            &[
                "tcpdump",
                "-Z",
                "root",
                "-i",
                &p.b_if,
                "-n",
                "-w",
                "/dev/null",
            ],
        ),
        "listening on",
        "tcpdump",
    );
    let mut args = vec![
        "watch",
        "--iface",
        &p.b_if,
        "--policy",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/policies/valid/layout.fpol"
        ),
        "--format",
        "json",
        "--interval",
        "0.5",
    ];
    args.extend_from_slice(extra);
    let mut w = flowpol_under_test()
        .in_ns(&p.b)
        .args(&args)
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("watch");
    // watch's stderr, line by line: the start line, then a summary every 0.5 s.
    let (tx, summaries) = std::sync::mpsc::channel::<String>();
    let stderr = w.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    loop {
        let l = summaries
            .recv_timeout(Duration::from_secs(20))
            .expect("watch did not start");
        if l.starts_with("watching ") {
            break;
        }
    }
    // FLOWPOL_FLOOD_SENDERS replays at once (default 1), each --fast over the whole file.
    let senders: usize = std::env::var("FLOWPOL_FLOOD_SENDERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let loops_s = loops.to_string();
    let children: Vec<_> = (0..senders)
        .map(|_| {
            flowpol_under_test()
                .in_ns(&p.a)
                .args([
                    "replay", "--iface", &p.a_if, trace, "--fast", "--loop", &loops_s, "--format",
                    "json",
                ])
                .command()
                .stdout(Stdio::piped())
                .spawn()
                .expect("replay")
        })
        .collect();
    let mut sent = 0;
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "replay: {out:?}");
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        sent += r["frames_sent"].as_u64().unwrap();
        eprintln!(
            "replay: {} frames in {:.3} s ({:.0} frames/s)",
            r["frames_sent"],
            r["elapsed_s"].as_f64().unwrap_or(0.0),
            r["rate_pps"].as_f64().unwrap_or(0.0)
        );
    }
    // Let both drain what is queued: wait until watch's count stops moving (two summaries
    // alike, at most 30 s; a debug build under load may take a while), then stop both.
    let frames_of = |l: &str| {
        l.split_once("] ")
            .and_then(|(_, r)| r.split(' ').next().map(str::to_string))
    };
    let mut last = None;
    let end = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < end {
        let Ok(l) = summaries.recv_timeout(Duration::from_secs(5)) else {
            break;
        };
        let now = frames_of(&l);
        if now.is_some() && now == last {
            break;
        }
        last = now;
    }
    std::thread::sleep(Duration::from_millis(300));
    sh(&["kill", "-INT", &w.id().to_string()]);
    sh(&["kill", "-INT", &td.child.id().to_string()]);
    let mut out = String::new();
    w.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(w.wait().unwrap().success(), "watch: {out}");
    let (_, _, td_err) = td.finish(Duration::from_secs(30));
    let counts = tcpdump_counts(&td_err);
    let got: Value = serde_json::from_str(out.trim()).unwrap();
    (got, counts, sent)
}

#[test]
fn watch_keeps_up_with_tcpdump_under_a_flood() {
    if !support::gate::require_root("watch_flood") {
        return;
    }
    let p = VethPair::new("wf");
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("flood.pcap");
    let trace = trace.to_str().unwrap();
    let out = flowpol!()
        .args([
            "gen",
            "trace",
            "--packets",
            "5000",
            "--flows",
            "200",
            "--out",
            trace,
        ])
        .output();
    assert!(out.status.success());
    let loops: u32 = std::env::var("FLOWPOL_FLOOD_LOOPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    for (name, extra) in [
        ("pnet", &["--source", "pnet"][..]),
        ("ring", &[][..]),
        ("ring, 2 workers", &["--workers", "2"][..]),
    ] {
        let (w, td, sent) = flood(&p, trace, loops, extra);
        let frames = w["frames"]["packets"].as_u64().unwrap();
        let k = &w["kernel"];
        let (seen, drops) = (k["packets"].as_u64().unwrap(), k["drops"].as_u64().unwrap());
        eprintln!(
            "{name}: sent {sent}; flowpol captured {frames} ({:.1} %), kernel seen {seen}, \
             dropped {drops}; tcpdump captured {} ({:.1} %), received {}, dropped {}",
            100.0 * frames as f64 / sent as f64,
            td.captured,
            100.0 * td.captured as f64 / sent as f64,
            td.received,
            td.dropped
        );
        assert!(frames > 0 && td.captured > 0, "{name}: both saw the flood");
        // Every frame the kernel passed to the sockets is either counted or reported dropped.
        assert_eq!(frames + drops, seen, "{name}: {k}");
        assert!(frames <= sent + 10, "{name}: no frame counted twice");
    }
}
