//! `flowpol send` to `flowpol sink` over the loopback interface: needs no privilege, so it runs
//! everywhere. The label each datagram / connection arrived with must be the one sent.

use support::capture::Sink;
use support::flowpol;

/// A label unlikely to be held by anything else in this network namespace.
fn label() -> u32 {
    0x10000 + (std::process::id() % 0x6fff)
}

fn send(args: &[&str]) -> serde_json::Value {
    let out = flowpol!().arg("send").args(args).output();
    assert!(
        out.status.success(),
        "send {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn udp_and_tcp_over_loopback_report_the_label() {
    let l = label();
    for (proto, l) in [("udp", l), ("tcp", l + 1)] {
        let sink = Sink::start(flowpol!().arg("sink").args([
            "--listen",
            "[::1]:0",
            "--proto",
            proto,
            "--count",
            "1",
            "--idle-timeout",
            "10",
        ]));
        let port = sink.addr.port().to_string();
        let r = send(&[
            "--to",
            "::1",
            "--port",
            &port,
            "--proto",
            proto,
            "--label",
            &l.to_string(),
            "--share",
            "user",
            "--format",
            "json",
        ]);
        assert_eq!(r["flow_label"], l);
        assert_eq!(r["observed_labels"], serde_json::json!([l]), "{r}");
        let rec = sink.records();
        assert_eq!(rec.len(), 1);
        assert_eq!(rec[0]["proto"], proto);
        assert_eq!(rec[0]["flow_label"], l, "{proto}: {}", rec[0]);
        assert_eq!(rec[0]["bytes"], 64);
    }
}

#[test]
fn ipv4_loopback_has_no_label() {
    let sink = Sink::start(flowpol!().arg("sink").args([
        "--listen",
        "127.0.0.1:0",
        "--count",
        "1",
        "--idle-timeout",
        "10",
    ]));
    let port = sink.addr.port().to_string();
    let r = send(&["--to", "127.0.0.1", "--port", &port, "--format", "json"]);
    assert!(r["flow_label"].is_null());
    let rec = sink.records();
    assert!(rec[0]["flow_label"].is_null(), "{}", rec[0]);
    assert!(rec[0]["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
}

#[test]
fn label_zero_is_unlabelled() {
    let sink = Sink::start(flowpol!().arg("sink").args([
        "--listen",
        "[::1]:0",
        "--count",
        "1",
        "--idle-timeout",
        "10",
    ]));
    let port = sink.addr.port().to_string();
    let r = send(&[
        "--to", "::1", "--port", &port, "--label", "0", "--format", "json",
    ]);
    assert_eq!(r["label_mode"], "none", "{r}");
    assert_eq!(r["flow_label"], 0, "{r}");
    assert_eq!(sink.records()[0]["flow_label"], 0);
}
