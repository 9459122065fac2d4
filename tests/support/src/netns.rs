//! Test hosts in network namespaces of the test's own: unique names, a veth pair with ULA
//! addresses, removed on drop even when the test fails. Traffic never leaves them.

use std::fmt;
use std::ops::Deref;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

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

/// Sets a sysctl (`key=value`) inside the namespace `ns`, panicking when it fails.
pub fn sysctl(ns: &str, key_value: &str) {
    sh(&["ip", "netns", "exec", ns, "sysctl", "-qw", key_value]);
}

/// The MAC address of the interface `ifc` in the namespace `ns`.
pub fn mac(ns: &str, ifc: &str) -> [u8; 6] {
    let o = sh(&["ip", "-n", ns, "-j", "link", "show", ifc]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let s = v[0]["address"].as_str().unwrap();
    let b: Vec<u8> = s
        .split(':')
        .map(|x| u8::from_str_radix(x, 16).unwrap())
        .collect();
    b.try_into().unwrap()
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// `ip netns exec NS args...` as a Command, for running or spawning.
pub fn exec(ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(args);
    c
}

/// A network namespace of the test's own, deleted on drop (with the veth ends inside it).
/// Dereferences to its name.
#[derive(Debug)]
pub struct Netns(String);

impl Netns {
    /// A new, empty namespace with a name unique to this test process.
    pub fn new(tag: &str) -> Netns {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        Netns::named(format!("fpc{tag}{}x{n}", std::process::id()))
    }

    /// A new, empty namespace called `name`.
    fn named(name: String) -> Netns {
        sh(&["ip", "netns", "add", &name]);
        Netns(name)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.0
    }

    /// `args...` inside the namespace, as a Command.
    pub fn exec(&self, args: &[&str]) -> Command {
        exec(&self.0, args)
    }

    /// Runs `nft ARGS` in the namespace: (success, stdout, stderr).
    pub fn nft(&self, args: &[&str]) -> (bool, String, String) {
        let mut a = vec!["nft"];
        a.extend_from_slice(args);
        let o = self.exec(&a).output().unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    /// `nft -c -f FILE` (check only) or `nft -f FILE`, panicking with nft's message on failure.
    pub fn nft_file(&self, file: &Path, check: bool) {
        let f = file.to_str().unwrap();
        let args: &[&str] = if check { &["-c", "-f", f] } else { &["-f", f] };
        let (ok, _, err) = self.nft(args);
        assert!(ok, "nft {args:?} rejected {f}:\n{err}");
    }
}

impl Deref for Netns {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Netns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Two namespaces `a` and `b` joined by a veth pair `va` (in a) and `vb` (in b), with
/// `fd00:N::1/64` on a and `fd00:N::2/64` on b, IPv4 `10.N.0.1/24` and `10.N.0.2/24`, links up,
/// duplicate address detection off so addresses are usable at once.
pub struct VethPair {
    pub a: Netns,
    pub b: Netns,
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
        let pair = VethPair {
            a: Netns::named(format!("fp{tag}{n}a")),
            b: Netns::named(format!("fp{tag}{n}b")),
            a_addr: format!("fd00:{id:x}::1"),
            b_addr: format!("fd00:{id:x}::2"),
            a_addr4: format!("10.{id}.0.1"),
            b_addr4: format!("10.{id}.0.2"),
            a_if: "va".into(),
            b_if: "vb".into(),
        };
        let (a, b) = (pair.a.name(), pair.b.name());
        sh(&[
            "ip", "-n", a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", b,
        ]);
        for (ns, ifc, addr6, addr4) in [
            (a, "va", &pair.a_addr, &pair.a_addr4),
            (b, "vb", &pair.b_addr, &pair.b_addr4),
        ] {
            sysctl(ns, "net.ipv6.conf.all.accept_dad=0");
            sysctl(ns, &format!("net.ipv6.conf.{ifc}.accept_dad=0"));
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

    /// Turns IPv6 off on a's interface so that a sends nothing of its own (router
    /// solicitations, MLD reports): every packet b sees is one the test put on the wire from a
    /// (by AF_PACKET, which needs no IPv6 on the sender).
    pub fn quiet_a(&self) -> &VethPair {
        sysctl(
            &self.a,
            &format!("net.ipv6.conf.{}.disable_ipv6=1", self.a_if),
        );
        self
    }
}
