//! The `rpcutil` agent: ping, inventory, facts and daemon statistics.
//!
//! Discovery and `mco ping`, `mco facts`, `mco inventory` and `mco find` all
//! run on it, so it must be cheap: every action reads a snapshot the daemon
//! already holds (through [`NodeInfo`]) and never touches the disk.

#![forbid(unsafe_code)]

use std::sync::OnceLock;

use mco_core::agent::{
    outputs, ActionError, ActionResult, Agent, NodeInfo, Outputs, RequestContext,
};
use mco_core::facts::lookup;
use mco_core::{Ddl, Status};
use serde_json::{json, Map, Value};

/// The DDL shipped in `ddl/rpcutil.json`.
pub const DDL_JSON: &str = include_str!("../../../ddl/rpcutil.json");

/// The rpcutil agent.
pub struct Rpcutil {
    ddl: Ddl,
}

impl Rpcutil {
    /// Builds the agent from its embedded DDL.
    pub fn new() -> Rpcutil {
        static DDL: OnceLock<Ddl> = OnceLock::new();
        let ddl = DDL
            .get_or_init(|| {
                Ddl::from_json("ddl/rpcutil.json", DDL_JSON).expect("the shipped rpcutil DDL loads")
            })
            .clone();
        Rpcutil { ddl }
    }
}

impl Default for Rpcutil {
    fn default() -> Self {
        Rpcutil::new()
    }
}

fn inventory(node: &dyn NodeInfo) -> Outputs {
    let agents: Vec<String> = node.agents().into_iter().map(|a| a.name).collect();
    outputs(json!({
        "agents": agents,
        "facts": Value::Object((*node.facts()).clone()),
        "classes": *node.classes(),
        "collectives": node.collectives(),
        "main_collective": node.collectives().first(),
        "version": mco_core::VERSION,
        "uptime": node.uptime().as_secs(),
        "stats": Value::Object(node.stats()),
    }))
}

fn daemon_stats(node: &dyn NodeInfo) -> Outputs {
    let mut out = node.stats();
    out.insert("version".into(), json!(mco_core::VERSION));
    out.insert("uptime".into(), json!(node.uptime().as_secs()));
    out
}

#[async_trait::async_trait]
impl Agent for Rpcutil {
    fn ddl(&self) -> &Ddl {
        &self.ddl
    }

    async fn call(
        &self,
        action: &str,
        input: &Map<String, Value>,
        ctx: &RequestContext,
    ) -> ActionResult {
        let node = ctx.node.as_ref();
        match action {
            "ping" => Ok(outputs(json!({ "pong": mco_core::wire::now_ms() }))),
            "inventory" => Ok(inventory(node)),
            "get_fact" => {
                let name = input
                    .get("fact")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let facts = node.facts();
                let value = lookup(&facts, name).cloned().unwrap_or(Value::Null);
                Ok(outputs(json!({ "fact": name, "value": value })))
            }
            "get_facts" => {
                let names = input
                    .get("facts")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let facts = node.facts();
                let values: Map<String, Value> = names
                    .split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(|n| {
                        (
                            n.to_string(),
                            lookup(&facts, n).cloned().unwrap_or(Value::Null),
                        )
                    })
                    .collect();
                Ok(outputs(json!({ "values": values })))
            }
            "agent_inventory" => {
                let agents: Vec<Value> = node
                    .agents()
                    .into_iter()
                    .map(|a| json!({"agent": a.name, "version": a.version, "description": a.description}))
                    .collect();
                Ok(outputs(json!({ "agents": agents })))
            }
            "collective_info" => Ok(outputs(json!({
                "main_collective": node.collectives().first(),
                "collectives": node.collectives(),
            }))),
            "daemon_stats" => Ok(daemon_stats(node)),
            other => Err(ActionError::new(
                Status::UnknownAction,
                format!("rpcutil has no action '{other}'"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mco_core::agent::AgentSummary;
    use std::sync::Arc;
    use std::time::Duration;

    struct Node {
        facts: Arc<mco_core::facts::FactMap>,
        collectives: Vec<String>,
    }

    impl NodeInfo for Node {
        fn identity(&self) -> &str {
            "n1"
        }
        fn collectives(&self) -> &[String] {
            &self.collectives
        }
        fn facts(&self) -> Arc<mco_core::facts::FactMap> {
            self.facts.clone()
        }
        fn classes(&self) -> Arc<Vec<String>> {
            Arc::new(vec!["web".into()])
        }
        fn agents(&self) -> Vec<AgentSummary> {
            vec![AgentSummary {
                name: "rpcutil".into(),
                version: "1.0.0".into(),
                description: "d".into(),
            }]
        }
        fn stats(&self) -> Map<String, Value> {
            outputs(json!({"total": 3, "ok": 2, "failed": 1, "dropped": {"expired": 1}}))
        }
        fn uptime(&self) -> Duration {
            Duration::from_secs(42)
        }
    }

    fn ctx() -> RequestContext {
        RequestContext {
            request_id: "r".into(),
            caller: "user:t".into(),
            sender: "t".into(),
            collective: "mcollective".into(),
            node: Arc::new(Node {
                facts: Arc::new(outputs(json!({"os": {"family": "Debian"}, "role": "web"}))),
                collectives: vec!["mcollective".into(), "eu".into()],
            }),
        }
    }

    async fn call(action: &str, input: Value) -> ActionResult {
        Rpcutil::new().call(action, &outputs(input), &ctx()).await
    }

    #[tokio::test]
    async fn every_action_answers_per_its_ddl() {
        let agent = Rpcutil::new();
        for action in &agent.ddl().actions {
            let input = match action.action.as_str() {
                "get_fact" => json!({"fact": "os.family"}),
                "get_facts" => json!({"facts": "role, os.family"}),
                _ => json!({}),
            };
            let out = call(&action.action, input).await.unwrap();
            for key in out.keys() {
                assert!(
                    action.output.contains_key(key),
                    "{}: undeclared output {key}",
                    action.action
                );
            }
        }
        let out = call("get_fact", json!({"fact": "os.family"}))
            .await
            .unwrap();
        assert_eq!(out["value"], "Debian");
        let out = call("get_facts", json!({"facts": "role,missing"}))
            .await
            .unwrap();
        assert_eq!(out["values"], json!({"role": "web", "missing": null}));
        let out = call("daemon_stats", json!({})).await.unwrap();
        assert_eq!(out["uptime"], 42);
        assert_eq!(out["dropped"]["expired"], 1);
        let out = call("inventory", json!({})).await.unwrap();
        assert_eq!(out["main_collective"], "mcollective");
        assert_eq!(out["classes"], json!(["web"]));
        let err = call("nope", json!({})).await.unwrap_err();
        assert_eq!(err.status, Status::UnknownAction);
    }
}
