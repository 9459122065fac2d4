//! `flowpol compile --target bpf`: every emitted pcap-filter expression, run by `tcpdump -r` on
//! a capture, selects exactly the packets flowpol's linear engine assigns to that rule, action
//! or default. The captures hold untagged frames and frames behind VLAN tags (802.1Q, QinQ,
//! 0x9100, four tags; and five, which flowpol does not read and no filter may select), and a
//! `gen trace` capture (VLAN 100, QinQ 10/200) classified by `flowpol classify`. Live, between
//! two namespaces, the filters run in the kernel on a veth whose receive path moves the outer
//! tag into packet metadata, and still select flowpol's packets. The expressions of every
//! bundled policy compile in tcpdump and in tshark's dumpcap and fit the kernel's limit.

use flowpol::compile::bpf;
use flowpol::policy::model::Policy;
use flowpol::policy::syntax::TupleKind;
use std::path::Path;
use std::process::Command;
use support::capture::{Capture, read_pcap};
use support::compile::*;
use support::flowpol;
use support::netns::{VethPair, sh};

const SMAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const DMAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

/// The most classic BPF instructions Linux accepts in a socket filter (`BPF_MAXINSNS`): past it
/// libpcap warns "Kernel filter failed" and filters every packet in user space.
const KERNEL_MAX_INSNS: usize = 4096;

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

/// The classic BPF instructions libpcap makes of `expr` for an Ethernet device (`tcpdump -d`;
/// the expressions use no `vlan`, so live and offline programs are the same).
fn insns(expr: &str) -> usize {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), expr).unwrap();
    let o = Command::new("tcpdump")
        .args(["-y", "EN10MB", "-d", "-F"])
        .arg(file.path())
        .output()
        .expect("tcpdump runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.starts_with('('))
        .count()
}

/// The frames of `pkts`, packet i behind `stacks[i % len]`, and the packets flowpol reads in
/// them (those behind at most `max` tags).
fn tagged_frames(pkts: &[Pkt], stacks: &[&[u16]], max: usize) -> (Vec<Vec<u8>>, Vec<Pkt>) {
    let mut kept = Vec::new();
    let frames = pkts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let tags = stacks[i % stacks.len()];
            if tags.len() <= max {
                kept.push(*p);
            }
            tagged(&p.frame(SMAC, DMAC), tags)
        })
        .collect();
    (frames, kept)
}

/// Per-rule counts of the linear engine (index `rules.len()` is the default).
fn expected(policy: &Policy, engine: TupleKind, pkts: &[Pkt]) -> Vec<u64> {
    match engine {
        TupleKind::Three => expected_three(policy, pkts),
        TupleKind::Five => expected_five(policy, pkts),
    }
}

/// Per-rule counts of `flowpol classify` (the default last).
fn classify_counts(policy: &Path, cap: &Path, engine: TupleKind) -> Vec<u64> {
    let o = flowpol!()
        .args(["classify", "--format", "json", "--policy"])
        .arg(policy)
        .arg("--pcap")
        .arg(cap)
        .output();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let key = match engine {
        TupleKind::Three => "three",
        TupleKind::Five => "five",
    };
    v["rules"][key]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["packets"].as_u64().unwrap())
        .collect()
}

/// The packets filter `f` must select, from per-rule counts (the default last).
fn wanted(policy: &Policy, engine: TupleKind, f: &bpf::BpfFilter, counts: &[u64]) -> u64 {
    let n = counts.len() - 1;
    let action_of = |i: usize| match engine {
        TupleKind::Three if i < n => policy.three[i].action.to_string(),
        TupleKind::Five if i < n => policy.five[i].action.to_string(),
        _ => policy.default.to_string(),
    };
    match (f.kind, f.index) {
        (bpf::FilterKind::Rule, Some(i)) => counts[i],
        (bpf::FilterKind::Default, _) => counts[n],
        (bpf::FilterKind::Action, _) => (0..=n)
            .filter(|&i| action_of(i) == f.name)
            .map(|i| counts[i])
            .sum(),
        _ => unreachable!(),
    }
}

/// Every filter (looking behind `tags` tags) run by `tcpdump -r` on `cap` against the counts.
fn compare_offline(policy: &Policy, engine: TupleKind, tags: usize, cap: &Path, counts: &[u64]) {
    let dir = tempfile::tempdir().unwrap();
    let filters = bpf::compile(policy, engine, tags).unwrap();
    for f in &filters {
        let got = if f.expr == bpf::NOTHING {
            0
        } else {
            tcpdump_count(cap, &f.expr, dir.path()) as u64
        };
        assert_eq!(
            got,
            wanted(policy, engine, f, counts),
            "{:?} {} ({}), {tags} tags: `{}`",
            f.kind,
            f.name,
            f.action,
            f.expr
        );
    }
}

/// Writes `pkts` behind every tag stack, checks that `flowpol classify` reads the frames as
/// built (the five-tag ones not at all), and compares every filter with it.
fn check(policy: &Policy, engine: TupleKind, pkts: &[Pkt]) {
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("cap.pcap");
    let (frames, kept) = tagged_frames(pkts, &TAG_STACKS, bpf::MAX_TAGS);
    write_pcap(&cap, &frames);
    assert_eq!(count_pcap(&cap), pkts.len());
    assert!(kept.len() < pkts.len(), "some frames have too many tags");
    let counts = expected(policy, engine, &kept);
    let pol = dir.path().join("p.fpol");
    std::fs::write(&pol, flowpol::policy::fmt::format(policy)).unwrap();
    assert_eq!(
        classify_counts(&pol, &cap, engine),
        counts,
        "flowpol classify vs the frames' tuples"
    );
    compare_offline(policy, engine, bpf::MAX_TAGS, &cap, &counts);
    assert!(
        counts.iter().filter(|&&c| c > 0).count() >= 3,
        "the capture exercises several rules: {counts:?}"
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
        check(&policy, TupleKind::Three, &pkts);
    }
}

#[test]
fn fewer_tag_levels_select_the_frames_behind_that_many_and_say_so() {
    let policy = overlapping_three(5, 12);
    let pkts = packets_near(&policy, 300, 9, &[Shape::Udp, Shape::HopUdp]);
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("cap.pcap");
    for tags in [0, 2] {
        let (frames, kept) = tagged_frames(&pkts, &TAG_STACKS, tags);
        write_pcap(&cap, &frames);
        let counts = expected(&policy, TupleKind::Three, &kept);
        compare_offline(&policy, TupleKind::Three, tags, &cap, &counts);
        let filters = bpf::compile(&policy, TupleKind::Three, tags).unwrap();
        assert!(
            filters
                .iter()
                .all(|f| { !f.exact && f.reason.as_deref().is_some_and(|r| r.contains("VLAN")) })
        );
        if tags == 0 {
            // No `ether[..]`: the expressions compile for other link types too.
            for f in filters.iter().filter(|f| f.expr != bpf::NOTHING) {
                let o = Command::new("tcpdump")
                    .args(["-y", "LINUX_SLL2", "-d", &f.expr])
                    .output()
                    .unwrap();
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            }
        }
    }
}

#[test]
fn five_tuple_filters_are_exact_without_extension_headers_and_say_so() {
    let policy = big_five(40, 3);
    let pkts = packets_near(&policy, 300, 5, &[Shape::Udp, Shape::Tcp]);
    check(&policy, TupleKind::Five, &pkts);
    let filters = bpf::compile(&policy, TupleKind::Five, bpf::MAX_TAGS).unwrap();
    assert!(filters.iter().all(|f| {
        !f.exact
            && f.reason
                .as_deref()
                .is_some_and(|r| r.contains("extension headers"))
    }));
    let most = filters.iter().map(|f| insns(&f.expr)).max().unwrap();
    eprintln!("40 five-tuple rules, 4 tag levels: the largest program has {most} instructions");
}

#[test]
fn cli_bpf_output_for_bundled_policies_matches_classify_on_a_vlan_trace() {
    let dir = tempfile::tempdir().unwrap();
    // `gen trace`: Ethernet frames, some behind VLAN 100, some behind QinQ 10/200.
    let cap = dir.path().join("trace.pcap");
    let o = flowpol!()
        .args(["gen", "trace", "--seed", "3", "--packets", "1500", "--out"])
        .arg(&cap)
        .output();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let single = tcpdump_count(&cap, "ether[12:2] = 0x8100", dir.path());
    let double = tcpdump_count(&cap, "ether[12:2] = 0x88a8", dir.path());
    assert!(
        single > 50 && double > 50,
        "VLAN frames: {single} + {double}"
    );
    let root_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = support::gate::require_root(
        "cli_bpf_output_for_bundled_policies_matches_classify_on_a_vlan_trace (dumpcap part)",
    );
    let mut n = 0;
    let mut most = 0;
    for entry in std::fs::read_dir(root_dir.join("policies"))
        .unwrap()
        .chain(std::fs::read_dir(root_dir.join("tests/data/compile")).unwrap())
    {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "fpol") {
            continue;
        }
        for (engine, key) in [(TupleKind::Three, "three"), (TupleKind::Five, "five")] {
            let o = flowpol!()
                .args([
                    "compile", "--target", "bpf", "--format", "json", "--engine", key,
                ])
                .arg(&path)
                .output();
            assert!(
                o.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&o.stderr)
            );
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            let policy = flowpol::policy::load_file(&path).unwrap();
            let counts = classify_counts(&path, &cap, engine);
            let filters = bpf::compile(&policy, engine, bpf::MAX_TAGS).unwrap();
            assert_eq!(v.as_array().unwrap().len(), filters.len());
            for (f, j) in filters.iter().zip(v.as_array().unwrap()) {
                assert_eq!(j["expr"].as_str(), Some(f.expr.as_str()), "CLI = library");
                assert_eq!(j["exact"].as_bool(), Some(engine == TupleKind::Three));
                n += 1;
                if f.expr == bpf::NOTHING {
                    continue;
                }
                let got = tcpdump_count(&cap, &f.expr, dir.path()) as u64;
                if f.exact {
                    assert_eq!(
                        got,
                        wanted(&policy, engine, f, &counts),
                        "{}: {:?} {}: `{}`",
                        path.display(),
                        f.kind,
                        f.name,
                        f.expr
                    );
                }
                most = most.max(insns(&f.expr));
                if root {
                    // tshark's capture engine: dumpcap compiles the filter for an interface.
                    let o = Command::new("dumpcap")
                        .args(["-i", "lo", "-d", "-f", &f.expr])
                        .output()
                        .expect("dumpcap runs");
                    assert!(
                        o.status.success(),
                        "dumpcap rejected `{}`: {}",
                        f.expr,
                        String::from_utf8_lossy(&o.stderr)
                    );
                }
            }
            let text = flowpol!()
                .args(["compile", "--target", "bpf", "--engine", key])
                .arg(&path)
                .output();
            let t = String::from_utf8(text.stdout).unwrap();
            assert!(t.contains("VLAN tags"), "{t}");
            assert!(
                t.lines().any(|l| l.starts_with("# rule 0 ")) || !t.contains("# rule"),
                "{t}"
            );
        }
    }
    assert!(n > 10, "bundled policies produced only {n} filters");
    eprintln!("bundled policies: the largest program has {most} instructions");
    assert!(most < KERNEL_MAX_INSNS, "{most} instructions");
}

/// Live: the filters run in the kernel on the receiving end of a veth while `flowpol replay`
/// puts tagged frames on the other. The receive path moves a frame's outer 802.1Q/802.1ad tag
/// into packet metadata, so the filter sees the frame one tag shallower; the IPv6 header it
/// finds is the same, and so are the counts. (Five-tag frames are left out: live, the filter
/// would read them behind four, where flowpol, given the tag back, reads none.) The tagged
/// frames are replayed rather than sent through VLAN devices (`ip link add link va name va.100
/// type vlan id 100`): kernels built without CONFIG_VLAN_8021Q, as on the machine this was
/// written on, have none, while the receive path strips the outer tag in any kernel.
#[test]
fn live_filters_select_flowpols_packets_when_the_kernel_strips_the_tag() {
    if !support::gate::require_root(
        "live_filters_select_flowpols_packets_when_the_kernel_strips_the_tag",
    ) {
        return;
    }
    let p = VethPair::new("bpf");
    for (ns, ifc) in [(&p.a, &p.a_if), (&p.b, &p.b_if)] {
        // No IPv6 of the hosts' own (router solicitations, MLD) on the link.
        let key = format!("net.ipv6.conf.{ifc}.disable_ipv6=1");
        sh(&["ip", "netns", "exec", ns, "sysctl", "-qw", &key]);
    }
    let policy = overlapping_three(2, 8);
    let pkts = packets_near(&policy, 200, 11, &[Shape::Udp, Shape::Tcp, Shape::HopUdp]);
    let stacks = &TAG_STACKS[..5];
    let (frames, kept) = tagged_frames(&pkts, stacks, bpf::MAX_TAGS);
    assert_eq!(kept.len(), pkts.len());
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("cap.pcap");
    write_pcap(&cap, &frames);
    let counts = expected(&policy, TupleKind::Three, &kept);
    let filters = bpf::compile(&policy, TupleKind::Three, bpf::MAX_TAGS).unwrap();
    let mut checks: Vec<(String, Option<u64>)> = filters
        .iter()
        .filter(|f| f.expr != bpf::NOTHING)
        .map(|f| {
            assert!(
                insns(&f.expr) < KERNEL_MAX_INSNS,
                "the kernel runs `{}`",
                f.expr
            );
            (
                f.expr.clone(),
                Some(wanted(&policy, TupleKind::Three, f, &counts)),
            )
        })
        .collect();
    // The frames whose data starts with IPv6: more than were sent untagged if the kernel
    // stripped tags (else this test would not cover that path).
    checks.push(("ether[12:2] = 0x86dd".into(), None));
    let untagged = pkts.len().div_ceil(stacks.len());
    for batch in checks.chunks(6) {
        let caps: Vec<Capture> = batch
            .iter()
            .map(|(e, _)| Capture::start(&p.b, &p.b_if, e))
            .collect();
        flowpol!()
            .in_ns(&p.a)
            .args([
                "replay",
                "--iface",
                &p.a_if,
                cap.to_str().unwrap(),
                "--rate",
                "5000",
            ])
            .output_ok();
        for (c, (expr, want)) in caps.into_iter().zip(batch) {
            let got = read_pcap(&c.stop().file).len();
            match want {
                Some(w) => assert_eq!(got as u64, *w, "live `{expr}`"),
                None => assert!(
                    got > untagged,
                    "{got} frames untagged on arrival, {untagged} sent"
                ),
            }
        }
    }
}
