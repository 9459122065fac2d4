//! Findings as one SARIF 2.1.0 log (the format GitHub code scanning reads), for `check`,
//! `test` and `diff`. One run, tool `flowpol`, one reporting descriptor per code used; every
//! result is located by file, line and column (columns count Unicode code points, as the other
//! formats do, and the run says so with `columnKind`).

use crate::policy::diagnostic::{Code, Diagnostic, Renderer, Severity};
use crate::policy::syntax::Span;
use serde_json::{Value, json};

/// A SARIF log being built.
#[derive(Debug, Default)]
pub struct SarifLog {
    rules: Vec<Code>,
    results: Vec<Value>,
}

/// The schema the log names.
pub const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

impl SarifLog {
    pub fn new() -> Self {
        SarifLog::default()
    }

    fn rule_index(&mut self, code: Code) -> usize {
        match self.rules.iter().position(|c| *c == code) {
            Some(i) => i,
            None => {
                self.rules.push(code);
                self.rules.len() - 1
            }
        }
    }

    /// Adds a finding of the file `render` shows, at its span, with its secondary spans as
    /// related locations.
    pub fn add(&mut self, render: &Renderer<'_>, d: &Diagnostic) {
        let mut text = d.message.clone();
        if !d.label.is_empty() {
            text.push_str(&format!(" ({})", d.label));
        }
        if let Some(h) = &d.help {
            text.push_str(&format!("; help: {h}"));
        }
        let related: Vec<Value> = d
            .secondary
            .iter()
            .enumerate()
            .map(|(i, (span, label))| {
                json!({
                    "id": i,
                    "physicalLocation": physical(render, *span),
                    "message": { "text": label },
                })
            })
            .collect();
        let mut result = self.result(d.code, d.severity, &text);
        result["locations"] = json!([{ "physicalLocation": physical(render, d.span) }]);
        if !related.is_empty() {
            result["relatedLocations"] = Value::Array(related);
        }
        self.results.push(result);
    }

    /// Adds a finding about a whole file (no position), such as a file that cannot be read.
    pub fn add_file(&mut self, code: Code, severity: Severity, message: &str, file: &str) {
        let mut result = self.result(code, severity, message);
        result["locations"] = json!([{
            "physicalLocation": { "artifactLocation": { "uri": uri(file) } }
        }]);
        self.results.push(result);
    }

    fn result(&mut self, code: Code, severity: Severity, text: &str) -> Value {
        let index = self.rule_index(code);
        json!({
            "ruleId": code.as_str(),
            "ruleIndex": index,
            "level": match severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            },
            "message": { "text": text },
        })
    }

    /// How many results the log holds.
    pub fn len(&self) -> usize {
        self.results.len()
    }

    pub fn is_empty(&self) -> bool {
        self.results.is_empty()
    }

    /// The whole log.
    pub fn to_value(&self) -> Value {
        let rules: Vec<Value> = self
            .rules
            .iter()
            .map(|c| {
                json!({
                    "id": c.as_str(),
                    "name": format!("{c:?}"),
                    "shortDescription": { "text": c.summary() },
                    "defaultConfiguration": {
                        "level": match c.severity() {
                            Severity::Error => "error",
                            Severity::Warning => "warning",
                        }
                    },
                })
            })
            .collect();
        json!({
            "$schema": SCHEMA,
            "version": "2.1.0",
            "runs": [{
                "tool": {
                    "driver": {
                        "name": "flowpol",
                        "version": env!("CARGO_PKG_VERSION"),
                        "rules": rules,
                    }
                },
                "columnKind": "unicodeCodePoints",
                "results": self.results,
            }]
        })
    }
}

fn physical(render: &Renderer<'_>, span: Span) -> Value {
    let (start_line, start_column) = render.line_col(span.start);
    let (end_line, end_column) = render.line_col(span.end.max(span.start));
    json!({
        "artifactLocation": { "uri": uri(render.name()) },
        "region": {
            "startLine": start_line,
            "startColumn": start_column,
            "endLine": end_line,
            "endColumn": end_column,
        }
    })
}

/// A file path as a relative URI reference: `/` separators, and every byte that is not
/// unreserved or `/` percent-encoded.
pub fn uri(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.replace('\\', "/").bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Source, check_source};

    #[test]
    fn a_finding_becomes_a_located_result_with_its_rule() {
        let text = "default pass\nthree {\n  rule a -> pass\n  rule a -> drop\n}\n";
        let (_, diags) = check_source(text);
        let r = Renderer::new(Source {
            name: "dir/my policy.fpol",
            text,
        });
        let mut log = SarifLog::new();
        for d in &diags {
            log.add(&r, d);
        }
        let v = log.to_value();
        let run = &v["runs"][0];
        assert_eq!(v["version"], "2.1.0");
        let res = &run["results"][0];
        assert_eq!(res["ruleId"], "E0010");
        assert_eq!(res["level"], "error");
        let loc = &res["locations"][0]["physicalLocation"];
        assert_eq!(loc["artifactLocation"]["uri"], "dir/my%20policy.fpol");
        assert_eq!(loc["region"]["startLine"], 4);
        assert_eq!(loc["region"]["startColumn"], 8);
        let idx = res["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(run["tool"]["driver"]["rules"][idx]["id"], "E0010");
    }
}
