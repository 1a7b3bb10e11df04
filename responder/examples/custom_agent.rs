//! A minimal custom agent compiled into a responder of your own.
//!
//! Run it against a local broker with a config like the README's:
//! `cargo run -p mco-responder --example custom_agent -- /etc/mco/responder.toml`,
//! then `mco rpc greeter greet name=world --config client.toml` with the DDL
//! below saved in one of the client's `ddl_dirs`.

use std::sync::Arc;

use mco_core::agent::{ActionError, ActionResult, Agent, RequestContext};
use mco_core::config::ResponderConfig;
use mco_core::Ddl;
use serde_json::{json, Map, Value};

const DDL: &str = r#"{
  "$schema": "https://choria.io/schemas/mcorpc/ddl/v1/agent.json",
  "metadata": {"name": "greeter", "description": "Says hello", "author": "you",
               "license": "Apache-2.0", "version": "1.0.0", "url": "https://example.net", "timeout": 2},
  "actions": [{
    "action": "greet", "description": "Greets someone", "display": "always",
    "input": {"name": {"prompt": "Name", "description": "Who to greet", "type": "string",
                       "validation": "^\\w+$", "maxlength": 32, "optional": false}},
    "output": {"greeting": {"description": "The greeting", "display_as": "Greeting", "type": "string"}}
  }]
}"#;

struct Greeter {
    ddl: Ddl,
}

#[async_trait::async_trait]
impl Agent for Greeter {
    fn ddl(&self) -> &Ddl {
        &self.ddl
    }

    async fn call(
        &self,
        action: &str,
        input: &Map<String, Value>,
        ctx: &RequestContext,
    ) -> ActionResult {
        match action {
            "greet" => {
                let name = input.get("name").and_then(Value::as_str).unwrap_or("world");
                let greeting = format!("hello {name}, from {}", ctx.node.identity());
                Ok(json!({ "greeting": greeting })
                    .as_object()
                    .cloned()
                    .unwrap_or_default())
            }
            other => Err(ActionError::aborted(format!("no action {other}"))),
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/etc/mco/responder.toml".into());
    let cfg = ResponderConfig::load(std::path::Path::new(&path))?;
    let (mut registry, _warnings) =
        mco_responder::preflight(&cfg, &mco_responder::Options::default())?;
    registry.add(Arc::new(Greeter {
        ddl: Ddl::from_json("greeter.json", DDL)?,
    }));
    tracing_subscriber::fmt().init();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            let _ = tx.send(true);
        });
        let reload = Arc::new(tokio::sync::Notify::new());
        mco_responder::run(cfg, registry, mco_responder::Options::default(), rx, reload).await
    })?;
    Ok(())
}
