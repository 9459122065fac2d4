//! Fuzz the policy parser and checker: any bytes, never a panic, spans inside the input, and a
//! policy that checks clean round-trips through the canonical form.
#![no_main]

use flowpol::policy;
use libfuzzer_sys::fuzz_target;

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
    }
});
