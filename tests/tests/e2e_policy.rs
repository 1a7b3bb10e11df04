//! Authorization and audit against a real secure collective (ARCHITECTURE.md §7): actionpolicy files in the
//! responders' `policy_dir`, edited while they run, decide who may run which rpcutil action where;
//! `default_policy` covers agents and actions no file speaks for; every handled request leaves a
//! JSON audit line, with DDL-marked sensitive inputs redacted, and the log follows a rotation on
//! SIGHUP.
//!
//! The nodes: web-01 (role=web, country=fr, classes nginx base), web-02 (role=web, country=de,
//! classes apache base) and db-01 (role=db, country=fr, classes postgresql base). db-01 alone has
//! `default_policy = "allow"` and an operator's rpcutil DDL marking `get_fact`'s `fact` sensitive.
//! The users: alice, bob and carol.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mco_tests::replies::replies;
use mco_tests::{eventually, ResponderSpec, SecureCollective};
use serde_json::{json, Value};

const NODES: [&str; 3] = ["web-01", "web-02", "db-01"];

const SECRET: &str = "s3cr3t-value";

const STEP: Duration = Duration::from_secs(20);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the repository")
        .to_path_buf()
}

fn stock_rpcutil_ddl() -> Value {
    let text = fs::read_to_string(repo_root().join("ddl/rpcutil.json")).unwrap();
    serde_json::from_str(&text).expect("ddl/rpcutil.json is JSON")
}

/// Writes `ddl` as `DIR/rpcutil.json` and returns DIR.
fn ddl_dir(dir: &Path, ddl: &Value) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    fs::write(
        dir.join("rpcutil.json"),
        serde_json::to_vec_pretty(ddl).unwrap(),
    )
    .unwrap();
    dir.to_path_buf()
}

/// The operator's DDL on db-01: stock, with `get_fact`'s `fact` input sensitive.
fn sensitive_ddl() -> Value {
    let mut ddl = stock_rpcutil_ddl();
    let actions = ddl["actions"].as_array_mut().unwrap();
    let get_fact = actions
        .iter_mut()
        .find(|a| a["action"] == "get_fact")
        .expect("the stock DDL has get_fact");
    get_fact["input"]["fact"]["sensitive"] = json!(true);
    ddl
}

/// The client's DDL for operators: stock, plus `reboot`, an action no node implements, so that
/// only the authorization step tells the nodes apart (not authorized, or unknown action).
fn ops_ddl() -> Value {
    let mut ddl = stock_rpcutil_ddl();
    ddl["actions"].as_array_mut().unwrap().push(json!({
        "action": "reboot",
        "description": "Reboot the node",
        "display": "always",
        "input": {},
        "output": {}
    }));
    ddl
}

/// Replaces `DIR/NAME` in one step, as an operator's deployment tool would.
fn install(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, dir.join(name)).unwrap();
}

fn set_policy(col: &SecureCollective, text: &str) {
    install(col.policy_dir(), "rpcutil.policy", text);
}

fn remove_policy(col: &SecureCollective) {
    fs::remove_file(col.policy_dir().join("rpcutil.policy")).unwrap();
}

/// `mco rpc rpcutil ACTION INPUTS -j` as `user` (with the config `config` if given) to every
/// node directly; each node's status code and message.
#[track_caller]
fn call(
    col: &SecureCollective,
    user: &str,
    config: Option<&Path>,
    action: &str,
    inputs: &[&str],
) -> BTreeMap<String, (u64, String, Value)> {
    let mut cmd = match config {
        Some(path) => mco_tests::Cmd::mco().arg("--config").arg(path),
        None => col.mco(user),
    };
    cmd = cmd
        .args(["rpc", "rpcutil", action])
        .args(inputs)
        .args(["-j", "-t", "10s"]);
    for node in NODES {
        cmd = cmd.args(["-I", node]);
    }
    let out = cmd.run();
    let got: BTreeMap<_, _> = replies(&out)
        .into_iter()
        .map(|r| {
            (
                r["sender"].as_str().unwrap().to_string(),
                (
                    r["statuscode"].as_u64().unwrap(),
                    r["statusmsg"].as_str().unwrap().to_string(),
                    r["data"].clone(),
                ),
            )
        })
        .collect();
    assert_eq!(got.len(), NODES.len(), "every node answers\n{out:?}");
    got
}

/// Checks each node's status code for `user` running `action`: `want` in [`NODES`] order. A
/// status 1 must say `not authorized`.
#[track_caller]
fn expect(col: &SecureCollective, case: &str, user: &str, action: &str, want: [u64; 3]) {
    expect_with(col, case, user, None, action, want);
}

#[track_caller]
fn expect_with(
    col: &SecureCollective,
    case: &str,
    user: &str,
    config: Option<&Path>,
    action: &str,
    want: [u64; 3],
) {
    let inputs: &[&str] = if action == "get_fact" {
        &["fact=role"]
    } else {
        &[]
    };
    let got = call(col, user, config, action, inputs);
    let codes: Vec<u64> = NODES.iter().map(|n| got[*n].0).collect();
    assert_eq!(codes, want, "{case}: {user} {action} on {NODES:?}\n{got:?}");
    for (node, (code, msg, _)) in &got {
        if *code == 1 {
            assert_eq!(msg, "not authorized", "{case}: {node}");
        } else {
            assert_ne!(msg, "not authorized", "{case}: {node}");
        }
    }
}

fn audit_lines(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l:?}: {e}")))
        .collect()
}

/// Checks the fields every audit line has.
#[track_caller]
fn check_audit_line(line: &Value) {
    for key in [
        "time",
        "request_id",
        "caller",
        "sender",
        "agent",
        "action",
        "node",
    ] {
        assert!(
            line[key].as_str().is_some_and(|s| !s.is_empty()),
            "{key} in {line}"
        );
    }
    for key in ["status", "elapsed_us"] {
        assert!(line[key].is_u64(), "{key} in {line}");
    }
    assert!(line["input"].is_object(), "input in {line}");
    assert!(line["statusmsg"].is_string(), "statusmsg in {line}");
}

/// Whether some audit line of `node` has the given caller, action and status.
fn audited(col: &SecureCollective, node: &str, caller: &str, action: &str, status: u64) -> bool {
    audit_lines(&col.audit_log(node))
        .iter()
        .any(|l| l["caller"] == caller && l["action"] == action && l["status"] == status)
}

#[test]
fn policies_decide_and_the_audit_log_records() {
    let ddls = tempfile::tempdir().unwrap();
    let sensitive = ddl_dir(&ddls.path().join("node"), &sensitive_ddl());
    let facts = |role: &str, country: &str| json!({ "role": role, "country": country, "secret_token": SECRET });
    let mut col = SecureCollective::builder()
        .user("bob")
        .user("carol")
        .node(
            ResponderSpec::new("web-01")
                .facts(facts("web", "fr"))
                .classes(&["nginx", "base"]),
        )
        .node(
            ResponderSpec::new("web-02")
                .facts(facts("web", "de"))
                .classes(&["apache", "base"]),
        )
        .node_with_default_policy(
            ResponderSpec::new("db-01")
                .facts(facts("db", "fr"))
                .classes(&["postgresql", "base"])
                .extra(&format!(
                    "[agents]\nddl_dirs = [{:?}]\n",
                    sensitive.to_str().unwrap()
                )),
            "allow",
        )
        .start();
    let ops_ddls = ddl_dir(&ddls.path().join("client"), &ops_ddl());
    let ops = col.client_config_with(
        "alice",
        "ops.toml",
        &format!("ddl_dirs = [{:?}]", ops_ddls.to_str().unwrap()),
    );

    // No rpcutil.policy: rpcutil's read-only actions are open to every authenticated caller; any
    // other action gets each node's default_policy.
    expect(&col, "no policy file", "alice", "ping", [0, 0, 0]);
    expect(&col, "no policy file", "bob", "inventory", [0, 0, 0]);
    expect_with(
        &col,
        "no policy file, an action that changes things",
        "alice",
        Some(&ops),
        "reboot",
        [1, 1, 2],
    );

    // Redaction: the same get_fact, audited in full on web-01 and redacted on db-01, whose DDL
    // marks the input sensitive.
    let got = call(&col, "alice", None, "get_fact", &["fact=secret_token"]);
    for node in NODES {
        assert_eq!(got[node].0, 0, "{node}: {got:?}");
        assert_eq!(got[node].2["value"], SECRET, "{node}: {got:?}");
    }
    eventually(STEP, "get_fact audit lines", || {
        ["web-01", "db-01"]
            .iter()
            .all(|n| audited(&col, n, "user:alice", "get_fact", 0))
    });
    let line_of = |node: &str| {
        fs::read_to_string(col.audit_log(node))
            .unwrap()
            .lines()
            .find(|l| l.contains("\"get_fact\""))
            .expect("a get_fact line")
            .to_string()
    };
    let plain: Value = serde_json::from_str(&line_of("web-01")).unwrap();
    assert_eq!(plain["input"], json!({ "fact": "secret_token" }), "{plain}");
    let redacted_text = line_of("db-01");
    let redacted: Value = serde_json::from_str(&redacted_text).unwrap();
    assert_eq!(
        redacted["input"],
        json!({ "fact": "[REDACTED]" }),
        "{redacted}"
    );
    assert!(!redacted_text.contains("secret_token"), "{redacted_text}");
    assert!(!redacted_text.contains(SECRET), "{redacted_text}");

    // Allow and deny by caller and action; default deny closes even read-only actions.
    set_policy(
        &col,
        "policy default deny\nallow\tuser:alice\tping get_fact\t*\n",
    );
    expect(&col, "alice allowed", "alice", "ping", [0, 0, 0]);
    expect(&col, "alice allowed", "alice", "get_fact", [0, 0, 0]);
    expect(&col, "bob not listed", "bob", "ping", [1, 1, 1]);
    expect(&col, "action not listed", "alice", "inventory", [1, 1, 1]);

    set_policy(
        &col,
        "# what no rule denies is allowed\npolicy default allow\ndeny\tuser:bob\tping\t*\n",
    );
    expect(&col, "bob denied ping", "bob", "ping", [1, 1, 1]);
    expect(&col, "default allow", "bob", "inventory", [0, 0, 0]);
    expect(&col, "default allow", "alice", "ping", [0, 0, 0]);

    // Groups of callers.
    install(col.policy_dir(), "groups", "ops\tuser:alice user:carol\n");
    set_policy(&col, "policy default deny\nallow\tops\tping\t*\n");
    expect(&col, "alice in ops", "alice", "ping", [0, 0, 0]);
    expect(&col, "carol in ops", "carol", "ping", [0, 0, 0]);
    expect(&col, "bob not in ops", "bob", "ping", [1, 1, 1]);

    // Facts: one term, several terms (all must hold), a compound expression.
    set_policy(
        &col,
        "policy default deny\n\
         allow\tuser:bob\tping\trole=web\n\
         allow\tuser:bob\tinventory\trole=web country=de\n\
         allow\tuser:bob\tget_fact\t(role=web and country=fr) or role=db\n",
    );
    expect(&col, "role=web", "bob", "ping", [0, 0, 1]);
    expect(&col, "role=web country=de", "bob", "inventory", [1, 0, 1]);
    expect(&col, "compound facts", "bob", "get_fact", [0, 1, 0]);
    expect(&col, "no rule for alice", "alice", "ping", [1, 1, 1]);

    // Classes: one class, and facts with a compound class expression.
    set_policy(
        &col,
        "policy default deny\n\
         allow\tuser:bob\tping\t*\tnginx\n\
         allow\tuser:bob\tinventory\tcountry=fr\tpostgresql or apache\n",
    );
    expect(&col, "class nginx", "bob", "ping", [0, 1, 1]);
    expect(
        &col,
        "facts and compound classes",
        "bob",
        "inventory",
        [1, 1, 0],
    );

    // The first rule that matches decides.
    set_policy(
        &col,
        "policy default deny\ndeny\tuser:bob\tping\trole=db\nallow\tuser:bob\tping\t*\n",
    );
    expect(&col, "deny first", "bob", "ping", [0, 0, 1]);
    set_policy(
        &col,
        "policy default deny\nallow\tuser:bob\tping\t*\ndeny\tuser:bob\tping\trole=db\n",
    );
    expect(&col, "allow first", "bob", "ping", [0, 0, 0]);

    // A policy file that does not parse denies every action of its agent, and says where.
    let warned = |col: &SecureCollective| {
        col.responder("web-01")
            .child
            .stderr_text()
            .matches("rpcutil.policy:2:")
            .count()
    };
    let before = warned(&col);
    set_policy(&col, "policy default allow\nallow\tuser:alice\n");
    expect(&col, "malformed policy", "alice", "ping", [1, 1, 1]);
    expect(&col, "malformed policy", "bob", "inventory", [1, 1, 1]);
    eventually(STEP, "a log line naming the bad policy line", || {
        warned(&col) > before
    });

    // The file gone, the defaults are back.
    remove_policy(&col);
    expect(&col, "policy removed", "bob", "ping", [0, 0, 0]);
    expect_with(
        &col,
        "policy removed",
        "alice",
        Some(&ops),
        "reboot",
        [1, 1, 2],
    );

    // Audit: allowed and denied requests alike, every line complete.
    eventually(STEP, "audit lines for allowed and denied requests", || {
        audited(&col, "web-01", "user:bob", "ping", 1)
            && audited(&col, "web-01", "user:alice", "ping", 0)
            && audited(&col, "web-01", "user:alice", "reboot", 1)
            && audited(&col, "db-01", "user:alice", "reboot", 2)
    });
    for node in NODES {
        let lines = audit_lines(&col.audit_log(node));
        assert!(!lines.is_empty(), "{node} audited nothing");
        for line in &lines {
            check_audit_line(line);
            assert_eq!(line["node"], node, "{line}");
            assert_eq!(line["agent"], "rpcutil", "{line}");
        }
        let denied: Vec<&Value> = lines
            .iter()
            .filter(|l| l["statusmsg"] == "not authorized")
            .collect();
        assert!(!denied.is_empty(), "{node}: no denied request audited");
        assert!(denied.iter().all(|l| l["status"] == 1));
    }

    // Rotation: after a rename and SIGHUP, new lines go to a new file at the configured path.
    let log = col.audit_log("web-01");
    let rotated = log.with_extension("jsonl.1");
    fs::rename(&log, &rotated).unwrap();
    let rotated_lines = audit_lines(&rotated).len();
    assert!(col.responder_mut("web-01").child.signal(libc::SIGHUP));
    eventually(STEP, "an audit line in the reopened file", || {
        let out = col
            .mco("carol")
            .args(["rpc", "rpcutil", "ping", "-j", "-t", "10s", "-I", "web-01"])
            .run();
        out.assert_success();
        audit_lines(&log)
            .iter()
            .any(|l| l["caller"] == "user:carol" && l["action"] == "ping")
    });
    for line in audit_lines(&log) {
        check_audit_line(&line);
    }
    assert!(
        col.responder_mut("web-01").child.is_running(),
        "SIGHUP stopped the responder"
    );
    assert!(audit_lines(&rotated).len() >= rotated_lines);
}
