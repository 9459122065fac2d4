//! `flowpol sink` under load and faults: an idle TCP client does not stall the others, the
//! kernel's listen-queue overflows and receive-buffer drops during the run are reported, and a
//! stop by SIGINT still prints the summary. Root only, each in a namespace of its own (the
//! kernel's counters are per namespace, so no other test's traffic is counted).

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::capture::Sink;
use support::netns::{Netns, sh};
use support::{OutputExt, flowpol};

fn ns(tag: &str) -> Option<Netns> {
    if !support::gate::require_root(tag) {
        return None;
    }
    let ns = Netns::new(tag);
    sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
    Some(ns)
}

/// A number just before `word` in `line` (`... 12 listen overflows ...`).
fn number_before(line: &str, word: &str) -> u64 {
    let at = line
        .find(word)
        .unwrap_or_else(|| panic!("no {word:?} in {line:?}"));
    line[..at]
        .split_whitespace()
        .last()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number before {word:?} in {line:?}"))
}

/// A client in `ns` that connects to `[::1]:port`, sends nothing and holds the connection for
/// `hold` seconds (bash's /dev/tcp).
fn idle_client(ns: &str, port: u16, hold: u32) -> std::process::Child {
    support::netns::exec(
        ns,
        &[
            "bash",
            "-c",
            &format!("exec 3<>/dev/tcp/::1/{port}; sleep {hold}"),
        ],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap()
}

#[test]
fn an_idle_tcp_client_does_not_stall_the_others() {
    let Some(ns) = ns("ktc") else { return };
    let sink = Sink::start(flowpol!().in_ns(&ns).arg("sink").args([
        "--listen",
        "[::1]:6200",
        "--proto",
        "tcp",
        "--count",
        "2",
        "--idle-timeout",
        "20",
        "--read-timeout",
        "20",
    ]));
    let start = Instant::now();
    let mut idle = idle_client(&ns, 6200, 25);
    std::thread::sleep(Duration::from_millis(300));
    for label in ["0x11", "0x12"] {
        flowpol!()
            .in_ns(&ns)
            .args([
                "send", "--to", "::1", "--port", "6200", "--proto", "tcp", "--label", label,
                "--share", "any",
            ])
            .output_ok();
    }
    let recs = sink.records();
    let took = start.elapsed();
    let _ = idle.kill();
    let _ = idle.wait();
    assert_eq!(recs.len(), 2, "{recs:?}");
    let mut labels: Vec<u64> = recs
        .iter()
        .map(|r| r["flow_label"].as_u64().unwrap())
        .collect();
    labels.sort();
    assert_eq!(labels, [0x11, 0x12], "{recs:?}");
    assert!(
        took < Duration::from_secs(10),
        "the idle client held the sink for {took:?}"
    );
}

#[test]
fn listen_queue_overflows_during_the_run_are_reported() {
    let Some(ns) = ns("kto") else { return };
    // One connection served at a time, a backlog of 1: a burst of clients overflows it.
    let mut run = flowpol!()
        .in_ns(&ns)
        .args([
            "sink",
            "--listen",
            "[::1]:6201",
            "--proto",
            "tcp",
            "--backlog",
            "1",
            "--max-connections",
            "1",
            "--read-timeout",
            "1",
            "--idle-timeout",
            "3",
        ])
        .spawn("listening on");
    run.wait_ready();
    let burst = support::netns::exec(
        &ns,
        &[
            "bash",
            "-c",
            "for i in $(seq 40); do (exec 3<>/dev/tcp/::1/6201; sleep 1) 2>/dev/null & done; wait",
        ],
    )
    .output()
    .unwrap();
    assert!(burst.status.success(), "{burst:?}");
    let (status, out, err) = run.finish(Duration::from_secs(120));
    assert!(status.success(), "{out}\n{err}");
    let last = err
        .lines()
        .rev()
        .find(|l| l.starts_with("sink: "))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(number_before(last, "listen overflows") > 0, "{last}");
    assert!(number_before(last, "listen drops") > 0, "{last}");
}

#[test]
fn datagrams_the_kernel_dropped_during_the_run_are_reported() {
    let Some(ns) = ns("kud") else { return };
    let dir = tempfile::tempdir().unwrap();
    let records = std::fs::File::create(dir.path().join("records.jsonl")).unwrap();
    // A receive buffer of one datagram: a burst at full speed overflows it.
    let mut cmd = flowpol!()
        .in_ns(&ns)
        .args([
            "sink",
            "--listen",
            "[::1]:6202",
            "--rcvbuf",
            "4096",
            "--idle-timeout",
            "2",
        ])
        .command();
    let child = cmd.stdout(records).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    flowpol!()
        .in_ns(&ns)
        .args([
            "send", "--to", "::1", "--port", "6202", "--count", "20000", "--size", "8000",
        ])
        .output_ok();
    let out = child.wait_with_output().unwrap();
    let err = out.stderr_text();
    assert!(out.status.success(), "{err}");
    let last = err
        .lines()
        .rev()
        .find(|l| l.starts_with("sink: "))
        .unwrap_or_else(|| panic!("{err}"));
    let received = number_before(last, "datagrams;");
    let dropped = number_before(last, "datagrams dropped");
    assert!(dropped > 0, "{last}");
    assert_eq!(received + dropped, 20000, "{last}");
}

#[test]
fn a_sink_stopped_by_sigint_prints_its_summary() {
    let Some(ns) = ns("ksi") else { return };
    let mut run = flowpol!()
        .in_ns(&ns)
        .args(["sink", "--listen", "[::1]:6203", "--proto", "tcp"])
        .spawn("listening on");
    run.wait_ready();
    sh(&["kill", "-INT", &run.child.id().to_string()]);
    let (status, _, err) = run.finish(Duration::from_secs(5));
    assert!(status.success(), "{err}");
    assert!(
        err.contains("sink: 0 connections, stopped by SIGINT"),
        "{err}"
    );
}
