//! The human rendering of a [`Report`]: the 3-tuple and 5-tuple engines side by side.

use super::model::Report;
use comfy_table::{CellAlignment, Table};
use std::fmt::Write;

/// A table in flowpol's one style (ASCII, no lines between rows), with its header.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(comfy_table::presets::ASCII_FULL_CONDENSED);
    t.set_header(header.iter().copied());
    t
}

/// Right-aligns every column from `from` on (the numbers).
pub fn right(t: &mut Table, from: usize) {
    let n = t.column_count();
    for i in from..n {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
}

fn dash(n: Option<u64>) -> String {
    n.map_or_else(|| "-".to_string(), |n| n.to_string())
}

/// Renders the whole report: the summary lines, then one table per part.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    summary(&mut s, r);
    rules(&mut s, r);
    classes(&mut s, r);
    agreement(&mut s, r);
    unavailable(&mut s, r);
    timing(&mut s, r);
    s
}

/// Frames, IPv6 packets, non-IPv6 kinds, and where reading stopped early.
fn summary(s: &mut String, r: &Report) {
    let _ = writeln!(
        s,
        "{} ({}), policy {}: {} frames, {} IPv6 packets ({} bytes)",
        r.source.name, r.source.kind, r.policy, r.frames.packets, r.ipv6.packets, r.ipv6.bytes
    );
    let n = &r.non_ipv6;
    let _ = write!(
        s,
        "not IPv6: ipv4 {}, arp {}, other {}, malformed {}",
        n.ipv4.packets, n.arp.packets, n.other.packets, n.malformed.packets
    );
    if n.ipv4_carrying_ipv6.packets > 0 {
        let _ = write!(
            s,
            ", ipv4 carrying ipv6 {} (use --tunnel inner)",
            n.ipv4_carrying_ipv6.packets
        );
    }
    if n.mpls_pseudowire.packets > 0 {
        let _ = write!(s, ", mpls pseudowire {}", n.mpls_pseudowire.packets);
    }
    let _ = writeln!(s);
    if !r.tunnels.is_empty() {
        let kinds: Vec<String> = r
            .tunnels
            .iter()
            .map(|(k, c)| format!("{k} {}", c.packets))
            .collect();
        let _ = writeln!(
            s,
            "IPv6 inside tunnels (--tunnel inner): {}",
            kinds.join(", ")
        );
    }
    capture(s, r);
    if let Some(st) = &r.stopped {
        let _ = writeln!(s, "STOPPED EARLY at byte {}: {}", st.offset, st.message);
    }
}

/// The capture's link types (one line each, those not decoded said so), bad timestamps, gzip.
fn capture(s: &mut String, r: &Report) {
    let c = &r.capture;
    if c.gzip {
        let _ = writeln!(s, "gzip-compressed (read decompressing)");
    }
    for l in &c.link_types {
        let _ = writeln!(
            s,
            "{}: {} frame{}{}",
            l.label(),
            l.frames,
            if l.frames == 1 { "" } else { "s" },
            if l.decoded { "" } else { ", not decoded" }
        );
    }
    if c.bad_timestamps > 0 {
        let _ = writeln!(
            s,
            "bad timestamps: {} record{} (first: frame {}), read anyway",
            c.bad_timestamps,
            if c.bad_timestamps == 1 { "" } else { "s" },
            c.first_bad_timestamp.unwrap_or(0)
        );
    }
}

/// Rules side by side, matched by name (3-tuple order first, then 5-tuple-only rules).
fn rules(s: &mut String, r: &Report) {
    let _ = writeln!(s, "\nRules");
    let mut t = table(&[
        "rule",
        "3-tuple action",
        "packets",
        "bytes",
        "5-tuple action",
        "packets",
        "bytes",
    ]);
    let mut names: Vec<&str> = Vec::new();
    for row in r.rules.three.iter().chain(&r.rules.five) {
        if !names.contains(&row.name.as_str()) {
            names.push(&row.name);
        }
    }
    // Keep "default" last.
    names.retain(|n| *n != "default");
    names.push("default");
    for name in names {
        let a = r.rules.three.iter().find(|x| x.name == name);
        let b = r.rules.five.iter().find(|x| x.name == name);
        t.add_row(vec![
            name.to_string(),
            a.map_or("-".into(), |x| x.action.clone()),
            dash(a.map(|x| x.packets)),
            dash(a.map(|x| x.bytes)),
            b.map_or("-".into(), |x| x.action.clone()),
            dash(b.map(|x| x.packets)),
            dash(b.map(|x| x.bytes)),
        ]);
    }
    right(&mut t, 2);
    let _ = writeln!(s, "{t}");
}

/// Packets and bytes per class under each engine, and the packets without a 5-tuple.
fn classes(s: &mut String, r: &Report) {
    let _ = writeln!(s, "\nClasses");
    let mut t = table(&[
        "class",
        "3-tuple packets",
        "bytes",
        "5-tuple packets",
        "bytes",
        "difference",
    ]);
    for c in &r.classes {
        t.add_row(vec![
            c.name.clone(),
            c.three.packets.to_string(),
            c.three.bytes.to_string(),
            c.five.packets.to_string(),
            c.five.bytes.to_string(),
            format!("{:+}", c.three.packets as i64 - c.five.packets as i64),
        ]);
    }
    let u = &r.five_unavailable.total;
    t.add_row(vec![
        "(no 5-tuple)".into(),
        "-".into(),
        "-".into(),
        u.packets.to_string(),
        u.bytes.to_string(),
        String::new(),
    ]);
    right(&mut t, 1);
    let _ = writeln!(s, "{t}");
}

/// The agreement matrix (rows: 3-tuple, columns: 5-tuple).
fn agreement(s: &mut String, r: &Report) {
    let a = &r.agreement;
    let _ = writeln!(
        s,
        "\nAgreement (rows: 3-tuple, columns: 5-tuple): {} agree, {} disagree, {} without a 5-tuple",
        a.agree, a.disagree, a.unavailable
    );
    let mut header = vec!["3-tuple \\ 5-tuple"];
    header.extend(a.columns.iter().map(String::as_str));
    let mut t = table(&header);
    for (name, row) in a.rows.iter().zip(&a.counts) {
        let mut cells = vec![name.clone()];
        cells.extend(row.iter().map(u64::to_string));
        t.add_row(cells);
    }
    right(&mut t, 1);
    let _ = writeln!(s, "{t}");
}

/// Packets without a 5-tuple, by reason.
fn unavailable(s: &mut String, r: &Report) {
    let _ = writeln!(s, "\nNo 5-tuple, by reason");
    let mut t = table(&["reason", "packets", "bytes"]);
    let f = &r.five_unavailable;
    for (name, c) in [
        ("non-first-fragment", f.non_first_fragment),
        ("esp", f.esp),
        ("unknown-header", f.unknown_header),
        ("truncated", f.truncated),
        ("malformed", f.malformed),
    ] {
        t.add_row(vec![
            name.to_string(),
            c.packets.to_string(),
            c.bytes.to_string(),
        ]);
    }
    right(&mut t, 1);
    let _ = writeln!(s, "{t}");
}

/// Time per packet, sampled, per key and engine.
fn timing(s: &mut String, r: &Report) {
    let _ = writeln!(s, "\nTime per packet (sampled)");
    let mut t = table(&[
        "key",
        "engine",
        "extract ns/pkt",
        "match ns/pkt",
        "packets",
        "timed",
    ]);
    for (key, e) in [("3-tuple", &r.timing.three), ("5-tuple", &r.timing.five)] {
        t.add_row(vec![
            key.to_string(),
            e.engine.clone(),
            format!("{:.1}", e.extract_ns_per_packet),
            format!("{:.1}", e.match_ns_per_packet),
            e.packets.to_string(),
            e.timed.to_string(),
        ]);
    }
    right(&mut t, 2);
    let _ = writeln!(s, "{t}");
}
