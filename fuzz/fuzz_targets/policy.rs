//! Fuzz the policy parser and checker: any bytes, never a panic, spans inside the input, and a
//! policy that checks clean round-trips through the canonical form, without comments and with
//! them (every comment kept, the output a fixed point).
#![no_main]

use flowpol::policy;
use libfuzzer_sys::fuzz_target;

/// The text of every comment of `text`, trailing whitespace trimmed, sorted.
fn comments(text: &str) -> Vec<&str> {
    let (ast, _) = policy::parse::parse(text);
    let mut v: Vec<&str> = ast.comments.iter().map(|c| text[c.range()].trim_end()).collect();
    v.sort_unstable();
    v
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (parsed, diags) = policy::check_source(text);
    for d in &diags {
        assert!(d.span.start <= d.span.end && d.span.end <= text.len());
        let _ = policy::diagnostic::render_human(&policy::Source { name: "fuzz", text }, d);
    }
    if let Some(p) = parsed {
        let canon = policy::fmt::format(&p);
        let (again, _) = policy::check_source(&canon);
        assert_eq!(again.as_ref(), Some(&p), "round trip of {canon:?}");

        let kept = policy::fmt::format_source(text).expect("a policy that checks clean formats");
        let (again, _) = policy::check_source(&kept);
        assert_eq!(again.as_ref(), Some(&p), "round trip of {kept:?}");
        assert_eq!(comments(&kept), comments(text), "comments of {text:?} in {kept:?}");
        let twice = policy::fmt::format_source(&kept).expect("the canonical form formats");
        assert_eq!(twice, kept, "fmt of fmt of {text:?}");
    }
});
