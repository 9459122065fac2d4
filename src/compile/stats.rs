//! Reads the kernel's counters of a compiled ruleset back (`nft -j list counters table ip6
//! flowpol`) and maps them to rules and classes through the counter comments written by
//! [`super::nft`], for a report in flowpol's own format: rules in policy order, then
//! `default`, then (five) `unavailable`; classes named as flowpol's reports name outcomes (the
//! class name, `pass`, `drop`). `unavailable` packets got the default's verdict and count in
//! its class.

use super::CounterTag;
use crate::report::table::{right, table};
use comfy_table::CellAlignment;

/// Why counters could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// The cause is in the text, so it is not also a `source` (it would print twice).
    #[error("cannot run nft: {0}")]
    Spawn(std::io::Error),
    #[error("nft failed ({status}): {stderr}")]
    Nft { status: String, stderr: String },
    #[error("nft printed JSON flowpol does not understand: {0}")]
    Json(#[from] serde_json::Error),
    #[error("nft printed JSON without an `nftables` array")]
    Shape,
    /// Reading counters over netlink needs CAP_NET_ADMIN.
    #[error("{}", crate::sys::caps::missing(&"reading nftables counters", crate::sys::Capability::NetAdmin))]
    NoCapability,
    /// The table is not there.
    #[error(
        "there is no table ip6 {table} in this network namespace (load one with `flowpol compile --target nft --apply`)"
    )]
    NoTable { table: String },
    /// A table of that name whose counters flowpol did not write.
    #[error(
        "table ip6 {table} was not made by `flowpol compile`: none of its {counters} counter(s) carries a flowpol comment"
    )]
    Foreign { table: String, counters: usize },
}

/// Checks that `rows` (the counters of `table`) come from a ruleset `flowpol compile` wrote: at
/// least one counter with flowpol's comment. Every compiled ruleset has one (the default's).
pub fn check_flowpol(table: &str, rows: &[CounterRow]) -> Result<(), StatsError> {
    if rows.iter().any(|r| r.tag.is_some()) {
        Ok(())
    } else {
        Err(StatsError::Foreign {
            table: table.to_string(),
            counters: rows.len(),
        })
    }
}

/// One kernel counter.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CounterRow {
    pub name: String,
    /// What it counts, when its comment was written by flowpol.
    pub tag: Option<CounterTag>,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(serde::Deserialize)]
struct Top {
    nftables: Vec<serde_json::Value>,
}

#[derive(serde::Deserialize)]
struct JsonCounter {
    name: String,
    #[serde(default)]
    table: String,
    #[serde(default)]
    comment: Option<String>,
    packets: u64,
    bytes: u64,
}

/// Parses the output of `nft -j list counters [table ip6 T]`, keeping the counters of `table`.
pub fn parse_counters(json: &str, table: &str) -> Result<Vec<CounterRow>, StatsError> {
    let top: Top = serde_json::from_str(json)?;
    let mut rows = Vec::new();
    for obj in top.nftables {
        let Some(c) = obj.get("counter") else {
            continue;
        };
        let c: JsonCounter = serde_json::from_value(c.clone())?;
        if !c.table.is_empty() && c.table != table {
            continue;
        }
        rows.push(CounterRow {
            tag: c.comment.as_deref().and_then(CounterTag::parse),
            name: c.name,
            packets: c.packets,
            bytes: c.bytes,
        });
    }
    Ok(rows)
}

/// Runs `nft -j list counters table ip6 TABLE` in the current network namespace.
/// Without CAP_NET_ADMIN this fails with [`StatsError::NoCapability`] before running nft; a
/// missing table is [`StatsError::NoTable`], a table of another program [`StatsError::Foreign`].
pub fn read_kernel(table: &str) -> Result<Vec<CounterRow>, StatsError> {
    if !crate::sys::Capability::NetAdmin.held() {
        return Err(StatsError::NoCapability);
    }
    let out = std::process::Command::new("nft")
        .args(["-j", "list", "counters", "table", "ip6", table])
        .output()
        .map_err(StatsError::Spawn)?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // nft's words for a table that is not there: "Error: No such file or directory".
        if stderr.contains("No such file or directory") {
            return Err(StatsError::NoTable {
                table: table.to_string(),
            });
        }
        if stderr.contains("Operation not permitted") {
            return Err(StatsError::NoCapability);
        }
        return Err(StatsError::Nft {
            status: out.status.to_string(),
            stderr: stderr
                .lines()
                .find(|l| l.starts_with("Error"))
                .unwrap_or(stderr.trim())
                .to_string(),
        });
    }
    let rows = parse_counters(&String::from_utf8_lossy(&out.stdout), table)?;
    check_flowpol(table, &rows)?;
    Ok(rows)
}

/// Per rule (and default) counts.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RuleStat {
    /// The rule's index; `None` for the default.
    pub index: Option<usize>,
    /// The rule name, `default`, or the raw counter name for a counter flowpol did not write.
    pub name: String,
    pub counter: String,
    pub action: String,
    pub packets: u64,
    pub bytes: u64,
}

/// Per class counts, named as flowpol's reports name outcomes: the class name, `pass`, `drop`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ClassStat {
    pub name: String,
    pub rules: usize,
    pub packets: u64,
    pub bytes: u64,
}

/// The report of `flowpol nft stats`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StatsReport {
    pub table: String,
    pub engine: Option<String>,
    pub packets: u64,
    pub bytes: u64,
    pub rules: Vec<RuleStat>,
    pub classes: Vec<ClassStat>,
}

/// Builds the report: rules in policy order, the default last, then actions in order of first
/// appearance.
pub fn report(table: &str, rows: &[CounterRow]) -> StatsReport {
    let mut rules: Vec<RuleStat> = rows
        .iter()
        .map(|r| match &r.tag {
            Some(t) => RuleStat {
                index: t.index,
                name: t.rule.clone().unwrap_or_else(|| "default".into()),
                counter: r.name.clone(),
                action: t.action.clone(),
                packets: r.packets,
                bytes: r.bytes,
            },
            None => RuleStat {
                index: None,
                name: r.name.clone(),
                counter: r.name.clone(),
                action: "?".into(),
                packets: r.packets,
                bytes: r.bytes,
            },
        })
        .collect();
    // Rules by index; the default (tagged, no index) after them; foreign counters last.
    rules.sort_by_key(|r| match (r.index, r.action.as_str()) {
        (Some(i), _) => (0, i),
        (None, "?") => (3, 0),
        (None, _) if r.name == super::UNAVAILABLE_COUNTER => (2, 0),
        (None, _) => (1, 0),
    });
    // Classes first (in order of appearance), then pass and drop, as in flowpol's reports.
    let outcome = |action: &str| action.strip_prefix("class ").unwrap_or(action).to_string();
    let mut names: Vec<String> = rules
        .iter()
        .filter(|r| r.action.starts_with("class "))
        .map(|r| outcome(&r.action))
        .collect();
    names.dedup();
    let mut seen = Vec::new();
    names.retain(|n| {
        let first = !seen.contains(n);
        seen.push(n.clone());
        first
    });
    names.extend(["pass".to_string(), "drop".to_string()]);
    let mut classes: Vec<ClassStat> = names
        .into_iter()
        .map(|name| ClassStat {
            name,
            rules: 0,
            packets: 0,
            bytes: 0,
        })
        .collect();
    for r in rules.iter().filter(|r| r.action != "?") {
        if let Some(c) = classes.iter_mut().find(|c| c.name == outcome(&r.action)) {
            c.rules += usize::from(r.index.is_some());
            c.packets += r.packets;
            c.bytes += r.bytes;
        }
    }
    StatsReport {
        table: table.into(),
        engine: rows
            .iter()
            .find_map(|r| r.tag.as_ref().map(|t| t.engine.clone())),
        packets: rules.iter().map(|r| r.packets).sum(),
        bytes: rules.iter().map(|r| r.bytes).sum(),
        rules,
        classes,
    }
}

fn share(n: u64, total: u64) -> String {
    if total == 0 {
        "-".into()
    } else {
        format!("{:.1}%", n as f64 * 100.0 / total as f64)
    }
}

/// The human tables: rules in policy order with the default last, then classes.
pub fn render_table(r: &StatsReport) -> String {
    let mut t = table(&["#", "rule", "action", "packets", "bytes", "share"]);
    for s in &r.rules {
        t.add_row(vec![
            s.index.map_or("-".into(), |i| i.to_string()),
            s.name.clone(),
            s.action.clone(),
            s.packets.to_string(),
            s.bytes.to_string(),
            share(s.packets, r.packets),
        ]);
    }
    right(&mut t, 3);
    if let Some(c) = t.column_mut(0) {
        c.set_cell_alignment(CellAlignment::Right);
    }
    let mut c = table(&["class", "rules", "packets", "bytes", "share"]);
    for s in &r.classes {
        c.add_row(vec![
            s.name.clone(),
            s.rules.to_string(),
            s.packets.to_string(),
            s.bytes.to_string(),
            share(s.packets, r.packets),
        ]);
    }
    right(&mut c, 1);
    format!(
        "nftables table ip6 {} ({} engine): {} packets ({} bytes)\n\nRules\n{t}\n\nClasses\n{c}\n",
        r.table,
        r.engine.as_deref().unwrap_or("?"),
        r.packets,
        r.bytes
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
 {"counter": {"family": "ip6", "name": "r1_b", "table": "flowpol", "handle": 4, "comment": "flowpol three rule 1 b -> class gold", "packets": 3, "bytes": 300}},
 {"counter": {"family": "ip6", "name": "r0_a", "table": "flowpol", "handle": 3, "comment": "flowpol three rule 0 a -> class gold", "packets": 5, "bytes": 500}},
 {"counter": {"family": "ip6", "name": "default", "table": "flowpol", "handle": 5, "comment": "flowpol three default -> pass", "packets": 2, "bytes": 100}},
 {"counter": {"family": "ip6", "name": "x", "table": "other", "handle": 5, "packets": 9, "bytes": 9}}]}"#;

    #[test]
    fn maps_counters_to_rules_and_actions() {
        let rows = parse_counters(SAMPLE, "flowpol").unwrap();
        assert_eq!(rows.len(), 3);
        let r = report("flowpol", &rows);
        let names: Vec<&str> = r.rules.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "default"]);
        assert_eq!(r.packets, 10);
        let c = |name: &str, rules, packets, bytes| ClassStat {
            name: name.into(),
            rules,
            packets,
            bytes,
        };
        assert_eq!(
            r.classes,
            [
                c("gold", 2, 8, 800),
                c("pass", 0, 2, 100),
                c("drop", 0, 0, 0)
            ]
        );
        let t = render_table(&r);
        assert!(t.contains("80.0%") && t.contains("\nClasses\n"), "{t}");
        assert!(parse_counters("{}", "flowpol").is_err());
        assert!(check_flowpol("flowpol", &rows).is_ok());
    }

    #[test]
    fn a_table_without_flowpol_counters_is_named_foreign() {
        let rows = parse_counters(SAMPLE, "other").unwrap();
        assert_eq!(rows.len(), 1);
        let e = check_flowpol("other", &rows).unwrap_err().to_string();
        assert_eq!(
            e,
            "table ip6 other was not made by `flowpol compile`: none of its 1 counter(s) carries a flowpol comment"
        );
    }
}
