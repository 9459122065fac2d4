//! Putting labelled traffic on the wire and reading it back: [`send`](send::send) sets a flow
//! label the way an application does (IPV6_FLOWLABEL_MGR lease, IPV6_FLOWINFO_SEND,
//! `sin6_flowinfo` in network byte order) or lets the kernel choose one (IPV6_AUTOFLOWLABEL);
//! [`sink`](sink::sink) receives and reports the label each datagram or connection arrived with;
//! [`replay`](replay::replay) puts a capture on an interface through an AF_PACKET socket.
//!
//! The raw socket options, `recvmsg` and AF_PACKET calls are in [`crate::sys`];
//! kernel refusals become [`errors::SendError`] values that explain the cause in words.

pub mod errors;
pub mod replay;
#[allow(clippy::module_inception)]
pub mod send;
pub mod sink;

pub use errors::SendError;

/// The kernel interface (`crate::sys`), named `sys` for the files of this module.
use crate::sys;

/// The transport used by `send` and `sink`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// UDP datagrams.
    Udp,
    /// One TCP connection.
    Tcp,
}

impl Proto {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        }
    }

    /// A new socket of this transport in the family of `addr`.
    pub(crate) fn socket(self, addr: std::net::IpAddr) -> Result<socket2::Socket, SendError> {
        use socket2::{Domain, Protocol, Socket, Type};
        let domain = if addr.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        let (ty, proto) = match self {
            Proto::Udp => (Type::DGRAM, Protocol::UDP),
            Proto::Tcp => (Type::STREAM, Protocol::TCP),
        };
        Socket::new(domain, ty, Some(proto)).map_err(|e| SendError::io("opening the socket", e))
    }
}

/// Who else may use a leased label (`flr_share`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Share {
    /// Only this socket (IPV6_FL_S_EXCL); after release it lingers, blocking everyone.
    Excl,
    /// Sockets of this process (IPV6_FL_S_PROCESS).
    Process,
    /// Sockets of this user (IPV6_FL_S_USER).
    User,
    /// Anybody (IPV6_FL_S_ANY).
    Any,
}

impl Share {
    /// The `flr_share` value.
    pub fn raw(self) -> u8 {
        match self {
            Share::Excl => sys::IPV6_FL_S_EXCL,
            Share::Process => sys::IPV6_FL_S_PROCESS,
            Share::User => sys::IPV6_FL_S_USER,
            Share::Any => sys::IPV6_FL_S_ANY,
        }
    }

    /// The share mode of a `flr_share` value.
    pub fn from_raw(v: u8) -> Option<Share> {
        match v {
            sys::IPV6_FL_S_EXCL => Some(Share::Excl),
            sys::IPV6_FL_S_PROCESS => Some(Share::Process),
            sys::IPV6_FL_S_USER => Some(Share::User),
            sys::IPV6_FL_S_ANY => Some(Share::Any),
            _ => None,
        }
    }

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Share::Excl => "excl",
            Share::Process => "process",
            Share::User => "user",
            Share::Any => "any",
        }
    }
}

/// Sleeps until `due`, in slices short enough to notice a stop signal; false when one came.
pub(crate) fn sleep_until(
    due: std::time::Instant,
    stop: Option<&sys::signals::StopSignal>,
) -> bool {
    const SLICE: std::time::Duration = std::time::Duration::from_millis(50);
    loop {
        if stop.is_some_and(|s| s.stopped()) {
            return false;
        }
        let now = std::time::Instant::now();
        if due <= now {
            return true;
        }
        std::thread::sleep((due - now).min(SLICE));
    }
}

/// True once a stop signal arrived.
pub(crate) fn stop_asked(stop: Option<&sys::signals::StopSignal>) -> bool {
    stop.is_some_and(|s| s.stopped())
}

/// Times of the first and the last packet, for the achieved rate.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SendClock {
    first: Option<std::time::Instant>,
    last: Option<std::time::Instant>,
}

impl SendClock {
    /// Records a packet handed to the kernel now.
    pub(crate) fn tick(&mut self) {
        let now = std::time::Instant::now();
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// Seconds from the first to the last packet.
    pub(crate) fn elapsed_s(&self) -> f64 {
        match (self.first, self.last) {
            (Some(f), Some(l)) => l.duration_since(f).as_secs_f64(),
            _ => 0.0,
        }
    }

    /// Packets per second over `n` packets: the n-1 gaps between them over the time they took
    /// (0 with fewer than two packets, where no rate exists).
    pub(crate) fn rate(&self, n: u64) -> f64 {
        let e = self.elapsed_s();
        if n >= 2 && e > 0.0 {
            (n - 1) as f64 / e
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_modes_round_trip() {
        for s in [Share::Excl, Share::Process, Share::User, Share::Any] {
            assert_eq!(Share::from_raw(s.raw()), Some(s));
        }
        assert_eq!(Share::from_raw(0), None);
        assert_eq!(Share::Any.raw(), 255);
    }

    #[test]
    fn clock_rate_needs_two_packets() {
        let mut c = SendClock::default();
        assert_eq!(c.rate(0), 0.0);
        c.tick();
        assert_eq!(c.rate(1), 0.0);
        std::thread::sleep(std::time::Duration::from_millis(20));
        c.tick();
        let r = c.rate(2);
        assert!(r > 0.0 && r <= 50.0, "{r}");
    }
}
