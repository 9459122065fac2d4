//! `flowpol interop` end to end, as root, inside network namespaces of the test's own: a veth
//! pair with addresses assigned here (ULA, private IPv4, IPv4 link-local 169.254/16, the
//! kernel's IPv6 link-local), the binary run with `ip netns exec`, its JSON checked pair by
//! pair against what Linux must do.

use serde_json::Value;
use std::process::Output;
use std::time::{Duration, Instant};
use support::flowpol;
use support::gate::require_root;
use support::netns::{VethPair, sh, sysctl};

/// The addresses of namespace `a` the probe must find.
struct Host {
    pair: VethPair,
    v4: String,
    v6: String,
    ll4: String,
    ll6: String,
    ifindex: u64,
}

fn id_of(pair: &VethPair) -> String {
    // a_addr4 is 10.ID.0.1
    pair.a_addr4.split('.').nth(1).unwrap().to_string()
}

/// A veth pair plus an IPv4 link-local address on `va`; waits until the kernel's IPv6
/// link-local address of `va` is usable (not tentative).
fn host(tag: &str) -> Host {
    let pair = VethPair::new(tag);
    let ll4 = format!("169.254.{}.1", id_of(&pair));
    sh(&[
        "ip",
        "-n",
        &pair.a,
        "addr",
        "add",
        &format!("{ll4}/16"),
        "dev",
        "va",
        "scope",
        "link",
    ]);
    let start = Instant::now();
    let ll6 = loop {
        let out = sh(&[
            "ip", "-n", &pair.a, "-6", "-o", "addr", "show", "dev", "va", "scope", "link",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let addr = text
            .split_whitespace()
            .skip_while(|w| *w != "inet6")
            .nth(1)
            .map(|a| a.split('/').next().unwrap().to_string());
        match addr {
            Some(a) if !text.contains("tentative") => break a,
            _ if start.elapsed() > Duration::from_secs(5) => {
                panic!("no usable link-local on va: {text}")
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let out = sh(&["ip", "-n", &pair.a, "-o", "link", "show", "dev", "va"]);
    let ifindex = String::from_utf8_lossy(&out.stdout)
        .split(':')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    Host {
        v4: pair.a_addr4.clone(),
        v6: pair.a_addr.clone(),
        ll4,
        ll6,
        ifindex,
        pair,
    }
}

fn interop(ns: &str, args: &[&str]) -> Output {
    flowpol!().in_ns(ns).arg("interop").args(args).output()
}

fn interop_json(ns: &str, args: &[&str]) -> Vec<Value> {
    let mut full = vec!["--format", "json"];
    full.extend_from_slice(args);
    let out = interop(ns, &full);
    assert_eq!(
        out.status.code(),
        Some(0),
        "exit 0 expected (failing pairs are data): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    v.as_array().expect("a JSON array").clone()
}

/// The row of server `listen` (as in the JSON `listen` field) with the given V6ONLY setting
/// (None: any) and SO_BINDTODEVICE flag, and client `connect`.
fn row<'a>(
    rows: &'a [Value],
    listen: &str,
    v6only: Option<bool>,
    bind_device: bool,
    connect: &str,
) -> &'a Value {
    let hits: Vec<&Value> = rows
        .iter()
        .filter(|r| {
            r["listen"] == listen
                && r["connect"] == connect
                && r["bind_device"] == bind_device
                && v6only.is_none_or(|v| r["v6only"] == v)
        })
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "exactly one row {listen} (v6only {v6only:?}, device {bind_device}) <- {connect}"
    );
    hits[0]
}

#[track_caller]
fn assert_ok(r: &Value, peer: &str) {
    assert_eq!(r["result"], "ok", "{r:#}");
    assert_eq!(r["peer"], peer, "{r:#}");
    assert!(r["step"].is_null() && r["error"].is_null(), "{r:#}");
}

#[track_caller]
fn assert_fail(r: &Value, step: &str, error: &str) {
    assert_eq!(r["result"], "fail", "{r:#}");
    assert_eq!(r["step"], step, "{r:#}");
    assert_eq!(r["error"], error, "{r:#}");
}

#[test]
fn every_tcp_pair_in_a_namespace_connects_or_fails_as_expected() {
    if !require_root("tcp_matrix_in_a_namespace") {
        return;
    }
    let h = host("it");
    let ns = &h.pair.a;
    let rows = interop_json(ns, &["--proto", "tcp", "--timeout-ms", "1000"]);
    let ll6s = format!("{}%va", h.ll6);

    // Only the host's own addresses are contacted: the peer namespace's never appear.
    let mut connects: Vec<&str> = rows
        .iter()
        .map(|r| r["connect"].as_str().unwrap())
        .collect();
    connects.sort();
    connects.dedup();
    let mut want = vec!["127.0.0.1", "::1", &h.v4, &h.v6, &ll6s, &h.ll4];
    want.sort();
    assert_eq!(connects, want);
    // 11 server setups x 6 clients.
    assert_eq!(rows.len(), 66);
    for r in &rows {
        for key in [
            "listen",
            "connect",
            "v6only",
            "bind_device",
            "result",
            "step",
            "error",
            "peer",
        ] {
            assert!(r.get(key).is_some(), "field {key} missing: {r:#}");
        }
        for end in ["listen_sockaddr", "connect_sockaddr"] {
            for key in ["family", "port", "flowinfo", "scope_id"] {
                assert!(r[end].get(key).is_some(), "{end}.{key} missing: {r:#}");
            }
        }
        assert!(
            r["result"] == "ok" || (r["result"] == "fail" && r["error"].is_string()),
            "{r:#}"
        );
        assert_eq!(r["proto"], "tcp");
    }

    // `::` with V6ONLY off takes IPv4 clients as IPv4-mapped addresses.
    let r = row(&rows, "::", Some(false), false, "127.0.0.1");
    assert_ok(r, "::ffff:127.0.0.1");
    assert_eq!(r["listen_sockaddr"]["family"], "AF_INET6");
    assert_eq!(r["connect_sockaddr"]["family"], "AF_INET");
    assert!(
        r["connect_sockaddr"]["flowinfo"].is_null() && r["connect_sockaddr"]["scope_id"].is_null()
    );
    assert_eq!(r["peer_sockaddr"]["family"], "AF_INET6");
    assert_eq!(r["peer_sockaddr"]["addr"], "::ffff:127.0.0.1");
    assert_eq!(r["peer_sockaddr"]["flowinfo"], 0);
    assert_eq!(r["listen_sockaddr"]["port"], r["connect_sockaddr"]["port"]);
    assert_ne!(r["listen_sockaddr"]["port"], 0);
    assert_ok(
        row(&rows, "::", Some(false), false, &h.v4),
        &format!("::ffff:{}", h.v4),
    );
    assert_ok(
        row(&rows, "::", Some(false), false, &h.ll4),
        &format!("::ffff:{}", h.ll4),
    );
    assert_ok(row(&rows, "::", Some(false), false, "::1"), "::1");
    // With V6ONLY on, both IPv4 clients are refused; IPv6 still works.
    assert_fail(
        row(&rows, "::", Some(true), false, "127.0.0.1"),
        "connect",
        "connection refused",
    );
    assert_fail(
        row(&rows, "::", Some(true), false, &h.v4),
        "connect",
        "connection refused",
    );
    assert_ok(row(&rows, "::", Some(true), false, &h.v6), &h.v6);

    // `::1` refuses 127.0.0.1; a routable IPv6 server refuses every IPv4 client.
    let r = row(&rows, "::1", None, false, "127.0.0.1");
    assert_fail(r, "connect", "connection refused");
    assert_eq!(r["errno"], "ECONNREFUSED");
    assert_eq!(
        r["v6only"], false,
        "net.ipv6.bindv6only is 0 in a fresh namespace"
    );
    for c in ["127.0.0.1", &h.v4, &h.ll4] {
        assert_fail(
            row(&rows, &h.v6, None, false, c),
            "connect",
            "connection refused",
        );
    }

    // IPv4 servers take no IPv6 client.
    assert_fail(
        row(&rows, "127.0.0.1", None, false, "::1"),
        "connect",
        "connection refused",
    );
    assert_fail(
        row(&rows, "0.0.0.0", None, false, "::1"),
        "connect",
        "connection refused",
    );
    assert_fail(
        row(&rows, "0.0.0.0", None, false, &h.v6),
        "connect",
        "connection refused",
    );
    for c in ["::1", &h.v6, &ll6s] {
        assert_fail(
            row(&rows, &h.v4, None, false, c),
            "connect",
            "connection refused",
        );
    }
    let r = row(&rows, "0.0.0.0", None, false, "127.0.0.1");
    assert_ok(r, "127.0.0.1");
    assert!(r["v6only"].is_null(), "no V6ONLY on an IPv4 socket");
    assert_ok(row(&rows, "0.0.0.0", None, false, &h.v4), &h.v4);

    // Link-local IPv6: no scope id -> bind fails with EINVAL, for every client.
    for c in ["127.0.0.1", "::1", &h.v4, &h.v6, &ll6s, &h.ll4] {
        let r = row(&rows, &h.ll6, None, false, c);
        assert_fail(r, "bind", "invalid argument");
        assert_eq!(r["errno"], "EINVAL");
        assert_eq!(r["listen_sockaddr"]["scope_id"], 0);
        assert_eq!(r["side"], "server");
    }
    // With a scope id: ok, and the client connects with the scope id.
    let r = row(&rows, &ll6s, None, false, &ll6s);
    assert_ok(r, &ll6s);
    assert_eq!(r["listen_sockaddr"]["scope_id"], h.ifindex);
    assert_eq!(r["connect_sockaddr"]["scope_id"], h.ifindex);
    assert_eq!(r["peer_sockaddr"]["scope_id"], h.ifindex);
    // Bound to the device with SO_BINDTODEVICE and no scope id: ok.
    let r = row(&rows, &h.ll6, None, true, &ll6s);
    assert_ok(r, &ll6s);
    assert_eq!(r["device"], "va");
    // A scoped link-local server is still IPv6 only.
    assert_fail(
        row(&rows, &ll6s, None, false, "127.0.0.1"),
        "connect",
        "connection refused",
    );

    // Link-local IPv4 <-> link-local IPv4.
    assert_ok(row(&rows, &h.ll4, None, false, &h.ll4), &h.ll4);
    assert_fail(
        row(&rows, &h.ll4, None, false, "::1"),
        "connect",
        "connection refused",
    );
}

#[test]
fn every_udp_pair_in_a_namespace_connects_or_fails_as_expected() {
    if !require_root("udp_matrix_in_a_namespace") {
        return;
    }
    let h = host("iu");
    let rows = interop_json(&h.pair.a, &["--proto", "udp", "--timeout-ms", "1000"]);
    let ll6s = format!("{}%va", h.ll6);
    assert_eq!(rows.len(), 66);
    assert!(rows.iter().all(|r| r["proto"] == "udp"));

    assert_ok(
        row(&rows, "::", Some(false), false, "127.0.0.1"),
        "::ffff:127.0.0.1",
    );
    assert_ok(
        row(&rows, "::", Some(false), false, &h.v4),
        &format!("::ffff:{}", h.v4),
    );
    // The refusal of a datagram comes back as ICMP port unreachable, read by the client.
    let r = row(&rows, "::", Some(true), false, "127.0.0.1");
    assert_fail(r, "recv", "connection refused");
    assert_eq!(r["side"], "client");
    assert_fail(
        row(&rows, "::1", None, false, "127.0.0.1"),
        "recv",
        "connection refused",
    );
    assert_fail(
        row(&rows, "0.0.0.0", None, false, "::1"),
        "recv",
        "connection refused",
    );
    assert_fail(
        row(&rows, &h.ll6, None, false, &ll6s),
        "bind",
        "invalid argument",
    );
    assert_ok(row(&rows, &ll6s, None, false, &ll6s), &ll6s);
    assert_ok(row(&rows, &h.ll6, None, true, &ll6s), &ll6s);
    assert_ok(row(&rows, &h.ll4, None, false, &h.ll4), &h.ll4);
}

#[test]
fn dropped_traffic_times_out_within_the_bound() {
    if !require_root("dropped_traffic_times_out_within_the_bound") {
        return;
    }
    let h = host("id");
    let ns = &h.pair.a;
    // Drop TCP and UDP to the routable IPv4 address inside the namespace.
    sh(&[
        "ip", "netns", "exec", ns, "nft", "add", "table", "inet", "fpdrop",
    ]);
    sh(&[
        "ip",
        "netns",
        "exec",
        ns,
        "nft",
        "add",
        "chain",
        "inet",
        "fpdrop",
        "in",
        "{ type filter hook input priority 0 ; }",
    ]);
    sh(&[
        "ip", "netns", "exec", ns, "nft", "add", "rule", "inet", "fpdrop", "in", "ip", "daddr",
        &h.v4, "drop",
    ]);
    let start = Instant::now();
    let tcp = interop_json(
        ns,
        &["--iface", "lo", "--addr", &h.v4, "--timeout-ms", "200"],
    );
    let udp = interop_json(
        ns,
        &[
            "--iface",
            "lo",
            "--addr",
            &h.v4,
            "--timeout-ms",
            "200",
            "--proto",
            "udp",
        ],
    );
    let elapsed = start.elapsed();
    assert_fail(
        row(&tcp, "0.0.0.0", None, false, &h.v4),
        "connect",
        "timed out",
    );
    assert_fail(
        row(&tcp, "::", Some(false), false, &h.v4),
        "connect",
        "timed out",
    );
    assert_fail(
        row(&udp, "0.0.0.0", None, false, &h.v4),
        "recv",
        "timed out",
    );
    assert_ok(row(&tcp, "0.0.0.0", None, false, "127.0.0.1"), "127.0.0.1");
    // 6 servers x 3 clients per run; at most the pairs to h.v4 wait, 200 ms each.
    assert_eq!(tcp.len(), 18);
    assert!(
        elapsed < Duration::from_secs(12),
        "bounded: took {elapsed:?}"
    );
}

#[test]
fn table_and_markdown_show_the_context() {
    if !require_root("table_and_markdown_show_the_context") {
        return;
    }
    let h = host("ic");
    let ns = &h.pair.a;
    // bindv6only is per namespace: set it here and see it reported, and its effect.
    sysctl(ns, "net.ipv6.bindv6only=1");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let kernel = kernel.trim();

    let out = interop(ns, &["--iface", "lo"]);
    assert_eq!(out.status.code(), Some(0));
    let table = String::from_utf8(out.stdout).unwrap();
    let first = table.lines().next().unwrap();
    assert!(first.contains("net.ipv6.bindv6only = 1"), "{table}");
    assert!(first.contains(&format!("kernel {kernel}")), "{table}");
    let header = table
        .lines()
        .find(|l| l.contains("server listen addr"))
        .expect("header");
    let (a, rest) = header.split_once("server listen addr").unwrap();
    assert!(
        a.trim() == "|" && rest.contains("client connect addr") && rest.contains("result"),
        "{header}"
    );
    assert!(
        table.lines().any(|l| l.contains(":: (V6ONLY off)")
            && l.contains("127.0.0.1")
            && l.contains("ok, peer ::ffff:127.0.0.1")),
        "{table}"
    );
    assert!(
        table.lines().any(|l| l.starts_with("| ::1 ")
            && l.contains("127.0.0.1")
            && l.contains("fail: connect: connection refused")),
        "{table}"
    );

    let out = interop(ns, &["--iface", "lo", "--format", "markdown"]);
    assert_eq!(out.status.code(), Some(0));
    let md = String::from_utf8(out.stdout).unwrap();
    assert!(
        md.contains("net.ipv6.bindv6only = 1") && md.contains(kernel),
        "{md}"
    );
    assert!(
        md.contains("| server listen addr | client connect addr | result |\n|---|---|---|\n"),
        "{md}"
    );
    assert!(
        md.contains("| `:: (V6ONLY off)` | `127.0.0.1` | ok, peer `::ffff:127.0.0.1` |"),
        "{md}"
    );
    assert!(
        md.contains("| `::1` | `127.0.0.1` | fail: connect: connection refused |"),
        "{md}"
    );

    // The sysctl is the default of IPV6_V6ONLY: `::1` is now V6ONLY, `::` explicitly off is not.
    let rows = interop_json(ns, &["--iface", "lo"]);
    assert_eq!(row(&rows, "::1", None, false, "::1")["v6only"], true);
    assert_ok(
        row(&rows, "::", Some(false), false, "127.0.0.1"),
        "::ffff:127.0.0.1",
    );
}

#[test]
fn iface_and_addr_select_and_guard_the_addresses() {
    if !require_root("iface_and_addr_select_and_guard_the_addresses") {
        return;
    }
    let h = host("ia");
    let ns = &h.pair.a;
    // --iface lo: only the fixed addresses.
    let rows = interop_json(ns, &["--iface", "lo"]);
    assert_eq!(rows.len(), 5 * 2);
    // --iface va: the veth's addresses too.
    let rows = interop_json(ns, &["--iface", "va"]);
    assert_eq!(rows.len(), 11 * 6);
    // --addr adds one of the host's addresses, and any 127/8 address.
    let rows = interop_json(
        ns,
        &["--iface", "lo", "--addr", &h.v6, "--addr", "127.0.0.2"],
    );
    assert_eq!(rows.len(), 7 * 4);
    // The kernel picks source 127.0.0.1 (the `src` of the 127/8 local route), not 127.0.0.2.
    assert_ok(
        row(&rows, "127.0.0.2", None, false, "127.0.0.2"),
        "127.0.0.1",
    );
    assert_fail(
        row(&rows, "127.0.0.2", None, false, "127.0.0.1"),
        "connect",
        "connection refused",
    );
    assert_ok(row(&rows, "::", Some(false), false, &h.v6), &h.v6);
    // A link-local --addr takes its scope.
    let rows = interop_json(ns, &["--iface", "lo", "--addr", &format!("{}%va", h.ll6)]);
    assert_eq!(rows.len(), 8 * 3);

    // Not this host's address (the peer namespace's): refused before any traffic, exit 2.
    let out = interop(ns, &["--addr", &h.pair.b_addr4]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an address of this host"));
    assert!(out.stdout.is_empty());
    let out = interop(ns, &["--iface", "nosuch0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no interface named \"nosuch0\""));
    let out = interop(ns, &["--addr", "not-an-ip"]);
    assert_eq!(out.status.code(), Some(2));
    let out = interop(ns, &["--proto", "sctp"]);
    assert_eq!(out.status.code(), Some(2));
}
