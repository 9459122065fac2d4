//! `flowpol send` and `flowpol replay` under faults: a port the kernel refuses, a network it
//! cannot reach (the cause said once), a link-local destination with its scope in the address,
//! and a stop by SIGINT/SIGTERM (the summary of what was sent still printed). Root tests run in
//! namespaces of their own.

use std::time::Duration;

use support::capture::Sink;
use support::netns::{Netns, VethPair, sh};
use support::{OutputExt, flowpol};

/// Sends `sig` to the child and returns its exit status, stdout and stderr.
fn signal_and_finish(
    run: &mut support::proc::Running,
    sig: &str,
) -> (std::process::ExitStatus, String, String) {
    sh(&["kill", &format!("-{sig}"), &run.child.id().to_string()]);
    run.finish(Duration::from_secs(10))
}

#[test]
fn port_zero_with_a_label_blames_the_port_not_the_lease() {
    let out = flowpol!()
        .args(["send", "--to", "::1", "--port", "0", "--label", "0x123"])
        .output();
    assert_eq!(out.code(), Some(2), "{out:?}");
    let err = out.stderr_text();
    assert!(err.contains("--port 0"), "{err}");
    assert!(!err.contains("lease"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn an_unreachable_network_is_named_once() {
    if !support::gate::require_root("send_unreach") {
        return;
    }
    let ns = Netns::new("sun");
    sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
    let out = flowpol!()
        .in_ns(&ns)
        .args([
            "send",
            "--to",
            "fd00:99::1",
            "--port",
            "9",
            "--label",
            "0x5",
        ])
        .output();
    assert_eq!(out.code(), Some(2), "{out:?}");
    let err = out.stderr_text();
    assert_eq!(err.matches("Network is unreachable").count(), 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// The link-local address of `iface` in `ns`.
fn link_local(ns: &str, iface: &str) -> String {
    let out = sh(&[
        "ip", "-n", ns, "-6", "-o", "addr", "show", "dev", iface, "scope", "link",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let addr = text
        .split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .unwrap_or_else(|| panic!("no link-local address on {iface}: {text}"));
    addr.split('/').next().unwrap().to_string()
}

/// Waits (up to 5 s) until `iface` in `ns` has its link-local address.
fn wait_link_local(ns: &str, iface: &str) -> String {
    for _ in 0..100 {
        let out = sh(&[
            "ip", "-n", ns, "-6", "-o", "addr", "show", "dev", iface, "scope", "link",
        ]);
        if String::from_utf8_lossy(&out.stdout).contains("inet6") {
            return link_local(ns, iface);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{iface} in {ns} got no link-local address");
}

#[test]
fn a_link_local_destination_takes_its_scope_by_name_or_index() {
    if !support::gate::require_root("send_scope") {
        return;
    }
    let p = VethPair::new("ssc");
    let b_ll = wait_link_local(&p.b, &p.b_if);
    wait_link_local(&p.a, &p.a_if);
    let sink = Sink::start(flowpol!().in_ns(&p.b).arg("sink").args([
        "--listen",
        ":6100",
        "--count",
        "2",
        "--idle-timeout",
        "10",
    ]));
    let index = String::from_utf8_lossy(
        &sh(&[
            "ip",
            "netns",
            "exec",
            &p.a,
            "cat",
            &format!("/sys/class/net/{}/ifindex", p.a_if),
        ])
        .stdout,
    )
    .trim()
    .to_string();
    // An exclusive label lingers after its release: one label per run.
    for (scope, label) in [(p.a_if.as_str(), "0x77"), (index.as_str(), "0x78")] {
        let to = format!("{b_ll}%{scope}");
        flowpol!()
            .in_ns(&p.a)
            .args(["send", "--to", &to, "--port", "6100", "--label", label])
            .output_ok();
    }
    let labels: Vec<u64> = sink
        .records()
        .iter()
        .map(|r| r["flow_label"].as_u64().unwrap())
        .collect();
    assert_eq!(labels, [0x77, 0x78]);
}

#[test]
fn send_stopped_by_sigint_prints_its_summary() {
    if !support::gate::require_root("send_sigint") {
        return;
    }
    let ns = Netns::new("ssi");
    sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
    for (sig, name) in [("INT", "SIGINT"), ("TERM", "SIGTERM")] {
        let mut run = flowpol!()
            .in_ns(&ns)
            .args([
                "send", "--to", "::1", "--port", "9", "--count", "1000", "--rate", "10",
                "--format", "json",
            ])
            .spawn("never");
        std::thread::sleep(Duration::from_millis(800));
        let (status, out, err) = signal_and_finish(&mut run, sig);
        assert_eq!(status.code(), Some(0), "{out}\n{err}");
        let v: serde_json::Value =
            serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{out:?}: {e}\n{err}"));
        assert_eq!(v["stopped_by"], name, "{v}");
        let n = v["packets"].as_u64().unwrap();
        assert!((1..1000).contains(&n), "{v}");
    }
}

#[test]
fn replay_stopped_by_sigterm_prints_its_summary() {
    if !support::gate::require_root("replay_sigterm") {
        return;
    }
    let p = VethPair::new("rst");
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("f.pcap");
    let mut frame = vec![0xffu8; 6];
    frame.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x88, 0xb5]);
    frame.resize(60, 0);
    support::compile::write_pcap(&pcap, &[frame.clone(), frame]);
    let mut run = flowpol!()
        .in_ns(&p.a)
        .args([
            "replay", "--iface", &p.a_if, "--rate", "10", "--loop", "500",
        ])
        .arg(&pcap)
        .spawn("never");
    std::thread::sleep(Duration::from_millis(800));
    let (status, out, err) = signal_and_finish(&mut run, "TERM");
    assert_eq!(status.code(), Some(0), "{out}\n{err}");
    assert!(
        out.contains("stopped") && out.contains("by SIGTERM"),
        "{out}\n{err}"
    );
    let sent = out
        .lines()
        .find(|l| l.trim_start().starts_with("sent"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(!sent.contains(" 1000 frames"), "{sent}");
}
