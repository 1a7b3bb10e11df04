//! NRPE definitions: nrpe.cfg files with `command[NAME]=…` lines and
//! `include=` / `include_dir=` directives, loaded by the nrpe agent
//! (`Definitions::load`); then, for each definition, what a request makes
//! of it: its `!`-separated arguments checked (`ArgPolicy::split`) and the
//! command line prepared with them (`prepare`).
//!
//! The input is a few files under a fresh directory (the main nrpe.cfg, a
//! conf_dir with a subdirectory, an include directory) and the request's
//! arguments: a first byte (bit 0: read the conf_dir too; bit 1: allow
//! arguments starting with `-`), then, split at
//! NUL bytes, the arguments and each file's text in the order of `NAMES`.
//! Includes that leave that directory (absolute paths, `..`) are skipped:
//! they name the operator's own files, not the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mco_fuzz::on_worker_stack;
use mco_plugin_nrpe::cmdline::{prepare, ArgPolicy, Program};
use mco_plugin_nrpe::defs::Definitions;
use mco_plugin_nrpe::NrpeConfig;

const NAMES: [&str; 7] = [
    "nrpe.cfg",
    "nrpe.d/a.cfg",
    "nrpe.d/b.cfg",
    "nrpe.d/sub/c.cfg",
    "inc/d.cfg",
    "inc/e.txt",
    "other.cfg",
];

struct Input {
    conf_dir: bool,
    allow_dash: bool,
    args: String,
    files: Vec<String>,
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest
        .split(|&b| b == 0)
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let args = parts.next().unwrap_or_default();
    let files: Vec<String> = parts.take(NAMES.len()).collect();
    if files.iter().any(|text| leaves_the_directory(text)) {
        return;
    }
    let input = Input {
        conf_dir: flags & 1 == 1,
        allow_dash: flags & 2 == 2,
        args,
        files,
    };
    on_worker_stack(|| check(input));
});

fn leaves_the_directory(text: &str) -> bool {
    text.lines().any(|line| {
        line.trim().split_once('=').is_some_and(|(k, v)| {
            let v = v.trim();
            k.trim().starts_with("include") && (v.starts_with('/') || v.contains(".."))
        })
    })
}

fn check(input: Input) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for sub in ["nrpe.d/sub", "inc"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    for (name, text) in NAMES.iter().zip(&input.files) {
        std::fs::write(root.join(name), text).unwrap();
    }
    let cfg = NrpeConfig {
        conf_dir: input.conf_dir.then(|| root.join("nrpe.d")),
        conf_files: vec![root.join("nrpe.cfg")],
        ..NrpeConfig::default()
    };
    let defs = Definitions::new(cfg);
    let loaded = defs.load();
    assert_eq!(
        defs.load().commands,
        loaded.commands,
        "nothing changed, yet a reload differs"
    );
    let policy = ArgPolicy {
        allow: true,
        allow_dash: input.allow_dash,
    };
    let Ok(args) = policy.split(&input.args) else {
        return;
    };
    // The same request with a plain word for every argument.
    let plain: Vec<String> = args.iter().map(|_| "x".to_string()).collect();
    for template in loaded.commands.values() {
        let got = prepare(template, &args);
        let reference = prepare(template, &plain);
        match (got, reference) {
            // Each argument is exactly one word: as many words as with plain ones.
            (Ok(Program::Direct(w)), Ok(Program::Direct(p))) => assert_eq!(
                w.len(),
                p.len(),
                "arguments {args:?} changed the words of {template:?}: {w:?}"
            ),
            // A shell line never holds an argument's text; the arguments are its parameters.
            (Ok(Program::Shell { line, args: a }), Ok(Program::Shell { line: l, .. })) => {
                assert_eq!(line, l, "arguments {args:?} reached the shell line of {template:?}");
                assert!(a.iter().all(|x| args.contains(x) || x.is_empty()));
            }
            (Err(_), Err(_)) => {}
            (got, reference) => panic!(
                "arguments {args:?} changed how {template:?} runs: {got:?}, with plain ones {reference:?}"
            ),
        }
    }
}
