//! End to end in the kernel: `flowpol compile --target nft --hook input` loaded into one end of
//! a veth pair, labelled IPv6 frames (UDP, TCP, a hop-by-hop header, a fragmented datagram)
//! sent from the other end, and `flowpol nft stats` per rule equal, packets and bytes, to what
//! flowpol measures on the same frames (`flowpol classify` on a capture of them, and the linear
//! engine on the tuples they were built from).
//!
//! Sending: frames are built here (etherparse), written to a capture and put on the wire by
//! `flowpol replay` in the sending namespace; one test sends with `flowpol send` through the
//! sender's own IPv6 stack instead.

use flowpol::classify::{Classifier, Linear};
use flowpol::packet::key::{FiveTuple, ThreeTuple};
use flowpol::policy::model::{
    Action, AddrMatch, FiveMatch, LabelMatch, Policy, PortMatch, Prefix, Rule,
};
use std::collections::BTreeMap;
use std::process::Command;
use support::compile::*;
use support::flowpol;
use support::gate::require_root;
use support::netns::{VethPair, mac};
use support::proc::spawn_until;

fn addr(s: &str) -> u128 {
    u128::from(s.parse::<std::net::Ipv6Addr>().unwrap())
}

fn policy(b_net: Prefix) -> Policy {
    let p48 = |n: u128| Prefix::new(DB8 | (n << 80), 48);
    let mut three = vec![three_rule(
        "frag-hop",
        vec![p48(1)],
        vec![],
        range(0x100, 0x1ff),
        Action::Class("gold".into()),
    )];
    // A run of disjoint rules: compiled into a verdict map.
    let acts = [
        Action::Drop,
        Action::Pass,
        Action::Class("silver".into()),
        Action::Class("bronze".into()),
    ];
    for i in 0..6u32 {
        three.push(three_rule(
            &format!("d{i}"),
            vec![p48(2)],
            vec![b_net],
            LabelMatch::Exact(fl(0x10 + i)),
            acts[i as usize % 4].clone(),
        ));
    }
    three.push(three_rule(
        "masked",
        vec![Prefix::new(DB8, 32)],
        vec![],
        LabelMatch::Masked {
            value: 0x10001,
            mask: 0xf000f,
        },
        Action::Class("bronze".into()),
    ));
    three.push(three_rule(
        "catch",
        vec![Prefix::new(DB8, 32)],
        vec![],
        LabelMatch::Any,
        Action::Pass,
    ));
    Policy {
        classes: classes(),
        three,
        five: vec![],
        default: Action::Pass,
        default_explicit: true,
    }
}

fn packets(dst: u128) -> Vec<Pkt> {
    let src = |n: u128, host: u128| DB8 | (n << 80) | host;
    let mut v = Vec::new();
    let mut push = |s, label, shape, count: usize| {
        for k in 0..count {
            v.push(Pkt {
                src: s,
                dst,
                label,
                shape,
                sport: 40000 + k as u16,
                dport: 9,
            });
        }
    };
    push(src(1, 1), 0x150, Shape::Udp, 3);
    push(src(1, 2), 0x1ff, Shape::HopUdp, 2);
    // One datagram in two fragments: both carry the label, both count for the rule.
    push(src(1, 3), 0x100, Shape::FragFirst, 1);
    push(src(1, 3), 0x100, Shape::FragRest, 1);
    for i in 0..6u32 {
        push(
            src(2, u128::from(i) + 1),
            0x10 + i,
            if i % 2 == 0 { Shape::Udp } else { Shape::Tcp },
            i as usize + 1,
        );
    }
    push(src(2, 9), 0x16, Shape::Udp, 2); // label outside d0..d5: falls to catch
    push(src(7, 1), 0x1fff1, Shape::Udp, 4); // masked
    push(src(2, 1), 0x30001, Shape::Udp, 1); // masked, also in d*'s prefix
    push(src(9, 1), 0x0, Shape::Tcp, 2); // catch, unlabelled
    push(addr("2001:db9::1"), 0x12345, Shape::Udp, 3); // default (outside 2001:db8::/32)
    v
}

fn stats(ns: &str) -> serde_json::Value {
    let out = flowpol!()
        .in_ns(ns)
        .args(["nft", "stats", "--format", "json"])
        .output_ok();
    serde_json::from_str(&out).unwrap()
}

/// Loads `policy` compiled for `engine` into `pair.b` on `hook` (input: frames to b's address;
/// prerouting: any destination), sends `pkts` from `pair.a`, and checks the kernel's per-rule
/// counters (packets and bytes) against `expected` (per rule, the default last) for both
/// encodings.
fn run(
    pair: &VethPair,
    policy: &Policy,
    engine: &str,
    hook: &str,
    pkts: &[Pkt],
    expected: &[u64],
    idx: impl Fn(&Pkt) -> Option<usize>,
) {
    let smac = mac(&pair.a, &pair.a_if);
    let dmac = mac(&pair.b, &pair.b_if);
    let n = expected.len() - 1;
    let names: Vec<&str> = match engine {
        "three" => policy.three.iter().map(|r| r.name.as_str()).collect(),
        _ => policy.five.iter().map(|r| r.name.as_str()).collect(),
    };
    let action = |i: usize| match engine {
        "three" => policy.three[i].action.to_string(),
        _ => policy.five[i].action.to_string(),
    };
    let frames: Vec<Vec<u8>> = pkts.iter().map(|p| p.frame(smac, dmac)).collect();
    let mut expected_bytes = vec![0u64; expected.len()];
    for (p, f) in pkts.iter().zip(&frames) {
        if let Some(i) = idx(p) {
            expected_bytes[i] += (f.len() - 14) as u64; // nft counts the IPv6 packet
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let pol_file = dir.path().join("e2e.fpol");
    std::fs::write(&pol_file, flowpol::policy::fmt::format(policy)).unwrap();

    // flowpol's own measurement of the same frames: `flowpol classify` on a capture of them.
    let cap = dir.path().join("sent.pcap");
    write_pcap(&cap, &frames);
    let o = flowpol!()
        .args(["classify", "--format", "json", "--policy"])
        .arg(&pol_file)
        .arg("--pcap")
        .arg(&cap)
        .output();
    assert!(
        o.status.success(),
        "flowpol classify: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let measured: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let measured_rules: BTreeMap<String, (u64, u64)> = measured["rules"][engine]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                (r["packets"].as_u64().unwrap(), r["bytes"].as_u64().unwrap()),
            )
        })
        .collect();
    for (i, name) in names.iter().enumerate() {
        // flowpol counts frame bytes, nft the IPv6 packet: 14 bytes of Ethernet header apart.
        let (p, b) = measured_rules[*name];
        assert_eq!(
            (p, b - 14 * p),
            (expected[i], expected_bytes[i]),
            "flowpol classify vs test: rule {name}"
        );
    }
    let measured_unavailable = if engine == "five" {
        measured["five_unavailable"]["total"]["packets"]
            .as_u64()
            .unwrap()
    } else {
        0
    };

    for encoding in ["auto", "plain"] {
        let rules = dir.path().join(format!("{encoding}.nft"));
        let o = flowpol!()
            .args([
                "compile",
                "--target",
                "nft",
                "--hook",
                hook,
                "--engine",
                engine,
                "--encoding",
                encoding,
                "-o",
            ])
            .arg(&rules)
            .arg(&pol_file)
            .output();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let text = std::fs::read_to_string(&rules).unwrap();
        eprintln!(
            "{engine} {encoding}: {} maps",
            text.matches("vmap @g").count()
        );
        // auto makes a map only where it loads faster than the rules written plain.
        let planned = flowpol::compile::nft::compile(
            policy,
            &flowpol::compile::nft::NftOptions {
                engine: if engine == "three" {
                    flowpol::policy::syntax::TupleKind::Three
                } else {
                    flowpol::policy::syntax::TupleKind::Five
                },
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            text.contains("vmap @g0"),
            encoding == "auto" && planned.groups > 0,
            "{text}"
        );
        // auto: the one-command deploy (`flowpol compile --apply` in the namespace); plain: the
        // printed ruleset through `nft -f`.
        let o = if encoding == "auto" {
            flowpol!()
                .in_ns(&pair.b)
                .args([
                    "compile",
                    "--target",
                    "nft",
                    "--apply",
                    "--hook",
                    hook,
                    "--engine",
                    engine,
                    pol_file.to_str().unwrap(),
                ])
                .output()
        } else {
            support::netns::exec(&pair.b, &["nft", "-f", rules.to_str().unwrap()])
                .output()
                .unwrap()
        };
        assert!(
            o.status.success(),
            "nft -f: {}",
            String::from_utf8_lossy(&o.stderr)
        );

        let sent = flowpol!()
            .in_ns(&pair.a)
            .args([
                "replay",
                "--fast",
                "--format",
                "json",
                "--iface",
                &pair.a_if,
                cap.to_str().unwrap(),
            ])
            .output_ok();
        let sent: serde_json::Value = serde_json::from_str(&sent).unwrap();
        assert_eq!(
            sent["frames_sent"].as_u64(),
            Some(pkts.len() as u64),
            "{sent}"
        );
        // Wait until the receiver has counted every frame (softirq work may lag on a busy host).
        let mut v = stats(&pair.b);
        for _ in 0..100 {
            if v["packets"].as_u64().unwrap() >= pkts.len() as u64 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            v = stats(&pair.b);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        let v = if v["packets"].as_u64().unwrap() >= pkts.len() as u64 {
            stats(&pair.b)
        } else {
            v
        };
        assert_eq!(v["engine"].as_str(), Some(engine));
        let mut got: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for r in v["rules"].as_array().unwrap() {
            got.insert(
                r["name"].as_str().unwrap().to_string(),
                (r["packets"].as_u64().unwrap(), r["bytes"].as_u64().unwrap()),
            );
        }
        for (i, name) in names.iter().enumerate() {
            assert_eq!(
                got.get(*name),
                Some(&(expected[i], expected_bytes[i])),
                "{engine} {encoding}: rule {name} (packets, bytes); all: {got:?}"
            );
        }
        let (dp, _) = got["default"];
        // Five: packets without a 5-tuple (flowpol assigns them no rule) have their own counter.
        let unavailable = pkts.iter().filter(|p| idx(p).is_none()).count() as u64;
        let (up, _) = got.get("unavailable").copied().unwrap_or((0, 0));
        assert_eq!(up, unavailable, "{engine} {encoding}: unavailable");
        assert_eq!(
            up, measured_unavailable,
            "{engine} {encoding}: unavailable, kernel vs flowpol classify"
        );
        assert_eq!(got.contains_key("unavailable"), engine == "five");
        assert_eq!(dp, expected[n], "{engine} {encoding}: default");
        // Per class (class name, pass, drop): the sums of its rules and the default.
        let outcome = |a: String| a.strip_prefix("class ").map(str::to_string).unwrap_or(a);
        let classes = v["classes"].as_array().unwrap();
        assert!(classes.len() >= 2);
        for c in classes {
            let name = c["name"].as_str().unwrap();
            let want: u64 = (0..n)
                .filter(|&i| outcome(action(i)) == name)
                .map(|i| expected[i])
                .sum();
            let default = if outcome(policy.default.to_string()) == name {
                dp + up
            } else {
                0
            };
            assert_eq!(
                c["packets"].as_u64().unwrap(),
                want + default,
                "{engine} {encoding}: class {name}"
            );
        }
    }
}

#[test]
fn kernel_counters_equal_flowpol_per_rule() {
    if !require_root("kernel_counters_equal_flowpol_per_rule") {
        return;
    }
    let pair = VethPair::new("ck");
    let pair = pair.quiet_a();
    let b = addr(&pair.b_addr);
    let policy = policy(Prefix::new(b, 64));
    let pkts = packets(b);
    let expected = expected_three(&policy, &pkts);
    assert!(
        expected.iter().all(|&c| c > 0),
        "every rule and the default get packets: {expected:?}"
    );
    let lin = Linear::<ThreeTuple>::new(&policy);
    let n = policy.three.len();
    run(pair, &policy, "three", "input", &pkts, &expected, |p| {
        Some(lin.classify(&p.three()).map_or(n, |r| r.index()))
    });
}

/// The 5-tuple counterpart: ports behind a hop-by-hop header and in a first fragment are read
/// by both; a later fragment has no 5-tuple for flowpol and matches no port rule in nft.
#[test]
fn kernel_counters_equal_flowpol_per_rule_five() {
    if !require_root("kernel_counters_equal_flowpol_per_rule_five") {
        return;
    }
    let pair = VethPair::new("ck5");
    let pair = pair.quiet_a();
    let b = addr(&pair.b_addr);
    let b_net = AddrMatch(vec![Prefix::new(b, 64)]);
    let p48 = |n: u128| AddrMatch(vec![Prefix::new(DB8 | (n << 80), 48)]);
    let rule = |name: &str,
                src: AddrMatch,
                dst: AddrMatch,
                proto: u8,
                sport: PortMatch,
                dport: PortMatch,
                action: Action| Rule {
        name: name.into(),
        matcher: FiveMatch {
            src,
            dst,
            proto: Some(proto),
            sport,
            dport,
        },
        action,
        span: Default::default(),
    };
    let port = |p: u16| PortMatch { lo: p, hi: p };
    let mut five = vec![rule(
        "dns",
        AddrMatch::any(),
        b_net.clone(),
        17,
        PortMatch::ANY,
        port(53),
        Action::Class("gold".into()),
    )];
    for i in 0..5u16 {
        five.push(rule(
            &format!("svc{i}"),
            p48(2),
            b_net.clone(),
            17,
            PortMatch {
                lo: 1024,
                hi: 65535,
            },
            port(7000 + i),
            Action::Drop,
        ));
    }
    five.push(rule(
        "web",
        AddrMatch::any(),
        AddrMatch::any(),
        6,
        PortMatch::ANY,
        PortMatch { lo: 443, hi: 444 },
        Action::Pass,
    ));
    let policy = Policy {
        classes: classes(),
        three: vec![],
        five,
        default: Action::Pass,
        default_explicit: true,
    };
    let src = |n: u128, h: u128| DB8 | (n << 80) | h;
    let mut pkts = Vec::new();
    let mut push = |s, shape, sport, dport, count: usize| {
        for _ in 0..count {
            pkts.push(Pkt {
                src: s,
                dst: b,
                label: 0x12345,
                shape,
                sport,
                dport,
            });
        }
    };
    push(src(1, 1), Shape::Udp, 5000, 53, 2);
    push(src(1, 2), Shape::HopUdp, 5000, 53, 2);
    push(src(1, 3), Shape::FragFirst, 5000, 53, 1);
    push(src(1, 3), Shape::FragRest, 5000, 53, 1);
    for i in 0..5u16 {
        push(src(2, 1), Shape::Udp, 2000, 7000 + i, usize::from(i) + 1);
    }
    push(src(2, 1), Shape::Udp, 80, 7001, 2); // sport below 1024: default
    push(src(3, 1), Shape::Tcp, 33000, 443, 2);
    push(src(3, 1), Shape::Tcp, 33000, 444, 1);
    push(src(3, 1), Shape::Tcp, 33000, 22, 1); // default
    let expected = expected_five(&policy, &pkts);
    assert!(
        expected.iter().all(|&c| c > 0),
        "every rule and the default get packets: {expected:?}"
    );
    let lin = Linear::<FiveTuple>::new(&policy);
    let n = policy.five.len();
    run(pair, &policy, "five", "input", &pkts, &expected, |p| {
        p.five().map(|k| lin.classify(&k).map_or(n, |r| r.index()))
    });
}

/// Random policies mixing overlapping rules (plain, or maps that jump over disjoint rules) and
/// long disjoint runs (maps), on hook prerouting so packets may carry any destination: the
/// kernel's counters equal flowpol's per rule, for both encodings.
#[test]
fn kernel_counters_equal_flowpol_on_random_policies() {
    if !require_root("kernel_counters_equal_flowpol_on_random_policies") {
        return;
    }
    let pair = VethPair::new("ckr");
    let pair = pair.quiet_a();
    for seed in [11u64, 12, 13] {
        // Disjoint rules first (an overlapping policy may open with a catch-all), with a few
        // overlapping ones among them, then an overlapping tail.
        let mut three = big_three(60, seed).three;
        let over = overlapping_three(seed, 30).three;
        for (k, r) in over.iter().take(5).enumerate() {
            three.insert(10 * k + 5, r.clone());
        }
        three.extend(over.into_iter().skip(5));
        for (i, r) in three.iter_mut().enumerate() {
            r.name = format!("{}-{i}", r.name);
        }
        let policy = Policy {
            classes: classes(),
            three,
            five: vec![],
            default: Action::Drop,
            default_explicit: true,
        };
        let shapes = [
            Shape::Udp,
            Shape::Tcp,
            Shape::HopUdp,
            Shape::FragFirst,
            Shape::FragRest,
        ];
        let pkts = packets_near(&policy, 400, seed, &shapes);
        let expected = expected_three(&policy, &pkts);
        assert!(
            expected.iter().filter(|&&c| c > 0).count() > 20,
            "{expected:?}"
        );
        let lin = Linear::<ThreeTuple>::new(&policy);
        let n = policy.three.len();
        run(
            pair,
            &policy,
            "three",
            "prerouting",
            &pkts,
            &expected,
            |p| Some(lin.classify(&p.three()).map_or(n, |r| r.index())),
        );
    }
}

/// The deployment the issue describes: traffic from `flowpol send` (the sender's own IPv6 stack:
/// leased labels, a datagram larger than the MTU that leaves as fragments), the ruleset loaded
/// with `flowpol compile --apply`, and the kernel's counters equal, rule by rule, what
/// `flowpol watch` counts live on the receiving interface, and what `flowpol classify` counts on
/// a capture of the same arriving traffic.
#[test]
fn kernel_counters_equal_flowpol_watch_with_flowpol_send() {
    if !require_root("kernel_counters_equal_flowpol_watch_with_flowpol_send") {
        return;
    }
    let pair = VethPair::new("cks");
    let a = addr(&pair.a_addr);
    let from_a = || vec![Prefix::new(a, 128)];
    let three = vec![
        three_rule(
            "gold",
            from_a(),
            vec![],
            LabelMatch::Exact(fl(0x11111)),
            Action::Class("gold".into()),
        ),
        three_rule(
            "fragmented",
            from_a(),
            vec![],
            range(0x22000, 0x220ff),
            Action::Class("silver".into()),
        ),
        three_rule(
            "masked",
            from_a(),
            vec![],
            LabelMatch::Masked {
                value: 0x30000,
                mask: 0xf0000,
            },
            Action::Drop,
        ),
    ];
    let policy = Policy {
        classes: classes(),
        three,
        five: vec![],
        default: Action::Pass,
        default_explicit: true,
    };
    let dir = tempfile::tempdir().unwrap();
    let pol_file = dir.path().join("send.fpol");
    std::fs::write(&pol_file, flowpol::policy::fmt::format(&policy)).unwrap();
    let pol = pol_file.to_str().unwrap();
    let o = flowpol!()
        .in_ns(&pair.b)
        .args(["compile", "--target", "nft", "--apply", pol])
        .output();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Capture what arrives at b (immediate mode, packet-buffered, stopped with SIGINT).
    let cap = dir.path().join("arrived.pcap");
    let (mut tcpdump, _) = spawn_until(
        support::netns::exec(
            &pair.b,
            &[
                "tcpdump",
                "--immediate-mode",
                "-i",
                &pair.b_if,
                "-Q",
                "in",
                "-U",
                "-w",
                cap.to_str().unwrap(),
                "ip6",
            ],
        ),
        "listening on",
        "tcpdump",
    );

    // And flowpol's own live loop on the same interface: `flowpol watch` until SIGINT.
    let (mut watch, _) = flowpol!()
        .in_ns(&pair.b)
        .args([
            "watch", "--iface", &pair.b_if, "--policy", pol, "--format", "json",
        ])
        .spawn_until("watching ");

    let sends: [(&str, &str, &str); 4] = [
        ("0x11111", "3", "64"),
        ("0x22010", "2", "3000"),
        ("0x3abcd", "4", "100"),
        ("0x44444", "1", "64"),
    ];
    for (label, count, size) in sends {
        let o = flowpol!()
            .in_ns(&pair.a)
            .args([
                "send",
                "--to",
                &pair.b_addr,
                "--port",
                "9",
                "--from",
                &pair.a_addr,
                "--label",
                label,
                "--count",
                count,
                "--size",
                size,
            ])
            .output();
        assert!(
            o.status.success(),
            "flowpol send --label {label}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // Every labelled packet counted by a rule (3 + 2 datagrams of 3 fragments + 4), then stop.
    let rule_packets = |v: &serde_json::Value| -> u64 {
        v["rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["index"].is_u64())
            .map(|r| r["packets"].as_u64().unwrap())
            .sum()
    };
    let mut v = stats(&pair.b);
    for _ in 0..100 {
        if rule_packets(&v) >= 3 + 2 * 2 + 4 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        v = stats(&pair.b);
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let v = stats(&pair.b);
    // `ip netns exec` execs tcpdump: the child's pid is tcpdump's own.
    let st = Command::new("kill")
        .args(["-INT", &tcpdump.child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    tcpdump.finish(std::time::Duration::from_secs(10));
    let st = Command::new("kill")
        .args(["-INT", &watch.child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let (status, out, err) = watch.finish(std::time::Duration::from_secs(15));
    assert!(status.success(), "flowpol watch: {status:?}\n{err}");
    let watched: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));

    let o = flowpol!()
        .args(["classify", "--format", "json", "--policy", pol, "--pcap"])
        .arg(&cap)
        .output();
    assert!(
        o.status.success(),
        "flowpol classify: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let measured: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let kernel: BTreeMap<String, (u64, u64)> = v["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                (r["packets"].as_u64().unwrap(), r["bytes"].as_u64().unwrap()),
            )
        })
        .collect();
    for r in measured["rules"]["three"].as_array().unwrap() {
        let name = r["name"].as_str().unwrap();
        let (p, b) = (r["packets"].as_u64().unwrap(), r["bytes"].as_u64().unwrap());
        if name == "default" {
            // Neighbour discovery and MLD from the sender land here in both; they may race the
            // start and end of the capture, so only presence is compared.
            assert!(
                p >= 1 && kernel["default"].0 >= 1,
                "default: classify {p}, kernel {:?}",
                kernel["default"]
            );
            continue;
        }
        assert_eq!(
            kernel[name],
            (p, b - 14 * p),
            "rule {name}: kernel vs flowpol classify (packets, bytes)"
        );
    }
    // The kernel's per-rule counters equal, rule by rule, what `flowpol watch` counted live.
    let mut compared = 0;
    for r in watched["rules"]["three"].as_array().unwrap() {
        let name = r["name"].as_str().unwrap();
        if name == "default" {
            continue;
        }
        let (p, b) = (r["packets"].as_u64().unwrap(), r["bytes"].as_u64().unwrap());
        assert_eq!(
            kernel[name],
            (p, b - 14 * p),
            "rule {name}: kernel vs flowpol watch (packets, bytes)"
        );
        compared += 1;
    }
    assert_eq!(compared, 3, "every rule compared with watch");
    assert_eq!(kernel["gold"].0, 3);
    assert!(
        kernel["fragmented"].0 >= 4,
        "a 3000-byte datagram leaves a 1500-byte MTU in fragments: {:?}",
        kernel["fragmented"]
    );
    assert_eq!(kernel["masked"].0, 4);
}
