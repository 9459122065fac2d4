//! The generator: the bundled demo capture regenerates byte for byte, and `gen trace` writes
//! files that read back with the frame count asked for.

use flowpol::r#gen::trace::{self, DEMO};
use flowpol::source::pcap::{CaptureReader, Format, PcapWriter};
use support::{OutputExt, flowpol};

const DEMO_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/demo.pcap");

#[test]
fn demo_capture_regenerates_identically() {
    let mut w = PcapWriter::new(Vec::new(), DEMO.link).unwrap();
    trace::generate(&DEMO, &mut w).unwrap();
    let bytes = w.into_inner().unwrap();
    let committed = std::fs::read(DEMO_PATH).unwrap();
    assert!(
        committed.len() < 1 << 20,
        "the demo capture should stay under 1 MiB"
    );
    assert!(
        bytes == committed,
        "tests/data/demo.pcap differs from `flowpol gen trace --flows {} --packets {} --seed {}`",
        DEMO.flows,
        DEMO.packets,
        DEMO.seed
    );
}

#[test]
fn gen_trace_cli_matches_library_and_writes_pcapng() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo.pcap");
    let st = flowpol!()
        .args(["gen", "trace", "--out"])
        .arg(&out)
        .args(["--flows", "40", "--packets", "1500", "--seed", "6437"])
        .output();
    assert!(st.status.success(), "{}", st.stderr_text());
    assert!(std::fs::read(&out).unwrap() == std::fs::read(DEMO_PATH).unwrap());

    let ng = dir.path().join("t.pcapng");
    let st = flowpol!()
        .args(["gen", "trace", "--packets", "321", "--seed", "9", "--out"])
        .arg(&ng)
        .output();
    assert!(st.status.success(), "{}", st.stderr_text());
    let mut r = CaptureReader::open(&ng).unwrap();
    assert_eq!(r.format(), Format::Pcapng);
    assert_eq!(r.for_each(|_| ()).unwrap(), 321);
}
