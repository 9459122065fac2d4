//! SIGINT and SIGTERM as a stop request (and, for `watch`, SIGHUP as a reload request): the first one is recorded (so a summary can say which
//! signal ended the run) and passed to a callback on a thread of its own (signal-hook's
//! iterator, so no code runs in the signal handler); a second one acts as if no handler were
//! installed, ending the process, for a run that does not stop in time.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Which stop signal arrived, once one has.
#[derive(Clone, Debug, Default)]
pub struct StopSignal(Arc<AtomicI32>);

impl StopSignal {
    /// Catches SIGINT and SIGTERM from now on: the first calls `on_stop` (on the signal thread);
    /// a second one ends the process as the signal would have.
    pub fn install(on_stop: impl Fn() + Send + 'static) -> io::Result<StopSignal> {
        StopSignal::install_with_hup(on_stop, None::<fn()>)
    }

    /// As [`StopSignal::install`]; with `on_hup`, SIGHUP calls it each time (a reload, say)
    /// instead of ending the process.
    pub fn install_with_hup(
        on_stop: impl Fn() + Send + 'static,
        on_hup: Option<impl Fn() + Send + 'static>,
    ) -> io::Result<StopSignal> {
        let got = StopSignal::default();
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        if on_hup.is_some() {
            signals.add_signal(SIGHUP)?;
        }
        let seen = got.0.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    if sig == SIGHUP {
                        if let Some(f) = &on_hup {
                            f();
                        }
                    } else if seen
                        .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                    {
                        on_stop();
                    } else {
                        let _ = signal_hook::low_level::emulate_default_handler(sig);
                    }
                }
            })?;
        Ok(got)
    }

    /// True once a stop signal arrived.
    pub fn stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed) != 0
    }

    /// The name of the signal that arrived (`SIGINT`, `SIGTERM`), if one did.
    pub fn received(&self) -> Option<&'static str> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            s => signal_hook::low_level::signal_name(s).or(Some("a signal")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_signal_means_not_stopped() {
        let s = StopSignal::default();
        assert!(!s.stopped());
        assert_eq!(s.received(), None);
        s.0.store(SIGTERM, Ordering::Relaxed);
        assert_eq!(s.received(), Some("SIGTERM"));
    }
}
