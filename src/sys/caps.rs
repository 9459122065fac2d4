//! Linux capabilities: which ones this process holds, and the one hint printed when an operation
//! needs one it lacks.

use std::fmt;

/// A capability flowpol's operations may need (numbers from `linux/capability.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capability {
    /// `CAP_NET_ADMIN` (12): long flow-label leases, many labels per socket.
    NetAdmin,
    /// `CAP_NET_RAW` (13): AF_PACKET sockets (capture, replay), binding to a device.
    NetRaw,
}

impl Capability {
    /// The bit of the capability in `CapEff`.
    pub const fn number(self) -> u32 {
        match self {
            Capability::NetAdmin => 12,
            Capability::NetRaw => 13,
        }
    }

    /// The name, e.g. `CAP_NET_RAW`.
    pub const fn name(self) -> &'static str {
        match self {
            Capability::NetAdmin => "CAP_NET_ADMIN",
            Capability::NetRaw => "CAP_NET_RAW",
        }
    }

    /// True when the effective capability set of this process holds it (read from
    /// `/proc/self/status`, so no system call is needed). Unknown counts as absent.
    pub fn held(self) -> bool {
        let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
            return false;
        };
        status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .is_some_and(|bits| bits & (1u64 << self.number()) != 0)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The one sentence for a missing capability: `{what} needs CAP_NET_RAW (run as root, or grant
/// it: setcap cap_net_raw+ep)`.
pub struct Missing<'a, W: fmt::Display> {
    /// What needed it, e.g. "capturing on eth0".
    pub what: &'a W,
    /// The capability.
    pub cap: Capability,
}

impl<W: fmt::Display> fmt::Display for Missing<'_, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} needs {} (run as root, or grant it: setcap {}+ep)",
            self.what,
            self.cap,
            self.cap.name().to_lowercase()
        )
    }
}

/// `Missing { what, cap }`, the sentence for a capability `what` needs and lacks.
pub fn missing<W: fmt::Display>(what: &W, cap: Capability) -> Missing<'_, W> {
    Missing { what, cap }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hint_names_the_capability_and_the_setcap_spelling() {
        assert_eq!(
            missing(&"capturing on eth0", Capability::NetRaw).to_string(),
            "capturing on eth0 needs CAP_NET_RAW (run as root, or grant it: setcap cap_net_raw+ep)"
        );
        assert_eq!(Capability::NetAdmin.number(), 12);
        // Root in CI holds every capability; the probe must at least read the status file.
        if std::env::var_os("CI").is_some() {
            assert!(Capability::NetRaw.held());
        }
    }
}
