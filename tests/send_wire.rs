//! `flowpol send` and `flowpol sink` on the wire, between two namespaces of the test's own:
//! tcpdump on the far end must see exactly the labels asked for, on every packet, and the sink
//! must report the same labels. Root only (skips elsewhere, fails under CI=true).

use support::capture::{Capture, Sink, hex};
use support::flowpol;
use support::netns::{VethPair, sh};

fn setup(tag: &str) -> Option<VethPair> {
    if !support::gate::require_root(tag) {
        return None;
    }
    let p = VethPair::new(tag);
    // Make the whole 20-bit range leasable whatever the kernel default is.
    sh(&[
        "ip",
        "netns",
        "exec",
        &p.a,
        "sysctl",
        "-qw",
        "net.ipv6.flowlabel_state_ranges=0",
    ]);
    Some(p)
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

#[test]
fn udp_labels_on_wire_and_in_sink() {
    let Some(p) = setup("su") else { return };
    let labels = [0x1u32, 0xabc, 0x12345, 0xfffff];
    let count = 3;
    let cap = Capture::start(&p.b, &p.b_if, "udp dst port 6000");
    let sink = Sink::start(flowpol!().in_ns(&p.b).arg("sink").args([
        "--listen",
        ":6000",
        "--count",
        &(labels.len() * count).to_string(),
        "--idle-timeout",
        "10",
    ]));
    for l in labels {
        let out = flowpol!()
            .in_ns(&p.a)
            .args([
                "send",
                "--to",
                &p.b_addr,
                "--port",
                "6000",
                "--label",
                &format!("{l:#x}"),
                "--count",
                &count.to_string(),
                "--format",
                "json",
            ])
            .output_ok();
        let r = json(&out);
        assert_eq!(r["flow_label"], l, "{out}");
        assert_eq!(r["label_mode"], "leased");
        assert_eq!(r["packets"], count as u64);
    }
    let records = sink.records();
    let cap = cap.stop();

    let wire: Vec<u32> = cap
        .fields(None, &["ipv6.flow"])
        .iter()
        .map(|f| hex(&f[0]))
        .collect();
    let expected: Vec<u32> = labels
        .iter()
        .flat_map(|&l| std::iter::repeat_n(l, count))
        .collect();
    assert_eq!(wire, expected, "labels on the wire");

    let got: Vec<u64> = records
        .iter()
        .map(|r| r["flow_label"].as_u64().expect("integer flow_label"))
        .collect();
    assert_eq!(
        got,
        expected.iter().map(|&l| u64::from(l)).collect::<Vec<_>>(),
        "labels the sink saw"
    );
    assert!(records.iter().all(|r| r["proto"] == "udp"
        && r["bytes"] == 64
        && r["peer"].as_str().unwrap().contains(&p.a_addr)));
}

#[test]
fn tcp_labels_on_every_segment_and_in_sink() {
    let Some(p) = setup("st") else { return };
    let labels = [0x777u32, 0x54321];
    let cap = Capture::start(&p.b, &p.b_if, &format!("tcp and src host {}", p.a_addr));
    let sink = Sink::start(flowpol!().in_ns(&p.b).arg("sink").args([
        "--listen",
        ":6001",
        "--proto",
        "tcp",
        "--count",
        "2",
        "--idle-timeout",
        "10",
    ]));
    let mut ports = Vec::new();
    for l in labels {
        let out = flowpol!()
            .in_ns(&p.a)
            .args([
                "send",
                "--to",
                &p.b_addr,
                "--port",
                "6001",
                "--proto",
                "tcp",
                "--label",
                &l.to_string(),
                "--count",
                "4",
                "--size",
                "3000",
                "--format",
                "json",
            ])
            .output_ok();
        let r = json(&out);
        assert_eq!(r["flow_label"], l);
        assert_eq!(r["bytes"], 12000);
        let local: std::net::SocketAddr = r["local"].as_str().unwrap().parse().unwrap();
        ports.push(local.port());
    }
    let records = sink.records();
    let cap = cap.stop();

    let frames = cap.fields(
        None,
        &["tcp.srcport", "ipv6.flow", "tcp.flags.syn", "tcp.flags.fin"],
    );
    for (l, port) in labels.iter().zip(&ports) {
        let mine: Vec<_> = frames.iter().filter(|f| f[0] == port.to_string()).collect();
        assert!(
            mine.len() >= 6,
            "too few segments from port {port}: {frames:?}"
        );
        assert!(
            mine.iter().any(|f| f[2] == "1" || f[2] == "True"),
            "no SYN seen: {mine:?}"
        );
        assert!(
            mine.iter().any(|f| f[3] == "1" || f[3] == "True"),
            "no FIN seen: {mine:?}"
        );
        for f in &mine {
            assert_eq!(
                hex(&f[1]),
                *l,
                "segment {f:?} of connection with label {l:#x}"
            );
        }
    }
    assert_eq!(records.len(), 2);
    for (r, l) in records.iter().zip(labels) {
        assert_eq!(r["proto"], "tcp");
        assert_eq!(r["flow_label"], l, "{r}");
        assert_eq!(r["bytes"], 12000);
    }
}

#[test]
fn oversize_udp_fragments_all_carry_the_label() {
    let Some(p) = setup("sf") else { return };
    let cap = Capture::start(&p.b, &p.b_if, &format!("ip6 and src host {}", p.a_addr));
    let sink = Sink::start(flowpol!().in_ns(&p.b).arg("sink").args([
        "--listen",
        ":6002",
        "--count",
        "1",
        "--idle-timeout",
        "10",
    ]));
    flowpol!()
        .in_ns(&p.a)
        .args([
            "send", "--to", &p.b_addr, "--port", "6002", "--label", "0x4242", "--size", "4000",
        ])
        .output_ok();
    let records = sink.records();
    let cap = cap.stop();
    let frames = cap.fields(
        Some("ipv6.fragment || ipv6.fraghdr.offset"),
        &["ipv6.flow", "ipv6.fraghdr.offset"],
    );
    assert!(
        frames.len() >= 3,
        "4000 bytes over a 1500-byte MTU must give 3 fragments: {frames:?}"
    );
    let offsets: Vec<&str> = frames.iter().map(|f| f[1].as_str()).collect();
    assert!(offsets.contains(&"0"), "{offsets:?}");
    for f in &frames {
        assert_eq!(hex(&f[0]), 0x4242, "fragment {f:?}");
    }
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["bytes"], 4000);
    assert_eq!(records[0]["flow_label"], 0x4242);
}

#[test]
fn auto_reports_the_label_on_the_wire() {
    let Some(p) = setup("sa") else { return };
    let cap = Capture::start(&p.b, &p.b_if, &format!("ip6 and src host {}", p.a_addr));
    let sink_u = Sink::start(flowpol!().in_ns(&p.b).arg("sink").args([
        "--listen",
        ":6003",
        "--count",
        "3",
        "--idle-timeout",
        "10",
    ]));
    let sink_t = Sink::start(flowpol!().in_ns(&p.b).arg("sink").args([
        "--listen",
        ":6004",
        "--proto",
        "tcp",
        "--count",
        "1",
        "--idle-timeout",
        "10",
    ]));
    let u = json(
        &flowpol!()
            .in_ns(&p.a)
            .args([
                "send", "--to", &p.b_addr, "--port", "6003", "--auto", "--count", "3", "--format",
                "json",
            ])
            .output_ok(),
    );
    let t = json(
        &flowpol!()
            .in_ns(&p.a)
            .args([
                "send", "--to", &p.b_addr, "--port", "6004", "--auto", "--proto", "tcp",
                "--format", "json",
            ])
            .output_ok(),
    );
    let (ru, rt) = (sink_u.records(), sink_t.records());
    let cap = cap.stop();
    for (r, proto) in [(&u, "udp"), (&t, "tcp")] {
        assert_eq!(r["label_mode"], "auto");
        let label = r["flow_label"]
            .as_u64()
            .unwrap_or_else(|| panic!("{proto}: no single label reported: {r}"));
        assert_ne!(label, 0, "{proto}: auto label should not be 0");
        let port = r["local"]
            .as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .to_string();
        let field = format!("{proto}.srcport");
        let frames = cap.fields(None, &[&field, "ipv6.flow"]);
        let mine: Vec<_> = frames.iter().filter(|f| f[0] == port).collect();
        assert!(
            !mine.is_empty(),
            "{proto}: nothing from port {port}: {frames:?}"
        );
        for f in mine {
            assert_eq!(
                u64::from(hex(&f[1])),
                label,
                "{proto}: wire {f:?} vs reported {r}"
            );
        }
    }
    assert!(ru.iter().all(|r| r["flow_label"] == u["flow_label"]));
    assert_eq!(rt[0]["flow_label"], t["flow_label"]);
}

#[test]
fn lingering_label_is_explained_not_a_raw_errno() {
    let Some(p) = setup("sl") else { return };
    let args = [
        "send", "--to", &p.b_addr, "--port", "6005", "--label", "0x5151", "--linger", "60",
    ];
    flowpol!().in_ns(&p.a).args(args).output_ok();
    let out = flowpol!().in_ns(&p.a).args(args).output();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: the kernel refused to lease flow label 0x05151 (EPERM): "),
        "{err}"
    );
    assert!(err.contains("lingering from an earlier use"), "{err}");
    assert!(err.contains("share mode excl"), "{err}");
    assert!(!err.contains("os error"), "raw errno leaked: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn state_ranges_give_erange_explanation() {
    let Some(p) = setup("sr") else { return };
    sh(&[
        "ip",
        "netns",
        "exec",
        &p.a,
        "sysctl",
        "-qw",
        "net.ipv6.flowlabel_state_ranges=1",
    ]);
    let out = flowpol!()
        .in_ns(&p.a)
        .args([
            "send", "--to", &p.b_addr, "--port", "6006", "--label", "0x90000",
        ])
        .output();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("(ERANGE)") && err.contains("net.ipv6.flowlabel_state_ranges"),
        "{err}"
    );
    // Below 0x80000 is fine.
    flowpol!()
        .in_ns(&p.a)
        .args([
            "send", "--to", &p.b_addr, "--port", "6006", "--label", "0x7ffff",
        ])
        .output_ok();
}

#[test]
fn fresh_and_join_give_eexist_and_enoent() {
    let Some(p) = setup("sx") else { return };
    let out = flowpol!()
        .in_ns(&p.a)
        .args([
            "send", "--to", &p.b_addr, "--port", "6007", "--label", "0x33", "--join",
        ])
        .output();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("(ENOENT)") && err.contains("--join"), "{err}");
    flowpol!()
        .in_ns(&p.a)
        .args([
            "send", "--to", &p.b_addr, "--port", "6007", "--label", "0x34", "--share", "any",
        ])
        .output_ok();
    let out = flowpol!()
        .in_ns(&p.a)
        .args([
            "send", "--to", &p.b_addr, "--port", "6007", "--label", "0x34", "--share", "any",
            "--fresh",
        ])
        .output();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("(EEXIST)") && err.contains("--fresh"), "{err}");
    // A lingering share-any label may be joined again.
    flowpol!()
        .in_ns(&p.a)
        .args([
            "send", "--to", &p.b_addr, "--port", "6007", "--label", "0x34", "--share", "any",
        ])
        .output_ok();
}

#[test]
fn long_linger_without_net_admin_names_the_capability() {
    let Some(p) = setup("sc") else { return };
    flowpol!()
        .in_ns(&p.a)
        .args([
            "send", "--to", &p.b_addr, "--port", "6008", "--label", "0x44", "--linger", "300",
        ])
        .assert_needs_capability("net_admin");
}

#[test]
fn ipv4_peers_have_null_label() {
    let Some(p) = setup("s4") else { return };
    let sink = Sink::start(flowpol!().in_ns(&p.b).arg("sink").args([
        "--listen",
        ":6009",
        "--count",
        "2",
        "--idle-timeout",
        "10",
    ]));
    flowpol!()
        .in_ns(&p.a)
        .args(["send", "--to", &p.b_addr4, "--port", "6009"])
        .output_ok();
    flowpol!()
        .in_ns(&p.a)
        .args(["send", "--to", &p.b_addr, "--port", "6009"])
        .output_ok();
    let r = sink.records();
    assert_eq!(
        r[0]["peer"].as_str().unwrap(),
        format!(
            "{}:{}",
            p.a_addr4,
            r[0]["peer"].as_str().unwrap().rsplit(':').next().unwrap()
        )
    );
    assert!(r[0]["flow_label"].is_null(), "{}", r[0]);
    // No --label and no --auto: unlabelled.
    assert_eq!(r[1]["flow_label"], 0, "{}", r[1]);
    let out = flowpol!()
        .in_ns(&p.a)
        .args(["send", "--to", &p.b_addr4, "--port", "6009", "--label", "1"])
        .output();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn tclass_link_local_destination_and_rate_are_honoured_on_the_wire() {
    let Some(p) = setup("sk") else { return };
    // B's link-local address, reachable only through an interface (scope id + SO_BINDTODEVICE).
    let out = sh(&[
        "ip", "-n", &p.b, "-6", "-o", "addr", "show", "dev", &p.b_if, "scope", "link",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let ll = text
        .split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let cap = Capture::start(&p.b, &p.b_if, "udp dst port 6010");
    let sink = Sink::start(flowpol!().in_ns(&p.b).arg("sink").args([
        "--listen",
        ":6010",
        "--count",
        "10",
        "--idle-timeout",
        "10",
    ]));
    let out = flowpol!()
        .in_ns(&p.a)
        .args([
            "send", "--to", &ll, "--iface", &p.a_if, "--port", "6010", "--label", "0x2468",
            "--tclass", "0xb8", "--count", "10", "--rate", "50", "--format", "json",
        ])
        .output_ok();
    let r = json(&out);
    let records = sink.records();
    let cap = cap.stop();
    assert!(
        r["elapsed_s"].as_f64().unwrap() >= 0.15,
        "10 packets at 50/s take about 0.18 s: {r}"
    );
    assert!(r["rate_pps"].as_f64().unwrap() < 60.0, "{r}");
    assert!(r["local"].as_str().unwrap().starts_with("[fe80::"), "{r}");
    assert_eq!(
        r["observed_labels"],
        serde_json::json!([0x2468]),
        "looped-back copies carry the label: {r}"
    );
    let frames = cap.fields(None, &["ipv6.flow", "ipv6.tclass"]);
    assert_eq!(frames.len(), 10);
    for f in &frames {
        assert_eq!(hex(&f[0]), 0x2468);
        assert_eq!(hex(&f[1]), 0xb8);
    }
    assert_eq!(records.len(), 10);
    assert!(
        records
            .iter()
            .all(|r| r["flow_label"] == 0x2468 && r["tclass"] == 0xb8),
        "{records:?}"
    );
}

#[test]
fn share_mode_mismatch_is_explained() {
    let Some(p) = setup("sm") else { return };
    flowpol!()
        .in_ns(&p.a)
        .args([
            "send", "--to", &p.b_addr, "--port", "6011", "--label", "0x99", "--share", "user",
            "--linger", "60",
        ])
        .output_ok();
    // The same user may join a lingering share-user label...
    flowpol!()
        .in_ns(&p.a)
        .args([
            "send", "--to", &p.b_addr, "--port", "6011", "--label", "0x99", "--share", "user",
        ])
        .output_ok();
    // ...but not with another share mode.
    let out = flowpol!()
        .in_ns(&p.a)
        .args([
            "send", "--to", &p.b_addr, "--port", "6011", "--label", "0x99", "--share", "any",
        ])
        .output();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("(EPERM)")
            && err.contains("different share mode")
            && err.contains("--share user"),
        "{err}"
    );
}

#[test]
fn tcp_sink_over_ipv4_reports_null_label() {
    let Some(p) = setup("s5") else { return };
    let sink = Sink::start(flowpol!().in_ns(&p.b).arg("sink").args([
        "--listen",
        ":6012",
        "--proto",
        "tcp",
        "--count",
        "1",
        "--idle-timeout",
        "10",
    ]));
    let out = json(
        &flowpol!()
            .in_ns(&p.a)
            .args([
                "send", "--to", &p.b_addr4, "--port", "6012", "--proto", "tcp", "--size", "500",
                "--format", "json",
            ])
            .output_ok(),
    );
    assert!(out["flow_label"].is_null());
    let r = sink.records();
    assert_eq!(r.len(), 1);
    assert!(r[0]["flow_label"].is_null(), "{}", r[0]);
    assert_eq!(r[0]["bytes"], 500);
    assert!(r[0]["peer"].as_str().unwrap().starts_with(&p.a_addr4));
}

#[test]
fn mapped_destination_gives_einval_explanation() {
    let Some(p) = setup("si") else { return };
    let mapped = format!("::ffff:{}", p.b_addr4);
    let out = flowpol!()
        .in_ns(&p.a)
        .args(["send", "--to", &mapped, "--port", "6013", "--label", "0x10"])
        .output();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("(EINVAL)") && err.contains("IPv4-mapped"),
        "{err}"
    );
}

#[test]
fn from_picks_the_source_address() {
    let Some(p) = setup("so") else { return };
    let second = p.a_addr.replace("::1", "::3");
    sh(&[
        "ip",
        "-n",
        &p.a,
        "addr",
        "add",
        &format!("{second}/64"),
        "dev",
        &p.a_if,
        "nodad",
    ]);
    let sink = Sink::start(flowpol!().in_ns(&p.b).arg("sink").args([
        "--listen",
        ":6014",
        "--count",
        "1",
        "--idle-timeout",
        "10",
    ]));
    let r = json(
        &flowpol!()
            .in_ns(&p.a)
            .args([
                "send", "--to", &p.b_addr, "--from", &second, "--port", "6014", "--label", "0x3",
                "--format", "json",
            ])
            .output_ok(),
    );
    assert!(
        r["local"]
            .as_str()
            .unwrap()
            .starts_with(&format!("[{second}]:")),
        "{r}"
    );
    let rec = sink.records();
    assert!(
        rec[0]["peer"]
            .as_str()
            .unwrap()
            .starts_with(&format!("[{second}]:")),
        "{}",
        rec[0]
    );
    assert_eq!(rec[0]["flow_label"], 3);
}
