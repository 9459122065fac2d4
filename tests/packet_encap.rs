//! IPv6 behind encapsulations: link layers (MPLS, PPPoE, PPP, Cisco HDLC, Frame Relay, NFLOG,
//! FabricPath) and tunnels (6in4, IPv6 in IPv6, GRE, ERSPAN, VXLAN, Geneve, Teredo, GTP-U),
//! built here byte by byte, with tshark as the oracle: `--tunnel outer` against tshark's first
//! occurrence of ipv6.src/dst/flow (and ports), `--tunnel inner` against its last.

use flowpol::packet::tunnel::{Kind, Mode};
use flowpol::packet::{Decoded, LinkType, NonIpv6, decode_in};
use flowpol::source::pcap::{CaptureReader, FrameWriter, PcapWriter};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::gate::{ci, have, shared_data};
use support::tshark::{Occurrence, Row};

use cases::*;
use support::encap as cases;

// ---- comparing ----------------------------------------------------------------------------

fn write_pcap(path: &Path, link: LinkType, frames: &[&[u8]]) {
    let mut w = PcapWriter::create(path, link).unwrap();
    for (i, f) in frames.iter().enumerate() {
        w.write_packet(Duration::from_secs(1 + i as u64), f.len() as u32, f)
            .unwrap();
    }
    w.flush().unwrap();
}

/// Our rows for a capture in one mode: (frames, IPv6 rows, non-IPv6 kinds by frame).
fn ours(path: &Path, mode: Mode) -> (u64, BTreeMap<u64, Row>, BTreeMap<u64, NonIpv6>) {
    let mut r = CaptureReader::open(path).unwrap();
    let (mut rows, mut not) = (BTreeMap::new(), BTreeMap::new());
    let n = r
        .for_each(|f| match decode_in(mode, f.link, f.data) {
            Decoded::Ipv6(k) => {
                let mut ports = BTreeMap::new();
                if let Ok(t) = k.five
                    && matches!(t.proto, 6 | 17 | 132)
                {
                    ports.insert(t.proto, (t.sport, t.dport));
                }
                let row = Row {
                    src: k.three.src_addr().to_string(),
                    dst: k.three.dst_addr().to_string(),
                    label: k.three.label.value(),
                    ports,
                };
                rows.insert(f.number, row);
            }
            Decoded::NonIpv6(kind) => {
                not.insert(f.number, kind);
            }
        })
        .unwrap();
    (n, rows, not)
}

/// Compares a capture with tshark in one mode; returns the IPv6 packets compared. Frames
/// tshark sees IPv6 in and we do not must be ones we name as carrying it (outer mode).
fn agree(path: &Path, mode: Mode) -> usize {
    let occurrence = match mode {
        Mode::Outer => Occurrence::First,
        Mode::Inner => Occurrence::Last,
    };
    let (t_frames, theirs) = support::tshark::rows_at(path, occurrence);
    let (o_frames, rows, not) = ours(path, mode);
    let name = format!("{} ({mode:?})", path.display());
    assert_eq!(o_frames, t_frames, "{name}: frame count");
    for (n, row) in &rows {
        let Some(t) = theirs.get(n) else {
            panic!("{name} frame {n}: we see IPv6 {row:?}, tshark does not")
        };
        assert_eq!(
            (&row.src, &row.dst, row.label),
            (&t.src, &t.dst, t.label),
            "{name} frame {n}"
        );
        for (proto, p) in &row.ports {
            assert_eq!(t.ports.get(proto), Some(p), "{name} frame {n}: ports");
        }
    }
    for n in theirs.keys() {
        assert!(
            rows.contains_key(n)
                || (mode == Mode::Outer && not.get(n) == Some(&NonIpv6::Ipv4CarryingIpv6)),
            "{name} frame {n}: tshark sees IPv6, we do not ({:?})",
            not.get(n)
        );
    }
    rows.len()
}

/// The expected keys of every case, checked without tshark.
fn check_expected(link: LinkType, c: &Case) {
    for (mode, want) in [(Mode::Outer, c.outer), (Mode::Inner, c.inner)] {
        let got = match decode_in(mode, link, &c.frame) {
            Decoded::Ipv6(k) => Tag(((k.three.src >> 80) & 0xffff) as u16),
            Decoded::NonIpv6(kind) => Not(kind),
        };
        assert_eq!(got, want, "{} ({mode:?})", c.name);
    }
    let kind = flowpol::packet::three_inner(link, &c.frame)
        .ok()
        .and_then(|(_, _, k)| k);
    assert_eq!(kind, c.kind, "{}: tunnel kind", c.name);
}

fn tshark_or_skip() -> bool {
    if have("tshark") {
        return true;
    }
    assert!(!ci(), "tshark is installed in CI");
    false
}

// ---- tests --------------------------------------------------------------------------------

#[test]
fn every_encapsulation_gives_the_expected_ipv6_header_in_each_mode() {
    for c in ethernet_cases() {
        check_expected(LinkType::ETHERNET, &c);
    }
    for (link, c) in link_cases() {
        check_expected(link, &c);
    }
}

#[test]
fn ethernet_encapsulations_and_tunnels_agree_with_tshark_in_both_modes() {
    if !tshark_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cases = ethernet_cases();
    let path = dir.path().join("encap.pcap");
    let frames: Vec<&[u8]> = cases.iter().map(|c| &c.frame[..]).collect();
    write_pcap(&path, LinkType::ETHERNET, &frames);
    let outer = agree(&path, Mode::Outer);
    let inner = agree(&path, Mode::Inner);
    let want = |f: fn(&Case) -> Want| cases.iter().filter(|c| matches!(f(c), Tag(_))).count();
    assert_eq!(outer, want(|c| c.outer));
    assert_eq!(inner, want(|c| c.inner));
}

#[test]
fn other_link_types_agree_with_tshark() {
    if !tshark_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (i, (link, c)) in link_cases().into_iter().enumerate() {
        let path = dir.path().join(format!("{i}-{}.pcap", link.0));
        write_pcap(&path, link, &[&c.frame]);
        for mode in [Mode::Outer, Mode::Inner] {
            assert_eq!(agree(&path, mode), 1, "{}: {link}", c.name);
        }
    }
}

#[test]
fn an_mpls_pseudowire_control_word_is_counted_as_such() {
    let frame = eth(
        0x8847,
        &mpls(&[100], &cat(&[&[0, 0, 0, 0][..], &v6_udp(1, 1)])),
    );
    for mode in [Mode::Outer, Mode::Inner] {
        assert!(matches!(
            decode_in(mode, LinkType::ETHERNET, &frame),
            Decoded::NonIpv6(NonIpv6::MplsPseudowire)
        ));
    }
}

#[test]
fn an_nflog_record_written_big_endian_or_without_payload_is_read_right() {
    let inner = v6_udp(40, 0x12345);
    let mut be = vec![10, 0, 0, 5];
    for (ty, value) in [(1u16, &[0x86, 0xdd, 1, 0][..]), (9, &inner[..])] {
        be.extend_from_slice(&((4 + value.len()) as u16).to_be_bytes());
        be.extend_from_slice(&ty.to_be_bytes());
        be.extend_from_slice(value);
        while !be.len().is_multiple_of(4) {
            be.push(0);
        }
    }
    let Decoded::Ipv6(k) = decode_in(Mode::Outer, LinkType::NFLOG, &be) else {
        panic!("big-endian NFLOG not decoded")
    };
    assert_eq!(k.three.label.value(), 0x12345);
    let no_payload = cat(&[&[10, 0, 0, 5][..], &tlv(10, b"prefix")]);
    assert!(matches!(
        decode_in(Mode::Outer, LinkType::NFLOG, &no_payload),
        Decoded::NonIpv6(NonIpv6::Other)
    ));
    let ipv4 = cat(&[&[2, 0, 0, 5][..], &tlv(9, &v4(17, &udp(1, 2, b"x")))]);
    assert!(matches!(
        decode_in(Mode::Outer, LinkType::NFLOG, &ipv4),
        Decoded::NonIpv6(NonIpv6::Ipv4)
    ));
}

#[test]
fn tunnels_nested_deeper_than_the_bound_stop_at_the_bound() {
    // Six levels of IPv6 in IPv6: the walk steps into four and keys the fourth.
    let mut p = v6_udp(6, 6);
    for tag in (0..6).rev() {
        p = v6(tag, tag.into(), 41, &p);
    }
    let Decoded::Ipv6(k) = decode_in(Mode::Inner, LinkType::RAW, &p) else {
        panic!("not decoded")
    };
    assert_eq!(
        (k.three.src >> 80) & 0xffff,
        flowpol::packet::tunnel::MAX_DEPTH as u128
    );
}

#[test]
fn cut_short_at_every_length_no_encapsulation_panics() {
    let mut all: Vec<(LinkType, Vec<u8>)> = ethernet_cases()
        .into_iter()
        .map(|c| (LinkType::ETHERNET, c.frame))
        .collect();
    all.extend(link_cases().into_iter().map(|(l, c)| (l, c.frame)));
    for (link, frame) in &all {
        for n in 0..=frame.len() {
            for mode in [Mode::Outer, Mode::Inner] {
                let _ = decode_in(mode, *link, &frame[..n]);
            }
        }
        // And with every byte flipped in turn at full length.
        for i in 0..frame.len() {
            let mut f = frame.clone();
            f[i] ^= 0xff;
            let _ = decode_in(Mode::Inner, *link, &f);
        }
    }
}

fn classify_json(pcap: &Path, tunnel: &str, policy: &Path) -> Value {
    let out = support::flowpol!()
        .args(["classify", "--format", "json", "--tunnel", tunnel])
        .arg("--policy")
        .arg(policy)
        .arg("--pcap")
        .arg(pcap)
        .output_ok();
    serde_json::from_str(&out).unwrap()
}

#[test]
fn classify_counts_ipv4_carrying_ipv6_with_outer_and_tunnels_by_kind_with_inner() {
    let dir = tempfile::tempdir().unwrap();
    let cases = ethernet_cases();
    let pcap = dir.path().join("encap.pcap");
    let frames: Vec<&[u8]> = cases.iter().map(|c| &c.frame[..]).collect();
    write_pcap(&pcap, LinkType::ETHERNET, &frames);
    let policy = dir.path().join("p.flowpol");
    std::fs::write(&policy, "default pass\nthree {\n}\nfive {\n}\n").unwrap();

    let count = |f: &dyn Fn(&Case) -> bool| cases.iter().filter(|c| f(c)).count() as u64;
    let outer = classify_json(&pcap, "outer", &policy);
    assert_eq!(
        outer["non_ipv6"]["ipv4-carrying-ipv6"]["packets"],
        count(&|c| c.outer == Not(NonIpv6::Ipv4CarryingIpv6))
    );
    assert_eq!(
        outer["ipv6"]["packets"],
        count(&|c| matches!(c.outer, Tag(_)))
    );
    assert_eq!(outer["tunnels"], serde_json::json!({}));

    let inner = classify_json(&pcap, "inner", &policy);
    assert_eq!(inner["non_ipv6"]["ipv4-carrying-ipv6"]["packets"], 0);
    assert_eq!(
        inner["ipv6"]["packets"],
        count(&|c| matches!(c.inner, Tag(_)))
    );
    for k in Kind::ALL {
        let n = count(&|c| c.kind == Some(k));
        let got = &inner["tunnels"][k.as_str()]["packets"];
        if n == 0 {
            assert!(got.is_null(), "{k}: {got}");
        } else {
            assert_eq!(*got, n, "{k}");
        }
    }

    let table = support::flowpol!()
        .args(["classify", "--tunnel", "inner"])
        .arg("--policy")
        .arg(&policy)
        .arg("--pcap")
        .arg(&pcap)
        .output_ok();
    assert!(
        table.contains("IPv6 inside tunnels (--tunnel inner): 6in4 1, 6in6 1"),
        "{table}"
    );
    let table = support::flowpol!()
        .args(["classify"])
        .arg("--policy")
        .arg(&policy)
        .arg("--pcap")
        .arg(&pcap)
        .output_ok();
    assert!(table.contains("(use --tunnel inner)"), "{table}");

    let flows = |t: &str| -> Value {
        let out = support::flowpol!()
            .args(["flows", "--format", "json", "--tunnel", t])
            .arg("--pcap")
            .arg(&pcap)
            .output_ok();
        serde_json::from_str(&out).unwrap()
    };
    assert_eq!(flows("outer")["ipv6"]["packets"], outer["ipv6"]["packets"]);
    assert_eq!(flows("inner")["ipv6"]["packets"], inner["ipv6"]["packets"]);
}

/// The captures in the repository and in ../shared/data/pcaps: tshark agrees in both modes,
/// and where there is no tunnel the two modes key the same packets.
#[test]
fn real_captures_agree_with_tshark_in_both_modes() {
    if !tshark_or_skip() {
        return;
    }
    let mut files = vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/demo.pcap")];
    if let Some(dir) = shared_data("pcaps", "the real-capture comparison") {
        let mut shared: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        shared.sort();
        files.extend(shared);
    }
    for f in &files {
        let outer = agree(f, Mode::Outer);
        let inner = agree(f, Mode::Inner);
        eprintln!("{}: {outer} outer, {inner} inner", f.display());
        let (_, o, _) = ours(f, Mode::Outer);
        let (_, i, _) = ours(f, Mode::Inner);
        if o.keys().eq(i.keys()) && outer == inner {
            continue;
        }
        // A capture with tunnels: inner keys at least every frame outer keys.
        assert!(o.keys().all(|n| i.contains_key(n)), "{}", f.display());
    }
}

#[global_allocator]
static A: support::alloc::Counting = support::alloc::Counting;

#[test]
fn the_step_with_tunnel_inner_allocates_nothing_per_frame() {
    use flowpol::classify::Linear;
    use flowpol::packet::{FiveTuple, Frame, ThreeTuple};
    let policy = flowpol::policy::load_str("p", "default pass\nthree {\n}\nfive {\n}\n").unwrap();
    let (c3, c5) = (
        Linear::<ThreeTuple>::new(&policy),
        Linear::<FiveTuple>::new(&policy),
    );
    let mut all: Vec<(LinkType, Vec<u8>)> = ethernet_cases()
        .into_iter()
        .map(|c| (LinkType::ETHERNET, c.frame))
        .collect();
    all.extend(link_cases().into_iter().map(|(l, c)| (l, c.frame)));
    for mode in [Mode::Outer, Mode::Inner] {
        let mut step = flowpol::pipeline::Step::new(&c3, &c5).with_tunnel(mode);
        let mut tally = step.tally(&policy);
        let before = support::alloc::thread_allocations();
        for (i, (link, data)) in all.iter().enumerate() {
            let f = Frame {
                number: i as u64 + 1,
                link: *link,
                ts: Duration::ZERO,
                orig_len: data.len() as u32,
                data,
            };
            step.count(&f, &mut tally);
        }
        assert_eq!(support::alloc::thread_allocations(), before, "{mode:?}");
        let tunnelled: u64 = tally.tunnels.iter().map(|c| c.packets).sum();
        let want = ethernet_cases().iter().filter(|c| c.kind.is_some()).count() as u64;
        match mode {
            Mode::Outer => assert_eq!(tunnelled, 0),
            Mode::Inner => assert_eq!(tunnelled, want),
        }
    }
}
