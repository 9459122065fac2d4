//! `flowpol compile --target bpf`: every emitted pcap-filter expression, run by `tcpdump -r` on
//! a generated capture, selects exactly the packets flowpol's linear engine assigns to that
//! rule, action or default; the expressions of every bundled policy compile in tcpdump and in
//! tshark's dumpcap.

mod common;
mod compile_support;

use compile_support::*;
use flowpol::compile::{Engine, bpf};
use flowpol::policy::model::Policy;
use std::path::Path;
use std::process::Command;

const SMAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const DMAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

/// Packets `tcpdump -r cap EXPR` selects.
fn tcpdump_count(cap: &Path, expr: &str, dir: &Path) -> usize {
    let out = dir.join("sel.pcap");
    let o = Command::new("tcpdump")
        .arg("-r")
        .arg(cap)
        .arg("-w")
        .arg(&out)
        .arg(expr)
        .output()
        .expect("tcpdump runs");
    assert!(
        o.status.success(),
        "tcpdump rejected `{expr}`: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    count_pcap(&out)
}

/// Compares every filter's count with flowpol's.
fn check(policy: &Policy, engine: Engine, pkts: &[Pkt], expected: &[u64]) {
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("cap.pcap");
    write_pcap(
        &cap,
        &pkts.iter().map(|p| p.frame(SMAC, DMAC)).collect::<Vec<_>>(),
    );
    assert_eq!(count_pcap(&cap), pkts.len());
    let filters = bpf::compile(policy, engine).unwrap();
    let n = expected.len() - 1;
    // flowpol's own reading of the capture agrees with the tuples the frames were built from.
    let pol = dir.path().join("p.fpol");
    std::fs::write(&pol, flowpol::policy::fmt::format(policy)).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_flowpol"))
        .args(["classify", "--format", "json", "--policy"])
        .arg(&pol)
        .arg("--pcap")
        .arg(&cap)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let key = match engine {
        Engine::Three => "three",
        Engine::Five => "five",
    };
    let measured: Vec<u64> = v["rules"][key]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["packets"].as_u64().unwrap())
        .collect();
    assert_eq!(measured, expected, "flowpol classify vs the frames' tuples");
    let action_of = |i: usize| match engine {
        Engine::Three if i < n => policy.three[i].action.to_string(),
        Engine::Five if i < n => policy.five[i].action.to_string(),
        _ => policy.default.to_string(),
    };
    let mut checked = 0;
    for f in &filters {
        let want: u64 = match (f.kind, f.index) {
            (bpf::FilterKind::Rule, Some(i)) => expected[i],
            (bpf::FilterKind::Default, _) => expected[n],
            (bpf::FilterKind::Action, _) => (0..=n)
                .filter(|&i| action_of(i) == f.name)
                .map(|i| expected[i])
                .sum(),
            _ => unreachable!(),
        };
        let got = if f.expr == bpf::NOTHING {
            0
        } else {
            tcpdump_count(&cap, &f.expr, dir.path()) as u64
        };
        assert_eq!(
            got, want,
            "{:?} {} ({}): `{}`",
            f.kind, f.name, f.action, f.expr
        );
        checked += 1;
    }
    assert_eq!(checked, filters.len());
    assert!(
        expected.iter().filter(|&&c| c > 0).count() >= 3,
        "the capture exercises several rules: {expected:?}"
    );
}

#[test]
fn three_tuple_filters_select_exactly_flowpols_packets() {
    let all = [
        Shape::Udp,
        Shape::Tcp,
        Shape::HopUdp,
        Shape::FragFirst,
        Shape::FragRest,
    ];
    for seed in 1..=4 {
        let policy = overlapping_three(seed, 12);
        let pkts = packets_near(&policy, 300, seed * 7, &all);
        let expected = expected_three(&policy, &pkts);
        check(&policy, Engine::Three, &pkts, &expected);
    }
}

#[test]
fn five_tuple_filters_are_exact_without_extension_headers_and_say_so() {
    let policy = big_five(40, 3);
    let pkts = packets_near(&policy, 300, 5, &[Shape::Udp, Shape::Tcp]);
    let expected = expected_five(&policy, &pkts);
    check(&policy, Engine::Five, &pkts, &expected);
    let filters = bpf::compile(&policy, Engine::Five).unwrap();
    assert!(filters.iter().all(|f| {
        !f.exact
            && f.reason
                .as_deref()
                .is_some_and(|r| r.contains("extension headers"))
    }));
}

#[test]
fn cli_bpf_output_for_bundled_policies_compiles_in_libpcap() {
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("one.pcap");
    let p = Pkt {
        src: DB8 | 1,
        dst: DB8 | 2,
        label: 0x12345,
        shape: Shape::Udp,
        sport: 1,
        dport: 2,
    };
    write_pcap(&cap, &[p.frame(SMAC, DMAC)]);
    let root_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = common::netns::require_root(
        "cli_bpf_output_for_bundled_policies_compiles_in_libpcap (dumpcap part)",
    );
    let mut n = 0;
    for entry in std::fs::read_dir(root_dir.join("policies"))
        .unwrap()
        .chain(std::fs::read_dir(root_dir.join("tests/data/compile")).unwrap())
    {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "fpol") {
            continue;
        }
        for engine in ["three", "five"] {
            let o = Command::new(env!("CARGO_BIN_EXE_flowpol"))
                .args([
                    "compile", "--target", "bpf", "--format", "json", "--engine", engine,
                ])
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&o.stderr)
            );
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            for f in v.as_array().unwrap() {
                let expr = f["expr"].as_str().unwrap();
                if expr != bpf::NOTHING {
                    tcpdump_count(&cap, expr, dir.path());
                    if root {
                        // tshark's capture engine: dumpcap compiles the filter for an interface.
                        let o = Command::new("dumpcap")
                            .args(["-i", "lo", "-d", "-f", expr])
                            .output()
                            .expect("dumpcap runs");
                        assert!(
                            o.status.success(),
                            "dumpcap rejected `{expr}`: {}",
                            String::from_utf8_lossy(&o.stderr)
                        );
                    }
                }
                assert_eq!(f["exact"].as_bool(), Some(engine == "three"));
                n += 1;
            }
            let text = Command::new(env!("CARGO_BIN_EXE_flowpol"))
                .args(["compile", "--target", "bpf", "--engine", engine])
                .arg(&path)
                .output()
                .unwrap();
            let t = String::from_utf8(text.stdout).unwrap();
            assert!(
                t.lines().any(|l| l.starts_with("# rule 0 ")) || !t.contains("# rule"),
                "{t}"
            );
        }
    }
    assert!(n > 10, "bundled policies produced only {n} filters");
}
