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
    /// Two classes declare one mark: the kernel could not tell them apart.
    SharedMark,
    /// A rule named `default`: reports could not tell it from the default action.
    ReservedRuleName,
    HostBits,
    Shadowed,
    DuplicateRule,
    NoDefault,
    UnusedClass,
    UnionShadowed,
    /// `flowpol test`: a test file's syntax.
    TestSyntax,
    /// `flowpol test`: a case that cannot be run as written (a field missing or out of range,
    /// a policy that cannot be read).
    TestInvalid,
    /// `flowpol test`: a case whose packet gets another action (or rule) than expected.
    TestFailed,
    /// `flowpol diff`: packets whose action changes.
    ActionChanged,
    /// `flowpol diff`: the budget ran out before every change was found.
    DiffIncomplete,
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
            SharedMark => "E0018",
            ReservedRuleName => "E0019",
            HostBits => "W0001",
            Shadowed => "W0002",
            DuplicateRule => "W0003",
            NoDefault => "W0004",
            UnusedClass => "W0005",
            UnionShadowed => "W0006",
            TestSyntax => "T0001",
            TestInvalid => "T0002",
            TestFailed => "T0003",
            ActionChanged => "D0001",
            DiffIncomplete => "D0002",
        }
    }

    /// Every code, in the order of their numbers.
    pub const ALL: [Code; 30] = {
        use Code::*;
        [
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
            SharedMark,
            ReservedRuleName,
            HostBits,
            Shadowed,
            DuplicateRule,
            NoDefault,
            UnusedClass,
            UnionShadowed,
            TestSyntax,
            TestInvalid,
            TestFailed,
            ActionChanged,
            DiffIncomplete,
        ]
    };

    /// What the code means, in one line (SARIF's rule descriptions).
    pub fn summary(self) -> &'static str {
        use Code::*;
        match self {
            Syntax => "syntax error",
            LabelTooWide => "flow label wider than 20 bits",
            MaskTooWide => "label mask wider than 20 bits",
            ValueOutsideMask => "label value has bits outside its mask",
            BadRange => "range with its low end above its high end",
            PrefixTooLong => "prefix length over 128",
            Ipv4Address => "IPv4 address where IPv6 is needed",
            PortTooLarge => "port over 65535",
            PortsWithoutPorts => "port match on a protocol without ports",
            DuplicateRuleName => "two rules with one name in a block",
            UnknownClass => "class used but not declared",
            FieldNotAllowed => "field not allowed in this block",
            DuplicateField => "field given twice in a rule",
            ProtoTooLarge => "protocol number over 255",
            DuplicateClass => "class declared twice",
            MarkTooLarge => "mark over 32 bits",
            DuplicateDefault => "more than one default",
            SharedMark => "two classes with one mark",
            ReservedRuleName => "rule named `default`",
            HostBits => "prefix with host bits set",
            Shadowed => "rule never matches: an earlier rule matches all it does",
            DuplicateRule => "rule repeats an earlier rule's match",
            NoDefault => "no default action",
            UnusedClass => "class declared but never used",
            UnionShadowed => "rule never matches: earlier rules together match all it does",
            TestSyntax => "test file syntax error",
            TestInvalid => "test case that cannot be run",
            TestFailed => "test case failed",
            ActionChanged => "packets whose action the change moves",
            DiffIncomplete => "diff incomplete: budget ran out",
        }
    }

    /// Warnings (`W...`, and `flowpol diff`'s `D...`, which need a review rather than a fix)
    /// and errors (the others).
    pub fn severity(self) -> Severity {
        if self.as_str().starts_with(['W', 'D']) {
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
#[derive(Clone, Copy, Debug)]
pub struct Source<'a> {
    pub name: &'a str,
    pub text: &'a str,
}

/// The byte offset where each line of a text starts, found once, so that each position costs a
/// binary search and a scan of its own line rather than a scan of the file.
struct Lines<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Lines { text, starts }
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(self.text, offset.min(self.text.len()));
        // The last line starting at or before `offset`.
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = self.starts[line - 1];
        (line, self.text[start..offset].chars().count() + 1)
    }
}

/// Renders the findings of one file in any format. Line starts are computed once per file, so
/// rendering N findings of a large file costs N binary searches, not N scans of the file.
pub struct Renderer<'a> {
    src: Source<'a>,
    file: SimpleFile<&'a str, &'a str>,
    lines: Lines<'a>,
}

impl<'a> Renderer<'a> {
    pub fn new(src: Source<'a>) -> Self {
        Renderer {
            src,
            file: SimpleFile::new(src.name, src.text),
            lines: Lines::new(src.text),
        }
    }

    /// 1-based line and column (in characters) of a byte offset of the source.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        self.lines.line_col(offset)
    }

    /// The source's name.
    pub fn name(&self) -> &'a str {
        self.src.name
    }

    /// One finding the way rustc prints it: header, `--> file:line:col`, source, carets, help.
    pub fn human(&self, d: &Diagnostic) -> String {
        human(&self.file, self.src.text, d)
    }

    /// One finding as a JSON-ready record.
    pub fn json<'d>(&self, d: &'d Diagnostic) -> JsonFinding<'d>
    where
        'a: 'd,
    {
        let (line, column) = self.lines.line_col(d.span.start);
        let (end_line, end_column) = self.lines.line_col(d.span.end);
        JsonFinding {
            file: self.src.name,
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
    pub fn github(&self, d: &Diagnostic) -> String {
        let (line, col) = self.lines.line_col(d.span.start);
        let (end_line, end_col) = self.lines.line_col(d.span.end);
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
            gh_escape_prop(self.src.name),
            d.code.as_str(),
            gh_escape_data(&msg)
        )
    }
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Renders one finding the way rustc does (for many findings of one file, use [`Renderer`]).
pub fn render_human(src: &Source<'_>, d: &Diagnostic) -> String {
    Renderer::new(*src).human(d)
}

fn human(file: &SimpleFile<&str, &str>, text: &str, d: &Diagnostic) -> String {
    let clamp = |s: Span| {
        let a = floor_char_boundary(text, s.start.min(text.len()));
        let b = floor_char_boundary(text, s.end.min(text.len())).max(a);
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
    term::emit_into_string(&config, file, &diag)
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

/// One finding as a JSON-ready record (for many findings of one file, use [`Renderer`]).
pub fn to_json<'a>(src: &Source<'a>, d: &'a Diagnostic) -> JsonFinding<'a> {
    Renderer::new(*src).json(d)
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
        assert_eq!(Lines::new(t).line_col(0), (1, 1));
        assert_eq!(Lines::new(t).line_col(3), (2, 1));
        assert_eq!(Lines::new(t).line_col(t.find('x').unwrap()), (2, 4));
        assert_eq!(Lines::new(t).line_col(t.len()), (3, 1));
    }

    /// The line index agrees with a scan from the start of the text at every offset,
    /// including offsets inside a multi-byte character, at a newline, and past the end.
    #[test]
    fn line_index_agrees_with_a_scan() {
        fn scan(text: &str, offset: usize) -> (usize, usize) {
            let offset = floor_char_boundary(text, offset.min(text.len()));
            let before = &text[..offset];
            let start = before.rfind('\n').map_or(0, |n| n + 1);
            (
                before.matches('\n').count() + 1,
                before[start..].chars().count() + 1,
            )
        }
        for text in ["", "\n", "a", "ab\nçd x\n", "\n\nx\r\ny\n\n", "日本\n語 z"] {
            let lines = Lines::new(text);
            for offset in 0..=text.len() + 2 {
                assert_eq!(
                    lines.line_col(offset),
                    scan(text, offset),
                    "{text:?} @ {offset}"
                );
            }
        }
    }

    /// Every code is distinct, and documented: `check`'s in docs/policy-language.md, `test`'s and
    /// `diff`'s in docs/testing.md.
    #[test]
    fn every_code_is_distinct_and_documented() {
        let docs = concat!(
            include_str!("../../docs/policy-language.md"),
            include_str!("../../docs/testing.md")
        );
        let mut seen = std::collections::HashSet::new();
        for c in Code::ALL {
            assert!(seen.insert(c.as_str()), "{} twice", c.as_str());
            assert!(
                docs.contains(&format!("| {} |", c.as_str())),
                "{} undocumented",
                c.as_str()
            );
            assert!(!c.summary().is_empty());
        }
    }

    #[test]
    fn github_escapes() {
        let src = Source {
            name: "a,b:c.fpol",
            text: "x\n",
        };
        let d = Diagnostic::new(Code::Syntax, "bad\nthing 100%", Span::new(0, 1));
        assert_eq!(
            Renderer::new(src).github(&d),
            "::error file=a%2Cb%3Ac.fpol,line=1,col=1,endLine=1,endColumn=2,title=E0001::bad%0Athing 100%25"
        );
    }
}
