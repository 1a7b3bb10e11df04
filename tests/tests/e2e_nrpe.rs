//! The nrpe agent, `mco nrpe` and `check_mco_nrpe` against real responders running real checks:
//! Debian's monitoring plugins (check_load, check_disk, check_file_age, check_procs) and small
//! scripted plugins returning every state, multi-line output and performance data.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mco_tests::replies::replies;
use mco_tests::{bin_path, mco, Cmd, NatsServer, Output, Responder, ResponderSpec};
use serde_json::json;
use tempfile::TempDir;

const PLUGINS: &str = "/usr/lib/nagios/plugins";

/// One node: its responder and the directory holding its check definitions and scripts.
struct Node {
    responder: Responder,
    dir: TempDir,
}

/// What a node's `check_app` script prints and exits with.
fn app_script(id: &str) -> &'static str {
    match id {
        "n-ok1" => "echo \"APP OK - fine|time=0.5s;1;2;0 'free space'=80%;20;10\"\nexit 0\n",
        "n-ok2" => "echo \"APP OK - fine|time=1.5s;1;2;0 'free space'=60%;20;10\"\nexit 0\n",
        "n-warn" => {
            "echo 'APP WARNING - slow|time=2.5s;1;2;0'\necho 'queue depth 12'\n\
             echo \"worker 3 busy|'free space'=40%;20;10\"\nexit 1\n"
        }
        "n-crit" => "echo 'APP CRITICAL - down'\necho 'connection refused'\nexit 2\n",
        "n-slow" => "exec sleep 60\n",
        _ => "echo 'APP confused'\nexit 7\n",
    }
}

/// Starts a node whose `conf_dir` defines a scripted check, real plugins, and a `touch` check
/// for the bad-input tests. Only `n-crit` lacks the file check_file_age looks at, and runs a
/// process check that wants a process nobody runs.
fn node(nats: &NatsServer, id: &str) -> Node {
    node_with_timeout(nats, id, "20s")
}

/// [`node`] with the agent's per-check `timeout`.
fn node_with_timeout(nats: &NatsServer, id: &str, timeout: &str) -> Node {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    std::fs::write(d.join("app.sh"), app_script(id)).unwrap();
    let size = match id {
        "n-ok1" => 10,
        "n-ok2" => 30,
        _ => 20,
    };
    if id != "n-crit" {
        std::fs::write(d.join("aged"), "x".repeat(size)).unwrap();
    }
    let procs = if id == "n-crit" {
        "-c 1:"
    } else {
        "-w :0 -c :0"
    };
    let cfg = format!(
        "# checks for {id}\n\
         command[check_app]=/bin/sh {d}/app.sh\n\
         command[check_load]={PLUGINS}/check_load -w 1000,1000,1000 -c 2000,2000,2000\n\
         command[check_disk]={PLUGINS}/check_disk -w 1 -c 1 -u MB -p /\n\
         command[check_age]={PLUGINS}/check_file_age -w $ARG1$ -c $ARG2$ -f {d}/aged\n\
         command[check_procs]={PLUGINS}/check_procs {procs} -C mco-nosuchproc\n\
         command[touch]=/usr/bin/touch $ARG1$\n",
        d = d.display()
    );
    // Two files: the later definition of check_load in b.cfg wins over a broken one.
    std::fs::write(
        d.join("a.cfg"),
        "command[check_load]=/nonexistent/check_load\n",
    )
    .unwrap();
    std::fs::write(d.join("b.cfg"), cfg).unwrap();
    // check_age and touch take arguments, which the agent refuses unless the node allows them.
    let mut spec = ResponderSpec::new(id).extra(&format!(
        "[plugin.nrpe]\nconf_dir = {:?}\ntimeout = {timeout:?}\nallow_arguments = true\n",
        d.display().to_string()
    ));
    // The demo's insecure mode, with no policy files: let every caller run checks.
    spec.security = Some("insecure = true\ndefault_policy = \"allow\"\n".into());
    Node {
        responder: Responder::start(nats, spec),
        dir,
    }
}

/// Runs `check_mco_nrpe` against the fleet; a wider discovery window than the default keeps a
/// node that is slow to answer discovery on a loaded machine in the count.
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

/// The output with the check time replaced by `T`, so the rest compares exactly.
fn without_checktime(s: &str) -> String {
    match s.find("checktime=") {
        Some(at) => {
            let end = s[at..].find([' ', '\n']).map_or(s.len(), |e| at + e);
            format!("{}checktime=T{}", &s[..at], &s[end..])
        }
        None => s.to_string(),
    }
}

/// The `label=value` items of line 1's performance data, as a map.
fn perf_items(stdout: &str) -> Vec<(String, String)> {
    let line1 = stdout.lines().next().unwrap_or_default();
    let (_, perf) = line1.split_once('|').expect("line 1 has performance data");
    perf.split(' ')
        .filter_map(|i| i.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn perf_value(items: &[(String, String)], label: &str) -> f64 {
    let v = &items
        .iter()
        .find(|(k, _)| k == label)
        .unwrap_or_else(|| panic!("no {label} in {items:?}"))
        .1;
    let num: String = v
        .split(';')
        .next()
        .unwrap()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == '-')
        .collect();
    num.parse().unwrap_or_else(|_| panic!("{label}={v}"))
}

const FLEET: &[&str] = &["n-crit", "n-odd", "n-ok1", "n-ok2", "n-warn"];

#[test]
fn aggregated_states_perfdata_and_exit_codes() {
    let nats = NatsServer::start();
    let _nodes: Vec<Node> = FLEET.iter().map(|id| node(&nats, id)).collect();

    // The scripted check: every state, multi-line output, perfdata with units and quoted labels.
    let out = check(&nats, &["check_app"]);
    out.assert_exit(2);
    assert_eq!(
        without_checktime(&out.stdout),
        "check_app: OK: 2 WARNING: 1 CRITICAL: 1 UNKNOWN: 1|total=5 ok=2 warning=1 critical=1 \
         unknown=1 checktime=T time_min=0.5s;;;; time_avg=1.5s;;;; time_max=2.5s;;;; \
         'free space_min'=40%;;;; 'free space_avg'=60%;;;; 'free space_max'=80%;;;;\n\
         CRITICAL: n-crit\n\
         WARNING: n-warn\n\
         UNKNOWN: n-odd\n\
         [CRITICAL] n-crit: APP CRITICAL - down\n    connection refused\n\
         [WARNING] n-warn: APP WARNING - slow\n    queue depth 12\n    worker 3 busy\n\
         [UNKNOWN] n-odd: UNKNOWN: the check exited with code 7: APP confused\n",
        "{out:?}"
    );

    // A filter narrows it: only the OK nodes, exit 0, and the WARNING node alone, exit 1.
    let out = check(&nats, &["-I", "/^n-ok/", "check_app"]);
    out.assert_exit(0);
    assert!(
        out.stdout
            .starts_with("check_app: OK: 2 WARNING: 0 CRITICAL: 0 UNKNOWN: 0|total=2 ok=2 "),
        "{out:?}"
    );
    assert_eq!(out.stdout.lines().count(), 1, "{out:?}");
    check(&nats, &["-I", "n-warn", "check_app"]).assert_exit(1);
    let out = check(&nats, &["-I", "n-odd", "check_app"]);
    out.assert_exit(3);
    assert!(out.stdout.contains("\nUNKNOWN: n-odd\n"), "{out:?}");

    // `mco nrpe`: non-OK nodes only, then the summary; -v shows every node.
    let out = mco(["nrpe", "check_app", "--nats", &nats.url()]);
    out.assert_exit(2);
    assert!(
        out.stdout.starts_with(&format!(
            "{:<40}CRITICAL  APP CRITICAL - down\n{}connection refused\n{:<40}UNKNOWN   UNKNOWN: the check exited with code 7: APP confused\n",
            "n-crit",
            " ".repeat(50),
            "n-odd"
        )),
        "{out:?}"
    );
    assert!(!out.stdout.contains("n-ok1"), "{out:?}");
    assert!(
        out.stdout.contains(
            "\ncheck_app: OK: 2 WARNING: 1 CRITICAL: 1 UNKNOWN: 1\nCRITICAL: n-crit\nWARNING: n-warn\nUNKNOWN: n-odd\n"
        ),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("Finished processing 5 / 5 hosts"),
        "{out:?}"
    );
    let out = mco(["nrpe", "check_app", "-v", "--nats", &nats.url()]);
    assert!(
        out.stdout
            .contains(&format!("{:<40}OK        APP OK - fine\n", "n-ok1")),
        "{out:?}"
    );
    assert!(
        out.stdout
            .contains("perfdata: time=1.5s;1;2;0 'free space'=60%;20;10\n"),
        "{out:?}"
    );
    mco(["nrpe", "check_app", "-I", "/^n-ok/", "--nats", &nats.url()]).assert_exit(0);

    // The DDL's nagios_states aggregate through `mco rpc`, outputs attached to failures.
    let out = mco([
        "rpc",
        "nrpe",
        "runcommand",
        "command=check_app",
        "--nats",
        &nats.url(),
    ]);
    out.assert_exit(2);
    assert!(
        out.stdout
            .contains("         OK = 2\n    WARNING = 1\n   CRITICAL = 1\n    UNKNOWN = 1\n"),
        "{out:?}"
    );
    let out = mco([
        "rpc",
        "nrpe",
        "runcommand",
        "command=check_app",
        "-j",
        "-I",
        "n-warn",
        "--nats",
        &nats.url(),
    ]);
    let r = &replies(&out)[0];
    assert_eq!(r["statuscode"], 1, "{out:?}");
    assert_eq!(r["statusmsg"], "WARNING: APP WARNING - slow", "{out:?}");
    assert_eq!(
        r["data"],
        json!({
            "exitcode": 1,
            "output": "APP WARNING - slow",
            "long_output": "queue depth 12\nworker 3 busy",
            "perfdata": "time=2.5s;1;2;0 'free space'=40%;20;10",
            "command": format!("/bin/sh {}/app.sh", _nodes[4].dir.path().display()),
        }),
        "{out:?}"
    );

    // Real plugins. check_load: OK everywhere, each load label aggregated in order.
    let out = check(&nats, &["check_load"]);
    out.assert_exit(0);
    assert!(
        out.stdout
            .starts_with("check_load: OK: 5 WARNING: 0 CRITICAL: 0 UNKNOWN: 0|total=5 ok=5 "),
        "{out:?}"
    );
    let items = perf_items(&out.stdout);
    let labels: Vec<&str> = items.iter().map(|(k, _)| k.as_str()).skip(6).collect();
    assert_eq!(
        labels,
        [
            "load1_min",
            "load1_avg",
            "load1_max",
            "load5_min",
            "load5_avg",
            "load5_max",
            "load15_min",
            "load15_avg",
            "load15_max"
        ],
        "{out:?}"
    );
    for l in ["load1", "load5", "load15"] {
        let (min, avg, max) = (
            perf_value(&items, &format!("{l}_min")),
            perf_value(&items, &format!("{l}_avg")),
            perf_value(&items, &format!("{l}_max")),
        );
        assert!(min <= avg && avg <= max, "{l}: {min} {avg} {max}");
    }

    // check_disk: OK, its byte perfdata for / keeps the unit.
    let out = check(&nats, &["check_disk"]);
    out.assert_exit(0);
    let items = perf_items(&out.stdout);
    let root_min = &items.iter().find(|(k, _)| k == "/_min").expect("/_min").1;
    assert!(root_min.ends_with("B;;;;"), "{out:?}");

    // check_file_age with arguments: sizes aggregate exactly; n-crit has no file.
    let out = check(&nats, &["check_age", "3600", "7200"]);
    out.assert_exit(2);
    assert!(
        out.stdout
            .starts_with("check_age: OK: 4 WARNING: 0 CRITICAL: 1 UNKNOWN: 0|"),
        "{out:?}"
    );
    assert!(
        out.stdout
            .contains(" size_min=10B;;;; size_avg=20B;;;; size_max=30B;;;;\n"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains(
            "\nCRITICAL: n-crit\n[CRITICAL] n-crit: FILE_AGE CRITICAL: File not found - "
        ),
        "{out:?}"
    );
    // NRPE's own CHECK!ARG1!ARG2 form; a threshold of 0 seconds makes every found file CRITICAL.
    let out = check(&nats, &["check_age!0!0"]);
    out.assert_exit(2);
    assert!(
        out.stdout
            .starts_with("check_age: OK: 0 WARNING: 0 CRITICAL: 5 UNKNOWN: 0|"),
        "{out:?}"
    );

    // check_procs: nobody runs the process; n-crit requires one.
    let out = check(&nats, &["check_procs"]);
    out.assert_exit(2);
    assert!(
        out.stdout
            .starts_with("check_procs: OK: 4 WARNING: 0 CRITICAL: 1 UNKNOWN: 0|"),
        "{out:?}"
    );
    assert!(
        out.stdout
            .contains(" procs_min=0;;;; procs_avg=0;;;; procs_max=0;;;;\n"),
        "{out:?}"
    );

    // More nodes expected than exist: the missing ones are UNKNOWN, or CRITICAL if asked.
    let out = check(&nats, &["-I", "/^n-ok/", "--expect", "4", "check_app"]);
    out.assert_exit(3);
    assert!(
        out.stdout.starts_with("check_app: OK: 2 WARNING: 0 CRITICAL: 0 UNKNOWN: 2|total=4 ok=2 warning=0 critical=0 unknown=2 "),
        "{out:?}"
    );
    assert!(
        out.stdout
            .contains("\nUNKNOWN: (+2 expected, not discovered)\n"),
        "{out:?}"
    );
    let out = check(
        &nats,
        &[
            "-I",
            "/^n-ok/",
            "--expect",
            "3",
            "--unknown-as",
            "critical",
            "check_app",
        ],
    );
    out.assert_exit(2);
    assert!(
        out.stdout
            .contains("\nCRITICAL: (+1 expected, not discovered)\n"),
        "{out:?}"
    );

    // A check no node defines: UNKNOWN everywhere, saying so.
    let out = check(&nats, &["-I", "n-ok1", "check_nothing"]);
    out.assert_exit(3);
    assert!(
        out.stdout.contains(
            "\n[UNKNOWN] n-ok1: UNKNOWN: no command 'check_nothing' is defined on this node\n"
        ),
        "{out:?}"
    );

    // `list` shows every definition; the later check_load won over a.cfg's.
    let out = mco([
        "rpc",
        "nrpe",
        "list",
        "-j",
        "-I",
        "n-ok1",
        "--nats",
        &nats.url(),
    ]);
    assert_eq!(
        replies(&out)[0]["data"]["commands"],
        json!([
            "check_age",
            "check_app",
            "check_disk",
            "check_load",
            "check_procs",
            "touch"
        ]),
        "{out:?}"
    );
}

/// A client config whose nrpe DDL does not check `args`, so unsafe input reaches the nodes.
fn permissive_client(dir: &Path) -> PathBuf {
    let ddl_dir = dir.join("ddl");
    std::fs::create_dir_all(&ddl_dir).unwrap();
    let stock =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../ddl/nrpe.json"))
            .unwrap();
    let mut ddl: serde_json::Value = serde_json::from_str(&stock).unwrap();
    let args = &mut ddl["actions"][0]["input"]["args"];
    args.as_object_mut().unwrap().remove("validation");
    std::fs::write(ddl_dir.join("nrpe.json"), ddl.to_string()).unwrap();
    let cfg = dir.join("client.toml");
    std::fs::write(
        &cfg,
        format!(
            "[security]\ninsecure = true\nddl_dirs = [{:?}]\n",
            ddl_dir.display().to_string()
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn unsafe_arguments_are_refused_and_nothing_runs() {
    let nats = NatsServer::start();
    let n = node(&nats, "n-ok1");
    let work = tempfile::tempdir().unwrap();
    let cfg = permissive_client(work.path());
    let made = work.path().join("made");
    let evil = work.path().join("evil");
    let rpc = |args: &str| -> Output {
        mco([
            "rpc",
            "nrpe",
            "runcommand",
            "command=touch",
            &format!("args={args}"),
            "-j",
            "--config",
            cfg.to_str().unwrap(),
            "--nats",
            &nats.url(),
        ])
    };
    // The positive control: a safe argument runs.
    let out = rpc(made.to_str().unwrap());
    assert_eq!(replies(&out)[0]["statuscode"], 0, "{out:?}");
    assert!(made.exists(), "{out:?}");
    // Refused by the node's DDL check (shellsafe) or by the agent's stricter one: status 4.
    for bad in [
        format!("{};touch {}", made.display(), evil.display()),
        format!("$(touch {})", evil.display()),
        format!("`touch {}`", evil.display()),
        format!("{} {}*", made.display(), evil.display()),
        format!("'{}'", evil.display()),
        format!("{}\\", evil.display()),
        format!("{} {}", made.display(), "~"),
    ] {
        let out = rpc(&bad);
        let r = &replies(&out)[0];
        assert_eq!(r["statuscode"], 4, "{bad}: {out:?}");
        assert!(!evil.exists(), "{bad} ran: {out:?}");
    }
    let out = rpc(&format!("{}'x", evil.display()));
    let msg = replies(&out)[0]["statusmsg"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        msg.contains("not shell-safe") && msg.contains('\''),
        "{out:?}"
    );
    assert!(!evil.exists());

    // The stock client refuses before sending; the plugin says UNKNOWN, exit 3.
    let out = check(&nats, &["touch", &format!("x;touch {}", evil.display())]);
    out.assert_exit(3);
    assert!(
        out.stdout
            .starts_with("touch: UNKNOWN: Invalid Request Data: "),
        "{out:?}"
    );
    let out = mco([
        "nrpe",
        "touch",
        &format!("x;touch {}", evil.display()),
        "--nats",
        &nats.url(),
    ]);
    out.assert_exit(64);
    let out = check(&nats, &["bad;name"]);
    out.assert_exit(3);
    assert!(!evil.exists());
    drop(n);
}

#[test]
fn silent_nodes_and_broken_runs_are_unknown() {
    let nats = NatsServer::start();
    let ok = node(&nats, "n-ok1");
    let mut gone = node(&nats, "n-ok2");
    // A node whose check outlasts the plugin's -t: the plugin's own time limit ends the run
    // and counts it as silent (its agent would only give up on the check after 8s).
    let mut slow = node_with_timeout(&nats, "n-slow", "8s");
    let list = ok.dir.path().join("nodes.txt");
    std::fs::write(&list, "n-ok1\nn-ok2\nn-slow\n").unwrap();
    gone.responder.child.kill();

    let out = Cmd::new(bin_path("check_mco_nrpe"))
        .args([
            "--nats",
            &nats.url(),
            "-t",
            "3s",
            "--nodes",
            list.to_str().unwrap(),
            "check_app",
        ])
        .run();
    out.assert_exit(3);
    assert!(
        out.stdout.starts_with("check_app: OK: 1 WARNING: 0 CRITICAL: 0 UNKNOWN: 2|total=3 ok=1 warning=0 critical=0 unknown=2 "),
        "{out:?}"
    );
    assert!(
        out.stdout
            .contains("\nUNKNOWN: n-ok2 n-slow\n[UNKNOWN] n-ok2: no response within "),
        "{out:?}"
    );
    assert!(
        out.stdout
            .contains("\n[UNKNOWN] n-slow: no response within "),
        "{out:?}"
    );
    // Only the answering node's perfdata is aggregated.
    assert!(
        out.stdout
            .contains(" time_min=0.5s;;;; time_avg=0.5s;;;; time_max=0.5s;;;;"),
        "{out:?}"
    );
    // A graceful stop lets the slow check end by the agent's timeout, which kills it.
    slow.responder.child.signal(libc::SIGTERM);
    slow.responder.child.wait_exit(Duration::from_secs(30));
    std::fs::write(&list, "n-ok1\nn-ok2\n").unwrap();
    let out = Cmd::new(bin_path("check_mco_nrpe"))
        .args([
            "--nats",
            &nats.url(),
            "-t",
            "3s",
            "--nodes",
            list.to_str().unwrap(),
            "--unknown-as",
            "critical",
            "check_app",
        ])
        .run();
    out.assert_exit(2);
    assert!(out.stdout.contains("\nCRITICAL: n-ok2\n"), "{out:?}");
    let out = mco([
        "nrpe",
        "check_app",
        "-t",
        "2s",
        "--nodes",
        list.to_str().unwrap(),
        "--nats",
        &nats.url(),
    ]);
    out.assert_exit(3);
    assert!(out.stdout.contains("No response from:"), "{out:?}");

    // Nothing discovered: UNKNOWN, saying why.
    let out = check(&nats, &["-I", "/^nobody/", "check_app"]);
    out.assert_exit(3);
    assert_eq!(
        out.stdout,
        "check_app: UNKNOWN: no nodes with the nrpe agent matched the filter in collective mcollective\n",
        "{out:?}"
    );
    mco([
        "nrpe",
        "check_app",
        "-I",
        "/^nobody/",
        "--nats",
        &nats.url(),
    ])
    .assert_exit(3);

    // No broker: UNKNOWN, exit 3.
    let out = Cmd::new(bin_path("check_mco_nrpe"))
        .args(["--nats", "nats://127.0.0.1:1", "-t", "3s", "check_app"])
        .run();
    out.assert_exit(3);
    assert!(
        out.stdout
            .starts_with("check_app: UNKNOWN: cannot connect to the broker"),
        "{out:?}"
    );

    // Usage errors: UNKNOWN, exit 3, never clap's 2 or mco's 64.
    for args in [
        &[][..],
        &["--bogus", "check_app"][..],
        &["--expect", "x", "check_app"][..],
        &["-t", "soon", "check_app"][..],
    ] {
        let out = Cmd::new(bin_path("check_mco_nrpe")).args(args).run();
        out.assert_exit(3);
        assert!(out.stdout.contains(": UNKNOWN: usage error"), "{out:?}");
    }
    let out = Cmd::new(bin_path("check_mco_nrpe")).arg("--help").run();
    out.assert_exit(0);
    assert!(out.stdout.contains("--unknown-as"), "{out:?}");
}

#[test]
fn bad_plugin_settings_stop_the_responder_naming_each_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("responder.toml");
    std::fs::write(
        &cfg,
        "identity = \"n1\"\n[nats]\nservers = [\"nats://127.0.0.1:1\"]\n[security]\ninsecure = true\n\
         [plugin.nrpe]\nconf_dir = 3\ntimeout = \"soon\"\ncolour = \"red\"\n",
    )
    .unwrap();
    let out = Cmd::new(bin_path("mco-responder"))
        .args(["--config", cfg.to_str().unwrap()])
        .run();
    out.assert_exit(64);
    for part in [
        "mco-responder: bad configuration:\n",
        "plugin.nrpe.colour: unknown key",
        "plugin.nrpe.conf_dir: expected a string, found integer",
        "plugin.nrpe.timeout: ",
    ] {
        assert!(out.stderr.contains(part), "missing {part:?}: {out:?}");
    }
    assert!(out.stderr.contains(&cfg.display().to_string()), "{out:?}");
}
