//! The canonical text of a policy: what `flowpol fmt` prints and what generators and importers
//! emit. Round-trips: parsing the output gives back an equal [`Policy`].

use crate::policy::model::*;
use std::fmt::Write;

/// Prints `policy` in canonical form: classes, default, then the `three` and `five` blocks;
/// fields in the order src, dst, label / proto, sport, dport, `any` fields left out.
pub fn format(policy: &Policy) -> String {
    let mut out = String::new();
    for c in &policy.classes {
        match c.mark {
            Some(m) => writeln!(out, "class {} mark {m}", c.name),
            None => writeln!(out, "class {}", c.name),
        }
        .expect("writing to a String");
    }
    if policy.default_explicit {
        if !out.is_empty() {
            out.push('\n');
        }
        writeln!(out, "default {}", policy.default).expect("writing to a String");
    }
    if !policy.three.is_empty() {
        block(&mut out, "three", &policy.three, |m, s| {
            addr(s, "src", &m.src);
            addr(s, "dst", &m.dst);
            label(s, &m.label);
        });
    }
    if !policy.five.is_empty() {
        block(&mut out, "five", &policy.five, |m, s| {
            addr(s, "src", &m.src);
            addr(s, "dst", &m.dst);
            if let Some(p) = m.proto {
                match proto_name(p) {
                    Some(n) => write!(s, " proto {n}"),
                    None => write!(s, " proto {p}"),
                }
                .expect("writing to a String");
            }
            ports(s, "sport", m.sport);
            ports(s, "dport", m.dport);
        });
    }
    out
}

fn block<M>(out: &mut String, kw: &str, rules: &[Rule<M>], fields: impl Fn(&M, &mut String)) {
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(kw);
    out.push_str(" {\n");
    for r in rules {
        out.push_str("    rule ");
        out.push_str(&r.name);
        fields(&r.matcher, out);
        out.push_str(" -> ");
        out.push_str(&r.action.to_string());
        out.push('\n');
    }
    out.push_str("}\n");
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
