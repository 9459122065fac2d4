//! flowpol against the kernel and against libpcap, packet by packet (issue 16): `flowpol
//! classify` on a capture, the `compile --target nft` counters after `flowpol replay` sends the
//! same capture over a veth pair into a namespace (hook prerouting, both encodings), and
//! `tcpdump -r` with each `compile --target bpf` expression (with and without libpcap's
//! optimizer). First the reproducers of ../shared/data/kernel-diff, rebuilt here as small
//! captures, then seeded random policies with packets aimed at rule edges, extension headers,
//! fragments, AH, ESP and malformed lengths.

use rand::{Rng, RngExt, SeedableRng};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use support::compile::write_pcap;
use support::flowpol;
use support::gate::{have, require_root};
use support::netns::{VethPair, mac};

// ---------------------------------------------------------------------------------------------
// Packets

fn addr(s: &str) -> u128 {
    u128::from(s.parse::<std::net::Ipv6Addr>().unwrap())
}

/// An IPv6 packet: fixed header (payload length `plen`, or the payload's length) and payload.
fn ip6(label: u32, plen: Option<u16>, nh: u8, src: u128, dst: u128, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(40 + payload.len());
    p.extend_from_slice(&(0x6000_0000u32 | (label & 0xfffff)).to_be_bytes());
    p.extend_from_slice(&plen.unwrap_or(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[nh, 64]);
    p.extend_from_slice(&src.to_be_bytes());
    p.extend_from_slice(&dst.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn tcp(sport: u16, dport: u16) -> Vec<u8> {
    let mut h = Vec::with_capacity(20);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    h
}

fn udp(sport: u16, dport: u16) -> Vec<u8> {
    let mut h = Vec::with_capacity(8);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&[0, 8, 0, 0]);
    h
}

const ICMP_ECHO: [u8; 8] = [128, 0, 0, 0, 0, 1, 0, 1];

/// An Authentication Header (12-byte ICV) before `inner`.
fn ah(next: u8, inner: &[u8]) -> Vec<u8> {
    let mut h = vec![next, 4, 0, 0, 0, 0, 0x10, 0x01, 0, 0, 0, 1];
    h.extend_from_slice(&[0xaa; 12]);
    h.extend_from_slice(inner);
    h
}

/// A fragment header (offset in 8-byte units, more-fragments flag) before `inner`.
fn frag(next: u8, offset: u16, more: bool, inner: &[u8]) -> Vec<u8> {
    let off = (offset << 3) | u16::from(more);
    let mut h = vec![next, 0];
    h.extend_from_slice(&off.to_be_bytes());
    h.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    h.extend_from_slice(inner);
    h
}

/// A hop-by-hop (0) or destination options (60) header of 8 bytes before `inner`.
fn opts(next: u8, inner: &[u8]) -> Vec<u8> {
    let mut h = vec![next, 0, 1, 4, 0, 0, 0, 0];
    h.extend_from_slice(inner);
    h
}

const ESP: [u8; 24] = [
    0, 0, 0x10, 0x01, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
];

fn eth(dmac: [u8; 6], smac: [u8; 6], pkt: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + pkt.len());
    f.extend_from_slice(&dmac);
    f.extend_from_slice(&smac);
    f.extend_from_slice(&[0x86, 0xdd]);
    f.extend_from_slice(pkt);
    f
}

// ---------------------------------------------------------------------------------------------
// The three views

/// Packets per counter: rule names, `default`, and (five) `unavailable`.
type Counts = BTreeMap<String, u64>;

fn classify(policy: &Path, cap: &Path, engine: &str) -> Counts {
    let o = flowpol!()
        .args(["classify", "--format", "json", "--policy"])
        .arg(policy)
        .arg("--pcap")
        .arg(cap)
        .output();
    assert!(
        o.status.success(),
        "flowpol classify: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut c: Counts = v["rules"][engine]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["packets"].as_u64().unwrap(),
            )
        })
        .collect();
    if engine == "five" {
        c.insert(
            "unavailable".into(),
            v["five_unavailable"]["total"]["packets"].as_u64().unwrap(),
        );
    }
    c
}

fn nft_counts(ns: &str) -> (u64, Counts) {
    let out = flowpol!()
        .in_ns(ns)
        .args(["nft", "stats", "--format", "json"])
        .output_ok();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let c = v["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["packets"].as_u64().unwrap(),
            )
        })
        .collect();
    (v["packets"].as_u64().unwrap(), c)
}

/// Loads the policy in each encoding into `pair.b` (prerouting), replays `cap` from `pair.a`
/// and returns the kernel's counters per encoding.
fn kernel(pair: &VethPair, policy: &Path, cap: &Path, engine: &str, frames: u64) -> Vec<Counts> {
    let mut out = Vec::new();
    for encoding in ["auto", "plain"] {
        flowpol!()
            .in_ns(&pair.b)
            .args([
                "compile",
                "--target",
                "nft",
                "--apply",
                "--hook",
                "prerouting",
                "--engine",
                engine,
                "--encoding",
                encoding,
            ])
            .arg(policy)
            .output_ok();
        let sent = flowpol!()
            .in_ns(&pair.a)
            .args([
                "replay", "--fast", "--format", "json", "--iface", &pair.a_if,
            ])
            .arg(cap)
            .output_ok();
        let sent: serde_json::Value = serde_json::from_str(&sent).unwrap();
        assert_eq!(sent["frames_sent"].as_u64(), Some(frames), "{sent}");
        // The kernel drops what is not IPv6 to it before the hook; wait until the count is
        // steady.
        let mut last = u64::MAX;
        let mut c = Counts::new();
        for _ in 0..40 {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let (n, now) = nft_counts(&pair.b);
            c = now;
            if n == last {
                break;
            }
            last = n;
        }
        out.push(c);
    }
    out
}

/// Frames `tcpdump -r` selects with the expression in `file`, with (`optimize`) and without
/// libpcap's optimizer (`-O`).
fn tcpdump(cap: &Path, file: &Path, optimize: bool) -> u64 {
    let mut cmd = Command::new("tcpdump");
    if !optimize {
        cmd.arg("-O");
    }
    let o = cmd
        .args(["-nr"])
        .arg(cap)
        .arg("-F")
        .arg(file)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "tcpdump -F {}: {}",
        file.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout.iter().filter(|&&b| b == b'\n').count() as u64
}

/// One differential case.
struct Case<'a> {
    name: &'a str,
    policy: &'a str,
    engine: &'a str,
    /// IPv6 packets (no link layer); `Err` for a frame body sent under EtherType 0x86DD as is.
    packets: Vec<Vec<u8>>,
    /// Packets whose BPF selection must equal flowpol's even where the filters are inexact (no
    /// extension header but AH, a whole transport header).
    bpf_plain: Vec<bool>,
}

/// Checks every view against flowpol; returns flowpol's counts.
fn agree(pair: &VethPair, case: &Case) -> Counts {
    let dir = tempfile::tempdir().unwrap();
    let pol = dir.path().join("p.fpol");
    std::fs::write(&pol, case.policy).unwrap();
    let smac = mac(&pair.a, &pair.a_if);
    let dmac = mac(&pair.b, &pair.b_if);
    let frames: Vec<Vec<u8>> = case.packets.iter().map(|p| eth(dmac, smac, p)).collect();
    let cap = dir.path().join("all.pcap");
    write_pcap(&cap, &frames);
    let ours = classify(&pol, &cap, case.engine);
    let name = case.name;

    for (enc, theirs) in
        ["auto", "plain"]
            .iter()
            .zip(kernel(pair, &pol, &cap, case.engine, frames.len() as u64))
    {
        assert_eq!(
            theirs, ours,
            "{name}: nft counters ({enc}) vs flowpol classify\n{}",
            case.policy
        );
    }

    // BPF: every filter, optimised or not, selects the same frames; exact ones select what
    // flowpol assigns; on the plain packets, all of them do.
    let fdir = dir.path().join("filters");
    let o = flowpol!()
        .args(["compile", "--target", "bpf", "--format", "json", "--engine"])
        .arg(case.engine)
        .arg("--filter-dir")
        .arg(&fdir)
        .arg(&pol)
        .output();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let filters: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    let plain: Vec<Vec<u8>> = frames
        .iter()
        .zip(&case.bpf_plain)
        .filter(|(_, p)| **p)
        .map(|(f, _)| f.clone())
        .collect();
    let plain_cap = dir.path().join("plain.pcap");
    write_pcap(&plain_cap, &plain);
    let plain_ours = classify(&pol, &plain_cap, case.engine);
    let mut files: Vec<_> = std::fs::read_dir(&fdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), filters.len());
    for (f, file) in filters.iter().zip(&files) {
        let kind = f["kind"].as_str().unwrap();
        let fname = f["name"].as_str().unwrap();
        let want = |c: &Counts| -> Option<u64> {
            match kind {
                "rule" => Some(c[fname]),
                "default" => Some(c["default"] + c.get("unavailable").copied().unwrap_or(0)),
                _ => None,
            }
        };
        for (which, cap, counts) in [("all", &cap, &ours), ("plain", &plain_cap, &plain_ours)] {
            let opt = tcpdump(cap, file, true);
            let unopt = tcpdump(cap, file, false);
            assert_eq!(
                opt, unopt,
                "{name}: {kind} {fname} on {which}: libpcap's optimizer changes the selection of {}",
                f["expr"]
            );
            if let Some(w) = want(counts)
                && (which == "plain" || f["exact"].as_bool() == Some(true))
            {
                assert_eq!(
                    opt, w,
                    "{name}: tcpdump with {kind} {fname} on {which} vs flowpol: {}",
                    f["expr"]
                );
            }
        }
    }
    ours
}

fn gate(test: &str) -> bool {
    if !require_root(test) {
        return false;
    }
    assert!(
        have("tcpdump") && have("nft"),
        "{test}: needs tcpdump and nft"
    );
    true
}

/// The veth pair a test sends on (side a quiet), once the gate lets the test run.
fn veth(test: &str) -> Option<VethPair> {
    if !gate(test) {
        return None;
    }
    let pair = VethPair::new(test);
    pair.quiet_a();
    Some(pair)
}

fn counts(pairs: &[(&str, u64)]) -> Counts {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

const A: &str = "2001:db8::1";
const B: &str = "2001:db8:ff::2";

// ---------------------------------------------------------------------------------------------
// The kernel-diff reproducers

#[test]
fn tcp_behind_an_authentication_header_is_protocol_51_for_flowpol_as_for_nft() {
    let Some(pair) = veth("ah") else {
        return;
    };
    let packets = vec![
        ip6(1, None, 51, addr(A), addr(B), &ah(6, &tcp(1234, 443))),
        ip6(2, None, 51, addr(A), addr(B), &ah(17, &udp(53, 53))),
        ip6(3, None, 6, addr(A), addr(B), &tcp(1234, 443)),
    ];
    let ours = agree(
        &pair,
        &Case {
            name: "ah-five",
            policy: "class x mark 7\ndefault pass\nfive {\n    rule web proto tcp dport 443 -> drop\n    rule auth proto 51 -> class x\n}\n",
            engine: "five",
            packets,
            bpf_plain: vec![true; 3],
        },
    );
    assert_eq!(
        ours,
        counts(&[("web", 1), ("auth", 2), ("default", 0), ("unavailable", 0)])
    );
}

#[test]
fn a_second_fragment_header_with_an_offset_is_unavailable_in_flowpol_and_nft() {
    let Some(pair) = veth("dfrag") else {
        return;
    };
    let two = frag(44, 0, true, &frag(6, 3, false, &[0u8; 16]));
    let packets = vec![
        ip6(1, None, 44, addr(A), addr(B), &two),
        ip6(
            2,
            None,
            44,
            addr(A),
            addr(B),
            &frag(6, 3, false, &[0u8; 16]),
        ),
        ip6(3, None, 44, addr(A), addr(B), &frag(6, 0, true, &tcp(1, 2))),
        ip6(
            4,
            None,
            44,
            addr(A),
            addr(B),
            &frag(44, 0, true, &frag(58, 2, false, &[0; 8])),
        ),
    ];
    let ours = agree(
        &pair,
        &Case {
            name: "double-frag",
            policy: "default pass\nfive {\n    rule host src 2001:db8::1 -> drop\n}\n",
            engine: "five",
            packets,
            bpf_plain: vec![false; 4],
        },
    );
    assert_eq!(
        ours,
        counts(&[("host", 1), ("default", 0), ("unavailable", 3)])
    );
}

#[test]
fn payload_length_zero_without_hop_by_hop_is_unavailable_in_flowpol_and_nft() {
    let Some(pair) = veth("plen0") else {
        return;
    };
    let packets = vec![
        ip6(1, Some(0), 6, addr(A), addr(B), &tcp(1234, 80)),
        ip6(2, Some(0), 58, addr(A), addr(B), &ICMP_ECHO),
        ip6(3, None, 6, addr(A), addr(B), &tcp(1234, 80)),
    ];
    let ours = agree(
        &pair,
        &Case {
            name: "plen0",
            policy: "default pass\nfive {\n    rule web proto tcp dport 80 -> drop\n    rule any src 2001:db8::/32 -> drop\n}\n",
            engine: "five",
            packets,
            bpf_plain: vec![false, false, true],
        },
    );
    assert_eq!(
        ours,
        counts(&[("web", 1), ("any", 0), ("default", 0), ("unavailable", 2)])
    );
}

#[test]
fn a_short_tcp_header_gets_one_answer_in_both_encodings_and_in_flowpol() {
    let Some(pair) = veth("short") else {
        return;
    };
    let mut policy = String::from("default pass\nfive {\n");
    // Enough disjoint single-address rules that auto builds a map keyed on the ports.
    for i in 1..=200 {
        policy.push_str(&format!(
            "    rule r{i} src 2001:db8::{i:x} proto tcp dport {} -> drop\n",
            1000 + i
        ));
    }
    policy.push_str("    rule d src 2001:db8::ffff proto tcp -> drop\n}\n");
    let d = addr("2001:db8::ffff");
    let packets = vec![
        ip6(1, None, 6, d, addr(B), &tcp(1, 2)[..2]),
        ip6(2, None, 6, d, addr(B), &tcp(1, 2)),
        ip6(3, None, 6, addr("2001:db8::5"), addr(B), &tcp(1, 1005)),
        ip6(4, None, 6, addr("2001:db8::5"), addr(B), &tcp(1, 1005)[..3]),
    ];
    let ours = agree(
        &pair,
        &Case {
            name: "auto-map-portless",
            policy: &policy,
            engine: "five",
            packets,
            bpf_plain: vec![false, true, true, false],
        },
    );
    assert_eq!((ours["d"], ours["r5"], ours["unavailable"]), (1, 1, 2));
    let o = flowpol!()
        .args([
            "compile",
            "--target",
            "nft",
            "--engine",
            "five",
            "/dev/stdin",
        ])
        .stdin(policy)
        .output();
    assert!(String::from_utf8_lossy(&o.stdout).contains("vmap @g0"));
}

#[test]
fn frames_under_86dd_that_are_not_ipv6_are_selected_by_no_filter() {
    let Some(pair) = veth("not6") else {
        return;
    };
    let mut v4 = ip6(0, None, 6, addr("2001:db8::9"), addr(B), &tcp(1, 2));
    v4[0] = 0x40;
    let runt = ip6(0, None, 59, addr("2001:db8::9"), addr(B), &[])[..20].to_vec();
    let ours = agree(
        &pair,
        &Case {
            name: "not-ipv6-under-86dd",
            policy: "default pass\nthree {\n    rule net src 2001:db8::/32 -> drop\n    rule unlabelled label 0 -> drop\n}\n",
            engine: "three",
            packets: vec![v4, runt],
            bpf_plain: vec![true, true],
        },
    );
    assert_eq!(
        ours,
        counts(&[("net", 0), ("unlabelled", 0), ("default", 0)])
    );
}

#[test]
fn the_ruleset_header_and_compile_help_say_what_the_kernel_cannot_express() {
    let help = flowpol!().args(["compile", "--help"]).output_ok();
    for word in [
        "Authentication Header",
        "protocol 51",
        "second only right behind a first",
    ] {
        assert!(help.contains(word), "{word}: {help}");
    }
    let o = flowpol!()
        .args([
            "compile",
            "--target",
            "nft",
            "--engine",
            "five",
            "/dev/stdin",
        ])
        .stdin("default pass\nfive {\n    rule web proto tcp dport 443 -> drop\n}\n")
        .output();
    let text = String::from_utf8_lossy(&o.stdout);
    let header: String = text
        .lines()
        .take_while(|l| l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    for word in [
        "Not expressible: ports behind AH",
        "payload length 0",
        "fragment header",
    ] {
        assert!(header.contains(word), "{word}: {header}");
    }
}

#[test]
fn five_tuple_filters_say_why_esp_and_no_next_header_are_inexact() {
    let dir = tempfile::tempdir().unwrap();
    let pol = dir.path().join("p.fpol");
    std::fs::write(
        &pol,
        "default pass\nfive {\n    rule host src 2001:db8::1 -> drop\n}\n",
    )
    .unwrap();
    let o = flowpol!()
        .args([
            "compile", "--target", "bpf", "--engine", "five", "--format", "json",
        ])
        .arg(&pol)
        .output();
    let v: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    for f in &v {
        let r = f["reason"].as_str().unwrap();
        for word in ["ESP", "next header 59", "cut short"] {
            assert!(r.contains(word), "{word}: {r}");
        }
    }
}

#[test]
fn no_next_header_and_esp_have_no_five_tuple_in_flowpol_or_nft() {
    let Some(pair) = veth("esp") else {
        return;
    };
    let ours = agree(
        &pair,
        &Case {
            name: "no-5tuple",
            policy: "default pass\nfive {\n    rule host src 2001:db8::1 -> drop\n}\n",
            engine: "five",
            packets: vec![
                ip6(1, None, 59, addr(A), addr(B), &[]),
                ip6(2, None, 50, addr(A), addr(B), &ESP),
                ip6(3, None, 60, addr(A), addr(B), &opts(50, &ESP)),
            ],
            bpf_plain: vec![false; 3],
        },
    );
    assert_eq!(
        ours,
        counts(&[("host", 0), ("default", 0), ("unavailable", 3)])
    );
}

#[test]
fn filters_that_repeat_an_earlier_rules_prefix_compile_alike_with_and_without_the_optimizer() {
    let Some(pair) = veth("opt") else {
        return;
    };
    let dst = addr("2001:db8::1");
    let ours = agree(
        &pair,
        &Case {
            name: "libpcap-optimizer",
            policy: "default pass\nfive {\n    rule icmp dst 2001:db8::/47 proto icmpv6 -> drop\n    rule rest dst 2001:db8::/47 -> pass\n}\n",
            engine: "five",
            packets: vec![
                ip6(1, None, 58, addr(B), dst, &ICMP_ECHO),
                ip6(2, None, 58, addr(B), dst + (1 << 81), &ICMP_ECHO),
                ip6(3, None, 6, addr(B), dst, &tcp(5, 6)),
                ip6(4, None, 6, addr(B), addr("2001:db9::1"), &tcp(5, 6)),
            ],
            bpf_plain: vec![true; 4],
        },
    );
    assert_eq!(
        ours,
        counts(&[("icmp", 1), ("rest", 1), ("default", 2), ("unavailable", 0)])
    );
}

#[test]
fn policies_the_reports_cannot_tell_apart_are_refused_by_check() {
    for (text, code) in [
        (
            "class a mark 1\nclass b mark 1\ndefault class a\nthree {\n    rule r src 2001:db8::/32 -> class b\n}\n",
            "E0018",
        ),
        (
            "default pass\nfive {\n    rule default proto udp -> drop\n}\n",
            "E0019",
        ),
    ] {
        let o = flowpol!()
            .args(["check", "/dev/stdin"])
            .stdin(text)
            .output();
        let err =
            String::from_utf8_lossy(&o.stderr).to_string() + &String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains(code), "{code}: {err}");
    }
}

#[test]
fn filters_too_long_for_one_argument_are_flagged_and_written_to_files() {
    let dir = tempfile::tempdir().unwrap();
    let pol = dir.path().join("fw.fpol");
    let o = flowpol!()
        .args([
            "gen", "rules", "--shape", "fw", "--count", "200", "--seed", "7", "--tuple", "five",
        ])
        .output();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::write(&pol, &o.stdout).unwrap();
    let fdir = dir.path().join("f");
    let o = flowpol!()
        .args([
            "compile",
            "--target",
            "bpf",
            "--engine",
            "five",
            "--filter-dir",
        ])
        .arg(&fdir)
        .arg(&pol)
        .output();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    let text = String::from_utf8_lossy(&o.stdout);
    let long = text.lines().filter(|l| l.len() > 128 * 1024).count();
    assert!(long > 0, "the test needs an expression over 128 KiB");
    assert!(err.contains("command-line argument"), "{err}");
    assert!(err.contains("instructions"), "{err}");
    assert!(text.matches("# too big:").count() >= long);
    let biggest = std::fs::read_dir(&fdir)
        .unwrap()
        .map(|e| std::fs::metadata(e.unwrap().path()).unwrap().len())
        .max()
        .unwrap();
    assert!(biggest > 128 * 1024);
}

// ---------------------------------------------------------------------------------------------
// Random policies and edge packets

const PREFIXES: [&str; 6] = [
    "2001:db8::/32",
    "2001:db8:1::/48",
    "2001:db8:1::1/128",
    "2001:db8:2::/48",
    "2001:db8:1:8000::/49",
    "2001:db8:3::/64",
];

fn prefix_range(p: &str) -> (u128, u128) {
    let (a, l) = p.split_once('/').unwrap();
    let l: u32 = l.parse().unwrap();
    let base = addr(a);
    let span = if l == 128 { 0 } else { u128::MAX >> l };
    (base, base | span)
}

/// A policy text with 3 to 8 rules of `engine`, from overlapping prefixes, protocols (with AH)
/// and port or label ranges; the edges it uses (addresses, ports, labels) for packets.
fn random_policy(r: &mut impl Rng, engine: &str) -> (String, Vec<u128>, Vec<u16>, Vec<u32>) {
    let mut t = String::from("class gold mark 5\ndefault pass\n");
    t.push_str(&format!("{engine} {{\n"));
    let (mut addrs, mut ports, mut labels) = (vec![], vec![0u16, 65535], vec![0u32, 0xfffff]);
    for i in 0..r.random_range(3..9) {
        let mut rule = format!("    rule r{i}");
        for dir in ["src", "dst"] {
            if r.random_bool(0.5) {
                let p = PREFIXES[r.random_range(0..PREFIXES.len())];
                let (lo, hi) = prefix_range(p);
                addrs.extend([lo, hi, lo.wrapping_sub(1), hi.wrapping_add(1)]);
                rule.push_str(&format!(" {dir} {p}"));
            }
        }
        if engine == "three" {
            if r.random_bool(0.6) {
                let lo = r.random_range(0..8u32) * 0x100;
                let hi = lo + r.random_range(0..0x200u32);
                labels.extend([lo, hi, lo.saturating_sub(1), hi + 1]);
                rule.push_str(&format!(" label {lo:#x}-{hi:#x}"));
            }
        } else {
            match r.random_range(0..6) {
                0 | 1 => {
                    let p = if r.random_bool(0.5) { "tcp" } else { "udp" };
                    rule.push_str(&format!(" proto {p}"));
                    if r.random_bool(0.7) {
                        let lo = [0u16, 53, 80, 443, 1000][r.random_range(0..5)];
                        let hi = lo + r.random_range(0..1000u16);
                        ports.extend([lo, hi, lo.saturating_sub(1), hi.saturating_add(1)]);
                        let which = if r.random_bool(0.5) { "dport" } else { "sport" };
                        rule.push_str(&format!(" {which} {lo}-{hi}"));
                    }
                }
                2 => rule.push_str(" proto icmpv6"),
                3 => rule.push_str(" proto 51"),
                _ => {}
            }
        }
        let action = ["pass", "drop", "class gold"][r.random_range(0..3)];
        t.push_str(&format!("{rule} -> {action}\n"));
    }
    t.push_str("}\n");
    addrs.push(addr("2001:db9::1"));
    (t, addrs, ports, labels)
}

/// An edge packet: an address, port and label from the policy's edges, in one of the shapes
/// the outside run found differences with. Returns the packet and whether it is BPF-plain.
fn edge_packet(r: &mut impl Rng, addrs: &[u128], ports: &[u16], labels: &[u32]) -> (Vec<u8>, bool) {
    let src = addrs[r.random_range(0..addrs.len())];
    let dst = addrs[r.random_range(0..addrs.len())];
    // The kernel drops multicast sources and unspecified/loopback destinations before the hook.
    let fix = |a: u128| {
        if a >> 120 == 0xff || a <= 1 {
            addr("2001:db8::77")
        } else {
            a
        }
    };
    let (src, dst) = (fix(src), fix(dst));
    let sp = ports[r.random_range(0..ports.len())];
    let dp = ports[r.random_range(0..ports.len())];
    let label = labels[r.random_range(0..labels.len())] & 0xfffff;
    let tu = if r.random_bool(0.5) {
        (6, tcp(sp, dp))
    } else {
        (17, udp(sp, dp))
    };
    let p = |nh: u8, payload: &[u8]| ip6(label, None, nh, src, dst, payload);
    match r.random_range(0..14) {
        0..=3 => (p(tu.0, &tu.1), true),
        4 => (p(58, &ICMP_ECHO), true),
        5 => (p(51, &ah(tu.0, &tu.1)), true),
        6 => (p(0, &opts(tu.0, &tu.1)), false),
        7 => (p(44, &frag(tu.0, 0, true, &tu.1)), false),
        8 => (p(44, &frag(tu.0, 5, false, &tu.1)), false),
        9 => (
            p(44, &frag(44, 0, true, &frag(tu.0, 2, false, &tu.1))),
            false,
        ),
        10 => (p(50, &ESP), false),
        11 => (p(59, &[]), false),
        12 => (p(tu.0, &tu.1[..r.random_range(0..4)]), false),
        _ => (ip6(label, Some(0), tu.0, src, dst, &tu.1), false),
    }
}

#[test]
fn random_policies_get_the_same_verdicts_from_flowpol_nft_and_tcpdump() {
    let Some(pair) = veth("rnd") else {
        return;
    };
    for seed in 0..6u64 {
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(0x16_0000 + seed);
        for engine in ["three", "five"] {
            let (policy, addrs, ports, labels) = random_policy(&mut r, engine);
            let (packets, bpf_plain): (Vec<_>, Vec<_>) = (0..60)
                .map(|_| edge_packet(&mut r, &addrs, &ports, &labels))
                .unzip();
            let name = format!("seed {seed} {engine}");
            agree(
                &pair,
                &Case {
                    name: &name,
                    policy: &policy,
                    engine,
                    packets,
                    bpf_plain,
                },
            );
        }
    }
}
