//! `--format sarif` of `check`, `test` and `diff` is valid SARIF 2.1.0: every log is checked
//! against the SARIF 2.1.0 JSON schema (vendored in tests/data/sarif, see its README), offline.

use serde_json::Value;
use support::{OutputExt, flowpol};

fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/sarif/sarif-schema-2.1.0.json"
    ))
    .unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

fn sarif(args: &[&str], code: i32) -> Value {
    let out = flowpol!()
        .in_repo()
        .args(args)
        .args(["--format", "sarif"])
        .output();
    assert_eq!(out.code(), Some(code), "{args:?}: {}", out.stderr_text());
    serde_json::from_slice(&out.stdout).unwrap()
}

fn assert_valid(v: &jsonschema::Validator, log: &Value) {
    let errors: Vec<String> = v
        .iter_errors(log)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{log:#}");
}

fn results(log: &Value) -> &Vec<Value> {
    log["runs"][0]["results"].as_array().unwrap()
}

#[test]
fn check_test_and_diff_write_valid_sarif() {
    let v = validator();
    let check = sarif(
        &[
            "check",
            "tests/policies/invalid/ranges.fpol",
            "tests/policies/warn/shadowed.fpol",
        ],
        1,
    );
    assert_valid(&v, &check);
    assert!(results(&check).len() >= 2);
    assert!(results(&check).iter().any(|r| r["level"] == "warning"));
    assert!(results(&check).iter().any(|r| r["level"] == "error"));

    let dir = tempfile::tempdir().unwrap();
    std::fs::copy("policies/media.fpol", dir.path().join("media.fpol")).unwrap();
    let t = dir.path().join("failing test.fpoltest");
    std::fs::write(
        &t,
        "policy media.fpol\ncase rtp src 2001:db8:1::9 dst ::1 label 0x10001 -> three drop\ncase x src ::1 -> five pass\n",
    )
    .unwrap();
    let test = sarif(&["test", t.to_str().unwrap()], 1);
    assert_valid(&v, &test);
    let r = results(&test);
    assert_eq!(r.len(), 2);
    assert_eq!(r[0]["ruleId"], "T0003");
    let uri = r[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        .as_str()
        .unwrap();
    assert!(uri.ends_with("failing%20test.fpoltest"), "{uri}");

    let passing = sarif(&["test", "policies/media.fpoltest"], 0);
    assert_valid(&v, &passing);
    assert!(results(&passing).is_empty());

    let diff = sarif(
        &["diff", "policies/datacenter.fpol", "policies/media.fpol"],
        1,
    );
    assert_valid(&v, &diff);
    assert!(results(&diff).iter().all(|r| r["ruleId"] == "D0001"));
    let incomplete = sarif(
        &[
            "diff",
            "policies/datacenter.fpol",
            "policies/media.fpol",
            "--budget",
            "5",
        ],
        1,
    );
    assert_valid(&v, &incomplete);
    assert!(results(&incomplete).iter().any(|r| r["ruleId"] == "D0002"));
}

#[test]
fn the_schema_check_catches_a_broken_log() {
    let v = validator();
    let mut log = sarif(&["check", "tests/policies/warn/shadowed.fpol"], 0);
    assert_valid(&v, &log);
    log["runs"][0]["results"][0]["level"] = "fatal".into();
    assert!(!v.is_valid(&log));
    log["runs"][0]["results"][0]["level"] = "warning".into();
    log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"] =
        0.into();
    assert!(!v.is_valid(&log));
}
