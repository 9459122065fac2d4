//! `flowpol replay`: a capture generated here (etherparse headers, pcap-file writer) is put on
//! the wire in namespace A; tcpdump in namespace B must record the same frames, byte for byte,
//! in count and total size, including what a normal socket cannot send (fragment, hop-by-hop
//! and ESP headers, arbitrary labels). Root only (skips elsewhere, fails under CI=true).

use std::time::Duration;

use etherparse::{EtherType, Ethernet2Header, IpNumber, Ipv6FlowLabel, Ipv6Header, UdpHeader};
use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use support::capture::{Capture, hex, read_any, read_pcap};
use support::flowpol;
use support::netns::VethPair;

const SRC_MAC: [u8; 6] = [0x02, 0xfb, 0, 0, 0, 0x01];
const SYNTH_DST: [u8; 6] = [0x02, 0xfb, 0, 0, 0, 0x02];

fn v6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

/// An IPv6 packet (no link header): `label`, a chain of extension headers given as
/// (next-header number, bytes), then a UDP datagram of `payload` bytes (or opaque bytes when the
/// last header is ESP).
fn ipv6_packet(
    label: u32,
    src: &str,
    dst: &str,
    ext: &[(u8, Vec<u8>)],
    last: u8,
    payload: usize,
) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, (_, bytes)) in ext.iter().enumerate() {
        let mut b = bytes.clone();
        b[0] = ext.get(i + 1).map(|e| e.0).unwrap_or(last);
        body.extend_from_slice(&b);
    }
    if last == 17 {
        let data = vec![0x5au8; payload];
        let udp = UdpHeader::with_ipv6_checksum(40000, 9, &empty_ip6(src, dst, 17), &data).unwrap();
        body.extend_from_slice(&udp.to_bytes());
        body.extend_from_slice(&data);
    } else {
        body.extend(std::iter::repeat_n(0xe5u8, payload));
    }
    let ip = Ipv6Header {
        traffic_class: 0,
        flow_label: Ipv6FlowLabel::try_new(label).unwrap(),
        payload_length: body.len() as u16,
        next_header: IpNumber(ext.first().map(|e| e.0).unwrap_or(last)),
        hop_limit: 64,
        source: v6(src),
        destination: v6(dst),
    };
    let mut out = ip.to_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

fn empty_ip6(src: &str, dst: &str, nh: u8) -> Ipv6Header {
    Ipv6Header {
        traffic_class: 0,
        flow_label: Ipv6FlowLabel::ZERO,
        payload_length: 0,
        next_header: IpNumber(nh),
        hop_limit: 64,
        source: v6(src),
        destination: v6(dst),
    }
}

fn ethernet(ip: &[u8], ether_type: EtherType) -> Vec<u8> {
    let eth = Ethernet2Header {
        source: SRC_MAC,
        destination: [0xff; 6],
        ether_type,
    };
    let mut f = eth.to_bytes().to_vec();
    f.extend_from_slice(ip);
    f
}

/// The generated traffic: labelled UDP, a first fragment, a hop-by-hop header, ESP, IPv4.
fn packets(p: &VethPair) -> Vec<(u32, Vec<u8>)> {
    let (a, b) = (p.a_addr.as_str(), p.b_addr.as_str());
    let frag = (44u8, vec![0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef]); // offset 0, M=1
    let hbh = (0u8, vec![0, 0, 1, 4, 0, 0, 0, 0]); // PadN
    let mut v4 = vec![0x45u8, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0];
    v4.extend(p.a_addr4.parse::<std::net::Ipv4Addr>().unwrap().octets());
    v4.extend(p.b_addr4.parse::<std::net::Ipv4Addr>().unwrap().octets());
    v4.extend([0x9c, 0x40, 0, 9, 0, 8, 0, 0]);
    vec![
        (0x12345, ipv6_packet(0x12345, a, b, &[], 17, 100)),
        (0xabcde, ipv6_packet(0xabcde, a, b, &[], 17, 1000)),
        (0x1, ipv6_packet(0x1, a, b, &[frag], 17, 200)),
        (0x2, ipv6_packet(0x2, a, b, &[hbh], 17, 10)),
        (0x3, ipv6_packet(0x3, a, b, &[], 50, 64)),
        (u32::MAX, v4),
    ]
}

fn write_pcap(link: DataLink, frames: &[Vec<u8>]) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    let header = PcapHeader {
        datalink: link,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(file.reopen().unwrap(), header).unwrap();
    for (i, f) in frames.iter().enumerate() {
        let ts = Duration::from_millis(1_700_000_000_000 + 5 * i as u64);
        w.write_packet(&PcapPacket::new(ts, f.len() as u32, f))
            .unwrap();
    }
    drop(w);
    file
}

#[test]
fn replayed_ethernet_capture_arrives_byte_for_byte() {
    if !support::gate::require_root("replay_ethernet") {
        return;
    }
    let p = VethPair::new("re");
    let pk = packets(&p);
    let frames: Vec<Vec<u8>> = pk
        .iter()
        .map(|(l, ip)| {
            ethernet(
                ip,
                if *l == u32::MAX {
                    EtherType::IPV4
                } else {
                    EtherType::IPV6
                },
            )
        })
        .collect();
    let file = write_pcap(DataLink::ETHERNET, &frames);
    let cap = Capture::start(&p.b, &p.b_if, "ether src 02:fb:00:00:00:01");
    let out = flowpol!()
        .in_ns(&p.a)
        .args([
            "replay",
            "--iface",
            &p.a_if,
            file.path().to_str().unwrap(),
            "--speed",
            "10",
            "--loop",
            "2",
            "--format",
            "json",
        ])
        .output_ok();
    let cap = cap.stop();
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let sent_bytes: usize = frames.iter().map(Vec::len).sum::<usize>() * 2;
    assert_eq!(report["frames_sent"], 12, "{report}");
    assert_eq!(report["bytes_sent"], sent_bytes, "{report}");
    assert_eq!(report["loops"], 2);

    let got = cap.frames();
    assert_eq!(got.len(), 12, "frames recorded on the far side");
    assert_eq!(
        got.iter().map(Vec::len).sum::<usize>(),
        sent_bytes,
        "bytes recorded on the far side"
    );
    let expected: Vec<Vec<u8>> = frames.iter().chain(frames.iter()).cloned().collect();
    assert_eq!(got, expected, "frames differ");

    // And tshark reads the labels we wrote, extension headers or not.
    let labels: Vec<u32> = cap
        .fields(Some("ipv6"), &["ipv6.flow"])
        .iter()
        .map(|f| hex(&f[0]))
        .collect();
    let want: Vec<u32> = pk.iter().map(|p| p.0).filter(|&l| l != u32::MAX).collect();
    assert_eq!(labels, [want.clone(), want].concat());
}

#[test]
fn replayed_raw_ip_capture_gets_an_ethernet_header() {
    if !support::gate::require_root("replay_raw") {
        return;
    }
    let p = VethPair::new("rr");
    let raw: Vec<Vec<u8>> = packets(&p).into_iter().map(|(_, ip)| ip).collect();
    let file = write_pcap(DataLink::RAW, &raw);
    let cap = Capture::start(&p.b, &p.b_if, "ether dst 02:fb:00:00:00:02");
    flowpol!()
        .in_ns(&p.a)
        .args([
            "replay",
            "--iface",
            &p.a_if,
            file.path().to_str().unwrap(),
            "--fast",
            "--dst-mac",
            "02:fb:00:00:00:02",
        ])
        .output_ok();
    let cap = cap.stop();
    let got = read_pcap(&cap.file);
    assert_eq!(got.len(), raw.len());
    for (f, ip) in got.iter().zip(&raw) {
        assert_eq!(f.len(), ip.len() + 14);
        assert_eq!(&f[..6], &SYNTH_DST);
        let et = if ip[0] >> 4 == 6 {
            [0x86, 0xdd]
        } else {
            [0x08, 0x00]
        };
        assert_eq!(&f[12..14], &et);
        assert_eq!(&f[14..], &ip[..]);
    }
    // All synthesized frames carry the same source: the sending interface's MAC.
    assert!(got.windows(2).all(|w| w[0][6..12] == w[1][6..12]));
    assert_ne!(&got[0][6..12], &[0u8; 6]);
}

#[test]
fn replay_without_cap_net_raw_names_the_capability() {
    if !support::gate::require_root("replay_nocap") {
        return;
    }
    let p = VethPair::new("rc");
    let file = write_pcap(DataLink::RAW, &[packets(&p).remove(0).1]);
    flowpol!()
        .in_ns(&p.a)
        .args(["replay", "--iface", &p.a_if, file.path().to_str().unwrap()])
        .assert_needs_capability("net_raw");
}

#[test]
fn replay_rejects_a_file_that_is_not_a_capture() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), b"this is not a capture at all").unwrap();
    let out = flowpol!()
        .args(["replay", "--iface", "lo", file.path().to_str().unwrap()])
        .output();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a pcap or pcapng file"), "{err}");
}

#[test]
fn replayed_real_captures_arrive_in_count_and_bytes() {
    if !support::gate::require_root("replay_real") {
        return;
    }
    let Some(dir) = support::gate::shared_data("pcaps", "the real-capture replay") else {
        return;
    };
    let p = VethPair::new("rl");
    for name in [
        "ipv6-srh-ext-header.pcap",
        "OSPFv3_with_AH.pcap",
        "sflow-print-v6.pcap",
        "pim-packet-assortment.pcap",
    ] {
        let path = dir.join(name);
        let file_frames = read_pcap(&path);
        let cap = Capture::start(&p.b, &p.b_if, "-Q in");
        let out = flowpol!()
            .in_ns(&p.a)
            .args([
                "replay",
                "--iface",
                &p.a_if,
                path.to_str().unwrap(),
                "--rate",
                "2000",
                "--format",
                "json",
            ])
            .output_ok();
        let cap = cap.stop();
        let r: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        let sent = r["frames_sent"].as_u64().unwrap();
        let refused: u64 = r["send_errors"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(r["frames_in_file"], file_frames.len(), "{name}: {r}");
        assert_eq!(
            sent + refused,
            file_frames.len() as u64,
            "{name}: every frame sent or refused: {r}"
        );
        assert!(
            sent * 10 >= file_frames.len() as u64 * 9,
            "{name}: too many refused: {r}"
        );
        // The far side may also see the kernel's own chatter from A (MLD, ND): count only frames
        // that are byte-for-byte frames of the file.
        let got: Vec<Vec<u8>> = cap
            .frames()
            .into_iter()
            .filter(|f| file_frames.contains(f))
            .collect();
        assert_eq!(
            got.len() as u64,
            sent,
            "{name}: frames recorded on the far side vs sent: {r}"
        );
        assert_eq!(
            got.iter().map(Vec::len).sum::<usize>() as u64,
            r["bytes_sent"].as_u64().unwrap(),
            "{name}: bytes"
        );
    }
}

#[test]
fn replayed_gen_trace_arrives_in_count_and_bytes() {
    if !support::gate::require_root("replay_gen") {
        return;
    }
    let p = VethPair::new("rg");
    let dir = tempfile::tempdir().unwrap();
    for name in ["trace.pcapng", "trace.pcap"] {
        let path = dir.path().join(name);
        let path = path.to_str().unwrap();
        let out = flowpol!()
            .args([
                "gen",
                "trace",
                "--out",
                path,
                "--packets",
                "300",
                "--flows",
                "8",
                "--seed",
                "7",
            ])
            .output();
        assert!(
            out.status.success(),
            "gen trace: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cap = Capture::start(&p.b, &p.b_if, "-Q in");
        let r = flowpol!()
            .in_ns(&p.a)
            .args([
                "replay", "--iface", &p.a_if, path, "--loop", "2", "--rate", "2000", "--format",
                "json",
            ])
            .output_ok();
        let cap = cap.stop();
        let r: serde_json::Value = serde_json::from_str(r.trim()).unwrap();
        assert_eq!(r["frames_in_file"], 300, "{name}: {r}");
        assert_eq!(
            r["frames_sent"], 600,
            "{name}: every generated frame fits the MTU: {r}"
        );
        assert!(
            r["elapsed_s"].as_f64().unwrap() >= 0.25,
            "599 gaps at 2000/s take 0.3 s: {r}"
        );
        // The reference frames, read by the pcap-file crate (not the reader replay uses).
        let want = read_any(std::path::Path::new(path));
        assert_eq!(want.len(), 300);
        let got: Vec<Vec<u8>> = cap
            .frames()
            .into_iter()
            .filter(|f| want.contains(f))
            .collect();
        assert_eq!(got.len(), 600, "{name}: frames recorded on the far side");
        assert_eq!(got[..300], want[..], "{name}: first pass in order");
        assert_eq!(got[300..], want[..], "{name}: second pass in order");
        let bytes: u64 = got.iter().map(|f| f.len() as u64).sum();
        assert_eq!(bytes, r["bytes_sent"].as_u64().unwrap(), "{name}: bytes");
    }
}
