//! `flowpol check` and `flowpol fmt` as CI runs them: exit codes, formats, stdin, many files,
//! comments kept by `fmt`.

use support::{OutputExt, flowpol};

#[test]
fn clean_files_exit_0() {
    let o = flowpol!()
        .args(["check", "policies/datacenter.fpol", "policies/media.fpol"])
        .in_repo()
        .output();
    assert_eq!(o.status.code(), Some(0), "{}", o.stdout_text());
    assert!(
        o.stdout_text()
            .contains("checked 2 files: 0 errors, 0 warnings")
    );
}

#[test]
fn errors_exit_1_and_every_file_is_reported() {
    let o = flowpol!()
        .args([
            "check",
            "tests/policies/invalid/ranges.fpol",
            "tests/policies/invalid/addresses.fpol",
        ])
        .in_repo()
        .output();
    assert_eq!(o.status.code(), Some(1));
    let out = o.stdout_text();
    assert!(
        out.contains("--> tests/policies/invalid/ranges.fpol:4:25"),
        "{out}"
    );
    assert!(
        out.contains("--> tests/policies/invalid/addresses.fpol:5:17"),
        "{out}"
    );
    assert!(
        out.contains("checked 2 files: 6 errors, 0 warnings"),
        "{out}"
    );
}

#[test]
fn warnings_exit_0_unless_denied() {
    let f = "tests/policies/warn/shadowed.fpol";
    assert_eq!(
        flowpol!()
            .args(["check", f])
            .in_repo()
            .output()
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        flowpol!()
            .args(["check", "--deny-warnings", f])
            .in_repo()
            .output()
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn unreadable_file_exits_2_after_checking_the_rest() {
    let o = flowpol!()
        .args([
            "check",
            "no/such/file.fpol",
            "tests/policies/invalid/ranges.fpol",
        ])
        .in_repo()
        .output();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read policy no/such/file.fpol"));
    assert!(o.stdout_text().contains("ranges.fpol:4:25"));
}

#[test]
fn a_usage_error_exits_2() {
    assert_eq!(
        flowpol!().args(["check"]).in_repo().output().status.code(),
        Some(2)
    );
    assert_eq!(
        flowpol!()
            .args(["check", "--format", "xml", "x"])
            .in_repo()
            .output()
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn json_findings_have_positions() {
    let o = flowpol!()
        .args(["check", "--format", "json", "-"])
        .in_repo()
        .stdin("default pass\nthree {\n  rule a label 0x100000 -> drop\n}\n")
        .output();
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let f = &v.as_array().unwrap()[0];
    assert_eq!(f["file"], "<stdin>");
    assert_eq!(
        (f["line"].as_u64(), f["column"].as_u64()),
        (Some(3), Some(16))
    );
    assert_eq!(
        (f["end_line"].as_u64(), f["end_column"].as_u64()),
        (Some(3), Some(24))
    );
    assert_eq!(f["severity"], "error");
    assert_eq!(f["code"], "E0002");
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .contains("wider than 20 bits")
    );
    assert_eq!(v.as_array().unwrap().len(), 1);
}

#[test]
fn github_format_prints_a_workflow_annotation_per_finding() {
    let o = flowpol!()
        .args([
            "check",
            "--format",
            "github",
            "tests/policies/warn/no-default.fpol",
        ])
        .in_repo()
        .output();
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        o.stdout_text().lines().next().unwrap(),
        "::warning file=tests/policies/warn/no-default.fpol,line=1,col=1,endLine=1,endColumn=1,title=W0004::no `default` action: packets no rule matches pass (help: state it: add `default pass` or `default drop`)"
    );
}

#[test]
fn fmt_prints_canonical_form_and_checks_it() {
    let o = flowpol!()
        .args(["fmt", "tests/policies/valid/layout.fpol"])
        .in_repo()
        .output();
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        o.stdout_text(),
        "default pass\n\nthree {\n    rule a src 2001:db8::/32 label 0x1 -> drop\n    rule b label 0x2 -> pass\n}\n"
    );
    let canon = o.stdout_text();
    assert_eq!(
        flowpol!()
            .args(["fmt", "--check", "-"])
            .in_repo()
            .stdin(&canon)
            .output()
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        flowpol!()
            .args(["fmt", "--check", "tests/policies/valid/layout.fpol"])
            .in_repo()
            .output()
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        flowpol!()
            .args(["fmt", "tests/policies/invalid/ranges.fpol"])
            .in_repo()
            .output()
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn fmt_keeps_comments() {
    let canon = "# header\nclass gold mark 1  # why\n\ndefault pass\n\nthree {\n    # first\n    rule a label 0x1 -> class gold\n}  # end\n";
    let o = flowpol!()
        .args(["fmt", "--check", "-"])
        .in_repo()
        .stdin(canon)
        .output();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let messy = "three {\n  # first\n  rule a label 1 -> class gold } # end\n# header\nclass gold mark 1 # why\ndefault pass\n";
    let o = flowpol!()
        .args(["fmt", "--check", "-"])
        .in_repo()
        .stdin(messy)
        .output();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("<stdin>: not in canonical form"));
    let o = flowpol!()
        .args(["fmt", "-"])
        .in_repo()
        .stdin(messy)
        .output();
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(o.stdout_text(), canon);
    for f in ["anycast", "datacenter", "media", "unlabelled"] {
        let f = format!("policies/{f}.fpol");
        assert_eq!(
            flowpol!()
                .args(["fmt", "--check", &f])
                .in_repo()
                .output()
                .status
                .code(),
            Some(0),
            "{f}"
        );
    }
}
