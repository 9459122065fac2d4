//! Prometheus text metrics of a live run (`flowpol watch --metrics-addr`), built with the
//! `prometheus-client` crate and served over HTTP with `tiny_http`.
//!
//! Every metric is a counter, updated from a [`Report`] (the same numbers as the summary) by
//! adding the difference to what it already holds:
//!
//! ```text
//! flowpol_frames_total                              frames captured
//! flowpol_ipv6_packets_total                        IPv6 packets among them
//! flowpol_non_ipv6_frames_total{kind}               ipv4, arp, other, malformed,
//!                                                    ipv4-carrying-ipv6, mpls-pseudowire
//! flowpol_rule_packets_total{engine,rule,action}    per rule (and "default"), engine three|five
//! flowpol_rule_bytes_total{engine,rule,action}
//! flowpol_class_packets_total{engine,class}         per outcome (classes, pass, drop)
//! flowpol_class_bytes_total{engine,class}
//! flowpol_five_unavailable_packets_total{reason}    why the 5-tuple engine had no key
//! flowpol_kernel_packets_total                      PACKET_STATISTICS: seen by the sockets
//! flowpol_kernel_drops_total                        PACKET_STATISTICS: dropped by the kernel
//! ```

use super::model::Report;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

type Labels = Vec<(String, String)>;

/// The metrics of one run.
pub struct Metrics {
    registry: Mutex<Registry>,
    frames: Counter,
    ipv6: Counter,
    non_ipv6: Family<Labels, Counter>,
    rule_packets: Family<Labels, Counter>,
    rule_bytes: Family<Labels, Counter>,
    class_packets: Family<Labels, Counter>,
    class_bytes: Family<Labels, Counter>,
    unavailable: Family<Labels, Counter>,
    kernel_packets: Counter,
    kernel_drops: Counter,
}

/// Raises a counter to `v` (counters only go up; a smaller `v` leaves it).
fn set(c: &Counter, v: u64) {
    let cur = c.get();
    if v > cur {
        c.inc_by(v - cur);
    }
}

fn labels(kv: &[(&str, &str)]) -> Labels {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            frames: Counter::default(),
            ipv6: Counter::default(),
            non_ipv6: Family::default(),
            rule_packets: Family::default(),
            rule_bytes: Family::default(),
            class_packets: Family::default(),
            class_bytes: Family::default(),
            unavailable: Family::default(),
            kernel_packets: Counter::default(),
            kernel_drops: Counter::default(),
        };
        if let Ok(mut r) = m.registry.lock() {
            r.register("flowpol_frames", "Frames captured", m.frames.clone());
            r.register(
                "flowpol_ipv6_packets",
                "IPv6 packets captured",
                m.ipv6.clone(),
            );
            r.register(
                "flowpol_non_ipv6_frames",
                "Frames without an IPv6 packet, by kind",
                m.non_ipv6.clone(),
            );
            r.register(
                "flowpol_rule_packets",
                "Packets per rule and engine (three: 3-tuple, five: 5-tuple)",
                m.rule_packets.clone(),
            );
            r.register(
                "flowpol_rule_bytes",
                "Bytes per rule and engine",
                m.rule_bytes.clone(),
            );
            r.register(
                "flowpol_class_packets",
                "Packets per outcome (class, pass, drop) and engine",
                m.class_packets.clone(),
            );
            r.register(
                "flowpol_class_bytes",
                "Bytes per outcome and engine",
                m.class_bytes.clone(),
            );
            r.register(
                "flowpol_five_unavailable_packets",
                "IPv6 packets without a 5-tuple, by reason",
                m.unavailable.clone(),
            );
            r.register(
                "flowpol_kernel_packets",
                "Frames the kernel passed to the capture sockets (PACKET_STATISTICS)",
                m.kernel_packets.clone(),
            );
            r.register(
                "flowpol_kernel_drops",
                "Frames the kernel dropped before capture (PACKET_STATISTICS)",
                m.kernel_drops.clone(),
            );
        }
        m
    }

    /// Brings every counter up to the report's numbers and the kernel's.
    pub fn update(&self, r: &Report, kernel_packets: u64, kernel_drops: u64) {
        set(&self.frames, r.frames.packets);
        set(&self.ipv6, r.ipv6.packets);
        let n = &r.non_ipv6;
        for (kind, c) in [
            ("ipv4", n.ipv4),
            ("arp", n.arp),
            ("other", n.other),
            ("malformed", n.malformed),
            ("ipv4-carrying-ipv6", n.ipv4_carrying_ipv6),
            ("mpls-pseudowire", n.mpls_pseudowire),
        ] {
            set(
                &self.non_ipv6.get_or_create(&labels(&[("kind", kind)])),
                c.packets,
            );
        }
        for (engine, rows) in [("three", &r.rules.three), ("five", &r.rules.five)] {
            for row in rows {
                let l = labels(&[
                    ("engine", engine),
                    ("rule", &row.name),
                    ("action", &row.action),
                ]);
                set(&self.rule_packets.get_or_create(&l), row.packets);
                set(&self.rule_bytes.get_or_create(&l), row.bytes);
            }
        }
        for c in &r.classes {
            for (engine, v) in [("three", c.three), ("five", c.five)] {
                let l = labels(&[("engine", engine), ("class", &c.name)]);
                set(&self.class_packets.get_or_create(&l), v.packets);
                set(&self.class_bytes.get_or_create(&l), v.bytes);
            }
        }
        let f = &r.five_unavailable;
        for (reason, c) in [
            ("non-first-fragment", f.non_first_fragment),
            ("esp", f.esp),
            ("unknown-header", f.unknown_header),
            ("truncated", f.truncated),
            ("malformed", f.malformed),
        ] {
            set(
                &self
                    .unavailable
                    .get_or_create(&labels(&[("reason", reason)])),
                c.packets,
            );
        }
        set(&self.kernel_packets, kernel_packets);
        set(&self.kernel_drops, kernel_drops);
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        if let Ok(r) = self.registry.lock() {
            let _ = encode(&mut s, &r);
        }
        s
    }
}

/// Serves `metrics` at `http://addr/metrics` (any path) on a thread of its own until the
/// process exits. Returns the address actually bound (port 0 picks one).
pub fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<SocketAddr> {
    let server = tiny_http::Server::http(addr).map_err(std::io::Error::other)?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| std::io::Error::other("not an IP listener"))?;
    std::thread::spawn(move || {
        let ctype = tiny_http::Header::from_bytes(
            &b"Content-Type"[..],
            &b"application/openmetrics-text; version=1.0.0; charset=utf-8"[..],
        )
        .ok();
        for req in server.incoming_requests() {
            let mut resp = tiny_http::Response::from_string(metrics.encode());
            if let Some(h) = ctype.clone() {
                resp = resp.with_header(h);
            }
            let _ = req.respond(resp);
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Tally, model::SourceInfo};

    #[test]
    fn counters_follow_the_report() {
        let policy = crate::policy::load_str(
            "t",
            "class gold\ndefault pass\nthree {\n rule a label 5 -> class gold\n}\nfive {\n rule b proto udp -> drop\n}\n",
        )
        .unwrap();
        let mut tally = Tally::new(&policy, "linear", "linear");
        tally.frames.add(100);
        tally.three.rules[0].add(100);
        let r = Report::new(&tally, &policy, "t", SourceInfo::default());
        let m = Metrics::new();
        m.update(&r, 7, 2);
        m.update(&r, 7, 2);
        let text = m.encode();
        assert!(text.contains("flowpol_frames_total 1\n"), "{text}");
        assert!(
            text.contains(
                "flowpol_rule_packets_total{engine=\"three\",rule=\"a\",action=\"class gold\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("flowpol_kernel_drops_total 2\n"), "{text}");
        assert!(text.contains("flowpol_five_unavailable_packets_total{reason=\"esp\"} 0"));
    }
}
