//! Findings about a policy file and how they are shown: rustc-style text (codespan-reporting),
//! JSON objects for tools, and GitHub workflow commands. Every finding carries a byte span; line
//! and column (1-based, in characters) are computed from it only when rendering.

use crate::policy::syntax::Span;
use codespan_reporting::diagnostic as cs;
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term;
use serde::Serialize;

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// Every kind of finding, with its stable code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    Syntax,
    LabelTooWide,
    MaskTooWide,
    ValueOutsideMask,
    BadRange,
    PrefixTooLong,
    Ipv4Address,
    PortTooLarge,
    PortsWithoutPorts,
    DuplicateRuleName,
    UnknownClass,
    FieldNotAllowed,
    DuplicateField,
    ProtoTooLarge,
    DuplicateClass,
    MarkTooLarge,
    DuplicateDefault,
    HostBits,
    Shadowed,
    DuplicateRule,
    NoDefault,
    UnusedClass,
    UnionShadowed,
}

impl Code {
    /// The stable code shown as `error[E0002]`.
    pub fn as_str(self) -> &'static str {
        use Code::*;
        match self {
            Syntax => "E0001",
            LabelTooWide => "E0002",
            MaskTooWide => "E0003",
            ValueOutsideMask => "E0004",
            BadRange => "E0005",
            PrefixTooLong => "E0006",
            Ipv4Address => "E0007",
            PortTooLarge => "E0008",
            PortsWithoutPorts => "E0009",
            DuplicateRuleName => "E0010",
            UnknownClass => "E0011",
            FieldNotAllowed => "E0012",
            DuplicateField => "E0013",
            ProtoTooLarge => "E0014",
            DuplicateClass => "E0015",
            MarkTooLarge => "E0016",
            DuplicateDefault => "E0017",
            HostBits => "W0001",
            Shadowed => "W0002",
            DuplicateRule => "W0003",
            NoDefault => "W0004",
            UnusedClass => "W0005",
            UnionShadowed => "W0006",
        }
    }

    pub fn severity(self) -> Severity {
        if self.as_str().starts_with('W') {
            Severity::Warning
        } else {
            Severity::Error
        }
    }
}

/// One finding: a primary span with a label, optional secondary spans, and help text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    pub span: Span,
    pub label: String,
    pub secondary: Vec<(Span, String)>,
    pub help: Option<String>,
}

impl Diagnostic {
    /// A finding of `code`'s own severity.
    pub fn new(code: Code, message: impl Into<String>, span: Span) -> Self {
        Diagnostic {
            code,
            severity: code.severity(),
            message: message.into(),
            span,
            label: String::new(),
            secondary: Vec::new(),
            help: None,
        }
    }
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }
    pub fn with_secondary(mut self, span: Span, label: impl Into<String>) -> Self {
        self.secondary.push((span, label.into()));
        self
    }
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// A named source text, for turning spans into lines and columns.
pub struct Source<'a> {
    pub name: &'a str,
    pub text: &'a str,
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |n| n + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Renders one finding the way rustc does: header, `--> file:line:col`, source, carets, help.
pub fn render_human(src: &Source<'_>, d: &Diagnostic) -> String {
    let file = SimpleFile::new(src.name, src.text);
    let clamp = |s: Span| {
        let a = floor_char_boundary(src.text, s.start.min(src.text.len()));
        let b = floor_char_boundary(src.text, s.end.min(src.text.len())).max(a);
        a..b
    };
    let mut labels = vec![cs::Label::primary((), clamp(d.span)).with_message(&d.label)];
    labels.extend(
        d.secondary
            .iter()
            .map(|(s, m)| cs::Label::secondary((), clamp(*s)).with_message(m)),
    );
    let base = match d.severity {
        Severity::Error => cs::Diagnostic::error(),
        Severity::Warning => cs::Diagnostic::warning(),
    };
    let diag = base
        .with_code(d.code.as_str())
        .with_message(&d.message)
        .with_labels(labels)
        .with_notes(d.help.iter().map(|h| format!("help: {h}")).collect());
    let config = term::Config {
        chars: term::Chars::ascii(),
        ..term::Config::default()
    };
    term::emit_into_string(&config, &file, &diag)
        .unwrap_or_else(|e| format!("{}: {}\n", d.message, e))
}

/// The JSON view of one finding.
#[derive(Serialize, Debug)]
pub struct JsonFinding<'a> {
    pub file: &'a str,
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    pub severity: Severity,
    pub code: &'static str,
    pub message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<&'a str>,
}

/// One finding as a JSON-ready record.
pub fn to_json<'a>(src: &Source<'a>, d: &'a Diagnostic) -> JsonFinding<'a> {
    let (line, column) = line_col(src.text, d.span.start);
    let (end_line, end_column) = line_col(src.text, d.span.end);
    JsonFinding {
        file: src.name,
        line,
        column,
        end_line,
        end_column,
        severity: d.severity,
        code: d.code.as_str(),
        message: &d.message,
        help: d.help.as_deref(),
    }
}

/// One GitHub Actions workflow command: `::error file=F,line=L,col=C,...::message`.
pub fn render_github(src: &Source<'_>, d: &Diagnostic) -> String {
    let (line, col) = line_col(src.text, d.span.start);
    let (end_line, end_col) = line_col(src.text, d.span.end);
    let kind = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let mut msg = d.message.clone();
    if let Some(h) = &d.help {
        msg.push_str(&format!(" (help: {h})"));
    }
    format!(
        "::{kind} file={},line={line},col={col},endLine={end_line},endColumn={end_col},title={}::{}",
        gh_escape_prop(src.name),
        d.code.as_str(),
        gh_escape_data(&msg)
    )
}

fn gh_escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn gh_escape_prop(s: &str) -> String {
    gh_escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters() {
        let t = "ab\nçd x\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 3), (2, 1));
        assert_eq!(line_col(t, t.find('x').unwrap()), (2, 4));
        assert_eq!(line_col(t, t.len()), (3, 1));
    }

    #[test]
    fn github_escapes() {
        let src = Source {
            name: "a,b:c.fpol",
            text: "x\n",
        };
        let d = Diagnostic::new(Code::Syntax, "bad\nthing 100%", Span::new(0, 1));
        assert_eq!(
            render_github(&src, &d),
            "::error file=a%2Cb%3Ac.fpol,line=1,col=1,endLine=1,endColumn=2,title=E0001::bad%0Athing 100%25"
        );
    }
}
