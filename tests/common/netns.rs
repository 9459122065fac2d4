//! Test hosts in network namespaces of the test's own: unique names, a veth pair with ULA
//! addresses, removed on drop even when the test fails. Traffic never leaves them.
#![allow(dead_code)]

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// True when the test may use root-only facilities. Under `CI=true` a root-only test must run,
/// so a missing privilege there is a failure, not a skip.
pub fn require_root(test: &str) -> bool {
    // SAFETY-free check: geteuid via `id -u` keeps tests free of unsafe.
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let root = uid.as_deref().is_ok_and(|u| u == "0");
    if !root {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{test}: needs root (CAP_NET_ADMIN, CAP_NET_RAW) and CI=true forbids skipping");
        }
        eprintln!("SKIP {test}: needs root (CAP_NET_ADMIN, CAP_NET_RAW)");
    }
    root
}

/// Runs a command, panicking with its output when it fails.
pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Two namespaces `a` and `b` joined by a veth pair `va` (in a) and `vb` (in b), with
/// `fd00:N::1/64` on a and `fd00:N::2/64` on b, IPv4 `10.N.0.1/24` and `10.N.0.2/24`, links up,
/// duplicate address detection off so addresses are usable at once.
pub struct VethPair {
    pub a: String,
    pub b: String,
    pub a_addr: String,
    pub b_addr: String,
    pub a_addr4: String,
    pub b_addr4: String,
    pub a_if: String,
    pub b_if: String,
}

impl VethPair {
    pub fn new(tag: &str) -> VethPair {
        let n = std::process::id() % 10000 * 10 + SEQ.fetch_add(1, Ordering::SeqCst);
        let id = (n % 250) + 1;
        let a = format!("fp{tag}{n}a");
        let b = format!("fp{tag}{n}b");
        let pair = VethPair {
            a: a.clone(),
            b: b.clone(),
            a_addr: format!("fd00:{id:x}::1"),
            b_addr: format!("fd00:{id:x}::2"),
            a_addr4: format!("10.{id}.0.1"),
            b_addr4: format!("10.{id}.0.2"),
            a_if: "va".into(),
            b_if: "vb".into(),
        };
        sh(&["ip", "netns", "add", &a]);
        sh(&["ip", "netns", "add", &b]);
        sh(&[
            "ip", "-n", &a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &b,
        ]);
        for (ns, ifc, addr6, addr4) in [
            (&a, "va", &pair.a_addr, &pair.a_addr4),
            (&b, "vb", &pair.b_addr, &pair.b_addr4),
        ] {
            sh(&[
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.accept_dad=0",
            ]);
            sh(&[
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{ifc}.accept_dad=0"),
            ]);
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr6}/64"),
                "dev",
                ifc,
                "nodad",
            ]);
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr4}/24"),
                "dev",
                ifc,
            ]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            sh(&["ip", "-n", ns, "link", "set", ifc, "up"]);
        }
        pair
    }

    /// `ip netns exec NS args...` as a Command, for spawning.
    pub fn exec(ns: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).args(args);
        c
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Deleting a namespace kills its veth end and with it the peer.
        let _ = Command::new("ip").args(["netns", "del", &self.a]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.b]).status();
    }
}

/// Runs `flowpol ARGS` in `ns` with capability `cap` (e.g. `net_raw`) dropped from the
/// inheritable and bounding sets, and asserts the refusal: exit 2 and one stderr line naming
/// the capability (`needs CAP_NET_RAW`). Returns that line.
pub fn assert_needs_capability(ns: &str, cap: &str, args: &[&str]) -> String {
    let inh = format!("--inh-caps=-{cap}");
    let bounding = format!("--bounding-set=-{cap}");
    let mut a = vec![
        "setpriv",
        &inh,
        &bounding,
        "--",
        env!("CARGO_BIN_EXE_flowpol"),
    ];
    a.extend_from_slice(args);
    let out = VethPair::exec(ns, &a).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "{err}");
    let needs = format!("needs CAP_{}", cap.to_uppercase());
    assert!(err.contains(&needs), "{err}");
    err
}
