//! `flowpol flows` end to end: flow and 3-tuple counts recomputed independently from our
//! decoder, the JSON shape, the verdict, and exit 2 with the offset on a truncated capture.

use flowpol::packet::{Decoded, decode};
use flowpol::source::pcap::CaptureReader;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Output;
use support::flowpol;

type Five = (u128, u128, u8, u16, u16);

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/demo.pcap");

fn flows(path: &Path, extra: &[&str]) -> Output {
    flowpol!()
        .args(["flows", "--pcap"])
        .arg(path)
        .args(extra)
        .output()
}

#[test]
fn flows_counts_are_exact_and_its_json_has_the_shape_and_verdict() {
    let o = flows(Path::new(DEMO), &["--format", "json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();

    // Independent count: labels per 5-tuple, 5-tuples per 3-tuple.
    let mut labels: BTreeMap<Five, Vec<u32>> = BTreeMap::new();
    let mut per_three: BTreeMap<(u128, u128, u32), BTreeSet<Five>> = BTreeMap::new();
    let mut no_five = 0u64;
    CaptureReader::open(DEMO)
        .unwrap()
        .for_each(|f| {
            if let Decoded::Ipv6(k) = decode(f.link, f.data) {
                match k.five {
                    Ok(t) => {
                        let key = (t.src, t.dst, t.proto, t.sport, t.dport);
                        labels.entry(key).or_default().push(k.three.label.value());
                        per_three
                            .entry((k.three.src, k.three.dst, k.three.label.value()))
                            .or_default()
                            .insert(key);
                    }
                    Err(_) => no_five += 1,
                }
            }
        })
        .unwrap();
    let changed = labels
        .values()
        .filter(|l| l.windows(2).any(|w| w[0] != w[1]))
        .count();
    let changes: usize = labels
        .values()
        .map(|l| l.windows(2).filter(|w| w[0] != w[1]).count())
        .sum();
    let zero = labels
        .values()
        .filter(|l| l.iter().all(|&x| x == 0))
        .count();
    let shared = per_three.values().filter(|s| s.len() > 1).count();

    assert_eq!(r["labels"]["flows"], labels.len());
    assert_eq!(r["labels"]["changed"], changed);
    assert_eq!(r["labels"]["changes"], changes);
    assert_eq!(r["labels"]["zero"], zero);
    assert_eq!(r["labels"]["constant"], labels.len() - changed - zero);
    assert_eq!(r["three_tuples"]["total"], per_three.len());
    assert_eq!(r["three_tuples"]["shared"], shared);
    // Every 3-tuple is listed with its flow count, most-shared first.
    let list = r["three_tuples"]["list"].as_array().unwrap();
    assert_eq!(list.len(), per_three.len());
    let counts: Vec<usize> = list
        .iter()
        .map(|x| x["flows"].as_u64().unwrap() as usize)
        .collect();
    assert!(counts.windows(2).all(|w| w[0] >= w[1]));
    let mut want: Vec<usize> = per_three.values().map(|s| s.len()).collect();
    want.sort_by(|a, b| b.cmp(a));
    assert_eq!(counts, want);
    assert_eq!(r["no_five_tuple"]["packets"], no_five);
    assert_eq!(r["flows"].as_array().unwrap().len(), labels.len());
    assert!(
        changed > 0 && shared > 0,
        "the demo should show both ways a 3-tuple policy breaks"
    );

    // Every flow with a changed label or a shared 3-tuple is listed as breaking, and no other.
    let v = &r["verdict"];
    assert_eq!(v["stands_in"], false);
    let breaking = v["breaking"].as_array().unwrap();
    let expected = r["flows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["labels"] == "changed" || f["shared"] == true)
        .count();
    assert_eq!(breaking.len(), expected);
    assert!(
        breaking
            .iter()
            .all(|b| b["why"].as_str().unwrap().contains("label changed")
                || b["why"].as_str().unwrap().contains("shares its 3-tuple"))
    );
    assert!(v["text"].as_str().unwrap().starts_with(&format!(
        "No: {} of {} flows",
        breaking.len(),
        labels.len()
    )));
    let share = v["clean_packet_share"].as_f64().unwrap();
    assert!(share > 0.0 && share < 1.0);

    let o = flows(Path::new(DEMO), &[]);
    let t = String::from_utf8(o.stdout).unwrap();
    assert!(
        t.contains("Verdict: No:")
            && t.contains("Shared 3-tuples")
            && t.contains("Flows that break it"),
        "{t}"
    );
}

#[test]
fn truncated_capture_exits_2_after_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cut.pcap");
    let bytes = std::fs::read(DEMO).unwrap();
    // The first record starts at 24; cut inside the second record's header.
    let first = u32::from_le_bytes(bytes[24 + 8..24 + 12].try_into().unwrap()) as usize;
    let second = 24 + 16 + first;
    std::fs::write(&p, &bytes[..second + 7]).unwrap();
    let o = flows(&p, &["--format", "json"]);
    assert_eq!(o.status.code(), Some(2));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["frames"]["packets"], 1);
    assert_eq!(r["stopped"]["offset"], second as u64);
    assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("truncated at byte {second}")));
}

/// A random-source flood: `n` raw-IP IPv6 UDP packets, each from its own random source address
/// (so each its own flow), one millisecond apart.
fn flood(path: &Path, n: u64) {
    use flowpol::source::pcap::{FrameWriter, PcapWriter};
    use rand::{RngExt, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(14);
    let mut w = PcapWriter::create(path, flowpol::packet::LinkType::RAW).unwrap();
    let mut p = [0u8; 48];
    p[0] = 0x60;
    p[5] = 8; // payload length
    p[6] = 17; // UDP
    p[7] = 64;
    p[24..40].copy_from_slice(&[0xfd, 0, 0, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    p[40..42].copy_from_slice(&4000u16.to_be_bytes());
    p[42..44].copy_from_slice(&53u16.to_be_bytes());
    p[45] = 8;
    for i in 0..n {
        let src: u128 = rng.random();
        p[8..24].copy_from_slice(&src.to_be_bytes());
        p[3] = (i & 0xff) as u8;
        w.write_packet(std::time::Duration::from_millis(i), 48, &p)
            .unwrap();
    }
    w.flush().unwrap();
}

/// `flows --max-flows 10000 --report-flows 10000` over a flood of `n` one-packet flows: the JSON.
fn flows_of_flood(dir: &Path, n: u64) -> Value {
    let pcap = dir.join(format!("flood{n}.pcap"));
    flood(&pcap, n);
    let o = flows(
        &pcap,
        &[
            "--max-flows",
            "10000",
            "--report-flows",
            "10000",
            "--format",
            "json",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::remove_file(&pcap).unwrap();
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn a_million_random_flows_stay_within_max_flows_in_flat_memory_with_every_eviction_counted() {
    let dir = tempfile::tempdir().unwrap();
    let small = flows_of_flood(dir.path(), 50_000);
    let big = flows_of_flood(dir.path(), 1_000_000);
    let m = &big["meter"];
    assert_eq!(m["max_flows"], 10_000);
    assert_eq!(m["peak_flows"], 10_000);
    assert_eq!(
        (m["packets"].as_u64(), m["flows"].as_u64()),
        (Some(1_000_000), Some(1_000_000))
    );
    // Every flow but the last 10,000 was evicted early, and counted; those were flushed at the end.
    assert_eq!(m["evictions"], 990_000);
    assert_eq!(m["forced"], 10_000);
    // The table's memory is fixed by --max-flows, whatever the traffic.
    assert_eq!(m["memory_bytes"], small["meter"]["memory_bytes"]);
    assert!(m["memory_bytes"].as_u64().unwrap() <= 10_000 * m["bytes_per_flow"].as_u64().unwrap());
    // The report is bounded too: 10,000 rows, the other flows counted and said to be untracked.
    assert_eq!(big["flows"].as_array().unwrap().len(), 10_000);
    assert_eq!(big["labels"]["flows"], 1_000_000);
    assert_eq!(big["bounds"]["flows_untracked"], 990_000);
    // Twenty times the flows, the same peak memory (within allocator noise).
    let rss = |j: &Value| j["max_rss_bytes"].as_u64().expect("VmHWM on Linux");
    let (s, b) = (rss(&small), rss(&big));
    assert!(
        b < s + (16 << 20) && b < 128 << 20,
        "peak RSS {b} bytes with 1M flows against {s} with 50k"
    );
}
