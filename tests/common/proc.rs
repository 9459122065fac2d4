//! Child processes in tests: start one and wait for the stderr line that says it is ready
//! (tcpdump's "listening on", flowpol's own ready lines), and bounded waits.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Spawns `cmd`, waiting until a stderr line contains `ready`; the rest of stderr is collected.
pub fn spawn_until(
    mut cmd: Command,
    ready: &str,
    what: &str,
) -> (Child, mpsc::Receiver<String>, String) {
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
            if !signalled && line.contains(&ready) {
                signalled = true;
                let _ = ready_tx.send(line.clone());
            }
            all.push_str(&line);
            all.push('\n');
        }
        let _ = tx.send(all);
    });
    match ready_rx.recv_timeout(Duration::from_secs(20)) {
        Ok(line) => (child, rx, line),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not get ready: {}",
                rx.recv_timeout(Duration::from_secs(2)).unwrap_or_default()
            );
        }
    }
}

/// Waits for `child` up to `limit`, killing it after.
pub fn wait_limit(child: &mut Child, limit: Duration) {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}
