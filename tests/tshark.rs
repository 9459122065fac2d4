//! Truth from outside: every IPv6 packet's src, dst and flow label (and ports where tshark
//! dissects TCP, UDP or SCTP) must agree with tshark (`support::tshark`), on generated captures
//! (pcap and pcapng) and on every real capture in `../shared/data/pcaps/` (also converted to
//! pcapng with editcap).

use support::gate::{have, shared_data};
use support::tshark::Row;

use flowpol::packet::{Decoded, LinkType, NonIpv6, decode};
use flowpol::source::pcap::{CaptureReader, PcapNgWriter, PcapWriter};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Our rows, plus the frames we decoded as IPv4 (tshark may find IPv6 tunnelled inside them).
type Ours = BTreeMap<u64, (Row, Option<(u8, u16, u16)>)>;

fn our_rows(path: &Path) -> (u64, Ours, Vec<u64>) {
    let mut r = CaptureReader::open(path).unwrap();
    let mut rows = BTreeMap::new();
    let mut ipv4 = Vec::new();
    let n = r
        .for_each(|f| match decode(f.link, f.data) {
            Decoded::Ipv6(k) => {
                let row = Row {
                    src: k.three.src_addr().to_string(),
                    dst: k.three.dst_addr().to_string(),
                    label: k.three.label.value(),
                    ports: BTreeMap::new(),
                };
                let ports = k
                    .five
                    .ok()
                    .filter(|t| matches!(t.proto, 6 | 17 | 132))
                    .map(|t| (t.proto, t.sport, t.dport));
                rows.insert(f.number, (row, ports));
            }
            Decoded::NonIpv6(NonIpv6::Ipv4 | NonIpv6::Ipv4CarryingIpv6) => ipv4.push(f.number),
            Decoded::NonIpv6(_) => {}
        })
        .unwrap();
    (n, rows, ipv4)
}

/// Compares one capture; returns (IPv6 packets compared, of which with ports).
fn compare(path: &Path) -> (usize, usize) {
    let (t_frames, theirs) = support::tshark::rows(path);
    let (o_frames, ours, ipv4) = our_rows(path);
    let name = path.display();
    assert_eq!(o_frames, t_frames, "{name}: frame count");
    let mut with_ports = 0;
    for (n, (row, ports)) in &ours {
        let Some(t) = theirs.get(n) else {
            panic!("{name} frame {n}: we see IPv6 {row:?}, tshark does not")
        };
        assert_eq!(
            (&row.src, &row.dst, row.label),
            (&t.src, &t.dst, t.label),
            "{name} frame {n}"
        );
        if let Some((proto, s, d)) = ports {
            match t.ports.get(proto) {
                Some(&tp) => {
                    assert_eq!((*s, *d), tp, "{name} frame {n}: ports of protocol {proto}");
                    with_ports += 1;
                }
                None => panic!(
                    "{name} frame {n}: we read {proto} ports {s}->{d}, tshark dissected none"
                ),
            }
        }
    }
    for n in theirs.keys() {
        assert!(
            ours.contains_key(n) || ipv4.contains(n),
            "{name} frame {n}: tshark sees IPv6, we do not"
        );
    }
    (ours.len(), with_ports)
}

fn generated(dir: &Path, seed: u64, packets: usize, ng: bool, link: LinkType) -> PathBuf {
    let cfg = flowpol::r#gen::trace::TraceConfig {
        flows: 50,
        packets,
        seed,
        link,
    };
    if ng {
        let p = dir.join(format!("gen-{seed}-{}.pcapng", link.0));
        let mut w = PcapNgWriter::new(std::fs::File::create(&p).unwrap(), link).unwrap();
        flowpol::r#gen::trace::generate(&cfg, &mut w).unwrap();
        p
    } else {
        let p = dir.join(format!("gen-{seed}-{}.pcap", link.0));
        let mut w = PcapWriter::new(std::fs::File::create(&p).unwrap(), link).unwrap();
        flowpol::r#gen::trace::generate(&cfg, &mut w).unwrap();
        p
    }
}

#[test]
fn generated_captures_agree_with_tshark() {
    if !have("tshark") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/demo.pcap");
    let (n, p) = compare(&demo);
    assert!(
        n > 1000 && p > 500,
        "demo: {n} IPv6 packets, {p} with ports"
    );
    for (seed, ng) in [(11, false), (12, true)] {
        let (n, p) = compare(&generated(dir.path(), seed, 2500, ng, LinkType::ETHERNET));
        assert!(
            n > 2000 && p > 1000,
            "seed {seed}: {n} IPv6 packets, {p} with ports"
        );
    }
}

#[test]
fn every_generated_link_type_agrees_with_tshark() {
    if !have("tshark") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (i, link) in flowpol::r#gen::trace::LINKS.into_iter().enumerate() {
        let (n, p) = compare(&generated(dir.path(), 30 + i as u64, 600, i % 2 == 1, link));
        assert!(
            n > 500 && p > 200,
            "{link}: {n} IPv6 packets, {p} with ports"
        );
    }
}

#[test]
fn shared_real_captures_agree_with_tshark() {
    let Some(dir) = shared_data("pcaps", "the real-capture comparison") else {
        return;
    };
    if !have("tshark") {
        return;
    }
    let convert = have("editcap");
    let tmp = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut total = 0;
    for f in &files {
        let (n, _) = compare(f);
        eprintln!("{}: {n} IPv6 packets agree", f.display());
        total += n;
        if convert {
            let ng = tmp
                .path()
                .join(f.file_name().unwrap())
                .with_extension("pcapng");
            let st = Command::new("editcap")
                .args(["-F", "pcapng"])
                .arg(f)
                .arg(&ng)
                .status()
                .unwrap();
            assert!(st.success());
            assert_eq!(compare(&ng).0, n, "{}: pcapng copy", f.display());
        }
    }
    assert!(total > 0, "no IPv6 packet in {}", dir.display());
}
