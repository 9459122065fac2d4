//! Log lines on stderr carry ANSI colour codes only on a terminal, and not even there when
//! `NO_COLOR` is set: written to a pipe or a file they are plain text.

use support::{OutputExt, flowpol};

/// `compile -v` logs one info line ("compiled").
fn compile_verbose() -> support::Flowpol {
    flowpol!()
        .in_repo()
        .args([
            "-v",
            "compile",
            "policies/datacenter.fpol",
            "--target",
            "nft",
        ])
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
}

#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    let out = compile_verbose().output();
    assert!(out.status.success(), "{out:?}");
    let err = out.stderr_text();
    assert!(err.contains("compiled"), "{err}");
    assert!(!err.contains('\x1b'), "{err:?}");
}

#[test]
fn logs_on_a_terminal_are_coloured_unless_no_color_is_set() {
    if !support::gate::have("script") {
        return;
    }
    let cmd = compile_verbose();
    let line = |no_color: bool| {
        let mut words = vec![cmd.bin().display().to_string()];
        words.extend(
            [
                "-v",
                "compile",
                "policies/datacenter.fpol",
                "--target",
                "nft",
                "-o",
                "/dev/null",
            ]
            .map(String::from),
        );
        let mut c = std::process::Command::new("script");
        // `script` gives the command a pseudo-terminal; its output is the terminal's text.
        c.args(["-qec", &words.join(" "), "/dev/null"])
            .current_dir(support::gate::repo())
            .env_remove("RUST_LOG");
        if no_color {
            c.env("NO_COLOR", "1");
        } else {
            c.env_remove("NO_COLOR");
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        out.stdout_text()
    };
    let coloured = line(false);
    assert!(
        coloured.contains("compiled") && coloured.contains('\x1b'),
        "{coloured:?}"
    );
    let plain = line(true);
    assert!(
        plain.contains("compiled") && !plain.contains('\x1b'),
        "{plain:?}"
    );
}
