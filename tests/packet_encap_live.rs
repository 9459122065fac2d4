//! `watch --tunnel` on a live link: the encapsulated frames of `packet_encap` replayed from one
//! end of a veth pair while `watch` reads the other, once keying the outer header and once the
//! inner. Root only (skips elsewhere, fails under CI=true).

use cases::*;
use support::encap as cases;

use flowpol::packet::tunnel::Kind;
use flowpol::packet::{LinkType, NonIpv6};
use flowpol::source::pcap::{FrameWriter, PcapWriter};
use serde_json::Value;
use std::time::Duration;
use support::flowpol;
use support::netns::VethPair;

fn watch(p: &VethPair, policy: &str, tunnel: &str, replay: &str) -> Value {
    let mut w = flowpol!()
        .in_ns(&p.b)
        .args(["watch", "--iface", &p.b_if, "--policy", policy])
        .args(["--format", "json", "--duration", "3", "--tunnel", tunnel])
        .spawn("watching ");
    w.wait_ready();
    flowpol!()
        .in_ns(&p.a)
        .args(["replay", "--iface", &p.a_if, replay, "--fast"])
        .output_ok();
    let (status, out, err) = w.finish(Duration::from_secs(15));
    assert!(status.success(), "watch failed ({status}):\n{out}\n{err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"))
}

#[test]
fn watch_keys_the_inner_header_with_tunnel_inner_and_names_ipv4_carrying_ipv6_without() {
    if !support::gate::require_root("packet_encap_live") {
        return;
    }
    let p = VethPair::new("enc");
    let dir = tempfile::tempdir().unwrap();
    let cases = ethernet_cases();
    let pcap = dir.path().join("encap.pcap");
    let mut w = PcapWriter::create(&pcap, LinkType::ETHERNET).unwrap();
    for c in &cases {
        w.write_packet(Duration::ZERO, c.frame.len() as u32, &c.frame)
            .unwrap();
    }
    w.flush().unwrap();
    drop(w);
    let policy = dir.path().join("p.flowpol");
    std::fs::write(&policy, "default pass\nthree {\n}\nfive {\n}\n").unwrap();
    let (policy, pcap) = (policy.to_str().unwrap(), pcap.to_str().unwrap());

    // The namespaces' own housekeeping (router solicitations, MLD) may be on the link too, but
    // none of it is IPv4 carrying IPv6 or tunnelled.
    let count = |f: &dyn Fn(&Case) -> bool| cases.iter().filter(|c| f(c)).count() as u64;
    let outer = watch(&p, policy, "outer", pcap);
    assert_eq!(
        outer["non_ipv6"]["ipv4-carrying-ipv6"]["packets"],
        count(&|c| c.outer == Not(NonIpv6::Ipv4CarryingIpv6)),
        "{}",
        outer["non_ipv6"]
    );
    assert_eq!(outer["tunnels"], serde_json::json!({}));

    let inner = watch(&p, policy, "inner", pcap);
    assert_eq!(inner["non_ipv6"]["ipv4-carrying-ipv6"]["packets"], 0);
    for k in Kind::ALL {
        let n = count(&|c| c.kind == Some(k));
        let got = &inner["tunnels"][k.as_str()]["packets"];
        if n == 0 {
            assert!(got.is_null(), "{k}: {got}");
        } else {
            assert_eq!(*got, n, "{k}: {}", inner["tunnels"]);
        }
    }
}
