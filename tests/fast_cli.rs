//! End-to-end tests of `flowpol import classbench`, `import classbench-trace` and `gen rules`:
//! the printed policies pass `flowpol check` and load back to the same rules.

use flowpol::r#gen::classbench::{self, As, DEFAULT_MAP_V4};
use flowpol::r#gen::rules;
use flowpol::policy;
use std::process::Output;
use support::flowpol;

const RULES: &str =
    "@133.160.173.244/32\t1.66.212.52/32\t0 : 65535\t1704 : 1704\t0x06/0xFF\t0x1000/0x1000\t
@10.0.0.0/8\t0.0.0.0/0\t1024 : 65535\t53 : 53\t0x11/0xFF\t0x0000/0x0000\t
@0.0.0.0/0\t192.168.0.0/16\t0 : 65535\t6000 : 6063\t0x06/0xFF\t0x0000/0x0000\t
@0.0.0.0/0\t0.0.0.0/0\t0 : 65535\t0 : 65535\t0x00/0x00\t0x0000/0x0000\t
";

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn check_passes(dir: &std::path::Path, name: &str, text: &str) {
    let f = dir.join(name);
    std::fs::write(&f, text).unwrap();
    let o = flowpol!().args(["check", f.to_str().unwrap()]).output();
    assert_eq!(
        o.status.code(),
        Some(0),
        "check {name}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn import_classbench_prints_a_policy_that_checks_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::write(&rules, RULES).unwrap();
    let cb = classbench::parse_rules(RULES).unwrap();

    let five = flowpol!()
        .args(["import", "classbench", rules.to_str().unwrap()])
        .output_ok();
    assert!(five.contains("rule cb1 src ::ffff:133.160.173.244 dst ::ffff:1.66.212.52 proto tcp dport 1704 -> pass"), "{five}");
    assert!(five.contains("default drop"));
    check_passes(dir.path(), "five.pol", &five);
    let loaded = policy::load_str("five", &five).unwrap();
    assert_eq!(
        loaded.five,
        classbench::to_policy(&cb, As::Five, DEFAULT_MAP_V4).five
    );

    let three = flowpol!()
        .args([
            "import",
            "classbench",
            "--as",
            "three",
            "--map-v4",
            "64:ff9b::/96",
            rules.to_str().unwrap(),
        ])
        .output_ok();
    assert!(
        three.contains(
            "rule cb3 src 64:ff9b::/96 dst 64:ff9b::c0a8:0/112 label 0x1770-0x17af -> pass"
        ),
        "{three}"
    );
    check_passes(dir.path(), "three.pol", &three);
    let both = flowpol!()
        .args([
            "import",
            "classbench",
            "--as",
            "both",
            rules.to_str().unwrap(),
        ])
        .output_ok();
    check_passes(dir.path(), "both.pol", &both);
    let loaded = policy::load_str("both", &both).unwrap();
    assert_eq!((loaded.five.len(), loaded.three.len()), (4, 4));
    let map = classbench::parse_map("64:ff9b::/96").unwrap();
    let loaded = policy::load_str("three", &three).unwrap();
    assert_eq!(
        loaded.three,
        classbench::to_policy(&cb, As::Three, map).three
    );
}

#[test]
fn import_rejects_bad_input_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad");
    std::fs::write(&bad, "@1.2.3.4/40\t1.2.3.4/32\t0 : 1\t0 : 1\t0x06/0xFF\n").unwrap();
    let o = flowpol!()
        .args(["import", "classbench", bad.to_str().unwrap()])
        .output();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("line 1"));
    let o = flowpol!()
        .args([
            "import",
            "classbench",
            "--map-v4",
            "2001:db8::/64",
            bad.to_str().unwrap(),
        ])
        .output();
    assert_eq!(o.status.code(), Some(2));
    let o = flowpol!()
        .args([
            "import",
            "classbench",
            dir.path().join("missing").to_str().unwrap(),
        ])
        .output();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn import_classbench_trace_writes_a_pcap() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    std::fs::write(
        &trace,
        "2231431668\t21156916\t5\t1704\t6\t0\t1\n167772161\t1\t1024\t53\t17\t0\t2\n",
    )
    .unwrap();
    let out = dir.path().join("t.pcap");
    let o = flowpol!()
        .args([
            "import",
            "classbench-trace",
            trace.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .output();
    stdout(&o);
    let data = std::fs::read(&out).unwrap();
    let mut r = pcap_file::pcap::PcapReader::new(&data[..]).unwrap();
    let mut labels = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        let h = etherparse::Ipv6HeaderSlice::from_slice(&p.data[14..]).unwrap();
        labels.push(h.flow_label().value());
    }
    assert_eq!(labels, vec![1704, 53]);
}

#[test]
fn gen_rules_prints_checkable_policies() {
    let dir = tempfile::tempdir().unwrap();
    for (shape, tuple) in [("acl", "five"), ("fw", "three"), ("ipc", "five")] {
        let text = flowpol!()
            .args([
                "gen", "rules", "--shape", shape, "--count", "300", "--seed", "5", "--tuple", tuple,
            ])
            .output_ok();
        check_passes(dir.path(), &format!("{shape}.pol"), &text);
        let p = policy::load_str(shape, &text).unwrap();
        let n = if tuple == "five" {
            p.five.len()
        } else {
            p.three.len()
        };
        assert_eq!(n, 300);
        // The printed text is faithful: it parses back to exactly the generated rules.
        let shape_v = match shape {
            "acl" => rules::Shape::Acl,
            "fw" => rules::Shape::Fw,
            _ => rules::Shape::Ipc,
        };
        let tuple_v = if tuple == "five" {
            flowpol::policy::syntax::TupleKind::Five
        } else {
            flowpol::policy::syntax::TupleKind::Three
        };
        let generated = rules::generate(shape_v, 300, 5, tuple_v);
        assert_eq!((&p.three, &p.five), (&generated.three, &generated.five));
        let again = flowpol!()
            .args([
                "gen", "rules", "--shape", shape, "--count", "300", "--seed", "5", "--tuple", tuple,
            ])
            .output_ok();
        assert_eq!(text, again, "same seed, same policy");
    }
}

#[test]
fn import_real_classbench_sets_check() {
    let Some(d) = support::gate::shared_data("classbench", "the real ClassBench import") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for set in ["acl1_1k", "fw1_1k", "ipc1_1k"] {
        for kind in ["five", "three"] {
            let text = flowpol!()
                .args([
                    "import",
                    "classbench",
                    "--as",
                    kind,
                    d.join(set).to_str().unwrap(),
                ])
                .output_ok();
            check_passes(dir.path(), &format!("{set}.{kind}.pol"), &text);
            let cb =
                classbench::parse_rules(&std::fs::read_to_string(d.join(set)).unwrap()).unwrap();
            let want = classbench::to_policy(
                &cb,
                if kind == "five" { As::Five } else { As::Three },
                DEFAULT_MAP_V4,
            );
            let got = policy::load_str(set, &text).unwrap();
            assert_eq!(
                (got.three, got.five),
                (want.three, want.five),
                "{set} {kind} round trip"
            );
        }
    }
}

#[test]
fn bench_runs_every_engine_on_trace_and_pcap_without_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::write(&rules, RULES).unwrap();
    let pol = dir.path().join("p.pol");
    std::fs::write(
        &pol,
        flowpol!()
            .args(["import", "classbench", rules.to_str().unwrap()])
            .output_ok(),
    )
    .unwrap();
    let trace = dir.path().join("trace");
    std::fs::write(
        &trace,
        "2241899508\t21156916\t5\t1704\t6\t0\t1\n167772161\t1\t1024\t53\t17\t0\t2\n1\t3232235777\t9\t6010\t6\t0\t3\n5\t6\t7\t8\t50\t0\t4\n",
    )
    .unwrap();
    let svg = dir.path().join("p.svg");
    let o = flowpol!()
        .args([
            "bench",
            "--policy",
            pol.to_str().unwrap(),
            "--trace",
            trace.to_str().unwrap(),
            "--format",
            "json",
            "--min-ms",
            "5",
            "--plot",
            svg.to_str().unwrap(),
        ])
        .output();
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(j["packets"], 4);
    assert_eq!(j["mismatches"], 0);
    let engines: Vec<(String, String)> = j["engines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().into(),
                e["tuple"].as_str().unwrap().into(),
            )
        })
        .collect();
    // Every engine by default: linear, tuplemerge, and the cost model's pick (named after it).
    assert_eq!(
        engines[..2],
        [
            ("linear".into(), "five".into()),
            ("tuplemerge".into(), "five".into())
        ]
    );
    assert_eq!(engines.len(), 3, "{engines:?}");
    assert!(
        engines[2].0.starts_with("fast=") && engines[2].1 == "five",
        "{engines:?}"
    );
    for e in j["engines"].as_array().unwrap() {
        for k in ["build_ms", "bytes", "key_ns", "lookup_ns"] {
            assert!(e[k].as_f64().unwrap() >= 0.0, "{k}");
        }
    }
    let svg = std::fs::read_to_string(&svg).unwrap();
    // The tuplemerge group's 5-tuple bar: the engine under the axis, the tuple in the legend.
    assert!(
        svg.contains("<svg")
            && svg.contains(">\ntuplemerge\n</text>")
            && svg.contains(">\n5-tuple\n</text>"),
        "{svg}"
    );
    let tm = &j["engines"][1];
    let value = flowpol::bench::plot::ns_text(tm["lookup_ns"].as_f64().unwrap());
    assert!(
        svg.contains(&format!(">\n{value}\n</text>")),
        "{value}: {svg}"
    );

    // The same packets from a pcap give the same counts.
    let pcap = dir.path().join("t.pcap");
    flowpol!()
        .args([
            "import",
            "classbench-trace",
            trace.to_str().unwrap(),
            "--out",
            pcap.to_str().unwrap(),
        ])
        .output_ok();
    let o = flowpol!()
        .args([
            "bench",
            "--policy",
            pol.to_str().unwrap(),
            "--pcap",
            pcap.to_str().unwrap(),
            "--format",
            "json",
            "--min-ms",
            "5",
            "--engines",
            "fast",
        ])
        .output();
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        (j["packets"].as_u64(), j["mismatches"].as_u64()),
        (Some(4), Some(0))
    );
    assert_eq!(j["engines"].as_array().unwrap().len(), 1);

    let o = flowpol!()
        .args(["bench", "--policy", pol.to_str().unwrap()])
        .output();
    assert_eq!(o.status.code(), Some(2), "--pcap or --trace is required");
}
