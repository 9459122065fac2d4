//! Fixture folders: every file in `valid/` checks clean, every file in `invalid/` has errors,
//! every file in `warn/` has warnings only; every bundled policy checks clean and is in
//! canonical form. Each non-valid file names its findings on its first
//! line (`# expect: CODE@LINE:COL ...`), asserted exactly; the rendered diagnostics are
//! snapshotted.

use flowpol::policy::{self, Severity, Source, diagnostic};
use std::path::{Path, PathBuf};

fn files(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/policies")
        .join(dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "fpol"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no fixtures in {}", root.display());
    v
}

fn expected(text: &str) -> Vec<String> {
    let first = text.lines().next().unwrap_or("");
    let list = first
        .strip_prefix("# expect:")
        .unwrap_or_else(|| panic!("first line must be `# expect: ...`, got {first:?}"));
    let mut v: Vec<String> = list.split_whitespace().map(str::to_string).collect();
    v.sort();
    v
}

fn findings(name: &str, text: &str) -> (Vec<String>, String, Vec<policy::Diagnostic>) {
    let (_, diags) = policy::check_source(text);
    let src = Source { name, text };
    let mut got: Vec<String> = diags
        .iter()
        .map(|d| {
            let j = diagnostic::to_json(&src, d);
            format!("{}@{}:{}", j.code, j.line, j.column)
        })
        .collect();
    got.sort();
    let rendered: String = diags
        .iter()
        .map(|d| diagnostic::render_human(&src, d))
        .collect();
    (got, rendered, diags)
}

fn run_dir(dir: &str, want: Option<Severity>) {
    for path in files(dir) {
        let text = std::fs::read_to_string(&path).unwrap();
        let name = format!(
            "tests/policies/{dir}/{}",
            path.file_name().unwrap().to_string_lossy()
        );
        let (got, rendered, diags) = findings(&name, &text);
        match want {
            None => {
                assert!(diags.is_empty(), "{name} should check clean:\n{rendered}");
                let p = policy::load_str(&name, &text).unwrap();
                // The canonical form, with and without comments, parses back to the same policy.
                let again = policy::load_str("fmt", &policy::fmt::format(&p)).unwrap();
                assert_eq!(p, again, "{name}: fmt round trip");
                let kept = policy::fmt::format_source(&text).unwrap();
                assert_eq!(p, policy::load_str("fmt", &kept).unwrap(), "{name}: fmt");
            }
            Some(sev) => {
                assert_eq!(
                    got,
                    expected(&text),
                    "{name}: findings (CODE@LINE:COL)\n{rendered}"
                );
                let worst = diags.iter().map(|d| d.severity).max();
                assert_eq!(worst, Some(sev), "{name}: worst severity");
                assert_eq!(
                    policy::load_str(&name, &text).is_err(),
                    sev == Severity::Error
                );
                insta::assert_snapshot!(
                    format!("{dir}__{}", path.file_stem().unwrap().to_string_lossy()),
                    rendered
                );
            }
        }
    }
}

#[test]
fn valid_policies_check_clean() {
    run_dir("valid", None);
}

#[test]
fn invalid_policies_fail_with_exact_findings() {
    run_dir("invalid", Some(Severity::Error));
}

#[test]
fn warning_policies_warn_with_exact_findings() {
    run_dir("warn", Some(Severity::Warning));
}

#[test]
fn bundled_policies_check_clean_and_are_canonical() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut n = 0;
    for e in std::fs::read_dir(root).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|e| e == "fpol") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(
                policy::fmt::format_source(&text).unwrap(),
                text,
                "{}: not in canonical form (run `flowpol fmt` on it)",
                path.display()
            );
            let (_, rendered, diags) = findings(&path.display().to_string(), &text);
            assert!(diags.is_empty(), "{}:\n{rendered}", path.display());
            let p = policy::load_str("x", &text).unwrap();
            assert!(
                !p.three.is_empty() && !p.five.is_empty(),
                "{}: needs both rule kinds",
                path.display()
            );
            n += 1;
        }
    }
    assert!(n >= 4, "at least four bundled policies");
}

/// The example in the README's "policy language" section is a policy a reader can copy: it
/// checks clean and is what `flowpol fmt` prints.
#[test]
fn readme_policy_example_checks_clean_and_is_canonical() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = &readme[readme.find("## The policy language").expect("the section")..];
    let start = section.find("```\n").expect("a code block") + 4;
    let text = &section[start..start + section[start..].find("```\n").unwrap()];
    assert_eq!(policy::fmt::format_source(text).unwrap(), text);
    let (_, rendered, diags) = findings("README.md", text);
    assert!(diags.is_empty(), "{rendered}");
}
