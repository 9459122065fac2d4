//! `flowpol compile --apply/--dry-run` and `flowpol nft stats` when they cannot work: without
//! CAP_NET_ADMIN, with no flowpol table, and with another program's table of the same name.
//! Each says so in one line and exits 2. Root only, each in a namespace of its own.

use support::netns::Netns;
use support::{OutputExt, flowpol};

fn ns(tag: &str) -> Option<Netns> {
    support::gate::require_root(tag).then(|| Netns::new(tag))
}

#[test]
fn apply_without_net_admin_names_the_capability_in_one_line() {
    let Some(ns) = ns("nfa") else { return };
    let line = flowpol!()
        .in_repo()
        .in_ns(&ns)
        .args([
            "compile",
            "policies/datacenter.fpol",
            "--target",
            "nft",
            "--apply",
        ])
        .assert_needs_capability("net_admin");
    assert!(line.contains("--apply"), "{line}");
    // Nothing was loaded.
    let (ok, out, _) = ns.nft(&["list", "tables"]);
    assert!(ok && !out.contains("flowpol"), "{out}");
}

#[test]
fn dry_run_without_net_admin_names_the_capability_in_one_line() {
    let Some(ns) = ns("nfd") else { return };
    let line = flowpol!()
        .in_repo()
        .in_ns(&ns)
        .args([
            "compile",
            "policies/datacenter.fpol",
            "--target",
            "nft",
            "--dry-run",
        ])
        .assert_needs_capability("net_admin");
    assert!(line.contains("--dry-run"), "{line}");
}

#[test]
fn nft_stats_without_net_admin_names_the_capability_in_one_line() {
    let Some(ns) = ns("nfs") else { return };
    flowpol!()
        .in_ns(&ns)
        .args(["nft", "stats"])
        .assert_needs_capability("net_admin");
}

#[test]
fn nft_stats_without_a_table_says_there_is_none_in_one_line() {
    let Some(ns) = ns("nfn") else { return };
    let out = flowpol!().in_ns(&ns).args(["nft", "stats"]).output();
    assert_eq!(out.code(), Some(2), "{out:?}");
    let err = out.stderr_text();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("there is no table ip6 flowpol in this network namespace"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout_text());
}

#[test]
fn nft_stats_on_a_foreign_table_of_the_same_name_refuses_in_one_line() {
    let Some(ns) = ns("nff") else { return };
    let (ok, _, err) = ns.nft(&[
        "add table ip6 flowpol; add counter ip6 flowpol theirs; add counter ip6 flowpol other",
    ]);
    assert!(ok, "{err}");
    let out = flowpol!().in_ns(&ns).args(["nft", "stats"]).output();
    assert_eq!(out.code(), Some(2), "{out:?}");
    let err = out.stderr_text();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(
            "table ip6 flowpol was not made by `flowpol compile`: none of its 2 counter(s)"
        ),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout_text());
}

#[test]
fn nft_stats_reads_a_table_compile_applied() {
    let Some(ns) = ns("nfo") else { return };
    flowpol!()
        .in_repo()
        .in_ns(&ns)
        .args([
            "compile",
            "policies/datacenter.fpol",
            "--target",
            "nft",
            "--apply",
        ])
        .output_ok();
    let out = flowpol!().in_ns(&ns).args(["nft", "stats"]).output_ok();
    assert!(
        out.contains("nftables table ip6 flowpol (three engine)"),
        "{out}"
    );
}
