//! `mco rpc`, `mco facts`, `mco inventory` and `mco plugin doc` against real responders: the JSON
//! and text output, DDL validation on the client before sending, DDL validation on a node whose
//! operator changed its DDL, and an operator's Choria-style DDL in the client's `ddl_dirs`.

use std::path::{Path, PathBuf};

use mco_tests::replies::{counter, replies};
use mco_tests::{eventually, mco, Cmd, NatsServer, Output, Responder, ResponderSpec};
use serde_json::{json, Value};

const NODES: &[&str] = &["alpha", "beta", "gamma"];

/// The collective of the node with the operator's modified DDL, so that fleet-wide calls in
/// `mcollective` never reach it.
const LAB: &str = "lab";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the repository")
        .to_path_buf()
}

fn stock_rpcutil_ddl() -> Value {
    let path = repo_root().join("ddl/rpcutil.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("ddl/rpcutil.json is JSON")
}

/// The stock rpcutil DDL as an operator changed it: no `daemon_stats`, `get_fact`'s `fact` at
/// most 3 characters, and a required `extra` input for `collective_info`.
fn modified_rpcutil_ddl() -> Value {
    let mut ddl = stock_rpcutil_ddl();
    let actions = ddl["actions"].as_array_mut().expect("actions");
    let before = actions.len();
    actions.retain(|a| a["action"] != "daemon_stats");
    assert_eq!(actions.len(), before - 1, "the stock DDL has daemon_stats");
    for a in actions.iter_mut() {
        match a["action"].as_str() {
            Some("get_fact") => a["input"]["fact"]["maxlength"] = json!(3),
            Some("collective_info") => {
                a["input"]["extra"] = json!({
                    "prompt": "Extra",
                    "description": "A value this site requires",
                    "type": "string",
                    "validation": "^\\w+$",
                    "maxlength": 20,
                    "optional": false
                })
            }
            _ => {}
        }
    }
    ddl
}

/// A DDL for an agent nobody runs, written the way Choria's own DDLs are.
fn deploy_ddl() -> &'static str {
    r#"{
  "$schema": "https://choria.io/schemas/mcorpc/ddl/v1/agent.json",
  "metadata": {
    "license": "Apache-2.0",
    "author": "Ops Team <ops@example.net>",
    "timeout": 120,
    "name": "deploy",
    "version": "2.3.0",
    "url": "https://example.net/deploy",
    "description": "Deploys application releases",
    "provider": "external"
  },
  "actions": [
    {
      "action": "release",
      "input": {
        "app": {
          "prompt": "Application",
          "description": "The application to deploy",
          "type": "string",
          "default": null,
          "optional": false,
          "validation": "^[a-z][a-z0-9_-]*$",
          "maxlength": 32
        },
        "revision": {
          "prompt": "Revision",
          "description": "The revision to deploy",
          "type": "string",
          "default": null,
          "optional": true,
          "validation": "shellsafe",
          "maxlength": 40
        },
        "environment": {
          "prompt": "Environment",
          "description": "Where to deploy",
          "type": "list",
          "default": "staging",
          "optional": true,
          "list": ["staging", "production"]
        },
        "concurrency": {
          "prompt": "Concurrency",
          "description": "Workers restarted at once",
          "type": "integer",
          "default": 1,
          "optional": true
        },
        "canary_ratio": {
          "prompt": "Canary ratio",
          "description": "Share of traffic sent to the canary",
          "type": "float",
          "optional": true
        },
        "force": {
          "prompt": "Force",
          "description": "Deploy even when health checks fail",
          "type": "boolean",
          "default": false,
          "optional": true
        }
      },
      "output": {
        "status": {
          "description": "The deployment outcome",
          "display_as": "Status",
          "default": "unknown"
        },
        "revision": {
          "description": "The revision now running",
          "display_as": "Running Revision",
          "default": null
        }
      },
      "display": "failed",
      "description": "Deploy a release of an application",
      "aggregate": [{"function": "summary", "args": ["status"]}]
    },
    {
      "action": "status",
      "input": {
        "app": {
          "prompt": "Application",
          "description": "The application to inspect",
          "type": "string",
          "default": null,
          "optional": false,
          "validation": "^[a-z][a-z0-9_-]*$",
          "maxlength": 32
        }
      },
      "output": {
        "revision": {
          "description": "The revision now running",
          "display_as": "Running Revision",
          "default": null
        }
      },
      "display": "always",
      "description": "Show the running revision"
    }
  ]
}
"#
}

/// A client config whose `ddl_dirs` holds the deploy DDL; returns its path.
fn client_config_with_deploy_ddl(dir: &Path, url: &str) -> PathBuf {
    let ddl_dir = dir.join("ddl");
    std::fs::create_dir_all(&ddl_dir).unwrap();
    std::fs::write(ddl_dir.join("deploy.json"), deploy_ddl()).unwrap();
    let config = dir.join("client.toml");
    std::fs::write(
        &config,
        format!(
            "ddl_dirs = [{:?}]\n[nats]\nservers = [{url:?}]\n[security]\ninsecure = true\n",
            ddl_dir.display().to_string()
        ),
    )
    .unwrap();
    config
}

fn rpc(url: &str, args: &[&str]) -> Output {
    let mut all = vec!["rpc", "--nats", url];
    all.extend_from_slice(args);
    mco(all)
}

/// The part of a text run before its `Finished processing` line, and that line's `N / M hosts`.
#[track_caller]
fn split_summary(out: &Output) -> (&str, &str) {
    let Some(at) = out.stdout.find("Finished processing ") else {
        panic!("no Finished processing line\n{out:?}");
    };
    let (body, last) = out.stdout.split_at(at);
    let hosts = last
        .strip_prefix("Finished processing ")
        .and_then(|l| l.split(" hosts in ").next())
        .unwrap_or_default();
    (body, hosts)
}

/// Every key of each reply's `data` is an output of `action` in the stock DDL.
#[track_caller]
fn assert_data_declared(out: &Output, action: &str) {
    let ddl = stock_rpcutil_ddl();
    let declared = ddl["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == action)
        .and_then(|a| a["output"].as_object())
        .unwrap_or_else(|| panic!("no action {action} in the stock DDL"));
    for r in replies(out) {
        let data = r["data"].as_object().expect("data is an object");
        assert!(!data.is_empty(), "{action}: empty data\n{out:?}");
        for key in data.keys() {
            assert!(
                declared.contains_key(key),
                "{action}: output {key:?} is not in the DDL\n{out:?}"
            );
        }
    }
}

fn json_output(url: &str) {
    let out = rpc(url, &["rpcutil", "get_fact", "fact=role", "-j"]);
    out.assert_success();
    let rows: Vec<String> = [("alpha", "web"), ("beta", "db"), ("gamma", "web")]
        .iter()
        .map(|(node, role)| {
            format!(
                "  {{\n    \"sender\": \"{node}\",\n    \"agent\": \"rpcutil\",\n    \
                 \"action\": \"get_fact\",\n    \"statuscode\": 0,\n    \"statusmsg\": \"OK\",\n    \
                 \"data\": {{\n      \"fact\": \"role\",\n      \"value\": \"{role}\"\n    }}\n  }}"
            )
        })
        .collect();
    out.assert_stdout_eq(&format!("[\n{}\n]\n", rows.join(",\n")));
    assert!(
        out.stderr.lines().all(|l| l.contains("INSECURE MODE")),
        "only the insecure-mode warning on stderr: {out:?}"
    );

    for action in ["daemon_stats", "inventory", "collective_info", "ping"] {
        let out = rpc(url, &["rpcutil", action, "-j"]);
        out.assert_success();
        let rows = replies(&out);
        let senders: Vec<&str> = rows.iter().map(|r| r["sender"].as_str().unwrap()).collect();
        assert_eq!(senders, NODES, "{out:?}");
        for r in &rows {
            let keys: Vec<&str> = r.keys().map(String::as_str).collect();
            let mut want = vec![
                "action",
                "agent",
                "data",
                "sender",
                "statuscode",
                "statusmsg",
            ];
            let mut got = keys.clone();
            got.sort_unstable();
            want.sort_unstable();
            assert_eq!(got, want, "{out:?}");
            assert_eq!(r["agent"], "rpcutil", "{out:?}");
            assert_eq!(r["action"], action, "{out:?}");
            assert_eq!(r["statuscode"], 0, "{out:?}");
            assert_eq!(r["statusmsg"], "OK", "{out:?}");
        }
        assert_data_declared(&out, action);
    }
}

fn text_output_and_aggregates(url: &str) {
    let out = rpc(url, &["rpcutil", "get_fact", "fact=os.family"]);
    out.assert_success();
    let (body, hosts) = split_summary(&out);
    assert_eq!(
        body,
        "alpha\n    Fact: os.family\n   Value: Debian\n\n\
         beta\n    Fact: os.family\n   Value: RedHat\n\n\
         gamma\n    Fact: os.family\n   Value: Debian\n\n\
         Summary of Value:\n\n   Debian = 2\n   RedHat = 1\n\n\n",
        "{out:?}"
    );
    assert_eq!(hosts, "3 / 3", "{out:?}");

    let out = rpc(url, &["rpcutil", "collective_info", "-F", "role=web"]);
    out.assert_success();
    let (body, hosts) = split_summary(&out);
    assert!(
        body.contains("Summary of All Collectives:\n\n   mcollective = 2\n"),
        "{out:?}"
    );
    assert!(!body.contains("beta"), "{out:?}");
    assert_eq!(hosts, "2 / 2", "{out:?}");
}

fn facts_report(url: &str) {
    let out = mco(["facts", "role", "--nats", url]);
    out.assert_success();
    let (body, hosts) = split_summary(&out);
    assert_eq!(
        body, "Report for fact: role\n\n   db    found 1 times\n   web   found 2 times\n\n",
        "{out:?}"
    );
    assert_eq!(hosts, "3 / 3", "{out:?}");

    let out = mco(["facts", "role", "-v", "--nats", url]);
    out.assert_success();
    let (body, _) = split_summary(&out);
    assert_eq!(
        body,
        "Report for fact: role\n\n   db    found 1 times\n      beta\n\n   \
         web   found 2 times\n      alpha\n      gamma\n\n\n",
        "{out:?}"
    );

    let out = mco(["facts", "os.family", "-F", "role=web", "--nats", url]);
    out.assert_success();
    assert!(
        out.stdout
            .starts_with("Report for fact: os.family\n\n   Debian   found 2 times\n"),
        "{out:?}"
    );
}

fn inventory(url: &str) {
    let out = mco(["inventory", "alpha", "--nats", url]);
    out.assert_success();
    for part in [
        "Inventory for alpha:\n",
        "Server Statistics:\n",
        "Total Requests: ",
        "   Agents:\n      nrpe\n      resource\n      rpcutil\n",
        "   Classes:\n      nginx\n      users::admin\n",
        "   Collectives:\n      mcollective\n",
        "   Facts:\n",
        "      role => web\n",
        "      os.family => Debian\n",
        "      tags => [\"a\",\"b\"]\n",
    ] {
        assert!(out.stdout.contains(part), "missing {part:?}\n{out:?}");
    }
    assert!(!out.stdout.contains("postgres"), "{out:?}");

    let out = mco(["inventory", "beta", "-j", "--nats", url]);
    out.assert_success();
    let inv = out.stdout_json();
    assert_eq!(inv["facts"]["role"], "db", "{out:?}");
    assert_eq!(inv["classes"], json!(["postgres"]), "{out:?}");
    assert_eq!(
        inv["agents"],
        json!(["nrpe", "resource", "rpcutil"]),
        "{out:?}"
    );
    assert_eq!(inv["main_collective"], "mcollective", "{out:?}");

    let out = mco(["inventory", "nosuch", "-t", "1s", "--nats", url]);
    out.assert_exit(4);
    assert_eq!(
        out.stdout, "Did not receive any results from node nosuch\n",
        "{out:?}"
    );
    assert!(
        out.stderr.lines().all(|l| l.contains("INSECURE MODE")),
        "only the insecure-mode warning on stderr: {out:?}"
    );
}

/// Runs `mco ARGS`, expecting exit 64 with `message` on stderr and nothing on stdout.
#[track_caller]
fn assert_usage_error(args: &[&str], message: &str) {
    let out = mco(args);
    out.assert_exit(64);
    assert!(
        out.stderr.contains(message),
        "stderr should say {message:?}\n{out:?}"
    );
    assert_eq!(out.stdout, "", "{out:?}");
}

fn client_side_validation(url: &str) {
    let before = counter(url, "mcollective", NODES, "total");
    let base = ["rpc", "--nats", url, "rpcutil"];
    let with = |extra: &[&'static str]| -> Vec<&str> {
        let mut v = base.to_vec();
        v.extend_from_slice(extra);
        v
    };
    assert_usage_error(
        &with(&["get_fact"]),
        "Missing Request Data: missing required input 'fact'",
    );
    assert_usage_error(
        &with(&["get_fact", "fact=role", "colour=red"]),
        "Invalid Request Data: unknown input 'colour'",
    );
    assert_usage_error(
        &with(&["get_fact", "fact=bad;value"]),
        "Invalid Request Data: input 'fact'",
    );
    assert_usage_error(&with(&["get_fact", "role"]), "is not key=value");
    assert_usage_error(
        &with(&["get_fact", "--arg", "fact=x y"]),
        "Invalid Request Data",
    );
    assert_usage_error(&with(&["restart"]), "Unknown Action");
    assert_usage_error(&with(&["restart"]), "'rpcutil' has no action 'restart'");
    assert_usage_error(
        &["rpc", "--nats", url, "service", "restart"],
        "no DDL for agent 'service'",
    );
    let after = counter(url, "mcollective", NODES, "total");
    for &node in NODES {
        assert_eq!(
            after[node],
            before[node] + 1,
            "{node} received a request that failed validation: before {before:?}, after {after:?}"
        );
    }
}

fn no_results(url: &str) {
    let ok = || counter(url, "mcollective", &["gamma"], "ok")["gamma"];
    let start = ok();
    let out = rpc(
        url,
        &[
            "rpcutil",
            "get_fact",
            "fact=role",
            "-I",
            "gamma",
            "--no-results",
        ],
    );
    out.assert_success();
    let id = out
        .stdout
        .strip_prefix("Request sent with id: ")
        .and_then(|rest| rest.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("no request id\n{out:?}"));
    assert!(
        id.len() >= 16 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
        "{id:?} is not a request id\n{out:?}"
    );
    // Every daemon_stats call counts as one success before it replies, so the k-th poll
    // (from 0) reads start + 1 + k, plus 1 once gamma has run the unwatched get_fact.
    let mut polls = 0;
    eventually(
        std::time::Duration::from_secs(10),
        "gamma to run the request sent with --no-results",
        || {
            let seen = ok();
            let ran = seen - start - 1 - polls;
            polls += 1;
            ran == 1
        },
    );
}

/// The node's DDL is the operator's; the client checks against the stock one and lets these
/// through, the node refuses them.
fn node_side_validation(url: &str) {
    let lab = |args: &[&'static str]| -> Output {
        let mut all = vec!["-T", LAB];
        all.extend_from_slice(args);
        rpc(url, &all)
    };
    let cases: [(&[&str], u8, &str, &str); 3] = [
        (
            &["rpcutil", "daemon_stats"],
            2,
            "Unknown Action",
            "unknown action 'daemon_stats'",
        ),
        (
            &["rpcutil", "get_fact", "fact=role_long"],
            4,
            "Invalid Request Data",
            "maxlength of 3",
        ),
        (
            &["rpcutil", "collective_info"],
            3,
            "Missing Request Data",
            "missing required input 'extra'",
        ),
    ];
    for (args, code, label, message) in cases {
        let out = lab(args);
        out.assert_exit(2);
        let (body, hosts) = split_summary(&out);
        assert!(
            body.starts_with(&format!("{:<40} {label}\n   ", "strict")),
            "{out:?}"
        );
        assert!(body.contains(message), "{out:?}");
        assert_eq!(hosts, "1 / 1", "{out:?}");

        let mut json_args = args.to_vec();
        json_args.push("-j");
        let out = lab(&json_args);
        out.assert_exit(2);
        let rows = replies(&out);
        assert_eq!(rows.len(), 1, "{out:?}");
        assert_eq!(rows[0]["sender"], "strict", "{out:?}");
        assert_eq!(rows[0]["statuscode"], code, "{out:?}");
        assert!(
            rows[0]["statusmsg"]
                .as_str()
                .unwrap_or_default()
                .contains(message),
            "{out:?}"
        );
    }

    // The same requests succeed on a node with the stock DDL.
    let out = rpc(
        url,
        &["rpcutil", "get_fact", "fact=role_long", "-I", "alpha", "-j"],
    );
    out.assert_success();
    assert_eq!(replies(&out)[0]["statuscode"], 0, "{out:?}");
    let out = rpc(url, &["rpcutil", "collective_info", "-I", "alpha", "-j"]);
    out.assert_success();
    assert_eq!(
        replies(&out)[0]["data"]["collectives"],
        json!(["mcollective"]),
        "{out:?}"
    );
}

fn operator_ddl_validates_before_sending(url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = client_config_with_deploy_ddl(dir.path(), url);
    let config = config.to_str().unwrap();
    let deploy = |extra: &[&'static str]| -> Vec<&str> {
        let mut v = vec!["rpc", "--config", config, "deploy"];
        v.extend_from_slice(extra);
        v
    };
    let before = counter(url, "mcollective", NODES, "total");
    for (args, message) in [
        (
            &["release"][..],
            "Missing Request Data: missing required input 'app'",
        ),
        (
            &["release", "app=Web"][..],
            "Invalid Request Data: input 'app'",
        ),
        (
            &["release", "app=web", "concurrency=many"][..],
            "input 'concurrency' must be an integer",
        ),
        (
            &["release", "app=web", "canary_ratio=half"][..],
            "input 'canary_ratio' must be a number",
        ),
        (
            &["release", "app=web", "force=maybe"][..],
            "input 'force' must be a boolean",
        ),
        (
            &["release", "app=web", "environment=dev"][..],
            "input 'environment' must be one of",
        ),
        (
            &["release", "app=web", "revision=v1;reboot"][..],
            "is not shellsafe",
        ),
        (
            &["release", "app=web", "colour=red"][..],
            "unknown input 'colour'",
        ),
        (&["rollback", "app=web"][..], "Unknown Action"),
    ] {
        assert_usage_error(&deploy(args), message);
    }
    let after = counter(url, "mcollective", NODES, "total");
    for &node in NODES {
        assert_eq!(
            after[node],
            before[node] + 1,
            "{node} received a deploy request that failed validation"
        );
    }

    // Valid input passes the client; no node hosts the agent.
    let out = mco(deploy(&[
        "release",
        "app=web",
        "concurrency=3",
        "force=yes",
        "environment=production",
        "--dt",
        "1s",
    ]));
    out.assert_exit(1);
    assert_eq!(
        out.stdout, "No request sent, we did not discover any nodes.\n",
        "{out:?}"
    );
    let out = mco(deploy(&["status", "app=web", "-I", "alpha", "-j"]));
    out.assert_exit(2);
    let rows = replies(&out);
    assert_eq!(rows.len(), 1, "{out:?}");
    assert_eq!(rows[0]["statuscode"], 2, "{out:?}");
    assert_eq!(rows[0]["agent"], "deploy", "{out:?}");
}

#[test]
fn rpc_against_a_small_fleet() {
    let nats = NatsServer::start();
    let url = nats.url();
    let ddl_dir = tempfile::tempdir().unwrap();
    std::fs::write(
        ddl_dir.path().join("rpcutil.json"),
        serde_json::to_vec_pretty(&modified_rpcutil_ddl()).unwrap(),
    )
    .unwrap();
    let specs = [
        ResponderSpec::new("alpha")
            .facts(json!({"role": "web", "os": {"family": "Debian"}, "tags": ["a", "b"]}))
            .classes(&["nginx", "users::admin"]),
        ResponderSpec::new("beta")
            .facts(json!({"role": "db", "os": {"family": "RedHat"}}))
            .classes(&["postgres"]),
        ResponderSpec::new("gamma")
            .facts(json!({"role": "web", "os": {"family": "Debian"}}))
            .classes(&["nginx"]),
        ResponderSpec::new("strict")
            .facts(json!({"role": "web"}))
            .collectives(&[LAB])
            .extra(&format!(
                "[agents]\nddl_dirs = [{:?}]\n",
                ddl_dir.path().display().to_string()
            )),
    ];
    let fleet: Vec<Responder> = specs
        .into_iter()
        .map(|s| Responder::spawn(&nats, s))
        .collect();
    for r in &fleet {
        r.wait_ready(&nats);
    }

    client_side_validation(&url);
    operator_ddl_validates_before_sending(&url);
    json_output(&url);
    text_output_and_aggregates(&url);
    facts_report(&url);
    inventory(&url);
    node_side_validation(&url);
    no_results(&url);
}

#[test]
fn plugin_doc_and_completion() {
    let out = mco(["plugin", "doc", "rpcutil"]);
    out.assert_success();
    for part in [
        "rpcutil\n=======\n",
        "ACTIONS:\n========\n   ping, inventory, get_fact, get_facts, agent_inventory, \
         collective_info, daemon_stats\n",
        "   get_fact action:\n",
        "           fact:\n              Description: The fact to retrieve, dotted for nested facts\n",
        "                     Type: string\n",
        "                   Length: 256\n",
        "                 Optional: false\n",
        "       SUMMARIES: summary(value)\n",
        "           This action does not have any inputs\n",
        "               Display As: Total Requests\n",
    ] {
        assert!(out.stdout.contains(part), "missing {part:?}\n{out:?}");
    }

    let out = mco(["plugin", "doc"]);
    out.assert_success();
    assert!(out.stdout.contains("  rpcutil "), "{out:?}");
    assert!(!out.stdout.contains("deploy"), "{out:?}");

    let dir = tempfile::tempdir().unwrap();
    let config = client_config_with_deploy_ddl(dir.path(), "nats://127.0.0.1:1");
    let out = mco(["plugin", "doc", "--config", config.to_str().unwrap()]);
    out.assert_success();
    assert!(
        out.stdout
            .contains("  deploy               Deploys application releases\n"),
        "{out:?}"
    );
    assert!(out.stdout.contains("  rpcutil "), "{out:?}");

    // The same config found in the default place, ~/.config/mco/client.toml.
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".config/mco")).unwrap();
    std::fs::copy(&config, home.join(".config/mco/client.toml")).unwrap();
    let out = Cmd::mco()
        .args(["plugin", "doc", "deploy"])
        .home(&home)
        .run();
    out.assert_success();
    for part in [
        "deploy\n======\n\nDeploys application releases\n",
        "      Author: Ops Team <ops@example.net>\n",
        "     Version: 2.3.0\n",
        "     Timeout: 120 s\n",
        "ACTIONS:\n========\n   release, status\n",
        "           concurrency:\n              Description: Workers restarted at once\n",
        "                     Type: integer\n",
        "                     Type: float\n",
        "                     Type: boolean\n",
        "                     Type: list\n",
        "           Allowed values: \"staging\", \"production\"\n",
        "               Validation: shellsafe\n",
        "                   Length: 32\n",
        "               Display As: Running Revision\n",
        "            Default Value: \"unknown\"\n",
        "       SUMMARIES: summary(status)\n",
    ] {
        assert!(out.stdout.contains(part), "missing {part:?}\n{out:?}");
    }

    let out = mco(["plugin", "doc", "nosuch"]);
    out.assert_exit(64);
    assert!(out.stderr.contains("no DDL for agent 'nosuch'"), "{out:?}");

    let out = mco(["completion", "bash"]);
    out.assert_success();
    assert!(out.stdout.contains("_mco()"), "{out:?}");
    assert!(out.stdout.contains("complete -F _mco"), "{out:?}");
    assert!(out.stdout.contains("--with-fact"), "{out:?}");
}
