//! `flowpol bench --classbench RULES --trace TRACE`: the trace's rule column checked for both
//! tuples (table and JSON `"trace"`), the share of packets without a 5-tuple, the exit code
//! when the trace does not belong to the rules, and `--plot`'s figure.

use flowpol::bench::all_engines;
use flowpol::bench::plot::ns_text;
use serde_json::{Value, json};
use std::path::Path;
use support::{OutputExt, flowpol};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/classbench/fw2_style"
);
const FIXTURE_TRACE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/classbench/fw2_style_trace"
);

fn bench(rules: &str, trace: &str, extra: &[&str]) -> std::process::Output {
    flowpol!(
        "bench",
        "--classbench",
        rules,
        "--trace",
        trace,
        "--min-ms",
        "1"
    )
    .args(extra)
    .output()
}

fn json_of(o: &std::process::Output) -> Value {
    serde_json::from_str(&o.stdout_text()).unwrap_or_else(|e| panic!("{e}: {}", o.stdout_text()))
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(|s| s.as_str()).collect();
    k.sort();
    k
}

#[test]
fn the_fw2_style_set_is_checked_against_its_trace_for_both_tuples_in_json() {
    let o = bench(FIXTURE, FIXTURE_TRACE, &["--format", "json"]);
    assert_eq!(o.code(), Some(0), "{}", o.stderr_text());
    let v = json_of(&o);
    assert_eq!(v["mismatches"], 0);
    assert_eq!(
        (v["packets"].as_u64(), v["ipv6"].as_u64()),
        (Some(16), Some(16))
    );
    // Same counts as the library's check (tests/classbench_import.rs). The AH packet
    // (protocol 51) has a 5-tuple and meets its rule: `same`, not a miss.
    assert_eq!(
        v["trace"]["five"],
        json!({"checked": 16, "same": 6, "earlier": 1, "later": 0,
            "column_rule_misses": 9, "by_reason": {"any-protocol-ports": 1,
            "no-five-tuple": 6, "ports-exclude-zero": 2, "unexplained": 0}})
    );
    assert_eq!(
        v["trace"]["three"],
        json!({"checked": 16, "same": 10, "earlier": 6, "later": 0,
            "column_rule_misses": 0, "by_reason": {"any-protocol-ports": 0,
            "no-five-tuple": 0, "ports-exclude-zero": 0, "unexplained": 0}})
    );
    assert_eq!(keys(&v["trace"]), ["five", "three"]);
    // Availability: protocols 0, 43, 44, 60 (an extension header with nothing after it) and
    // 50 (ESP) leave 6 packets without a 5-tuple; AH (51) is the 5-tuple's protocol, as nft's
    // `meta l4proto` reads it.
    let nf = &v["no_five_tuple"];
    assert_eq!(nf["packets"], 6);
    assert_eq!(v["five_available"], 10);
    assert!((nf["share"].as_f64().unwrap() - 6.0 / 16.0).abs() < 1e-9);
    assert_eq!(
        nf["by_reason"],
        json!({"esp": 1, "malformed": 0, "non-first-fragment": 0, "truncated": 0,
            "unknown-header": 5})
    );
    // Every engine, both tuples, no mismatch.
    let rows = v["engines"].as_array().unwrap();
    assert_eq!(rows.len(), 2 * all_engines().len(), "{rows:?}");
    for tuple in ["three", "five"] {
        let n = rows.iter().filter(|r| r["tuple"] == tuple).count();
        assert_eq!(n, all_engines().len(), "{tuple}");
    }
    assert!(rows.iter().all(|r| r["mismatches"] == 0));
}

#[test]
fn the_table_ends_with_availability_and_the_trace_check() {
    let o = bench(FIXTURE, FIXTURE_TRACE, &[]);
    assert_eq!(o.code(), Some(0), "{}", o.stderr_text());
    let out = o.stdout_text();
    assert!(
        out.contains(
            "availability: 6 of 16 IPv6 packets (37.5%) have no 5-tuple: esp 1, unknown-header 5\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "trace check five: 16 checked: 6 same, 1 earlier, 0 later, 9 column rule misses \
             (any-protocol-ports 1, no-five-tuple 6, ports-exclude-zero 2)\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "trace check three: 16 checked: 10 same, 6 earlier, 0 later, 0 column rule misses\n"
        ),
        "{out}"
    );
}

/// A tcp rule, the rule it shadows, ports on protocol 1 (icmp) with and without 0, a catch-all.
const SMALL: &str = "@10.0.0.0/8\t0.0.0.0/0\t0 : 65535\t0 : 65535\t0x06/0xFF\t0x0000/0x0000\n\
                     @10.1.0.0/16\t0.0.0.0/0\t0 : 65535\t80 : 80\t0x06/0xFF\t0x0000/0x0000\n\
                     @20.0.0.0/8\t0.0.0.0/0\t0 : 65535\t8 : 8\t0x01/0xFF\t0x0000/0x0000\n\
                     @21.0.0.0/8\t0.0.0.0/0\t0 : 65535\t0 : 255\t0x01/0xFF\t0x0000/0x0000\n\
                     @0.0.0.0/0\t0.0.0.0/0\t0 : 65535\t0 : 65535\t0x00/0x00\t0x0000/0x0000\n";

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn a_shadowed_column_is_earlier_and_ports_on_protocol_1_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write(dir.path(), "rules", SMALL);
    // 10.1.0.1 tcp/80 drawn from rule 1, which rule 0 shadows; 20.0.0.1 icmp "dport" 8 from
    // rule 2 (never matches: an icmp packet's ports are 0); 21.0.0.1 icmp from rule 3 (ports
    // dropped: it matches); 30.0.0.1 udp from the catch-all.
    let trace = write(
        dir.path(),
        "trace",
        "167837697 1 5 80 6 0 1\n335544321 1 0 8 1 0 2\n352321537 1 0 3 1 0 3\n\
         503316481 1 5 6 17 0 4\n",
    );
    let o = bench(&rules, &trace, &["--format", "json"]);
    assert_eq!(o.code(), Some(0), "{}", o.stderr_text());
    let v = json_of(&o);
    assert_eq!(
        v["trace"]["five"],
        json!({"checked": 4, "same": 2, "earlier": 1, "later": 0,
            "column_rule_misses": 1, "by_reason": {"any-protocol-ports": 0,
            "no-five-tuple": 0, "ports-exclude-zero": 1, "unexplained": 0}})
    );
    // The 3-tuple keeps the icmp rule's "dport" 8 as a label, so the packet matches it.
    let three = &v["trace"]["three"];
    assert_eq!(
        (
            &three["same"],
            &three["earlier"],
            &three["column_rule_misses"]
        ),
        (&json!(3), &json!(1), &json!(0))
    );
    assert_eq!(v["no_five_tuple"]["packets"], 0);
}

#[test]
fn a_trace_that_does_not_belong_to_the_rules_exits_1_or_2() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write(dir.path(), "rules", SMALL);
    // A udp packet from 30.0.0.1 cannot have been drawn from rule 0 (tcp from 10.0.0.0/8).
    let trace = write(
        dir.path(),
        "bad",
        "503316481 1 5 6 17 0 0\n167772161 1 5 80 6 0 0\n",
    );
    let o = bench(&rules, &trace, &["--format", "json"]);
    assert_eq!(o.code(), Some(1), "{}", o.stderr_text());
    let v = json_of(&o);
    assert_eq!(v["mismatches"], 0);
    for tuple in ["five", "three"] {
        let t = &v["trace"][tuple];
        assert_eq!((&t["same"], &t["later"]), (&json!(1), &json!(0)), "{tuple}");
        assert_eq!(t["by_reason"]["unexplained"], 1, "{tuple}");
    }
    let o = bench(&rules, &trace, &[]);
    assert_eq!(o.code(), Some(1));
    assert!(
        o.stdout_text().contains("unexplained 1"),
        "{}",
        o.stdout_text()
    );
    // Rule 5 does not exist (rules 0 to 4): a usage error.
    let trace = write(dir.path(), "out", "503316481 1 5 6 17 0 5\n");
    let o = bench(&rules, &trace, &[]);
    assert_eq!(o.code(), Some(2));
    assert!(
        o.stderr_text().contains("names rule 5"),
        "{}",
        o.stderr_text()
    );
}

#[test]
fn bench_needs_rules_and_packets() {
    let o = flowpol!("bench", "--trace", FIXTURE_TRACE).output();
    assert_eq!(o.code(), Some(2));
    assert!(
        o.stderr_text().contains("--policy or --classbench"),
        "{}",
        o.stderr_text()
    );
    let o = flowpol!("bench", "--classbench", FIXTURE).output();
    assert_eq!(o.code(), Some(2));
    assert!(
        o.stderr_text().contains("--pcap or --trace"),
        "{}",
        o.stderr_text()
    );
}

#[test]
fn the_plot_is_a_valid_svg_with_every_bar_labelled_and_the_no_five_tuple_share() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("b.svg");
    let o = bench(
        FIXTURE,
        FIXTURE_TRACE,
        &["--format", "json", "--plot", svg.to_str().unwrap()],
    );
    assert_eq!(o.code(), Some(0), "{}", o.stderr_text());
    let v = json_of(&o);
    let text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let texts: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or_default().trim().to_string())
        .collect();
    let has = |s: &str| texts.iter().any(|t| t == s);
    for l in [
        "3-tuple",
        "5-tuple",
        "key extraction, ns/packet",
        "lookup, ns/key",
    ] {
        assert!(has(l), "{l} missing: {texts:?}");
    }
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("6 of 16 IPv6 packets (37.5%) have no 5-tuple")),
        "{texts:?}"
    );
    // Every engine is a group label; every engine × tuple has its lookup and whole-path bar,
    // each with its value written on it.
    for row in v["engines"].as_array().unwrap() {
        let name = row["name"].as_str().unwrap();
        assert!(has(name), "{name}: {texts:?}");
        let (key, lookup) = (
            row["key_ns"].as_f64().unwrap(),
            row["lookup_ns"].as_f64().unwrap(),
        );
        for value in [key, lookup, key + lookup] {
            assert!(has(&ns_text(value)), "{name} {value}: {texts:?}");
        }
    }
    // One bar per engine and tuple in each log panel, two key-extraction bars.
    let bars = doc
        .descendants()
        .filter(|n| n.has_tag_name("rect"))
        .filter(|n| {
            let f = n.attribute("fill").unwrap_or_default().to_ascii_uppercase();
            f == "#326EBE" || f == "#E17828"
        })
        .count();
    // Two legend swatches too.
    assert_eq!(
        bars,
        2 * v["engines"].as_array().unwrap().len() + 2 + 2,
        "{text}"
    );
}

/// As a new user would run it, on every shipped 1k set with a trace (the 10k sets are measured
/// the same way in release for the README): import, check with no errors, then bench with no
/// mismatch, no first match after the column and no unexplained miss, for both tuples.
#[test]
fn every_shipped_1k_set_imports_checks_and_benches_clean_against_its_trace() {
    let Some(d) = support::gate::shared_data("classbench", "the shipped ClassBench sets") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut sets = 0;
    for set in ["acl1_1k", "fw1_1k", "ipc1_1k"] {
        let (rules, trace) = (d.join(set), d.join(format!("{set}_trace")));
        let (rules, trace) = (rules.to_str().unwrap(), trace.to_str().unwrap());
        let text = flowpol!("import", "classbench", "--as", "both", rules).output_ok();
        let pol = write(dir.path(), &format!("{set}.pol"), &text);
        let c = flowpol!("check", &pol).output();
        let out = c.stdout_text() + &c.stderr_text();
        assert!(out.contains(": 0 errors,"), "{set}: {out}");
        let o = bench(rules, trace, &["--format", "json"]);
        assert_eq!(o.code(), Some(0), "{set}: {}", o.stderr_text());
        let v = json_of(&o);
        assert_eq!(v["mismatches"], 0, "{set}");
        let lines = std::fs::read_to_string(d.join(format!("{set}_trace")))
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count();
        for tuple in ["five", "three"] {
            let t = &v["trace"][tuple];
            assert_eq!(t["checked"], lines, "{set} {tuple}");
            assert_eq!(t["later"], 0, "{set} {tuple}: {t}");
            assert_eq!(t["by_reason"]["unexplained"], 0, "{set} {tuple}: {t}");
        }
        // Every 5-tuple miss is a packet without one, and the report says how many.
        assert_eq!(
            v["trace"]["five"]["by_reason"]["no-five-tuple"], v["no_five_tuple"]["packets"],
            "{set}"
        );
        sets += 1;
    }
    assert_eq!(sets, 3);
}
