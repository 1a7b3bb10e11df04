//! `SECURITY.md` matches the tests: every test it names to prove a claim
//! exists, as a test function where it says (an end-to-end test in
//! `tests/tests/FILE.rs`, or a unit test in the named crate under the named
//! module path), and every claim names at least one test. A renamed or
//! removed test makes this fail, so a claim cannot silently lose its proof.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.rs` file under `dir`, with its text.
fn sources(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                out.push((p, text));
            }
        }
    }
    out
}

/// Whether `text` defines `name` as a test function (`#[test]` or
/// `#[tokio::test…]` within the few lines above it).
fn defines_test(text: &str, name: &str) -> bool {
    let lines: Vec<&str> = text.lines().collect();
    lines.iter().enumerate().any(|(i, l)| {
        let l = l.trim_start();
        let is_fn = ["fn ", "async fn "]
            .iter()
            .any(|p| l.starts_with(&format!("{p}{name}(")));
        is_fn
            && lines[i.saturating_sub(4)..i]
                .iter()
                .any(|a| a.trim_start().starts_with("#[test]") || a.contains("#[tokio::test"))
    })
}

/// Whether module `name` exists among `files`: a file `name.rs`, a
/// directory `name/`, or a `mod name` item.
fn has_module(files: &[(PathBuf, String)], name: &str) -> bool {
    files.iter().any(|(p, text)| {
        p.file_stem().is_some_and(|s| s == name)
            || p.parent()
                .and_then(|d| d.file_name())
                .is_some_and(|d| d == name)
            || text.contains(&format!("mod {name} {{"))
            || text.contains(&format!("mod {name};"))
    })
}

fn crate_dir(name: &str) -> PathBuf {
    let root = repo();
    match name {
        "mco-core" => root.join("core"),
        "mco-pki" => root.join("pki"),
        "mco-security" => root.join("security"),
        "mco-responder" => root.join("responder"),
        "mco-client" => root.join("client"),
        "mco-provisioner" => root.join("provisioner"),
        other => match other.strip_prefix("mco-plugin-") {
            Some(p) => root.join("plugins").join(p),
            None => panic!("SECURITY.md names an unknown crate {other:?}"),
        },
    }
}

/// The test references in `text`: backticked `FILE::NAME` or
/// `CRATE MODULE::…::NAME` (NAME may be `*`, a whole module).
fn references(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|r| {
            r.contains("::")
                && !r.starts_with("mco_core::")
                && *r != "file::name"
                && r.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_:-* ".contains(c))
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn every_test_security_md_names_exists() {
    let text = std::fs::read_to_string(repo().join("SECURITY.md")).unwrap();
    let refs = references(&text);
    assert!(refs.len() > 40, "found only {refs:?}");
    let mut missing = Vec::new();
    for r in &refs {
        let (krate, path) = match r.split_once(' ') {
            Some((k, p)) => (Some(k), p),
            None => (None, r.as_str()),
        };
        let segments: Vec<&str> = path.split("::").collect();
        let (modules, last) = segments.split_at(segments.len() - 1);
        let found = match krate {
            None => {
                let file = repo()
                    .join("tests/tests")
                    .join(format!("{}.rs", modules[0]));
                std::fs::read_to_string(&file).is_ok_and(|t| defines_test(&t, last[0]))
            }
            Some(k) => {
                let files = sources(&crate_dir(k).join("src"));
                modules.iter().all(|m| has_module(&files, m))
                    && (last[0] == "*" || files.iter().any(|(_, t)| defines_test(t, last[0])))
            }
        };
        if !found {
            missing.push(r.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "SECURITY.md names tests that do not exist: {missing:#?}"
    );
}

/// Every claim (a bold "Cannot …" item) names at least one test.
#[test]
fn every_claim_names_a_test() {
    let text = std::fs::read_to_string(repo().join("SECURITY.md")).unwrap();
    let gaps = text.find("## Known gaps").unwrap_or(text.len());
    let claims: Vec<&str> = text[..gaps].split("\n- **").skip(1).collect();
    assert!(claims.len() > 20, "found {} claims", claims.len());
    let bare: Vec<&str> = claims
        .iter()
        .filter(|c| {
            let item = c.split("\n\n").next().unwrap_or(c);
            references(item).is_empty()
        })
        .map(|c| c.split("**").next().unwrap_or(c))
        .collect();
    assert!(bare.is_empty(), "claims without a test: {bare:#?}");
}

#[test]
fn a_missing_test_would_be_found() {
    let files = sources(&crate_dir("mco-security").join("src"));
    assert!(has_module(&files, "replay"));
    assert!(!has_module(&files, "no_such_module"));
    assert!(files
        .iter()
        .any(|(_, t)| defines_test(t, "full_of_live_ids_refuses_and_forgets_none")));
    assert!(!files
        .iter()
        .any(|(_, t)| defines_test(t, "check_and_insert")));
    assert_eq!(
        references("see `adversarial_wire::x` and `mco-core a::b::*`, not `mco_core::limits`"),
        ["adversarial_wire::x", "mco-core a::b::*"]
    );
}
