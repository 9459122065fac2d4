//! `flowpol classify` end to end on generated traces: exact counts (checked against our own
//! decoding with hand-written matching, and against tshark where it has a filter for it), the
//! JSON shape, one JSON line per IPv6 packet that agrees with tshark, per-class pcaps that
//! tshark reads, and a truncated capture that reports what it read and exits 2 with the offset.

use flowpol::packet::{Decoded, NonIpv6, Unavailable, decode};
use flowpol::source::pcap::CaptureReader;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::flowpol;

const POLICY: &str = "\
class gold mark 10
class silver
class bronze
default class bronze

three {
  rule media dst 2001:db8:fe::/64 label 0x10000/0xf0000 -> class gold
  rule dns   dst 2001:db8:ff::53 -> class silver
  rule lab   src fd00:1::/64 label 0 -> drop
}
five {
  rule media dst 2001:db8:fe::/64 proto udp dport 5004-5005 -> class gold
  rule dns   dst 2001:db8:ff::53 proto udp dport 53 -> class silver
  rule web   proto tcp dport 443 -> pass
}
";

struct Fixture {
    dir: tempfile::TempDir,
    pcap: PathBuf,
    policy: PathBuf,
}

fn fixture(seed: u64, packets: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("t.pcap");
    let policy = dir.path().join("p.fpol");
    std::fs::write(&policy, POLICY).unwrap();
    let o = flowpol!()
        .args([
            "gen",
            "trace",
            "--flows",
            "30",
            "--packets",
            &packets.to_string(),
            "--seed",
            &seed.to_string(),
            "--out",
        ])
        .arg(&pcap)
        .output();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Fixture { dir, pcap, policy }
}

fn classify(f: &Fixture, extra: &[&str]) -> Output {
    let mut args = vec![
        "classify",
        "--policy",
        f.policy.to_str().unwrap(),
        "--pcap",
        f.pcap.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    flowpol!().args(&args).output()
}

fn json(o: &Output) -> Value {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The expected per-class counts, from our decoder and matching written out by hand.
#[derive(Default, Debug)]
struct Expect {
    frames: u64,
    ipv6: u64,
    ipv4: u64,
    arp: u64,
    three: BTreeMap<&'static str, u64>,
    five: BTreeMap<&'static str, u64>,
    unavailable: BTreeMap<&'static str, u64>,
}

fn in_prefix(a: u128, p: u128, len: u32) -> bool {
    (a ^ p) >> (128 - len) == 0
}

fn expect(path: &Path) -> Expect {
    let fe: u128 = 0x2001_0db8_00fe << 80;
    let dns: u128 = 0x2001_0db8_00ff_0000_0000_0000_0000_0053;
    let lab: u128 = 0xfd00_0001 << 96;
    let mut e = Expect::default();
    let mut r = CaptureReader::open(path).unwrap();
    r.for_each(|f| {
        e.frames += 1;
        match decode(f.link, f.data) {
            Decoded::NonIpv6(NonIpv6::Ipv4) => e.ipv4 += 1,
            Decoded::NonIpv6(NonIpv6::Arp) => e.arp += 1,
            Decoded::NonIpv6(k) => panic!("unexpected {k}"),
            Decoded::Ipv6(k) => {
                e.ipv6 += 1;
                let t = k.three;
                let c3 = if in_prefix(t.dst, fe, 64) && t.label.value() >> 16 == 1 {
                    "gold"
                } else if t.dst == dns {
                    "silver"
                } else if in_prefix(t.src, lab, 64) && t.label.is_zero() {
                    "drop"
                } else {
                    "bronze"
                };
                *e.three.entry(c3).or_default() += 1;
                match k.five {
                    Err(why) => *e.unavailable.entry(why.as_str()).or_default() += 1,
                    Ok(v) => {
                        let c5 = if in_prefix(v.dst, fe, 64)
                            && v.proto == 17
                            && (5004..=5005).contains(&v.dport)
                        {
                            "gold"
                        } else if v.dst == dns && v.proto == 17 && v.dport == 53 {
                            "silver"
                        } else if v.proto == 6 && v.dport == 443 {
                            "pass"
                        } else {
                            "bronze"
                        };
                        *e.five.entry(c5).or_default() += 1;
                    }
                }
            }
        }
    })
    .unwrap();
    e
}

fn tshark_count(path: &Path, filter: &str) -> Option<u64> {
    let o = Command::new("tshark")
        .args(["-n", "-o", "ipv6.defragment:FALSE", "-r"])
        .arg(path)
        .args(["-Y", filter, "-T", "fields", "-e", "frame.number"])
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).lines().count() as u64)
}

#[test]
fn classify_counts_are_exact_and_its_json_has_the_documented_shape() {
    let f = fixture(21, 2500);
    let r = json(&classify(&f, &["--format", "json"]));
    let e = expect(&f.pcap);
    assert_eq!(r["frames"]["packets"], e.frames);
    assert_eq!(e.frames, 2500);
    assert_eq!(r["ipv6"]["packets"], e.ipv6);
    assert_eq!(r["non_ipv6"]["ipv4"]["packets"], e.ipv4);
    assert_eq!(r["non_ipv6"]["arp"]["packets"], e.arp);
    assert_eq!(r["non_ipv6"]["other"]["packets"], 0);
    assert_eq!(r["non_ipv6"]["malformed"]["packets"], 0);
    let class = |name: &str, engine: &str| {
        r["classes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()[engine]["packets"]
            .as_u64()
            .unwrap()
    };
    for name in ["gold", "silver", "bronze", "pass", "drop"] {
        assert_eq!(
            class(name, "three"),
            e.three.get(name).copied().unwrap_or(0),
            "3-tuple {name}"
        );
        assert_eq!(
            class(name, "five"),
            e.five.get(name).copied().unwrap_or(0),
            "5-tuple {name}"
        );
    }
    // Classes are declared order, then pass and drop.
    let names: Vec<&str> = r["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["gold", "silver", "bronze", "pass", "drop"]);
    for why in Unavailable::ALL {
        assert_eq!(
            r["five_unavailable"][why.as_str()]["packets"],
            e.unavailable.get(why.as_str()).copied().unwrap_or(0),
            "{why}"
        );
    }
    assert!(e.unavailable["esp"] > 0 && e.unavailable["non-first-fragment"] > 0);

    // Rules: per engine, in policy order, then the default; names and actions as written.
    let three: Vec<(&str, &str)> = r["rules"]["three"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["name"].as_str().unwrap(), x["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        three,
        [
            ("media", "class gold"),
            ("dns", "class silver"),
            ("lab", "drop"),
            ("default", "class bronze")
        ]
    );
    assert_eq!(r["rules"]["five"][2]["name"], "web");
    assert_eq!(r["rules"]["five"][2]["packets"], e.five["pass"]);

    // The agreement matrix covers every IPv6 packet once.
    let counts = r["agreement"]["counts"].as_array().unwrap();
    assert_eq!(counts.len(), 5);
    assert_eq!(
        r["agreement"]["columns"]
            .as_array()
            .unwrap()
            .last()
            .unwrap(),
        "unavailable"
    );
    let total: u64 = counts
        .iter()
        .flat_map(|row| row.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, e.ipv6);
    let a = &r["agreement"];
    assert_eq!(
        a["agree"].as_u64().unwrap()
            + a["disagree"].as_u64().unwrap()
            + a["unavailable"].as_u64().unwrap(),
        e.ipv6
    );
    assert_eq!(a["unavailable"], r["five_unavailable"]["total"]["packets"]);
    // Timing is there for both engines.
    for k in ["three", "five"] {
        assert_eq!(r["timing"][k]["engine"], "linear");
        assert!(r["timing"][k]["extract_ns_per_packet"].as_f64().unwrap() > 0.0);
    }
    assert!(r["stopped"].is_null());

    // The same counts from tshark's own filters.
    if let Some(esp) = tshark_count(&f.pcap, "esp") {
        assert_eq!(r["five_unavailable"]["esp"]["packets"], esp);
        let nff = tshark_count(&f.pcap, "ipv6.fraghdr.offset > 0").unwrap();
        assert_eq!(r["five_unavailable"]["non-first-fragment"]["packets"], nff);
        assert_eq!(
            r["non_ipv6"]["arp"]["packets"],
            tshark_count(&f.pcap, "arp").unwrap()
        );
        assert_eq!(r["ipv6"]["packets"], tshark_count(&f.pcap, "ipv6").unwrap());
    } else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "tshark is required under CI=true"
        );
    }

    // The table names every section.
    let o = classify(&f, &[]);
    assert!(o.status.success());
    let t = String::from_utf8(o.stdout).unwrap();
    for s in [
        "Rules",
        "Classes",
        "Agreement",
        "No 5-tuple, by reason",
        "Time per packet",
        "non-first-fragment",
        "media",
    ] {
        assert!(t.contains(s), "table lacks {s}:\n{t}");
    }
}

#[test]
fn packets_jsonl_one_line_per_ipv6_packet_agreeing_with_tshark() {
    let f = fixture(22, 1200);
    let jl = f.dir.path().join("p.jsonl");
    let r = json(&classify(
        &f,
        &["--format", "json", "--packets", jl.to_str().unwrap()],
    ));
    let text = std::fs::read_to_string(&jl).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, r["ipv6"]["packets"].as_u64().unwrap());
    let keys = [
        "dport",
        "dst",
        "five",
        "five_unavailable",
        "flow_label",
        "frame",
        "next_header",
        "proto",
        "sport",
        "src",
        "three",
    ];
    let mut last = 0;
    let mut by_frame = BTreeMap::new();
    for l in &lines {
        let mut k: Vec<&str> = l.as_object().unwrap().keys().map(String::as_str).collect();
        k.sort();
        assert_eq!(k, keys);
        let n = l["frame"].as_u64().unwrap();
        assert!(n > last);
        last = n;
        match l["five_unavailable"].as_str() {
            Some(_) => assert!(l["five"].is_null() && l["sport"].is_null() && l["proto"].is_null()),
            None => assert!(l["five"].is_string() && l["proto"].is_u64()),
        }
        assert!(l["three"].is_string());
        if l["proto"] == 58 {
            assert!(l["sport"].is_null());
        }
        by_frame.insert(n, l.clone());
    }
    // Per-line counts add up to the report.
    let media = lines.iter().filter(|l| l["three"] == "media").count() as u64;
    assert_eq!(media, r["rules"]["three"][0]["packets"].as_u64().unwrap());
    let esp = lines
        .iter()
        .filter(|l| l["five_unavailable"] == "esp")
        .count() as u64;
    assert_eq!(
        esp,
        r["five_unavailable"]["esp"]["packets"].as_u64().unwrap()
    );

    // And agree with tshark on src, dst, label and ports.
    if !support::gate::have("tshark") {
        return;
    }
    let (_, theirs) = support::tshark::rows(&f.pcap);
    assert_eq!(theirs.len(), lines.len());
    for (n, t) in &theirs {
        let l = &by_frame[n];
        assert_eq!(l["src"], t.src, "frame {n}");
        assert_eq!(l["dst"], t.dst, "frame {n}");
        assert_eq!(l["flow_label"], u64::from(t.label), "frame {n}");
        match t.tcp_or_udp() {
            Some((sport, dport)) => {
                assert_eq!(l["sport"], u64::from(sport), "frame {n}");
                assert_eq!(l["dport"], u64::from(dport), "frame {n}");
            }
            None => assert!(l["sport"].is_null(), "frame {n}"),
        }
    }
}

#[test]
fn split_writes_one_pcap_per_class_that_tshark_reads() {
    let f = fixture(23, 1500);
    let dir = f.dir.path().join("split");
    let r = json(&classify(
        &f,
        &["--format", "json", "--split", dir.to_str().unwrap()],
    ));
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    let mut want = Vec::new();
    for c in r["classes"].as_array().unwrap() {
        for engine in ["three", "five"] {
            let n = c[engine]["packets"].as_u64().unwrap();
            if n > 0 {
                want.push((format!("{engine}-{}.pcap", c["name"].as_str().unwrap()), n));
            }
        }
    }
    want.push((
        "five-unavailable.pcap".into(),
        r["five_unavailable"]["total"]["packets"].as_u64().unwrap(),
    ));
    let mut names: Vec<String> = want.iter().map(|(n, _)| n.clone()).collect();
    names.sort();
    assert_eq!(files, names);
    let have_tshark = Command::new("tshark").arg("--version").output().is_ok();
    for (name, n) in want {
        let p = dir.join(&name);
        let mut reader = CaptureReader::open(&p).unwrap();
        assert_eq!(reader.for_each(|_| ()).unwrap(), n, "{name}");
        if have_tshark {
            let o = Command::new("tshark")
                .arg("-r")
                .arg(&p)
                .args(["-T", "fields", "-e", "frame.number"])
                .output()
                .unwrap();
            assert!(o.status.success(), "tshark cannot read {name}");
            assert_eq!(
                String::from_utf8_lossy(&o.stdout).lines().count() as u64,
                n,
                "{name}"
            );
        }
    }
}

/// Byte offsets of the records of a little-endian pcap.
fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut at = 24;
    let mut v = Vec::new();
    while at + 16 <= bytes.len() {
        v.push(at);
        let caplen = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16 + caplen;
    }
    v
}

#[test]
fn truncated_capture_reports_what_was_read_then_exits_2_with_the_offset() {
    let f = fixture(24, 400);
    let bytes = std::fs::read(&f.pcap).unwrap();
    let recs = record_offsets(&bytes);
    assert_eq!(recs.len(), 400);
    let cut = recs[300] + 20; // inside the data of record 301
    std::fs::write(&f.pcap, &bytes[..cut]).unwrap();
    for format in ["json", "table"] {
        let o = classify(&f, &["--format", format]);
        assert_eq!(o.status.code(), Some(2), "{format}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(&format!("at byte {}", recs[300])), "{err}");
        assert!(err.contains("after 300 frames"), "{err}");
        if format == "json" {
            let r: Value = serde_json::from_slice(&o.stdout).unwrap();
            assert_eq!(r["frames"]["packets"], 300);
            assert_eq!(r["stopped"]["offset"], recs[300] as u64);
        } else {
            let out = String::from_utf8_lossy(&o.stdout);
            assert!(
                out.contains("300 frames") && out.contains("STOPPED EARLY"),
                "{out}"
            );
        }
    }
    // A corrupt record length.
    let mut bad = bytes.clone();
    bad[recs[10] + 8..recs[10] + 12].copy_from_slice(&0x7fff_0000u32.to_le_bytes());
    std::fs::write(&f.pcap, &bad).unwrap();
    let o = classify(&f, &["--format", "json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("corrupt at byte {}", recs[10])));
    // Not a capture at all: exit 2 before any report.
    std::fs::write(&f.pcap, b"hello world, not a capture").unwrap();
    let o = classify(&f, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a pcap or pcapng file"));
}

#[test]
fn missing_policy_or_capture_is_exit_2() {
    let f = fixture(25, 10);
    let o = flowpol!()
        .args([
            "classify",
            "--policy",
            "/nonexistent.fpol",
            "--pcap",
            f.pcap.to_str().unwrap(),
        ])
        .output();
    assert_eq!(o.status.code(), Some(2));
    let o = flowpol!()
        .args([
            "classify",
            "--policy",
            f.policy.to_str().unwrap(),
            "--pcap",
            "/nonexistent.pcap",
        ])
        .output();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent.pcap"));
}

/// `--engine fast` reports exactly what the linear reference reports, packet for packet.
#[test]
fn fast_engine_gives_the_same_report_and_packets() {
    let f = fixture(11, 3000);
    let lin_jsonl = f.dir.path().join("lin.jsonl");
    let fast_jsonl = f.dir.path().join("fast.jsonl");
    let strip = |mut v: Value| {
        // Timing differs between runs; everything else must be equal.
        if let Some(o) = v.as_object_mut() {
            o.retain(|k, _| !k.contains("tim") && k != "engine");
        }
        v
    };
    let lin = strip(json(&classify(
        &f,
        &[
            "--format",
            "json",
            "--engine",
            "linear",
            "--packets",
            lin_jsonl.to_str().unwrap(),
        ],
    )));
    let fast = strip(json(&classify(
        &f,
        &[
            "--format",
            "json",
            "--engine",
            "fast",
            "--packets",
            fast_jsonl.to_str().unwrap(),
        ],
    )));
    assert_eq!(lin, fast);
    let (a, b) = (
        std::fs::read_to_string(lin_jsonl).unwrap(),
        std::fs::read_to_string(fast_jsonl).unwrap(),
    );
    assert!(a.lines().count() > 2000);
    assert_eq!(a, b);
}
