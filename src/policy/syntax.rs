//! The syntax tree of a policy file, as written: every node carries the byte span it came from,
//! and numbers are kept unchecked (as `u64`) so that `check` can report every range problem at once.

use std::net::IpAddr;

/// A half-open byte range `start..end` in the source text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub const fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }
    /// The smallest span covering both.
    pub fn join(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
    pub fn range(self) -> std::ops::Range<usize> {
        self.start..self.end
    }
}

/// A name (rule or class) and where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// An unchecked number. `value` saturates at `u64::MAX` for absurdly long literals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Num {
    pub value: u64,
    pub span: Span,
}

/// One address or prefix as written: `2001:db8::1`, `2001:db8::/32` (an IPv4 address is kept
/// so that the checker can say what to write instead).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrAtom {
    pub addr: IpAddr,
    pub addr_span: Span,
    pub len: Option<Num>,
    pub span: Span,
}

/// `any`, one atom, or a `{ ... }` set of atoms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddrSpec {
    Any(Span),
    Set(Vec<AddrAtom>, Span),
}

/// `any`, `N`, `V/M`, or `LO-HI`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelSpec {
    Any(Span),
    Exact(Num),
    Masked(Num, Num),
    Range(Num, Num),
}

/// `any`, `N`, or `LO-HI`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortSpec {
    Any(Span),
    Exact(Num),
    Range(Num, Num),
}

/// `any`, a protocol name, or a number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtoSpec {
    Any(Span),
    Named(u8, Span),
    Number(Num),
}

/// One `keyword value` field of a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    Src(AddrSpec),
    Dst(AddrSpec),
    Label(LabelSpec),
    Proto(ProtoSpec),
    Sport(PortSpec),
    Dport(PortSpec),
}

impl Field {
    /// The keyword that introduces the field.
    pub fn keyword(&self) -> &'static str {
        match self {
            Field::Src(_) => "src",
            Field::Dst(_) => "dst",
            Field::Label(_) => "label",
            Field::Proto(_) => "proto",
            Field::Sport(_) => "sport",
            Field::Dport(_) => "dport",
        }
    }
}

/// A field with the span of its keyword and of the whole field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldAst {
    pub field: Field,
    pub keyword_span: Span,
    pub span: Span,
}

/// `pass`, `drop`, or `class NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActionAst {
    Pass(Span),
    Drop(Span),
    Class(Ident, Span),
}

/// Which key a block of rules matches on, and so which engine classifies it: the three/five
/// choice wherever it is made (policy blocks, `compile --engine`, `gen-rules --tuple`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum TupleKind {
    /// Rules on (src, dst, flow label).
    Three,
    /// Rules on (src, dst, proto, sport, dport).
    Five,
}

impl TupleKind {
    pub fn keyword(self) -> &'static str {
        match self {
            TupleKind::Three => "three",
            TupleKind::Five => "five",
        }
    }
}

/// `rule NAME field* -> action`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleAst {
    pub name: Ident,
    pub fields: Vec<FieldAst>,
    pub action: ActionAst,
    pub span: Span,
}

/// `three { rule* }` or `five { rule* }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockAst {
    pub tuple: TupleKind,
    pub keyword_span: Span,
    /// The `{`.
    pub open: Span,
    pub rules: Vec<RuleAst>,
    /// The `}`; `None` when the block is not closed (a syntax error).
    pub close: Option<Span>,
    pub span: Span,
}

/// `class NAME [mark N]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassDecl {
    pub name: Ident,
    pub mark: Option<Num>,
    pub span: Span,
}

/// `default ACTION`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefaultDecl {
    pub action: ActionAst,
    pub span: Span,
}

/// A whole file, items in source order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileAst {
    pub classes: Vec<ClassDecl>,
    pub defaults: Vec<DefaultDecl>,
    pub blocks: Vec<BlockAst>,
    /// Every `#` comment, in source order: from the `#` to the end of its line, the newline
    /// left out. Comments are not part of any item; `fmt` places them by these spans.
    pub comments: Vec<Span>,
}
