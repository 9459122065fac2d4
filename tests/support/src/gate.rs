//! Whether a test may run here: root-only tests and tests needing an outside tool or the shared
//! data skip with a message on a developer's machine, and fail under `CI=true`, where all of
//! them must run. Also where the repository and the shared data are.

use std::path::{Path, PathBuf};
use std::process::Command;

/// True when the tests run under CI, where nothing may be skipped.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// True when the test may use root-only facilities. Under `CI=true` a root-only test must run,
/// so a missing privilege there is a failure, not a skip.
pub fn require_root(test: &str) -> bool {
    // The effective uid through `id -u` keeps the tests free of unsafe.
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let root = uid.as_deref().is_ok_and(|u| u == "0");
    if !root {
        if ci() {
            panic!("{test}: needs root (CAP_NET_ADMIN, CAP_NET_RAW) and CI=true forbids skipping");
        }
        eprintln!("SKIP {test}: needs root (CAP_NET_ADMIN, CAP_NET_RAW)");
    }
    root
}

/// Whether `tool --version` runs. Under `CI=true` a missing tool fails the test; otherwise the
/// caller skips, and this says so.
pub fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            !ci(),
            "{tool} is required under CI=true (apt-get install tshark)"
        );
        eprintln!("SKIPPED: {tool} is not installed");
    }
    ok
}

/// The repository's root folder (where flowpol's Cargo.toml is).
pub fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// A file or folder of the repository, by its path from the root.
pub fn repo_path(rel: &str) -> PathBuf {
    repo().join(rel)
}

/// The shared real data (captures, ClassBench sets): `../shared/data` beside the repository, or
/// beside the main checkout when the repository is a git worktree of it.
fn shared_root() -> PathBuf {
    let beside = repo().join("../shared/data");
    if beside.is_dir() {
        return beside;
    }
    // A worktree's `.git` is a file `gitdir: MAIN/.git/worktrees/NAME`.
    let main = std::fs::read_to_string(repo().join(".git"))
        .ok()
        .and_then(|t| {
            let dir = PathBuf::from(t.trim().strip_prefix("gitdir:")?.trim());
            let git = dir.ancestors().find(|a| a.ends_with(".git"))?.to_path_buf();
            Some(git.parent()?.join("../shared/data"))
        });
    main.filter(|d| d.is_dir()).unwrap_or(beside)
}

/// The folder `sub` of the shared data (e.g. `pcaps`, `classbench`), or `None` after saying that
/// it is absent and that `what` is not run. Under `CI=true` an absent folder fails the test.
pub fn shared_data(sub: &str, what: &str) -> Option<PathBuf> {
    let dir = shared_root().join(sub);
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(!ci(), "{} is absent under CI=true", dir.display());
    eprintln!("SKIPPED: {} is absent, {what} not run", dir.display());
    None
}
