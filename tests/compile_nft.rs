//! `flowpol compile --target nft`: `nft -c -f` accepts the output for every bundled policy and
//! fixture (both engines, both encodings, every hook), and rulesets of 10 000 generated rules
//! load into the kernel in seconds, reload idempotently and carry one counter per rule.
//! Root: every check runs in a network namespace of the test's own.

use flowpol::compile::nft::{self, Encoding, NftOptions};
use flowpol::policy::syntax::TupleKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::compile::*;
use support::flowpol;
use support::netns::Netns;

fn policy_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut v = Vec::new();
    for dir in ["policies", "tests/data/compile"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "fpol") {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

#[test]
fn nft_accepts_every_bundled_policy() {
    if !support::gate::require_root("nft_accepts_every_bundled_policy") {
        return;
    }
    let ns = Netns::new("chk");
    let dir = tempfile::tempdir().unwrap();
    let files = policy_files();
    assert!(files.len() >= 2, "no policies found: {files:?}");
    let variants: [&[&str]; 5] = [
        &["--engine", "three"],
        &["--engine", "five"],
        &[
            "--engine",
            "three",
            "--encoding",
            "plain",
            "--hook",
            "prerouting",
            "--priority",
            "-150",
        ],
        &[
            "--engine",
            "five",
            "--encoding",
            "plain",
            "--hook",
            "output",
        ],
        &["--engine", "three", "--hook", "forward", "--priority", "10"],
    ];
    for f in &files {
        for (i, extra) in variants.iter().enumerate() {
            let out = dir.path().join(format!(
                "{}-{i}.nft",
                f.file_stem().unwrap().to_string_lossy()
            ));
            let o = flowpol!()
                .args(["compile", "--target", "nft", "-o"])
                .arg(&out)
                .args(*extra)
                .arg(f)
                .output();
            assert!(
                o.status.success(),
                "{} {extra:?}: {}",
                f.display(),
                String::from_utf8_lossy(&o.stderr)
            );
            ns.nft_file(&out, true);
        }
        // The same check through `flowpol compile --dry-run` (nft -c -f -) in the namespace.
        let o = flowpol!()
            .in_ns(&ns)
            .args([
                "compile",
                "--target",
                "nft",
                "--dry-run",
                "--engine",
                "five",
            ])
            .arg(f)
            .output();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stderr).contains("nft accepts table ip6 flowpol"));
        // Loaded for real twice: the header makes reloading idempotent.
        let out = dir.path().join("load.nft");
        let o = flowpol!()
            .args(["compile", "--target", "nft", "-o"])
            .arg(&out)
            .arg(f)
            .output();
        assert!(o.status.success());
        ns.nft_file(&out, false);
        ns.nft_file(&out, false);
        let (ok, json, err) = ns.nft(&["-j", "list", "counters", "table", "ip6", "flowpol"]);
        assert!(ok, "{err}");
        let rows = flowpol::compile::stats::parse_counters(&json, "flowpol").unwrap();
        let policy = flowpol::policy::load_file(f).unwrap();
        assert_eq!(
            rows.len(),
            policy.three.len() + 1,
            "{}: one counter per rule and the default",
            f.display()
        );
        for (i, rule) in policy.three.iter().enumerate() {
            let row = rows
                .iter()
                .find(|r| r.tag.as_ref().is_some_and(|t| t.index == Some(i)))
                .expect("counter of rule");
            let tag = row.tag.as_ref().unwrap();
            assert_eq!(tag.action, rule.action.to_string());
            let name = tag.rule.as_deref().unwrap();
            assert!(
                name == rule.name
                    || (name.ends_with("...")
                        && rule.name.starts_with(name.trim_end_matches("..."))),
                "{name}"
            );
        }
    }
}

#[test]
fn explicit_marks_refuse_a_class_without_mark() {
    let f = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/compile/edge.fpol");
    let o = flowpol!()
        .args(["compile", "--target", "nft", "--explicit-marks"])
        .arg(&f)
        .output();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("class `unmarked` has no mark"));
}

fn load_big(
    ns: &Netns,
    policy: &flowpol::policy::Policy,
    opts: &NftOptions,
    dir: &Path,
) -> (Duration, nft::NftRuleset) {
    let t = Instant::now();
    let r = nft::compile(policy, opts).unwrap();
    eprintln!("compiled in {:?}", t.elapsed());
    let file = dir.join("big.nft");
    std::fs::write(&file, &r.text).unwrap();
    ns.nft_file(&file, true);
    let t = Instant::now();
    ns.nft_file(&file, false);
    let took = t.elapsed();
    // Reload over the loaded table.
    ns.nft_file(&file, false);
    let (ok, json, err) = ns.nft(&["-j", "list", "counters", "table", "ip6", "flowpol"]);
    assert!(ok, "{err}");
    let rows = flowpol::compile::stats::parse_counters(&json, "flowpol").unwrap();
    assert_eq!(
        rows.len(),
        r.counters.len(),
        "one counter per rule and the default"
    );
    assert!(
        rows.iter().all(|c| c.tag.is_some()),
        "every counter maps back to a rule"
    );
    (took, r)
}

#[test]
fn ten_thousand_rules_load_in_seconds() {
    if !support::gate::require_root("ten_thousand_rules_load_in_seconds") {
        return;
    }
    let ns = Netns::new("big");
    let dir = tempfile::tempdir().unwrap();
    let three = big_three(10_000, 42);
    let five = big_five(10_000, 43);
    // Plain rules load slowly (10 000 rules with small anonymous address sets took ~17 s here),
    // so the plain encoding is loaded at 2 000 rules and the default (maps) at 10 000.
    let cases = [
        ("three", &three, TupleKind::Three, Encoding::Auto),
        ("five", &five, TupleKind::Five, Encoding::Auto),
        (
            "three-2k",
            &big_three(2_000, 44),
            TupleKind::Three,
            Encoding::Plain,
        ),
    ];
    for (name, policy, engine, encoding) in cases {
        let opts = NftOptions {
            engine,
            encoding,
            ..Default::default()
        };
        let (took, r) = load_big(&ns, policy, &opts, dir.path());
        eprintln!(
            "{name} {encoding:?}: {} maps holding {} rules, loaded in {took:?}",
            r.groups, r.grouped_rules
        );
        assert!(
            took < Duration::from_secs(30),
            "{name} {encoding:?} took {took:?}"
        );
        if encoding == Encoding::Auto {
            assert!(
                r.grouped_rules > 9_500,
                "{name}: only {} of 10000 rules in maps",
                r.grouped_rules
            );
        } else {
            assert_eq!(r.groups, 0);
        }
    }
}

#[test]
fn nft_stats_reports_rules_and_classes_from_counter_json() {
    let f = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/compile/counters.json");
    let run = |fmt: &str| {
        let o = flowpol!()
            .args(["nft", "stats", "--format", fmt, "--input"])
            .arg(&f)
            .output();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let v: serde_json::Value = serde_json::from_str(&run("json")).unwrap();
    assert_eq!(v["engine"], "five");
    assert_eq!(v["packets"], 20);
    let names: Vec<&str> = v["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["dns", "web", "mgmt-fence", "default", "unavailable"]
    );
    let classes: Vec<(String, u64)> = v["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["packets"].as_u64().unwrap(),
            )
        })
        .collect();
    let want = [("gold", 6), ("bronze", 10), ("pass", 3), ("drop", 1)];
    assert_eq!(classes, want.map(|(n, p)| (n.to_string(), p)));
    let t = run("table");
    assert!(
        t.contains("mgmt-fence") && t.contains("\nClasses\n") && t.contains("30.0%"),
        "{t}"
    );
    let o = flowpol!()
        .args(["nft", "stats", "--input", "/nonexistent"])
        .output();
    assert_eq!(o.status.code(), Some(2));
}

/// The emitted text for the bundled media policy and the edge fixture (three and five), so that
/// a change of encoding is a visible diff.
#[test]
fn nft_output_matches_its_snapshots() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, file, engine) in [
        ("media_three", "policies/media.fpol", "three"),
        ("edge_three", "tests/data/compile/edge.fpol", "three"),
        ("edge_five", "tests/data/compile/edge.fpol", "five"),
    ] {
        let o = flowpol!()
            .args(["compile", "--target", "nft", "--engine", engine])
            .arg(root.join(file))
            .output();
        assert!(o.status.success());
        insta::assert_snapshot!(name, String::from_utf8(o.stdout).unwrap());
    }
}

/// `flowpol compile` on a 10 000-rule policy file: parse, check and compile in one command.
#[test]
fn cli_compiles_a_ten_thousand_rule_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("big.fpol");
    std::fs::write(&f, flowpol::policy::fmt::format(&big_three(10_000, 7))).unwrap();
    let t = Instant::now();
    let o = flowpol!()
        .args(["compile", "--target", "nft"])
        .arg(&f)
        .output();
    eprintln!("flowpol compile of 10000 rules: {:?}", t.elapsed());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    assert_eq!(text.matches("\tcounter r").count(), 10_000);
}

#[test]
fn nft_json_output_lists_counters_and_marks() {
    let f = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/compile/edge.fpol");
    let o = flowpol!()
        .args(["compile", "--target", "nft", "--format", "json"])
        .arg(&f)
        .output();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let counters = v["counters"].as_array().unwrap();
    assert_eq!(counters[0]["counter"], "r0_nested_set");
    assert_eq!(counters[0]["tag"]["rule"], "nested-set");
    assert_eq!(counters.last().unwrap()["counter"], "default");
    let marks = v["marks"].as_array().unwrap();
    assert!(
        marks
            .iter()
            .any(|m| m["class"] == "unmarked" && m["mark"] == 1 && m["assigned"] == true),
        "{marks:?}"
    );
    assert!(v["groups"].as_u64().unwrap() >= 1);
    assert!(
        v["ruleset"]
            .as_str()
            .unwrap()
            .starts_with("#!/usr/sbin/nft -f")
    );
    let o = flowpol!()
        .args(["compile", "--target", "bpf", "--apply"])
        .arg(&f)
        .output();
    assert_eq!(o.status.code(), Some(2));
}
