//! The agent end to end within the process: definitions on disk, real
//! processes, replies per the DDL.

use super::*;
use mco_core::agent::{AgentSummary, NodeInfo};
use std::path::Path;

struct Node;

impl NodeInfo for Node {
    fn identity(&self) -> &str {
        "n1"
    }
    fn collectives(&self) -> &[String] {
        &[]
    }
    fn facts(&self) -> Arc<mco_core::facts::FactMap> {
        Arc::new(Map::new())
    }
    fn classes(&self) -> Arc<Vec<String>> {
        Arc::new(Vec::new())
    }
    fn agents(&self) -> Vec<AgentSummary> {
        Vec::new()
    }
    fn stats(&self) -> Map<String, Value> {
        Map::new()
    }
    fn uptime(&self) -> Duration {
        Duration::ZERO
    }
}

fn ctx() -> RequestContext {
    RequestContext {
        request_id: "r".into(),
        caller: "user:t".into(),
        sender: "t".into(),
        collective: "mcollective".into(),
        node: Arc::new(Node),
    }
}

/// Arguments allowed, without a leading dash.
const ARGS_ON: ArgPolicy = ArgPolicy {
    allow: true,
    allow_dash: false,
};

fn agent(dir: &Path, cfg: &str) -> Nrpe {
    agent_with(dir, cfg, ARGS_ON)
}

fn agent_with(dir: &Path, cfg: &str, args: ArgPolicy) -> Nrpe {
    std::fs::write(dir.join("checks.cfg"), cfg).unwrap();
    Nrpe::new(NrpeConfig {
        conf_dir: Some(dir.to_path_buf()),
        conf_files: vec![],
        timeout: Duration::from_secs(1),
        args,
    })
}

async fn call(a: &Nrpe, action: &str, input: Value) -> ActionResult {
    let input = input.as_object().cloned().unwrap_or_default();
    let r = a.call(action, &input, &ctx()).await;
    let outputs = match &r {
        Ok(o) => o,
        Err(e) => &e.data,
    };
    if let Some(act) = a.ddl().action(action) {
        for key in outputs.keys() {
            assert!(
                act.output.contains_key(key),
                "{action}: undeclared output {key}"
            );
        }
    }
    r
}

#[tokio::test]
async fn states_outputs_and_messages() {
    let dir = tempfile::tempdir().unwrap();
    let a = agent(
        dir.path(),
        "command[ok]=/bin/echo 'OK - fine|x=1s;2;3'\n\
         command[warn]=/bin/sh -c 'echo \"WARNING - hot|t=80%\"; echo line2; exit 1'\n\
         command[crit]=/bin/sh -c 'echo CRITICAL - down; exit 2'\n\
         command[odd]=/bin/sh -c 'echo weird; exit 42'\n\
         command[args]=/bin/echo OK $ARG1$ and $ARG2$\n\
         command[missing]=/nonexistent/check_nothing\n\
         command[slow]=/bin/sleep 30\n",
    );
    let ok = call(&a, "runcommand", json!({"command": "ok"}))
        .await
        .unwrap();
    assert_eq!(ok["exitcode"], 0);
    assert_eq!(ok["output"], "OK - fine");
    assert_eq!(ok["perfdata"], "x=1s;2;3");
    assert_eq!(ok["command"], "/bin/echo 'OK - fine|x=1s;2;3'");

    let w = call(&a, "runcommand", json!({"command": "warn"}))
        .await
        .unwrap_err();
    assert_eq!(w.status, Status::Aborted);
    assert_eq!(w.message, "WARNING - hot");
    assert_eq!(w.data["exitcode"], 1);
    assert_eq!(w.data["long_output"], "line2");
    assert_eq!(w.data["perfdata"], "t=80%");

    let c = call(&a, "runcommand", json!({"command": "crit"}))
        .await
        .unwrap_err();
    assert_eq!(
        (c.message.as_str(), &c.data["exitcode"]),
        ("CRITICAL - down", &json!(2))
    );

    let o = call(&a, "runcommand", json!({"command": "odd"}))
        .await
        .unwrap_err();
    assert_eq!(o.data["exitcode"], 3);
    assert_eq!(o.message, "UNKNOWN: the check exited with code 42: weird");

    let g = call(&a, "runcommand", json!({"command": "args", "args": "5!x"}))
        .await
        .unwrap();
    assert_eq!(g["output"], "OK 5 and x");
    assert_eq!(g["command"], "/bin/echo OK 5 and x");

    let m = call(&a, "runcommand", json!({"command": "missing"}))
        .await
        .unwrap_err();
    assert_eq!(m.data["exitcode"], 3);
    assert!(
        m.message.contains("could not be run") && m.message.contains("/nonexistent/check_nothing"),
        "{}",
        m.message
    );

    let s = call(&a, "runcommand", json!({"command": "slow"}))
        .await
        .unwrap_err();
    assert_eq!(s.data["exitcode"], 3);
    assert!(s.message.contains("timed out after 1s"), "{}", s.message);

    let u = call(&a, "runcommand", json!({"command": "nope"}))
        .await
        .unwrap_err();
    assert_eq!(
        (u.status, &u.data["exitcode"]),
        (Status::Aborted, &json!(3))
    );
    assert_eq!(
        u.message,
        "UNKNOWN: no command 'nope' is defined on this node"
    );
}

#[tokio::test]
async fn unsafe_input_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let a = agent(
        dir.path(),
        &format!(
            "command[touch]=/usr/bin/touch {} $ARG1$\n",
            marker.display()
        ),
    );
    let e = call(
        &a,
        "runcommand",
        json!({"command": "touch", "args": "x;id"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.status, Status::InvalidData);
    assert!(e.message.contains("not shell-safe"), "{}", e.message);
    for (args, why) in [
        ("x y", "whitespace"),
        ("-o", "allow_dash_arguments"),
        ("a!b!c!d!e!f!g!h!i!j!k!l!m!n!o!p!q", "at most 16"),
    ] {
        let e = call(&a, "runcommand", json!({"command": "touch", "args": args}))
            .await
            .unwrap_err();
        assert_eq!(e.status, Status::InvalidData, "{args}");
        assert!(e.message.contains(why), "{args}: {}", e.message);
    }
    let e = call(&a, "runcommand", json!({"command": "../x"}))
        .await
        .unwrap_err();
    assert_eq!(e.status, Status::InvalidData);
    assert!(!marker.exists());
}

#[tokio::test]
async fn list_and_runallcommands() {
    let dir = tempfile::tempdir().unwrap();
    let a = agent(
        dir.path(),
        "command[b]=/bin/sh -c 'echo \"B|b=2\"; exit 2'\ncommand[a]=/bin/echo 'A|a=1'\n",
    );
    let l = call(&a, "list", json!({})).await.unwrap();
    assert_eq!(l["commands"], json!(["a", "b"]));
    let all = call(&a, "runallcommands", json!({})).await.unwrap();
    assert_eq!(
        all["commands"],
        json!({
            "a": {"exitcode": 0, "output": "A", "perfdata": "a=1"},
            "b": {"exitcode": 2, "output": "B", "perfdata": "b=2"},
        })
    );
    let e = call(&a, "bogus", json!({})).await.unwrap_err();
    assert_eq!(e.status, Status::UnknownAction);
}

/// The review's attack, against the agent: with arguments off (the default) any argument is
/// refused; with them on, an argument with spaces and dashes is refused and nothing runs; an
/// argument that passes reaches the check as exactly one word, read back from what the check
/// itself received.
#[tokio::test]
async fn an_argument_cannot_add_options_to_a_check() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("argv");
    let script = dir.path().join("argv.sh");
    std::fs::write(
        &script,
        format!(
            "for a in \"$@\"; do printf '<%s>' \"$a\" >> {}; done\necho OK\n",
            log.display()
        ),
    )
    .unwrap();
    let cfg = format!(
        "command[ssh]=/bin/sh {} -H $ARG1$ -p 22\n\
         command[shelled]=/bin/sh {} -H $ARG1$ \"x$ARG2$\" '$ARG1$' | cat\n",
        script.display(),
        script.display()
    );
    let attack = "localhost -o ProxyCommand=/home/mallory/x --config=/tmp/y";

    let off = agent_with(dir.path(), &cfg, ArgPolicy::default());
    let e = call(
        &off,
        "runcommand",
        json!({"command": "ssh", "args": "localhost"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.status, Status::InvalidData);
    assert!(e.message.contains("allow_arguments"), "{}", e.message);
    assert!(!log.exists(), "a refused request ran the check");

    for policy in [
        ARGS_ON,
        ArgPolicy {
            allow: true,
            allow_dash: true,
        },
    ] {
        let a = agent_with(dir.path(), &cfg, policy);
        for name in ["ssh", "shelled"] {
            let e = call(&a, "runcommand", json!({"command": name, "args": attack}))
                .await
                .unwrap_err();
            assert_eq!(e.status, Status::InvalidData, "{name}");
            assert!(e.message.contains("whitespace"), "{}", e.message);
            assert!(!log.exists(), "{name}: a refused request ran the check");
        }
    }

    let a = agent(dir.path(), &cfg);
    call(&a, "runcommand", json!({"command": "ssh", "args": ""}))
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "<-H><><-p><22>");
    std::fs::remove_file(&log).unwrap();
    let r = call(
        &a,
        "runcommand",
        json!({"command": "shelled", "args": "db:5432,x=y%@+!"}),
    )
    .await
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "<-H><db:5432,x=y%@+><x><db:5432,x=y%@+>"
    );
    assert!(
        r["command"]
            .as_str()
            .unwrap()
            .ends_with(" nrpe db:5432,x=y%@+ ''"),
        "{}",
        r["command"]
    );
}
