//! `flowpol bench --sweep SHAPE --rules N,N`: every engine × tuple × size in the JSON, no
//! mismatch, and the lookup-vs-rules SVG with a series per engine and tuple.

use flowpol::bench::all_engines;
use serde_json::Value;
use support::{OutputExt, flowpol};

#[test]
fn a_tiny_sweep_reports_every_engine_tuple_and_size_and_draws_the_figure() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("s.svg");
    for shape in ["acl", "fw", "ipc"] {
        let o = flowpol!(
            "bench",
            "--sweep",
            shape,
            "--rules",
            "10,100",
            "--min-ms",
            "1",
            "--format",
            "json",
            "--plot",
            svg.to_str().unwrap()
        )
        .output();
        assert_eq!(o.code(), Some(0), "{shape}: {}", o.stderr_text());
        let v: Value = serde_json::from_str(&o.stdout_text()).unwrap();
        assert_eq!(v["shape"], shape);
        assert_eq!(v["sizes"], serde_json::json!([10, 100]));
        assert_eq!(v["mismatches"], 0);
        let rows = v["rows"].as_array().unwrap();
        let engines = all_engines().len();
        assert_eq!(rows.len(), engines * 2 * 2, "{shape}: {rows:?}");
        for n in [10, 100] {
            for tuple in ["three", "five"] {
                let here: Vec<&Value> = rows
                    .iter()
                    .filter(|r| r["rules"] == n && r["tuple"] == tuple)
                    .collect();
                assert_eq!(here.len(), engines, "{shape} {n} {tuple}");
                let mut names: Vec<&str> =
                    here.iter().map(|r| r["engine"].as_str().unwrap()).collect();
                names.sort();
                names.dedup();
                assert_eq!(names.len(), engines, "{shape} {n} {tuple}: {names:?}");
                for r in here {
                    assert_eq!(r["mismatches"], 0);
                    assert!(r["keys"].as_u64().unwrap() >= 200, "{r}");
                    assert!(r["lookup_ns"].as_f64().unwrap() > 0.0, "{r}");
                    assert!(r["bytes"].as_u64().unwrap() > 0, "{r}");
                    assert!(r["build_ms"].as_f64().unwrap() >= 0.0, "{r}");
                }
            }
        }
        let text = std::fs::read_to_string(&svg).unwrap();
        let doc = roxmltree::Document::parse(&text).unwrap();
        let texts: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text())
            .collect();
        let names: Vec<&str> = rows.iter().map(|r| r["engine"].as_str().unwrap()).collect();
        for name in names {
            for t in ["3-tuple", "5-tuple"] {
                let label = format!("{name} {t}");
                assert!(
                    texts.iter().any(|x| x.trim() == label),
                    "{label}: {texts:?}"
                );
            }
        }
        assert!(
            texts
                .iter()
                .any(|x| x.contains(&format!("generated {shape}"))),
            "{texts:?}"
        );
        // One line per engine and tuple.
        let lines = doc
            .descendants()
            .filter(|n| n.has_tag_name("polyline"))
            .count();
        assert!(lines >= engines * 2, "{lines} lines");
    }
}

#[test]
fn a_sweep_table_names_its_shape_and_bad_counts_are_usage_errors() {
    let o = flowpol!("bench", "--sweep", "fw", "--rules", "20", "--min-ms", "1").output();
    assert_eq!(o.code(), Some(0), "{}", o.stderr_text());
    assert!(
        o.stdout_text()
            .contains("generated fw sets, seed 42; 0 mismatches against the linear reference"),
        "{}",
        o.stdout_text()
    );
    let o = flowpol!("bench", "--sweep", "fw", "--rules", "0").output();
    assert_eq!(o.code(), Some(2));
    // The sweep generates its own rules and keys: a policy or packets are refused.
    let o = flowpol!("bench", "--sweep", "acl", "--policy", "x.pol").output();
    assert_eq!(o.code(), Some(2));
    let o = flowpol!(
        "bench",
        "--rules",
        "10",
        "--classbench",
        "x",
        "--trace",
        "y"
    )
    .output();
    assert_eq!(o.code(), Some(2));
}
