//! The one way the tests run `flowpol`: a builder for its arguments, stdin, environment and
//! working folder, optionally inside a network namespace and without a capability, run to an
//! [`Output`] (see [`OutputExt`]) or spawned as a [`Running`] child.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::proc::{Running, spawn_until};

/// A `flowpol` command line being put together. Made by [`crate::flowpol!`].
#[derive(Clone, Debug)]
pub struct Flowpol {
    bin: PathBuf,
    args: Vec<OsString>,
    stdin: Option<Vec<u8>>,
    env: Vec<(OsString, Option<OsString>)>,
    dir: Option<PathBuf>,
    ns: Option<String>,
    without: Option<String>,
}

impl Flowpol {
    /// The binary at `bin`, no arguments yet.
    pub fn at(bin: impl Into<PathBuf>) -> Flowpol {
        Flowpol {
            bin: bin.into(),
            args: Vec::new(),
            stdin: None,
            env: Vec::new(),
            dir: None,
            ns: None,
            without: None,
        }
    }

    /// The binary's path.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Flowpol {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Flowpol
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Bytes written to its stdin (which is then closed).
    pub fn stdin(mut self, bytes: impl AsRef<[u8]>) -> Flowpol {
        self.stdin = Some(bytes.as_ref().to_vec());
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Flowpol {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Flowpol {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Flowpol {
        self.dir = Some(dir.into());
        self
    }

    /// Runs it in the repository's root folder, so relative paths name the repository's files.
    pub fn in_repo(self) -> Flowpol {
        self.current_dir(crate::gate::repo())
    }

    /// Runs it inside network namespace `ns` (`ip netns exec NS ...`).
    pub fn in_ns(mut self, ns: &str) -> Flowpol {
        self.ns = Some(ns.to_string());
        self
    }

    /// Runs it with capability `cap` (e.g. `net_raw`) dropped from the inheritable and bounding
    /// sets (`setpriv --inh-caps=-CAP --bounding-set=-CAP -- ...`).
    pub fn without_capability(mut self, cap: &str) -> Flowpol {
        self.without = Some(cap.to_string());
        self
    }

    /// The [`Command`] this describes (stdin not yet attached).
    pub fn command(&self) -> Command {
        let mut line: Vec<OsString> = Vec::new();
        if let Some(ns) = &self.ns {
            line.extend(["ip", "netns", "exec", ns].map(OsString::from));
        }
        if let Some(cap) = &self.without {
            line.push("setpriv".into());
            line.push(format!("--inh-caps=-{cap}").into());
            line.push(format!("--bounding-set=-{cap}").into());
            line.push("--".into());
        }
        line.push(self.bin.clone().into_os_string());
        line.extend(self.args.iter().cloned());
        let mut c = Command::new(&line[0]);
        c.args(&line[1..]);
        for (k, v) in &self.env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        if let Some(d) = &self.dir {
            c.current_dir(d);
        }
        c
    }

    /// Runs it to the end and collects its exit status, stdout and stderr.
    pub fn output(self) -> Output {
        let mut c = self.command();
        let Some(input) = self.stdin else {
            return c.output().unwrap_or_else(|e| panic!("running {c:?}: {e}"));
        };
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running {c:?}: {e}"));
        let mut pipe = child.stdin.take().unwrap();
        // A child that exits without reading all of stdin closes the pipe: not the test's error.
        let writer = std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out
    }

    /// Runs it, asserts that it succeeded and wrote UTF-8, and returns its stdout.
    pub fn output_ok(self) -> String {
        let what = format!("flowpol {:?}", self.args);
        let out = self.output();
        assert!(
            out.status.success(),
            "{what} failed ({:?}):\n{}\n{}",
            out.code(),
            out.stdout_text(),
            out.stderr_text()
        );
        String::from_utf8(out.stdout).expect("flowpol's stdout is UTF-8")
    }

    /// Runs it without capability `cap` (e.g. `net_raw`) and asserts the refusal: exit 2 and one
    /// stderr line naming the capability (`needs CAP_NET_RAW`). Returns that line.
    pub fn assert_needs_capability(self, cap: &str) -> String {
        let out = self.without_capability(cap).output();
        assert_eq!(out.code(), Some(2), "{out:?}");
        let err = out.stderr_text();
        assert_eq!(err.lines().count(), 1, "{err}");
        let needs = format!("needs CAP_{}", cap.to_uppercase());
        assert!(err.contains(&needs), "{err}");
        err
    }

    /// Spawns it (stdout and stderr piped, stderr read on a thread) without waiting.
    pub fn spawn(self, ready: &str) -> Running {
        assert!(self.stdin.is_none(), "spawn does not feed stdin");
        let what = format!("flowpol {:?}", self.args);
        Running::spawn(self.command(), ready, &what)
    }

    /// Spawns it and waits until a stderr line contains `ready`; returns the child and that line.
    pub fn spawn_until(self, ready: &str) -> (Running, String) {
        assert!(self.stdin.is_none(), "spawn does not feed stdin");
        let what = format!("flowpol {:?}", self.args);
        spawn_until(self.command(), ready, &what)
    }
}

/// Text helpers on a finished run's [`Output`].
pub trait OutputExt {
    /// The exit code (`None` when a signal ended it).
    fn code(&self) -> Option<i32>;
    /// Stdout as text (invalid UTF-8 replaced).
    fn stdout_text(&self) -> String;
    /// Stderr as text (invalid UTF-8 replaced).
    fn stderr_text(&self) -> String;
}

impl OutputExt for Output {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }

    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}
