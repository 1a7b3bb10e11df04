//! Findings 9 and 8 (perfdata) of the hardening review, end to end: real nats-server, real
//! responders hosting the nrpe agent, the real `check_mco_nrpe` and `mco`.
//!
//! - U, any user allowed `nrpe runcommand`: one argument holding spaces and dashes used to become
//!   any number of options of the operator's check (`-o ProxyCommand=…`). Now arguments are off
//!   unless the node allows them, an argument with whitespace or (by default) a leading `-` is
//!   refused, and the check — a script that records the argv it received — never runs; a plain
//!   argument arrives as exactly one word.
//! - N, root on one node: a perfdata label or unit holding `|` (or a control character) used to
//!   split `check_mco_nrpe`'s status line and forge performance data. Now such items are
//!   refused, the plugin output says so on a line of its own, and line 1 carries only the
//!   counts and the honest labels.
//!
//! Each test checks that the node still answers afterwards.

use std::path::{Path, PathBuf};

use mco_tests::replies::replies;
use mco_tests::{bin_path, mco, Cmd, NatsServer, Output, Responder, ResponderSpec};
use tempfile::TempDir;

/// A node whose `conf_dir` defines `checks`, with `settings` added to `[plugin.nrpe]`.
struct Node {
    _responder: Responder,
    dir: TempDir,
}

fn node(nats: &NatsServer, id: &str, settings: &str, checks: impl Fn(&Path) -> String) -> Node {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("checks.cfg"), checks(dir.path())).unwrap();
    let mut spec = ResponderSpec::new(id).extra(&format!(
        "[plugin.nrpe]\nconf_dir = {:?}\n{settings}",
        dir.path().display().to_string()
    ));
    spec.security = Some("insecure = true\ndefault_policy = \"allow\"\n".into());
    Node {
        _responder: Responder::start(nats, spec),
        dir,
    }
}

/// `check_mco_nrpe` against the fleet.
fn check(nats: &NatsServer, args: &[&str]) -> Output {
    Cmd::new(bin_path("check_mco_nrpe"))
        .args([
            "--nats",
            &nats.url(),
            "-t",
            "20s",
            "--discovery-window",
            "1s",
        ])
        .args(args)
        .run()
}

/// The node answers a ping.
fn answers(nats: &NatsServer, id: &str) {
    let out = mco([
        "rpc",
        "rpcutil",
        "ping",
        "-j",
        "-I",
        id,
        "--nats",
        &nats.url(),
    ]);
    let r = replies(&out);
    assert_eq!(r.len(), 1, "{out:?}");
    assert_eq!(r[0]["statuscode"], 0, "{out:?}");
}

/// A check script that records each argv it is run with, one line `<arg><arg>…` per run.
fn argv_check(dir: &Path) -> PathBuf {
    let script = dir.join("argv.sh");
    std::fs::write(
        &script,
        format!(
            "for a in \"$@\"; do printf '<%s>' \"$a\" >> {log}; done\necho >> {log}\necho 'OK - ran|runs=1'\n",
            log = dir.join("argv.log").display()
        ),
    )
    .unwrap();
    script
}

fn argv_log(n: &Node) -> Option<String> {
    std::fs::read_to_string(n.dir.path().join("argv.log")).ok()
}

#[test]
fn an_argument_cannot_add_options_to_a_check() {
    let nats = NatsServer::start();
    let defs = |d: &Path| {
        let s = argv_check(d).display().to_string();
        format!(
            "command[check_ssh]=/bin/sh {s} -H $ARG1$ -p 22\n\
             command[check_sh]=/bin/sh {s} -H \"$ARG1$\" | cat\n"
        )
    };
    let on = node(&nats, "n-args", "allow_arguments = true\n", defs);
    let off = node(&nats, "n-noargs", "", defs);
    let attack = "localhost -o ProxyCommand=/home/mallory/x --config=/tmp/y";

    // The stock client sends it (it is "shellsafe"); every node refuses it, nothing runs.
    for name in ["check_ssh", "check_sh"] {
        let out = check(&nats, &[&format!("{name}!{attack}")]);
        out.assert_exit(3);
        assert!(
            out.stdout.contains(&format!(
                "\n[UNKNOWN] n-args: Invalid Request Data: argument 1 (\"{attack}\") contains whitespace"
            )),
            "{out:?}"
        );
        assert!(
            out.stdout.contains(
                "\n[UNKNOWN] n-noargs: Invalid Request Data: this node does not accept command arguments"
            ),
            "{out:?}"
        );
    }
    // A single option word is refused as well, unless the node allows dashes.
    let out = check(
        &nats,
        &["-I", "n-args", "check_ssh!-oProxyCommand=/home/mallory/x"],
    );
    out.assert_exit(3);
    assert!(
        out.stdout.contains("allow_dash_arguments is off"),
        "{out:?}"
    );
    // The same through `mco rpc`, which shows the node's answer as is.
    let out = mco([
        "rpc",
        "nrpe",
        "runcommand",
        "command=check_ssh",
        &format!("args={attack}"),
        "-j",
        "-I",
        "n-args",
        "--nats",
        &nats.url(),
    ]);
    assert_eq!(replies(&out)[0]["statuscode"], 4, "{out:?}");
    assert_eq!(argv_log(&on), None, "a refused request ran the check");
    assert_eq!(argv_log(&off), None, "a refused request ran the check");

    // A plain argument reaches the check as exactly one word, with or without a shell; an
    // argument-less run gives the empty word, never fewer words.
    let out = check(&nats, &["-I", "n-args", "check_ssh!db-01.example:22"]);
    out.assert_exit(0);
    let out = check(&nats, &["-I", "n-args", "check_sh!db-01"]);
    out.assert_exit(0);
    let out = check(&nats, &["-I", "n-args", "check_ssh"]);
    out.assert_exit(0);
    assert_eq!(
        argv_log(&on).unwrap(),
        "<-H><db-01.example:22><-p><22>\n<-H><db-01>\n<-H><><-p><22>\n"
    );
    // The node without arguments still runs argument-less checks.
    check(&nats, &["-I", "n-noargs", "check_ssh"]).assert_exit(0);
    assert_eq!(argv_log(&off).unwrap(), "<-H><><-p><22>\n");
    answers(&nats, "n-args");
    answers(&nats, "n-noargs");
}

#[test]
fn a_nodes_perfdata_cannot_forge_status_line_items() {
    let nats = NatsServer::start();
    // The evil node's check: a label holding `|`, a unit holding `|` and `=` (a forged item
    // `z`), a label holding an escape sequence, and one honest item.
    let _evil = node(&nats, "n-evil", "", |d| {
        std::fs::write(
            d.join("app.sh"),
            "printf \"OK - fine|'a|[OK] forged'=1 y=2|z=99 'e\\033[2J'=3 time=1s\\n\"\n",
        )
        .unwrap();
        format!("command[check_app]=/bin/sh {}/app.sh\n", d.display())
    });
    let _good = node(&nats, "n-good", "", |d| {
        std::fs::write(d.join("app.sh"), "echo 'OK - fine|time=3s'\n").unwrap();
        format!("command[check_app]=/bin/sh {}/app.sh\n", d.display())
    });

    // The node really sends it: `mco rpc` shows its perfdata as it came.
    let out = mco([
        "rpc",
        "nrpe",
        "runcommand",
        "command=check_app",
        "-j",
        "-I",
        "n-evil",
        "--nats",
        &nats.url(),
    ]);
    let sent = replies(&out)[0]["data"]["perfdata"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(sent.contains("y=2|z=99"), "{out:?}");

    let out = check(&nats, &["check_app"]);
    out.assert_exit(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    let (status, perf) = lines[0].split_once('|').expect("line 1 has perfdata");
    assert_eq!(status, "check_app: OK: 2 WARNING: 0 CRITICAL: 0 UNKNOWN: 0");
    assert!(!perf.contains(['|', '\'', '\u{1b}']), "{out:?}");
    let labels: Vec<&str> = perf
        .split(' ')
        .map(|i| i.split_once('=').expect("label=value").0)
        .collect();
    assert_eq!(
        labels,
        [
            "total",
            "ok",
            "warning",
            "critical",
            "unknown",
            "checktime",
            "time_min",
            "time_avg",
            "time_max"
        ],
        "{out:?}"
    );
    assert!(
        perf.ends_with(" time_min=1s;;;; time_avg=2s;;;; time_max=3s;;;;"),
        "{out:?}"
    );
    assert_eq!(
        lines[1],
        "perfdata: 3 item(s) from n-evil refused: a label or unit with characters Nagios would misread"
    );
    answers(&nats, "n-evil");
    check(&nats, &["-I", "n-good", "check_app"]).assert_exit(0);
}
