//! The nom parser: policy text to a [`FileAst`] with spans, recovering after a syntax error so
//! that every mistake in a file is reported, not only the first.
//!
//! The grammar is written down in `docs/policy-language.md`; the productions below follow it in
//! the same order. Numbers are kept unchecked here: range and width problems are the checker's.

use crate::packet::IpNumber;
use crate::policy::diagnostic::{Code, Diagnostic};
use crate::policy::syntax::*;
use nom::branch::alt;
use nom::bytes::complete::{tag, take_while, take_while1};
use nom::character::complete::{char, satisfy};
use nom::combinator::recognize;
use nom::error::{ErrorKind, ParseError};
use nom::sequence::pair;
use nom::{IResult, Parser};
use std::net::IpAddr;

/// A syntax error: where, and what the parser expected there.
#[derive(Debug, Clone)]
pub struct PErr<'a> {
    pub(crate) at: &'a str,
    pub(crate) expected: &'static str,
}

impl PErr<'_> {
    /// The finding `code` for this error in `src` (the text `at` is the rest of):
    /// `expected X, found Y` under the token where parsing stopped.
    pub(crate) fn diagnostic(&self, src: &str, code: Code) -> Diagnostic {
        let (found, len) = token_at(self.at);
        let start = src.len() - self.at.len();
        Diagnostic::new(
            code,
            format!("expected {}, found {found}", self.expected),
            Span::new(start, start + len),
        )
        .with_label(format!("expected {}", self.expected))
    }
}

impl<'a> ParseError<&'a str> for PErr<'a> {
    fn from_error_kind(input: &'a str, _: ErrorKind) -> Self {
        PErr {
            at: input,
            expected: "valid syntax",
        }
    }
    fn append(_: &'a str, _: ErrorKind, other: Self) -> Self {
        other
    }
    fn or(self, other: Self) -> Self {
        // Keep the error that got further into the input.
        if other.at.len() < self.at.len() {
            other
        } else {
            self
        }
    }
}

type PResult<'a, T> = IResult<&'a str, T, PErr<'a>>;

fn fail<'a, T>(at: &'a str, expected: &'static str) -> PResult<'a, T> {
    Err(nom::Err::Error(PErr { at, expected }))
}

/// Commits to a production: a failure after this point is not backtracked.
fn cut_err<T>(r: PResult<'_, T>) -> PResult<'_, T> {
    r.map_err(|e| match e {
        nom::Err::Error(e) => nom::Err::Failure(e),
        other => other,
    })
}

/// Runs `p`; on a plain error at the same spot, says what was expected instead.
fn expect<'a, T>(
    i: &'a str,
    expected: &'static str,
    mut p: impl Parser<&'a str, Output = T, Error = PErr<'a>>,
) -> PResult<'a, T> {
    match p.parse(i) {
        Err(nom::Err::Error(e)) if e.at.len() >= i.len() => fail(i, expected),
        other => other,
    }
}

/// Whitespace and `#` comments.
fn skip_ws(mut i: &str) -> &str {
    loop {
        let t = i.trim_start();
        if let Some(rest) = t.strip_prefix('#') {
            i = rest.find('\n').map_or("", |n| &rest[n..]);
        } else {
            return t;
        }
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'
}

/// `[A-Za-z_][A-Za-z0-9_.-]*`, not taking a `-` that starts the arrow `->`.
fn word(i: &str) -> PResult<'_, &str> {
    let (rest, w) = recognize(pair(satisfy(is_ident_start), take_while(is_ident_char))).parse(i)?;
    if w.ends_with('-') && rest.starts_with('>') {
        let n = w.len() - 1;
        return Ok((&i[n..], &w[..n]));
    }
    Ok((rest, w))
}

/// True when the next word is exactly `kw`.
fn peek_keyword(i: &str, kw: &str) -> bool {
    matches!(word(i), Ok((_, w)) if w == kw)
}

/// The text of the token at `i`, for "found ..." in messages, and its byte length.
pub(crate) fn token_at(i: &str) -> (String, usize) {
    if i.is_empty() {
        return ("end of file".into(), 0);
    }
    let n = i
        .char_indices()
        .find(|&(_, c)| c.is_whitespace() || "{},#".contains(c))
        .map_or(i.len(), |(n, _)| n);
    let n = if n == 0 {
        i.chars().next().map_or(0, char::len_utf8)
    } else {
        n
    };
    let t: String = i[..n].chars().take(40).collect();
    (format!("`{t}`"), n)
}

/// The keywords that start a top-level item.
const TOP_LEVEL: [&str; 4] = ["class", "default", "three", "five"];

/// Where parsing resumes after an error inside a block.
enum Recovery<'s> {
    /// At the next `rule` of the same block.
    Resume(&'s str),
    /// After the `}` that closes the block.
    Close(&'s str),
    /// At a top-level keyword or the end of the file: the block ends without its `}`.
    Escape(&'s str),
}

/// Parser state: the whole source (for spans) and the diagnostics found so far.
struct P<'s> {
    src: &'s str,
    diags: Vec<Diagnostic>,
}

/// Parses a policy file, returning the tree of everything that parsed (and every comment) and
/// one diagnostic per syntax error.
pub fn parse(src: &str) -> (FileAst, Vec<Diagnostic>) {
    let mut p = P {
        src,
        diags: Vec::new(),
    };
    let mut ast = p.file();
    ast.comments = comments(src);
    (ast, p.diags)
}

/// The span of every comment. No token contains `#`, so, as in [`skip_ws`], a `#` starts a
/// comment that runs to the end of its line wherever it stands.
fn comments(src: &str) -> Vec<Span> {
    let mut v = Vec::new();
    let mut from = 0;
    while let Some(n) = src[from..].find('#') {
        let start = from + n;
        let end = src[start..].find('\n').map_or(src.len(), |n| start + n);
        v.push(Span::new(start, end));
        from = end;
    }
    v
}

impl<'s> P<'s> {
    fn off(&self, rest: &str) -> usize {
        self.src.len() - rest.len()
    }

    fn span(&self, before: &str, after: &str) -> Span {
        Span::new(self.off(before), self.off(after))
    }

    /// Records a syntax error at the token where parsing stopped.
    fn syntax_error(&mut self, e: PErr<'s>) {
        let mut d = e.diagnostic(self.src, Code::Syntax);
        let (found, _) = token_at(e.at);
        if let Some(help) = syntax_help(e.expected, &found) {
            d = d.with_help(help);
        }
        self.diags.push(d);
    }

    // file = { class_decl | default_decl | block } ;
    fn file(&mut self) -> FileAst {
        let mut ast = FileAst::default();
        let mut i = skip_ws(self.src);
        while !i.is_empty() {
            let r = if peek_keyword(i, "class") {
                self.class_decl(i).map(|(r, c)| {
                    ast.classes.push(c);
                    (r, ())
                })
            } else if peek_keyword(i, "default") {
                self.default_decl(i).map(|(r, d)| {
                    ast.defaults.push(d);
                    (r, ())
                })
            } else if peek_keyword(i, "three") || peek_keyword(i, "five") {
                self.block(i).map(|(r, b)| {
                    ast.blocks.push(b);
                    (r, ())
                })
            } else {
                fail(i, "`class`, `default`, `three {` or `five {`")
            };
            i = match r {
                Ok((rest, ())) => skip_ws(rest),
                Err(nom::Err::Error(e) | nom::Err::Failure(e)) => {
                    self.syntax_error(e.clone());
                    skip_ws(self.recover_top(e.at))
                }
                Err(nom::Err::Incomplete(_)) => unreachable!("complete parsers only"),
            };
        }
        ast
    }

    /// After a top-level error: skip to the next line that starts with a top-level keyword.
    fn recover_top(&self, mut i: &'s str) -> &'s str {
        // Always make progress past the offending token.
        let (_, n) = token_at(i);
        i = &i[n.max(1).min(i.len())..];
        loop {
            match i.find('\n') {
                None => return "",
                Some(nl) => {
                    i = &i[nl + 1..];
                    let t = i.trim_start_matches([' ', '\t', '\r']);
                    if ["class", "default", "three", "five"]
                        .iter()
                        .any(|k| peek_keyword(t, k))
                    {
                        return t;
                    }
                }
            }
        }
    }

    // class_decl = "class" NAME [ "mark" NUMBER ] ;
    fn class_decl(&mut self, i: &'s str) -> PResult<'s, ClassDecl> {
        let start = i;
        let (i, _) = word(i)?;
        let (i, name) = cut_err(self.ident(skip_ws(i), "a class name"))?;
        let j = skip_ws(i);
        let (i, mark) = if peek_keyword(j, "mark") {
            let (j, _) = word(j)?;
            let (j, n) = cut_err(self.number(skip_ws(j), "a mark number"))?;
            (j, Some(n))
        } else {
            (i, None)
        };
        Ok((
            i,
            ClassDecl {
                name,
                mark,
                span: self.span(start, i),
            },
        ))
    }

    // default_decl = "default" action ;
    fn default_decl(&mut self, i: &'s str) -> PResult<'s, DefaultDecl> {
        let start = i;
        let (i, _) = word(i)?;
        let (i, action) = cut_err(self.action(skip_ws(i)))?;
        Ok((
            i,
            DefaultDecl {
                action,
                span: self.span(start, i),
            },
        ))
    }

    // block = ( "three" | "five" ) "{" { rule } "}" ;
    fn block(&mut self, i: &'s str) -> PResult<'s, BlockAst> {
        let start = i;
        let (i, kw) = word(i)?;
        let tuple = if kw == "three" {
            TupleKind::Three
        } else {
            TupleKind::Five
        };
        let keyword_span = self.span(start, i);
        let brace = skip_ws(i);
        let (mut i, _) = cut_err(expect(brace, "`{` to open the block", char('{')))?;
        let mut block = BlockAst {
            tuple,
            keyword_span,
            open: self.span(brace, i),
            rules: Vec::new(),
            close: None,
            span: Span::default(),
        };
        loop {
            i = skip_ws(i);
            if let Some(rest) = i.strip_prefix('}') {
                block.close = Some(self.span(i, rest));
                block.span = self.span(start, rest);
                return Ok((rest, block));
            }
            if i.is_empty() {
                let at = self.off(i);
                self.diags.push(
                    Diagnostic::new(
                        Code::Syntax,
                        format!("expected `}}` to close the `{kw}` block, found end of file"),
                        Span::new(at, at),
                    )
                    .with_label("the file ends here")
                    .with_secondary(keyword_span, "the block opened here"),
                );
                block.span = self.span(start, i);
                return Ok((i, block));
            }
            let r = if peek_keyword(i, "rule") {
                self.rule(i)
            } else {
                fail(i, "`rule` or `}`")
            };
            match r {
                Ok((rest, rule)) => {
                    block.rules.push(rule);
                    i = rest;
                }
                Err(nom::Err::Error(e) | nom::Err::Failure(e)) => {
                    self.syntax_error(e.clone());
                    let rest = match self.recover_rule(e.at) {
                        Recovery::Resume(rest) => {
                            i = rest;
                            continue;
                        }
                        Recovery::Close(rest) => {
                            let end = self.off(rest);
                            block.close = Some(Span::new(end - 1, end));
                            rest
                        }
                        Recovery::Escape(rest) => rest,
                    };
                    block.span = self.span(start, rest);
                    return Ok((rest, block));
                }
                Err(nom::Err::Incomplete(_)) => unreachable!("complete parsers only"),
            }
        }
    }

    /// After an error inside a block: skip tokens to the next `rule`; to a `}` that closes the
    /// block (first on its line, or followed by a top-level keyword or the end of the file); or
    /// to a top-level keyword first on its line, or the end of the file, which end the block.
    fn recover_rule(&self, mut i: &'s str) -> Recovery<'s> {
        let (_, n) = token_at(i);
        i = &i[n.max(1).min(i.len())..];
        loop {
            let before_ws = i;
            i = skip_ws(i);
            if i.is_empty() {
                return Recovery::Escape(i);
            }
            let line_start = before_ws[..before_ws.len() - i.len()].contains('\n');
            if peek_keyword(i, "rule") {
                return Recovery::Resume(i);
            }
            if line_start && TOP_LEVEL.iter().any(|k| peek_keyword(i, k)) {
                return Recovery::Escape(i);
            }
            if let Some(rest) = i.strip_prefix('}') {
                let after = skip_ws(rest);
                if line_start
                    || after.is_empty()
                    || TOP_LEVEL.iter().any(|k| peek_keyword(after, k))
                {
                    return Recovery::Close(rest);
                }
            }
            let (_, n) = token_at(i);
            i = &i[n.max(1).min(i.len())..];
        }
    }

    // rule = "rule" NAME { field } "->" action ;
    fn rule(&mut self, i: &'s str) -> PResult<'s, RuleAst> {
        let start = i;
        let (i, _) = word(i)?;
        let (mut i, name) = cut_err(self.ident(skip_ws(i), "a rule name"))?;
        let mut fields = Vec::new();
        loop {
            let j = skip_ws(i);
            if let Some(rest) = j.strip_prefix("->") {
                let (rest, action) = cut_err(self.action(skip_ws(rest)))?;
                return Ok((
                    rest,
                    RuleAst {
                        name,
                        fields,
                        action,
                        span: self.span(start, rest),
                    },
                ));
            }
            let (rest, f) = cut_err(self.field(j))?;
            fields.push(f);
            i = rest;
        }
    }

    // field = "src" addrs | "dst" addrs | "label" labels | "proto" proto | "sport" ports | "dport" ports ;
    fn field(&mut self, i: &'s str) -> PResult<'s, FieldAst> {
        const EXPECTED: &str = "a field (`src`, `dst`, `label`, `proto`, `sport`, `dport`) or `->`";
        let start = i;
        let (after_kw, kw) = expect(i, EXPECTED, word)?;
        let keyword_span = self.span(start, after_kw);
        let v = skip_ws(after_kw);
        let (rest, field) = match kw {
            "src" => self.addr_spec(v).map(|(r, a)| (r, Field::Src(a)))?,
            "dst" => self.addr_spec(v).map(|(r, a)| (r, Field::Dst(a)))?,
            "label" => self.label_spec(v).map(|(r, a)| (r, Field::Label(a)))?,
            "proto" => self.proto_spec(v).map(|(r, a)| (r, Field::Proto(a)))?,
            "sport" => self.port_spec(v).map(|(r, a)| (r, Field::Sport(a)))?,
            "dport" => self.port_spec(v).map(|(r, a)| (r, Field::Dport(a)))?,
            _ => return fail(i, EXPECTED),
        };
        Ok((
            rest,
            FieldAst {
                field,
                keyword_span,
                span: self.span(start, rest),
            },
        ))
    }

    // action = "pass" | "drop" | "class" NAME ;
    fn action(&mut self, i: &'s str) -> PResult<'s, ActionAst> {
        const EXPECTED: &str = "an action (`pass`, `drop` or `class NAME`)";
        let (rest, w) = expect(i, EXPECTED, word)?;
        let span = self.span(i, rest);
        match w {
            "pass" => Ok((rest, ActionAst::Pass(span))),
            "drop" => Ok((rest, ActionAst::Drop(span))),
            "class" => {
                let (rest, name) = cut_err(self.ident(skip_ws(rest), "a class name"))?;
                Ok((rest, ActionAst::Class(name, self.span(i, rest))))
            }
            _ => fail(i, EXPECTED),
        }
    }

    fn ident(&mut self, i: &'s str, what: &'static str) -> PResult<'s, Ident> {
        let (rest, w) = expect(i, what, word)?;
        Ok((
            rest,
            Ident {
                name: w.to_string(),
                span: self.span(i, rest),
            },
        ))
    }

    // number = "0x" HEXDIGIT+ | DIGIT+ ;
    fn number(&mut self, i: &'s str, what: &'static str) -> PResult<'s, Num> {
        let hex = |i| {
            let (rest, _) = alt((tag("0x"), tag("0X"))).parse(i)?;
            let (rest, digits) = take_while1(|c: char| c.is_ascii_hexdigit()).parse(rest)?;
            Ok((rest, fold_digits(digits, 16)))
        };
        let dec = |i| {
            let (rest, digits) = take_while1(|c: char| c.is_ascii_digit()).parse(i)?;
            Ok((rest, fold_digits(digits, 10)))
        };
        let (rest, value) = expect(i, what, alt((hex, dec)))?;
        // A number runs into letters (`12ab`): not a number at all.
        if rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            return fail(i, what);
        }
        Ok((
            rest,
            Num {
                value,
                span: self.span(i, rest),
            },
        ))
    }

    // addrs = "any" | atom | "{" atom { [","] atom } [","] "}" ;
    fn addr_spec(&mut self, i: &'s str) -> PResult<'s, AddrSpec> {
        if peek_keyword(i, "any") {
            let (rest, _) = word(i)?;
            return Ok((rest, AddrSpec::Any(self.span(i, rest))));
        }
        if let Some(mut j) = i.strip_prefix('{') {
            let mut atoms = Vec::new();
            loop {
                j = skip_ws(j);
                if let Some(rest) = j.strip_prefix('}') {
                    if atoms.is_empty() {
                        return fail(j, "an address or prefix (a set may not be empty)");
                    }
                    return Ok((rest, AddrSpec::Set(atoms, self.span(i, rest))));
                }
                if let Some(rest) = j.strip_prefix(',').filter(|_| !atoms.is_empty()) {
                    j = skip_ws(rest);
                    if let Some(rest) = j.strip_prefix('}') {
                        return Ok((rest, AddrSpec::Set(atoms, self.span(i, rest))));
                    }
                }
                let (rest, a) = self.addr_atom(j, "an address, a prefix, `,` or `}`")?;
                atoms.push(a);
                j = rest;
            }
        }
        let (rest, a) = self.addr_atom(i, "an IPv6 address, a prefix, a `{ ... }` set or `any`")?;
        let span = a.span;
        Ok((rest, AddrSpec::Set(vec![a], span)))
    }

    // atom = ADDRESS [ "/" number ] ;
    fn addr_atom(&mut self, i: &'s str, what: &'static str) -> PResult<'s, AddrAtom> {
        let (rest, text) = expect(
            i,
            what,
            take_while1(|c: char| c.is_ascii_alphanumeric() || ":.%_".contains(c)),
        )?;
        let addr: IpAddr = match text.parse() {
            Ok(a) => a,
            Err(_) => return fail(i, what),
        };
        let addr_span = self.span(i, rest);
        let (rest, len) = match rest.strip_prefix('/') {
            Some(r) => {
                let (r, n) = self.number(r, "a prefix length after `/`")?;
                (r, Some(n))
            }
            None => (rest, None),
        };
        Ok((
            rest,
            AddrAtom {
                addr,
                addr_span,
                len,
                span: self.span(i, rest),
            },
        ))
    }

    // labels = "any" | number [ "/" number | "-" number ] ;
    fn label_spec(&mut self, i: &'s str) -> PResult<'s, LabelSpec> {
        if peek_keyword(i, "any") {
            let (rest, _) = word(i)?;
            return Ok((rest, LabelSpec::Any(self.span(i, rest))));
        }
        let (rest, a) = self.number(i, "a flow label (a number, `V/MASK`, `LO-HI` or `any`)")?;
        if let Some(r) = skip_ws(rest).strip_prefix('/') {
            let (r, m) = self.number(skip_ws(r), "a mask after `/`")?;
            return Ok((r, LabelSpec::Masked(a, m)));
        }
        if let Some(r) = range_dash(rest) {
            let (r, b) = self.number(skip_ws(r), "the upper end of the range after `-`")?;
            return Ok((r, LabelSpec::Range(a, b)));
        }
        Ok((rest, LabelSpec::Exact(a)))
    }

    // ports = "any" | number [ "-" number ] ;
    fn port_spec(&mut self, i: &'s str) -> PResult<'s, PortSpec> {
        if peek_keyword(i, "any") {
            let (rest, _) = word(i)?;
            return Ok((rest, PortSpec::Any(self.span(i, rest))));
        }
        let (rest, a) = self.number(i, "a port (a number, `LO-HI` or `any`)")?;
        if let Some(r) = range_dash(rest) {
            let (r, b) = self.number(skip_ws(r), "the upper end of the range after `-`")?;
            return Ok((r, PortSpec::Range(a, b)));
        }
        Ok((rest, PortSpec::Exact(a)))
    }

    // proto = "any" | "tcp" | "udp" | "sctp" | "icmpv6" | "dccp" | "udplite" | number ;
    fn proto_spec(&mut self, i: &'s str) -> PResult<'s, ProtoSpec> {
        const EXPECTED: &str =
            "a protocol (`tcp`, `udp`, `sctp`, `icmpv6`, `dccp`, `udplite`, a number or `any`)";
        if let Ok((rest, w)) = word(i) {
            let span = self.span(i, rest);
            if w == "any" {
                return Ok((rest, ProtoSpec::Any(span)));
            }
            return match IpNumber::from_name(w) {
                Some(p) => Ok((rest, ProtoSpec::Named(p.0, span))),
                None => fail(i, EXPECTED),
            };
        }
        let (rest, n) = self.number(i, EXPECTED)?;
        Ok((rest, ProtoSpec::Number(n)))
    }
}

/// A `-` that makes a range (not the arrow `->`), possibly after whitespace.
fn range_dash(i: &str) -> Option<&str> {
    let j = skip_ws(i);
    j.strip_prefix('-').filter(|r| !r.starts_with('>'))
}

fn fold_digits(digits: &str, radix: u32) -> u64 {
    digits.chars().fold(0u64, |acc, c| {
        acc.saturating_mul(u64::from(radix))
            .saturating_add(u64::from(c.to_digit(radix).unwrap_or(0)))
    })
}

/// A hint for common slips, keyed on what was expected and what was found.
fn syntax_help(expected: &str, found: &str) -> Option<String> {
    if expected.starts_with("a field") && found.contains('=') && found.contains('>') {
        return Some("the action follows `->`, as in `-> drop`".into());
    }
    if expected.starts_with("a field")
        && (found == "`action`" || found == "`pass`" || found == "`drop`")
    {
        return Some("write `->` before the action, as in `-> drop`".into());
    }
    if expected.contains("IPv6 address") && found.contains('%') {
        return Some("zone ids (`%eth0`) are not part of policy addresses".into());
    }
    if expected.starts_with("`rule`") && found == "`{`" {
        return Some("blocks do not nest: close the block with `}` first".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(src: &str) -> Vec<(usize, String)> {
        parse(src)
            .1
            .into_iter()
            .map(|d| (d.span.start, d.message))
            .collect()
    }

    #[test]
    fn parses_a_full_file() {
        let src = "class gold mark 0x10\n default drop\nthree {\n rule a src 2001:db8::/32 dst { ::1, fe80::/10, } label 0x10000/0xf0000 -> class gold\n rule b label 5->pass\n rule c label 0x100 - 0x1ff -> drop }\nfive { rule a proto udp sport any dport 5004-5005 -> pass }";
        let (ast, d) = parse(src);
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(ast.classes.len(), 1);
        assert_eq!(ast.classes[0].mark.unwrap().value, 0x10);
        assert_eq!(ast.blocks[0].rules.len(), 3);
        assert_eq!(ast.blocks[1].tuple, TupleKind::Five);
        let r = &ast.blocks[0].rules[0];
        assert_eq!(&src[r.name.span.range()], "a");
        match &r.fields[1].field {
            Field::Dst(AddrSpec::Set(v, _)) => assert_eq!(v.len(), 2),
            f => panic!("{f:?}"),
        }
        assert!(matches!(
            ast.blocks[0].rules[1].fields[0].field,
            Field::Label(LabelSpec::Exact(Num { value: 5, .. }))
        ));
        assert!(matches!(
            ast.blocks[0].rules[2].fields[0].field,
            Field::Label(LabelSpec::Range(..))
        ));
    }

    #[test]
    fn reports_every_error_and_recovers() {
        let src = "three {\n rule a src 2001:db8::zz -> drop\n rule b label -> drop\n rule c -> pass\n}\nbogus\ndefault pass\n";
        let e = errs(src);
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].1.starts_with("expected an IPv6 address"), "{e:?}");
        assert_eq!(e[1].0, src.find("-> drop\n rule c").unwrap());
        assert!(e[2].1.starts_with("expected `class`, `default`"), "{e:?}");
        let (ast, _) = parse(src);
        assert_eq!(ast.blocks[0].rules.len(), 1);
        assert_eq!(ast.defaults.len(), 1);
    }

    #[test]
    fn unclosed_block_and_comments() {
        let src = "# c\nthree { # open\n rule a -> pass # x\n";
        let e = errs(src);
        assert_eq!(e.len(), 1);
        assert!(e[0].1.contains("close the `three` block"));
        let (ast, _) = parse(src);
        assert_eq!(ast.blocks[0].close, None);
        let texts: Vec<&str> = ast.comments.iter().map(|c| &src[c.range()]).collect();
        assert_eq!(texts, ["# c", "# open", "# x"]);
    }

    #[test]
    fn block_braces_and_comments_have_spans() {
        let src = "three # a { b\n{ rule a -> pass }\r\nfive{}# # two\n# end";
        let (ast, d) = parse(src);
        assert!(d.is_empty(), "{d:?}");
        let at = |s: Span| &src[s.range()];
        let b = &ast.blocks[0];
        assert_eq!(b.open.start, src.find("{ rule").unwrap());
        assert_eq!((at(b.open), b.close.map(at)), ("{", Some("}")));
        assert_eq!(ast.blocks[1].close.map(|s| s.end), src.find("# #"));
        let texts: Vec<&str> = ast.comments.iter().map(|&c| at(c)).collect();
        assert_eq!(texts, ["# a { b", "# # two", "# end"]);
        // A block closed by recovery keeps its `}`.
        let src = "three { rule a src zz -> pass }\nfive { rule b ->\n";
        let (ast, d) = parse(src);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(ast.blocks[0].close.map(|s| s.start), src.find('}'));
        assert_eq!(ast.blocks[1].close, None);
    }

    #[test]
    fn numbers_keep_overflow_for_the_checker() {
        let (ast, d) = parse("three { rule a label 0xfffffffffffffffffff -> pass }");
        assert!(d.is_empty());
        assert!(matches!(
            ast.blocks[0].rules[0].fields[0].field,
            Field::Label(LabelSpec::Exact(Num {
                value: u64::MAX,
                ..
            }))
        ));
        assert_eq!(errs("three { rule a label 12ab -> pass }").len(), 1);
    }

    #[test]
    fn never_panics_on_odd_input() {
        for s in [
            "{",
            "}",
            "three",
            "three {",
            "three { rule",
            "three { rule a src {",
            "three { rule a src { ::1,",
            "class",
            "default class",
            "three { rule a label 1-",
            "\u{feff}ü three { }",
            "five { rule a proto 0x -> drop }",
        ] {
            let _ = parse(s);
        }
    }
}
