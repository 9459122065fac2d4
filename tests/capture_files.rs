//! Captures a user has that flowpol once refused or read in silence (issue 16, "Captures"):
//! link types flowpol does not decode, records with out-of-range timestamps, gzip-compressed
//! files, old pcapng with unpadded block lengths, the "modified pcap" magic, files that are not
//! captures at all, and a protocol without ports in every output. Every capture is written by
//! the test; where tshark is installed, its frame count is the truth.

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;
use support::{OutputExt, flowpol};

/// An IPv6/UDP packet from 2001:db8::1 port 5000 to 2001:db8::2 port 53, flow label 0x12345.
fn udp6() -> Vec<u8> {
    let mut p = vec![0x60, 0x01, 0x23, 0x45, 0, 8, 17, 64];
    p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    p.extend_from_slice(&[0x13, 0x88, 0, 53, 0, 8, 0, 0]);
    p
}

/// An ICMPv6 echo request from 2001:db8::1 to 2001:db8::2, flow label 7.
fn icmp6() -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 7, 0, 8, 58, 64];
    p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    p.extend_from_slice(&[128, 0, 0, 0, 0, 1, 0, 1]);
    p
}

/// An Ethernet frame carrying `ip` (IPv6 EtherType).
fn ether(ip: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd];
    f.extend_from_slice(ip);
    f
}

/// A little-endian pcap: `magic`, version 2.4, `link`, then one record per frame with the
/// given (seconds, fraction) timestamp. `extra` bytes of zeros follow each 16-byte record
/// header (8 for the modified pcap's 24-byte headers).
fn pcap(magic: u32, link: u32, extra: usize, frames: &[((u32, u32), Vec<u8>)]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&magic.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&4u16.to_le_bytes());
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&65535u32.to_le_bytes());
    b.extend_from_slice(&link.to_le_bytes());
    for ((s, frac), d) in frames {
        b.extend_from_slice(&s.to_le_bytes());
        b.extend_from_slice(&frac.to_le_bytes());
        b.extend_from_slice(&(d.len() as u32).to_le_bytes());
        b.extend_from_slice(&(d.len() as u32).to_le_bytes());
        b.extend_from_slice(&vec![0; extra]);
        b.extend_from_slice(d);
    }
    b
}

const US: u32 = 0xa1b2_c3d4;
const NS: u32 = 0xa1b2_3c4d;
const MODIFIED: u32 = 0xa1b2_cd34;

/// A pcapng block: type, total length, body, total length. With `pad_in_length` false the
/// length leaves the body's padding out, as old ntar-written files do (the bytes are still
/// padded on disk).
fn block(ty: u32, body: &[u8], pad_in_length: bool) -> Vec<u8> {
    let padded = body.len().next_multiple_of(4);
    let len = 12 + if pad_in_length { padded } else { body.len() } as u32;
    let mut b = Vec::new();
    b.extend_from_slice(&ty.to_le_bytes());
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(body);
    b.resize(8 + padded, 0);
    b.extend_from_slice(&len.to_le_bytes());
    b
}

/// A little-endian pcapng: one section, one interface per link type in `links`, and one
/// enhanced packet block per (interface, frame).
fn pcapng(links: &[u16], frames: &[(u32, Vec<u8>)], pad_in_length: bool) -> Vec<u8> {
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
    shb.extend_from_slice(&[1, 0, 0, 0]);
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    let mut b = block(0x0a0d_0d0a, &shb, true);
    for l in links {
        let mut idb = Vec::new();
        idb.extend_from_slice(&l.to_le_bytes());
        idb.extend_from_slice(&[0, 0]);
        idb.extend_from_slice(&65535u32.to_le_bytes());
        b.extend(block(1, &idb, true));
    }
    for (i, (iface, d)) in frames.iter().enumerate() {
        let mut epb = Vec::new();
        epb.extend_from_slice(&iface.to_le_bytes());
        epb.extend_from_slice(&0u32.to_le_bytes());
        epb.extend_from_slice(&(i as u32 * 1000).to_le_bytes());
        epb.extend_from_slice(&(d.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(d.len() as u32).to_le_bytes());
        epb.extend_from_slice(d);
        b.extend(block(6, &epb, pad_in_length));
    }
    b
}

struct Dir {
    _tmp: tempfile::TempDir,
    path: PathBuf,
    policy: PathBuf,
}

fn dir() -> Dir {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().to_path_buf();
    let policy = path.join("p.fpol");
    std::fs::write(
        &policy,
        "class dns mark 1\ndefault pass\nthree {\n  rule lab label 0x12345 -> class dns\n}\nfive {\n  rule d proto udp dport 53 -> class dns\n}\n",
    )
    .unwrap();
    Dir {
        _tmp: tmp,
        path,
        policy,
    }
}

impl Dir {
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn classify(&self, pcap: &Path, extra: &[&str]) -> Output {
        flowpol!()
            .arg("classify")
            .arg("--policy")
            .arg(&self.policy)
            .arg("--pcap")
            .arg(pcap)
            .args(extra)
            .output()
    }

    fn classify_json(&self, pcap: &Path) -> (Value, String) {
        let o = self.classify(pcap, &["--format", "json"]);
        assert_eq!(o.code(), Some(0), "{}", o.stderr_text());
        (serde_json::from_slice(&o.stdout).unwrap(), o.stderr_text())
    }
}

fn flows(pcap: &Path, extra: &[&str]) -> Output {
    flowpol!()
        .arg("flows")
        .arg("--pcap")
        .arg(pcap)
        .args(extra)
        .output()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// tshark's frame count of a file, when tshark is installed (under CI it must be).
fn tshark_frames(path: &Path) -> Option<u64> {
    if !support::gate::have("tshark") {
        return None;
    }
    let o = std::process::Command::new("tshark")
        .args(["-n", "-r"])
        .arg(path)
        .args(["-T", "fields", "-e", "frame.number"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "tshark -r {}: {}",
        path.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    Some(String::from_utf8_lossy(&o.stdout).lines().count() as u64)
}

#[test]
fn a_link_type_flowpol_does_not_decode_is_named_counted_and_warned_about() {
    let d = dir();
    // Interface 0 is Ethernet, interface 1 is 802.11 with radiotap (127).
    let frames = vec![
        (0, ether(&udp6())),
        (1, vec![0, 0, 8, 0, 0, 0, 0, 0, 0x80, 0]),
        (0, ether(&udp6())),
        (1, vec![0, 0, 8, 0, 0, 0, 0, 0, 0x40, 0]),
        (1, vec![0, 0, 8, 0, 0, 0, 0, 0, 0x40, 0]),
    ];
    let p = d.write("mixed.pcapng", &pcapng(&[1, 127], &frames, true));
    if let Some(n) = tshark_frames(&p) {
        assert_eq!(n, 5);
    }
    let (r, stderr) = d.classify_json(&p);
    assert_eq!(r["frames"]["packets"], 5);
    assert_eq!(r["ipv6"]["packets"], 2);
    let links = r["capture"]["link_types"].as_array().unwrap();
    assert_eq!(links.len(), 2, "{links:?}");
    assert_eq!(links[0]["link_type"], 1);
    assert_eq!(links[0]["name"], "ETHERNET");
    assert_eq!(links[0]["frames"], 2);
    assert_eq!(links[0]["decoded"], true);
    assert_eq!(links[1]["link_type"], 127);
    assert_eq!(links[1]["name"], "IEEE802_11_RADIOTAP");
    assert_eq!(links[1]["frames"], 3);
    assert_eq!(links[1]["decoded"], false);
    assert!(
        stderr.contains("link type 127 (IEEE802_11_RADIOTAP): 3 frames, not decoded"),
        "{stderr}"
    );
    assert!(!stderr.contains("no frame of the capture"), "{stderr}");

    let o = d.classify(&p, &[]);
    assert_eq!(o.code(), Some(0));
    let table = o.stdout_text();
    assert!(
        table.contains("link type 1 (ETHERNET): 2 frames\n"),
        "{table}"
    );
    assert!(
        table.contains("link type 127 (IEEE802_11_RADIOTAP): 3 frames, not decoded"),
        "{table}"
    );
}

#[test]
fn a_capture_with_no_decodable_frame_says_so_and_flows_gives_no_verdict() {
    let d = dir();
    // Frame Relay-less, IPv6-less: USB (189) frames only.
    let frames: Vec<_> = (0..4).map(|i| ((100 + i, 0), vec![0u8; 48])).collect();
    let p = d.write("usb.pcap", &pcap(US, 189, 0, &frames));
    let (r, stderr) = d.classify_json(&p);
    assert_eq!(r["frames"]["packets"], 4);
    assert_eq!(r["capture"]["link_types"][0]["name"], "USB_LINUX");
    assert!(
        stderr.contains("no frame of the capture could be decoded"),
        "{stderr}"
    );

    let o = flows(&p, &["--format", "json"]);
    assert_eq!(o.code(), Some(0), "{}", o.stderr_text());
    assert!(o.stderr_text().contains("not decoded"));
    let f: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(f["verdict"]["stands_in"].is_null(), "{}", f["verdict"]);
    let text = f["verdict"]["text"].as_str().unwrap();
    assert!(text.starts_with("No verdict"), "{text}");
    assert!(!text.contains("trivially"), "{text}");
}

#[test]
fn a_bad_timestamp_is_counted_and_every_frame_still_read() {
    let d = dir();
    for (name, magic, bad) in [
        ("micro.pcap", US, 1_000_000u32),
        ("nano.pcap", NS, 1_000_000_000u32),
    ] {
        let frames = vec![
            ((10, 5), udp6()),
            ((11, bad), udp6()),
            ((12, 7), icmp6()),
            ((13, bad + 3), udp6()),
        ];
        let p = d.write(name, &pcap(magic, 101, 0, &frames));
        if let Some(n) = tshark_frames(&p) {
            assert_eq!(n, 4, "{name}");
        }
        let (r, stderr) = d.classify_json(&p);
        assert_eq!(r["frames"]["packets"], 4, "{name}");
        assert_eq!(r["ipv6"]["packets"], 4, "{name}");
        assert!(r["stopped"].is_null(), "{name}: {}", r["stopped"]);
        assert_eq!(r["capture"]["bad_timestamps"], 2, "{name}");
        assert_eq!(r["capture"]["first_bad_timestamp"], 2, "{name}");
        assert!(
            stderr.contains(
                "2 records of the capture had a timestamp fraction out of range (first: frame 2)"
            ),
            "{name}: {stderr}"
        );
    }
}

#[test]
fn a_gzip_compressed_capture_is_read_like_the_plain_one() {
    let d = dir();
    let frames: Vec<_> = (0..50)
        .map(|i| {
            (
                (1000 + i, i * 10),
                if i % 3 == 0 { icmp6() } else { udp6() },
            )
        })
        .collect();
    let plain = pcap(NS, 101, 0, &frames);
    let p = d.write("plain.pcap", &plain);
    // Named without .gz on purpose: the magic decides, not the name.
    let z = d.write("compressed.cap", &gzip(&plain));
    let ng = d.write(
        "compressed-ng",
        &gzip(&pcapng(
            &[1],
            &[(0, ether(&udp6())), (0, ether(&icmp6()))],
            true,
        )),
    );
    // Two gzip members one after the other are one stream, as gunzip reads them.
    let half = plain.len() / 2;
    let mut two = gzip(&plain[..half]);
    two.extend(gzip(&plain[half..]));
    let members = d.write("members.pcap.gz", &two);

    let (want, _) = d.classify_json(&p);
    for path in [&z, &members] {
        if let Some(n) = tshark_frames(path) {
            assert_eq!(n, 50);
        }
        let (got, stderr) = d.classify_json(path);
        assert_eq!(got["capture"]["gzip"], true);
        for k in [
            "frames",
            "ipv6",
            "classes",
            "agreement",
            "rules",
            "five_unavailable",
        ] {
            assert_eq!(got[k], want[k], "{k} of {}: {stderr}", path.display());
        }
    }
    let (got, _) = d.classify_json(&ng);
    assert_eq!(got["source"]["kind"], "pcapng");
    assert_eq!(got["ipv6"]["packets"], 2);

    // Gzip around something that is not a capture: the error says both.
    let t = d.write("notes.gz", &gzip(b"these are my notes, not packets"));
    let o = d.classify(&t, &[]);
    assert_eq!(o.code(), Some(2));
    let e = o.stderr_text();
    assert!(
        e.contains("gzip-compressed") && e.contains("looks like text"),
        "{e}"
    );
    // A gzip stream cut short: an error, after the frames before the cut.
    let cut = d.write("cut.pcap.gz", &gzip(&plain)[..200]);
    let o = d.classify(&cut, &["--format", "json"]);
    assert_eq!(o.code(), Some(2), "{}", o.stderr_text());
}

#[test]
fn old_pcapng_whose_block_lengths_leave_out_the_padding_is_read() {
    let d = dir();
    // 62-byte Ethernet frames and a 5-byte one: lengths 28 + 62 + 4 = 94 and 37, not multiples of 4.
    let frames = vec![
        (0, ether(&udp6())),
        (0, vec![1, 2, 3, 4, 5]),
        (0, ether(&icmp6())),
    ];
    let p = d.write("old.ntar", &pcapng(&[1], &frames, false));
    if let Some(n) = tshark_frames(&p) {
        assert_eq!(n, 3);
    }
    let (r, _) = d.classify_json(&p);
    assert_eq!(r["frames"]["packets"], 3);
    assert_eq!(r["ipv6"]["packets"], 2);
    assert!(r["stopped"].is_null());
    // The lengths must still agree: a trailer that differs is corrupt.
    let mut bad = pcapng(&[1], &frames, false);
    let n = bad.len();
    bad[n - 1] ^= 0x40;
    let p = d.write("bad.ntar", &bad);
    let o = d.classify(&p, &[]);
    assert_eq!(o.code(), Some(2));
    assert!(o.stderr_text().contains("block lengths disagree"));
}

#[test]
fn a_modified_pcap_with_24_byte_record_headers_is_read() {
    let d = dir();
    let frames = vec![((1, 2), ether(&udp6())), ((3, 4), ether(&icmp6()))];
    let p = d.write("kuznetsov.pcap", &pcap(MODIFIED, 1, 8, &frames));
    if let Some(n) = tshark_frames(&p) {
        assert_eq!(n, 2);
    }
    let (r, _) = d.classify_json(&p);
    assert_eq!(r["frames"]["packets"], 2);
    assert_eq!(r["ipv6"]["packets"], 2);
    assert_eq!(r["classes"][0]["name"], "dns");
    assert_eq!(r["classes"][0]["five"]["packets"], 1);
    // Big-endian too.
    let mut be = pcap(MODIFIED, 1, 8, &frames);
    be[..4].copy_from_slice(&MODIFIED.to_be_bytes());
    for f in [4..6, 6..8, 16..20, 20..24] {
        be[f].reverse();
    }
    let mut at = 24;
    for (_, d) in &frames {
        for f in [0..4, 4..8, 8..12, 12..16] {
            be[at + f.start..at + f.end].reverse();
        }
        at += 24 + d.len();
    }
    let p = d.write("kuznetsov-be.pcap", &be);
    let (r, _) = d.classify_json(&p);
    assert_eq!(r["ipv6"]["packets"], 2);
}

#[test]
fn a_file_that_is_not_a_capture_is_refused_with_what_it_looks_like() {
    let d = dir();
    for (bytes, says) in [
        (&b"BZh91AY&SY\x00\x00"[..], "bzip2"),
        (b"PK\x03\x04\x14\x00\x00\x00", "zip archive"),
        (b"\xfd7zXZ\x00\x00\x04", "xz"),
        (b"snoop\x00\x00\x00\x00\x00\x00\x02", "snoop"),
        (b"hello, this is text\n", "looks like text"),
        (b"<html><body>", "HTML"),
        (&0xa12b_3c4du32.to_le_bytes()[..], "Navtel"),
    ] {
        let p = d.write("x.bin", &[bytes, &[0u8; 32][..]].concat());
        let o = d.classify(&p, &[]);
        assert_eq!(o.code(), Some(2));
        assert!(o.stdout.is_empty());
        let e = o.stderr_text();
        assert!(
            e.contains("not a pcap or pcapng file") && e.contains(says),
            "{says}: {e}"
        );
    }
}

#[test]
fn a_protocol_without_ports_has_null_ports_in_every_output() {
    let d = dir();
    let p = d.write("icmp.pcap", &pcap(US, 101, 0, &[((1, 0), icmp6())]));
    let jsonl = d.path.join("p.jsonl");
    let o = d.classify(&p, &["--packets", jsonl.to_str().unwrap()]);
    assert_eq!(o.code(), Some(0), "{}", o.stderr_text());
    let line: Value =
        serde_json::from_str(std::fs::read_to_string(&jsonl).unwrap().trim()).unwrap();
    assert_eq!(line["proto"], 58);
    assert!(line["sport"].is_null() && line["dport"].is_null(), "{line}");

    let o = flows(&p, &["--format", "json"]);
    assert_eq!(o.code(), Some(0), "{}", o.stderr_text());
    let f: Value = serde_json::from_slice(&o.stdout).unwrap();
    let row = &f["flows"][0];
    assert_eq!(row["proto"], 58);
    assert!(row["sport"].is_null() && row["dport"].is_null(), "{row}");
    assert_eq!(f["verdict"]["stands_in"], true);

    // The human table shows no port either.
    let table = flows(&p, &[]).stdout_text();
    let line = table
        .lines()
        .find(|l| l.contains("2001:db8::1"))
        .unwrap_or_else(|| panic!("{table}"));
    let cells: Vec<&str> = line.split('|').map(str::trim).collect();
    // | src | sport | dst | dport | proto | ...
    assert_eq!(
        (cells[2], cells[4], cells[5]),
        ("-", "-", "icmpv6"),
        "{line}"
    );
}
