//! Child processes in tests: start one with a thread reading its stderr, wait for the line that
//! says it is ready (tcpdump's "listening on", flowpol's own ready lines), and finish it within
//! a time limit, collecting stdout and stderr.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

/// A running child whose stderr is read line by line on a thread.
pub struct Running {
    pub child: Child,
    /// All of stderr, sent when it closes.
    stderr: mpsc::Receiver<String>,
    /// Stderr up to and including the first line containing the ready text, and when the
    /// thread saw that line.
    ready: mpsc::Receiver<(String, SystemTime)>,
    what: String,
}

impl Running {
    /// Spawns `cmd` (stdout and stderr piped) without waiting for anything.
    pub fn spawn(mut cmd: Command, ready: &str, what: &str) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect(what);
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let ready = ready.to_string();
        std::thread::spawn(move || {
            let mut all = String::new();
            let mut signalled = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                all.push_str(&line);
                all.push('\n');
                if !signalled && line.contains(&ready) {
                    signalled = true;
                    let _ = ready_tx.send((all.clone(), SystemTime::now()));
                }
            }
            let _ = tx.send(all);
        });
        Running {
            child,
            stderr: rx,
            ready: ready_rx,
            what: what.to_string(),
        }
    }

    /// Waits (up to 20 s) for the ready line; returns stderr up to it and when it was seen.
    /// Kills the child and panics with its stderr when it does not come.
    pub fn wait_ready(&mut self) -> (String, SystemTime) {
        match self.ready.recv_timeout(Duration::from_secs(20)) {
            Ok(r) => r,
            Err(_) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{} did not get ready: {}", self.what, self.stderr());
            }
        }
    }

    /// All of stderr, once the child has closed it (waits up to 2 s).
    pub fn stderr(&self) -> String {
        self.stderr
            .recv_timeout(Duration::from_secs(2))
            .unwrap_or_default()
    }

    /// Waits for the child to exit, killing it after `limit`: exit status, stdout, stderr.
    pub fn finish(&mut self, limit: Duration) -> (ExitStatus, String, String) {
        let end = Instant::now() + limit;
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > end {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = self.child.wait().unwrap();
        let mut out = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            stdout.read_to_string(&mut out).unwrap();
        }
        (status, out, self.stderr())
    }
}

/// Spawns `cmd` and waits until a stderr line contains `ready`; returns the child and that line.
pub fn spawn_until(cmd: Command, ready: &str, what: &str) -> (Running, String) {
    let mut r = Running::spawn(cmd, ready, what);
    let (upto, _) = r.wait_ready();
    let line = upto.lines().last().unwrap_or_default().to_string();
    (r, line)
}
