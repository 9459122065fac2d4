//! The kernel's protocol counters of the current network namespace (`/proc/net/netstat`,
//! `/proc/net/snmp`, `/proc/net/snmp6`), for reporting what the kernel dropped during a run:
//! take a [`NetCounters`] before and after, and subtract. The counters are per network
//! namespace, so a delta includes every socket of the namespace, not only the caller's.

/// The drop counters `sink` reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct NetCounters {
    /// `TcpExt: ListenOverflows`: a connection completed its handshake while the accept queue
    /// was full (the final ACK was dropped).
    pub listen_overflows: u64,
    /// `TcpExt: ListenDrops`: SYNs or handshakes dropped on a listening socket for any reason
    /// (overflows included).
    pub listen_drops: u64,
    /// `Udp6RcvbufErrors` + `Udp: RcvbufErrors`: datagrams dropped because a socket's receive
    /// buffer was full.
    pub udp_rcvbuf_errors: u64,
}

impl NetCounters {
    /// The counters now (a counter that cannot be read counts as 0).
    pub fn read() -> NetCounters {
        let text = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        NetCounters::parse(
            &text("/proc/net/netstat"),
            &text("/proc/net/snmp"),
            &text("/proc/net/snmp6"),
        )
    }

    /// Parses the three files' text.
    pub fn parse(netstat: &str, snmp: &str, snmp6: &str) -> NetCounters {
        let udp6 = snmp6
            .lines()
            .find_map(|l| {
                let mut f = l.split_whitespace();
                (f.next()? == "Udp6RcvbufErrors").then(|| f.next()?.parse().ok())?
            })
            .unwrap_or(0);
        NetCounters {
            listen_overflows: paired(netstat, "TcpExt", "ListenOverflows").unwrap_or(0),
            listen_drops: paired(netstat, "TcpExt", "ListenDrops").unwrap_or(0),
            udp_rcvbuf_errors: udp6 + paired(snmp, "Udp", "RcvbufErrors").unwrap_or(0),
        }
    }

    /// What grew from `before` to `self` (0 for a counter that went back).
    pub fn since(&self, before: &NetCounters) -> NetCounters {
        NetCounters {
            listen_overflows: self
                .listen_overflows
                .saturating_sub(before.listen_overflows),
            listen_drops: self.listen_drops.saturating_sub(before.listen_drops),
            udp_rcvbuf_errors: self
                .udp_rcvbuf_errors
                .saturating_sub(before.udp_rcvbuf_errors),
        }
    }
}

/// A value from the `PREFIX: names` / `PREFIX: values` line pairs of /proc/net/netstat and
/// /proc/net/snmp.
fn paired(text: &str, prefix: &str, name: &str) -> Option<u64> {
    let tag = format!("{prefix}:");
    let mut lines = text
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(&tag));
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let i = names.split_whitespace().position(|n| n == name);
        if let Some(i) = i {
            return values.split_whitespace().nth(i)?.parse().ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_paired_lines_and_the_snmp6_table() {
        let netstat = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 13984 14000\n\
                       IpExt: InNoRoutes\nIpExt: 3\n";
        let snmp = "Udp: InDatagrams RcvbufErrors\nUdp: 15 4\nUdpLite: InDatagrams RcvbufErrors\nUdpLite: 0 9\n";
        let snmp6 =
            "Udp6InDatagrams                 \t442224\nUdp6RcvbufErrors                \t7\n";
        let c = NetCounters::parse(netstat, snmp, snmp6);
        assert_eq!(
            c,
            NetCounters {
                listen_overflows: 13984,
                listen_drops: 14000,
                udp_rcvbuf_errors: 11
            }
        );
        let later = NetCounters {
            listen_overflows: 13990,
            ..c
        };
        assert_eq!(later.since(&c).listen_overflows, 6);
        assert_eq!(NetCounters::parse("", "", ""), NetCounters::default());
        // The live files parse (whatever their numbers).
        let _ = NetCounters::read();
    }
}
