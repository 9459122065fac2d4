//! Reviewing a policy change: `flowpol diff` finds each kind of region exactly (prefixes, label
//! exact/mask/range, protocols, ports), reports nothing for rewrites that keep the meaning, and
//! says when its budget ran out; its example packets are confirmed by `explain` and by
//! `classify` on a capture holding them; `explain` and `test` as CI runs them.

use flowpol::policy::diff::{DiffBudget, PolicyDiff, diff};
use flowpol::policy::load_str;
use serde_json::Value;
use support::{OutputExt, flowpol};

fn d(old: &str, new: &str) -> PolicyDiff {
    let old = load_str("old", old).unwrap();
    let new = load_str("new", new).unwrap();
    diff(&old, &new, &DiffBudget::default())
}

fn three(rules: &str) -> String {
    format!("default pass\nthree {{\n{rules}\n}}\n")
}

fn five(rules: &str) -> String {
    format!("default pass\nfive {{\n{rules}\n}}\n")
}

/// The one change of the 3-tuple (or 5-tuple) block: (before, after, region fields).
fn only(
    t: &flowpol::policy::diff::TupleDiff,
) -> (String, String, Vec<(&'static str, Vec<String>)>) {
    assert!(t.complete);
    assert_eq!(t.changes.len(), 1, "{:#?}", t.changes);
    let c = &t.changes[0];
    (c.before.to_string(), c.after.to_string(), c.region.exact())
}

/// Each change of a block as ("before -> after", the values of region field `field`).
fn moves(t: &flowpol::policy::diff::TupleDiff, field: usize) -> Vec<(String, Vec<String>)> {
    t.changes
        .iter()
        .map(|c| {
            (
                format!("{} -> {}", c.before, c.after),
                c.region.exact()[field].1.clone(),
            )
        })
        .collect()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_shorter_prefix_moves_the_other_half() {
    let x = d(
        &three("rule a dst 2001:db8::/32 -> drop"),
        &three("rule a dst 2001:db8::/33 -> drop"),
    );
    let (b, a, region) = only(&x.three);
    assert_eq!((b.as_str(), a.as_str()), ("drop", "pass"));
    assert_eq!(region[0], ("src", strs(&["::/0"])));
    assert_eq!(region[1], ("dst", strs(&["2001:db8:8000::/33"])));
    assert_eq!(region[2], ("label", strs(&["any"])));
    assert_eq!(
        x.three.changes[0].example.dst.to_string(),
        "2001:db8:8000::"
    );
    assert!(x.five.changes.is_empty() && x.five.complete);
}

#[test]
fn exact_labels_move_one_label_each_way() {
    let x = d(
        &three("rule a label 5 -> drop"),
        &three("rule a label 6 -> drop"),
    );
    assert_eq!(
        moves(&x.three, 2),
        [
            ("drop -> pass".to_string(), strs(&["0x5"])),
            ("pass -> drop".to_string(), strs(&["0x6"])),
        ]
    );
}

#[test]
fn a_masked_label_is_one_pattern_however_many_runs_it_has() {
    // Every odd label: 2^19 runs of one label.
    let x = d(&three("rule odd label 0x1/0x1 -> drop"), &three(""));
    let (b, a, region) = only(&x.three);
    assert_eq!((b.as_str(), a.as_str()), ("drop", "pass"));
    assert_eq!(region[2], ("label", strs(&["0x1/0x1"])));
    // Narrowing the mask: the labels 0bxx01 leave, 0bxx11 stay.
    let x = d(
        &three("rule odd label 0x1/0x1 -> drop"),
        &three("rule odd label 0x3/0x3 -> drop"),
    );
    assert_eq!(only(&x.three).2[2], ("label", strs(&["0x1/0x3"])));
}

#[test]
fn a_wider_label_range_moves_the_new_part() {
    let x = d(
        &three("rule r label 0x10-0x1f -> class gold"),
        &three("rule r label 0x10-0x2f -> class gold"),
    );
    let (b, a, region) = only(&x.three);
    assert_eq!((b.as_str(), a.as_str()), ("pass", "class gold"));
    assert_eq!(region[2], ("label", strs(&["0x20-0x2f"])));
    assert_eq!(x.three.changes[0].example.label, Some(0x20));
}

#[test]
fn a_changed_protocol_moves_both_protocols() {
    let x = d(
        &five("rule r proto tcp -> drop"),
        &five("rule r proto udp -> drop"),
    );
    assert_eq!(
        moves(&x.five, 2),
        [
            ("drop -> pass".to_string(), strs(&["tcp"])),
            ("pass -> drop".to_string(), strs(&["udp"])),
        ]
    );
    assert!(x.three.changes.is_empty());
}

#[test]
fn a_wider_port_range_moves_the_new_ports_only() {
    let x = d(
        &five("rule web proto tcp dport 80 -> drop"),
        &five("rule web proto tcp dport 80-81 -> drop"),
    );
    let (b, a, region) = only(&x.five);
    assert_eq!((b.as_str(), a.as_str()), ("pass", "drop"));
    assert_eq!(
        region,
        [
            ("src", strs(&["::/0"])),
            ("dst", strs(&["::/0"])),
            ("proto", strs(&["tcp"])),
            ("sport", strs(&["0-65535"])),
            ("dport", strs(&["81"])),
        ]
    );
    let e = x.five.changes[0].example;
    assert_eq!((e.proto, e.sport, e.dport), (Some(6), Some(0), Some(81)));
}

#[test]
fn a_protocol_without_ports_has_only_port_zero() {
    // Every packet of a protocol without ports has ports 0, so "all but tcp" is one region per
    // half of the key space, not one with every port of icmpv6.
    let x = d(&five(""), &five("rule r proto icmpv6 -> drop"));
    let (_, _, region) = only(&x.five);
    assert_eq!(region[2].1, strs(&["icmpv6"]));
    assert_eq!(region[3].1, strs(&["0"]));
    assert_eq!(region[4].1, strs(&["0"]));
}

#[test]
fn rewrites_that_keep_the_meaning_report_nothing() {
    let base = three(
        "rule a src 2001:db8:a::/48 -> drop\nrule b src 2001:db8:b::/48 label 0 -> class gold\nrule c dst 2001:db8:ff::/64 -> drop",
    )
    .replace("default pass", "class gold\ndefault pass");
    // Renamed, the two non-overlapping rules swapped, a prefix split into its halves.
    let rewritten = three(
        "rule b2 src 2001:db8:b::/48 label 0 -> class gold\nrule a1 src 2001:db8:a::/49 -> drop\nrule a2 src 2001:db8:a:8000::/49 -> drop\nrule c dst 2001:db8:ff::/64 -> drop",
    )
    .replace("default pass", "class gold\ndefault pass");
    let x = d(&base, &rewritten);
    assert!(x.is_unchanged(), "{x:#?}");
    // A shadowed rule added after the rule that covers it changes nothing either.
    let shadowed = base.replace(
        "rule c dst",
        "rule a-web src 2001:db8:a::/48 dst 2001:db8:ff::/64 -> class gold\nrule c dst",
    );
    assert!(d(&base, &shadowed).is_unchanged());
}

#[test]
fn reordering_overlapping_rules_moves_their_overlap() {
    let x = d(
        &three("rule a src 2001:db8::/32 -> drop\nrule b dst 2001:db8:ff::/64 -> class gold")
            .replace("default pass", "class gold\ndefault pass"),
        &three("rule b dst 2001:db8:ff::/64 -> class gold\nrule a src 2001:db8::/32 -> drop")
            .replace("default pass", "class gold\ndefault pass"),
    );
    let (b, a, region) = only(&x.three);
    assert_eq!((b.as_str(), a.as_str()), ("drop", "class gold"));
    assert_eq!(region[0].1, strs(&["2001:db8::/32"]));
    assert_eq!(region[1].1, strs(&["2001:db8:ff::/64"]));
    let c = &x.three.changes[0];
    assert_eq!((c.before_rule, c.after_rule), (Some(0), Some(0)));
}

#[test]
fn removing_the_rule_that_shadows_another_moves_only_what_the_other_does_not_take() {
    // b was shadowed by a; without a, b decides what a did, except where b's action is a's.
    let x = d(
        &three("rule a dst 2001:db8::/32 -> drop\nrule b dst 2001:db8:1::/48 -> drop"),
        &three("rule b dst 2001:db8:1::/48 -> drop"),
    );
    let (b, a, region) = only(&x.three);
    assert_eq!((b.as_str(), a.as_str()), ("drop", "pass"));
    assert_eq!(
        region[1].1.len(),
        16,
        "2001:db8::/32 less one /48: {:?}",
        region[1].1
    );
    let brief = x.three.changes[0].region.brief();
    assert_eq!(
        brief,
        [("dst", "2001:db8::/32 except 2001:db8:1::/48".to_string())]
    );
}

#[test]
fn an_exhausted_budget_says_incomplete_and_never_no_change() {
    let old = load_str("o", &three("rule a dst 2001:db8::/32 -> drop")).unwrap();
    let new = load_str("n", &three("rule a dst 2001:db8::/33 -> drop")).unwrap();
    let x = diff(&old, &new, &DiffBudget { work: 2, boxes: 1 });
    assert!(!x.three.complete);
    assert!(!x.is_unchanged());
    // The same through the command line: exit 1 and the word, in every format.
    let dir = tempfile::tempdir().unwrap();
    let (o, n) = (dir.path().join("old.fpol"), dir.path().join("new.fpol"));
    std::fs::write(&o, three("rule a dst 2001:db8::/32 -> drop")).unwrap();
    std::fs::write(&n, three("rule a dst 2001:db8::/33 -> drop")).unwrap();
    let (o, n) = (o.to_str().unwrap(), n.to_str().unwrap());
    let out = flowpol!()
        .in_repo()
        .args(["diff", o, n, "--budget", "3"])
        .output();
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr_text());
    assert!(
        out.stdout_text().contains("3-tuple: INCOMPLETE"),
        "{}",
        out.stdout_text()
    );
    let out = flowpol!()
        .in_repo()
        .args(["diff", o, n, "--budget", "3", "--format", "json"])
        .output();
    let v: Value = serde_json::from_str(&out.stdout_text()).unwrap();
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .any(|e| e["tuple"] == "three" && e["incomplete"] == true),
        "{v:#}"
    );
    let out = flowpol!()
        .in_repo()
        .args(["diff", o, n, "--budget", "3", "--format", "github"])
        .output();
    assert!(
        out.stdout_text()
            .contains("title=D0002::3-tuple: the diff is incomplete")
    );
}

#[test]
fn one_changed_rule_in_a_large_policy_is_found_without_the_budget_running_out() {
    let dir = tempfile::tempdir().unwrap();
    let out = flowpol!()
        .in_repo()
        .args([
            "gen", "rules", "--shape", "fw", "--count", "3000", "--tuple", "three",
        ])
        .output();
    assert_eq!(out.status.code(), Some(0));
    let text = out.stdout_text();
    let old = dir.path().join("old.fpol");
    std::fs::write(&old, &text).unwrap();
    // Flip the action of one rule in the middle.
    let line = text
        .lines()
        .find(|l| l.contains(" rule g1500 "))
        .unwrap()
        .to_string();
    let flipped = if line.ends_with("-> pass") {
        line.replace("-> pass", "-> drop")
    } else {
        line.replace("-> drop", "-> pass")
    };
    let new = dir.path().join("new.fpol");
    std::fs::write(&new, text.replace(&line, &flipped)).unwrap();
    let (o, n) = (old.to_str().unwrap(), new.to_str().unwrap());
    let out = flowpol!()
        .in_repo()
        .args(["diff", o, n, "--format", "json"])
        .output();
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr_text());
    let v: Vec<Value> = serde_json::from_str(&out.stdout_text()).unwrap();
    assert!(!v.is_empty());
    assert!(v.iter().all(|c| c["incomplete"].is_null()), "{v:#?}");
    assert!(
        v.iter()
            .all(|c| c["after_rule"] == "g1500" || c["before_rule"] == "g1500")
    );
    assert_eq!(
        flowpol!()
            .in_repo()
            .args(["diff", o, o])
            .output()
            .status
            .code(),
        Some(0)
    );
}

#[test]
fn identical_policies_exit_0_and_changed_ones_exit_1() {
    let out = flowpol!()
        .in_repo()
        .args([
            "diff",
            "policies/datacenter.fpol",
            "policies/datacenter.fpol",
        ])
        .output();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        out.stdout_text(),
        "3-tuple: no change\n5-tuple: no change\ndiff policies/datacenter.fpol policies/datacenter.fpol: no packet changes action\n"
    );
    let out = flowpol!()
        .in_repo()
        .args(["diff", "policies/datacenter.fpol", "policies/media.fpol"])
        .output();
    assert_eq!(out.status.code(), Some(1));
    let out = flowpol!()
        .in_repo()
        .args([
            "diff",
            "policies/datacenter.fpol",
            "tests/policies/invalid/ranges.fpol",
        ])
        .output();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stderr_text().contains("error"), "{}", out.stderr_text());
    let out = flowpol!()
        .in_repo()
        .args(["diff", "policies/datacenter.fpol", "no/such.fpol"])
        .output();
    assert_eq!(out.status.code(), Some(2));
}

/// An Ethernet frame holding one IPv6 packet with these fields.
fn frame(src: &str, dst: &str, label: u32, proto: u8, sport: u16, dport: u16) -> Vec<u8> {
    use etherparse::{IpNumber, Ipv6FlowLabel, Ipv6Header, PacketBuilder};
    let ip = Ipv6Header {
        traffic_class: 0,
        flow_label: Ipv6FlowLabel::try_new(label).unwrap(),
        payload_length: 0,
        next_header: IpNumber(proto),
        hop_limit: 64,
        source: src.parse::<std::net::Ipv6Addr>().unwrap().octets(),
        destination: dst.parse::<std::net::Ipv6Addr>().unwrap().octets(),
    };
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ip(etherparse::IpHeaders::Ipv6(ip, Default::default()));
    let mut out = Vec::new();
    match proto {
        6 => {
            let b = b.tcp(sport, dport, 1, 1024);
            b.write(&mut out, &[]).unwrap();
        }
        17 => {
            let b = b.udp(sport, dport);
            b.write(&mut out, &[]).unwrap();
        }
        _ => {
            let b = b.icmpv6_echo_request(1, 1);
            b.write(&mut out, &[]).unwrap();
        }
    }
    out
}

fn write_pcap(path: &std::path::Path, frames: &[Vec<u8>]) {
    use flowpol::source::pcap::{FrameWriter, PcapWriter};
    let mut w = PcapWriter::create(path, flowpol::packet::LinkType::ETHERNET).unwrap();
    for (i, f) in frames.iter().enumerate() {
        w.write_packet(std::time::Duration::from_secs(i as u64), f.len() as u32, f)
            .unwrap();
    }
    FrameWriter::flush(&mut w).unwrap();
}

/// The rule name (or null for the default) `classify --packets` gives the packet in each block.
fn classified(policy: &str, pcap: &str, dir: &std::path::Path) -> Vec<(Value, Value)> {
    let lines = dir.join(format!("{}.jsonl", policy.replace('/', "_")));
    let out = flowpol!()
        .in_repo()
        .args([
            "classify",
            "--policy",
            policy,
            "--pcap",
            pcap,
            "--packets",
            lines.to_str().unwrap(),
        ])
        .output();
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr_text());
    std::fs::read_to_string(&lines)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["three"].clone(), v["five"].clone())
        })
        .collect()
}

#[test]
fn every_example_packet_is_confirmed_by_explain_and_by_classify() {
    let dir = tempfile::tempdir().unwrap();
    let new = dir.path().join("new.fpol");
    let changed = std::fs::read_to_string("policies/datacenter.fpol")
        .unwrap()
        .replace("label 0x20000-0x2ffff", "label 0x20000-0x3ffff")
        .replace("proto udp dport 5004-5005", "proto udp dport 5004-5006")
        .replace("rule c-unlabelled src 2001:db8:c::/48 label 0 -> drop", "");
    std::fs::write(&new, changed).unwrap();
    let new = new.to_str().unwrap();
    let old = "policies/datacenter.fpol";
    let out = flowpol!()
        .in_repo()
        .args(["diff", old, new, "--format", "json"])
        .output();
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr_text());
    let changes: Vec<Value> = serde_json::from_str(&out.stdout_text()).unwrap();
    assert_eq!(
        changes.iter().filter(|c| c["tuple"] == "three").count(),
        2,
        "{changes:#?}"
    );
    assert_eq!(changes.iter().filter(|c| c["tuple"] == "five").count(), 1);
    // One frame per example: a 3-tuple example rides on UDP, a 5-tuple one carries label 0.
    let mut frames = Vec::new();
    for c in &changes {
        let e = &c["example"];
        let (src, dst) = (e["src"].as_str().unwrap(), e["dst"].as_str().unwrap());
        let label = e["label"].as_u64().unwrap_or(0) as u32;
        let proto = e["proto"].as_u64().unwrap_or(17) as u8;
        let sport = e["sport"].as_u64().unwrap_or(1) as u16;
        let dport = e["dport"].as_u64().unwrap_or(1) as u16;
        frames.push(frame(src, dst, label, proto, sport, dport));
        // explain agrees with the change, in both policies.
        let mut args: Vec<String> = vec![
            "explain".into(),
            String::new(),
            "--src".into(),
            src.into(),
            "--dst".into(),
            dst.into(),
            "--format".into(),
            "json".into(),
        ];
        let block = if c["tuple"] == "three" {
            args.extend(["--label".into(), label.to_string()]);
            "three"
        } else {
            args.extend(["--proto".into(), proto.to_string()]);
            args.extend(["--sport".into(), sport.to_string()]);
            args.extend(["--dport".into(), dport.to_string()]);
            "five"
        };
        for (policy, side) in [(old, "before"), (new, "after")] {
            args[1] = policy.to_string();
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = flowpol!().in_repo().args(&a).output();
            assert_eq!(out.status.code(), Some(0), "{}", out.stderr_text());
            let v: Value = serde_json::from_str(&out.stdout_text()).unwrap();
            assert_eq!(v[block]["action"], c[side], "explain {a:?}");
            assert_eq!(
                v[block]["rule"],
                c[&format!("{side}_rule")],
                "explain {a:?}"
            );
        }
    }
    let pcap = dir.path().join("examples.pcap");
    write_pcap(&pcap, &frames);
    let pcap = pcap.to_str().unwrap();
    let before = classified(old, pcap, dir.path());
    let after = classified(new, pcap, dir.path());
    for (i, c) in changes.iter().enumerate() {
        let pick = |v: &(Value, Value)| {
            if c["tuple"] == "three" {
                v.0.clone()
            } else {
                v.1.clone()
            }
        };
        // classify names the default `default`.
        let rule = |side: &str| match &c[&format!("{side}_rule")] {
            Value::Null => Value::from("default"),
            v => v.clone(),
        };
        assert_eq!(pick(&before[i]), rule("before"), "classify, old, {c}");
        assert_eq!(pick(&after[i]), rule("after"), "classify, new, {c}");
    }
    // --pcap counts each example in its own region.
    let out = flowpol!()
        .in_repo()
        .args(["diff", old, new, "--format", "json", "--pcap", pcap])
        .output();
    let counted: Vec<Value> = serde_json::from_str(&out.stdout_text()).unwrap();
    for c in &counted {
        assert!(c["packets"].as_u64().unwrap() >= 1, "{c}");
    }
    let out = flowpol!()
        .in_repo()
        .args(["diff", old, new, "--pcap", pcap])
        .output();
    let text = out.stdout_text();
    assert!(
        text.contains("3-tuple: 1 packets class bronze -> class silver"),
        "{text}"
    );
    assert!(
        text.contains("5-tuple: 1 packets class bronze -> class gold"),
        "{text}"
    );
}

#[test]
fn explain_names_the_rule_and_the_first_field_each_earlier_rule_missed() {
    let out = flowpol!()
        .in_repo()
        .args([
            "explain",
            "policies/datacenter.fpol",
            "--src",
            "2001:db8:a::1",
            "--dst",
            "2001:db8:ff::10",
            "--label",
            "0x20001",
            "--proto",
            "tcp",
            "--sport",
            "4000",
            "--dport",
            "443",
        ])
        .output();
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr_text());
    let text = out.stdout_text();
    assert!(
        text.starts_with("3-tuple: class silver by rule a-web (policies/datacenter.fpol:27:5)\n  not media (policies/datacenter.fpol:23:5): dst 2001:db8:ff::10 does not match 2001:db8:fe::/64\n"),
        "{text}"
    );
    assert!(
        text.contains("5-tuple: class silver by rule a-web"),
        "{text}"
    );
    let out = flowpol!()
        .in_repo()
        .args([
            "explain",
            "policies/datacenter.fpol",
            "--src",
            "::1",
            "--dst",
            "::2",
            "--label",
            "0",
            "--format",
            "json",
        ])
        .output();
    let v: Value = serde_json::from_str(&out.stdout_text()).unwrap();
    assert_eq!(v["three"]["rule"], Value::Null);
    assert_eq!(v["three"]["action"], "class bronze");
    assert_eq!(v["five"], Value::Null);
    assert_eq!(v["three"]["skipped"].as_array().unwrap().len(), 5);
}

#[test]
fn explain_refuses_incomplete_packets_with_exit_2() {
    for args in [
        &["--src", "::1", "--dst", "::2"][..],
        &["--src", "::1", "--dst", "::2", "--proto", "tcp"][..],
        &[
            "--src", "::1", "--dst", "::2", "--proto", "icmpv6", "--dport", "3",
        ][..],
        &["--src", "::1", "--dst", "::2", "--label", "0x100000"][..],
    ] {
        let mut a = vec!["explain", "policies/datacenter.fpol"];
        a.extend_from_slice(args);
        let out = flowpol!().in_repo().args(&a).output();
        assert_eq!(out.status.code(), Some(2), "{a:?}: {}", out.stdout_text());
    }
}

#[test]
fn the_bundled_policies_pass_their_tests() {
    let files: Vec<String> = std::fs::read_dir("policies")
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".fpoltest"))
        .collect();
    assert_eq!(files.len(), 4, "one test file per bundled policy");
    let mut args = vec!["test"];
    args.extend(files.iter().map(String::as_str));
    let out = flowpol!().in_repo().args(&args).output();
    assert_eq!(out.status.code(), Some(0), "{}", out.stdout_text());
    assert!(
        out.stdout_text().contains("tested 4 files:"),
        "{}",
        out.stdout_text()
    );
    assert!(out.stdout_text().ends_with(" 0 failed\n"));
}

#[test]
fn a_failing_case_is_reported_at_file_line_col_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy("policies/datacenter.fpol", dir.path().join("dc.fpol")).unwrap();
    let t = dir.path().join("dc.fpoltest");
    std::fs::write(
        &t,
        "policy dc.fpol\n\
         case media src 2001:db8:a::10 dst 2001:db8:fe::1 label 0x22345\n    -> three class gold\n\
         case dns src ::1 dst 2001:db8:ff::53 label 1 -> three class silver by rule dns\n",
    )
    .unwrap();
    let t = t.to_str().unwrap();
    let out = flowpol!().in_repo().args(["test", t]).output();
    assert_eq!(out.status.code(), Some(1));
    let text = out.stdout_text();
    assert!(text.contains("error[T0003]: case media failed: the three block gives class bronze by the default, expected class gold"), "{text}");
    assert!(text.contains(&format!("--> {t}:3:8")), "{text}");
    assert!(
        text.ends_with("tested 1 file: 1 passed, 1 failed\n"),
        "{text}"
    );
    let out = flowpol!()
        .in_repo()
        .args(["test", t, "--format", "json"])
        .output();
    let v: Value = serde_json::from_str(&out.stdout_text()).unwrap();
    assert_eq!(v[0]["code"], "T0003");
    assert_eq!(
        (v[0]["line"].as_u64(), v[0]["column"].as_u64()),
        (Some(3), Some(8))
    );
    let out = flowpol!()
        .in_repo()
        .args(["test", t, "--format", "github"])
        .output();
    assert!(
        out.stdout_text().starts_with(&format!(
            "::error file={},line=3,col=8,",
            t.replace(':', "%3A")
        )),
        "{}",
        out.stdout_text()
    );
}

#[test]
fn unreadable_test_files_and_policies_exit_2_and_broken_policies_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let out = flowpol!()
        .in_repo()
        .args(["test", dir.path().join("none.fpoltest").to_str().unwrap()])
        .output();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr_text().contains("cannot read test file"),
        "{}",
        out.stderr_text()
    );
    let t = dir.path().join("a.fpoltest");
    std::fs::write(
        &t,
        "policy missing.fpol\ncase a src ::1 dst ::2 label 0 -> three pass\n",
    )
    .unwrap();
    let out = flowpol!()
        .in_repo()
        .args(["test", t.to_str().unwrap()])
        .output();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr_text()
            .contains("a.fpoltest:1:8: cannot read policy"),
        "{}",
        out.stderr_text()
    );
    std::fs::write(
        dir.path().join("bad.fpol"),
        "three { rule a label 0x100000 -> pass }\n",
    )
    .unwrap();
    std::fs::write(
        &t,
        "policy bad.fpol\ncase a src ::1 dst ::2 label 0 -> three pass\n",
    )
    .unwrap();
    let out = flowpol!()
        .in_repo()
        .args(["test", t.to_str().unwrap()])
        .output();
    assert_eq!(out.status.code(), Some(1));
    let text = out.stdout_text();
    assert!(text.contains("error[T0002]: policy"), "{text}");
    assert!(text.contains("error[E0002]"), "{text}");
}

#[test]
fn diff_places_each_change_at_the_new_rule_for_github() {
    let dir = tempfile::tempdir().unwrap();
    let new = dir.path().join("new.fpol");
    std::fs::write(
        &new,
        std::fs::read_to_string("policies/media.fpol")
            .unwrap()
            .replace(
                "label 0x18000-0x18fff",
                "label 0x18000-0x18fff dst 2001:db8::/32",
            ),
    )
    .unwrap();
    let out = flowpol!()
        .in_repo()
        .args([
            "diff",
            "policies/media.fpol",
            new.to_str().unwrap(),
            "--format",
            "github",
        ])
        .output();
    assert_eq!(out.status.code(), Some(1));
    let text = out.stdout_text();
    // Screen-share labels from outside 2001:db8::/32 now fall to the default (its line).
    assert!(text.contains(",line=11,col=1,"), "{text}");
    assert!(
        text.contains(
            "::3-tuple: packets move from class screen (rule screen-share) to pass (the default): src any except 2001:db8::/32 dst any except 2001:db8::/32 label 0x18000-0x18fff"
        ),
        "{text}"
    );
}

#[test]
fn diff_reads_the_old_policy_from_standard_input() {
    let old = std::fs::read_to_string("policies/anycast.fpol")
        .unwrap()
        .replace("rule band3 ", "rule last-band ");
    let out = flowpol!()
        .in_repo()
        .args(["diff", "-", "policies/anycast.fpol"])
        .stdin(old)
        .output();
    assert_eq!(out.status.code(), Some(0), "a rename changes nothing");
    assert!(
        out.stdout_text()
            .ends_with("diff <stdin> policies/anycast.fpol: no packet changes action\n")
    );
}
