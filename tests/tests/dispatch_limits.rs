//! Dispatch under stress, in a responder built as a library with one extra
//! agent of its own (as operators embed custom agents): a panicking action is
//! status 5 and the node keeps serving, a slow action times out as status 1,
//! a full node answers `busy`. The bus is a real nats-server and the client
//! the real `mco` binary.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mco_core::agent::{ActionError, ActionResult, Agent, RequestContext};
use mco_core::config::ResponderConfig;
use mco_core::Ddl;
use mco_tests::{mco, wait_for_nodes, Cmd, NatsServer};
use serde_json::{json, Map, Value};

const DDL: &str = r#"{
  "metadata": {"name": "chores", "description": "Actions that misbehave on request",
               "author": "mco", "license": "Apache-2.0", "version": "1.0.0",
               "url": "https://example.net", "timeout": 2},
  "actions": [
    {"action": "wait", "description": "Sleeps", "display": "always",
     "input": {"ms": {"prompt": "ms", "description": "how long", "type": "integer", "optional": false}},
     "output": {"slept": {"description": "ms slept", "display_as": "Slept"}}},
    {"action": "explode", "description": "Panics", "input": {}, "output": {}},
    {"action": "refuse", "description": "Fails cleanly", "input": {},
     "output": {"why": {"description": "reason", "display_as": "Why", "default": "none"}}}
  ]
}"#;

struct Chores(Ddl);

#[async_trait::async_trait]
impl Agent for Chores {
    fn ddl(&self) -> &Ddl {
        &self.0
    }

    async fn call(
        &self,
        action: &str,
        input: &Map<String, Value>,
        _: &RequestContext,
    ) -> ActionResult {
        match action {
            "wait" => {
                let ms = input["ms"].as_u64().unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(json!({"slept": ms})
                    .as_object()
                    .cloned()
                    .unwrap_or_default())
            }
            "explode" => panic!("the chores agent blew up"),
            _ => Err(ActionError::aborted("refused on purpose")),
        }
    }
}

struct InProcess {
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for InProcess {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start(nats: &NatsServer, dir: &Path) -> InProcess {
    let text = format!(
        "identity = \"worker\"\n[nats]\nservers = [{:?}]\n[facts]\nsystem = false\n[agents]\nmax_concurrent = 1\n[security]\ninsecure = true\ndefault_policy = \"allow\"\n",
        nats.url()
    );
    let cfg = ResponderConfig::from_toml(&dir.join("responder.toml"), &text).unwrap();
    let (mut registry, _) =
        mco_responder::preflight(&cfg, &mco_responder::Options::default()).unwrap();
    registry.add(Arc::new(Chores(
        Ddl::from_json("chores.json", DDL).unwrap(),
    )));
    let (tx, rx) = tokio::sync::watch::channel(false);
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let reload = Arc::new(tokio::sync::Notify::new());
        rt.block_on(mco_responder::run(
            cfg,
            registry,
            mco_responder::Options::default(),
            rx,
            reload,
        ))
        .unwrap();
    });
    InProcess {
        stop: tx,
        thread: Some(thread),
    }
}

#[test]
fn panics_timeouts_and_busy_are_replies_not_crashes() {
    let nats = NatsServer::start();
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let ddls = dir.path().join("ddl");
    std::fs::create_dir(&ddls).unwrap();
    std::fs::write(ddls.join("chores.json"), DDL).unwrap();
    let client_cfg = dir.path().join("client.toml");
    std::fs::write(
        &client_cfg,
        format!(
            "ddl_dirs = [{:?}]\n[security]\ninsecure = true\n",
            ddls.display().to_string()
        ),
    )
    .unwrap();
    let cfg = client_cfg.to_str().unwrap();
    let _responder = start(&nats, dir.path());
    wait_for_nodes(&nats, &["worker".to_string()], "mcollective");

    let json = |args: &[&str]| {
        let mut all = vec!["rpc", "--config", cfg, "--nats", &url, "-I", "worker", "-j"];
        all.extend_from_slice(args);
        let out = mco(all);
        let v = out.stdout_json();
        (out, v)
    };

    // A panic is status 5 for that request only.
    let (out, v) = json(&["chores", "explode"]);
    out.assert_exit(2);
    assert_eq!(v[0]["statuscode"], 5, "{out:?}");
    assert!(
        v[0]["statusmsg"].as_str().unwrap().contains("blew up"),
        "{out:?}"
    );

    // A clean failure keeps the DDL's output defaults.
    let (out, v) = json(&["chores", "refuse"]);
    assert_eq!(v[0]["statuscode"], 1, "{out:?}");
    assert_eq!(v[0]["data"]["why"], "none", "{out:?}");

    // The DDL timeout (2 s) ends a longer action with status 1.
    let (out, v) = json(&["chores", "wait", "ms=60000", "-t", "10s"]);
    assert_eq!(v[0]["statuscode"], 1, "{out:?}");
    assert!(
        v[0]["statusmsg"]
            .as_str()
            .unwrap()
            .contains("timed out after 2s"),
        "{out:?}"
    );

    // With one slot, a second request while the first runs is refused as busy.
    // The slow request itself may meet a probe in the slot and be the one
    // refused; then the round is tried again.
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds <= 10, "never saw a busy reply in 10 rounds");
        let slow = std::thread::spawn({
            let url = url.clone();
            let cfg = cfg.to_string();
            move || {
                Cmd::mco()
                    .args([
                        "rpc", "--config", &cfg, "--nats", &url, "-I", "worker", "-j", "chores",
                        "wait", "ms=1500",
                    ])
                    .run()
            }
        });
        let mut busy = None;
        while !slow.is_finished() && busy.is_none() {
            let (_, v) = json(&["chores", "wait", "ms=1"]);
            if v[0]["statusmsg"].as_str().unwrap_or("").contains("busy") {
                busy = Some(v[0]["statuscode"].clone());
            }
        }
        let slow = slow.join().unwrap();
        if let Some(code) = busy {
            assert_eq!(code, 1);
            assert_eq!(slow.stdout_json()[0]["data"]["slept"], 1500, "{slow:?}");
            break;
        }
    }

    // And after all that, the node still serves.
    let (out, v) = json(&["rpcutil", "daemon_stats"]);
    out.assert_success();
    assert!(v[0]["data"]["busy"].as_u64().unwrap() >= 1, "{out:?}");
    assert!(v[0]["data"]["failed"].as_u64().unwrap() >= 4, "{out:?}");
}
