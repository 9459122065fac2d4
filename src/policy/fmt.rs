//! The canonical text of a policy: what `flowpol fmt` prints and what generators and importers
//! emit. Round-trips: parsing the output gives back an equal [`Policy`], and formatting the
//! output again changes nothing.
//!
//! [`format()`] prints a policy that has no source (generated, imported). [`format_source`]
//! formats a policy file and keeps every comment, placed the way most formatters place them:
//!
//! - A comment on its own line goes with the item that follows it (a class, the default, a
//!   block's `three {` line, a rule, or a block's `}`) and is printed on its own line just
//!   before that item, at the item's indentation. Comments after the last item stay at the end
//!   of the file; a comment inside an item written over several lines goes before the item.
//! - A comment after an item on the same line stays on that item's line, two spaces after it.
//! - The blocks of one kind are merged into one, so a later block's `three {` line and the
//!   `}` of every block but the last disappear: their comments go on their own lines where the
//!   blocks join, before the next rule of that kind (or before the `}`).
//! - A kind without rules has no block, unless comments were written in one.
//! - One blank line before or after a comment line is kept where the file had one or more,
//!   except after a `{`, before a `}` and at the ends of the file; otherwise the only blank
//!   lines are the canonical ones between classes, default and blocks.
//! - The text of a comment is kept as written, trailing whitespace trimmed.

use crate::packet::IpNumber;
use crate::policy::diagnostic::{Diagnostic, Severity};
use crate::policy::model::*;
use crate::policy::syntax::{FileAst, Span, TupleKind};
use rustc_hash::FxHashMap;
use std::collections::hash_map::Entry;
use std::fmt::Write;

/// Rules and the comments that go with them are indented this much inside a block.
const INDENT: &str = "    ";

/// Prints `policy` in canonical form: classes, default, then the `three` and `five` blocks;
/// fields in the order src, dst, label / proto, sport, dport, `any` fields left out.
pub fn format(policy: &Policy) -> String {
    render(policy, Comments::default())
}

/// Why [`format_source`] did not format a text.
#[derive(Debug, thiserror::Error)]
pub enum FmtError {
    /// The text has errors (these; warnings do not stop formatting).
    #[error("the policy has {} error(s)", .0.len())]
    Invalid(Vec<Diagnostic>),
}

/// Formats a policy file: the canonical form of [`format()`], with the file's comments placed as
/// the module documentation says.
pub fn format_source(src: &str) -> Result<String, FmtError> {
    let (ast, policy, diags) = crate::policy::parse_and_check(src);
    match policy {
        Some(p) => Ok(render(&p, Comments::place(&ast, src))),
        None => Err(FmtError::Invalid(
            diags
                .into_iter()
                .filter(|d| d.severity == Severity::Error)
                .collect(),
        )),
    }
}

/// A place in the canonical layout that comments go with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Slot {
    /// The i-th class declaration.
    Class(usize),
    Default,
    /// The `three {` or `five {` line.
    Open(TupleKind),
    /// The i-th rule of a kind.
    Rule(TupleKind, usize),
    /// The `}` of a kind's block.
    Close(TupleKind),
    /// The end of the file.
    End,
}

/// A comment printed on a line of its own, and whether a blank line stood before and after it.
struct Note<'s> {
    text: &'s str,
    blank_before: bool,
    blank_after: bool,
}

/// A file's comments by the slot they go with: the comments on lines of their own before the
/// slot's line, in source order, and the one at the end of the slot's line.
#[derive(Default)]
struct Comments<'s> {
    leading: FxHashMap<Slot, Vec<Note<'s>>>,
    trailing: FxHashMap<Slot, &'s str>,
}

/// A stretch of the source that comments attach to, and the slot they go with. A `merged`
/// stretch (a later block's header, an earlier block's `}`) has no line in the output: all its
/// comments go on lines of their own before `slot`.
struct Anchor {
    span: Span,
    slot: Slot,
    merged: bool,
}

impl Anchor {
    fn new(span: Span, slot: Slot) -> Self {
        Anchor {
            span,
            slot,
            merged: false,
        }
    }
    fn merged(span: Span, slot: Slot) -> Self {
        Anchor {
            span,
            slot,
            merged: true,
        }
    }
}

/// Every item of the file as an anchor, in source order. `ast` must check clean: the i-th
/// class and the i-th rule of a kind are then the policy's.
fn anchors(ast: &FileAst) -> Vec<Anchor> {
    let mut v: Vec<Anchor> = Vec::new();
    for (i, c) in ast.classes.iter().enumerate() {
        v.push(Anchor::new(c.span, Slot::Class(i)));
    }
    for d in &ast.defaults {
        v.push(Anchor::new(d.span, Slot::Default));
    }
    for kind in [TupleKind::Three, TupleKind::Five] {
        let blocks: Vec<_> = ast.blocks.iter().filter(|b| b.tuple == kind).collect();
        let total: usize = blocks.iter().map(|b| b.rules.len()).sum();
        // Where a later block's rules join: before rule `n`, or before the `}`.
        let join = |n: usize| {
            if n < total {
                Slot::Rule(kind, n)
            } else {
                Slot::Close(kind)
            }
        };
        let mut n = 0;
        for (k, b) in blocks.iter().enumerate() {
            let header = b.keyword_span.join(b.open);
            v.push(if k == 0 {
                Anchor::new(header, Slot::Open(kind))
            } else {
                Anchor::merged(header, join(n))
            });
            for r in &b.rules {
                v.push(Anchor::new(r.span, Slot::Rule(kind, n)));
                n += 1;
            }
            if let Some(close) = b.close {
                v.push(if k + 1 == blocks.len() {
                    Anchor::new(close, Slot::Close(kind))
                } else {
                    Anchor::merged(close, join(n))
                });
            }
        }
    }
    v.sort_by_key(|a| a.span.start);
    v
}

impl<'s> Comments<'s> {
    /// Places every comment of `src`, whose syntax tree is `ast`.
    fn place(ast: &FileAst, src: &'s str) -> Self {
        let anchors = anchors(ast);
        let mut c = Comments::default();
        for &span in &ast.comments {
            let text = src[span.range()].trim_end();
            let k = anchors.partition_point(|a| a.span.start < span.start);
            let (slot, trailing) = match k.checked_sub(1).map(|k| &anchors[k]) {
                // Inside an item written over several lines.
                Some(a) if a.span.end > span.start => (a.slot, false),
                // After an item, on its last line.
                Some(a) if !src[a.span.end..span.start].contains('\n') => (a.slot, !a.merged),
                // On its own line: with the next item.
                _ => (anchors.get(k).map_or(Slot::End, |a| a.slot), false),
            };
            match c.trailing.entry(slot) {
                Entry::Vacant(e) if trailing => {
                    e.insert(text);
                }
                _ => c.leading.entry(slot).or_default().push(Note {
                    text,
                    blank_before: blank_line_before(src, span.start),
                    blank_after: blank_line_after(src, span.end),
                }),
            }
        }
        c
    }

    fn has(&self, slot: Slot) -> bool {
        self.leading.contains_key(&slot) || self.trailing.contains_key(&slot)
    }
}

/// True when the line before the one `at` is in is blank.
fn blank_line_before(src: &str, at: usize) -> bool {
    let Some(nl) = src[..at].rfind('\n') else {
        return false;
    };
    let start = src[..nl].rfind('\n').map_or(0, |n| n + 1);
    src[start..nl].trim().is_empty()
}

/// True when the line after the one ending at `end` (a newline or the end of `src`) is blank.
fn blank_line_after(src: &str, end: usize) -> bool {
    let Some(rest) = src[end..].strip_prefix('\n') else {
        return false;
    };
    let line = rest.find('\n').map_or(rest, |n| &rest[..n]);
    !rest.is_empty() && line.trim().is_empty()
}

/// The text being printed, a line at a time, and the comments not printed yet.
struct Out<'s> {
    text: String,
    comments: Comments<'s>,
    /// A blank line is due before the next line.
    blank: bool,
    /// The last line opened a block: no blank line follows it.
    opened: bool,
}

impl Out<'_> {
    /// Starts a line at `indent`, after the blank line that is due, if any. There is none at
    /// the start of the text or after a block's opening line.
    fn begin(&mut self, indent: &str) {
        if self.blank && !self.text.is_empty() && !self.opened {
            self.text.push('\n');
        }
        self.blank = false;
        self.opened = false;
        self.text.push_str(indent);
    }

    /// The comments that go on lines of their own before `slot`.
    fn notes(&mut self, slot: Slot, indent: &str) {
        for n in self.comments.leading.remove(&slot).unwrap_or_default() {
            self.blank |= n.blank_before;
            self.begin(indent);
            self.text.push_str(n.text);
            self.text.push('\n');
            self.blank = n.blank_after;
        }
    }

    /// Starts the line of the item at `slot`, after the comments that go before it.
    fn item(&mut self, slot: Slot, indent: &str) {
        self.notes(slot, indent);
        self.begin(indent);
    }

    /// Ends the line of the item at `slot`, with the comment that goes at its end.
    fn end(&mut self, slot: Slot) {
        if let Some(t) = self.comments.trailing.remove(&slot) {
            self.text.push_str("  ");
            self.text.push_str(t);
        }
        self.text.push('\n');
    }

    /// A kind's block: printed when it has rules or comments.
    fn block<M>(&mut self, kind: TupleKind, rules: &[Rule<M>], fields: impl Fn(&M, &mut String)) {
        let (open, close) = (Slot::Open(kind), Slot::Close(kind));
        if rules.is_empty() && !self.comments.has(open) && !self.comments.has(close) {
            return;
        }
        self.blank = true;
        self.item(open, "");
        self.text.push_str(kind.keyword());
        self.text.push_str(" {");
        self.end(open);
        self.opened = true;
        for (i, r) in rules.iter().enumerate() {
            let slot = Slot::Rule(kind, i);
            self.item(slot, INDENT);
            self.text.push_str("rule ");
            self.text.push_str(&r.name);
            fields(&r.matcher, &mut self.text);
            self.text.push_str(" -> ");
            self.text.push_str(&r.action.to_string());
            self.end(slot);
        }
        self.notes(close, INDENT);
        self.blank = false;
        self.begin("");
        self.text.push('}');
        self.end(close);
    }
}

/// The canonical form of `policy`, with `comments` in their places.
fn render(policy: &Policy, comments: Comments<'_>) -> String {
    let mut out = Out {
        text: String::new(),
        comments,
        blank: false,
        opened: false,
    };
    for (i, c) in policy.classes.iter().enumerate() {
        out.item(Slot::Class(i), "");
        match c.mark {
            Some(m) => write!(out.text, "class {} mark {m}", c.name),
            None => write!(out.text, "class {}", c.name),
        }
        .expect("writing to a String");
        out.end(Slot::Class(i));
    }
    if policy.default_explicit {
        out.blank = true;
        out.item(Slot::Default, "");
        write!(out.text, "default {}", policy.default).expect("writing to a String");
        out.end(Slot::Default);
    }
    out.block(TupleKind::Three, &policy.three, |m, s| {
        addr(s, "src", &m.src);
        addr(s, "dst", &m.dst);
        label(s, &m.label);
    });
    out.block(TupleKind::Five, &policy.five, |m, s| {
        addr(s, "src", &m.src);
        addr(s, "dst", &m.dst);
        if let Some(p) = m.proto {
            write!(s, " proto {}", IpNumber(p)).expect("writing to a String");
        }
        ports(s, "sport", m.sport);
        ports(s, "dport", m.dport);
    });
    out.notes(Slot::End, "");
    out.text
}

fn addr(s: &mut String, kw: &str, a: &AddrMatch) {
    match a.0.as_slice() {
        [] => {}
        [p] => write!(s, " {kw} {p}").expect("writing to a String"),
        ps => {
            let items: Vec<String> = ps.iter().map(Prefix::to_string).collect();
            write!(s, " {kw} {{ {} }}", items.join(", ")).expect("writing to a String");
        }
    }
}

fn label(s: &mut String, l: &LabelMatch) {
    match *l {
        LabelMatch::Any => Ok(()),
        LabelMatch::Exact(v) if v.is_zero() => write!(s, " label 0"),
        LabelMatch::Exact(v) => write!(s, " label {:#x}", v.value()),
        LabelMatch::Masked { value, mask } => write!(s, " label {value:#x}/{mask:#x}"),
        LabelMatch::Range { lo, hi } => write!(s, " label {:#x}-{:#x}", lo.value(), hi.value()),
    }
    .expect("writing to a String");
}

fn ports(s: &mut String, kw: &str, p: PortMatch) {
    if p.is_any() {
        return;
    }
    if p.lo == p.hi {
        write!(s, " {kw} {}", p.lo)
    } else {
        write!(s, " {kw} {}-{}", p.lo, p.hi)
    }
    .expect("writing to a String");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::check_source;

    /// Formats `src`, checking that the result is a fixed point with the same policy.
    fn fmt(src: &str) -> String {
        let out = format_source(src).unwrap();
        assert_eq!(format_source(&out).unwrap(), out, "not a fixed point");
        assert_eq!(check_source(&out).0, check_source(src).0, "policy changed");
        out
    }

    #[test]
    fn without_comments_it_is_the_canonical_form() {
        let src = "three { rule a label 1 -> pass }\ndefault drop\nclass x\nfive { rule b -> class x }\nthree { rule c -> drop }";
        let out = fmt(src);
        assert_eq!(out, format(&check_source(src).0.unwrap()));
        assert_eq!(
            out,
            "class x\n\ndefault drop\n\nthree {\n    rule a label 0x1 -> pass\n    rule c -> drop\n}\n\nfive {\n    rule b -> class x\n}\n"
        );
    }

    #[test]
    fn own_line_comments_go_before_the_next_item_at_its_indentation() {
        let src = "# file\n# header\nclass gold\n   # the default\ndefault pass\n# rules\nthree {\n# first\n# rule\n  rule a -> class gold\n        # second\nrule b -> drop }\n";
        assert_eq!(
            fmt(src),
            "# file\n# header\nclass gold\n\n# the default\ndefault pass\n\n# rules\nthree {\n    # first\n    # rule\n    rule a -> class gold\n    # second\n    rule b -> drop\n}\n"
        );
    }

    #[test]
    fn trailing_comments_stay_two_spaces_after_their_item() {
        let src = "class gold mark 1 # gold\ndefault pass\t\t#  why  \nthree {# kind\n rule a -> class gold      # a\n rule b -> drop } # done\n";
        assert_eq!(
            fmt(src),
            "class gold mark 1  # gold\n\ndefault pass  #  why\n\nthree {  # kind\n    rule a -> class gold  # a\n    rule b -> drop\n}  # done\n"
        );
    }

    #[test]
    fn comments_after_the_last_rule_and_at_the_end_stay_there() {
        let src = "default pass\nfive {\n rule a -> pass\n # last\n # words\n}\n# end\n#\n";
        assert_eq!(
            fmt(src),
            "default pass\n\nfive {\n    rule a -> pass\n    # last\n    # words\n}\n# end\n#\n"
        );
    }

    #[test]
    fn merged_blocks_keep_their_comments_where_they_join() {
        let src = "three { # one\n rule a -> pass\n # end of one\n} # closed one\nfive { rule f -> pass }\n# two\nthree # two's\n{ # header\n rule b -> drop\n}\nthree {\n # empty\n} # three\nthree { rule c -> drop } # last\n";
        assert_eq!(
            fmt(src),
            "three {  # one\n    rule a -> pass\n    # end of one\n    # closed one\n    # two\n    # two's\n    # header\n    rule b -> drop\n    # empty\n    # three\n    rule c -> drop\n}  # last\n\nfive {\n    rule f -> pass\n}\n"
        );
        // Comments of a later block with no rule after it go before the `}`.
        assert_eq!(
            fmt("three { rule a -> pass } # x\nthree { # y\n}\n"),
            "three {\n    rule a -> pass\n    # x\n    # y\n}\n"
        );
    }

    #[test]
    fn a_comment_inside_an_item_goes_before_it() {
        let src = "three {\n rule a src ::1 # source\n   # and\n   dst ::2 # dest\n   -> pass # end\n}\nclass # c\n  gold\n";
        assert_eq!(
            fmt(src),
            "# c\nclass gold\n\nthree {\n    # source\n    # and\n    # dest\n    rule a src ::1 dst ::2 -> pass  # end\n}\n"
        );
    }

    #[test]
    fn blank_lines_next_to_comments_collapse_to_one() {
        let src = "# title\n\n\n\n# text\n\nclass a\n\n\nthree {\n\n # first\n\n rule x -> class a\n rule y -> pass\n\n\n # part two\n rule z -> drop\n # tail\n\n}\n\n\n# end\n\n";
        assert_eq!(
            fmt(src),
            "# title\n\n# text\n\nclass a\n\nthree {\n    # first\n\n    rule x -> class a\n    rule y -> pass\n\n    # part two\n    rule z -> drop\n    # tail\n}\n\n# end\n"
        );
        // No blank lines between rules without comments.
        assert_eq!(
            fmt("three {\n rule x -> pass\n\n rule y -> pass\n}"),
            "three {\n    rule x -> pass\n    rule y -> pass\n}\n"
        );
    }

    #[test]
    fn a_block_without_rules_is_kept_for_its_comments() {
        assert_eq!(
            fmt("default pass\nfive { # later\n}\nthree { }\n"),
            "default pass\n\nfive {  # later\n}\n"
        );
        assert_eq!(fmt("# only\n  # comments\r\n"), "# only\n# comments\n");
        assert_eq!(fmt(""), "");
    }

    #[test]
    fn comments_move_with_their_items() {
        let src = "three { rule a -> pass } # a\n\n# the default\ndefault drop # d\n# the class\nclass c # c\n";
        assert_eq!(
            fmt(src),
            "# the class\nclass c  # c\n\n# the default\ndefault drop  # d\n\nthree {\n    rule a -> pass\n}  # a\n"
        );
    }

    #[test]
    fn text_is_kept_as_written_and_crlf_read() {
        let src =
            "default pass  #x # y\t \r\n#\u{3000}ü  \r\nthree {\r\n  rule a -> pass ##\r\n}\r\n";
        assert_eq!(
            fmt(src),
            "default pass  #x # y\n\n#\u{3000}ü\nthree {\n    rule a -> pass  ##\n}\n"
        );
    }

    #[test]
    fn invalid_text_is_not_formatted() {
        let Err(FmtError::Invalid(errors)) =
            format_source("# c\nthree { rule a label 0x100000 -> drop }")
        else {
            panic!("formatted an invalid policy");
        };
        assert_eq!(errors.len(), 1);
        // Warnings (here: no default) do not stop formatting.
        assert!(format_source("three { }").is_ok());
    }
}
